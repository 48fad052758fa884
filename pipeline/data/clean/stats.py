"""What a clean run counts (`CleanStats`, which holds `rows_in == kept + rejected`), the stats JSON it
writes (metrics/clean.json) and the stop when too large a share of the rows is rejected."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Optional

from pipeline.config import CleanConfig
from pipeline.data.clean.rows import BatchResult
from pipeline.data.rejects import check_reject_share as _check_share
from pipeline.errors import HasatError

TRANSFORMS = ("mojibake", "html", "unicode", "control_chars", "whitespace", "pii")
FILTERS = ("empty", "length_chars", "length_tokens", "language", "exact_dedup", "near_dedup")
IN_ORDER = ("dedup_decisions", "write")  # main process: duplicate lookups and verification, writing rows


@dataclass
class CleanStats:
    rows_in: int = 0
    kept: int = 0
    rejected: int = 0
    added: int = 0
    reasons: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    rows_seen: Counter = field(default_factory=Counter)
    by_source: dict = field(default_factory=lambda: defaultdict(Counter))
    labels_before: Counter = field(default_factory=Counter)
    labels_after: Counter = field(default_factory=Counter)
    weights: dict = field(default_factory=dict)
    wall_seconds: float = 0.0

    def add_batch(self, batch: BatchResult) -> None:
        self.counts.update(batch.counts)
        self.seconds.update(batch.seconds)
        self.rows_seen.update(batch.rows_seen)

    def check(self) -> None:
        assert self.rows_in == self.kept + self.rejected, (self.rows_in, self.kept, self.rejected)


def check_reject_share(stats: CleanStats, max_share: float) -> None:
    if not stats.rows_in:
        raise HasatError("clean: no rows to clean (is the ingest output empty?)")
    filtered = stats.rejected - stats.reasons.get("undersampled", 0)  # balancing drops rows by design

    def most_often() -> str:
        return "most often: " + ", ".join(f"{code} {n}" for code, n in stats.reasons.most_common(3))

    _check_share("clean", filtered, stats.rows_in, max_share, "clean.max_reject_share", most_often)


def _steps(stats: CleanStats) -> dict:
    """CPU seconds per step: the per-row steps (TRANSFORMS, FILTERS; near_dedup is the MinHash signatures)
    run in the worker processes when there are several, the IN_ORDER steps in the main process."""
    steps = {}
    for step in TRANSFORMS + FILTERS + IN_ORDER:
        if stats.rows_seen.get(step):
            seconds = stats.seconds[step]
            steps[step] = {"rows": stats.rows_seen[step], "seconds": round(seconds, 3),
                           "rows_per_s": round(stats.rows_seen[step] / seconds) if seconds > 0 else None}
    return steps


def stats_dict(stats: CleanStats, cfg: CleanConfig, bands: Optional[tuple[int, int]] = None) -> dict:
    """The stats JSON: numbers nested by topic (MLflow logs them as clean.<path>)."""
    out = {
        "rows_in": stats.rows_in, "rows_kept": stats.kept, "rows_rejected": stats.rejected,
        "rows_added_by_oversampling": stats.added, "rows_out": stats.kept + stats.added,
        "rejected_by_reason": dict(sorted(stats.reasons.items())),
        "fields_changed": {s: stats.counts.get(f"changed.{s}", 0) for s in TRANSFORMS if s != "pii"},
        "pii_masked": {k: stats.counts.get(f"pii.{k}", 0) for k in cfg.pii.kinds} if cfg.pii.enabled else {},
        "flagged_language": stats.counts.get("flagged_language", 0),
        "uncertain_language": stats.counts.get("uncertain_language", 0),  # kept, meta.flags uncertain_<lang>
        "near_duplicate_comparisons": stats.counts.get("near_comparisons", 0),  # signatures verified
        "by_source": {name: dict(c) for name, c in sorted(stats.by_source.items())},
        "steps": _steps(stats),
        "seconds": {"wall": round(stats.wall_seconds, 3),
                    "steps": round(sum(stats.seconds[s] for s in TRANSFORMS + FILTERS + IN_ORDER), 3)},
    }
    if bands:
        out["near_duplicates_lsh"] = {"bands": bands[0], "rows_per_band": bands[1]}
    if stats.labels_before:
        out["labels_before_balance"] = dict(sorted(stats.labels_before.items()))
        out["labels_out"] = dict(sorted(stats.labels_after.items()))
    if stats.weights:
        out["class_weights"] = stats.weights
    return out
