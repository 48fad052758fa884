"""Useful (non-pad) tokens per second of LoRA fine-tuning, three ways, side by side:

  pad-to-longest  every example padded to the longest one in the dataset
                  (what `tokenizer(texts, padding=True)` in the seed's example does)
  hasat           dynamic padding + length-grouped batches (the finetune stage's default)
  packed          samples packed into full rows, kept apart by per-sample position ids
                  (`train.packing=true`; the practical limit on this machine)

    python bench/finetune_throughput.py                 # demo data, real SmolLM2 base (models/base)
    python bench/finetune_throughput.py --samples 96 --model-dir models/base

Needs `dvc repro split` (or `make demo`) to have run, for models/base and the split.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import torch

from pipeline.io import read_jsonl
from pipeline.train.modeling import load_saved
from pipeline.train.prompts import IGNORE_INDEX
from pipeline.train.packing import PackedCollator, pack
from pipeline.train.trainer import wrap_lora
from pipeline.config import LoraConfig


def padded_batch(rows: list[dict], width: int, pad_id: int) -> dict:
    ids = [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
    labels = [r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in rows]
    mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


def batches(mode: str, rows: list[dict], batch_size: int, dataset_max: int, pad_id: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    if mode == "pad-to-longest":
        order = rows[:]
        rng.shuffle(order)
        return [padded_batch(order[i:i + batch_size], dataset_max, pad_id) for i in range(0, len(order), batch_size)]
    if mode == "hasat":  # length-grouped: sort by length, batch, shuffle the batches
        order = sorted(rows, key=lambda r: len(r["input_ids"]))
        groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(groups)
        return [padded_batch(g, max(len(r["input_ids"]) for r in g), pad_id) for g in groups]
    rows_per_batch = 2
    pack_length = batch_size * sum(len(r["input_ids"]) for r in rows) // len(rows) // rows_per_batch
    packed = pack(rows, max(pack_length, dataset_max))
    collate = PackedCollator(pad_id)
    return [collate(packed[i:i + rows_per_batch]) for i in range(0, len(packed), rows_per_batch)]


def run(model, optimizer, batch_list: list[dict]) -> tuple[float, int]:
    model.train()
    processed = sum(b["input_ids"].numel() for b in batch_list)
    started = time.perf_counter()
    for batch in batch_list:
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started, processed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="models/base")
    parser.add_argument("--train", default="data/processed/split/train.jsonl")
    parser.add_argument("--samples", type=int, default=64, help="training rows measured (seeded subset)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    all_rows = read_jsonl(args.train)
    dataset_max = max(len(r["input_ids"]) for r in all_rows)
    rows = random.Random(args.seed).sample(all_rows, min(args.samples, len(all_rows)))
    tokenizer, model = load_saved(args.model_dir)
    model.config.use_cache = False
    model = wrap_lora(model, LoraConfig())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    warm = batches("hasat", rows[: args.batch_size], args.batch_size, dataset_max, tokenizer.pad_token_id, 0)
    run(model, optimizer, warm[:1])
    useful = sum(len(r["input_ids"]) for r in rows)  # the same samples in every mode: non-pad tokens

    print(f"{len(rows)} of {len(all_rows)} training rows, batch {args.batch_size}, longest row in the dataset "
          f"{dataset_max} tokens, mean {sum(len(r['input_ids']) for r in all_rows) / len(all_rows):.0f}; "
          f"torch threads {torch.get_num_threads()}\n")
    print(f"{'mode':<16}{'seconds':>9}{'batches':>9}{'tokens run':>12}{'useful':>9}{'useful tok/s':>14}{'vs pad-to-longest':>19}")
    results = {}
    for mode in ("pad-to-longest", "hasat", "packed"):
        batch_list = batches(mode, rows, args.batch_size, dataset_max, tokenizer.pad_token_id, args.seed)
        seconds, processed = run(model, optimizer, batch_list)
        results[mode] = useful / seconds
        print(f"{mode:<16}{seconds:>9.1f}{len(batch_list):>9}{processed:>12}{useful:>9}{results[mode]:>14.1f}"
              f"{results[mode] / results['pad-to-longest']:>18.2f}x", flush=True)
    print(f"\nhasat vs pad-to-longest: {results['hasat'] / results['pad-to-longest']:.2f}x (target >= 2x)")
    print(f"hasat vs packed:         {results['hasat'] / results['packed']:.2f}x (target >= 0.9x)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
