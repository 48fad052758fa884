"""Batched vs one-prompt-at-a-time greedy generation on the demo test split, same settings:

    python bench/generation.py                      # 16 test prompts, settings from params.yaml (~4 min)
    python bench/generation.py --subset 0 --repeats 3   # the whole test split, best of 3 (~20 min)
    python bench/generation.py --batch-size 16 --max-new-tokens 64 --repeats 3
    python bench/generation.py --sampling --repeats 2   # sampling: transformers' warpers vs ours, batched

The prompts are the demo's test split (data/processed/split/test.jsonl, built with `dvc repro split`
if missing); the base model comes from models/base (materialised first with the base_model stage
if missing).
Both ways use `pipeline.eval.generation.generate` (batch size N, and batch size 1 for one at a time);
the bench fails if any output differs. Prints prompts/s, generated tokens/s and the speed-up.
With --sampling it compares, both batched and with the same seed, sampling through transformers'
Temperature/TopK/TopP warpers against hasat's one processor (`TopKTopP`, which does not sort the
whole vocabulary), with eval.temperature/top_p/top_k (or 0.7/0.9/50 when params.yaml is greedy), and
says whether they drew the same answers.
Each mode runs `--repeats` times, interleaved, and the fastest run counts (as `timeit` does): on a
shared machine other processes only ever add time, so the minimum is the least disturbed run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import paths  # noqa: E402
from pipeline.config_loader import load_config  # noqa: E402
from pipeline.eval.generation import Decoding, generate  # noqa: E402
from pipeline.io import read_jsonl  # noqa: E402
from pipeline.train.modeling import load_saved  # noqa: E402

BASE = REPO / "models" / "base"


def test_prompts() -> list[list[int]]:
    """The test split's prompts exactly as the evaluate stage gets them (the split built by DVC)."""
    if not (REPO / paths.TEST_SPLIT).is_file():
        print(f"{paths.TEST_SPLIT} missing: building it with `dvc repro split`")
        subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", "split"], cwd=REPO, check=True)
    return [r["input_ids"][: r["n_prompt_tokens"]] for r in read_jsonl(REPO / paths.TEST_SPLIT)]


class BuiltinWarpers(Decoding):
    """Sampling through transformers' own temperature, top-k and top-p warpers (what hasat did before)."""

    def generate_kwargs(self) -> dict:
        return {"do_sample": True, "num_beams": 1, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k}


def sampling_bench(cfg, model, tokenizer, prompts, max_new: int, batch_size: int, repeats: int) -> int:
    ev = cfg.eval
    knobs = dict(temperature=ev.temperature, top_p=ev.top_p, top_k=ev.top_k) if ev.do_sample else \
        dict(temperature=0.7, top_p=0.9, top_k=50)
    ours, builtin = Decoding(do_sample=True, seed=ev.seed, **knobs), BuiltinWarpers(do_sample=True, seed=ev.seed, **knobs)
    print(f"sampling {knobs}, batch size {batch_size}")
    builtin_name, ours_name = "transformers' warpers", "one top-k/top-p processor"
    runs: dict[str, list[float]] = {builtin_name: [], ours_name: []}
    for _ in range(repeats):
        theirs, seconds = timed(lambda: generate(model, tokenizer, prompts, max_new, batch_size, builtin, desc=None))
        runs[builtin_name].append(seconds)
        mine, seconds = timed(lambda: generate(model, tokenizer, prompts, max_new, batch_size, ours, desc=None))
        runs[ours_name].append(seconds)
    tokens = sum(g.n_new_tokens for g in mine)
    print(f"\n{'mode (fastest run)':<28}{'seconds':>9}{'prompts/s':>11}{'tokens/s':>10}   runs (s)")
    for name, seconds in runs.items():
        print(f"{name:<28}{min(seconds):>9.1f}{len(prompts) / min(seconds):>11.3f}{tokens / min(seconds):>10.1f}   "
              + ", ".join(f"{s:.1f}" for s in seconds))
    print(f"\nspeed-up: {min(runs[builtin_name]) / min(runs[ours_name]):.2f}x")
    same = sum(a.text == b.text for a, b in zip(theirs, mine))
    print(f"same answers: {same} of {len(prompts)} (the same distribution; float rounding can move a draw)")
    return 0


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=16, help="first N test prompts (0: all)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, interleaved; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=None, help="default: eval.batch_size")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: eval.max_new_tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--sampling", action="store_true", help="sampling: transformers' warpers vs hasat's processor")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import os

    os.chdir(REPO)
    cfg = load_config([])
    batch_size = args.batch_size or cfg.eval.batch_size
    max_new = args.max_new_tokens or cfg.eval.max_new_tokens
    if not (BASE / "config.json").is_file():
        print("models/base missing: materialising it with the base_model stage")
        subprocess.run([sys.executable, "-m", "pipeline.stages.base_model"], cwd=REPO, check=True)
    tokenizer, model = load_saved(BASE)
    prompts = test_prompts()
    n_split = len(prompts)
    prompts = prompts[: args.subset] if args.subset else prompts
    print(f"model {cfg.model.name}, {len(prompts)} of {n_split} test prompts "
          f"(prompt tokens {min(map(len, prompts))}-{max(map(len, prompts))}), max_new_tokens={max_new}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    generate(model, tokenizer, prompts[:2], 4, 2, desc=None)  # warm-up: one-time allocations and kernel selection
    if args.sampling:
        return sampling_bench(cfg, model, tokenizer, prompts, max_new, batch_size, args.repeats)

    batched_runs, single_runs = [], []
    for _ in range(args.repeats):
        batched, seconds = timed(lambda: generate(model, tokenizer, prompts, max_new, batch_size, desc=None))
        batched_runs.append(seconds)
        single, seconds = timed(lambda: [generate(model, tokenizer, [p], max_new, 1, desc=None)[0] for p in prompts])
        single_runs.append(seconds)
    batched_s, single_s = min(batched_runs), min(single_runs)
    print("runs (s): batched " + ", ".join(f"{s:.1f}" for s in batched_runs) + "; one at a time "
          + ", ".join(f"{s:.1f}" for s in single_runs))

    differ = [i for i, (b, s) in enumerate(zip(batched, single)) if b.text != s.text]
    tokens = sum(g.n_new_tokens for g in batched)
    print(f"\n{'mode (fastest run)':<26}{'seconds':>9}{'prompts/s':>11}{'tokens/s':>10}")
    for name, seconds in ((f"batched (batch size {batch_size})", batched_s), ("one prompt at a time", single_s)):
        print(f"{name:<26}{seconds:>9.1f}{len(prompts) / seconds:>11.3f}{tokens / seconds:>10.1f}")
    print(f"\nspeed-up: {single_s / batched_s:.2f}x  (target >= 4x on 2 CPU cores)")
    print(f"generated tokens: {tokens} ({sum(not g.stopped for g in batched)} of {len(prompts)} answers hit "
          f"max_new_tokens without EOS)")
    if differ:
        print(f"outputs differ for {len(differ)} prompts (first: #{differ[0]}):\n  batched: {batched[differ[0]].text!r}\n"
              f"  single:  {single[differ[0]].text!r}")
        return 1
    print("outputs: identical for every prompt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
