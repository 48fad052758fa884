"""Choosing the decoding on the validation split (pipeline.eval.decoding): candidates, seeds, the
known-word share, the choice rule, and the command line on a real (tiny) model in a workspace."""

import json
import shutil

import pytest

from conftest import copy_config, run_stage_cli
from pipeline.errors import HasatError
from pipeline.eval.decoding import Candidate, choose, known_share, parse_candidate, sweep, vocabulary

QUESTIONS = ["Buğday ne zaman ekilir?", "Domates fidesi nasıl dikilir?", "Arı kovanı kışın nasıl korunur?",
             "Toprak analizi neden yapılır?", "Damla sulamanın yararı nedir?", "Zeytin hasadı ne zaman başlar?"]
ANSWERS = ["Buğday ekimi çoğu bölgede ekim ve kasım aylarında yapılır.",
           "Fide akşam serinliğinde dikilir ve hemen can suyu verilir.",
           "Kovanın girişi daraltılır ve rüzgâr almayan bir yere konur.",
           "Toprak analizi gübrenin ne kadar verileceğini gösterir.",
           "Damla sulama suyu kök bölgesine verir ve su tasarrufu sağlar.",
           "Zeytin hasadı meyve renk değiştirmeye başlayınca yapılır."]


def rows_for(tokenizer, questions=QUESTIONS, answers=ANSWERS):
    rows = []
    for i, (q, a) in enumerate(zip(questions, answers)):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
        answer = tokenizer(a, add_special_tokens=False)["input_ids"]
        rows.append({"source": f"t.jsonl:{i + 1}", "prompt_text": q, "reference": a,
                     "input_ids": list(prompt) + answer, "n_prompt_tokens": len(prompt)})
    return rows


def made(name, never_stopped, rouge_l, chrf=20.0):
    c = Candidate(name, {})
    c.runs = [{"chrf": chrf, "rouge_l": rouge_l, "repetition": 0.0, "never_stopped": never_stopped,
               "known_words": 90.0, "answer_words": 20.0}]
    return c


def test_candidates_parse_and_bad_ones_are_refused():
    assert parse_candidate("warm=do_sample:true,temperature:0.7, top_p:0.9") == \
        ("warm", {"do_sample": True, "temperature": 0.7, "top_p": 0.9})
    assert parse_candidate("plain=") == ("plain", {})
    for spec, message in [("do_sample:true", "expected NAME="), ("x=temp:0.7", "is not KEY:VALUE"),
                          ("x=seed:3", "is not KEY:VALUE"), ("x=do_sample:yes", "do_sample cannot be 'yes'"),
                          ("x=no_repeat_ngram_size:3.5", "cannot be"), ("x=temperature", "is not KEY:VALUE")]:
        with pytest.raises(HasatError, match=message):
            parse_candidate(spec)


def test_overrides_reset_what_params_yaml_may_have_set():
    assert Candidate("g", {}).overrides() == "eval.do_sample=false eval.repetition_penalty=1.0 " \
                                             "eval.no_repeat_ngram_size=0"
    sampled = Candidate("s", {"do_sample": True, "temperature": 0.7, "top_p": 0.9}).overrides()
    assert sampled == "eval.do_sample=true eval.temperature=0.7 eval.top_p=0.9 eval.top_k=50 " \
                      "eval.repetition_penalty=1.0 eval.no_repeat_ngram_size=0"


def test_the_choice_keeps_to_the_stop_limit_and_falls_back_to_stopping_most():
    loops, soup, good = made("loops", 50.0, 9.0), made("soup", 4.0, 2.0, chrf=30.0), made("good", 8.0, 7.0)
    chosen, why = choose([loops, soup, good], "rouge_l", 10.0)
    assert chosen is good and "2 of 3" in why  # the higher ROUGE-L of `loops` does not count: it never stops
    assert choose([loops, soup, good], "chrf", 10.0)[0] is soup
    chosen, why = choose([loops, made("less", 30.0, 1.0)], "rouge_l", 10.0)
    assert chosen.name == "less" and "no candidate stopped often enough" in why
    with pytest.raises(HasatError, match="--metric bleu"):
        choose([good], "bleu", 10.0)


def test_made_up_words_lower_the_known_word_share():
    known = vocabulary([{"prompt_text": "Buğday ne zaman ekilir?", "reference": "Buğday ekimde ekilir."}])
    assert {"buğday", "ekilir", "ekimde"} <= known
    assert known_share(["Buğday ekimde ekilir."], known) == 100.0
    assert known_share(["Buğday ekimdeklirik ekilçük zamanlık."], known) == 25.0
    assert known_share([""], known) == 100.0


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from pipeline.train.modeling import load_saved

    return load_saved(tiny_model_dir)


def test_sweep_runs_every_candidate_and_each_sampled_one_per_seed(tiny):
    tokenizer, model = tiny
    rows = rows_for(tokenizer)
    candidates = {"greedy": {}, "no 3-gram repeats": {"no_repeat_ngram_size": 3},
                  "hot": {"do_sample": True, "temperature": 1.5, "top_p": 1.0}}
    done = sweep(model, tokenizer, rows, vocabulary(rows), candidates, seeds=2, seed=7, max_new_tokens=24,
                 batch_size=4)
    by = {c.name: c for c in done}
    assert [c.name for c in done] == list(candidates)
    assert by["greedy"].seeds == [7] and by["hot"].seeds == [7, 8] and len(by["hot"].runs) == 2
    assert all(len(c.answers) == len(rows) for c in done)
    assert by["hot"].span("chrf")[0] <= by["hot"].mean("chrf") <= by["hot"].span("chrf")[1]
    # an untrained model's greedy answer is one token over and over (a newline: no words, never stopping);
    # blocking repeated token 3-grams reaches generation and changes every answer
    assert by["greedy"].mean("never_stopped") == 100.0
    assert all(a["text"] == "" for a in by["greedy"].answers)
    assert all(a["text"] for a in by["no 3-gram repeats"].answers)
    # random tokens are words the training rows never used
    assert by["hot"].mean("known_words") < 50 and by["hot"].mean("answer_words") > 5
    # the same seed gives the same answers, another seed other answers
    again = sweep(model, tokenizer, rows, vocabulary(rows), {"hot": candidates["hot"]}, seeds=1, seed=8,
                  max_new_tokens=24, batch_size=4)[0]
    first = sweep(model, tokenizer, rows, vocabulary(rows), {"hot": candidates["hot"]}, seeds=1, seed=7,
                  max_new_tokens=24, batch_size=4)[0]
    assert first.answers == by["hot"].answers and first.runs[0] == by["hot"].runs[0]
    assert again.runs[0] == by["hot"].runs[1] and again.answers != by["hot"].answers


def workspace(tmp_path, tiny_model_dir, tokenizer, splits=("train", "val")):
    copy_config(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "base")
    split_dir = tmp_path / "data" / "processed" / "split"
    split_dir.mkdir(parents=True)
    for name in splits:
        with (split_dir / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows_for(tokenizer):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return tmp_path


def test_the_command_line_writes_the_table_the_choice_and_the_page(tmp_path, tiny_model_dir, tiny):
    root = workspace(tmp_path, tiny_model_dir, tiny[0])
    proc = run_stage_cli("pipeline.eval.decoding", "--model", "base", "--seeds", "2", "--candidate", "plain=",
                         "--candidate", "hot=do_sample:true,temperature:1.5", "--max-never-stopped", "100",
                         "eval.max_new_tokens=12", "eval.batch_size=4", cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = root / "reports" / "decoding"
    section = json.loads((out / "decoding.json").read_text(encoding="utf-8"))
    assert section["split"] == "val" and section["rows"] == len(QUESTIONS) and section["max_new_tokens"] == 12
    assert [c["name"] for c in section["candidates"]] == ["plain", "hot"]
    assert section["candidates"][1]["seeds"] == [42, 43] and section["candidates"][0]["range"] is None
    assert sum(c["chosen"] for c in section["candidates"]) == 1 and section["overrides"].startswith("eval.do_sample=")
    assert f"to use it: {section['overrides']}" in proc.stdout and "chosen:" in proc.stdout
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(answers) == 2 * len(QUESTIONS) and {a["candidate"] for a in answers} == {"plain", "hot"}
    html = (out / "decoding.html").read_text(encoding="utf-8")
    assert "decoding.png" in html and QUESTIONS[0] in html and (out / "decoding.png").stat().st_size > 1000


def test_the_command_line_refuses_in_one_line(tmp_path, tiny_model_dir, tiny):
    root = workspace(tmp_path, tiny_model_dir, tiny[0], splits=("train",))
    cases = [(["--model", "base"], "data/processed/split/val.jsonl: no val split (run the pipeline up to split first)"),
             (["eval.judge.enabled=true"], "eval.judge.enabled=true: only eval.max_new_tokens, eval.batch_size and "
                                           "eval.seed are read here"),
             (["--candidate", "x=temp:1"], "is not KEY:VALUE"),
             (["--seeds", "0"], "--seeds 0: at least 1")]
    for args, message in cases:
        proc = run_stage_cli("pipeline.eval.decoding", *args, cwd=root)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    (root / "data/processed/split/val.jsonl").write_text('{"source": "v:1", "reference": "Ekimde."}\n', encoding="utf-8")
    proc = run_stage_cli("pipeline.eval.decoding", cwd=root)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "hasat decoding: error: data/processed/split/val.jsonl: 1 val rows have no input_ids/n_prompt_tokens "
        "(first: v:1; re-run the tokenize stage)")
