"""task=classification on bad labels: blanks are quarantined (or stop tokenize), a class too small
for the stratified split is named. The whole classification pipeline runs in tests/test_e2e.py."""

import json
import shutil

from pipeline.data.rejects import read_rejects
from tests.conftest import copy_config, run_stage_cli

CLS = ("task=classification", "data=haber_cls", "model=tiny_random", "train.num_epochs=1", "train.batch_size=16",
       "train.learning_rate=3e-3")


def workdir_with_base(path, tiny_model_dir):
    copy_config(path)
    shutil.copytree(tiny_model_dir, path / "models" / "base")
    return path


def stage(name, workdir, *overrides):
    return run_stage_cli(f"pipeline.stages.{name}", *CLS, *overrides, cwd=workdir, timeout=300)


def one_error_line(result):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if " error: " in line]
    assert len(lines) == 1
    return lines[0]


BLANKS = "\n".join([
    "metin;kategori",
    "Konya ovasında buğday hasadı başladı ve verim geçen yıldan yüksek.;tarim",
    "Takım deplasmanda iki golle kazandı ve liderliğe yükseldi.;",
    "Merkez bankası politika faizini sabit bıraktı, piyasalar sakin.;   ",
    "Fındık üreticileri yeni sezonda fiyatların açıklanmasını bekliyor.;tarim",
]) + "\n"


def test_blank_labels_are_quarantined_or_stop_tokenize(tmp_path, tiny_model_dir):
    workdir = workdir_with_base(tmp_path, tiny_model_dir)
    (workdir / "haber.csv").write_bytes(BLANKS.encode("cp1254"))  # Turkish-locale Excel export
    data = ("data.path=haber.csv", "data.columns={metin: text, kategori: label}")
    assert stage("ingest", workdir, *data).returncode == 0
    assert stage("clean", workdir, "clean.language.enabled=false").returncode == 0
    rejects = read_rejects(workdir / "data" / "rejects" / "clean.jsonl")
    assert sorted(r["source"] for r in rejects) == ["haber.csv:row 3", "haber.csv:row 4"]
    assert all(r["reason"].startswith("empty") and "label" in r["reason"] for r in rejects)
    assert stage("clean", workdir, "clean.language.enabled=false", "clean.drop_empty=false").returncode == 0
    line = one_error_line(stage("tokenize", workdir))
    assert line == ("hasat tokenize: error: haber.csv:row 3: blank label (set clean.drop_empty=true to quarantine such "
                    "rows, or fill it in)")


def test_a_class_too_small_for_the_split_is_one_line(tmp_path, tiny_model_dir):
    workdir = workdir_with_base(tmp_path, tiny_model_dir)
    rows = [{"text": f"Haber {i}: ligde {i}. hafta maçları oynandı.", "label": "spor"} for i in range(30)]
    rows += [{"text": "Bakanlık yeni sulama desteklerini açıkladı.", "label": "tarim"}]
    (workdir / "h.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for name in ("ingest", "clean", "tokenize"):
        assert stage(name, workdir, "data.path=h.jsonl", "clean.language.enabled=false",
                     "clean.near_duplicates.enabled=false").returncode == 0, name
    line = one_error_line(stage("split", workdir))
    assert line.startswith("hasat split: error: split: class 'tarim' has 1 examples; a stratified split needs at "
                           "least 3")


def test_null_or_missing_labels_are_quarantined_by_ingest(tmp_path):
    rows = ['{"text": "Konya ovasında buğday hasadı başladı.", "label": "tarim"}',
            '{"text": "Merkez bankası faizi sabit bıraktı.", "label": null}',
            '{"text": "Yeni telefon modeli tanıtıldı."}',
            '{"text": "Takım deplasmanda kazandı.", "label": "spor"}',
            '{"text": "Fındık fiyatları açıklandı.", "label": "tarim"}',
            '{"text": "Borsa günü yükselişle kapattı.", "label": "ekonomi"}']
    (tmp_path / "h.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    copy_config(tmp_path)
    result = stage("ingest", tmp_path, "data.path=h.jsonl")
    assert result.returncode == 0, result.stderr
    assert "6 read, 4 kept, 2 rejected" in result.stderr + result.stdout
    rejects = read_rejects(tmp_path / "data" / "rejects" / "ingest.jsonl")
    assert [(r["source"], r["reason"]) for r in rejects] == [("h.jsonl:2", "missing field 'label'"),
                                                            ("h.jsonl:3", "missing field 'label'")]
