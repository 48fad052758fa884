"""Stage entrypoints on bad input: one line naming the problem, exit 2, no outputs left behind."""

import json
import shutil

import pytest

from pipeline.data.rejects import read_rejects
from tests.conftest import copy_config, run_stage_cli


@pytest.fixture()
def workdir(tmp_path):
    copy_config(tmp_path)
    return tmp_path


def error_lines(result):
    """The stage's error lines (progress lines before them are fine, a traceback is not)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    return [line for line in lines if " error: " in line]


def nothing_written(workdir):
    return not any((workdir / d).exists() for d in ("data/interim", "data/rejects", "metrics", ".hasat"))


@pytest.mark.parametrize("name, content, expected, overrides", [
    ("missing.jsonl", None, "data path not found", []),
    ("empty.jsonl", b"", "file is empty", []),
    ("table.xlsx", b"PK\x03\x04 not really", "unknown data format '.xlsx'", []),
    ("broken.json", b'[{"instruction": "a", "output": "b"},', "not valid JSON (line 1, column 38", []),
    ("zip.jsonl", b"PK\x03\x04\x14\x00\x08\x00" + bytes(range(200)), "looks like a binary file", []),
    ("excel.csv", "soru;cevap\nx;y\n".encode("cp1254"), "mapped column(s) 'talimat' not found",
     ["data.columns={talimat: instruction}"]),
    ("half.jsonl", b'{"instruction": "a", "output": "b"}\n{"x\n{"y\n', "2 of 3 rows rejected (67% > max_reject_share",
     []),
    ("labels.jsonl", b'{"text": "a", "label": "x"}\n', "is not one of auto, alpaca", ["data.schema=weird"]),
])
def test_ingest_bad_file(workdir, name, content, expected, overrides):
    path = workdir / name
    if content is not None:
        path.write_bytes(content)
    result = run_stage_cli("pipeline.stages.ingest", f"data.path={path}", *overrides, cwd=workdir)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("hasat ingest: error: ") and expected in lines[0], lines
    assert name in lines[0] or "config key" in lines[0]
    assert nothing_written(workdir)


def test_ingest_quarantines_bad_rows_and_accounts_for_all(workdir):
    data = workdir / "d.jsonl"
    data.write_text('{"instruction": "Soru", "output": "Yanıt"}\n{"instruction": "yarım"\n', encoding="utf-8")
    result = run_stage_cli("pipeline.stages.ingest", f"data.path={data}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    import json
    stats = json.loads((workdir / "metrics" / "ingest.json").read_text())
    assert stats["rows_read"] == 2 and stats["rows_kept"] == 1 and stats["rows_rejected"] == 1
    [reject] = read_rejects(workdir / "data" / "rejects" / "ingest.jsonl")
    assert reject["source"] == f"{data}:2" and reject["raw"] == '{"instruction": "yarım"'


def test_ingest_and_clean_mixed_sources_account_for_every_row(workdir, tiny_model_dir):
    root = workdir / "raw"
    root.mkdir()
    rows = [{"instruction": f"Soru {i}: buğday ekimi ne zaman yapılır, toprak nasıl hazırlanır?",
             "output": f"Yanıt {i}: ekim ayında, tohum yatağı iyi hazırlanmış toprağa ekilir. Ara 0532 123 45 {i % 90:02d}"}
            for i in range(40)]
    rows[5] = rows[4]  # an exact duplicate
    (root / "a.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + '{"kırık\n')
    (root / "excel.csv").write_bytes("talimat;cevap\r\nŞeker pancarı ne zaman sökülür, nasıl anlaşılır?;"
                                     "Ekim ayında kökler olgunlaşınca sökülür.\r\n".encode("cp1254"))
    (root / "english.jsonl").write_text(json.dumps({"instruction": "When is wheat sown in central Anatolia?",
                                                    "output": "Usually in October, after the first rains."}) + "\n")
    shutil.copytree(tiny_model_dir, workdir / "models" / "base")
    sources = ("data.sources=[{path: a.jsonl, weight: 0.5}, {path: excel.csv, columns: {talimat: instruction, "
               "cevap: output}}, {path: english.jsonl}]")
    ingest = run_stage_cli("pipeline.stages.ingest", f"data.path={root}", sources, "data.sample_seed=3", cwd=workdir)
    assert ingest.returncode == 0, ingest.stderr
    assert "ingest: 43 rows read from 3 file(s)" in ingest.stderr and "[csv, cp1254, alpaca]" in ingest.stderr
    stats = json.loads((workdir / "metrics" / "ingest.json").read_text())
    assert stats["rows_read"] == 43 == stats["rows_kept"] + stats["rows_rejected"]
    assert stats["rows_rejected"] == 1 + stats["rows_sampled_out"] and 5 < stats["rows_sampled_out"] < 35
    assert stats["encoding_by_file"][str(root / "excel.csv")] == "cp1254"
    assert len(read_rejects(workdir / "data" / "rejects" / "ingest.jsonl")) == stats["rows_rejected"]
    clean = run_stage_cli("pipeline.stages.clean", cwd=workdir)
    assert clean.returncode == 0, clean.stderr
    c = json.loads((workdir / "metrics" / "clean.json").read_text())
    assert c["rows_in"] == stats["rows_kept"] == c["rows_kept"] + c["rows_rejected"]
    assert c["rejected_by_reason"]["wrong_language"] == 1 and c["pii_masked"]["phone"] == c["rows_in"] - 2
    assert len(read_rejects(workdir / "data" / "rejects" / "clean.jsonl")) == c["rows_rejected"]
    assert c["steps"]["length_tokens"]["rows"] > 0 and "clean: " in clean.stderr
    out = [json.loads(line) for line in (workdir / "data" / "interim" / "clean.jsonl").open()]
    assert "Şeker pancarı ne zaman sökülür, nasıl anlaşılır?" in [r["instruction"] for r in out]


def test_clean_stops_when_too_many_rows_are_rejected(workdir):
    interim = workdir / "data" / "interim"
    interim.mkdir(parents=True)
    row = {"id": "1", "source": "a:1", "instruction": "Soru nedir?", "input": "", "output": "Yanıt budur.", "meta": {}}
    (interim / "ingested.jsonl").write_text("".join(json.dumps(dict(row, source=f"a:{i}")) + "\n" for i in range(5)))
    result = run_stage_cli("pipeline.stages.clean", "clean.length.max_tokens=null", "clean.max_reject_share=0.5",
                           cwd=workdir)
    assert result.returncode == 2
    assert error_lines(result) == ["hasat clean: error: clean: 4 of 5 rows rejected (80% > clean.max_reject_share 50%); "
                                   "most often: exact_duplicate 4"]
    assert not (workdir / "data" / "interim" / "clean.jsonl").exists() and not (workdir / "metrics").exists()
    ok = run_stage_cli("pipeline.stages.clean", "clean.length.max_tokens=null", "clean.max_reject_share=0.9",
                       cwd=workdir)
    assert ok.returncode == 0, ok.stderr
    missing_model = run_stage_cli("pipeline.stages.clean", cwd=workdir)
    assert error_lines(missing_model) == ["hasat clean: error: models/base/tokenizer.json: the token-length filter "
                                          "needs the base tokenizer (set clean.length.min_tokens and max_tokens to "
                                          "null to switch it off)"]


def test_evaluate_without_test_split_names_the_file(workdir):
    result = run_stage_cli("pipeline.stages.evaluate", cwd=workdir)
    assert result.returncode == 2
    assert error_lines(result) == ["hasat evaluate: error: data/processed/split/test.jsonl: file not found "
                                   "(has the stage that writes it run?)"]


def test_empty_test_split_and_missing_references(workdir):
    split = workdir / "data" / "processed" / "split"
    split.mkdir(parents=True)
    (split / "test.jsonl").write_text("")
    result = run_stage_cli("pipeline.stages.evaluate", cwd=workdir)
    assert error_lines(result) == ["hasat evaluate: error: data/processed/split/test.jsonl: the test split is empty"]
    (split / "test.jsonl").write_text('{"source": "f:1", "prompt_text": "a", "reference": " "}\n')
    result = run_stage_cli("pipeline.stages.evaluate", cwd=workdir)
    assert "1 test rows have no reference answer (first: f:1)" in result.stderr


def test_model_folder_without_tokenizer(workdir, tiny_model_dir):
    base = workdir / "models" / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "tokenizer.json").unlink()
    (base / "tokenizer_config.json").unlink()
    split = workdir / "data" / "processed" / "split"
    split.mkdir(parents=True)
    (split / "test.jsonl").write_text('{"source": "f:1", "prompt_text": "a", "reference": "b", "input_ids": [1], '
                                      '"n_prompt_tokens": 1}\n')
    result = run_stage_cli("pipeline.stages.evaluate", cwd=workdir)
    assert error_lines(result) == ["hasat evaluate: error: models/base: model folder has no tokenizer "
                                   "(tokenizer.json missing)"]


def test_test_rows_without_token_ids(workdir):
    split = workdir / "data" / "processed" / "split"
    split.mkdir(parents=True)
    (split / "test.jsonl").write_text('{"source": "f:3", "prompt_text": "a", "reference": "b"}\n')
    result = run_stage_cli("pipeline.stages.evaluate", cwd=workdir)
    assert error_lines(result) == ["hasat evaluate: error: data/processed/split/test.jsonl: 1 test rows have no "
                                   "input_ids/n_prompt_tokens (first: f:3; re-run the tokenize stage)"]


@pytest.mark.parametrize("bad, expected", [
    ({"answer": 7}, "'answer' must be a choice index 0-3 (got 7)"),
    ({"choices": ["Eylül", "Ekim", "Kasım"]}, "'choices' must be a list of 4 strings (got 3)"),
    ({"answer": None, "question": None}, "'question' must be a non-empty string"),
])
def test_multiple_choice_file_with_a_bad_row(workdir, tiny_model_dir, bad, expected):
    import json

    shutil.copytree(tiny_model_dir, workdir / "models" / "base")
    split = workdir / "data" / "processed" / "split"
    split.mkdir(parents=True)
    (split / "test.jsonl").write_text('{"source": "f:1", "prompt_text": "a", "reference": "b", "input_ids": [1, 2], '
                                      '"n_prompt_tokens": 1}\n')
    good = {"id": "q1", "question": "Buğday ne zaman ekilir?", "choices": ["Eylül", "Ekim", "Kasım", "Mart"],
            "answer": 0}
    mc_file = workdir / "mc.jsonl"
    mc_file.write_text(json.dumps(good, ensure_ascii=False) + "\n" + json.dumps({**good, "id": "q2", **bad}) + "\n",
                       encoding="utf-8")
    result = run_stage_cli("pipeline.stages.evaluate", f"data.benchmark={mc_file}", cwd=workdir)
    assert result.returncode == 2
    assert error_lines(result) == [f"hasat evaluate: error: {mc_file}:2: {expected}"]
    assert not (workdir / "metrics").exists() and not (workdir / "reports").exists()


def test_bad_decoding_setting_fails_before_loading_anything(workdir):
    result = run_stage_cli("pipeline.stages.evaluate", "eval.top_p=0", cwd=workdir)
    assert error_lines(result) == ["hasat evaluate: error: config key 'eval.top_p': 0.0 must be in (0, 1]"]


def test_stage_under_a_python_without_the_dependencies(tmp_path):
    """`.venv/bin/dvc repro` without activation runs the stages with the `python` on PATH: without
    hasat's dependencies it re-runs the command with the project's .venv, or says in one line what
    to do when there is none."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO

    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    project = tmp_path / "project"
    shutil.copytree(REPO / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    command = [str(bare / "bin" / "python"), "-m", "pipeline.errors"]
    env = {"PATH": "/usr/bin:/bin"}

    without = subprocess.run(command, cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert without.returncode == 1
    assert without.stderr.strip().splitlines() == [
        f"hasat: {bare / 'bin' / 'python'} lacks hasat's dependencies (omegaconf): run `make install`, "
        "then `source .venv/bin/activate` (or use the .venv's python)"]

    (project / ".venv").symlink_to(Path(sys.prefix))  # the project's environment, as `make install` makes it
    probe = [str(bare / "bin" / "python"), "-m", "pipeline.stages.ingest"]
    rerun = subprocess.run(probe, cwd=project, capture_output=True, text=True, env=env, timeout=120)
    assert "lacks hasat's dependencies" not in rerun.stderr
    assert "No module named" not in rerun.stderr
    assert rerun.stderr.startswith("hasat ingest: error: params.yaml")  # the stage itself ran, under the .venv's python


def test_the_interpreters_own_tools_come_first_on_path():
    """`.venv/bin/python -m pipeline.search` without activation starts `dvc`: this environment's."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO

    probe = "import os, pipeline; print(os.environ['PATH'].split(os.pathsep)[0])"
    shown = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert (Path(sys.executable).parent / "dvc").exists()
    assert shown.stdout.strip() == str(Path(sys.executable).parent), shown.stderr
