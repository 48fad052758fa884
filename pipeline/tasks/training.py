"""The training side of each task kind, for the stages tokenize and finetune (and for loading a
fine-tuned model back). Kept apart from `reporting` so that an edit to evaluation code does not
invalidate the tokenized data and the trained model in DVC's eyes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import HasatError
from pipeline.io import read_json
from pipeline.tasks.base import TaskTraining
from pipeline.tasks.classification.train import ClassificationTraining
from pipeline.tasks.preference.train import PreferenceTraining
from pipeline.tasks.sft.train import SftTraining
from pipeline.train.modeling import merge_adapter

TRAINING: dict[str, TaskTraining] = {task.kind: task for task in (SftTraining(), ClassificationTraining(), PreferenceTraining())}


def training_for(kind: str) -> TaskTraining:
    """The training side of a kind (`cfg.task.kind`, or the `task` a finetune.json records)."""
    if kind not in TRAINING:
        raise HasatError(f"task kind '{kind}' is not one of {', '.join(TRAINING)}")
    return TRAINING[kind]


def load_finetuned(base_dir: str | Path, finetuned_dir: str | Path) -> tuple[Any, Any]:
    """(tokenizer, model) of the fine-tuned model; a LoRA adapter is merged into the base."""
    finetuned_dir = Path(finetuned_dir)
    info_file = finetuned_dir / "finetune.json"
    if not info_file.is_file():
        raise HasatError(f"{finetuned_dir}: no fine-tuned model here (finetune.json missing; run finetune)")
    info = read_json(info_file)
    task = training_for(info.get("task") or "sft")
    if info["method"] == "full":
        return task.full_model(finetuned_dir / "model")
    tokenizer, base = task.base_for_adapter(Path(base_dir), info)
    return tokenizer, merge_adapter(base, finetuned_dir / "adapter")
