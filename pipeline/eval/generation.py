"""Batched generation with left padding and the KV cache: prompts sorted by length so a batch
wastes little padding, greedy by default, sampling and repetition controls from config.

Greedy decoding in a batch gives the same text as one prompt at a time (left padding plus the
attention mask; `bench/generation.py` and tests/test_generation.py check it). Sampling does not:
the random stream depends on the batch, so sampled answers are reproducible for one batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from pipeline.config import DecodingConfig
from pipeline.progress import Progress


@dataclass
class Generation:
    text: str
    n_new_tokens: int
    stopped: bool  # ended with EOS before max_new_tokens


@dataclass
class Decoding(DecodingConfig):
    """Decoding settings (`eval.*` in config, fields in DecodingConfig). Defaults: plain greedy, no
    penalties (the config's own defaults are the demo's chosen decoding; `from_config` takes those)."""

    no_repeat_ngram_size: int = 0

    @classmethod
    def from_config(cls, eval_cfg) -> "Decoding":
        return cls(**{f.name: getattr(eval_cfg, f.name) for f in fields(DecodingConfig)})

    def generate_kwargs(self) -> dict:
        # sampling knobs only with sampling: transformers warns when they come with greedy
        kwargs: dict = {"do_sample": self.do_sample, "num_beams": 1}
        if self.do_sample and self.top_k > 0:
            # temperature, top-k and top-p in one processor that never sorts the whole vocabulary; the
            # built-in ones are switched off explicitly (a model's generation_config may set its own)
            from transformers import LogitsProcessorList

            kwargs.update(temperature=1.0, top_p=1.0, top_k=0,
                          logits_processor=LogitsProcessorList([TopKTopP(self.temperature, self.top_k, self.top_p)]))
        elif self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # the model's own generation_config may carry sampling defaults: neutralise them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size > 0:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kwargs

    def describe(self) -> str:
        text = (f"sampling (temperature={self.temperature}, top_p={self.top_p}, top_k={self.top_k}, "
                f"seed={self.seed})" if self.do_sample else "greedy")
        if self.repetition_penalty != 1.0:
            text += f", repetition_penalty={self.repetition_penalty}"
        if self.no_repeat_ngram_size > 0:
            text += f", no_repeat_ngram_size={self.no_repeat_ngram_size}"
        return text


GREEDY = Decoding()


class TopKTopP:
    """Temperature, then top-k, then top-p among those k: the distribution transformers' Temperature,
    TopK and TopP warpers give, without their sort of the whole vocabulary per row and step (262k
    entries with Gemma: 1.23x faster sampling on 2 CPU cores, `bench/generation.py --sampling`)."""

    def __init__(self, temperature: float, top_k: int, top_p: float):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        values, indices = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1)  # sorted, largest first
        if self.top_p < 1.0:
            probs = values.softmax(dim=-1)
            above = probs.cumsum(dim=-1) - probs  # the mass of the more likely tokens
            remove = above >= self.top_p
            remove[..., 0] = False  # the most likely token always stays
            values = values.masked_fill(remove, float("-inf"))
        return torch.full_like(scores, float("-inf")).scatter(-1, indices, values)


def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
             decoding: Decoding = GREEDY, desc: str | None = "generate") -> list[Generation]:
    """Continue each tokenized prompt; results in the order of `prompts`. Progress (answers done,
    rate, ETA, new tokens per answer) goes to stderr under `desc` (pipeline.progress; None: quiet)."""
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    progress = Progress(len(prompts), desc, unit="answer")
    new_tokens = 0
    for start in range(0, len(order), batch_size):
        batch_idx = order[start:start + batch_size]
        batch = generate_batch(model, tokenizer, [prompts[i] for i in batch_idx], [max_new_tokens] * len(batch_idx),
                               decoding)
        for i, generation in zip(batch_idx, batch):
            results[i] = generation
        new_tokens += sum(g.n_new_tokens for g in batch)
        progress.update(len(batch_idx), new_tokens_per_answer=round(new_tokens / (start + len(batch_idx)), 1))
    progress.close()
    return results  # type: ignore[return-value]


def generate_batch(model, tokenizer, prompts: list[list[int]], limits: list[int], decoding: Decoding = GREEDY,
                   streamer=None) -> list[Generation]:
    """One left-padded batch; row i stops at its own `limits[i]` new tokens (the batch runs to the
    largest; greedy rows are the same as alone). `streamer` (transformers' BaseStreamer) sees the
    new tokens of every row at each step, as the server's streaming needs."""
    model.eval()
    dev = next(model.parameters()).device
    eos_ids = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):  # left padding: the answer starts at the same column
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids.to(dev), attention_mask=attention.to(dev),
                             max_new_tokens=max(limits), eos_token_id=eos_ids, pad_token_id=pad_id,
                             use_cache=True, streamer=streamer, **decoding.generate_kwargs())
    return [_decode(out[row, width:width + limit].tolist(), tokenizer, eos_ids) for row, limit in enumerate(limits)]


def eos_token_ids(model, tokenizer) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return [i for i in ids if i is not None] or [tokenizer.eos_token_id]


def _decode(new_ids: list[int], tokenizer, eos_ids: list[int]) -> Generation:
    stop_at = next((pos for pos, tok in enumerate(new_ids) if tok in eos_ids), None)
    kept = new_ids if stop_at is None else new_ids[:stop_at]
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    return Generation(text=text, n_new_tokens=len(kept) + (stop_at is not None), stopped=stop_at is not None)
