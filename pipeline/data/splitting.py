"""Seeded train/validation/test split: grouped by prompt (no prompt lands in two splits) and,
for labelled data, stratified by label. Sizes are fractions (< 1) or row-group counts (>= 1)."""

from __future__ import annotations

import random
from collections import defaultdict

from pipeline.errors import HasatError
from pipeline.data.records import prompt_key

SPLITS = ("train", "val", "test")


def requested(size: float, n: int) -> int:
    """A fraction of n (at least 1), or an absolute count."""
    return max(1, round(size * n)) if size < 1 else int(size)


def _allocate(keys: list[str], n_val: int, n_test: int) -> dict[str, list[str]]:
    return {"test": keys[:n_test], "val": keys[n_test:n_test + n_val], "train": keys[n_test + n_val:]}


def _stratified(keys_by_label: dict[str, list[str]], n_val: int, n_test: int, n_keys: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for label in sorted(keys_by_label):
        keys = keys_by_label[label]
        share_test = max(1, round(len(keys) * n_test / n_keys))
        share_val = max(1, round(len(keys) * n_val / n_keys))
        if share_test + share_val >= len(keys):
            raise HasatError(f"split: class '{label}' has {len(keys)} examples; a stratified split needs at least "
                             f"{share_test + share_val + 1} (val {share_val}, test {share_test}, train 1)")
        for name, part in _allocate(keys, share_val, share_test).items():
            out[name] += part
    return out


def split_records(records: list[dict], val_size: float, test_size: float, seed: int,
                  stratify: bool = False) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[prompt_key(record)].append(record)
    keys = sorted(groups)
    if len(keys) < 3:
        raise HasatError(f"split: {len(keys)} distinct prompts; need at least 3 for train/val/test")
    random.Random(seed).shuffle(keys)
    n_test, n_val = requested(test_size, len(keys)), requested(val_size, len(keys))
    if n_test + n_val >= len(keys):
        raise HasatError(f"split: {len(keys)} prompts cannot fill val={n_val} and test={n_test} and leave training rows")
    if stratify:
        keys_by_label: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            keys_by_label[str(groups[key][0]["label"])].append(key)
        assigned = _stratified(keys_by_label, n_val, n_test, len(keys))
    else:
        assigned = _allocate(keys, n_val, n_test)
    return {name: [r for key in assigned[name] for r in groups[key]] for name in SPLITS}


def leaked_prompts(splits: dict[str, list[dict]]) -> int:
    """How many prompt keys appear in more than one split (0 is the only good answer)."""
    seen: dict[str, set] = defaultdict(set)
    for name, rows in splits.items():
        for record in rows:
            seen[prompt_key(record)].add(name)
    return sum(1 for names in seen.values() if len(names) > 1)


def label_counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[str(row["label"])] += 1
    return dict(sorted(counts.items()))
