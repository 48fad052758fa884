"""Build data/raw/tarim_pref: Turkish agriculture preference pairs from data/raw/tarim_sft.

chosen   = the curated answer of the tarim_sft row (written and checked by people, see data/README.md)
rejected = --rejected mismatched (the shipped file): the curated answer to ANOTHER question of the same
           topic (the next row of that topic, cyclically): fluent, on-domain Turkish that does not answer
           the question asked, so the preference taught is relevance, not fluency;
           --rejected base (data/raw/tarim_pref_base): what the untuned base model (SmolLM2-135M-Instruct,
           the default `model` profile) answers to the same prompt: greedy, tarim_pref's system prompt
           and the model's chat template, at most MAX_NEW_TOKENS new tokens (the classic on-policy
           construction; 1 min 41 s on 2 quiet CPU cores).
Nothing is edited by hand.

    python data/scripts/make_tarim_pref.py                     # data/raw/tarim_pref, instant
    python data/scripts/make_tarim_pref.py --rejected base     # data/raw/tarim_pref_base

The prompts are the first ROWS_PER_TOPIC rows of each topic in talimatlar.jsonl, so the set is fixed.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from pipeline.config import ModelConfig
from pipeline.config_loader import load_config
from pipeline.eval.generation import generate
from pipeline.train.modeling import load_base
from pipeline.train.prompts import prompt_ids

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data/raw/tarim_sft/talimatlar.jsonl"
OUT = {"mismatched": ROOT / "data/raw/tarim_pref/tercihler.jsonl",
       "base": ROOT / "data/raw/tarim_pref_base/tercihler.jsonl"}
ROWS_PER_TOPIC = 12
MAX_NEW_TOKENS = 96


def prompts() -> list[dict]:
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if len(by_topic[row["topic"]]) < ROWS_PER_TOPIC:
            by_topic[row["topic"]].append(row)
    return [row for topic in sorted(by_topic) for row in by_topic[topic]]


def base_answers(rows: list[dict]) -> list[str]:
    torch.manual_seed(0)
    tokenizer, model = load_base(ModelConfig(), seed=0)
    model.eval()
    system = load_config(["data=tarim_pref"], params_file=ROOT / "params.yaml", conf_dir=ROOT / "conf").data.system_prompt
    ids = [prompt_ids(r, tokenizer, "chat_template", system) for r in rows]
    return [a.text.strip() for a in generate(model, tokenizer, ids, MAX_NEW_TOKENS, batch_size=16)]


def mismatched_answers(rows: list[dict]) -> list[str]:
    """Each row gets the curated answer of the next row of its topic (the last gets the first's)."""
    by_topic: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_topic[row["topic"]].append(i)
    answers = [""] * len(rows)
    for members in by_topic.values():
        for k, i in enumerate(members):
            answers[i] = rows[members[(k + 1) % len(members)]]["output"]
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rejected", choices=("mismatched", "base"), default="mismatched")
    args = parser.parse_args()
    rows = prompts()
    rejected = base_answers(rows) if args.rejected == "base" else mismatched_answers(rows)
    origin = "SmolLM2-135M-Instruct (base, greedy)" if args.rejected == "base" else "another question's answer"
    out = OUT[args.rejected]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row, answer in zip(rows, rejected):
            prompt = f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]
            pair = {"prompt": prompt, "chosen": row["output"], "rejected": answer, "topic": row["topic"],
                    "rejected_from": origin}
            handle.write(json.dumps(pair, ensure_ascii=False) + "\n")
    print(f"{len(rows)} pairs -> {out}")


if __name__ == "__main__":
    main()
