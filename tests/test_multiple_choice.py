import json
from collections import Counter

import pytest

from pipeline.eval import multiple_choice as mc
from pipeline.config import check_mc_template
from pipeline.errors import HasatError
from pipeline.eval.loglik import SpanScore
from pipeline.train.modeling import load_saved
from tests.conftest import REPO

SHIPPED = REPO / "data" / "benchmarks" / "tarim_mc" / "sorular.jsonl"
GOOD = {"id": "q1", "question": "Arıcılıkta varroa nedir?", "choices": ["Bir arı ırkı", "Parazit bir akar",
        "Bir bal çeşidi", "Bir kovan tipi"], "answer": 1, "topic": "aricilik"}


def test_shipped_benchmark_loads_and_matches_its_card():
    questions = mc.load_questions(SHIPPED)
    assert len(questions) == 93
    assert Counter(q.answer for q in questions) == {0: 24, 1: 23, 2: 23, 3: 23}
    assert len({q.topic for q in questions}) == 9


@pytest.mark.parametrize("change, expected", [
    ({"answer": 4}, "'answer' must be a choice index 0-3 (got 4)"),
    ({"answer": True}, "'answer' must be a choice index 0-3 (got True)"),
    ({"choices": ["a", "b", "c"]}, "'choices' must be a list of 4 strings (got 3)"),
    ({"choices": ["a", "b", "c", " "]}, "every choice must be a non-empty string"),
    ({"question": ""}, "'question' must be a non-empty string"),
])
def test_bad_row_names_file_line_and_problem(tmp_path, change, expected):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps(GOOD, ensure_ascii=False) + "\n" + json.dumps({**GOOD, "id": "q2", **change}) + "\n",
                    encoding="utf-8")
    with pytest.raises(HasatError) as err:
        mc.load_questions(path)
    assert str(err.value) == f"{path}:2: {expected}"


def test_missing_field_broken_json_duplicate_id_and_empty_file(tmp_path):
    path = tmp_path / "mc.jsonl"
    for text, expected in [
        (json.dumps({k: v for k, v in GOOD.items() if k != "answer"}), ":1: missing field 'answer'"),
        ('{"id": "q1", "question": ', ":1: not valid JSON"),
        (json.dumps(GOOD) + "\n" + json.dumps(GOOD), ":2: id 'q1' already used on line 1"),
        ("\n", "the multiple-choice file has no questions"),
    ]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(HasatError, match=expected):
            mc.load_questions(path)
    with pytest.raises(HasatError, match="multiple-choice file not found"):
        mc.load_questions(tmp_path / "missing.jsonl")


def test_template_must_name_only_the_question():
    check_mc_template("Soru: {question}\nCevap:")
    for bad in ("Soru ve cevap:", "Soru: {question} {choices}"):
        with pytest.raises(HasatError, match="eval.mc.template"):
            check_mc_template(bad)


def test_encode_pair_splits_like_the_harness(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ctx, cont = mc.encode_pair(tok, "Soru: Fındık nerede yetişir?\nCevap:", " Karadeniz'de")
    whole = tok("Soru: Fındık nerede yetişir?\nCevap: Karadeniz'de", add_special_tokens=False)["input_ids"]
    assert ctx + cont == whole and tok.decode(cont) == " Karadeniz'de"
    # a trailing space of the context moves onto the continuation
    assert mc.encode_pair(tok, "Cevap: ", "Evet") == mc.encode_pair(tok, "Cevap:", " Evet")


def test_acc_norm_divides_by_characters_and_acc_bytes_by_bytes(monkeypatch):
    # choice 0: 6 Turkish letters = 6 characters, 12 UTF-8 bytes; choice 1: 8 ASCII letters
    question = mc.Question("q", "Hangisi?", ["ığüşöç", "abcdefgh", "x", "y"], 0, "t")
    lls = [-6.0, -7.0, -20.0, -20.0]
    monkeypatch.setattr(mc, "span_logprobs",
                        lambda model, seqs, starts, bs, pad, desc=None: [SpanScore(v, 1, False) for v in lls])

    class Tok:
        pad_token_id, eos_token_id = 0, 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    [result] = mc.score_questions(None, Tok(), [question], "Soru: {question}\nCevap:", batch_size=4)
    assert result.pred == 0  # -6 > -7
    assert result.pred_norm == 1  # -6/6 = -1.0 < -7/8 = -0.875
    assert result.pred_bytes == 0  # -6/12 = -0.5 > -7/8
    assert result.correct == {"acc": 1.0, "acc_norm": 0.0, "acc_bytes": 1.0}
    assert mc.correct_matrix([result], "acc_norm").tolist() == [[0.0, 1.0]]
    assert mc.accuracy([result], "acc") == 100.0
    assert mc.per_topic([result], "acc") == {"t": {"n": 1, "acc": 100.0}}


def test_scoring_with_a_model_sums_choice_token_logprobs(tiny_model_dir):
    tokenizer, model = load_saved(tiny_model_dir)
    question = mc.Question(**GOOD)
    [result] = mc.score_questions(model, tokenizer, [question], "Soru: {question}\nCevap:", batch_size=3)
    assert len(result.loglikelihoods) == 4 and all(v < 0 for v in result.loglikelihoods)
    from tests.test_loglik import manual_logprob

    ctx, cont = mc.encode_pair(tokenizer, "Soru: Arıcılıkta varroa nedir?\nCevap:", " Parazit bir akar")
    assert result.loglikelihoods[1] == pytest.approx(manual_logprob(model, ctx + cont, len(ctx)), abs=1e-3)
