"""Serve the champion (or any model) with an OpenAI-compatible API on localhost.

    python -m pipeline.serve [serve.model=champion] [serve.port=8000] [key=value ...]    # make serve
    python -m pipeline.serve serve.model=models/export
    python -m pipeline.serve serve.model=models:/hasat-tarim_sft@challenger

    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \
      -d '{"model": "hasat-tarim_sft", "messages": [{"role": "user", "content": "Buğday ne zaman ekilir?"}]}'

The endpoints, limits and errors are in pipeline/deploy/server.py and docs/serving.md.
"""

from __future__ import annotations

import logging
import sys

from pipeline.config_loader import load_config
from pipeline.deploy.models import load
from pipeline.deploy.server import create_app
from pipeline.errors import HasatError
from pipeline.stages._runner import _quiet_libraries

log = logging.getLogger("hasat")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    try:
        cfg = load_config(sys.argv[1:] if argv is None else argv)
        loaded = load(cfg, cfg.serve.model)
    except HasatError as err:
        print(f"hasat serve: error: {err}", file=sys.stderr)
        return 2
    import uvicorn

    s = cfg.serve
    app = create_app(loaded, s)
    log.info("hasat serve: %s '%s' (%s) on http://%s:%d/v1 (batches up to %d, %d requests in flight at most)",
             loaded.kind, loaded.name, loaded.source, s.host, s.port, s.max_batch_size, s.max_concurrency)
    uvicorn.run(app, host=s.host, port=s.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
