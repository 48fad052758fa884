"""Class balance for labelled rows: drop (undersample) or repeat (oversample) rows so every class is as
large as the smallest or the largest, or report scikit-learn's "balanced" class weights for training."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Callable, Iterable, Mapping, NamedTuple

from pipeline.data.clean.rows import reject_of, source_file
from pipeline.data.clean.stats import CleanStats
from pipeline.data.records import balanced_class_weights


def class_weights(counts: Mapping[str, int]) -> dict[str, float]:
    """The balanced weights as metrics/clean.json reports them: rounded to 6 digits."""
    return {label: round(weight, 6) for label, weight in balanced_class_weights(counts).items()}


class BalancePlan(NamedTuple):
    drop: set[int]  # positions of rows to drop
    extra: dict[int, int]  # position -> extra copies


def balance_plan(labels: list[str], method: str, seed: int) -> BalancePlan:
    """The drops or copies that make every class as large as the smallest (undersample) or the
    largest (oversample) one. Seeded."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_label[label].append(position)
    rng = random.Random(seed)
    drop: set[int] = set()
    extra: dict[int, int] = Counter()
    if method == "undersample":
        target = min(len(p) for p in by_label.values())
        for label in sorted(by_label):
            drop.update(rng.sample(by_label[label], len(by_label[label]) - target))
    elif method == "oversample":
        target = max(len(p) for p in by_label.values())
        for label in sorted(by_label):
            positions = by_label[label]
            whole, rest = divmod(target - len(positions), len(positions))
            for p in positions:
                extra[p] += whole
            for p in rng.sample(positions, rest):
                extra[p] += 1
    return BalancePlan(drop, dict(extra))


def apply_balance(rows: Iterable[dict], labels: list[str], method: str, seed: int,
                  write: Callable[[dict], None], write_reject: Callable[[dict], None], stats: CleanStats) -> None:
    """Second pass over the kept rows: drop (undersample) or repeat (oversample) to balance classes."""
    stats.labels_before.update(labels)
    drop, extra = balance_plan(labels, method, seed) if method in ("undersample", "oversample") else (set(), {})
    before = Counter(labels)
    for position, record in enumerate(rows):
        label = record.get("label")
        if position in drop:
            _undersampled(record, f"undersampled: class '{label}' has {before[label]} rows, "
                                  f"balanced to {min(before.values())}", write_reject, stats)
            continue
        write(record)
        stats.labels_after[label] += 1
        for copy in range(1, extra.get(position, 0) + 1):
            stats.added += 1
            stats.labels_after[label] += 1
            write({**record, "id": f"{record['id']}-b{copy}", "meta": {**record.get("meta", {}), "balance_copy": copy}})
    if method == "class_weights":
        stats.weights = class_weights(dict(before))


def _undersampled(record: dict, reason: str, write_reject: Callable[[dict], None], stats: CleanStats) -> None:
    """A kept row dropped by balancing moves from kept to rejected, in the totals and its source's."""
    stats.kept -= 1
    stats.rejected += 1
    stats.reasons["undersampled"] += 1
    stats.by_source[source_file(record["source"])]["kept"] -= 1
    stats.by_source[source_file(record["source"])]["rejected"] += 1
    write_reject(reject_of(record, reason))
