"""`python -m pipeline.eval.rejudge`: saved answers judged again by a real HTTP judge (the stub server)."""

import json

import pytest

from pipeline.eval import rejudge
from tests.conftest import REPO
from tests.judge_stub import JudgeStub

ROWS = [{"source": f"s{i}", "prompt": f"Soru {i}: buğday ne zaman ekilir?", "reference": "Ekimde.",
         "base": f"temel yanıt {i}", "finetuned": f"ince ayarlı yanıt {i}"} for i in range(3)]


def _predictions(tmp_path, rows):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_rejudge_scores_saved_answers_in_both_orders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # params.yaml
    # item 0: tuned wins in both orders; item 1: the verdict follows the position (a tie); item 2: base wins
    with JudgeStub(["[[A]]", "[[B]]", "[[A]]", "[[A]]", "[[B]]", "[[A]]"]) as judge:
        code = rejudge.main([str(_predictions(tmp_path, ROWS)), "--out", str(tmp_path / "out"),
                             f"eval.judge.url={judge.url}", "eval.bootstrap.resamples=200"])
        asked = [r["messages"][1]["content"] for r in judge.requests if r.get("max_tokens") != 1]
    assert code == 0, capsys.readouterr().err
    section = json.loads((tmp_path / "out/judge.json").read_text())
    assert [section[k]["value"] for k in ("win", "tie", "loss")] == [33.33, 33.33, 33.33]
    assert section["position_consistency"]["value"] == pytest.approx(66.67) and section["unparsed_verdicts"] == 0
    assert "ince ayarlı yanıt 0" in asked[0].split("[A asistanının yanıtının başı]")[1].split("[B")[0]
    assert "temel yanıt 0" in asked[1].split("[A asistanının yanıtının başı]")[1].split("[B")[0]
    items = [json.loads(line) for line in (tmp_path / "out/items.jsonl").read_text().splitlines()]
    assert [i["judge"]["verdict"] for i in items] == ["tuned", "tie", "base"]
    html = (tmp_path / "out/judge.html").read_text()
    assert "temel yanıt 2" in html and "position_consistency" in html
    assert "fine-tuned wins 33.3%" in capsys.readouterr().out


@pytest.mark.parametrize("rows, args, message", [
    ([{**ROWS[0], "finetuned": None}], [], "row 1 has no finetuned: not an evaluate predictions file"),
    ([], [], "no answers to judge"),
    (ROWS, ["train.learning_rate=1"], "train.learning_rate=1: only eval.judge.* and eval.bootstrap.* keys"),
    (ROWS, ["eval.judge.url=http://127.0.0.1:9/v1"], "eval.judge.url: cannot reach the judge at http://127.0.0.1:9/v1"),
])
def test_rejudge_says_what_is_wrong_in_one_line(tmp_path, monkeypatch, capsys, rows, args, message):
    monkeypatch.chdir(REPO)
    code = rejudge.main([str(_predictions(tmp_path, rows)), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_rejudge_reads_this_workspaces_predictions_by_default(tmp_path, monkeypatch, capsys):
    (tmp_path / "reports/eval").mkdir(parents=True)
    _predictions(tmp_path / "reports/eval", ROWS[:1])
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    with JudgeStub(["[[C]]"]) as judge:
        assert rejudge.main([f"eval.judge.url={judge.url}", "--out", "j"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "j/judge.json").read_text())["tie"]["value"] == 100.0
