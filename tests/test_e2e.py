"""The real pipeline, end to end: `dvc repro` on a copy of the repo with the tiny random model,
then a no-op repro, then `dvc exp run --temp -S` on a training parameter."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.data.rejects import read_rejects
from tests.conftest import copy_repo

pytestmark = pytest.mark.e2e

TEST_CONF = {  # conf/ edits for a fast run: DVC recomposes params.yaml from conf/ on `exp run`
    "config.yaml": {"tokenize.max_seq_len": 320},
    "train/lora.yaml": {"num_epochs": 1, "batch_size": 16},
    "eval/default.yaml": {"max_new_tokens": 12, "max_examples": 12},
}


def run(cmd, cwd, env, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def configure(root: Path) -> None:
    config = root / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("- model: gemma3_270m", "- model: tiny_random"))
    for rel, values in TEST_CONF.items():
        cfg = OmegaConf.load(root / "conf" / rel)
        for key, value in values.items():
            OmegaConf.update(cfg, key, value)
        text = OmegaConf.to_yaml(cfg)
        if rel == "config.yaml":  # keep the defaults list first and in its order (_self_ first), as Hydra expects
            defaults = OmegaConf.to_container(cfg)["defaults"]
            text = OmegaConf.to_yaml({"defaults": defaults}) + \
                OmegaConf.to_yaml({k: v for k, v in OmegaConf.to_container(cfg).items() if k != "defaults"})
        (root / "conf" / rel).write_text(text)


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("e2e") / "repo")
    configure(root)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "hasat-test", "GIT_AUTHOR_EMAIL": "test@hasat.local",
           "GIT_COMMITTER_NAME": "hasat-test", "GIT_COMMITTER_EMAIL": "test@hasat.local"}
    env.pop("MLFLOW_TRACKING_URI", None)
    run([sys.executable, "-m", "pipeline.compose"], root, env)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "test copy"]):
        run(cmd, root, env)
    first = run(["dvc", "repro"], root, env)
    return root, env, first


def test_repro_runs_every_stage_and_writes_outputs(pipeline_repo):
    root, _, first = pipeline_repo
    assert stages_run(first) == {"base_model", "ingest", "clean", "tokenize", "split", "data_report", "finetune",
                                 "evaluate", "export"}
    assert " is empty." not in first  # DVC warns about an empty output: rejects files start with a header
    for path in ("models/export/model.safetensors", "models/export/config.json", "models/export/README.md",
                 "models/export/generation_config.json", "models/finetuned/adapter/adapter_config.json",
                 "reports/eval/predictions.jsonl", "reports/eval/review.html", "reports/eval/mc_predictions.jsonl",
                 "reports/eval/plots/metrics.png", "reports/eval/plots/item_chrf.png",
                 "reports/eval/plots/mc_confusion.png", "reports/eval/item_chrf.csv", "reports/loss/train.csv",
                 "models/base/NOTICE", "models/base/LICENSE", "models/export/NOTICE", "models/export/LICENSE",
                 "reports/data/report.html", "reports/data/token_lengths.csv"):
        assert (root / path).is_file(), path
    card = (root / "models/export/README.md").read_text(encoding="utf-8")
    assert "## Licence" in card and "`NOTICE`, `LICENSE`" in card  # the base's notices travel with the export
    assert "fine-tuned" in first and "chrF" in first and "paired bootstrap" in first  # the summary table is printed
    assert "lm-eval hook: the lm_eval package is not installed; skipping turkishmmlu" in first


def test_every_row_is_accounted_for(pipeline_repo):
    root = pipeline_repo[0]
    m = {name: json.loads((root / "metrics" / f"{name}.json").read_text()) for name in
         ("ingest", "clean", "tokenize", "split")}
    assert m["ingest"]["rows_read"] == m["ingest"]["rows_kept"] + m["ingest"]["rows_rejected"]
    assert m["clean"]["rows_in"] == m["ingest"]["rows_kept"]
    clean_rejects = len(read_rejects(root / "data/rejects/clean.jsonl"))
    assert m["clean"]["rows_out"] + clean_rejects == m["clean"]["rows_in"]
    tok_rejects = len(read_rejects(root / "data/rejects/tokenize.jsonl"))
    assert m["tokenize"]["rows_out"] + tok_rejects == m["tokenize"]["rows_in"] == m["clean"]["rows_out"]
    assert m["split"]["train_rows"] + m["split"]["val_rows"] + m["split"]["test_rows"] == m["tokenize"]["rows_out"]
    assert m["split"]["leaked_prompts"] == 0 and m["tokenize"]["fertility_tokens_per_word"] > 1


def test_metrics_keys_for_dvc(pipeline_repo):
    root, env, _ = pipeline_repo
    result = json.loads((root / "metrics" / "eval.json").read_text())
    metrics = {"chrf", "chrf_pp", "bleu", "rouge_1", "rouge_2", "rouge_l", "exact_match", "token_f1", "perplexity",
               "repetition", "known_words", "never_stopped"}
    for side in ("base", "finetuned", "delta"):
        assert set(result[side]) == metrics
        assert set(result["ci"][side]) == metrics - {"never_stopped"}
        assert set(result["mc"][side]) == {"acc", "acc_norm", "acc_bytes"}
    low, high = result["ci"]["delta"]["chrf"]["low"], result["ci"]["delta"]["chrf"]["high"]
    assert low <= result["delta"]["chrf"] <= high
    assert result["delta_ci_excludes_zero"]["chrf"] == (low > 0 or high < 0)
    assert result["test_rows"] == 12 and result["signatures"]["chrf"].startswith("nrefs:1")
    assert 0 < result["known_words_references"] <= 100  # the training split's words, found in the references
    assert result["mc"]["questions"] == 93 and result["bootstrap"]["resamples"] == 1000
    items = [json.loads(line) for line in (root / "reports/eval/predictions.jsonl").open()]
    assert len(items) == 12 and set(items[0]["finetuned_scores"]) == {"chrf", "rouge_l", "token_f1", "perplexity"}
    shown = run(["dvc", "metrics", "show", "--json"], root, env)
    assert "finetuned" in shown and "rows_read" in shown


def test_dvc_plots_render(pipeline_repo):
    root, env, _ = pipeline_repo
    result = subprocess.run(["dvc", "plots", "show", "--json"], cwd=root, env=env, capture_output=True, text=True)
    shown = json.loads(result.stdout)
    assert not shown.get("errors"), shown["errors"]
    assert {"loss", "reports/eval/item_chrf.csv", "reports/eval/mc_confusion_finetuned.json",
            "reports/eval/plots/metrics.png", "reports/eval/plots/item_chrf.png"} <= set(shown["data"])
    confusion = shown["data"]["reports/eval/mc_confusion_base.json"][0]["content"]["data"]["values"]
    assert len(confusion) == 93 and {"actual", "predicted"} <= set(confusion[0])


def test_review_report(pipeline_repo):
    root = pipeline_repo[0]
    html = (root / "reports/eval/review.html").read_text(encoding="utf-8")
    assert html.count('class="item"') == 12 and "data:image/png;base64," in html
    assert "Multiple-choice benchmark" in html and "lowest fine-tuned chrF first" in html


def test_one_mlflow_run_with_config_stats_curves_metrics_and_model(pipeline_repo):
    from mlflow.tracking import MlflowClient

    root = pipeline_repo[0]
    run_id = json.loads((root / "models/finetuned/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hasat")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    run_ = client.get_run(run_id)
    assert run_.data.params["train.learning_rate"] == "0.001" and run_.data.params["model.name"] == "tiny_random"
    assert run_.data.tags["mlflow.source.git.commit"]
    for key in ("ingest.rows_read", "tokenize.fertility_tokens_per_word", "test.finetuned.chrf", "test.base.bleu",
                "test.ci.delta.chrf.low", "test.finetuned.perplexity", "mc.finetuned.acc_norm",
                "finetune.best_val_loss"):
        assert key in run_.data.metrics, key
    assert len(client.get_metric_history(run_id, "train_loss")) >= 2
    assert len(client.get_metric_history(run_id, "val_loss")) >= 1
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"eval", "stats", "model_card"} <= artifacts
    eval_files = {Path(a.path).name for a in client.list_artifacts(run_id, "eval")}
    assert {"review.html", "predictions.jsonl", "mc_predictions.jsonl", "plots"} <= eval_files
    assert {Path(a.path).name for a in client.list_artifacts(run_id, "eval/plots")} >= {"metrics.png", "item_chrf.png"}
    # the merged model is an MLflow transformers model, registered with the alias challenger
    version = client.get_model_version_by_alias("hasat-tarim_sft", "challenger")
    assert version.run_id == run_id and version.tags["hasat.base_model"].startswith("tiny_random")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/hasat-tarim_sft/{version.version}",
                                                     dst_path=str(root / ".hasat" / "check")))
    assert (local / "model/model.safetensors").is_file() and (local / "components/tokenizer/tokenizer.json").is_file()
    assert "llm/v1/chat" in (local / "MLmodel").read_text()


def test_export_loads_with_plain_transformers(pipeline_repo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = pipeline_repo[0]
    tokenizer = AutoTokenizer.from_pretrained(root / "models/export")
    model = AutoModelForCausalLM.from_pretrained(root / "models/export")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Buğday?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3 or out[0, -1].item() == tokenizer.eos_token_id


def test_second_repro_runs_nothing(pipeline_repo):
    root, env, _ = pipeline_repo
    again = run(["dvc", "repro"], root, env)
    assert stages_run(again) == set() and "up to date" in again


def test_a_changed_tokenizer_invalidates_the_token_cache(pipeline_repo):
    root, env, _ = pipeline_repo
    config = root / "models/base/tokenizer_config.json"
    original = config.read_text()
    try:
        config.write_text(original + "\n")  # any byte change to a tokenizer file
        status = json.loads(run(["dvc", "status", "--json"], root, env))
        assert "tokenize" in status and "finetune" in status
    finally:
        config.write_text(original)
    assert json.loads(run(["dvc", "status", "--json"], root, env)) == {}


def test_exp_run_on_a_training_param_reruns_only_training_stages(pipeline_repo):
    root, env, _ = pipeline_repo
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    out = run(["dvc", "exp", "run", "--temp", "-S", "train.learning_rate=5e-4", "-n", "lr5e-4"], root, env)
    assert stages_run(out) == {"finetune", "evaluate", "export"}
    # the temp copy's MLflow run landed in the repository's store, not in .dvc/tmp/exps/
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("hasat").experiment_id])
    assert len(runs) == 2
    tuned = [r for r in runs if r.data.params["train.learning_rate"] == "0.0005"]
    assert len(tuned) == 1 and tuned[0].data.tags.get("dvc.exp_name") == "lr5e-4"
    assert "test.finetuned.chrf" in tuned[0].data.metrics
    assert [a.path for a in client.list_artifacts(tuned[0].info.run_id, "data")] == ["data/report.html"]
    assert not list((root / ".dvc" / "tmp").rglob("mlflow.db"))
    shown = run(["dvc", "exp", "show", "--json"], root, env)
    assert "lr5e-4" in shown


@pytest.fixture(scope="module")
def classified(pipeline_repo):
    """`dvc exp run -S task=classification -S data=haber_cls` in the workspace (so it comes last:
    the tests below read its outputs)."""
    root, env, _ = pipeline_repo
    out = run(["dvc", "exp", "run", "-S", "task=classification", "-S", "data=haber_cls", "-S", "eval.max_examples=null",
               "-n", "haber"], root, env)
    return root, env, out


def test_exp_run_switches_the_same_pipeline_to_classification(classified):
    root, env, out = classified
    assert stages_run(out) == {"ingest", "clean", "tokenize", "split", "data_report", "finetune", "evaluate", "export"}
    assert "TF-IDF char n-grams + LR" in out and "Verdict (macro-F1" in out  # the table is printed
    result = json.loads((root / "metrics" / "eval.json").read_text())
    split = json.loads((root / "metrics" / "split.json").read_text())
    assert result["task"] == "classification" and result["test_rows"] == split["test_rows"] == 64
    assert result["train_rows"] == split["train_rows"]
    assert result["labels"] == ["ekonomi", "magazin", "saglik", "siyaset", "spor", "tarim", "teknoloji"]
    for name in ("majority", "tfidf_char_lr", "finetuned"):
        assert set(result["systems"][name]) == {"accuracy", "macro_f1", "weighted_f1"}
        assert set(result["per_class"][name]) == set(result["labels"])
    assert result["systems"]["tfidf_char_lr"]["macro_f1"] > 60  # the data is learnable
    assert result["systems"]["majority"]["accuracy"] == pytest.approx(
        100 * max(split["labels"]["test"].values()) / split["test_rows"], abs=0.01)
    exps = run(["dvc", "exp", "show", "--json"], root, env)
    assert "haber" in exps and "tfidf_char_lr" in exps


def test_classifier_confusion_plot_review_and_mlflow(classified):
    from mlflow.tracking import MlflowClient

    root, env, _ = classified
    shown = json.loads(subprocess.run(["dvc", "plots", "show", "--json"], cwd=root, env=env, capture_output=True,
                                      text=True).stdout)
    assert not shown.get("errors"), shown["errors"]
    confusion = shown["data"]["reports/eval/confusion.json"][0]["content"]["data"]["values"]
    assert len(confusion) == 64 and {"actual", "predicted"} <= set(confusion[0])
    items = [json.loads(line) for line in (root / "reports/eval/predictions.jsonl").open()]
    wrong = [it for it in items if not it["correct"]]
    html = (root / "reports/eval/review.html").read_text(encoding="utf-8")
    assert f"Misclassified test texts: {len(wrong)}" in html and html.count('class="item"') == len(wrong)
    assert (root / "reports/eval/plots/confusion.png").stat().st_size > 10_000
    run_id = json.loads((root / "models/finetuned/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    metrics = client.get_run(run_id).data.metrics
    for key in ("test.systems.finetuned.macro_f1", "test.systems.tfidf_char_lr.macro_f1",
                "test.vs_baselines.tfidf_char_lr.delta.macro_f1", "test.ci.finetuned.accuracy.low", "test.beats_tfidf"):
        assert key in metrics, key
    plots = {Path(a.path).name for a in client.list_artifacts(run_id, "eval/plots")}
    assert {"confusion.png", "metrics.png"} <= plots


def test_exported_classifier_works_through_the_text_classification_pipeline(classified):
    from transformers import AutoModelForSequenceClassification, pipeline

    root = classified[0]
    labels = json.loads((root / "metrics/eval.json").read_text())["labels"]
    folder = root / "models/export"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.id2label == dict(enumerate(labels)) and model.config.pad_token_id is not None
    classify = pipeline("text-classification", model=str(folder), device="cpu")
    answers = classify(["Konya'da buğday hasadı başladı.", "Milli takım finale yükseldi."])
    assert len(answers) == 2 and all(a["label"] in labels and 0 < a["score"] <= 1 for a in answers)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: text-classification" in card and "TF-IDF char n-grams + LR" in card


def test_an_unknown_label_in_the_test_split_is_one_line(classified):
    root, env, _ = classified
    test = root / "data/processed/split/test.jsonl"
    original = test.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in original.splitlines()]
    rows[3]["label"] = "hava durumu"
    try:
        test.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "pipeline.stages.evaluate"], cwd=root, env=env,
                                capture_output=True, text=True)
    finally:
        test.write_text(original, encoding="utf-8")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if " error: " in line]
    assert f"{rows[3]['source']}: unknown label 'hava durumu'" in line and "known: ekonomi, magazin" in line
