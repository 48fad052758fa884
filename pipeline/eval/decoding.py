"""Choose how the model decodes on the validation split, not on the test split.

    python -m pipeline.eval.decoding [--model finetuned|base] [--split val|test] [--seeds 3]
        [--candidate NAME=KEY:VALUE,KEY:VALUE ...] [--metric rouge_l] [--max-never-stopped 10]
        [--out reports/decoding] [eval.max_new_tokens=160 eval.batch_size=32 eval.seed=42]

The model (default: the fine-tuned one of this workspace) answers the split's prompts under each
candidate decoding: greedy, greedy without repeated 4-grams, greedy with a repetition penalty and
nucleus sampling at three temperatures, unless --candidate names others. A sampled candidate runs
once per seed (eval.seed, eval.seed + 1, ...) and reports the mean and the range. Each candidate
gets chrF, ROUGE-L, the repetition share (a word 3-gram three times), the share of answers that
never stopped, the answer length in words and the share of known words: answer words that occur
somewhere in the training split, which falls when a decoding makes up words.

The choice: among the candidates whose never-stopped share is at most --max-never-stopped, the one
with the highest --metric (ROUGE-L by default: word-level, so made-up words do not score, while
chrF rewards their character fragments); if none qualifies, the one that stops most often. It is
printed as the `eval.*` overrides to use. Writes decoding.json, answers.jsonl (each candidate's
answers, first seed), decoding.png and decoding.html under --out.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from dataclasses import dataclass, field, fields, replace
from html import escape
from pathlib import Path

from pipeline import paths
from pipeline.config import DecodingConfig
from pipeline.data.turkish import words
from pipeline.errors import HasatError
from pipeline.eval import compare, metrics
from pipeline.eval.metrics import known_share, vocabulary
from pipeline.eval.generation import Decoding, generate
from pipeline.eval.review import CSS
from pipeline.io import read_jsonl, write_json, write_jsonl

DEFAULT_OUT = Path("reports/decoding")
METRICS = ("chrf", "rouge_l", "repetition", "never_stopped", "known_words", "answer_words")
LOWER_IS_BETTER = {"repetition", "never_stopped"}
DEFAULT_CANDIDATES = {
    "greedy": {},
    "greedy, no repeated 4-grams": {"no_repeat_ngram_size": 4},
    "greedy, repetition penalty 1.2": {"repetition_penalty": 1.2},
    "sampling T=0.5, top-p 0.9": {"do_sample": True, "temperature": 0.5, "top_p": 0.9},
    "sampling T=0.7, top-p 0.9": {"do_sample": True, "temperature": 0.7, "top_p": 0.9},
    "sampling T=1.0, top-p 0.9": {"do_sample": True, "temperature": 1.0, "top_p": 0.9},
}
KEYS = {f.name: f.type for f in fields(DecodingConfig)}


@dataclass
class Candidate:
    name: str
    settings: dict
    seeds: list[int] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # per seed: METRICS
    answers: list[dict] = field(default_factory=list)  # first seed: text, stopped

    @property
    def sampled(self) -> bool:
        return bool(self.settings.get("do_sample"))

    def mean(self, key: str) -> float:
        return round(statistics.fmean(run[key] for run in self.runs), 2)

    def span(self, key: str) -> list[float]:
        return [round(min(run[key] for run in self.runs), 2), round(max(run[key] for run in self.runs), 2)]

    def overrides(self) -> str:
        """The `eval.*` overrides that give this decoding in evaluate, whatever params.yaml sets."""
        effective = {**vars(Decoding()), **self.settings}
        keys = ["do_sample", *(["temperature", "top_p", "top_k"] if self.sampled else []), "repetition_penalty",
                "no_repeat_ngram_size"]
        return " ".join(f"eval.{k}={str(effective[k]).lower() if isinstance(effective[k], bool) else effective[k]}"
                        for k in keys)


def parse_candidate(spec: str) -> tuple[str, dict]:
    """`NAME=KEY:VALUE,KEY:VALUE` (keys of eval.*'s decoding settings), `NAME=` for greedy."""
    name, sep, body = spec.partition("=")
    if not sep or not name.strip():
        raise HasatError(f"--candidate {spec!r}: expected NAME=KEY:VALUE,... (e.g. 'warm=do_sample:true,temperature:0.7')")
    settings: dict = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, raw = part.partition(":")
        if not sep or key not in KEYS or key == "seed":
            raise HasatError(f"--candidate {spec!r}: {part!r} is not KEY:VALUE with KEY one of "
                             f"{', '.join(k for k in KEYS if k != 'seed')}")
        try:
            settings[key] = _value(KEYS[key], raw.strip())
        except ValueError:
            raise HasatError(f"--candidate {spec!r}: {key} cannot be {raw.strip()!r}") from None
    return name.strip(), settings


def _value(kind, raw: str):
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "bool":
        if raw.lower() not in ("true", "false"):
            raise ValueError(raw)
        return raw.lower() == "true"
    return int(raw) if kind == "int" else float(raw)


def score(texts: list[str], stopped: list[bool], references: list[str], known: set[str]) -> dict:
    scores = metrics.generation_metrics(texts, references)
    return {"chrf": scores["chrf"], "rouge_l": scores["rouge_l"], "repetition": scores["repetition"],
            "never_stopped": round(100.0 * sum(not s for s in stopped) / len(stopped), 2),
            "known_words": round(known_share(texts, known), 2),
            "answer_words": round(statistics.fmean(len(words(t)) for t in texts), 1)}


def sweep(model, tokenizer, rows: list[dict], known: set[str], candidates: dict[str, dict], seeds: int, seed: int,
          max_new_tokens: int, batch_size: int) -> list[Candidate]:
    """Every candidate on `rows` (tokenized split rows); sampled ones once per seed."""
    prompts = [r["input_ids"][: r["n_prompt_tokens"]] for r in rows]
    references = [r["reference"] for r in rows]
    done = []
    for name, settings in candidates.items():
        candidate = Candidate(name, dict(settings))
        base = Decoding(**settings)  # plain greedy, whatever params.yaml sets, plus the candidate's settings
        for s in ([seed + i for i in range(seeds)] if candidate.sampled else [seed]):
            decoding = replace(base, seed=s)
            outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size, decoding,
                               desc=f"decoding: {name}" + (f" (seed {s})" if candidate.sampled else ""))
            texts, stopped = [o.text for o in outputs], [o.stopped for o in outputs]
            candidate.seeds.append(s)
            candidate.runs.append(score(texts, stopped, references, known))
            if not candidate.answers:
                candidate.answers = [{"text": t, "stopped": st} for t, st in zip(texts, stopped)]
        done.append(candidate)
    return done


def choose(candidates: list[Candidate], metric: str, max_never_stopped: float) -> tuple[Candidate, str]:
    """(the chosen candidate, why)."""
    if metric not in METRICS:
        raise HasatError(f"--metric {metric}: one of {', '.join(METRICS)}")
    sign = -1 if metric in LOWER_IS_BETTER else 1
    fit = [c for c in candidates if c.mean("never_stopped") <= max_never_stopped]
    if fit:
        best = max(fit, key=lambda c: sign * c.mean(metric))
        return best, (f"the best {metric} ({best.mean(metric)}) among the {len(fit)} of {len(candidates)} "
                      f"candidates that never stopped on at most {max_never_stopped:g}% of the answers")
    best = min(candidates, key=lambda c: (c.mean("never_stopped"), -sign * c.mean(metric)))
    return best, (f"no candidate stopped often enough (never stopped ≤ {max_never_stopped:g}%): the one that "
                  f"stopped most often ({best.mean('never_stopped')}% never stopped)")


def result(candidates: list[Candidate], chosen: Candidate, why: str, context: dict, references: list[str],
           known: set[str]) -> dict:
    return {**context, "reference_known_words": round(known_share(references, known), 2),
            "candidates": [{"name": c.name, "settings": c.settings, "overrides": c.overrides(), "seeds": c.seeds,
                            "mean": {k: c.mean(k) for k in METRICS},
                            "range": {k: c.span(k) for k in METRICS} if len(c.runs) > 1 else None,
                            "chosen": c is chosen} for c in candidates],
            "chosen": chosen.name, "overrides": chosen.overrides(), "why": why}


def table(section: dict) -> str:
    head = ["chrF", "ROUGE-L", "repetition %", "never stopped %", "known words %", "words"]
    lines = [f"{section['rows']} {section['split']} items, {section['model']} model, "
             f"max_new_tokens={section['max_new_tokens']}; sampled candidates: mean of {section['seeds']} seeds",
             f"{'candidate':34}" + "".join(f"{h:>16}" for h in head)]
    for c in section["candidates"]:
        lines.append(f"{('* ' if c['chosen'] else '  ') + c['name']:34}" + "".join(f"{c['mean'][k]:>16}" for k in METRICS))
    lines.append(f"known words of the references: {section['reference_known_words']}%")
    lines.append(f"chosen: {section['chosen']}: {section['why']}")
    lines.append(f"to use it: {section['overrides']}")
    return "\n".join(lines)


def plot(section: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in section["candidates"]:
        x, y = c["mean"]["never_stopped"], c["mean"][section["metric"]]
        ax.scatter([x], [y], s=60, marker="*" if c["chosen"] else "o")
        ax.annotate(c["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(section["max_never_stopped"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("never stopped (% of answers) ↓")
    ax.set_ylabel(section["metric"])
    ax.set_title(f"decoding on the {section['split']} split ({section['model']} model)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def page(section: dict, prompts: list[str], candidates: list[Candidate], image: str, shown: int = 12) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("candidate", *METRICS, "eval overrides"))
    bold = ' style="font-weight:bold"'
    body = "".join(
        f"<tr{bold if c['chosen'] else ''}><td>{escape(c['name'])}</td>"
        + "".join(f"<td>{c['mean'][k]}" + (f" <small>[{c['range'][k][0]}, {c['range'][k][1]}]</small>"
                                          if c["range"] else "") + "</td>" for k in METRICS)
        + f"<td><code>{escape(c['overrides'])}</code></td></tr>" for c in section["candidates"])
    items = "".join(
        f'<div class="item"><div class="text"><b>Prompt:</b> {escape(prompt)}</div>'
        + "".join(f'<div class="text"><b>{escape(c.name)}</b>{"" if c.answers[i]["stopped"] else " (never stopped)"}: '
                  f'{escape(c.answers[i]["text"])}</div>' for c in candidates) + "</div>"
        for i, prompt in enumerate(prompts[:shown]))
    return (f"<!doctype html><html lang=\"tr\"><head><meta charset=\"utf-8\"><title>hasat decoding</title>"
            f"<style>{CSS}</style></head><body><h1>Decoding on the {escape(section['split'])} split</h1>"
            f"<p class=\"meta\">{section['rows']} items, {escape(section['model'])} model, max_new_tokens="
            f"{section['max_new_tokens']}; sampled candidates: mean of {section['seeds']} seeds [range]; known words "
            f"of the references: {section['reference_known_words']}%</p><p><b>Chosen:</b> {escape(section['chosen'])}"
            f" — {escape(section['why'])}<br><code>{escape(section['overrides'])}</code></p>"
            f"<table><tr>{head}</tr>{body}</table><p><img src=\"{escape(image)}\" alt=\"decoding plot\"></p>"
            f"<h2>The first {min(shown, len(prompts))} items (first seed)</h2>{items}</body></html>")


def load_rows(path: Path, split: str) -> list[dict]:
    if not path.is_file():
        raise HasatError(f"{path}: no {split} split (run the pipeline up to split first)")
    rows = read_jsonl(path)
    compare.validate_test_rows(rows, str(path), split)
    return rows


def load_model(which: str):
    from pipeline.tasks.training import load_finetuned
    from pipeline.train.modeling import device, load_saved

    tokenizer, model = load_saved(paths.BASE_MODEL) if which == "base" else \
        load_finetuned(paths.BASE_MODEL, paths.FINETUNED)
    return tokenizer, model.to(device())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.eval.decoding", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="eval.KEY=VALUE",
                        help="eval.max_new_tokens, eval.batch_size, eval.seed (default: params.yaml)")
    parser.add_argument("--model", choices=("finetuned", "base"), default="finetuned")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="val (default); choosing on test makes the test result optimistic")
    parser.add_argument("--seeds", type=int, default=3, help="runs of each sampled candidate")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=KEY:VALUE,...",
                        help="a decoding to try (repeatable; replaces the default six)")
    parser.add_argument("--metric", default="rouge_l", help=f"what the choice maximises: {', '.join(METRICS)}")
    parser.add_argument("--max-never-stopped", type=float, default=10.0, help="percent of answers")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        from pipeline.config_loader import load_config

        wrong = [o for o in args.overrides if o.split("=")[0] not in ("eval.max_new_tokens", "eval.batch_size",
                                                                       "eval.seed")]
        if wrong:
            raise HasatError(f"{wrong[0]}: only eval.max_new_tokens, eval.batch_size and eval.seed are read here")
        if args.seeds < 1:
            raise HasatError(f"--seeds {args.seeds}: at least 1")
        if args.metric not in METRICS:
            raise HasatError(f"--metric {args.metric}: one of {', '.join(METRICS)}")
        cfg = load_config(args.overrides)
        if cfg.task.kind == "classification":
            raise HasatError("task.kind=classification generates no text: there is no decoding to choose")
        candidates = dict(map(parse_candidate, args.candidate)) if args.candidate else DEFAULT_CANDIDATES
        split = paths.VAL_SPLIT if args.split == "val" else paths.TEST_SPLIT
        rows = load_rows(split, args.split)
        known = vocabulary(load_rows(paths.TRAIN_SPLIT, "train"))
        tokenizer, model = load_model(args.model)
        ev = cfg.eval
        done = sweep(model, tokenizer, rows, known, candidates, args.seeds, ev.seed, ev.max_new_tokens, ev.batch_size)
        del model
        gc.collect()
        chosen, why = choose(done, args.metric, args.max_never_stopped)
    except HasatError as err:
        print(f"hasat decoding: error: {err}", file=sys.stderr)
        return 2
    context = {"split": args.split, "file": str(split), "rows": len(rows), "model": args.model,
               "max_new_tokens": ev.max_new_tokens, "seeds": args.seeds, "metric": args.metric,
               "max_never_stopped": args.max_never_stopped}
    section = result(done, chosen, why, context, [r["reference"] for r in rows], known)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "decoding.json", section)
    write_jsonl(args.out / "answers.jsonl",
                [{"candidate": c.name, "source": r.get("source"), "reference": r["reference"], **a}
                 for c in done for r, a in zip(rows, c.answers)])
    image = plot(section, args.out / "decoding.png")
    (args.out / "decoding.html").write_text(page(section, [r.get("prompt_text", "") for r in rows], done, image.name),
                                            encoding="utf-8")
    print(table(section))
    print(f"written: {args.out / 'decoding.json'}, {args.out / 'answers.jsonl'}, {args.out / 'decoding.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
