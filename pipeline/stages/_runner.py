"""Shared stage start-up: config from params.yaml + overrides, one-line errors, quiet logs."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Callable

from pipeline.config import HasatConfig
from pipeline.config_loader import load_config
from pipeline.errors import HasatError


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("transformers", "datasets", "peft", "mlflow", "alembic", "urllib3", "filelock", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_stage(name: str, main: Callable[[HasatConfig], None]) -> None:
    """Run `main(cfg)`; a HasatError becomes `hasat <stage>: error: <message>` and exit code 2."""
    _quiet_libraries()
    started = time.perf_counter()
    try:
        cfg = load_config(sys.argv[1:])
        main(cfg)
    except HasatError as err:
        print(f"hasat {name}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"hasat {name}: interrupted", file=sys.stderr)
        sys.exit(130)
    logging.getLogger("hasat").info("hasat %s: done in %.1fs", name, time.perf_counter() - started)
