"""How finetune runs on more than one process: the launcher's command line (torchrun or accelerate,
one node or several), the sharding strategy handed to the Trainer (DDP, FSDP2, DeepSpeed ZeRO), the
checks that refuse what cannot run here, and the name of the strategy that really ran.

    train.launcher=torchrun train.num_processes=8                      # one node, 8 processes
    train.num_nodes=2 train.node_rank=$SLURM_NODEID train.master_addr=node01   # each of 2 nodes
    train.distributed=fsdp | deepspeed train.deepspeed_config=launch/ds_zero2.json
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Optional

from pipeline.config import TrainConfig
from pipeline.errors import HasatError

ACCELERATE_FSDP2 = Path("launch/accelerate_fsdp2.yaml")


def launch_command(train_cfg: TrainConfig, stage_args: list[str], cuda: bool) -> list[str]:
    """The command that starts `num_processes` copies of the finetune stage on this node."""
    n, nodes = str(train_cfg.num_processes), train_cfg.num_nodes
    if train_cfg.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}"]
        if nodes == 1:
            cmd.append("--standalone")
        else:
            cmd += [f"--nnodes={nodes}", f"--node-rank={train_cfg.node_rank}",
                    f"--master-addr={train_cfg.master_addr}", f"--master-port={train_cfg.master_port}"]
    else:  # accelerate: --num_processes counts every process of every machine
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if train_cfg.distributed == "fsdp":
            cmd += ["--config_file", str(ACCELERATE_FSDP2)]
        cmd += ["--num_processes", str(train_cfg.num_processes * nodes)]
        if nodes > 1:
            cmd += ["--num_machines", str(nodes), "--machine_rank", str(train_cfg.node_rank),
                    "--main_process_ip", train_cfg.master_addr, "--main_process_port", str(train_cfg.master_port)]
        if train_cfg.distributed != "fsdp":
            cmd += ["--multi_gpu"] if cuda and train_cfg.num_processes * nodes > 1 else ([] if cuda else ["--cpu"])
    return cmd + ["-m", "pipeline.stages.finetune", *stage_args]


def check_strategy(train_cfg: TrainConfig, cuda: bool) -> None:
    """Refuse, in one line, a strategy that would not run as asked (before any model is loaded)."""
    if train_cfg.num_nodes < 1 or not 0 <= train_cfg.node_rank < train_cfg.num_nodes:
        raise HasatError(f"train.node_rank={train_cfg.node_rank} must be in 0..train.num_nodes-1 "
                         f"(train.num_nodes={train_cfg.num_nodes})")
    if train_cfg.num_nodes > 1 and train_cfg.launcher == "none":
        raise HasatError("train.num_nodes > 1 needs a launcher: set train.launcher=torchrun (or accelerate)")
    if train_cfg.distributed == "ddp":
        return
    if train_cfg.distributed == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise HasatError("train.distributed=deepspeed needs DeepSpeed: pip install deepspeed "
                             "(it builds its CUDA ops on the GPU machine)")
        _read_json(train_cfg.deepspeed_config, "train.deepspeed_config")
    else:
        _read_json(train_cfg.fsdp_config, "train.fsdp_config")
    if not cuda:
        raise HasatError(f"train.distributed={train_cfg.distributed} needs CUDA GPUs; on CPU the Trainer would "
                         f"silently run plain DDP instead (use train.distributed=ddp on this machine)")
    if train_cfg.quantization != "none":
        raise HasatError(f"train.quantization={train_cfg.quantization} with train.distributed="
                         f"{train_cfg.distributed} is not supported here: use QLoRA with ddp (one model per GPU)")


def _read_json(path: str, key: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise HasatError(f"{key}: {path} not found")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HasatError(f"{key}: {path} is not valid JSON ({err.msg}, line {err.lineno})") from None


def trainer_arguments(train_cfg: TrainConfig) -> dict[str, Any]:
    """The TrainingArguments that select the strategy (empty for DDP: the launcher's processes do it)."""
    if train_cfg.distributed == "fsdp":
        fsdp_config = _read_json(train_cfg.fsdp_config, "train.fsdp_config")
        if fsdp_config.get("state_dict_type", "FULL_STATE_DICT") != "FULL_STATE_DICT":
            raise HasatError(f"train.fsdp_config: {train_cfg.fsdp_config} sets state_dict_type="
                             f"{fsdp_config['state_dict_type']}; export merges full weights: use FULL_STATE_DICT")
        if train_cfg.gradient_checkpointing:  # FSDP's own activation checkpointing avoids a second all-gather
            fsdp_config = {**fsdp_config, "activation_checkpointing": True}
        return {"fsdp": True, "fsdp_config": fsdp_config}
    if train_cfg.distributed == "deepspeed":
        config = _read_json(train_cfg.deepspeed_config, "train.deepspeed_config")
        zero = config.get("zero_optimization", {})
        if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
            raise HasatError(f"train.deepspeed_config: {train_cfg.deepspeed_config} is ZeRO-3 without "
                             f"stage3_gather_16bit_weights_on_model_save: the saved model would be empty")
        return {"deepspeed": config}
    return {}


def strategy_that_ran(trainer, world_size: int) -> str:
    """What the Trainer really did, read back from its accelerator (not what was asked for)."""
    if getattr(trainer, "is_deepspeed_enabled", False):
        stage = trainer.accelerator.state.deepspeed_plugin.zero_stage
        return f"deepspeed-zero{stage}"
    if getattr(trainer, "is_fsdp_enabled", False):
        version = getattr(trainer.accelerator.state.fsdp_plugin, "fsdp_version", 1)
        return f"fsdp{version}"
    return "ddp" if world_size > 1 else "single-process"


def full_state_dict(trainer) -> Optional[dict]:
    """Gather the unsharded weights (every rank must call this); None when nothing is sharded."""
    if getattr(trainer, "is_deepspeed_enabled", False):  # ZeRO-3 gathers through the engine
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if getattr(trainer, "is_fsdp_enabled", False):
        return trainer.accelerator.get_state_dict(trainer.model)
    return None
