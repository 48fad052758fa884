"""Generation metrics that are correct for Turkish, as per-item sufficient statistics.

Every metric is a pair: per-item statistics (an `n_items × k` array) and a function that turns
their column sums into the corpus score. The corpus score is `score(stats.sum(0))`, and a
bootstrap resample is `score(counts @ stats)`, so resampling never re-tokenises a string.

- chrF, chrF++ (word_order=2) and BLEU are sacrebleu's own statistics and formulas
  (`_extract_corpus_statistics` / `_compute_score_from_stats`: what `corpus_score` does), so the
  scores equal `corpus_score` and the published signatures describe them.
- ROUGE-1/2/L (rouge-score, F-measure) with a tokenizer that keeps ç ğ ı ö ş ü and lower-cases
  the Turkish way, no (English) stemmer; averaged over items as rouge-score's aggregator does.
- Exact match and token F1 (SQuAD-style bag of words) after Turkish-aware normalisation.
- Perplexity of the reference answers: exp(total NLL / total tokens) over the answer tokens.
- Repetition: the share of answers in which a word 3-gram occurs three or more times (the loops of
  an undertrained model: "yüzde düşük ve yüzde düşük ve ..."); needs no reference, lower is better.
All scores are on a 0–100 scale except perplexity.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

from pipeline.data.turkish import normalise_for_match, words


class TurkishRougeTokenizer:
    """rouge_score's default tokenizer keeps only [a-z0-9]: "Buğday" would become "bu day"."""

    def tokenize(self, text: str) -> list[str]:
        return words(text)


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    higher_is_better: bool
    score: Callable[[np.ndarray], np.ndarray]  # (..., k) summed statistics -> (...) scores


def mean_score(sums: np.ndarray) -> np.ndarray:
    """Statistics [value, 1] per item: the mean value."""
    return sums[..., 0] / np.maximum(sums[..., 1], 1)


def _perplexity_score(sums: np.ndarray) -> np.ndarray:
    """Statistics [NLL sum, token count] per item: exp of the mean NLL per token."""
    with np.errstate(over="ignore"):
        return np.exp(sums[..., 0] / np.maximum(sums[..., 1], 1))


def _sacrebleu_score(metric) -> Callable[[np.ndarray], np.ndarray]:
    def score(sums: np.ndarray) -> np.ndarray:
        flat = np.asarray(sums).reshape(-1, sums.shape[-1])
        out = [metric._compute_score_from_stats([int(round(v)) for v in row]).score for row in flat]
        return np.asarray(out, dtype=float).reshape(sums.shape[:-1])
    return score


def _chrf(word_order: int = 0) -> CHRF:
    return CHRF(word_order=word_order)


SACREBLEU = {"chrf": _chrf, "chrf_pp": lambda: _chrf(word_order=2), "bleu": BLEU}

SPECS: dict[str, MetricSpec] = {
    "chrf": MetricSpec("chrf", "chrF", True, _sacrebleu_score(_chrf())),
    "chrf_pp": MetricSpec("chrf_pp", "chrF++", True, _sacrebleu_score(_chrf(word_order=2))),
    "bleu": MetricSpec("bleu", "BLEU", True, _sacrebleu_score(BLEU())),
    "rouge_1": MetricSpec("rouge_1", "ROUGE-1", True, mean_score),
    "rouge_2": MetricSpec("rouge_2", "ROUGE-2", True, mean_score),
    "rouge_l": MetricSpec("rouge_l", "ROUGE-L", True, mean_score),
    "exact_match": MetricSpec("exact_match", "exact match", True, mean_score),
    "token_f1": MetricSpec("token_f1", "token F1", True, mean_score),
    "perplexity": MetricSpec("perplexity", "perplexity", False, _perplexity_score),
    "repetition": MetricSpec("repetition", "repetition", False, mean_score),
    "known_words": MetricSpec("known_words", "known words", True, lambda sums: 100.0 * mean_score(sums)),
}
TEXT_METRICS = ("chrf", "chrf_pp", "bleu", "rouge_1", "rouge_2", "rouge_l", "exact_match", "token_f1", "repetition")
REPEAT_N, REPEAT_TIMES = 3, 3  # an answer repeats itself when a word 3-gram occurs 3 or more times


def _check(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references) or not references:
        raise ValueError("need the same, non-zero number of predictions and references")


def rouge(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """Per-item ROUGE-1/2/L F-measure (0–100) with the Turkish tokenizer, stemmer off."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False,
                                      tokenizer=TurkishRougeTokenizer())
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    return {key: [s[name].fmeasure * 100 for s in scores]
            for key, name in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL"))}


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    return rouge(predictions, references)["rouge_l"]


def exact_match(predictions: list[str], references: list[str]) -> list[float]:
    return [100.0 * (normalise_for_match(p) == normalise_for_match(r)) for p, r in zip(predictions, references)]


def repeats(text: str, n: int = REPEAT_N, times: int = REPEAT_TIMES) -> bool:
    """Some word n-gram (Turkish-normalised words) occurs `times` times or more in `text`."""
    tokens = words(text)
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return any(count >= times for count in grams.values())


def repetition(predictions: list[str]) -> list[float]:
    return [100.0 * repeats(p) for p in predictions]


def vocabulary(rows: list[dict]) -> set[str]:
    """Turkish-normalised words of the training rows' prompts and answers (for `known_statistics`)."""
    known: set[str] = set()
    for row in rows:
        for key in ("prompt_text", "reference", "instruction", "input", "output"):
            if isinstance(row.get(key), str):
                known.update(words(row[key]))
    return known


def known_statistics(predictions: list[str], known: set[str]) -> np.ndarray:
    """[words found in `known`, words] per answer: the known-word share (SPECS["known_words"]) is their
    ratio over the answers. Made-up words (a small base's broken Turkish, a repetition penalty) lower it."""
    rows = [[sum(w in known for w in ws), len(ws)] for ws in map(words, predictions)]
    return np.asarray(rows, dtype=float).reshape(-1, 2)


def known_share(texts: list[str], known: set[str]) -> float:
    """Percent of all the texts' words that are in `known` (100 when there are no words)."""
    sums = known_statistics(texts, known).sum(axis=0)
    return float(100.0 * sums[0] / sums[1]) if sums[1] else 100.0


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 (0–100) over Turkish-normalised words; two empty texts agree fully."""
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return 100.0 if pred == ref else 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 100 * 2 * precision * recall / (precision + recall)


def sacrebleu_statistics(key: str, predictions: list[str], references: list[str]) -> tuple[np.ndarray, str]:
    """sacrebleu's per-sentence statistics and the signature of the metric that produced them."""
    metric = SACREBLEU[key]()
    stats = np.asarray(metric._extract_corpus_statistics(predictions, [references]), dtype=float)
    return stats, str(metric.get_signature())


def _as_mean_stats(values: list[float]) -> np.ndarray:
    return np.column_stack([np.asarray(values, dtype=float), np.ones(len(values))])


def text_statistics(predictions: list[str], references: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per-item statistics of every text metric ({key: (n_items, k) array}) and sacrebleu's signatures."""
    _check(predictions, references)
    stats, sigs = {}, {}
    for key in SACREBLEU:
        stats[key], sigs[key] = sacrebleu_statistics(key, predictions, references)
    stats.update({key: _as_mean_stats(values) for key, values in rouge(predictions, references).items()})
    stats["exact_match"] = _as_mean_stats(exact_match(predictions, references))
    stats["token_f1"] = _as_mean_stats([token_f1(p, r) for p, r in zip(predictions, references)])
    stats["repetition"] = _as_mean_stats(repetition(predictions))
    return stats, sigs


def perplexity_statistics(nll_and_counts: list[tuple[float, int]]) -> np.ndarray:
    """[NLL sum, token count] per item (from `pipeline.eval.loglik.reference_nll`)."""
    return np.asarray(nll_and_counts, dtype=float).reshape(-1, 2)


def corpus_score(key: str, stats: np.ndarray) -> float:
    return float(SPECS[key].score(stats.sum(axis=0)))


def item_scores(key: str, stats: np.ndarray) -> list[float]:
    """Each item scored on its own (sentence-level chrF, per-item ROUGE, per-item perplexity)."""
    return [float(v) for v in SPECS[key].score(stats)]


def generation_metrics(predictions: list[str], references: list[str]) -> dict:
    """Corpus-level scores (0–100) plus the sacrebleu signatures."""
    stats, sigs = text_statistics(predictions, references)
    return {**{key: round(corpus_score(key, stats[key]), 2) for key in TEXT_METRICS}, "signatures": sigs}


def sentence_chrf(prediction: str, reference: str) -> float:
    return round(CHRF().sentence_score(prediction, [reference]).score, 2)


def finite(value: float) -> float:
    """JSON and MLflow have no inf/nan: a perplexity that overflows is reported as a large number."""
    return value if math.isfinite(value) else 1e30
