"""Teacher-forced log-likelihood of continuations: the perplexity of reference answers and the
multiple-choice scores both need sum(log p(token_j | tokens_<j)) over a span of a sequence.

Batched with left padding, so every continuation ends at the right edge. Only the logits of
each row's own span positions are computed (a boolean `logits_to_keep`, as in answer-only
training), so a short answer batched with a long one does not pay for the long one, and a 262k-word
vocabulary does not cost gigabytes. Position ids are given explicitly (a plain forward pass does
not derive them from the attention mask as `generate` does), so a padded row scores exactly as
it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.progress import Progress
from pipeline.train.modeling import takes_position_mask


@dataclass(frozen=True)
class SpanScore:
    logprob: float  # sum of log-probabilities of the span's tokens (natural log)
    n_tokens: int
    greedy: bool  # every span token was the model's argmax (the harness's `is_greedy`)


def _batches(order: list[int], span_lens: list[int], batch_size: int, max_logit_rows: int) -> list[list[int]]:
    """Consecutive groups of at most `batch_size` rows whose rows × (longest span + 1) stays under
    `max_logit_rows`: a bound on the kept logits (each row keeps its own span's) that also bounds
    the padded batch; a single row always fits."""
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        if current is not None and len(current) < batch_size and \
                (len(current) + 1) * (max(span_lens[j] for j in current + [i]) + 1) <= max_logit_rows:
            current.append(i)
        else:
            batches.append([i])
    return batches


def span_logprobs(model, sequences: list[list[int]], starts: list[int], batch_size: int,
                  pad_id: int, max_logit_rows: int = 2048, desc: str | None = None) -> list[SpanScore]:
    """Score tokens `sequences[i][starts[i]:]` given the tokens before them; results in input order.
    With `desc`, progress (sequences scored, rate, ETA) goes to stderr under that name.

    `max_logit_rows` caps the logits a batch materialises (2048 × a 49k vocabulary ≈ 400 MB fp32)."""
    if len(sequences) != len(starts):
        raise ValueError("one start per sequence")
    for seq, start in zip(sequences, starts):
        if not 1 <= start <= len(seq):
            raise ValueError(f"span start {start} must leave at least one context token (length {len(seq)})")
    model.eval()
    dev = next(model.parameters()).device
    span_lens = [len(seq) - start for seq, start in zip(sequences, starts)]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    results: list[SpanScore | None] = [None] * len(sequences)
    progress = Progress(len(sequences), desc, unit="sequence")
    for batch in _batches(order, span_lens, batch_size, max_logit_rows):
        for i, score in zip(batch, _score_batch(model, [sequences[i] for i in batch], [span_lens[i] for i in batch],
                                                pad_id, dev)):
            results[i] = score
        progress.update(len(batch))
    progress.close()
    return results  # type: ignore[return-value]


def _score_batch(model, seqs: list[list[int]], span_lens: list[int], pad_id: int, dev) -> list[SpanScore]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # logits at position p predict token p+1: a row's n span tokens are predicted by the n
    # positions before its last one
    keep = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, n in enumerate(span_lens):
        keep[row, width - n - 1:width - 1] = True
    keep = keep.to(dev)
    masked = takes_position_mask(model)
    with torch.inference_mode():
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                       use_cache=False, **({"logits_to_keep": keep} if masked else {})).logits
    # the kept positions' logits, row after row: (sum of the spans, vocabulary)
    span_logits = (logits if masked else logits[keep]).split(span_lens)
    scores = []
    for row, n in enumerate(span_lens):
        if n == 0:
            scores.append(SpanScore(0.0, 0, True))
            continue
        row_logits = span_logits[row].float()
        targets = ids[row, -n:].to(row_logits.device)
        logprobs = row_logits.log_softmax(-1)
        picked = logprobs.gather(-1, targets[:, None]).squeeze(-1)
        greedy = bool((row_logits.argmax(-1) == targets).all())
        scores.append(SpanScore(float(picked.sum()), n, greedy))
    return scores


def reference_nll(model, rows: list[dict], batch_size: int, pad_id: int,
                  desc: str | None = None) -> list[tuple[float, int]]:
    """(NLL sum, token count) of each tokenized row's answer: the tokens after `n_prompt_tokens`,
    which are the row's labelled tokens (the reference answer and the EOS that closes it)."""
    scores = span_logprobs(model, [r["input_ids"] for r in rows], [max(1, r["n_prompt_tokens"]) for r in rows],
                           batch_size, pad_id, desc=desc)
    return [(-s.logprob, s.n_tokens) for s in scores]
