"""Training a text classifier: the causal base with a sequence-classification head (the last
non-pad token is pooled, as GPT2/LlamaForSequenceClassification do), class-weighted loss, features."""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Optional, Sequence

import torch

from pipeline.data.records import balanced_class_weights
from pipeline.errors import HasatError
from pipeline.train.trainer import TaskData

log = logging.getLogger("hasat")


def class_weights(rows: list[dict], labels: Sequence[str]) -> list[float]:
    """Inverse-frequency weights, mean 1 over the rows ("balanced" as scikit-learn defines it)."""
    counts = Counter(str(r["label"]) for r in rows)
    missing = [label for label in labels if not counts[label]]
    if missing:
        raise HasatError(f"train split has no example of class(es) {', '.join(missing)}")
    weights = balanced_class_weights({label: counts[label] for label in labels})
    return [weights[label] for label in labels]


def sequence_classifier(base_dir, labels: Sequence[str], dtype=None):
    """The causal base with a fresh classification head; pad token set so pooling finds the last token.

    The head is missing from the causal checkpoint by design: finetune trains it, and evaluate/export
    restore the trained one from the adapter right after. transformers' load report ("score.weight
    MISSING ... train on your downstream task") is kept back for that head only; anything else it
    would report (other missing, unexpected or mismatched weights) is still logged."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    with _load_report_held_back():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, dtype=dtype or "auto", output_loading_info=True)
    unexpected = load_problems(model, info)
    if unexpected:
        log.warning("loading %s as a classifier: %s", base_dir, "; ".join(unexpected))
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


@contextmanager
def _load_report_held_back():
    """transformers logs its load report as one warning of modeling_utils' logger; hold it back here."""
    logger = logging.getLogger("transformers.modeling_utils")
    held_back = lambda record: "LOAD REPORT" not in record.getMessage()
    logger.addFilter(held_back)
    try:
        yield
    finally:
        logger.removeFilter(held_back)


def load_problems(model, info: dict) -> list[str]:
    """What the load report says beyond the new head (the modules outside the base model, e.g. `score`)."""
    heads = tuple(f"{name}." for name, _ in model.named_children() if name != model.base_model_prefix)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(heads))
    problems = [f"{what}: {', '.join(sorted(map(str, keys)))}" for what, keys in
                (("missing", missing), ("unexpected", info["unexpected_keys"]),
                 ("mismatched", [k[0] if isinstance(k, tuple) else k for k in info["mismatched_keys"]]),
                 ("errors", info["error_msgs"])) if keys]
    return problems


def weighted_loss(weights: Optional[list[float]]):
    """A Trainer `compute_loss_func`: cross-entropy, class-weighted when weights are given."""
    weight = torch.tensor(weights, dtype=torch.float32) if weights else None

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits
        return torch.nn.functional.cross_entropy(logits.float(), labels.to(logits.device),
                                                 weight=None if weight is None else weight.to(logits.device))

    return loss


def classification_data(tokenizer, train_rows: list[dict], val_rows: list[dict],
                        loss_func: Optional[Callable] = None) -> TaskData:
    from transformers import DataCollatorWithPadding

    def features(rows):
        return [{"input_ids": r["input_ids"], "attention_mask": [1] * len(r["input_ids"]), "labels": r["label_id"],
                 "length": len(r["input_ids"])} for r in rows]

    padding = DataCollatorWithPadding(tokenizer, padding=True, return_tensors="pt")
    collator = lambda batch: padding([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in batch])
    return TaskData(features(train_rows), features(val_rows), collator, "SEQ_CLS", compute_loss_func=loss_func,
                    stats={"train_rows": len(train_rows)})
