"""The base-vs-fine-tuned table: printed by evaluate and by `python -m pipeline.eval.report`.

    python -m pipeline.eval.report [metrics/eval.json]

Each score comes with its bootstrap interval; the last column says whether the paired interval
of the delta excludes 0 (`better` / `worse`) or not (`n.s.`: the test set cannot tell them apart).
"""

from __future__ import annotations

import sys

from pipeline.eval.classification import format_table as classification_table
from pipeline.eval.tables import format_cell, text_table, verdict
from pipeline.io import read_json
from pipeline.paths import stats

METRICS = (("chrf", "chrF"), ("chrf_pp", "chrF++"), ("bleu", "BLEU"), ("rouge_1", "ROUGE-1"),
           ("rouge_2", "ROUGE-2"), ("rouge_l", "ROUGE-L"), ("token_f1", "token F1"),
           ("exact_match", "exact match"), ("perplexity", "perplexity ↓"), ("repetition", "repetition % ↓"),
           ("known_words", "known words %"), ("never_stopped", "never stopped"))
MC_METRICS = (("acc", "MC acc"), ("acc_norm", "MC acc_norm"))
LOWER_IS_BETTER = {"perplexity", "repetition", "never_stopped"}


def section_rows(section: dict, metrics) -> list[tuple[str, str, str, str, str]]:
    ci = section.get("ci", {})
    rows = []
    for key, label in metrics:
        if key not in section.get("base", {}):
            continue
        base, tuned, delta = section["base"][key], section["finetuned"][key], section["delta"][key]
        if key == "never_stopped":
            rows.append((label, f"{base:g}", f"{tuned:g}", f"{delta:+g}", ""))
            continue
        rows.append((label, format_cell(base, ci.get("base", {}).get(key)), format_cell(tuned, ci.get("finetuned", {}).get(key)),
                     format_cell(delta, ci.get("delta", {}).get(key), signed=True),
                     verdict(ci.get("delta", {}).get(key), key in LOWER_IS_BETTER)))
    return rows


def summary_rows(result: dict) -> list[tuple[str, str, str, str, str]]:
    """(metric, base, fine-tuned, delta, verdict) cells for the text table and the HTML report."""
    rows = section_rows(result, METRICS)
    if "mc" in result:
        rows += section_rows(result["mc"], MC_METRICS)
    return rows


def headline(result: dict) -> str:
    """One sentence on chrF that does not claim more than the interval allows; ends with 'chrF.'."""
    delta = result["delta"]["chrf"]
    ci = result.get("ci", {}).get("delta", {}).get("chrf")
    if not ci:
        return f"The fine-tuned model {'beats' if delta > 0 else 'does NOT beat'} the base on chrF."
    where = f"(chrF delta {delta:+.2f}, {result['bootstrap']['confidence']:.0%} CI [{ci['low']:+.2f}, {ci['high']:+.2f}])"
    return {"better": f"Verdict {where}: the fine-tuned model beats the base on chrF.",
            "worse": f"Verdict {where}: the fine-tuned model is WORSE than the base on chrF.",
            "n.s.": f"Verdict {where}: no clear difference; the interval includes 0 on chrF."}[verdict(ci)]


def format_table(result: dict) -> str:
    if result.get("task") == "classification":
        return classification_table(result)
    decoding = result.get("decoding", "greedy")
    lines = [f"Test split: {result['test_rows']} items ({decoding}, max_new_tokens={result['max_new_tokens']})"]
    if "bootstrap" in result:
        b = result["bootstrap"]
        lines.append(f"[low, high]: {b['confidence']:.0%} paired bootstrap intervals over items "
                     f"({b['resamples']} resamples, seed {b['seed']}); last column: does the delta's interval "
                     "exclude 0?")
    if "mc" in result:
        lines.append(f"MC: {result['mc']['questions']} multiple-choice questions ({result['mc']['file']}), "
                     "log-likelihood scoring")
    header = ("metric", "base", "fine-tuned", "delta", "")
    lines += text_table([header] + summary_rows(result), rules_after=(0,))
    lines.append(headline(result))
    if "preference" in result:
        from pipeline.eval.preference import summary_lines

        lines += summary_lines(result["preference"])
    if "judge" in result:
        from pipeline.eval.judge import summary_lines as judge_lines

        lines += judge_lines(result["judge"])
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = argv[0] if argv else stats("eval")
    print(format_table(read_json(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
