"""Batches for causal-LM training: features from tokenized rows, first-fit-decreasing sample
packing that keeps samples apart (positions restart, no cross-sample labels), and the collators."""

from __future__ import annotations

import torch

from pipeline.errors import HasatError
from pipeline.train.prompts import IGNORE_INDEX


def to_features(rows: list[dict]) -> list[dict]:
    return [{"input_ids": r["input_ids"], "attention_mask": [1] * len(r["input_ids"]), "labels": r["labels"],
             "length": len(r["input_ids"])} for r in rows]


def pack(rows: list[dict], pack_length: int) -> list[dict]:
    """First-fit-decreasing packing of samples into rows of at most `pack_length` tokens.

    Position ids restart at 0 for every sample: with no attention mask, transformers builds a
    block-diagonal causal mask from them, so packed samples never attend to each other. The
    first label of every sample is masked, so no sample is trained to predict the next one.
    """
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: (-len(rows[i]["input_ids"]), i)):
        size = len(rows[i]["input_ids"])
        if size > pack_length:
            raise HasatError(f"train.pack_length={pack_length} is shorter than a {size}-token sample")
        slot = next((b for b, free in enumerate(room) if free >= size), None)
        if slot is None:
            bins.append([]), room.append(pack_length)
            slot = len(bins) - 1
        bins[slot].append(i)
        room[slot] -= size
    packed = []
    for members in bins:
        input_ids, labels, position_ids = [], [], []
        for i in members:
            ids = rows[i]["input_ids"]
            input_ids += ids
            labels += [IGNORE_INDEX] + rows[i]["labels"][1:]
            position_ids += list(range(len(ids)))
        packed.append({"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
                       "length": len(input_ids)})
    return packed


class PackedCollator:
    """Pads packed rows; padding is its own dummy sequence (positions restart, labels -100)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": [], "labels": [], "position_ids": []}
        for f in features:
            extra = width - len(f["input_ids"])
            batch["input_ids"].append(f["input_ids"] + [self.pad_token_id] * extra)
            batch["labels"].append(f["labels"] + [IGNORE_INDEX] * extra)
            batch["position_ids"].append(f["position_ids"] + list(range(extra)))
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


class EvalAwareCollator:
    """Packed batches for training, plain padded batches for validation (comparable losses)."""

    def __init__(self, train_collator, eval_collator):
        self.train_collator, self.eval_collator = train_collator, eval_collator

    def __call__(self, features: list[dict]) -> dict:
        if "position_ids" in features[0]:
            return self.train_collator(features)
        return self.eval_collator([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in features])
