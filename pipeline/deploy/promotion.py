"""The promotion rule: the challenger replaces the champion only when it is better on the same test
items, with the paired bootstrap interval of the task's metric (chrF for instruction tuning,
macro-F1 for a classifier) above zero. Both models answer the test split in this one run, each
prompt tokenized by its own tokenizer, so no number comes from another run or another split.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Callable

from pipeline.config import HasatConfig
from pipeline.deploy.models import LoadedModel
from pipeline.errors import HasatError
from pipeline.eval import versus
from pipeline.eval.bootstrap import paired_bootstrap, resample_counts
from pipeline.eval.classification import METRICS as CLASSIFICATION_METRICS
from pipeline.eval.classification import item_stats, predict_with_confidence, scores
from pipeline.eval.compare import paired_section
from pipeline.eval.generation import Decoding, generate
from pipeline.eval.report import METRICS as TEXT_METRICS
from pipeline.eval.report import section_rows
from pipeline.eval.tables import text_table
from pipeline.tasks.classification.train import check_labels, encode_texts
from pipeline.train.prompts import prompt_ids

log = logging.getLogger("hasat")


@dataclass
class Decision:
    promote: bool
    reason: str
    metric: str
    comparison: dict  # versus-style section: base = champion, finetuned = challenger, delta = challenger − champion
    table: str

    def interval(self) -> dict:
        return self.comparison["ci"]["delta"][self.metric]


def sft_answers(loaded: LoadedModel, rows: list[dict], cfg: HasatConfig) -> dict[str, dict]:
    """source -> {reference, text, stopped}: the model's answers to the test prompts (evaluate's decoding)."""
    ev = cfg.eval
    prompts = [prompt_ids(row, loaded.tokenizer, loaded.prompt_format, loaded.system_prompt) for row in rows]
    outputs = generate(loaded.model, loaded.tokenizer, prompts, ev.max_new_tokens, ev.batch_size,
                       Decoding.from_config(ev))
    return {row["source"]: {"reference": row["reference"], "text": out.text, "stopped": out.stopped}
            for row, out in zip(rows, outputs)}


def compare_sft(champion: Callable[[], LoadedModel], challenger: Callable[[], LoadedModel], rows: list[dict],
                cfg: HasatConfig, names: tuple[str, str]) -> dict:
    answers = [sft_answers(_loaded(load), rows, cfg) for load in (champion, challenger)]
    b = cfg.eval.bootstrap
    return versus.compare(answers[0], answers[1], names, b.resamples, b.seed, b.confidence)


def classify(loaded: LoadedModel, rows: list[dict], cfg: HasatConfig) -> list[str]:
    check_labels(rows, loaded.labels, f"the test split (model {loaded.name} knows other labels)")
    encoded, _ = encode_texts(rows, loaded.tokenizer, loaded.labels, cfg.tokenize.max_seq_len)
    ids, _ = predict_with_confidence(loaded.model, loaded.tokenizer, encoded, cfg.eval.batch_size)
    return [loaded.labels[i] for i in ids]


def compare_classifiers(champion: Callable[[], LoadedModel], challenger: Callable[[], LoadedModel], rows: list[dict],
                        cfg: HasatConfig, names: tuple[str, str]) -> dict:
    """accuracy / macro-F1 / weighted F1 of both, the differences with paired intervals."""
    first = _loaded(champion)
    labels = list(first.labels)
    predictions = [classify(first, rows, cfg)]
    del first
    second = _loaded(challenger)
    if list(second.labels) != labels:
        raise HasatError(f"champion and challenger have different labels ({labels} vs {second.labels}): "
                         "they do not classify the same task")
    predictions.append(classify(second, rows, cfg))
    index = {label: i for i, label in enumerate(labels)}
    true_ids = [index[str(r["label"])] for r in rows]
    stats = [item_stats(true_ids, [index[p] for p in pred], len(labels)) for pred in predictions]
    b = cfg.eval.bootstrap
    counts = resample_counts(len(rows), b.resamples, b.seed)
    results = {key: paired_bootstrap(stats[0], stats[1], lambda s, key=key: scores(s, len(labels))[key], counts,
                                     b.confidence) for key, _ in CLASSIFICATION_METRICS}
    return {**paired_section(results), "items": len(rows), "names": list(names), "resamples": b.resamples,
            "confidence": b.confidence}


def _loaded(load: Callable[[], LoadedModel]) -> LoadedModel:
    gc.collect()  # the other model's memory, before loading this one
    return load()


def decide(comparison: dict, metric: str, label: str) -> Decision:
    """Promote when the paired interval of challenger − champion on `metric` lies above zero."""
    delta = comparison["delta"][metric]
    ci = comparison["ci"]["delta"][metric]
    a, b = comparison["names"]
    where = (f"{label} {b} − {a} = {delta:+.2f}, {comparison['confidence']:.0%} paired bootstrap interval "
             f"[{ci['low']:+.2f}, {ci['high']:+.2f}] over {comparison['items']} test items")
    if ci["low"] > 0:
        return Decision(True, f"promoted: {where} lies above zero", metric, comparison, table(comparison))
    why = "includes zero" if ci["high"] >= 0 else "lies below zero"
    return Decision(False, f"kept the champion: {where} {why}", metric, comparison, table(comparison))


def table(comparison: dict) -> str:
    metrics = (CLASSIFICATION_METRICS if "macro_f1" in comparison["delta"]
               else tuple(m for m in TEXT_METRICS if m[0] != "perplexity"))
    a, b = comparison["names"]
    header = ("metric", a, b, f"delta ({b} − {a})", "")
    lines = [f"{comparison['items']} test items, both models scored in this run; [low, high]: "
             f"{comparison['confidence']:.0%} paired bootstrap intervals ({comparison['resamples']} resamples)"]
    return "\n".join(lines + text_table([header] + section_rows(comparison, metrics), rules_after=(0,)))
