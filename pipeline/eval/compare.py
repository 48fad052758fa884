"""Base vs fine-tuned on the same items: what each model produced, and the comparison with
paired bootstrap intervals that `metrics/eval.json`, the table and the review report show.

Kept free of file handling: the evaluate stage loads models and writes; this module scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from pipeline.eval import metrics
from pipeline.eval.bootstrap import PairedResult, paired_bootstrap, resample_counts
from pipeline.errors import HasatError
from pipeline.eval.generation import Decoding, Generation, generate
from pipeline.eval.loglik import reference_nll
from pipeline.eval.multiple_choice import Question, QuestionResult, correct_matrix, per_topic, score_questions

log = logging.getLogger("hasat")
ITEM_METRICS = ("chrf", "rouge_l", "token_f1", "perplexity")  # per item, in the review report
MC_KEYS = ("acc", "acc_norm", "acc_bytes")


@dataclass
class ModelRun:
    """Everything one model produced on the test split and the benchmark."""

    outputs: list[Generation]
    nll: list[tuple[float, int]]
    mc: list[QuestionResult] = field(default_factory=list)
    harness: Optional[dict] = None  # lm-evaluation-harness scores, when the hook ran
    harness_note: str = ""  # why it did not


@dataclass(frozen=True)
class RunSettings:
    max_new_tokens: int
    batch_size: int
    decoding: Decoding
    mc_template: str = "Soru: {question}\nCevap:"
    mc_batch_size: int = 16


def validate_test_rows(rows: list[dict], path: str, split: str = "test") -> None:
    """The split (test, or val/train for pipeline.eval.decoding) must be usable before any model is
    loaded: rows, references, token ids."""
    if not rows:
        raise HasatError(f"{path}: the {split} split is empty")
    missing = [r.get("source", "?") for r in rows if not str(r.get("reference", "")).strip()]
    if missing:
        raise HasatError(f"{path}: {len(missing)} {split} rows have no reference answer (first: {missing[0]})")
    untokenized = [r.get("source", "?") for r in rows
                   if not isinstance(r.get("input_ids"), list) or not isinstance(r.get("n_prompt_tokens"), int)]
    if untokenized:
        raise HasatError(f"{path}: {len(untokenized)} {split} rows have no input_ids/n_prompt_tokens "
                         f"(first: {untokenized[0]}; re-run the tokenize stage)")


def run_model(tokenizer, model, rows: list[dict], questions: list[Question], settings: RunSettings,
              name: str) -> ModelRun:
    prompts = [r["input_ids"][: r["n_prompt_tokens"]] for r in rows]
    log.info("evaluate: %s: generating %d answers (%s, max_new_tokens=%d)", name, len(rows),
             settings.decoding.describe(), settings.max_new_tokens)
    outputs = generate(model, tokenizer, prompts, settings.max_new_tokens, settings.batch_size, settings.decoding,
                       desc=f"evaluate: {name}: generate")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    nll = reference_nll(model, rows, settings.batch_size, pad_id, desc=f"evaluate: {name}: perplexity")
    mc = []
    if questions:
        log.info("evaluate: %s: scoring %d multiple-choice questions", name, len(questions))
        mc = score_questions(model, tokenizer, questions, settings.mc_template, settings.mc_batch_size,
                             desc=f"evaluate: {name}: multiple choice")
    return ModelRun(outputs, nll, mc)


def _round(value: float, digits: int = 2) -> float:
    return round(metrics.finite(value), digits)


def _interval(ci) -> dict:
    return {"low": _round(ci.low), "high": _round(ci.high)}


def paired_section(results: dict[str, PairedResult], extra: Optional[dict] = None) -> dict:
    """base / finetuned / delta numbers, their intervals and whether each delta's interval excludes 0."""
    section: dict = {"base": {}, "finetuned": {}, "delta": {}, "ci": {"base": {}, "finetuned": {}, "delta": {}},
                     "delta_ci_excludes_zero": {}}
    for key, r in results.items():
        for side, value, ci in (("base", r.base, r.base_ci), ("finetuned", r.finetuned, r.finetuned_ci),
                                ("delta", r.delta, r.delta_ci)):
            section[side][key] = _round(value)
            section["ci"][side][key] = _interval(ci)
        section["delta_ci_excludes_zero"][key] = r.delta_ci.excludes_zero()
    for key, (base, tuned) in (extra or {}).items():
        section["base"][key], section["finetuned"][key], section["delta"][key] = base, tuned, tuned - base
    return section


def compare_generation(references: list[str], base: ModelRun, tuned: ModelRun, resamples: int, confidence: float,
                       seed: int, known: Optional[set[str]] = None) -> tuple[dict, dict[str, dict[str, list[float]]]]:
    """The test-split section of eval.json (with the sacrebleu signatures), and per-item scores
    {side: {metric: [score per item]}}. `known` (the training split's words) adds the known-word share."""
    stats, signatures = {}, {}
    for side, run in (("base", base), ("finetuned", tuned)):
        texts = [o.text for o in run.outputs]
        stats[side], signatures = metrics.text_statistics(texts, references)
        stats[side]["perplexity"] = metrics.perplexity_statistics(run.nll)
        if known is not None:
            stats[side]["known_words"] = metrics.known_statistics(texts, known)
    counts = resample_counts(len(references), resamples, seed)
    keys = metrics.TEXT_METRICS + ("perplexity",) + (("known_words",) if known is not None else ())
    results = {key: paired_bootstrap(stats["base"][key], stats["finetuned"][key], metrics.SPECS[key].score, counts,
                                     confidence) for key in keys}
    never_stopped = (sum(not o.stopped for o in base.outputs), sum(not o.stopped for o in tuned.outputs))
    section = paired_section(results, {"never_stopped": never_stopped})
    section["signatures"] = signatures
    if known is not None:
        section["known_words_references"] = round(metrics.known_share(references, known), 2)
    per_item = {side: {key: metrics.item_scores(key, stats[side][key]) for key in ITEM_METRICS} for side in stats}
    return section, per_item


def compare_mc(base: ModelRun, tuned: ModelRun, resamples: int, confidence: float, seed: int) -> dict:
    """The multiple-choice section: acc / acc_norm / acc_bytes with paired intervals, per topic."""
    counts = resample_counts(len(base.mc), resamples, seed)
    results = {key: paired_bootstrap(correct_matrix(base.mc, key), correct_matrix(tuned.mc, key), metrics.mean_score,
                                     counts, confidence) for key in MC_KEYS}
    section = paired_section(results)
    section["per_topic"] = {"base": per_topic(base.mc, "acc"), "finetuned": per_topic(tuned.mc, "acc")}
    return section


def per_item_rows(rows: list[dict], base: ModelRun, tuned: ModelRun, scores: dict) -> list[dict]:
    """One record per test item: prompt, reference, both answers, both models' per-item scores."""
    items = []
    for i, row in enumerate(rows):
        item = {"source": row.get("source", "?"), "prompt": row.get("prompt_text", ""), "reference": row["reference"]}
        for side, run in (("base", base), ("finetuned", tuned)):
            out = run.outputs[i]
            item[side] = out.text
            item[f"{side}_stopped"] = out.stopped
            item[f"{side}_new_tokens"] = out.n_new_tokens
            item[f"{side}_scores"] = {k: _round(scores[side][k][i]) for k in ITEM_METRICS}
        items.append(item)
    return items


def worst_first(items: list[dict], sort: str) -> list[dict]:
    """`finetuned_chrf`: lowest fine-tuned chrF first; `delta_chrf`: largest loss against the base first."""
    if sort == "delta_chrf":
        return sorted(items, key=lambda it: it["finetuned_scores"]["chrf"] - it["base_scores"]["chrf"])
    return sorted(items, key=lambda it: it["finetuned_scores"]["chrf"])


def numeric_leaves(section: dict) -> dict[str, float]:
    """Flattened numbers for MLflow: {"base.chrf": .., "ci.delta.chrf.low": .., ...}."""
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (bool, np.bool_)):
            flat[prefix] = float(value)
        elif isinstance(value, (int, float)):
            flat[prefix] = float(value)

    walk("", section)
    return flat


def mc_item_rows(base: ModelRun, tuned: ModelRun) -> list[dict]:
    """One record per benchmark question: gold answer, each model's choice (acc and acc_norm)."""
    rows = []
    for b, t in zip(base.mc, tuned.mc):
        q = b.question
        rows.append({"id": q.id, "topic": q.topic, "question": q.question, "choices": q.choices, "answer": q.answer,
                     "base_pred": b.pred, "base_pred_norm": b.pred_norm,
                     "base_loglikelihoods": [round(v, 4) for v in b.loglikelihoods],
                     "finetuned_pred": t.pred, "finetuned_pred_norm": t.pred_norm,
                     "finetuned_loglikelihoods": [round(v, 4) for v in t.loglikelihoods]})
    return rows
