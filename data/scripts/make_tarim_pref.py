"""Build data/raw/tarim_pref: Turkish agriculture preference pairs from data/raw/tarim_sft.

chosen   = the curated answer of the tarim_sft row (written and checked by people, see data/README.md)
rejected = what the untuned base model (SmolLM2-135M-Instruct, the default `model` profile) answers to
           the same prompt: greedy decoding, the default system prompt and chat template, at most
           MAX_NEW_TOKENS new tokens. Nothing is edited by hand.

    python data/scripts/make_tarim_pref.py            # ~2 minutes on a laptop CPU

The prompts are the first ROWS_PER_TOPIC rows of each topic in talimatlar.jsonl, so the set is fixed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from pipeline.config import ModelConfig, TaskConfig
from pipeline.eval.generation import generate
from pipeline.train.modeling import load_base
from pipeline.train.prompts import prompt_ids

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data/raw/tarim_sft/talimatlar.jsonl"
OUT = ROOT / "data/raw/tarim_pref/tercihler.jsonl"
ROWS_PER_TOPIC = 12
MAX_NEW_TOKENS = 96


def prompts() -> list[dict]:
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if len(by_topic[row["topic"]]) < ROWS_PER_TOPIC:
            by_topic[row["topic"]].append(row)
    return [row for topic in sorted(by_topic) for row in by_topic[topic]]


def main() -> None:
    torch.manual_seed(0)
    rows = prompts()
    tokenizer, model = load_base(ModelConfig(), seed=0)
    system = TaskConfig().system_prompt
    ids = [prompt_ids(r, tokenizer, "chat_template", system) for r in rows]
    answers = generate(model, tokenizer, ids, MAX_NEW_TOKENS, batch_size=16)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as handle:
        for row, answer in zip(rows, answers):
            prompt = f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]
            pair = {"prompt": prompt, "chosen": row["output"], "rejected": answer.text.strip(),
                    "topic": row["topic"], "rejected_by": "SmolLM2-135M-Instruct (base, greedy)",
                    "rejected_stopped": answer.stopped}
            handle.write(json.dumps(pair, ensure_ascii=False) + "\n")
    print(f"{len(rows)} pairs -> {OUT}")


if __name__ == "__main__":
    main()
