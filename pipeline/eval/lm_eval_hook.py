"""Optional: run lm-evaluation-harness tasks (e.g. `turkishmmlu`) on a loaded model.

Runs only when the `lm_eval` package is importable and the task's data is already on this
machine (the hub is switched to offline mode for the call); otherwise it logs one line saying
why and returns nothing, so the pipeline never depends on it. Install it with
`pip install lm-eval` and make the dataset available in the HF cache (TurkishMMLU is gated).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

log = logging.getLogger("hasat")
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


@contextmanager
def _offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update({k: "1" for k in OFFLINE_ENV})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def numeric_scores(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from simple_evaluate's results ("acc,none" -> "acc", stderr dropped)."""
    out: dict[str, dict[str, float]] = {}
    for task, metrics in results.get("results", {}).items():
        values = {}
        for name, value in metrics.items():
            metric, _, _filter = name.partition(",")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in metric:
                values[metric] = float(value)
        if values:
            out[task] = values
    return out


def run_tasks(model, tokenizer, tasks: Sequence[str], batch_size: int, num_fewshot: Optional[int] = None,
              limit: Optional[int] = None, include_path: Optional[str] = None) -> tuple[Optional[dict], str]:
    """(scores per task, "") or (None, the one line saying why nothing ran; also logged)."""
    if not tasks:
        return None, "no lm-eval tasks configured (eval.lm_eval.tasks)"
    if not available():
        return None, _skip(f"the lm_eval package is not installed; skipping {', '.join(tasks)}")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    try:
        with _offline():
            harness_model = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
            results = lm_eval.simple_evaluate(model=harness_model, tasks=list(tasks), num_fewshot=num_fewshot,
                                              limit=limit, task_manager=TaskManager(include_path=include_path))
    except Exception as err:  # a task's data not cached, an unknown task name, ...
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return None, _skip(f"could not run {', '.join(tasks)} offline ({first_line[:200]}); skipping")
    return numeric_scores(results or {}), ""


def _skip(reason: str) -> str:
    log.info("lm-eval hook: %s", reason)
    return f"lm-eval hook: {reason}"
