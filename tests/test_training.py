"""Training correctness on the tiny random model: packing keeps samples apart, same seed same
loss, a SIGKILLed run resumes to the uninterrupted result, two CPU processes train together (on one
node, and as two torchrun nodes on localhost)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.config import TrainConfig
from pipeline.train.modeling import load_saved
from pipeline.train.prompts import IGNORE_INDEX, tokenize_records
from pipeline.train.packing import PackedCollator, pack, to_features
from pipeline.train.trainer import sft_data, train
from tests.conftest import REPO, copy_config, free_port, run_stage_cli

QUESTIONS = ["Buğday ne zaman ekilir?", "Damla sulamanın faydası nedir?", "Arılar kışa nasıl hazırlanır?",
             "Toprak pH değeri neden ölçülür?", "Traktör bakımı ne sıklıkla yapılır?"]


@pytest.fixture(scope="module")
def rows(tiny_model_dir):
    tokenizer, _ = load_saved(tiny_model_dir)
    records = [{"id": str(i), "source": f"t:{i}", "instruction": q, "input": "", "output": a}
               for i, (q, a) in enumerate(zip(QUESTIONS, ["Ekimde.", "Su tasarrufu sağlar ve verimi artırır.",
                                                          "Besin stoku bırakılır.", "Gübrelemeyi yönlendirmek için.",
                                                          "Her sezon başında ve saat sayacına göre."]))]
    return tokenize_records(records, tokenizer, "chat_template", None, True, 384, "drop").records


def token_losses(model, batch):
    logits = model(**batch).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=IGNORE_INDEX, reduction="none")
    return losses[labels.reshape(-1) != IGNORE_INDEX]


def test_packed_and_unpacked_loss_agree(tiny_model_dir, rows):
    from transformers import DataCollatorForSeq2Seq

    tokenizer, model = load_saved(tiny_model_dir)
    model.eval()
    model.config.use_cache = False  # as train() sets it: a KV cache hides packed-sequence boundaries
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")(
        [{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in to_features(rows)])
    packed_rows = pack(rows, pack_length=2048)
    assert len(packed_rows) == 1
    packed = PackedCollator(tokenizer.pad_token_id)(packed_rows)
    with torch.no_grad():
        unpacked_loss = token_losses(model, padded).mean()
        packed_loss = token_losses(model, packed).mean()
        naive = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}  # no restarts
        naive_loss = token_losses(model, naive).mean()
    assert packed_loss.item() == pytest.approx(unpacked_loss.item(), abs=1e-5)
    assert abs(naive_loss.item() - unpacked_loss.item()) > 1e-3  # attending across samples changes the loss


def test_packing_respects_the_length_and_keeps_every_token(rows):
    packed = pack(rows * 3, pack_length=200)
    assert all(r["length"] <= 200 for r in packed)
    assert sum(r["length"] for r in packed) == 3 * sum(len(r["input_ids"]) for r in rows)
    starts = [i for r in packed for i, p in enumerate(r["position_ids"]) if p == 0]
    assert len(starts) == 3 * len(rows)


def tiny_train_cfg(**overrides) -> TrainConfig:
    cfg = TrainConfig(learning_rate=1e-3, num_epochs=1, batch_size=2, max_steps=6, evals_per_epoch=1,
                      logging_steps=1, warmup_ratio=0.0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_same_seed_same_loss(tiny_model_dir, rows, tmp_path):
    results = []
    for run in range(2):
        tokenizer, model = load_saved(tiny_model_dir)
        cfg = tiny_train_cfg()
        _, log, summary, _ = train(model, sft_data(tokenizer, rows * 4, rows, cfg), cfg, tmp_path / f"ck{run}")
        results.append(([r["loss"] for r in log.train], summary["final_val_loss"]))
    assert results[0] == results[1]


def test_packed_training_runs(tiny_model_dir, rows, tmp_path):
    tokenizer, model = load_saved(tiny_model_dir)
    cfg = tiny_train_cfg(packing=True, pack_length=256)
    _, log, summary, _ = train(model, sft_data(tokenizer, rows * 4, rows, cfg), cfg, tmp_path / "ck")
    assert summary["packed_rows"] >= 1 and log.train and log.val


def test_train_tokens_learn_their_embedding_rows_and_merge_into_the_saved_model(tiny_model_dir, rows, tmp_path):
    """model.train_tokens: a pretrained base's untrained turn markers get their (tied) rows trained with
    LoRA; only those rows change, and the saved adapter merges back to the same logits."""
    from pipeline.errors import HasatError
    from pipeline.train.modeling import merge_adapter
    from pipeline.train.trainer import train_token_ids

    tokenizer, model = load_saved(tiny_model_dir)
    before = model.get_input_embeddings().weight.detach().clone()
    ids = train_token_ids(tokenizer, ["<|im_start|>", "<|im_end|>"])
    cfg = tiny_train_cfg(learning_rate=1e-2)
    data = sft_data(tokenizer, rows * 4, rows, cfg)
    data.train_token_ids = ids
    trained, _, summary, _ = train(model, data, cfg, tmp_path / "ck")
    assert summary["trained_token_rows"] == 2
    trained.save_pretrained(tmp_path / "adapter")
    merged = merge_adapter(load_saved(tiny_model_dir)[1], tmp_path / "adapter")
    after = merged.get_input_embeddings().weight.detach()
    others = torch.ones(len(before), dtype=torch.bool)
    others[ids] = False
    assert not torch.allclose(after[ids], before[ids]) and torch.equal(after[others], before[others])
    assert torch.equal(merged.get_output_embeddings().weight[ids], after[ids])  # tied: the output rows follow
    batch = {"input_ids": torch.tensor([rows[0]["input_ids"]])}
    trained.eval()
    with torch.no_grad():
        assert torch.allclose(trained(**batch).logits, merged(**batch).logits, atol=1e-4)
    with pytest.raises(HasatError, match="'<nope>' is not a token of this model's tokenizer"):
        train_token_ids(tokenizer, ["<nope>"])


# --- the finetune stage as a process: resume after SIGKILL, two processes -----------------------

STAGE_ARGS = ["model=tiny_random", "train.batch_size=4", "train.evals_per_epoch=4", "train.num_epochs=1",
              "train.early_stopping_patience=100", "split.val_size=8", "split.test_size=4",
              # short rows: the tiny model's time goes into its 49k-token vocabulary, per token
              "tokenize.max_seq_len=96", "tokenize.truncation=truncate",
              "tokenize.max_drop_share=0.5"]  # rows whose prompt alone passes 96 tokens are dropped (16%)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A work folder with the tiny base model and a small split, ready for finetune."""
    work = tmp_path_factory.mktemp("finetune")
    copy_config(work)
    lines = (REPO / "data/raw/tarim_sft/talimatlar.jsonl").read_text(encoding="utf-8").splitlines()[:76]
    (work / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for stage in ("base_model", "ingest", "clean", "tokenize", "split"):
        result = run_stage_cli(f"pipeline.stages.{stage}", *STAGE_ARGS, f"data.path={work / 'data.jsonl'}", cwd=work)
        assert result.returncode == 0, result.stderr
    return work


def clone_work(prepared: Path, dest: Path) -> Path:
    shutil.copytree(prepared, dest, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".hasat"))
    return dest


def adapter(work: Path) -> dict:
    return load_file(work / "models/finetuned/adapter/adapter_model.safetensors")


def test_sigkilled_finetune_resumes_to_the_uninterrupted_result(prepared, tmp_path):
    straight = clone_work(prepared, tmp_path / "straight")
    result = run_stage_cli("pipeline.stages.finetune", *STAGE_ARGS, cwd=straight, timeout=300)
    assert result.returncode == 0, result.stderr

    killed = clone_work(prepared, tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.stages.finetune", *STAGE_ARGS], cwd=killed,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        states = list((killed / ".hasat/checkpoints").glob("*/checkpoint-*/trainer_state.json"))
        if any(int(p.parent.name.split("-")[1]) >= 6 for p in states):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "models/finetuned").exists()

    resumed = run_stage_cli("pipeline.stages.finetune", *STAGE_ARGS, cwd=killed, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((killed / "metrics/finetune.json").read_text())
    reference = json.loads((straight / "metrics/finetune.json").read_text())
    assert summary["resumed_from_step"] >= 6
    assert summary["steps"] == reference["steps"]
    assert summary["final_val_loss"] == pytest.approx(reference["final_val_loss"], abs=1e-6)
    a, b = adapter(killed), adapter(straight)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not list((killed / ".hasat/checkpoints").glob("*/checkpoint-*"))  # cleaned after success
    assert not list((killed / "models").glob(".finetuned.*"))  # the killed run's temp output is gone


def test_two_processes_train_on_cpu(prepared, tmp_path):
    work = clone_work(prepared, tmp_path / "ddp")
    result = run_stage_cli("pipeline.stages.finetune", *STAGE_ARGS, "train.launcher=torchrun",
                           "train.num_processes=2", "train.max_steps=4", cwd=work, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((work / "metrics/finetune.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert summary["strategy"] == "ddp"  # what really ran, read back from the Trainer
    assert (work / "models/finetuned/adapter/adapter_config.json").is_file()


def test_two_nodes_on_localhost(prepared, tmp_path):
    """Two torchrun 'nodes' (one gloo process each) rendezvous on a localhost port and train together."""
    work = clone_work(prepared, tmp_path / "nodes")
    port = free_port()
    common = [sys.executable, "-m", "pipeline.stages.finetune", *STAGE_ARGS, "train.launcher=torchrun",
              "train.num_processes=1", "train.num_nodes=2", "train.max_steps=2", f"train.master_port={port}"]
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    nodes = [subprocess.Popen([*common, f"train.node_rank={rank}"], cwd=work, stdout=subprocess.DEVNULL,
                              stderr=logs[rank].open("w")) for rank in (1, 0)]
    codes = [node.wait(timeout=300) for node in nodes]
    output = [log.read_text() for log in logs]
    assert codes == [0, 0], output[0][-3000:] + output[1][-3000:]
    summary = json.loads((work / "metrics/finetune.json").read_text())
    assert summary["world_size"] == 2 and summary["strategy"] == "ddp" and summary["steps"] == 2
    assert "--nnodes=2 --node-rank=0" in output[0] and "--nnodes=2 --node-rank=1" in output[1]


def test_qlora_without_cuda_fails_at_once(prepared):
    result = run_stage_cli("pipeline.stages.finetune", *STAGE_ARGS, "train.quantization=4bit", cwd=prepared)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "hasat finetune: error: train.quantization=4bit (QLoRA) needs a CUDA GPU; none is available "
        "(use train.quantization=none on this machine)")
