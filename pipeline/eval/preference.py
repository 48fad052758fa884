"""Held-out preference accuracy: does the tuned policy prefer the chosen answer to the rejected one
more than its reference does?

For each test pair, log p(answer | prompt) summed over the answer's tokens (pipeline.eval.loglik) under
the reference (the model preference tuning started from) and the tuned policy. DPO's implicit reward
of an answer is beta * (log p_policy - log p_reference); the pair counts as won when the chosen
answer's reward exceeds the rejected one's, i.e. when

    (log p_pol(chosen) - log p_ref(chosen)) - (log p_pol(rejected) - log p_ref(rejected)) > 0

(TRL's `rewards/accuracies`, here on pairs never trained on). Beside it, the plain likelihood
preference of each model (log p(chosen) > log p(rejected)), base vs tuned with a paired interval.
KTO rows (one answer, desirable or not) count as won when the reward's sign matches the label.
Intervals: percentile bootstrap over test items (pipeline.eval.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.eval.bootstrap import paired_bootstrap, percentile_interval, resample_counts
from pipeline.eval.loglik import span_logprobs
from pipeline.eval.metrics import mean_score


@dataclass
class AnswerLogprobs:
    """log p(answer | prompt) of each test row's answers, by answer field (chosen, rejected or completion)."""

    by_answer: dict[str, np.ndarray]


def answer_logprobs(model, rows: list[dict], answers: tuple[str, ...], batch_size: int, pad_id: int,
                    desc: str | None = None) -> AnswerLogprobs:
    """Sum of the answer tokens' log-probabilities given the prompt, for every row and answer field."""
    out = {}
    for name in answers:
        sequences = [r["input_ids"][: r["n_prompt_tokens"]] + r[f"{name}_ids"] for r in rows]
        starts = [r["n_prompt_tokens"] for r in rows]
        scores = span_logprobs(model, sequences, starts, batch_size, pad_id, desc=desc and f"{desc} ({name})")
        out[name] = np.array([s.logprob for s in scores], dtype=np.float64)
    return AnswerLogprobs(out)


def _mean_with_interval(values: np.ndarray, counts: np.ndarray, confidence: float, scale: float = 1.0) -> dict:
    stats = np.stack([values * scale, np.ones_like(values)], axis=1)
    samples = mean_score(counts @ stats)
    ci = percentile_interval(samples, confidence)
    return {"value": round(float(mean_score(stats.sum(axis=0))), 4),
            "low": round(ci.low, 4), "high": round(ci.high, 4)}


def preference_section(reference: AnswerLogprobs, policy: AnswerLogprobs, beta: float, labels: list[bool] | None,
                       resamples: int, confidence: float, seed: int) -> dict:
    """eval.json's `preference` section: reward accuracy and margin of the tuned policy against its
    reference, and each model's likelihood preference, with bootstrap intervals (accuracies in %)."""
    if "chosen" in reference.by_answer:
        ratio = {k: policy.by_answer[k] - reference.by_answer[k] for k in ("chosen", "rejected")}
        margin = beta * (ratio["chosen"] - ratio["rejected"])
        won = (margin > 0).astype(np.float64)
        counts = resample_counts(len(margin), resamples, seed)
        liked = {side: (lp.by_answer["chosen"] > lp.by_answer["rejected"]).astype(np.float64)
                 for side, lp in (("base", reference), ("finetuned", policy))}
        paired = paired_bootstrap(np.stack([100 * liked["base"], np.ones_like(won)], axis=1),
                                  np.stack([100 * liked["finetuned"], np.ones_like(won)], axis=1),
                                  mean_score, counts, confidence)
        return {
            "pairs": len(margin),
            "beta": beta,
            "reward_accuracy": _mean_with_interval(won, counts, confidence, 100.0),
            "reward_margin": _mean_with_interval(margin, counts, confidence),
            "reward_chosen": round(float(beta * ratio["chosen"].mean()), 4),
            "reward_rejected": round(float(beta * ratio["rejected"].mean()), 4),
            "likelihood_accuracy": {
                "base": round(paired.base, 2), "finetuned": round(paired.finetuned, 2),
                "delta": round(paired.delta, 2),
                "ci": {"base": [round(paired.base_ci.low, 2), round(paired.base_ci.high, 2)],
                       "finetuned": [round(paired.finetuned_ci.low, 2), round(paired.finetuned_ci.high, 2)],
                       "delta": [round(paired.delta_ci.low, 2), round(paired.delta_ci.high, 2)]},
                "delta_ci_excludes_zero": paired.delta_ci.excludes_zero()},
            "per_item_margin": [round(float(m), 4) for m in margin],
        }
    reward = beta * (policy.by_answer["completion"] - reference.by_answer["completion"])
    sign = np.where(np.array(labels, dtype=bool), 1.0, -1.0)
    won = (reward * sign > 0).astype(np.float64)
    counts = resample_counts(len(reward), resamples, seed)
    return {"rows": len(reward), "beta": beta,
            "reward_accuracy": _mean_with_interval(won, counts, confidence, 100.0),
            "reward_desirable": round(float(reward[sign > 0].mean()), 4) if (sign > 0).any() else None,
            "reward_undesirable": round(float(reward[sign < 0].mean()), 4) if (sign < 0).any() else None,
            "per_item_reward": [round(float(r), 4) for r in reward]}


def mlflow_numbers(section: dict) -> dict[str, float]:
    numbers = {}
    for key in ("reward_accuracy", "reward_margin"):
        if key in section:
            numbers.update({f"preference.{key}": section[key]["value"], f"preference.{key}.low": section[key]["low"],
                            f"preference.{key}.high": section[key]["high"]})
    if "likelihood_accuracy" in section:
        for side in ("base", "finetuned", "delta"):
            numbers[f"preference.likelihood_accuracy.{side}"] = section["likelihood_accuracy"][side]
    return numbers


def summary_lines(section: dict) -> list[str]:
    """Lines for the printed table."""
    acc = section["reward_accuracy"]
    lines = [f"preference: reward accuracy {acc['value']:.1f}% [{acc['low']:.1f}, {acc['high']:.1f}] "
             f"on {section.get('pairs', section.get('rows'))} held-out items (beta {section['beta']})"]
    if "reward_margin" in section:
        m = section["reward_margin"]
        like = section["likelihood_accuracy"]
        lines.append(f"preference: reward margin {m['value']:+.4f} [{m['low']:+.4f}, {m['high']:+.4f}]; "
                     f"log p(chosen) > log p(rejected): base {like['base']:.1f}%, tuned {like['finetuned']:.1f}% "
                     f"(delta {like['delta']:+.1f}, CI {like['ci']['delta']})")
    return lines
