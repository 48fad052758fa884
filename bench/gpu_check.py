"""One-shot GPU check: what hasat's training and generation do on a GPU, measured in one go and
written to one JSON file. Run it on a GPU machine with `bash bench/gpu_check.sh` (installs the CUDA
build of torch and bitsandbytes when missing, then runs this); on a CPU `--smoke` runs every section
with tiny models so the logic is tested (tests/test_gpu_check.py).

    python bench/gpu_check.py --out reports/gpu_check.json [--budget-s 480] [--peak-tflops 989]

Sections, each skipped with a reason when it cannot run (no CUDA, no bitsandbytes, out of budget):
  lora_bf16      LoRA training tokens/s, peak memory and MFU: SmolLM2-135M (real weights) and a randomly
                 initialised ~1.1B Llama (TinyLlama's shape), bf16
  qlora_4bit     the same with the base quantised to 4 bits (NF4, bitsandbytes)
  packing        useful (non-pad) tokens/s: rows packed with per-sample position ids (SDPA) against
                 padded batches, same rows
  generation     batched greedy generation tokens/s (batch 32 against batch 1)

MFU (model FLOPs utilisation) = tokens/s x FLOPs per token / the GPU's peak dense bf16 FLOP/s. FLOPs
per token of a forward pass: 2 x (parameters of the matrix multiplies, lm_head included) + 2 x layers x
hidden x sequence (causal attention). LoRA training costs about 2 forward passes (activation gradients,
no gradients for the frozen weights): that is `mfu`. `mfu_6n` counts 3 forward passes, as if every
weight were trained (the usual 6N convention), for comparison with published numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import LoraConfig  # noqa: E402
from pipeline.train.packing import PackedCollator, pack  # noqa: E402
from pipeline.train.prompts import IGNORE_INDEX  # noqa: E402

# dense bf16 tensor-core peak, TFLOP/s (vendor datasheets, without sparsity)
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}
# TinyLlama-1.1B's shape; random weights (no hub at run time)
LLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096)
LLAMA_SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=512, max_position_embeddings=512)


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def peak_tflops(name: str, override: Optional[float]) -> Optional[float]:
    if override:
        return override
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key.lower() in name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def matmul_params(model) -> int:
    """Parameters that enter a matrix multiply per token (every Linear, the lm_head included)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def flops_per_token(model, seq_len: int, passes: float) -> float:
    cfg = model.config
    forward = 2 * matmul_params(model) + 2 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    return passes * forward


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(dev: torch.device) -> Optional[float]:
    return round(torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None


def llama(shape: dict, dtype: torch.dtype, dev: torch.device, attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**shape, attn_implementation=attn, tie_word_embeddings=False)
    return LlamaForCausalLM(config).to(dtype=dtype, device=dev)


def with_lora(model):
    from pipeline.train.trainer import wrap_lora

    model.config.use_cache = False
    return wrap_lora(model, LoraConfig(r=16, alpha=32, dropout=0.0), quantized=False, task_type="CAUSAL_LM")


def train_steps(model, batches: list[dict], dev: torch.device, dtype: torch.dtype, warmup: int) -> float:
    """Seconds for the batches after `warmup` of them (AdamW on the trainable weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    started = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            sync(dev)
            started = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**{k: v.to(dev) for k, v in batch.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(dev)
    return time.perf_counter() - started


def random_batches(n: int, batch: int, seq: int, vocab: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (batch, seq), generator=gen)
        out.append({"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)})
    return out


def training_throughput(model, dev, dtype, batch: int, seq: int, steps: int, warmup: int, peak: Optional[float]) -> dict:
    base_fpt = {passes: flops_per_token(model, seq, passes) for passes in (2, 3)}  # before LoRA layers exist
    model = with_lora(model)
    reset_peak(dev)
    seconds = train_steps(model, random_batches(steps + warmup, batch, seq, model.config.vocab_size), dev, dtype,
                          warmup)
    tokens_per_s = steps * batch * seq / seconds
    result = {"batch": batch, "seq_len": seq, "steps": steps, "tokens_per_s": round(tokens_per_s, 1),
              "peak_memory_mib": peak_mib(dev), "matmul_params": matmul_params(model.get_base_model())}
    if peak:
        result["mfu"] = float(f"{tokens_per_s * base_fpt[2] / (peak * 1e12):.4g}")
        result["mfu_6n"] = float(f"{tokens_per_s * base_fpt[3] / (peak * 1e12):.4g}")
    return result


def smollm2(dev: torch.device, dtype: torch.dtype, quantized: bool = False):
    """SmolLM2-135M-Instruct's real weights, from the offline GGUF package (as base_model builds them)."""
    from pipeline.config_loader import load_config
    from pipeline.train.modeling import load_base

    tokenizer, model = load_base(load_config(["model=smollm2_135m"]).model, seed=0)
    if quantized:
        return tokenizer, quantize(model, dtype)
    return tokenizer, model.to(dtype=dtype, device=dev)


def quantize(model, dtype: torch.dtype):
    """Reload a model with its Linear weights in NF4 (bitsandbytes), as train.quantization=4bit does."""
    import tempfile

    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=dtype)
    with tempfile.TemporaryDirectory() as folder:
        model.to(dtype).save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, dtype=dtype,
                                                    device_map={"": 0})


def section(results: dict, name: str, budget: Budget, need_s: float, fn: Callable[[], dict]) -> None:
    """Run one measurement; record its result, or why it was skipped or failed (never stop the run)."""
    if budget.left() < need_s:
        results[name] = {"skipped": f"out of time budget ({budget.left():.0f}s left, needs ~{need_s:.0f}s)"}
    else:
        started = time.monotonic()
        try:
            results[name] = fn()
        except Exception as err:  # a failed section is a result too
            results[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
        results[name]["seconds"] = round(time.monotonic() - started, 1)
    print(f"gpu_check: {name}: {json.dumps(results[name])}", flush=True)


def lengths_like_sft(n: int, seed: int, cap: int) -> list[int]:
    """Row lengths with an SFT-like spread: lognormal, median 15% of the cap (about 300 of 2048 tokens)."""
    import math

    rng = random.Random(seed)
    return [max(8, min(cap, int(rng.lognormvariate(math.log(0.15 * cap), 0.6)))) for _ in range(n)]


def packing_vs_padding(model, dev, dtype, rows: int, batch: int, cap: int, warmup: int) -> dict:
    model = with_lora(model)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    records = []
    for length in lengths_like_sft(rows, 1, cap):
        ids = torch.randint(3, vocab, (length,), generator=gen).tolist()
        records.append({"input_ids": ids, "labels": ids, "attention_mask": [1] * length})
    useful = sum(len(r["input_ids"]) for r in records)
    padded = []
    for i in range(0, len(records), batch):  # random order, padded to the longest row of the batch
        group = records[i:i + batch]
        width = max(len(r["input_ids"]) for r in group)
        padded.append({
            "input_ids": torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in group]),
            "labels": torch.tensor([r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in group]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                            for r in group])})
    pack_length = cap * 2
    packed_rows = pack(records, pack_length)
    rows_per_batch = max(1, batch * useful // len(records) // pack_length)
    collate = PackedCollator(0)
    packed = [collate(packed_rows[i:i + rows_per_batch]) for i in range(0, len(packed_rows), rows_per_batch)]
    result = {"rows": rows, "useful_tokens": useful, "attn_implementation": model.config._attn_implementation}
    for name, batches in (("padded", padded), ("packed", packed)):
        warm = batches[:warmup]
        seconds = train_steps(model, warm + batches, dev, dtype, warmup)
        processed = sum(int(b["input_ids"].numel()) for b in batches)
        result[name] = {"batches": len(batches), "useful_tokens_per_s": round(useful / seconds, 1),
                        "pad_share": round(1 - useful / processed, 3)}
    result["packed_over_padded"] = round(result["packed"]["useful_tokens_per_s"]
                                         / result["padded"]["useful_tokens_per_s"], 2)
    return result


def generation_throughput(model, tokenizer, dev, prompts: int, new_tokens: int, batch: int) -> dict:
    from pipeline.eval.generation import generate

    model.generation_config.eos_token_id = None  # the full length for every row: tokens/s is what we time
    rng = random.Random(2)
    texts = [[rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(24, 64))] for _ in range(prompts)]
    result = {"prompts": prompts, "max_new_tokens": new_tokens}
    for size in (1, batch):
        generate(model, tokenizer, texts[:size], 4, size)  # warm-up
        sync(dev)
        started = time.perf_counter()
        out = generate(model, tokenizer, texts, new_tokens, size)
        sync(dev)
        seconds = time.perf_counter() - started
        result[f"batch_{size}"] = {"tokens_per_s": round(sum(g.n_new_tokens for g in out) / seconds, 1)}
    result["batched_over_single"] = round(result[f"batch_{batch}"]["tokens_per_s"] / result["batch_1"]["tokens_per_s"], 2)
    return result


def environment(dev: torch.device) -> dict:
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}
    try:
        import bitsandbytes

        env["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        env["bitsandbytes"] = None
    return env


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting sections after this")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not known")
    parser.add_argument("--smoke", action="store_true", help="tiny models, few steps: checks the logic on a CPU")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    budget = Budget(args.budget_s)
    env = environment(dev)
    peak = peak_tflops(env["device"], args.peak_tflops) if cuda else args.peak_tflops
    results: dict = {"environment": env, "dtype": str(dtype).replace("torch.", ""), "peak_tflops": peak,
                     "smoke": args.smoke}
    print(f"gpu_check: {json.dumps(results)}", flush=True)
    if not cuda and not args.smoke:
        raise SystemExit("gpu_check: no CUDA device (run bench/gpu_check.sh on a GPU machine, or --smoke here)")
    big = LLAMA_SMOKE if args.smoke else LLAMA_1B
    steps, warmup = (2, 1) if args.smoke else (10, 3)
    seq, batch = (64, 2) if args.smoke else (2048, 8)

    def small_model():
        if args.smoke:  # the tiny random Llama stands in for SmolLM2 (no GGUF dequantising on a CPU test)
            from pipeline.config_loader import load_config
            from pipeline.train.modeling import load_base

            return load_base(load_config(["model=tiny_random"]).model, seed=0)
        return smollm2(dev, dtype)

    def lora() -> dict:
        _, small = small_model()
        out = {"smollm2_135m": training_throughput(small.to(dev), dev, dtype, batch * 2, seq // 2, steps, warmup, peak)}
        del small
        out["llama_1b_random"] = training_throughput(llama(big, dtype, dev), dev, dtype, batch, seq, steps, warmup,
                                                     peak)
        return out

    def qlora() -> dict:
        if not cuda:
            return {"skipped": "QLoRA needs CUDA"}
        if env["bitsandbytes"] is None:
            return {"skipped": "bitsandbytes is not installed (pip install bitsandbytes)"}
        _, small = smollm2(dev, dtype, quantized=True)
        out = {"smollm2_135m": training_throughput(small, dev, dtype, batch * 2, seq // 2, steps, warmup, peak)}
        del small
        big_q = quantize(llama(big, dtype, torch.device("cpu")), dtype)
        out["llama_1b_random"] = training_throughput(big_q, dev, dtype, batch, seq, steps, warmup, peak)
        return out

    def packing() -> dict:
        small = llama(LLAMA_SMOKE, dtype, dev) if args.smoke else smollm2(dev, dtype)[1]
        return packing_vs_padding(small.to(dev), dev, dtype, rows=32 if args.smoke else 512,
                                  batch=4 if args.smoke else 16, cap=256 if args.smoke else 2048, warmup=1)

    def generation() -> dict:
        tokenizer, small = small_model()
        return generation_throughput(small.to(dev), tokenizer, dev, prompts=8 if args.smoke else 64,
                                     new_tokens=8 if args.smoke else 128, batch=4 if args.smoke else 32)

    for name, need, fn in (("lora_bf16", 60, lora), ("qlora_4bit", 90, qlora), ("packing", 60, packing),
                           ("generation", 45, generation)):
        section(results, name, budget, 0 if args.smoke else need, fn)
        if cuda:
            torch.cuda.empty_cache()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"gpu_check: wrote {out}", flush=True)
    return results


if __name__ == "__main__":
    main()
