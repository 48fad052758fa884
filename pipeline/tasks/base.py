"""What a task kind is: everything that differs between instruction tuning, classification and the
kinds to come, behind two interfaces (training side, report side) that the stages call instead of
branching on `task.kind`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pipeline.config import flatten
from pipeline.io import atomic_path

if TYPE_CHECKING:
    from pipeline.config import HasatConfig
    from pipeline.train.trainer import TaskData


@dataclass
class Tokenized:
    """What the tokenize stage writes: examples, quarantined rows, stats and a one-line summary."""

    records: list[dict]
    rejects: list[dict]
    stats: dict
    summary: str


@dataclass
class Evaluation:
    """What evaluate produced: metrics/eval.json, the printed table, and what goes to MLflow."""

    result: dict
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


class TaskTraining:
    """What tokenize and finetune ask a task kind; subclasses fill in every method."""

    kind: str

    def tokenize(self, cfg: "HasatConfig", rows: list[dict], tokenizer: Any,
                 context_length: Optional[int] = None) -> Tokenized:
        """Rows -> examples; context_length (the model's, when known) caps `tokenize.max_seq_len: auto`."""
        raise NotImplementedError

    def training_model(self, cfg: "HasatConfig", base_dir: Path,
                       train_rows: list[dict]) -> tuple[Any, Any, Optional[list[str]]]:
        """(tokenizer, model, labels or None) to fine-tune."""
        raise NotImplementedError

    def training_data(self, cfg: "HasatConfig", tokenizer: Any, train_rows: list[dict], val_rows: list[dict],
                      labels: Optional[list[str]]) -> "TaskData":
        raise NotImplementedError

    def base_for_adapter(self, base_dir: Path, info: dict) -> tuple[Any, Any]:
        """(tokenizer, base model) that the saved LoRA adapter is merged into."""
        raise NotImplementedError

    def full_model(self, folder: Path) -> tuple[Any, Any]:
        """(tokenizer, model) of a fully fine-tuned model folder."""
        raise NotImplementedError


class TaskReport:
    """What evaluate and export ask a task kind; subclasses fill in every method."""

    kind: str
    export_noun: str  # what `export` says it wrote ("model", "classifier")
    mlflow_task: str  # the task the MLflow model is logged with
    promotion_metric: str  # what `promote` compares champion and challenger on (paired bootstrap)

    def headline_numbers(self, metrics: dict) -> dict[str, float]:
        """The few eval.json numbers a registry version is tagged with."""
        raise NotImplementedError

    def evaluate(self, cfg: "HasatConfig") -> Evaluation:
        """Score the fine-tuned model, write reports/eval/; the stage writes eval.json and logs."""
        raise NotImplementedError

    def model_card(self, cfg: "HasatConfig", metrics: dict, folder: Path) -> str:
        raise NotImplementedError

    def check_export(self, folder: Path) -> None:
        """The promise of the export: plain `from_pretrained` (and the task's pipeline) works on it."""
        raise NotImplementedError


def domain_tag(cfg: "HasatConfig") -> str:
    """The data's domain as a model-card tag (`data.domain`: agriculture, news, ...)."""
    return "-".join(cfg.data.domain.split()) or "general"


def trained_on(cfg: "HasatConfig") -> str:
    """What the model card says the model was trained on: `data.description`, or the data's name and domain."""
    return cfg.data.description or f"the `{cfg.data.name}` data ({cfg.data.domain} domain)"


def licence_front_matter(cfg: "HasatConfig") -> str:
    """`license:` for the card's metadata (Hub model-card convention); empty when the profile has none."""
    return f"license: {cfg.model.license}\n" if cfg.model.license else ""


def licence_section(cfg: "HasatConfig") -> str:
    """The card's licence paragraph: a fine-tuned model is a derivative of its base and carries the
    base's terms; the notice files that travel with the weights are named and the NOTICE quoted."""
    notices = [Path(p).name for p in cfg.model.notices]
    files = ", ".join(f"`{name}`" for name in notices) if notices else "none shipped by the profile"
    first_lines = [(Path(p).read_text(encoding="utf-8").strip().splitlines() or [""])[0]
                   for p in cfg.model.notices if Path(p).name.startswith("NOTICE") and Path(p).is_file()]
    quoted = "".join(f"\n> {line}\n" for line in first_lines)
    return f"""## Licence

The weights are derived from `{cfg.model.name}` and are under its licence: `{cfg.model.license or "see the base"}`.
Notice files in this folder: {files}; they must stay with the weights when you share them.{quoted}"""


def params_table(cfg: "HasatConfig") -> str:
    """The training configuration as a Markdown table, for model cards."""
    return "\n".join(f"| `{k}` | `{v}` |" for k, v in flatten(cfg).items()
                     if k.split(".")[0] in ("model", "data", "task", "tokenize", "split", "train"))


def write_item_chrf(path: Path, items: list[dict]) -> None:  # per-item chrF (dvc plots); a header only for a classifier
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "source", "base", "finetuned"])
        for i, item in enumerate(items, start=1):
            writer.writerow([i, item["source"], item["base_scores"]["chrf"], item["finetuned_scores"]["chrf"]])
