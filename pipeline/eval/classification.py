"""The classification side of `evaluate`: the fine-tuned LM classifier's predictions against the
majority class and TF-IDF character n-grams + logistic regression (both baselines are here too),
trained on the same train split and scored on the same test texts, in one table with paired
bootstrap intervals.

Accuracy, macro-F1 and weighted F1 are corpus statistics of per-item counts (correct; per class
tp, fp, fn), so a bootstrap resample is `counts @ per_item_stats` as for the generation metrics
(`pipeline.eval.bootstrap`), and the difference fine-tuned − baseline is paired: both are scored on the
same resampled texts. A class that a resample neither contains nor predicts is left out of that
resample's macro average (scikit-learn does the same when it infers the classes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.eval.bootstrap import percentile_interval, resample_counts
from pipeline.eval.tables import format_cell, text_table, verdict
from pipeline.progress import Progress

SYSTEMS = (("majority", "majority class"), ("tfidf_char_lr", "TF-IDF char n-grams + LR"),
           ("finetuned", "fine-tuned LM classifier"))
BASELINES = ("majority", "tfidf_char_lr")
METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted F1"))
HEADLINE_METRIC = "macro_f1"


def item_stats(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """(n_items, 1 + 3 * n_labels): correct, then one-hot tp, fp and fn per class."""
    n = len(y_true)
    stats = np.zeros((n, 1 + 3 * n_labels))
    rows = np.arange(n)
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    hit = true == pred
    stats[:, 0] = hit
    stats[rows[hit], 1 + true[hit]] = 1  # tp of the true class
    stats[rows[~hit], 1 + n_labels + pred[~hit]] = 1  # fp of the predicted class
    stats[rows[~hit], 1 + 2 * n_labels + true[~hit]] = 1  # fn of the true class
    return stats


def scores(summed: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """accuracy / macro_f1 / weighted_f1 (0–100) of summed item stats; works on (..., 1 + 3k)."""
    tp = summed[..., 1:1 + n_labels]
    fp = summed[..., 1 + n_labels:1 + 2 * n_labels]
    fn = summed[..., 1 + 2 * n_labels:]
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    present = denominator > 0
    support = tp + fn
    total = support.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"accuracy": 100 * np.nan_to_num(summed[..., 0] / total),
                "macro_f1": 100 * np.nan_to_num((f1 * present).sum(axis=-1) / present.sum(axis=-1)),
                "weighted_f1": 100 * np.nan_to_num((f1 * support).sum(axis=-1) / total)}


def _interval(samples: np.ndarray, confidence: float) -> dict:
    interval = percentile_interval(samples, confidence)
    return {"low": round(interval.low, 2), "high": round(interval.high, 2)}


def compare(y_true: Sequence[str], predictions: dict[str, Sequence[str]], labels: Sequence[str], resamples: int,
            confidence: float, seed: int) -> dict:
    """The systems' scores with intervals, and fine-tuned − each baseline with paired intervals.

    `predictions` maps every name in SYSTEMS to predicted labels in the order of `y_true`."""
    from pipeline.eval.classification_metrics import classification_metrics

    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    true_ids = [index[y] for y in y_true]
    stats = {name: item_stats(true_ids, [index[p] for p in predictions[name]], k) for name, _ in SYSTEMS}
    counts = resample_counts(len(true_ids), resamples, seed)
    section: dict = {"systems": {}, "ci": {}, "vs_baselines": {}, "per_class": {}}
    point, sampled = {}, {}  # per system: {metric: score}, {metric: score of each resample}
    for name, _ in SYSTEMS:
        point[name] = scores(stats[name].sum(axis=0), k)
        sampled[name] = scores(counts @ stats[name], k)
        section["systems"][name] = {key: round(float(point[name][key]), 2) for key, _ in METRICS}
        section["ci"][name] = {key: _interval(sampled[name][key], confidence) for key, _ in METRICS}
        section["per_class"][name] = {
            label: {m: round(v, 2) if isinstance(v, float) else v for m, v in row.items()}
            for label, row in classification_metrics(list(y_true), list(predictions[name]), labels)["per_class"].items()}
    for name in BASELINES:  # paired: both systems scored on the same resampled texts
        delta = {key: round(float(point["finetuned"][key] - point[name][key]), 2) for key, _ in METRICS}
        delta_ci = {key: _interval(sampled["finetuned"][key] - sampled[name][key], confidence) for key, _ in METRICS}
        section["vs_baselines"][name] = {"delta": delta, "delta_ci": delta_ci,
                                         "verdict": {key: verdict(delta_ci[key]) for key, _ in METRICS}}
    tuned, tfidf = section["systems"]["finetuned"], section["systems"]["tfidf_char_lr"]
    section["beats_tfidf"] = tuned[HEADLINE_METRIC] > tfidf[HEADLINE_METRIC]
    section["beats_majority"] = tuned[HEADLINE_METRIC] > section["systems"]["majority"][HEADLINE_METRIC]
    return section


def headline(result: dict) -> str:
    """One plain sentence: does the fine-tuned classifier beat TF-IDF + LR on macro-F1?"""
    tuned = result["systems"]["finetuned"][HEADLINE_METRIC]
    tfidf = result["systems"]["tfidf_char_lr"][HEADLINE_METRIC]
    versus = result["vs_baselines"]["tfidf_char_lr"]
    ci = versus["delta_ci"][HEADLINE_METRIC]
    where = (f"macro-F1 {tuned:.2f} vs {tfidf:.2f}, delta {versus['delta'][HEADLINE_METRIC]:+.2f}, "
             f"{result['bootstrap']['confidence']:.0%} CI [{ci['low']:+.2f}, {ci['high']:+.2f}]")
    said = {"better": "beats TF-IDF + logistic regression, and the interval excludes 0",
            "worse": "is WORSE than TF-IDF + logistic regression, and the interval excludes 0",
            "n.s.": ("beats TF-IDF + logistic regression on this test split, but the interval includes 0"
                     if result["beats_tfidf"] else
                     "does NOT beat TF-IDF + logistic regression; the interval includes 0")}
    return f"Verdict ({where}): the fine-tuned classifier {said[versus['verdict'][HEADLINE_METRIC]]}."


def table_rows(result: dict) -> list[tuple[str, ...]]:
    """Header, one row per system, one row per (fine-tuned − baseline): cells for text and HTML."""
    rows = [("system", *(label for _, label in METRICS))]
    for name, label in SYSTEMS:
        rows.append((label, *(format_cell(result["systems"][name][key], result["ci"][name][key])
                              for key, _ in METRICS)))
    names = dict(SYSTEMS)
    for name in BASELINES:
        versus = result["vs_baselines"][name]
        rows.append((f"fine-tuned − {names[name]}",
                     *(format_cell(versus["delta"][key], versus["delta_ci"][key], signed=True)
                       + f" {versus['verdict'][key]}" for key, _ in METRICS)))
    return rows


def format_table(result: dict) -> str:
    b = result["bootstrap"]
    lines = [f"Test split: {result['test_rows']} texts, {len(result['labels'])} classes; baselines trained on the "
             f"same {result['train_rows']} training texts",
             f"[low, high]: {b['confidence']:.0%} bootstrap intervals over test texts ({b['resamples']} resamples, "
             f"seed {b['seed']}); differences are paired (better / worse: the interval excludes 0; n.s.: it does not)"]
    lines += text_table(table_rows(result), rules_after=(0, len(SYSTEMS)))
    lines.append(headline(result))
    return "\n".join(lines)


def item_rows(rows: list[dict], predictions: dict[str, Sequence[str]], confidence: Sequence[float]) -> list[dict]:
    """One record per test text: the true label, every system's prediction, the classifier's confidence."""
    items = []
    for i, row in enumerate(rows):
        item = {"source": row.get("source", "?"), "text": row["text"], "label": str(row["label"])}
        item.update({name: predictions[name][i] for name, _ in SYSTEMS})
        item["finetuned_confidence"] = round(float(confidence[i]), 4)
        item["correct"] = item["finetuned"] == item["label"]
        items.append(item)
    return items


def misclassified(items: list[dict]) -> list[dict]:
    """The fine-tuned classifier's errors, most confident first (the ones to look at)."""
    return sorted((it for it in items if not it["correct"]), key=lambda it: -it["finetuned_confidence"])


def predict(model, tokenizer, rows: list[dict], batch_size: int) -> list[int]:
    """Predicted label ids, in the order of `rows` (batched, right padding)."""
    return predict_with_confidence(model, tokenizer, rows, batch_size)[0]


def predict_with_confidence(model, tokenizer, rows: list[dict], batch_size: int,
                            desc: str | None = None) -> tuple[list[int], list[float]]:
    """Predicted label ids and the softmax probability of each prediction, in the order of `rows`
    (with `desc`, progress under that name: pipeline.progress)."""
    import torch

    model.eval()
    dev = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    predictions: list[int] = []
    confidence: list[float] = []
    progress = Progress(len(rows), desc, unit="row")
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
            mask[i, : len(row["input_ids"])] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
        best = logits.softmax(-1).max(-1)
        predictions += best.indices.tolist()
        confidence += best.values.tolist()
        progress.update(len(batch))
    progress.close()
    return predictions, confidence


def baselines(train_rows: list[dict], test_rows: list[dict], seed: int = 0) -> dict[str, list[str]]:
    """Predicted labels of the majority class and of TF-IDF char n-grams + logistic regression."""
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from pipeline.data.turkish import tr_lower

    texts, labels = [r["text"] for r in train_rows], [str(r["label"]) for r in train_rows]
    test_texts = [r["text"] for r in test_rows]
    majority = DummyClassifier(strategy="most_frequent").fit(texts, labels)
    tfidf = make_pipeline(
        # character n-grams within word boundaries suit Turkish suffixes; Turkish-aware lower-casing
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), preprocessor=tr_lower, sublinear_tf=True),
        LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed),
    ).fit(texts, labels)
    return {"majority": [str(p) for p in majority.predict(test_texts)],
            "tfidf_char_lr": [str(p) for p in tfidf.predict(test_texts)]}
