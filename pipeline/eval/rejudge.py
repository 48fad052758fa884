"""Judge the answers of an evaluate run again, without generating them again.

    python -m pipeline.eval.rejudge [PREDICTIONS] [--out reports/judge] [eval.judge.KEY=VALUE ...]
    python -m pipeline.eval.rejudge eval.judge.model=gemma3_270m eval.judge.verdict=logits

PREDICTIONS is a `reports/eval/predictions.jsonl` written by `evaluate` (default: this workspace's);
each row's prompt, base answer and fine-tuned answer go to the LLM judge configured by `eval.judge.*`
(params.yaml plus the overrides; `enabled` is implied), in both orders, as in `evaluate`. Trying
another judge, or the same judge with `verdict=logits`, then costs the judge's time only. Writes
`judge.json` (the section `evaluate` puts in eval.json), `items.jsonl` (each item's verdicts and
reasons) and `judge.html` (the same, to read) under --out, and prints the summary line.
"""

from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path

from pipeline import paths
from pipeline.errors import HasatError
from pipeline.eval import judge
from pipeline.eval.review import CSS, judge_line
from pipeline.io import read_jsonl, write_json, write_jsonl

DEFAULT_OUT = Path("reports/judge")


def load_answers(path: Path) -> list[dict]:
    if not path.is_file():
        raise HasatError(f"{path}: no such predictions file (run evaluate first)")
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        missing = [k for k in ("prompt", "base", "finetuned") if not isinstance(row.get(k), str)]
        if missing:
            raise HasatError(f"{path}: row {number} has no {', '.join(missing)}: not an evaluate predictions file "
                             "of task=sft or task=preference")
    if not rows:
        raise HasatError(f"{path}: no answers to judge")
    return [{k: row[k] for k in ("source", "prompt", "reference", "base", "finetuned") if k in row} for row in rows]


def page(section: dict, items: list[dict], source: Path) -> str:
    cards = "".join(
        f'<div class="item"><div class="label">{escape(item.get("source", ""))}</div>'
        f'<div class="text"><b>Prompt:</b> {escape(item["prompt"])}</div>'
        f'<div class="text"><b>Base:</b> {escape(item["base"])}</div>'
        f'<div class="text"><b>Fine-tuned:</b> {escape(item["finetuned"])}</div>{judge_line(item)}</div>'
        for item in items)
    return (f"<!doctype html><html lang=\"tr\"><head><meta charset=\"utf-8\"><title>hasat judge</title>"
            f"<style>{CSS}</style></head><body><h1>LLM judge</h1><p class=\"meta\">Answers from "
            f"{escape(str(source))}</p>{judge.section_html(section)}<h2>Items</h2>{cards}</body></html>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.eval.rejudge", description=__doc__.split("\n\n")[0])
    parser.add_argument("words", nargs="*", metavar="[PREDICTIONS] [KEY=VALUE ...]",
                        help=f"a predictions file (default {paths.PREDICTIONS}), eval.judge.* and eval.bootstrap.* keys")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_intermixed_args(argv)
    overrides = [w for w in args.words if "=" in w]
    files = [Path(w) for w in args.words if "=" not in w]
    args.predictions = files[0] if files else Path(paths.PREDICTIONS)
    try:
        if len(files) > 1:
            raise HasatError(f"one predictions file at a time (got {', '.join(map(str, files))})")
        from pipeline.config_loader import load_config

        wrong = [o for o in overrides if not o.startswith(("eval.judge.", "eval.bootstrap."))]
        if wrong:
            raise HasatError(f"{wrong[0]}: only eval.judge.* and eval.bootstrap.* keys are read here")
        cfg = load_config([*overrides, "eval.judge.enabled=true"])
        items = load_answers(args.predictions)
        b = cfg.eval.bootstrap
        section = judge.judge_items(cfg.eval.judge, items, b.resamples, b.confidence, b.seed)
    except HasatError as err:
        print(f"hasat rejudge: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "judge.json", section)
    write_jsonl(args.out / "items.jsonl", items)
    (args.out / "judge.html").write_text(page(section, items, args.predictions), encoding="utf-8")
    print("\n".join(judge.summary_lines(section)))
    print(f"written: {args.out / 'judge.json'}, {args.out / 'items.jsonl'}, {args.out / 'judge.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
