"""Stage finetune: LoRA / DoRA / QLoRA / full fine-tuning of the base on the train split;
validation loss during each epoch, early stopping, the best checkpoint kept; resumes an
interrupted run from its last checkpoint; opens the model's MLflow run.

    python -m pipeline.stages.finetune [train.learning_rate=2e-4] [train=full] [train.packing=true]
    python -m pipeline.stages.finetune train.launcher=torchrun train.num_processes=2   # multi-process
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pipeline.errors import HasatError
from pipeline.io import atomic_path, read_jsonl, write_json
from pipeline.train.modeling import load_saved, require_model_folder
from pipeline.stages._runner import run_stage
from pipeline.tracking import log_stats_files, open_run
from pipeline.tasks.classification import class_weights, sequence_classifier, weighted_loss
from pipeline.train.trainer import check_quantization, classification_data, quantization_config, sft_data, train

BASE = Path("models/base")
SPLIT_DIR = Path("data/processed/split")
OUT_DIR = "models/finetuned"
RUN_FILE = "mlflow_run.json"
LOSS_DIR = Path("reports/loss")
STATS = "metrics/finetune.json"
CHECKPOINT_ROOT = Path(".hasat/checkpoints")
DATA_STATS = [Path(f"metrics/{name}.json") for name in ("base_model", "ingest", "clean", "tokenize", "split")]
log = logging.getLogger("hasat")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_dir(cfg) -> Path:
    """Checkpoints are keyed by everything training depends on: a stale one is never resumed."""
    train_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    for key in ("launcher", "resume"):  # how the run is started, not what it computes
        train_cfg.pop(key)
    inputs = [SPLIT_DIR / "train.jsonl", SPLIT_DIR / "val.jsonl"] + sorted(BASE.glob("*.json")) \
        + sorted(BASE.glob("*.safetensors"))
    key = hashlib.sha1(json.dumps(train_cfg, sort_keys=True).encode())
    for path in inputs:
        key.update(f"{path.name}:{_file_digest(path)}".encode())
    return CHECKPOINT_ROOT / f"finetune-{key.hexdigest()[:16]}"


def relaunch(train_cfg, argv: list[str]) -> int:
    """Run this stage again in `num_processes` processes under torchrun or accelerate."""
    n = str(train_cfg.num_processes)
    if train_cfg.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", n,
               *(["--multi_gpu"] if torch.cuda.is_available() and int(n) > 1 else ["--cpu"])]
    cmd += ["-m", "pipeline.stages.finetune", *argv]
    log.info("finetune: launching %s processes: %s", n, " ".join(cmd))
    return subprocess.run(cmd).returncode


def write_loss_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def split_labels(rows: list[dict]) -> list[str]:
    """id -> label as tokenize fixed it; every class must have training rows."""
    by_id = {r["label_id"]: str(r["label"]) for r in rows}
    if sorted(by_id) != list(range(len(by_id))):
        raise HasatError("train split lacks some classes (label ids are not contiguous); re-run split")
    return [by_id[i] for i in range(len(by_id))]


def load_model(cfg, train_rows: list[dict]):
    """(tokenizer, model, labels or None)."""
    if cfg.task.kind == "classification":
        labels = split_labels(train_rows)
        return (*sequence_classifier(BASE, labels), labels)
    if cfg.train.quantization == "none":
        return (*load_saved(BASE), None)
    return (*load_saved(BASE, quantization_config=quantization_config(cfg.train)), None)


def task_data(cfg, tokenizer, train_rows: list[dict], val_rows: list[dict], labels):
    if cfg.task.kind != "classification":
        return sft_data(tokenizer, train_rows, val_rows, cfg.train)
    weights = class_weights(train_rows, labels) if cfg.task.class_weights else None
    return classification_data(tokenizer, train_rows, val_rows, weighted_loss(weights) if weights else None)


def main(cfg) -> None:
    import mlflow

    check_quantization(cfg.train)
    if cfg.train.launcher != "none" and "LOCAL_RANK" not in os.environ:
        code = relaunch(cfg.train, sys.argv[1:])
        if code:
            raise HasatError(f"finetune: a training process exited with code {code} (its log is above)")
        return
    chief = int(os.environ.get("RANK", "0")) == 0
    require_model_folder(BASE)
    train_rows, val_rows = read_jsonl(SPLIT_DIR / "train.jsonl"), read_jsonl(SPLIT_DIR / "val.jsonl")
    if not train_rows or not val_rows:
        raise HasatError(f"{SPLIT_DIR}: the train and validation splits must not be empty")
    tokenizer, model, labels = load_model(cfg, train_rows)
    ckpt = checkpoint_dir(cfg)
    if not cfg.train.resume:
        shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    run = None
    if chief:
        previous = ckpt / RUN_FILE
        resume_id = json.loads(previous.read_text())["run_id"] if cfg.train.resume and previous.is_file() else None
        run = open_run(cfg, resume_run_id=resume_id)
        previous.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    try:
        if chief:
            log_stats_files(mlflow, DATA_STATS)
            log.info("finetune: %s on %d rows (val %d), checkpoints in %s, MLflow run %s", cfg.train.method,
                     len(train_rows), len(val_rows), ckpt, run["run_id"])
        model, loss_log, summary = train(
            model, task_data(cfg, tokenizer, train_rows, val_rows, labels), cfg.train, ckpt, resume=cfg.train.resume,
            on_metrics=(lambda metrics, step: mlflow.log_metrics(metrics, step=step)) if chief else None)
        if not chief:
            return
        with atomic_path(OUT_DIR) as out:
            out.mkdir()
            folder = out / ("adapter" if cfg.train.method == "lora" else "model")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            write_json(out / "finetune.json", {"method": cfg.train.method, "task": cfg.task.kind, "labels": labels,
                                               "base": str(BASE), "run_id": run["run_id"]})
            (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
            mlflow.log_metrics({f"finetune.{k}": float(v) for k, v in summary.items()
                                if isinstance(v, (int, float)) and v is not None})
    except BaseException:
        if chief:
            mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()
    write_loss_csv(LOSS_DIR / "train.csv", loss_log.train, ["step", "epoch", "loss", "learning_rate"])
    write_loss_csv(LOSS_DIR / "val.csv", loss_log.val, ["step", "epoch", "loss"])
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if torch.cuda.is_available():
        summary["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    write_json(STATS, summary)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info("finetune: %d steps, train loss %.4f, best val loss %.4f (step %s) in %.0fs%s", summary["steps"],
             summary["train_loss"], summary["best_val_loss"], summary["best_checkpoint_step"],
             summary["train_runtime_s"],
             f" (resumed from step {summary['resumed_from_step']})" if summary["resumed_from_step"] else "")


if __name__ == "__main__":
    run_stage("finetune", main)
