"""Text classification, the training side: texts -> token ids and label ids (the label order is
fixed here and kept in finetune.json), the causal base with a classification head
(pipeline.train.classifier), class-weighted loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from pipeline.config import HasatConfig
from pipeline.errors import HasatError
from pipeline.tasks.base import TaskTraining, Tokenized
from pipeline.train.classifier import class_weights, classification_data, sequence_classifier, weighted_loss
from pipeline.train.modeling import require_model_folder
from pipeline.data.records import require_rows_of
from pipeline.train.lengths import length_report, length_stats, length_summary, resolve_max_seq_len
from pipeline.train.trainer import TaskData


def label_list(rows: list[dict], configured: Optional[Sequence[str]] = None) -> list[str]:
    """The configured labels, or the ones in `rows` sorted (a stable order for label ids)."""
    if configured:
        return [str(label) for label in configured]
    return sorted({str(r["label"]) for r in rows})


def check_labels(rows: list[dict], labels: Sequence[str], where: str) -> None:
    """One clear line for a label the model does not know."""
    known = set(labels)
    for row in rows:
        if str(row["label"]) not in known:
            raise HasatError(f"{row.get('source', where)}: unknown label '{row['label']}' in {where} "
                             f"(known: {', '.join(labels)})")


def token_ids(rows: list[dict], tokenizer) -> list[list[int]]:
    """Token ids of each text (no EOS: with pad == eos it would be pooled as padding)."""
    return [tokenizer(row["text"], add_special_tokens=True)["input_ids"] for row in rows]


def encode_texts(rows: list[dict], tokenizer, labels: Sequence[str], max_seq_len: int,
                 ids_of_rows: Optional[list[list[int]]] = None) -> tuple[list[dict], int]:
    """Token ids of each text (`ids_of_rows` when already tokenized) and its label id.

    Returns (encoded rows, number of texts truncated to max_seq_len)."""
    label_id = {label: i for i, label in enumerate(labels)}
    encoded, truncated = [], 0
    for row, ids in zip(rows, ids_of_rows if ids_of_rows is not None else token_ids(rows, tokenizer)):
        if len(ids) > max_seq_len:
            ids, truncated = ids[:max_seq_len], truncated + 1
        encoded.append({**row, "input_ids": ids, "label_id": label_id[str(row["label"])]})
    return encoded, truncated


class ClassificationTraining(TaskTraining):
    kind = "classification"

    def tokenize(self, cfg: HasatConfig, rows: list[dict], tokenizer: Any,
                 context_length: Optional[int] = None) -> Tokenized:
        require_rows_of(rows, "classification")
        blank = next((r["source"] for r in rows if not str(r["label"]).strip()), None)
        if blank:
            raise HasatError(f"{blank}: blank label (set clean.drop_empty=true to quarantine such rows, or fill it in)")
        labels = label_list(rows, cfg.task.labels)
        check_labels(rows, labels, "the data")
        k = cfg.tokenize
        ids_of_rows = token_ids(rows, tokenizer)
        full_lengths = [len(ids) for ids in ids_of_rows]
        max_len = resolve_max_seq_len(k.max_seq_len, full_lengths, k.max_drop_share, context_length)
        encoded, truncated = encode_texts(rows, tokenizer, labels, max_len, ids_of_rows)
        lengths = length_report(full_lengths, k.max_seq_len, max_len, 0, truncated, k.max_drop_share, context_length)
        stats = {"rows_in": len(rows), "rows_out": len(encoded), "truncated": truncated,
                 **length_stats([len(r["input_ids"]) for r in encoded]), "labels": labels,
                 "rows_by_label": {label: sum(r["label"] == label for r in encoded) for label in labels}, **lengths}
        summary = (f"tokenize: {len(encoded)} texts, {len(labels)} labels, {truncated} truncated to {max_len} "
                   f"tokens; {length_summary(lengths)}")
        return Tokenized(encoded, [], stats, summary)

    def training_model(self, cfg: HasatConfig, base_dir: Path, train_rows: list[dict]):
        labels = split_labels(train_rows)
        return (*sequence_classifier(base_dir, labels), labels)

    def training_data(self, cfg: HasatConfig, tokenizer: Any, train_rows: list[dict], val_rows: list[dict],
                      labels: Optional[list[str]]) -> TaskData:
        weights = class_weights(train_rows, labels) if cfg.task.class_weights else None
        return classification_data(tokenizer, train_rows, val_rows, weighted_loss(weights) if weights else None)

    def base_for_adapter(self, base_dir: Path, info: dict):
        return sequence_classifier(require_model_folder(base_dir), info["labels"])

    def full_model(self, folder: Path):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = require_model_folder(folder)
        return AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder)

def split_labels(rows: list[dict]) -> list[str]:
    """id -> label as tokenize fixed it; every class must have training rows."""
    by_id = {r["label_id"]: str(r["label"]) for r in rows}
    if sorted(by_id) != list(range(len(by_id))):
        raise HasatError("train split lacks some classes (label ids are not contiguous); re-run split")
    return [by_id[i] for i in range(len(by_id))]
