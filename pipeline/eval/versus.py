"""Two evaluate runs on the same test items, side by side: did base model B's fine-tune answer
better than base model A's? Paired bootstrap over the items, as evaluate does for base vs tuned.

    python -m pipeline.eval.versus RUN_A/reports/eval/predictions.jsonl RUN_B/reports/eval/predictions.jsonl \
        --names smollm2_135m gemma3_270m [--side finetuned] [--resamples 1000] [--seed 42]

Each file is a `reports/eval/predictions.jsonl` written by `evaluate` (one per run, e.g. from two
`dvc exp` runs or two clones). The items must be the same (same sources and references, in any
order): the split does not depend on the base model, so two runs with the same data and split
settings qualify. Perplexity is left out: per-token perplexities of different tokenizers are not
comparable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import HasatError
from pipeline.eval import metrics
from pipeline.eval.bootstrap import paired_bootstrap, resample_counts
from pipeline.eval.compare import paired_section
from pipeline.eval.report import METRICS, section_rows
from pipeline.eval.tables import text_table
from pipeline.io import read_jsonl

SIDES = ("base", "finetuned")


def load_items(path: Path, side: str) -> dict[str, dict]:
    """source -> {reference, text, stopped} of one run's test answers."""
    if not path.is_file():
        raise HasatError(f"{path}: no such predictions file (run evaluate first)")
    items = {}
    for row in read_jsonl(path):
        if side not in row or "reference" not in row or "source" not in row:
            raise HasatError(f"{path}: not an evaluate predictions file (a row lacks '{side}', 'reference' or "
                             "'source')")
        items[row["source"]] = {"reference": row["reference"], "text": row[side],
                                "stopped": bool(row.get(f"{side}_stopped", True))}
    return items


def paired_items(a: dict[str, dict], b: dict[str, dict], names: tuple[str, str]) -> list[str]:
    """The common item order; both runs must hold exactly the same items with the same references."""
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise HasatError(f"{names[0]} and {names[1]} were evaluated on different items ({len(only)} differ, e.g. "
                         f"{only[0]}): compare runs with the same data and split settings")
    differ = [s for s in a if a[s]["reference"] != b[s]["reference"]]
    if differ:
        raise HasatError(f"{names[0]} and {names[1]} have different references for {differ[0]}")
    return sorted(a)


def compare(a: dict[str, dict], b: dict[str, dict], names: tuple[str, str], resamples: int, seed: int,
            confidence: float = 0.95) -> dict:
    """The comparison as an eval.json section: A in `base`, B in `finetuned`, `delta` = B − A."""
    order = paired_items(a, b, names)
    references = [a[s]["reference"] for s in order]
    stats_a, _ = metrics.text_statistics([a[s]["text"] for s in order], references)
    stats_b, _ = metrics.text_statistics([b[s]["text"] for s in order], references)
    counts = resample_counts(len(order), resamples, seed)
    scores = {key: paired_bootstrap(stats_a[key], stats_b[key], metrics.SPECS[key].score, counts, confidence)
              for key in metrics.TEXT_METRICS}
    never = tuple(sum(not run[s]["stopped"] for s in order) for run in (a, b))
    section = paired_section(scores, {"never_stopped": never})
    return {**section, "items": len(order), "names": list(names), "resamples": resamples, "confidence": confidence}


def table(result: dict) -> str:
    a, b = result["names"]
    header = ("metric", a, b, f"delta ({b} − {a})", "")
    lines = [f"{result['items']} test items; [low, high]: {result['confidence']:.0%} paired bootstrap intervals "
             f"({result['resamples']} resamples); last column: is {b} better or worse than {a}?"]
    return "\n".join(lines + text_table([header] + section_rows(result, METRICS), rules_after=(0,)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.eval.versus", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="predictions.jsonl of run A")
    parser.add_argument("b", type=Path, help="predictions.jsonl of run B")
    parser.add_argument("--names", nargs=2, default=("A", "B"), metavar=("A", "B"))
    parser.add_argument("--side", choices=SIDES, default="finetuned", help="which model of each run (default: finetuned)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    try:
        names = tuple(args.names)
        result = compare(load_items(args.a, args.side), load_items(args.b, args.side), names, args.resamples,
                         args.seed)
    except HasatError as err:
        print(f"hasat versus: error: {err}", file=sys.stderr)
        return 2
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
