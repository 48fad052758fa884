"""The MLflow registry: export logs and registers the merged model (alias challenger); promote makes
the first version champion, keeps the champion against a challenger that is not better on the test
split, records every decision, and --force moves the alias with the force on record."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.config_loader import load_config
from pipeline.deploy import promotion
from pipeline.eval import versus
from tests.conftest import REPO, copy_config

ANSWERS = [json.loads(line) for line in (REPO / "data/raw/tarim_sft/talimatlar.jsonl").read_text().splitlines()[:10]]


def _export_a_model(root, model_dir, tracking):
    """models/base and a fully fine-tuned models/finetuned (the tiny model), a finished MLflow run,
    and the eval.json numbers the model card quotes; then the real export stage."""
    from pipeline.stages import data_report, export

    for target in ("models/base", "models/finetuned/model"):
        shutil.rmtree(root / target, ignore_errors=True)
        shutil.copytree(model_dir, root / target)
    (root / "models/finetuned/finetune.json").write_text(json.dumps({"method": "full", "task": "sft"}))
    cfg = load_config(["model=tiny_random", "eval.max_new_tokens=8", "eval.bootstrap.resamples=200"])
    run = tracking.open_run(cfg)
    tracking.end_run()
    (root / "models/finetuned/mlflow_run.json").write_text(json.dumps(run))
    numbers = {k: 1.0 for k in ("chrf", "bleu", "rouge_l", "exact_match", "repetition", "never_stopped")}
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/eval.json").write_text(json.dumps({
        "test_rows": len(ANSWERS), "max_new_tokens": 8, "base": numbers, "finetuned": numbers, "delta": numbers,
        "signatures": {"chrf": "chrF2", "bleu": "BLEU"}}))
    data_report.main(cfg)  # export logs it into the run (here a report of no data stages)
    export.main(cfg)
    return cfg


@pytest.fixture
def project(tmp_path, monkeypatch):
    copy_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    split = tmp_path / "data/processed/split"
    split.mkdir(parents=True)
    rows = [{**r, "source": f"talimatlar.jsonl:{i}", "reference": r["output"]} for i, r in enumerate(ANSWERS, 1)]
    (split / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return tmp_path


def test_export_registers_and_promote_keeps_a_champion_that_is_not_beaten(project, tiny_model_dir, tmp_path_factory,
                                                                            capsys):
    from mlflow import MlflowClient

    from pipeline import promote, tracking

    cfg = _export_a_model(project, tiny_model_dir, tracking)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    name = "hasat-tarim_sft"
    first = client.get_model_version_by_alias(name, "challenger")
    assert str(first.version) == "1" and first.tags["hasat.base_model"].startswith("tiny_random")
    assert {"hasat.data", "hasat.license", "hasat.dvc_experiment", "hasat.eval.chrf"} <= set(first.tags)
    assert json.loads((project / "models/export/hasat.json").read_text())["task"] == "sft"

    assert promote.main(["model=tiny_random"]) == 0
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert "first registered model" in client.get_model_version(name, "1").description

    # a second, differently initialised random model: no better on the test items
    other = tmp_path_factory.mktemp("other") / "model"
    shutil.copytree(tiny_model_dir, other)
    _reinitialise(other)
    _export_a_model(project, other, tracking)
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    assert promote.main(["model=tiny_random", "eval.max_new_tokens=8", "eval.bootstrap.resamples=200"]) == 0
    printed = capsys.readouterr().out
    assert "kept the champion" in printed and "chrF" in printed and "champion v1" in printed
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    second = client.get_model_version(name, "2")
    assert second.tags["hasat.promotion"] == "not promoted" and second.tags["hasat.promotion.vs_champion"] == "1"
    assert float(second.tags["hasat.promotion.ci_low"]) <= 0 and "paired bootstrap" in second.description

    assert promote.main(["--force", "model=tiny_random", "eval.max_new_tokens=8", "eval.bootstrap.resamples=200"]) == 0
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(name, "previous_champion").version) == "1"
    forced = client.get_model_version(name, "2")
    assert forced.tags["hasat.promotion"] == "promoted (forced)" and "FORCED" in forced.description
    assert client.get_model_version(name, "1").tags["hasat.replaced_by"] == "2"
    assert cfg.registry.model_name is None


def _reinitialise(folder):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(123)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.init_weights()
    model.save_pretrained(folder)


def test_the_rule_promotes_only_when_the_interval_is_above_zero():
    rows = {f"s{i}": {"reference": r["output"], "stopped": True} for i, r in enumerate(ANSWERS)}
    champion = {s: {**r, "text": "Bilmiyorum."} for s, r in rows.items()}
    close = {s: {**r, "text": r["reference"]} for s, r in rows.items()}
    better = promotion.decide(versus.compare(champion, close, ("champion v1", "challenger v2"), 300, 1), "chrf", "chrF")
    assert better.promote and better.interval()["low"] > 0 and "promoted" in better.reason
    worse = promotion.decide(versus.compare(close, champion, ("champion v1", "challenger v2"), 300, 1), "chrf", "chrF")
    assert not worse.promote and "below zero" in worse.reason and "chrF" in worse.table
    same = promotion.decide(versus.compare(champion, champion, ("champion v1", "challenger v2"), 300, 1), "chrf",
                            "chrF")
    assert not same.promote and "includes zero" in same.reason


def test_no_challenger_is_a_one_line_error(project, capsys):
    from pipeline import promote

    assert promote.main([]) == 2
    assert "alias challenger" in capsys.readouterr().err
