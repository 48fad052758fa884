"""Useful (non-pad) tokens per second of LoRA fine-tuning, three ways, side by side:

  pad-to-longest  every example padded to the longest one in the dataset
                  (what `tokenizer(texts, padding=True)` in the seed's example does)
  hasat           dynamic padding + length-grouped batches (the finetune stage's default)
  packed          samples packed into full rows, kept apart by per-sample position ids
                  (`train.packing=true`; the practical limit on this machine)

    python bench/finetune_throughput.py                 # demo data, real SmolLM2 base (models/base)
    python bench/finetune_throughput.py --samples 96 --model-dir models/base

With --logits it compares instead full logits with answer-only logits (`train.answer_only_logits`,
pipeline/train/answer_only.py) on the same length-grouped batches: useful tokens/s, peak RSS (each
variant in its own process, so each peak is its own), vocabulary-sized logit rows computed and the
loss of the first batches (which must agree), with answer-only / full ratios:

    python bench/finetune_throughput.py --logits --model-dir models/base --samples 64
    python bench/finetune_throughput.py --logits --model-dir models/base_gemma --train my/train.jsonl

Needs `dvc repro split` (or `make demo`) to have run, for models/base and the split (`--train`:
any tokenized split, rows with input_ids and labels).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

import torch

from pipeline.io import read_jsonl
from pipeline.train.answer_only import answer_only_inputs, answer_positions
from pipeline.train.modeling import load_saved
from pipeline.train.prompts import IGNORE_INDEX
from pipeline.train.packing import PackedCollator, pack
from pipeline.train.trainer import wrap_lora
from pipeline.config import LoraConfig

LOGIT_VARIANTS = ("full", "answer-only")


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


def run_logits(model, optimizer, batch_list: list[dict], answer_only: bool, n_losses: int) -> dict:
    """Train on the batches with full or answer-only logits: seconds, logit rows, first losses."""
    model.train()
    losses, logit_rows = [], 0
    started = time.perf_counter()
    for batch in batch_list:
        inputs = answer_only_inputs(batch) if answer_only else batch
        loss = model(**inputs, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        logit_rows += int(answer_positions(batch["labels"]).sum()) if answer_only else batch["input_ids"].numel()
        if len(losses) < n_losses:
            losses.append(loss.item())
    return {"seconds": time.perf_counter() - started, "logit_rows": logit_rows, "losses": losses}


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def measure_logits(args, variant: str) -> dict:
    """One variant, in a process of its own: the same seeded rows, LoRA init and batches as the other."""
    rows = random.Random(args.seed).sample(read_jsonl(args.train), args.samples)
    tokenizer, model = load_saved(args.model_dir)
    model.config.use_cache = False
    torch.manual_seed(args.seed)
    model = wrap_lora(model, LoraConfig(dropout=0.0))  # no dropout: both variants see the same numbers
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch_list = batches("hasat", rows, args.batch_size, dataset_max=0, pad_id=tokenizer.pad_token_id, seed=args.seed)
    answer_only = variant == "answer-only"
    loaded = rss_mib()
    warm = batch_list[0]  # one forward/backward outside the timing, no optimiser step
    model(**(answer_only_inputs(warm) if answer_only else warm), use_cache=False).loss.backward()
    optimizer.zero_grad(set_to_none=True)
    result = run_logits(model, optimizer, batch_list, answer_only, args.loss_batches)
    return {**result, "variant": variant, "batches": len(batch_list), "loaded_rss_mib": loaded,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "useful_tokens": sum(len(r["input_ids"]) for r in rows),
            "answer_tokens": sum(sum(t != IGNORE_INDEX for t in r["labels"][1:]) for r in rows),
            "vocab_size": model.get_output_embeddings().weight.shape[0], "torch_threads": torch.get_num_threads()}


def compare_logits(args) -> None:
    """Full vs answer-only logits, each in a fresh process of this script; a table and the ratios."""
    results = {}
    for variant in LOGIT_VARIANTS:
        command = [sys.executable, __file__, "--logits-variant", variant, "--model-dir", args.model_dir,
                   "--train", args.train, "--samples", str(args.samples), "--batch-size", str(args.batch_size),
                   "--seed", str(args.seed), "--loss-batches", str(args.loss_batches)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{variant}: the measuring process failed\n{done.stderr[-3000:]}")
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    full, short = (results[v] for v in LOGIT_VARIANTS)
    print(f"{full['useful_tokens']} useful tokens in {args.samples} rows ({full['answer_tokens']} trained answer "
          f"tokens), {full['batches']} length-grouped batches of {args.batch_size}, vocabulary {full['vocab_size']}, "
          f"torch threads {full['torch_threads']}; {args.model_dir}\n")
    print(f"{'logits':<13}{'seconds':>9}{'useful tok/s':>14}{'logit rows':>12}{'peak RSS MiB':>14}"
          f"{'over loaded':>13}  first losses")
    for r in (full, short):
        print(f"{r['variant']:<13}{r['seconds']:>9.1f}{r['useful_tokens'] / r['seconds']:>14.1f}{r['logit_rows']:>12}"
              f"{r['peak_rss_mib']:>14.0f}{r['peak_rss_mib'] - r['loaded_rss_mib']:>13.0f}  "
              + " ".join(f"{loss:.6f}" for loss in r["losses"]))
    diff = max(abs(a - b) / abs(a) for a, b in zip(full["losses"], short["losses"]))
    over_loaded = [r["peak_rss_mib"] - r["loaded_rss_mib"] for r in (full, short)]
    print(f"\nanswer-only / full: useful tok/s {full['seconds'] / short['seconds']:.2f}x, "
          f"logit rows {short['logit_rows'] / full['logit_rows']:.3f}, peak RSS "
          f"{short['peak_rss_mib'] / full['peak_rss_mib']:.2f} (over loaded {over_loaded[1] / over_loaded[0]:.2f})")
    print(f"first {len(full['losses'])} batch losses: largest relative difference {diff:.1e} (should be ~1e-6)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="models/base")
    parser.add_argument("--train", default="data/processed/split/train.jsonl")
    parser.add_argument("--samples", type=int, default=64, help="training rows measured (seeded subset)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logits", action="store_true", help="full vs answer-only logits instead of the batch modes")
    parser.add_argument("--loss-batches", type=int, default=3, help="--logits: first batches whose loss is compared")
    parser.add_argument("--logits-variant", choices=LOGIT_VARIANTS, help=argparse.SUPPRESS)  # the measuring process
    args = parser.parse_args()
    if args.logits_variant:
        print(json.dumps(measure_logits(args, args.logits_variant)))
        return
    if args.logits:
        args.samples = min(args.samples, len(read_jsonl(args.train)))
        compare_logits(args)
        return

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
