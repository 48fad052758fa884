import pytest
import torch

from pipeline.eval.loglik import reference_nll, span_logprobs
from pipeline.train.modeling import load_saved


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_saved(tiny_model_dir)


def manual_logprob(model, seq, start):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([seq])).logits[0].float()
    logprobs = logits.log_softmax(-1)
    return sum(logprobs[j - 1, seq[j]].item() for j in range(start, len(seq)))


def test_batched_left_padded_scores_equal_unpadded_forward(tiny):
    tokenizer, model = tiny
    seqs = [tokenizer("Soru: Buğday ne zaman ekilir?\nCevap: Eylül sonunda", add_special_tokens=False)["input_ids"],
            tokenizer("Arı", add_special_tokens=False)["input_ids"] + [5, 6],
            tokenizer("İzmir'de pamuk yetişir mi? Evet, yetişir.", add_special_tokens=False)["input_ids"]]
    starts = [len(seqs[0]) - 4, 1, 5]
    batched = span_logprobs(model, seqs, starts, batch_size=3, pad_id=tokenizer.pad_token_id)
    for seq, start, score in zip(seqs, starts, batched):
        assert score.n_tokens == len(seq) - start
        assert score.logprob == pytest.approx(manual_logprob(model, seq, start), abs=1e-3)
    single = [span_logprobs(model, [s], [st], batch_size=1, pad_id=tokenizer.pad_token_id)[0] for s, st in zip(seqs, starts)]
    assert [s.logprob for s in single] == pytest.approx([s.logprob for s in batched], abs=1e-4)


def test_span_must_leave_a_context_token(tiny):
    tokenizer, model = tiny
    with pytest.raises(ValueError, match="context token"):
        span_logprobs(model, [[1, 2, 3]], [0], batch_size=1, pad_id=0)


def test_reference_nll_scores_the_labelled_answer_tokens(tiny):
    tokenizer, model = tiny
    prompt = tokenizer("Soru: Fındık nerede yetişir?\nCevap:", add_special_tokens=False)["input_ids"]
    answer = tokenizer(" Karadeniz'de.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    row = {"input_ids": prompt + answer, "n_prompt_tokens": len(prompt),
           "labels": [-100] * len(prompt) + answer}
    [(nll, count)] = reference_nll(model, [row], batch_size=4, pad_id=tokenizer.pad_token_id)
    assert count == len(answer) == sum(label != -100 for label in row["labels"])
    assert nll == pytest.approx(-manual_logprob(model, row["input_ids"], len(prompt)), abs=1e-3)


def test_batches_respect_the_logit_budget():
    from pipeline.eval.loglik import _batches

    span_lens = [10, 10, 10, 300, 5]
    assert _batches([0, 1, 2, 3, 4], span_lens, batch_size=2, max_logit_rows=10_000) == [[0, 1], [2, 3], [4]]
    # 2 rows of a 300-token span need 2 × 301 logit rows: over a budget of 500, so row 3 goes alone
    assert _batches([0, 1, 2, 3, 4], span_lens, batch_size=8, max_logit_rows=500) == [[0, 1, 2], [3], [4]]


def test_small_logit_budget_gives_the_same_scores(tiny):
    tokenizer, model = tiny
    seqs = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]]
    starts = [2, 1, 3]
    wide = span_logprobs(model, seqs, starts, batch_size=3, pad_id=0)
    narrow = span_logprobs(model, seqs, starts, batch_size=3, pad_id=0, max_logit_rows=1)
    assert [s.logprob for s in wide] == pytest.approx([s.logprob for s in narrow], abs=1e-4)


def test_only_each_rows_span_positions_reach_the_output_layer(tiny, monkeypatch):
    tokenizer, model = tiny
    seqs = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [11, 12, 13], [14, 15, 16, 17]]
    starts = [2, 2, 3]  # spans of 8, 1 and 1 tokens
    rows_projected = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: rows_projected.append(args[0].shape[:-1]))
    try:
        masked = span_logprobs(model, seqs, starts, batch_size=3, pad_id=0)
    finally:
        hook.remove()
    assert [tuple(shape) for shape in rows_projected] == [(8 + 1 + 1,)]  # not 3 rows × (8 + 1)
    # a model without a logit mask computes every position's logits: the same scores
    monkeypatch.setattr("pipeline.eval.loglik.takes_position_mask", lambda model: False)
    full = span_logprobs(model, seqs, starts, batch_size=3, pad_id=0)
    assert [s.logprob for s in masked] == pytest.approx([s.logprob for s in full], abs=1e-4)
    assert [s.greedy for s in masked] == [s.greedy for s in full]
