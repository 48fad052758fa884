"""task=preference: ingest of plain and chat pairs and KTO rows, clean's same-answer quarantine, DPO
end to end through the stage CLIs on the tiny model (rewards in MLflow, held-out preference accuracy
with its interval, base vs tuned, the LLM judge from a stub OpenAI-compatible server), KTO and ORPO
through the same trainer factory, and the held-out accuracy arithmetic."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.data.ingest.rows import RowError
from pipeline.data.ingest.schemas import schema_of_columns, to_record
from pipeline.data.rejects import read_rejects
from pipeline.eval.preference import AnswerLogprobs, preference_section
from tests.conftest import copy_config, run_stage_cli
from tests.judge_stub import JudgeStub

PREF = ("task=preference", "model=tiny_random", "clean.language.enabled=false", "clean.near_duplicates.enabled=false",
        "data.path=pairs.jsonl", "data.schema=auto", "split.val_size=2", "split.test_size=4", "train.max_steps=2",
        "train.batch_size=4", "train.evals_per_epoch=1", "train.learning_rate=5e-3", "eval.max_new_tokens=6",
        "eval.mc.enabled=false", "eval.bootstrap.resamples=200", "eval.lm_eval.tasks=[]")
CROPS = ["buğday", "arpa", "mısır", "pamuk", "fındık", "zeytin", "çay", "ayçiçeği", "nohut", "mercimek", "şeker pancarı",
         "domates", "biber", "üzüm"]


def pairs() -> list[dict]:
    rows = [{"prompt": f"{crop.capitalize()} için toprak hazırlığı nasıl yapılır?",
             "chosen": f"{crop.capitalize()} için toprağı derin sürün, tohum yatağını ince hazırlayın ve analizle gübreleyin.",
             "rejected": "Bilmiyorum, herhangi bir şey yapabilirsiniz."} for crop in CROPS]
    rows.append({"prompt": [{"role": "user", "content": "Damla sulamanın faydası nedir?"}],
                 "chosen": [{"role": "assistant", "content": "Suyu kök bölgesine verir, kaybı ve yabancı otu azaltır."}],
                 "rejected": [{"role": "assistant", "content": "Damla sulama suyu boşa harcar ve bitkiyi kurutur."}]})
    rows.append({"prompt": "Arıcılıkta kışlatma ne demektir?", "chosen": "Aynı yanıt.", "rejected": "aynı yanıt"})
    return rows


def stage(name, workdir, *overrides, env=None):
    if env is None:
        return run_stage_cli(f"pipeline.stages.{name}", *PREF, *overrides, cwd=workdir, timeout=300)
    return subprocess.run([sys.executable, "-m", f"pipeline.stages.{name}", *PREF, *overrides], cwd=workdir,
                          capture_output=True, text=True, timeout=300, env=env)


def test_schemas_detect_and_canonicalise_preference_rows():
    assert schema_of_columns(["prompt", "chosen", "rejected"]) == "preference"
    assert schema_of_columns(["chosen", "rejected"]) == "preference"
    assert schema_of_columns(["prompt", "completion", "label"]) == "kto"
    plain = to_record({"prompt": "Soru?", "chosen": "İyi.", "rejected": "Kötü.", "topic": "x"}, "f:1", "preference")
    assert plain["prompt"] == [{"role": "user", "content": "Soru?"}] and plain["chosen"] == "İyi."
    assert plain["meta"] == {"topic": "x"}
    implicit = to_record({"chosen": [{"role": "user", "content": "Soru?"}, {"role": "assistant", "content": "İyi."}],
                          "rejected": [{"role": "user", "content": "Soru?"}, {"role": "assistant", "content": "Kötü."}]},
                         "f:2", "preference")
    assert (implicit["prompt"], implicit["chosen"], implicit["rejected"]) == (plain["prompt"], "İyi.", "Kötü.")
    kto = to_record({"prompt": "Soru?", "completion": "İyi.", "label": "true"}, "f:3", "kto")
    assert kto["label"] is True
    with pytest.raises(RowError, match="share every turn"):
        to_record({"chosen": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "x"}],
                   "rejected": [{"role": "user", "content": "B?"}, {"role": "assistant", "content": "y"}]},
                  "f:4", "preference")
    with pytest.raises(RowError, match="true/false"):
        to_record({"prompt": "Soru?", "completion": "İyi.", "label": "belki"}, "f:5", "kto")


def test_held_out_accuracy_counts_log_ratio_wins():
    ref = AnswerLogprobs({"chosen": np.array([-10.0, -10.0, -10.0, -10.0]),
                          "rejected": np.array([-5.0, -5.0, -5.0, -5.0])})
    pol = AnswerLogprobs({"chosen": np.array([-8.0, -9.0, -12.0, -10.0]),
                          "rejected": np.array([-6.0, -5.0, -4.0, -5.0])})
    section = preference_section(ref, pol, 0.1, None, 500, 0.95, 0)
    # margins 0.1*(2-(-1))=0.3, 0.1*(1-0)=0.1, 0.1*(-2-1)=-0.3, 0: two of four pairs won
    assert section["reward_accuracy"]["value"] == 50.0
    assert section["per_item_margin"] == [0.3, 0.1, -0.3, 0.0]
    assert 0.0 <= section["reward_accuracy"]["low"] <= 50.0 <= section["reward_accuracy"]["high"] <= 100.0
    assert section["likelihood_accuracy"]["base"] == 0.0 and section["likelihood_accuracy"]["finetuned"] == 0.0
    kto = preference_section(AnswerLogprobs({"completion": np.array([-5.0, -5.0])}),
                             AnswerLogprobs({"completion": np.array([-4.0, -4.0])}), 0.1, [True, False], 100, 0.9, 0)
    assert kto["reward_accuracy"]["value"] == 50.0  # raised both: right for the desirable row only


@pytest.fixture(scope="module")
def preference_run(tmp_path_factory, tiny_model_dir):
    workdir = copy_config(tmp_path_factory.mktemp("pref"))
    shutil.copytree(tiny_model_dir, workdir / "models" / "base")
    (workdir / "pairs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pairs()),
                                         encoding="utf-8")
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
           "HASAT_JUDGE_API_KEY": "sir-123"}
    with JudgeStub(["[[A]]", "[[B]]", "Beraber. [[C]]", "[[A]]", "[[A]]", "ne diyeyim"]) as judge:
        results = {}
        for name in ("ingest", "clean", "tokenize", "split", "finetune"):
            results[name] = stage(name, workdir, env=env)
            assert results[name].returncode == 0, (name, results[name].stderr[-3000:])
        results["evaluate"] = stage("evaluate", workdir, "eval.judge.enabled=true", f"eval.judge.url={judge.url}",
                                    "eval.judge.single_grade=true", env=env)
        assert results["evaluate"].returncode == 0, results["evaluate"].stderr[-3000:]
        requests = list(judge.requests)
    return workdir, results, requests


def test_dpo_runs_end_to_end_with_rewards_accuracy_and_judge(preference_run):
    workdir, results, requests = preference_run
    rejects = read_rejects(workdir / "data/rejects/clean.jsonl")
    assert [(r["source"], r["reason"]) for r in rejects] == [
        ("pairs.jsonl:16", "chosen and rejected are the same answer after cleaning")]
    finetune = json.loads((workdir / "metrics/finetune.json").read_text())
    assert finetune["method"] == "dpo" and finetune["steps"] == 2
    assert {"train_rewards/margins", "train_rewards/accuracies", "val_rewards/chosen"} <= set(finetune)
    result = json.loads((workdir / "metrics/eval.json").read_text())
    assert result["task"] == "preference" and result["test_rows"] == 4 and result["reference_model"] == "base"
    acc = result["preference"]["reward_accuracy"]
    assert result["preference"]["pairs"] == 4 and acc["low"] <= acc["value"] <= acc["high"]
    assert {"chrf", "bleu"} <= set(result["base"]) and {"chrf", "bleu"} <= set(result["finetuned"])
    # the judge: 4 items x 2 orders, then 4 x 2 grades; the stub answers in turn from its list
    judge = result["judge"]
    assert judge["items"] == 4 and len(requests) == 1 + 16  # a reachability probe first
    assert all(r["auth"] == "Bearer sir-123" for r in requests)
    assert "Kullanıcı sorusu" in requests[1]["messages"][1]["content"]
    items = {i["source"]: i["judge"] for i in map(json.loads, (workdir / "reports/eval/predictions.jsonl").open())}
    verdicts = sorted((j["tuned_first"], j["base_first"], j["verdict"]) for j in items.values())
    # replies in order: (A,B) (C,A) (A,none) (A,B): tuned first A=tuned, base first B=tuned
    assert verdicts == [("tie", "base", "tie"), ("tuned", "tie", "tie"), ("tuned", "tuned", "tuned"),
                        ("tuned", "tuned", "tuned")]
    assert judge["win"]["value"] == 50.0 and judge["tie"]["value"] == 50.0 and judge["loss"]["value"] == 0.0
    # consistency over the 3 items with a verdict in both orders: (A,B) and (A,B) agree, (C,A) does not
    assert judge["position_consistency_items"] == 3 and judge["position_consistency"]["value"] == 66.67
    assert judge["unparsed_verdicts"] == 1
    assert judge["win"]["low"] <= 50.0 <= judge["win"]["high"]
    assert "sir-123" not in (workdir / "metrics/eval.json").read_text() + results["evaluate"].stderr
    review = (workdir / "reports/eval/review.html").read_text(encoding="utf-8")
    assert "Held-out preference accuracy" in review and "LLM judge" in review
    from mlflow.tracking import MlflowClient

    run_id = json.loads((workdir / "models/finetuned/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert len(client.get_metric_history(run_id, "rewards/margins")) == 2
    assert {"preference.reward_accuracy", "judge.win", "judge.position_consistency"} <= set(
        client.get_run(run_id).data.metrics)


def test_unreachable_judge_is_one_line(preference_run):
    from tests.conftest import free_port

    workdir, _, _ = preference_run
    port = free_port()
    result = stage("evaluate", workdir, "eval.judge.enabled=true", f"eval.judge.url=http://127.0.0.1:{port}/v1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if " error: " in line]
    assert len(lines) == 1 and f"cannot reach the judge at http://127.0.0.1:{port}/v1" in lines[0]


def tokenized_pairs(cfg, tokenizer):
    from pipeline.tasks.preference.train import tokenize_preference

    rows = [to_record(r, f"pairs.jsonl:{i}", "preference") for i, r in enumerate(pairs()[:-1], start=1)]
    return tokenize_preference(cfg, rows, tokenizer).records


@pytest.mark.parametrize("method", ["kto", "orpo", "dpo_on_sft_adapter"])
def test_kto_orpo_and_dpo_on_an_sft_adapter_train(tmp_path, tiny_model_dir, method):
    from pipeline.config_loader import load_config
    from pipeline.tasks.preference.train import PreferenceTraining
    from pipeline.tasks.training import load_finetuned
    from pipeline.train.modeling import load_saved
    from pipeline.train.trainer import train, wrap_lora
    from tests.conftest import REPO

    overrides = ["task=preference", "model=tiny_random", f"task.method={method.split('_')[0]}", "train.max_steps=1",
                 "train.batch_size=4", "train.evals_per_epoch=1"]
    if method == "dpo_on_sft_adapter":  # an SFT adapter (random B, so it changes the model) to start from
        import torch

        torch.manual_seed(0)
        sft = wrap_lora(load_saved(tiny_model_dir)[1], load_config(["model=tiny_random"],
                                                                    REPO / "params.yaml", REPO / "conf").train.lora)
        for name, param in sft.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.02)
        sft.save_pretrained(tmp_path / "sft_adapter")
        overrides.append(f"task.sft_adapter={tmp_path / 'sft_adapter'}")
    cfg = load_config(overrides, REPO / "params.yaml", REPO / "conf")
    task = PreferenceTraining()
    tokenizer, model, _ = task.training_model(cfg, tiny_model_dir, [])
    rows = tokenized_pairs(cfg, tokenizer)
    data = task.training_data(cfg, tokenizer, rows[:12], rows[12:], None)
    if method == "kto":  # each pair is one desirable and one undesirable row
        assert len(data.train_features) == 24 and sum(f["label"] for f in data.train_features) == 12
    trained = train(model, data, cfg.train, tmp_path / "ckpt")
    assert trained.summary["steps"] == 1 and "train_rewards/chosen" in trained.summary
    if method == "dpo_on_sft_adapter":
        # TRL's reference is a frozen copy of the SFT adapter: the policy starts where the reference is
        assert trained.summary["train_rewards/margins"] == pytest.approx(0.0, abs=1e-6)
        assert {"default", "ref"} <= set(trained.model.peft_config)
    out = tmp_path / "finetuned"
    trained.model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    (out / "finetune.json").write_text(json.dumps({"method": "lora", "task": "preference"}))
    assert load_finetuned(tiny_model_dir, out)[1].config.model_type == "llama"


def test_local_model_judge_on_the_tiny_model(tiny_model_dir):
    from pipeline.config import JudgeConfig
    from pipeline.errors import HasatError
    from pipeline.eval.judge import judge_items, make_judge

    items = [{"prompt": "Buğday ne zaman ekilir?", "base": "Ekimde.", "finetuned": "Ekim ayında, toprak tavdayken."},
             {"prompt": "Arpa ne zaman hasat edilir?", "base": "Bilmem.", "finetuned": "Haziranda, dane sertleşince."}]
    cfg = JudgeConfig(enabled=True, model=str(tiny_model_dir), max_new_tokens=4)
    section = judge_items(cfg, items, 100, 0.95, 0)
    # random weights never write a verdict: every reply is unparsed, every item a tie, and that is what is reported
    assert section["judge"] == f"local model {tiny_model_dir}" and section["items"] == 2
    assert section["unparsed_verdicts"] == 4 and section["tie"]["value"] == 100.0
    assert section["position_consistency"] is None and section["position_consistency_items"] == 0
    assert all(set(i["judge"]["reasons"]) == {"tuned shown first", "base shown first"} for i in items)
    with pytest.raises(HasatError, match="^eval.judge.model: .*nope"):
        make_judge(JudgeConfig(enabled=True, model=str(tiny_model_dir.parent / "nope")))


def test_a_logits_judge_always_gives_a_verdict_with_its_probabilities(tiny_model_dir):
    from pipeline.config import JudgeConfig
    from pipeline.errors import HasatError
    from pipeline.eval.judge import VERDICT_ONLY, judge_items, make_judge

    items = [{"prompt": "Buğday ne zaman ekilir?", "base": "Ekimde.", "finetuned": "Ekim ayında, toprak tavdayken."},
             {"prompt": "Arpa ne zaman hasat edilir?", "base": "Bilmem.", "finetuned": "Haziranda, dane sertleşince."}]
    cfg = JudgeConfig(enabled=True, model=str(tiny_model_dir), verdict="logits", single_grade=True)
    judge = make_judge(cfg)
    seen = []
    choose = judge.choose
    judge.choose = lambda prompts, options: seen.append((prompts, options)) or choose(prompts, options)
    section = judge_items(cfg, items, 100, 0.95, 0, judge)
    # the random tiny model writes no verdict (test above); read from its logits every reply has one
    assert section["unparsed_verdicts"] == 0 and section["verdict"] == "logits"
    assert section["position_consistency_items"] == 2
    assert abs(sum(section[k]["value"] for k in ("win", "tie", "loss")) - 100.0) < 1e-6
    reason = items[0]["judge"]["reasons"]["tuned shown first"]
    probs = [float(x.split()[1]) for x in reason.split("(p ")[1].rstrip(")").split(", ")]
    assert reason.startswith("[[") and len(probs) >= 2 and abs(sum(probs) - 1.0) < 0.02 and probs == sorted(probs)[::-1]
    assert seen[0][1] == ["A", "B", "C"] and all(VERDICT_ONLY[0] in p for p in seen[0][0])
    assert seen[1][1] == [str(g) for g in range(1, 11)] and all(VERDICT_ONLY[1] in p for p in seen[1][0])
    assert all(g in range(1, 11) for g in (items[0]["judge"]["base_grade"], items[0]["judge"]["finetuned_grade"]))
    with pytest.raises(HasatError, match="^eval.judge.verdict=logits needs a local judge"):
        make_judge(JudgeConfig(enabled=True, url="http://127.0.0.1:9/v1", verdict="logits"))


def test_a_judge_can_be_a_model_profile():
    from pipeline.config import JudgeConfig
    from pipeline.eval.judge import make_judge

    judge = make_judge(JudgeConfig(enabled=True, model="tiny_random", verdict="logits"))
    [reply] = judge.choose(["Hangisi daha iyi?"], ["A", "B"])
    assert judge.name.startswith("model profile tiny_random") and reply[:5] in ("[[A]]", "[[B]]") and "(p " in reply
