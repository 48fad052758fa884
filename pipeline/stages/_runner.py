"""Shared stage start-up: config from params.yaml + overrides, one-line errors, quiet logs, and
`--help` (what the stage reads and writes, its main config keys with their current values)."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

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


HELP_FLAGS = ("-h", "--help")


@dataclass(frozen=True)
class StageHelp:
    """What `python -m pipeline.stages.<name> --help` says: the module docstring (what the stage does
    and how to run it), its inputs and outputs (the paths dvc.yaml lists; tests/test_stage_help.py
    checks they agree) and its main config keys."""
    doc: Optional[str]
    reads: Sequence[str]
    writes: Sequence[str]
    keys: Sequence[str]


def _value(cfg, key: str) -> str:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default="(unknown key)")
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    text = {None: "null", True: "true", False: "false"}.get(value, value) if isinstance(value, (bool, type(None))) \
        else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= 70 else text[:67] + "..."


def stage_help(name: str, info: StageHelp, overrides: list[str]) -> str:
    """The help text; key values come from params.yaml + `overrides` when they load."""
    lines = [(info.doc or f"Stage {name}.").strip(), "",
             f"usage: python -m pipeline.stages.{name} [key=value ...] [--help]",
             "", "reads:"]
    lines += [f"  {item}" for item in info.reads] + ["", "writes:"] + [f"  {item}" for item in info.writes]
    try:
        cfg, where = load_config(overrides), "params.yaml" + (" + overrides" if overrides else "")
    except HasatError as err:
        cfg, where = None, f"values unavailable: {err}"
    lines += ["", f"main config keys ({where}; any key of params.yaml can be overridden as key=value):"]
    width = max(len(key) for key in info.keys)
    lines += [f"  {key:<{width}}  {_value(cfg, key) if cfg is not None else ''}".rstrip() for key in info.keys]
    lines += ["", "progress of long work: HASAT_PROGRESS=bar|lines|off, HASAT_PROGRESS_STEPS=N, "
                  "HASAT_PROGRESS_SECONDS=S (docs/stages.md)"]
    return "\n".join(lines)


def run_stage(name: str, main: Callable[[HasatConfig], None], info: Optional[StageHelp] = None) -> None:
    """Run `main(cfg)`; a HasatError becomes `hasat <stage>: error: <message>` and exit code 2.
    `--help` (or -h) prints `info` as text and exits 0 without running anything."""
    if info is not None and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print(stage_help(name, info, [arg for arg in sys.argv[1:] if arg not in HELP_FLAGS]))
        sys.exit(0)
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
