"""Scoring a classifier against its baselines: the bootstrap statistics agree with scikit-learn,
the differences are paired, the table says plainly who wins."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from pipeline.eval import classification as scoring

LABELS = ["ekonomi", "magazin", "spor", "tarim"]


def random_predictions(seed: int, n: int = 80, accuracy: float = 0.7):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(LABELS, size=n, p=[0.3, 0.1, 0.2, 0.4]).tolist()
    y_pred = [t if rng.random() < accuracy else str(rng.choice(LABELS)) for t in y_true]
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_of_summed_item_stats_equal_scikit_learn(seed):
    y_true, y_pred = random_predictions(seed)
    index = {label: i for i, label in enumerate(LABELS)}
    stats = scoring.item_stats([index[y] for y in y_true], [index[p] for p in y_pred], len(LABELS))
    got = scoring.scores(stats.sum(axis=0), len(LABELS))
    assert got["accuracy"] == pytest.approx(100 * accuracy_score(y_true, y_pred))
    assert got["macro_f1"] == pytest.approx(100 * f1_score(y_true, y_pred, average="macro"))
    assert got["weighted_f1"] == pytest.approx(100 * f1_score(y_true, y_pred, average="weighted"))
    # a class absent from a resample (and never predicted there) is left out of the macro average
    keep = [i for i, y in enumerate(y_true) if y != "magazin" and y_pred[i] != "magazin"]
    sub = scoring.scores(stats[keep].sum(axis=0), len(LABELS))
    assert sub["macro_f1"] == pytest.approx(100 * f1_score([y_true[i] for i in keep], [y_pred[i] for i in keep],
                                                           average="macro"))


def compared(tuned_accuracy: float, tfidf_accuracy: float, n: int = 120):
    y_true, tuned = random_predictions(3, n, tuned_accuracy)
    rng = np.random.default_rng(9)
    tfidf = [t if rng.random() < tfidf_accuracy else str(rng.choice(LABELS)) for t in y_true]
    predictions = {"majority": ["tarim"] * n, "tfidf_char_lr": tfidf, "finetuned": tuned}
    return scoring.compare(y_true, predictions, LABELS, resamples=500, confidence=0.95, seed=0), y_true, predictions


def test_compare_reports_every_system_with_intervals_and_paired_differences():
    result, y_true, predictions = compared(0.95, 0.5)
    for name, _ in scoring.SYSTEMS:
        for key, _ in scoring.METRICS:
            ci = result["ci"][name][key]
            assert ci["low"] <= result["systems"][name][key] <= ci["high"]
    assert result["systems"]["majority"]["accuracy"] == pytest.approx(100 * y_true.count("tarim") / len(y_true),
                                                                      abs=0.01)
    versus = result["vs_baselines"]["tfidf_char_lr"]
    assert versus["delta"]["macro_f1"] == pytest.approx(
        result["systems"]["finetuned"]["macro_f1"] - result["systems"]["tfidf_char_lr"]["macro_f1"], abs=0.02)
    assert versus["verdict"]["macro_f1"] == "better" and result["beats_tfidf"] and result["beats_majority"]
    assert set(result["per_class"]["finetuned"]) == set(LABELS)
    assert sum(row["support"] for row in result["per_class"]["finetuned"].values()) == len(y_true)
    table = scoring.format_table({**result, "test_rows": len(y_true), "train_rows": 500, "labels": LABELS,
                            "bootstrap": {"resamples": 500, "confidence": 0.95, "seed": 0}})
    assert "fine-tuned − TF-IDF char n-grams + LR" in table
    assert table.splitlines()[-1].endswith("the fine-tuned classifier beats TF-IDF + logistic regression, and the "
                                           "interval excludes 0.")


def test_a_worse_classifier_is_called_worse_and_a_tie_is_not_a_win():
    worse, *_ = compared(0.4, 0.95)
    worse.update(test_rows=120, train_rows=1, labels=LABELS, bootstrap={"confidence": 0.95})
    assert worse["vs_baselines"]["tfidf_char_lr"]["verdict"]["macro_f1"] == "worse" and not worse["beats_tfidf"]
    assert "is WORSE than TF-IDF" in scoring.headline(worse)
    y_true, same = random_predictions(5, 60, 0.8)
    tie = scoring.compare(y_true, {"majority": same, "tfidf_char_lr": same, "finetuned": same}, LABELS, 200, 0.95, 0)
    assert tie["vs_baselines"]["tfidf_char_lr"]["delta_ci"]["macro_f1"] == {"low": 0.0, "high": 0.0}
    assert tie["vs_baselines"]["tfidf_char_lr"]["verdict"]["macro_f1"] == "n.s." and not tie["beats_tfidf"]


def test_misclassified_items_come_most_confident_first():
    rows = [{"source": f"f:{i}", "text": f"t{i}", "label": label} for i, label in enumerate(["spor", "tarim", "spor"])]
    predictions = {"majority": ["tarim"] * 3, "tfidf_char_lr": ["spor", "tarim", "tarim"],
                   "finetuned": ["tarim", "tarim", "tarim"]}
    items = scoring.item_rows(rows, predictions, [0.6, 0.99, 0.9])
    assert [it["correct"] for it in items] == [False, True, False]
    assert [it["source"] for it in scoring.misclassified(items)] == ["f:2", "f:0"]
