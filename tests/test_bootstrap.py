import time

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from pipeline.eval.bootstrap import Interval, paired_bootstrap, percentile_interval, resample_counts
from pipeline.eval.metrics import SPECS, mean_score, text_statistics
from tests.test_metrics import PREDS, REFS


def test_resample_counts_are_seeded_draws_with_replacement():
    counts = resample_counts(7, 500, seed=3)
    assert counts.shape == (500, 7) and (counts.sum(axis=1) == 7).all()
    assert np.array_equal(counts, resample_counts(7, 500, seed=3))
    assert not np.array_equal(counts, resample_counts(7, 500, seed=4))
    # each item is drawn once per resample on average
    assert counts.mean() == pytest.approx(1.0)


def test_resampled_statistics_equal_sacrebleu_on_the_resampled_corpus():
    """counts @ per-item statistics is the corpus score of the explicitly resampled text."""
    stats, _ = text_statistics(PREDS, REFS)
    for row in resample_counts(len(PREDS), 5, seed=0):
        hyps = [p for p, c in zip(PREDS, row) for _ in range(c)]
        refs = [r for r, c in zip(REFS, row) for _ in range(c)]
        assert SPECS["chrf"].score(row @ stats["chrf"]) == pytest.approx(CHRF().corpus_score(hyps, [refs]).score)
        assert SPECS["chrf_pp"].score(row @ stats["chrf_pp"]) == pytest.approx(
            CHRF(word_order=2).corpus_score(hyps, [refs]).score)
        assert SPECS["bleu"].score(row @ stats["bleu"]) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)


def test_identical_systems_have_a_zero_delta_that_is_not_significant():
    stats = np.column_stack([np.arange(10.0), np.ones(10)])
    result = paired_bootstrap(stats, stats.copy(), mean_score, resample_counts(10, 1000, seed=1))
    assert result.delta == 0 and result.delta_ci == Interval(0.0, 0.0) and not result.delta_ci.excludes_zero()
    assert result.base_ci.low < result.base == 4.5 < result.base_ci.high


def test_pairing_removes_item_difficulty_from_the_delta():
    # items differ a lot in difficulty, the tuned model is better by 2 on every item: unpaired
    # intervals overlap, the paired delta interval is exactly [2, 2]
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, 30)
    result = paired_bootstrap(np.column_stack([base, np.ones(30)]), np.column_stack([base + 2, np.ones(30)]),
                              mean_score, resample_counts(30, 1000, seed=2))
    assert result.delta_ci.low == pytest.approx(2) and result.delta_ci.high == pytest.approx(2)
    assert result.delta_ci.excludes_zero()
    assert result.finetuned_ci.low < result.base_ci.high  # the separate intervals overlap


def test_interval_of_a_proportion_matches_the_normal_approximation():
    correct = np.array([1.0] * 50 + [0.0] * 50)
    samples = mean_score(resample_counts(100, 4000, seed=5) @ np.column_stack([correct, np.ones(100)]))
    ci = percentile_interval(samples, 0.95)
    half_width = 1.96 * np.sqrt(0.25 / 100)
    assert ci.low == pytest.approx(0.5 - half_width, abs=0.02) and ci.high == pytest.approx(0.5 + half_width, abs=0.02)


def test_a_thousand_resamples_of_every_metric_are_fast():
    preds, refs = PREDS * 10, REFS * 10
    stats, _ = text_statistics(preds, refs)
    counts = resample_counts(len(preds), 1000, seed=0)
    started = time.perf_counter()
    for key in stats:
        paired_bootstrap(stats[key], stats[key][::-1].copy(), SPECS[key].score, counts)
    assert time.perf_counter() - started < 10


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError):
        paired_bootstrap(np.ones((3, 2)), np.ones((4, 2)), mean_score, resample_counts(3, 10, 0))
    with pytest.raises(ValueError):
        resample_counts(0, 10, 0)
