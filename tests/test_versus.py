"""Two runs' fine-tuned answers on the same test items, compared with paired intervals."""

import json
import subprocess
import sys

import pytest

from pipeline.errors import HasatError
from pipeline.eval.versus import compare, load_items, main, table

REFS = [f"Buğday ekimi ekim ayında yapılır ve tohum {i} kilogram atılır." for i in range(30)]


def write(path, answers, stopped=True):
    with path.open("w", encoding="utf-8") as f:
        for i, (ref, answer) in enumerate(zip(REFS, answers)):
            f.write(json.dumps({"source": f"data.jsonl:{i}", "reference": ref, "base": "x", "finetuned": answer,
                                "base_stopped": False, "finetuned_stopped": stopped}, ensure_ascii=False) + "\n")
    return path


def test_the_better_run_is_named_and_never_stopped_is_counted(tmp_path):
    weak = write(tmp_path / "a.jsonl", ["Arpa arpa arpa arpa arpa arpa arpa arpa arpa."] * 30, stopped=False)
    good = write(tmp_path / "b.jsonl", [r.replace("tohum", "tohumdan") for r in REFS])
    result = compare(load_items(weak, "finetuned"), load_items(good, "finetuned"), ("small", "gemma"), 200, 0)
    assert result["delta_ci_excludes_zero"]["chrf"] and result["ci"]["delta"]["chrf"]["low"] > 0
    assert result["delta"]["repetition"] == -100.0
    assert (result["base"]["never_stopped"], result["finetuned"]["never_stopped"]) == (30, 0)
    rows = {line.split("  ")[0]: line for line in table(result).splitlines()}
    assert rows["chrF"].endswith("better") and rows["repetition % ↓"].endswith("better")  # gemma's fewer repeats
    assert "never stopped" in rows and "delta (gemma − small)" in table(result)


def test_the_same_answers_are_no_difference(tmp_path):
    a = write(tmp_path / "a.jsonl", REFS)
    result = compare(load_items(a, "finetuned"), load_items(a, "finetuned"), ("a", "b"), 100, 0)
    assert set(result["delta"].values()) == {0}
    rows = table(result).splitlines()[3:]
    assert rows and not any(line.endswith(("better", "worse")) for line in rows)


def test_runs_on_different_items_or_files_are_refused(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", REFS)
    b = tmp_path / "b.jsonl"
    b.write_text("".join(line for i, line in enumerate(a.read_text(encoding="utf-8").splitlines(True)) if i), "utf-8")
    with pytest.raises(HasatError, match="different items"):
        compare(load_items(a, "finetuned"), load_items(b, "finetuned"), ("a", "b"), 10, 0)
    (tmp_path / "c.jsonl").write_text('{"text": "haber", "label": "spor"}\n', encoding="utf-8")
    assert main([str(a), str(tmp_path / "c.jsonl")]) == 2
    assert "not an evaluate predictions file" in capsys.readouterr().err
    assert main([str(a), str(tmp_path / "missing.jsonl")]) == 2


def test_the_command_line_prints_the_table(tmp_path):
    a = write(tmp_path / "a.jsonl", REFS)
    out = subprocess.run([sys.executable, "-m", "pipeline.eval.versus", str(a), str(a), "--names", "x", "y",
                          "--resamples", "50"], capture_output=True, text=True, check=True).stdout
    assert "30 test items" in out and "delta (y − x)" in out and "never stopped" in out
