"""Paired bootstrap confidence intervals for corpus-level metrics (Koehn 2004; sacrebleu's
`paired-bs` does the same for one metric at a time).

Items are resampled with replacement; base and fine-tuned are scored on the *same* resample
(paired), so the interval of the delta reflects how much the comparison depends on which test
items happened to be drawn. A resample is a vector of counts (how often each item was drawn:
multinomial(n, 1/n), the same distribution as n draws with replacement), and its corpus
statistics are `counts @ per_item_stats`: no metric is recomputed from text.
Percentile intervals; the seed makes them reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class PairedResult:
    base: float
    finetuned: float
    delta: float
    base_ci: Interval
    finetuned_ci: Interval
    delta_ci: Interval

    def as_dict(self) -> dict:
        return asdict(self)


def resample_counts(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) draw counts; each row sums to n_items."""
    if n_items < 1 or n_resamples < 1:
        raise ValueError("need at least one item and one resample")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_resamples)


def percentile_interval(samples: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(low), float(high))


def paired_bootstrap(base_stats: np.ndarray, tuned_stats: np.ndarray, score: Callable[[np.ndarray], np.ndarray],
                     counts: np.ndarray, confidence: float = 0.95) -> PairedResult:
    """Corpus scores of both systems, their delta (tuned − base) and percentile intervals of each."""
    if base_stats.shape != tuned_stats.shape or counts.shape[1] != base_stats.shape[0]:
        raise ValueError("base, fine-tuned and resample counts must cover the same items")
    base = float(score(base_stats.sum(axis=0)))
    tuned = float(score(tuned_stats.sum(axis=0)))
    base_samples = score(counts @ base_stats)
    tuned_samples = score(counts @ tuned_stats)
    return PairedResult(base, tuned, tuned - base, percentile_interval(base_samples, confidence),
                        percentile_interval(tuned_samples, confidence),
                        percentile_interval(tuned_samples - base_samples, confidence))
