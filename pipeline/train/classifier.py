"""Training a text classifier: the causal base with a sequence-classification head (the last
non-pad token is pooled, as GPT2/LlamaForSequenceClassification do), class-weighted loss, features."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Optional, Sequence

import torch

from pipeline.data.records import balanced_class_weights
from pipeline.errors import HasatError
from pipeline.train.trainer import TaskData


def class_weights(rows: list[dict], labels: Sequence[str]) -> list[float]:
    """Inverse-frequency weights, mean 1 over the rows ("balanced" as scikit-learn defines it)."""
    counts = Counter(str(r["label"]) for r in rows)
    missing = [label for label in labels if not counts[label]]
    if missing:
        raise HasatError(f"train split has no example of class(es) {', '.join(missing)}")
    weights = balanced_class_weights({label: counts[label] for label in labels})
    return [weights[label] for label in labels]


def sequence_classifier(base_dir, labels: Sequence[str], dtype=None):
    """The causal base with a fresh classification head; pad token set so pooling finds the last token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, dtype=dtype or "auto")
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


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
