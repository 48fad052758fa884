"""Stage finetune: LoRA / DoRA / QLoRA / full fine-tuning of the base on the train split;
validation loss during each epoch, early stopping, the best checkpoint kept; resumes an
interrupted run from its last checkpoint; opens the model's MLflow run.

    python -m pipeline.stages.finetune [train.learning_rate=2e-4] [train=full] [train.packing=true]
    python -m pipeline.stages.finetune train.launcher=torchrun train.num_processes=2   # multi-process
    python -m pipeline.stages.finetune train.launcher=torchrun train.num_processes=8 train.distributed=fsdp \
        train.num_nodes=2 train.node_rank=0 train.master_addr=node01              # on each node
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

from pipeline import paths, tracking
from pipeline.config import HasatConfig, TrainConfig
from pipeline.errors import HasatError
from pipeline.io import atomic_path, read_jsonl, write_json
from pipeline.stages._runner import StageHelp, run_stage
from pipeline.tasks.training import training_for
from pipeline.train.distributed import check_strategy, launch_command
from pipeline.train.modeling import require_model_folder
from pipeline.train.trainer import check_quantization, train

BASE = paths.BASE_MODEL
RUN_FILE = paths.RUN_FILE
log = logging.getLogger("hasat")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_dir(cfg: HasatConfig) -> Path:
    """Checkpoints are keyed by everything training depends on: a stale one is never resumed."""
    train_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    for key in ("launcher", "resume", "num_nodes", "node_rank", "master_addr", "master_port"):
        # how the run is started, not what it computes
        train_cfg.pop(key)
    inputs = [paths.TRAIN_SPLIT, paths.VAL_SPLIT] + sorted(BASE.glob("*.json")) \
        + sorted(BASE.glob("*.safetensors"))
    key = hashlib.sha1(json.dumps(train_cfg, sort_keys=True).encode())
    for path in inputs:
        key.update(f"{path.name}:{_file_digest(path)}".encode())
    return paths.CHECKPOINT_ROOT / f"finetune-{key.hexdigest()[:16]}"


def relaunch(train_cfg: TrainConfig, argv: list[str]) -> int:
    """Run this stage again in `num_processes` processes (per node) under torchrun or accelerate."""
    cmd = launch_command(train_cfg, argv, cuda=torch.cuda.is_available())
    log.info("finetune: launching %d process(es) on node %d of %d: %s", train_cfg.num_processes,
             train_cfg.node_rank, train_cfg.num_nodes, " ".join(cmd))
    return subprocess.run(cmd).returncode


def write_loss_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


HELP = StageHelp(
    __doc__,
    reads=[f"{BASE}/", str(paths.TRAIN_SPLIT), str(paths.VAL_SPLIT),
           "launch/fsdp2.json, launch/accelerate_fsdp2.yaml (train.distributed=fsdp)",
           "launch/ds_zero2.json, launch/ds_zero3.json (train.distributed=deepspeed)"],
    writes=[f"{paths.FINETUNED}/ (adapter or full model, {RUN_FILE})", f"{paths.LOSS_DIR}/train.csv",
            f"{paths.LOSS_DIR}/val.csv", str(paths.stats("finetune")),
            f"{paths.CHECKPOINT_ROOT}/ (checkpoints to resume from; removed when done)", "the model's MLflow run"],
    keys=["task.kind", "task.class_weights", "task.prompt_format", "data.system_prompt", "task.method", "task.beta", "task.loss_type",
          "task.sft_weight", "task.sft_adapter", "train.method", "train.learning_rate", "train.num_epochs", "train.max_steps", "train.batch_size",
          "train.gradient_accumulation_steps", "train.evals_per_epoch", "train.early_stopping_patience",
          "train.packing", "train.quantization", "train.precision", "train.resume", "train.launcher",
          "train.num_processes", "train.distributed", "train.num_nodes", "train.node_rank", "train.master_addr",
          "train.lora.r", "mlflow.experiment_name"],
)


def metrics_sink(chief: bool):
    """MLflow gets every logged value; a search trial's eval log (paths.EVAL_LOG_ENV) the validation losses."""
    if not chief:
        return None
    eval_log = os.environ.get(paths.EVAL_LOG_ENV)
    if not eval_log:
        return tracking.log_metrics

    def sink(metrics: dict, step: int) -> None:
        tracking.log_metrics(metrics, step)
        if "val_loss" in metrics:
            with open(eval_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, "val_loss": metrics["val_loss"]}) + "\n")

    return sink


def main(cfg: HasatConfig) -> None:
    check_quantization(cfg.train)
    check_strategy(cfg.train, cuda=torch.cuda.is_available())
    if cfg.train.launcher != "none" and "LOCAL_RANK" not in os.environ:
        code = relaunch(cfg.train, sys.argv[1:])
        if code:
            raise HasatError(f"finetune: a training process exited with code {code} (its log is above)")
        return
    chief = int(os.environ.get("RANK", "0")) == 0
    require_model_folder(BASE)
    train_rows, val_rows = read_jsonl(paths.TRAIN_SPLIT), read_jsonl(paths.VAL_SPLIT)
    if not train_rows or not val_rows:
        raise HasatError(f"{paths.SPLIT_DIR}: the train and validation splits must not be empty")
    task = training_for(cfg.task.kind)
    tokenizer, model, labels = task.training_model(cfg, BASE, train_rows)
    ckpt = checkpoint_dir(cfg)
    if not cfg.train.resume:
        shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    run = None
    if chief:
        previous = ckpt / RUN_FILE
        resume_id = json.loads(previous.read_text())["run_id"] if cfg.train.resume and previous.is_file() else None
        run = tracking.open_run(cfg, resume_run_id=resume_id)
        previous.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    try:
        if chief:
            tracking.log_stats_files([paths.stats(stage) for stage in paths.DATA_STAGES])
            log.info("finetune: %s on %d rows (val %d), checkpoints in %s, MLflow run %s", cfg.train.method,
                     len(train_rows), len(val_rows), ckpt, run["run_id"])
        model, loss_log, summary, state_dict = train(
            model, task.training_data(cfg, tokenizer, train_rows, val_rows, labels), cfg.train, ckpt,
            resume=cfg.train.resume, on_metrics=metrics_sink(chief))
        if not chief:
            return
        with atomic_path(paths.FINETUNED) as out:
            out.mkdir()
            folder = out / ("adapter" if cfg.train.method == "lora" else "model")
            model.save_pretrained(folder, **({"state_dict": state_dict} if state_dict is not None else {}))
            tokenizer.save_pretrained(folder)
            write_json(out / "finetune.json", {"method": cfg.train.method, "task": cfg.task.kind, "labels": labels,
                                               "base": str(BASE), "run_id": run["run_id"]})
            (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
            tracking.log_metrics({f"finetune.{k}": float(v) for k, v in summary.items()
                                if isinstance(v, (int, float)) and v is not None})
    except BaseException:
        if chief:
            tracking.end_run(failed=True)
        raise
    tracking.end_run()
    write_loss_csv(paths.LOSS_DIR / "train.csv", loss_log.train, ["step", "epoch", "loss", "learning_rate"])
    write_loss_csv(paths.LOSS_DIR / "val.csv", loss_log.val, ["step", "epoch", "loss"])
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if torch.cuda.is_available():
        summary["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    write_json(paths.stats("finetune"), summary)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info("finetune: %s, %d steps, train loss %.4f, best val loss %.4f (step %s) in %.0fs%s",
             summary["strategy"], summary["steps"],
             summary["train_loss"], summary["best_val_loss"], summary["best_checkpoint_step"],
             summary["train_runtime_s"],
             f" (resumed from step {summary['resumed_from_step']})" if summary["resumed_from_step"] else "")


if __name__ == "__main__":
    run_stage("finetune", main, HELP)
