"""The comparison (eval.json), the printed table and the HTML review report, from fake model runs."""

import pytest

from pipeline.eval import compare
from pipeline.eval.generation import Generation
from pipeline.eval.multiple_choice import Question, QuestionResult
from pipeline.eval.report import format_table, headline, verdict
from pipeline.eval.review import render

REFS = ["Buğday eylülde ekilir.", "Fındık Karadeniz'de yetişir.", "Arılar nektar toplar.", "Toprak analizi önemlidir."]
BASE = ["Buğday ekilir.", "Bilmiyorum.", "Arılar uçar.", "<script>alert('x')</script>"]
TUNED = ["Buğday eylülde ekilir.", "Fındık Karadeniz'de yetişir.", "Arılar nektar toplar.", "Toprak analizi önemlidir."]


def run(texts, nll, stopped=True, mc=()):
    return compare.ModelRun([Generation(t, 5, stopped) for t in texts], nll, list(mc))


def mc_results(correct_flags):
    q = [Question(f"q{i}", f"Soru {i}?", ["a", "b", "c", "d"], 0, "genel") for i in range(len(correct_flags))]
    return [QuestionResult(qq, [-1.0] * 4, 0 if ok else 1, 0 if ok else 1, 0 if ok else 1)
            for qq, ok in zip(q, correct_flags)]


@pytest.fixture(scope="module")
def compared():
    base = run(BASE, [(8.0, 4)] * 4, stopped=False, mc=mc_results([True, False, False, True] * 5))
    tuned = run(TUNED, [(2.0, 4)] * 4, mc=mc_results([True, True, False, True] * 5))
    section, per_item = compare.compare_generation(REFS, base, tuned, resamples=200, confidence=0.95, seed=0)
    result = {"test_rows": 4, "max_new_tokens": 5, "decoding": "greedy", **section,
              "bootstrap": {"resamples": 200, "confidence": 0.95, "seed": 0, "method": "paired"},
              "mc": {"questions": 20, "file": "sorular.jsonl", "template": "Soru: {question}\nCevap:",
                     **compare.compare_mc(base, tuned, 200, 0.95, 0)}}
    items = compare.per_item_rows([{"source": f"f:{i}", "prompt_text": f"Soru {i} & <b>", "reference": r}
                             for i, r in enumerate(REFS, start=1)], base, tuned, per_item)
    return result, items, compare.mc_item_rows(base, tuned)


def test_the_known_word_share_is_compared_when_the_training_words_are_given():
    base, tuned = run(BASE, [(8.0, 4)] * 4), run(TUNED, [(2.0, 4)] * 4)
    known = {"buğday", "eylülde", "ekilir", "arılar"}
    section, _ = compare.compare_generation(REFS, base, tuned, resamples=100, confidence=0.95, seed=0, known=known)
    from pipeline.eval.metrics import known_share

    # "Karadeniz'de" is two words: 4 of the tuned answers' 13 words are known
    assert section["finetuned"]["known_words"] == pytest.approx(100 * 4 / 13, abs=0.01) == known_share(TUNED, known)
    assert section["base"]["known_words"] == pytest.approx(known_share(BASE, known), abs=0.01)
    assert "low" in section["ci"]["delta"]["known_words"] and section["known_words_references"] == 30.77
    table = format_table({"test_rows": 4, "max_new_tokens": 5, "decoding": "greedy", **section,
                          "bootstrap": {"resamples": 100, "confidence": 0.95, "seed": 0}})
    assert "known words %" in table
    plain, _ = compare.compare_generation(REFS, base, tuned, resamples=100, confidence=0.95, seed=0)
    assert "known_words" not in plain["base"] and "known words" not in format_table(
        {"test_rows": 4, "max_new_tokens": 5, "decoding": "greedy", **plain,
         "bootstrap": {"resamples": 100, "confidence": 0.95, "seed": 0}})


def test_eval_json_sections(compared):
    result = compared[0]
    keys = {"chrf", "chrf_pp", "bleu", "rouge_1", "rouge_2", "rouge_l", "exact_match", "token_f1", "perplexity",
            "repetition", "never_stopped"}
    for side in ("base", "finetuned", "delta"):
        assert set(result[side]) == keys
        assert set(result["ci"][side]) == keys - {"never_stopped"}
    assert result["finetuned"]["chrf"] == 100.0 and result["finetuned"]["exact_match"] == 100.0
    assert result["base"]["never_stopped"] == 4 and result["delta"]["never_stopped"] == -4
    assert result["finetuned"]["perplexity"] == pytest.approx(1.65, abs=0.01)  # exp(0.5)
    assert result["base"]["repetition"] == result["finetuned"]["repetition"] == 0.0
    assert result["delta"]["perplexity"] < 0 and result["delta_ci_excludes_zero"]["perplexity"]
    ci = result["ci"]["delta"]["chrf"]
    assert ci["low"] <= result["delta"]["chrf"] <= ci["high"]
    assert result["signatures"]["chrf_pp"].startswith("nrefs:1")
    assert result["mc"]["base"]["acc"] == 50.0 and result["mc"]["finetuned"]["acc"] == 75.0
    assert result["mc"]["per_topic"]["finetuned"] == {"genel": {"n": 20, "acc": 75.0}}


def test_numeric_leaves_for_mlflow(compared):
    flat = compare.numeric_leaves(compared[0])
    assert flat["finetuned.chrf"] == 100.0 and "ci.delta.chrf.low" in flat
    assert flat["delta_ci_excludes_zero.perplexity"] == 1.0 and "mc.base.acc" in flat
    assert all(isinstance(v, float) for v in flat.values())


def test_table_shows_intervals_and_whether_they_exclude_zero(compared):
    table = format_table(compared[0])
    assert "paired bootstrap" in table and "chrF++" in table and "perplexity" in table and "MC acc_norm" in table
    chrf_line = next(line for line in table.splitlines() if line.startswith("chrF "))
    assert "[" in chrf_line and chrf_line.rstrip().endswith(("better", "n.s."))
    ppl_line = next(line for line in table.splitlines() if line.startswith("perplexity"))
    assert ppl_line.endswith("better")  # lower perplexity is the better direction
    assert table.splitlines()[-1].endswith("on chrF.")


def test_verdict_words():
    assert verdict({"low": 0.5, "high": 2}) == "better"
    assert verdict({"low": -2, "high": -0.5}) == "worse"
    assert verdict({"low": -1, "high": 1}) == "n.s."
    assert verdict({"low": -2, "high": -0.5}, lower_is_better=True) == "better"
    result = {"delta": {"chrf": 0.4}, "ci": {"delta": {"chrf": {"low": -1.0, "high": 1.8}}},
              "bootstrap": {"confidence": 0.95}}
    assert "no clear difference" in headline(result) and "[-1.00, +1.80]" in headline(result)


def test_worst_first_orders(compared):
    items = compared[1]
    by_tuned = compare.worst_first(items, "finetuned_chrf")
    assert [it["finetuned_scores"]["chrf"] for it in by_tuned] == sorted(it["finetuned_scores"]["chrf"] for it in items)
    by_delta = compare.worst_first(items, "delta_chrf")
    deltas = [it["finetuned_scores"]["chrf"] - it["base_scores"]["chrf"] for it in by_delta]
    assert deltas == sorted(deltas)


def test_review_report_is_escaped_and_complete(compared, tmp_path):
    result, items, mc_rows = compared
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    html = render(result, compare.worst_first(items, "finetuned_chrf"), "finetuned_chrf", {"model": "tiny <random>"},
                  [(png, "plot")], mc_rows, "lm-eval hook: the lm_eval package is not installed; skipping turkishmmlu")
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Soru 1 &amp; &lt;b&gt;" in html and "tiny &lt;random&gt;" in html
    assert html.count('class="item"') == 4 and "data:image/png;base64," in html
    assert "lowest fine-tuned chrF first" in html and "never stopped" in html
    assert "lm_eval package is not installed" in html and "Multiple-choice benchmark" in html
    assert html.index("Summary") < html.index("Test items, worst first")
