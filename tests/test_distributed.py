"""Scaling out, checked on CPU: the launcher command lines for one node and several (parsed by
torchrun's and accelerate's own parsers), the FSDP2 / DeepSpeed settings the Trainer gets, the
one-line refusals of what cannot run on this machine, and a real two-node job on localhost."""

import json

import pytest
import yaml

from pipeline.config import TrainConfig
from pipeline.errors import HasatError
from pipeline.train import distributed
from tests.conftest import REPO


def cfg(**overrides) -> TrainConfig:
    train_cfg = TrainConfig()
    for key, value in overrides.items():
        setattr(train_cfg, key, value)
    return train_cfg


def torchrun_args(cmd):
    from torch.distributed.run import get_args_parser

    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    return get_args_parser().parse_args(cmd[3:])


def accelerate_args(cmd):
    from accelerate.commands.launch import launch_command_parser

    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(cmd[3:])


def test_torchrun_one_node():
    cmd = distributed.launch_command(cfg(launcher="torchrun", num_processes=4), ["train.learning_rate=2e-4"], cuda=True)
    args = torchrun_args(cmd)
    assert args.standalone and args.nproc_per_node == "4"
    assert args.training_script == "pipeline.stages.finetune" and args.module
    assert args.training_script_args == ["train.learning_rate=2e-4"]


def test_torchrun_two_nodes():
    train_cfg = cfg(launcher="torchrun", num_processes=8, num_nodes=2, node_rank=1, master_addr="node01",
                    master_port=29555)
    args = torchrun_args(distributed.launch_command(train_cfg, [], cuda=True))
    assert not args.standalone
    assert (args.nnodes, args.node_rank, args.master_addr, args.master_port, args.nproc_per_node) == \
        ("2", 1, "node01", 29555, "8")


def test_accelerate_two_nodes_with_fsdp2():
    train_cfg = cfg(launcher="accelerate", num_processes=4, num_nodes=2, node_rank=1, master_addr="10.0.0.5",
                    distributed="fsdp")
    args = accelerate_args(distributed.launch_command(train_cfg, ["x=1"], cuda=True))
    assert args.num_processes == 8  # accelerate counts the processes of every machine
    assert (args.num_machines, args.machine_rank, args.main_process_ip, args.main_process_port) == \
        (2, 1, "10.0.0.5", 29500)
    assert args.config_file == "launch/accelerate_fsdp2.yaml" and args.module
    assert args.training_script_args == ["x=1"]


def test_accelerate_on_cpu_and_on_gpus():
    assert accelerate_args(distributed.launch_command(cfg(launcher="accelerate", num_processes=2), [], cuda=False)).cpu
    gpus = accelerate_args(distributed.launch_command(cfg(launcher="accelerate", num_processes=2), [], cuda=True))
    assert gpus.multi_gpu and not gpus.cpu


def test_the_accelerate_fsdp2_config_agrees_with_the_trainers():
    accel = yaml.safe_load((REPO / "launch/accelerate_fsdp2.yaml").read_text())
    trainer = json.loads((REPO / "launch/fsdp2.json").read_text())
    assert accel["distributed_type"] == "FSDP" and accel["fsdp_config"]["fsdp_version"] == trainer["version"] == 2
    pairs = {"reshard_after_forward": "fsdp_reshard_after_forward", "auto_wrap_policy": "fsdp_auto_wrap_policy",
             "state_dict_type": "fsdp_state_dict_type", "cpu_offload": "fsdp_offload_params",
             "cpu_ram_efficient_loading": "fsdp_cpu_ram_efficient_loading",
             "activation_checkpointing": "fsdp_activation_checkpointing"}
    assert {k: trainer[k] for k in pairs} == {k: accel["fsdp_config"][v] for k, v in pairs.items()}


def test_trainer_arguments_select_fsdp2_and_deepspeed(monkeypatch):
    monkeypatch.chdir(REPO)
    fsdp = distributed.trainer_arguments(cfg(distributed="fsdp", gradient_checkpointing=True))
    assert fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["version"] == 2 and fsdp["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_config"]["activation_checkpointing"] is True
    zero3 = distributed.trainer_arguments(cfg(distributed="deepspeed"))["deepspeed"]
    assert zero3["zero_optimization"]["stage"] == 3
    zero2 = distributed.trainer_arguments(cfg(distributed="deepspeed", deepspeed_config="launch/ds_zero2.json"))
    assert zero2["deepspeed"]["zero_optimization"]["stage"] == 2
    assert distributed.trainer_arguments(cfg()) == {}


def test_fsdp2_settings_reach_accelerates_plugin(monkeypatch):
    """The Trainer turns them into accelerate's FSDP2 plugin arguments (checked without a GPU)."""
    from transformers import TrainingArguments

    monkeypatch.chdir(REPO)
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True,
                             **distributed.trainer_arguments(cfg(distributed="fsdp")))
    plugin = args._process_fsdp_args() if hasattr(args, "_process_fsdp_args") else args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["state_dict_type"] == "FULL_STATE_DICT"


def test_configs_that_would_save_nothing_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "z3.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    (tmp_path / "sharded.json").write_text(json.dumps({"version": 2, "state_dict_type": "SHARDED_STATE_DICT"}))
    (tmp_path / "broken.json").write_text('{"version": 2,')
    with pytest.raises(HasatError, match="without stage3_gather_16bit_weights_on_model_save"):
        distributed.trainer_arguments(cfg(distributed="deepspeed", deepspeed_config="z3.json"))
    with pytest.raises(HasatError, match="use FULL_STATE_DICT"):
        distributed.trainer_arguments(cfg(distributed="fsdp", fsdp_config="sharded.json"))
    with pytest.raises(HasatError, match=r"broken.json is not valid JSON"):
        distributed.trainer_arguments(cfg(distributed="fsdp", fsdp_config="broken.json"))
    with pytest.raises(HasatError, match="missing.json not found"):
        distributed.check_strategy(cfg(distributed="fsdp", fsdp_config="missing.json"), cuda=True)


def test_refusals_on_cpu_and_bad_node_settings(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(HasatError, match="train.distributed=fsdp needs CUDA GPUs; on CPU the Trainer would silently"):
        distributed.check_strategy(cfg(distributed="fsdp"), cuda=False)
    with pytest.raises(HasatError, match="node_rank=2 must be in 0..train.num_nodes-1"):
        distributed.check_strategy(cfg(launcher="torchrun", num_nodes=2, node_rank=2), cuda=True)
    with pytest.raises(HasatError, match="needs a launcher"):
        distributed.check_strategy(cfg(num_nodes=2), cuda=True)
    with pytest.raises(HasatError, match="is not supported here: use QLoRA with ddp"):
        distributed.check_strategy(cfg(distributed="fsdp", quantization="4bit"), cuda=True)
    if distributed.importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(HasatError, match="needs DeepSpeed: pip install deepspeed"):
            distributed.check_strategy(cfg(distributed="deepspeed"), cuda=True)


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_the_stage_refuses_sharding_on_cpu_in_one_line(strategy, tmp_path):
    from tests.conftest import copy_config, run_stage_cli

    copy_config(tmp_path)
    result = run_stage_cli("pipeline.stages.finetune", "model=tiny_random", f"train.distributed={strategy}",
                           cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"hasat finetune: error: train.distributed={strategy}")


def test_the_slurm_script_starts_a_valid_two_node_command(tmp_path):
    """launch/slurm/finetune.sbatch under stand-ins for srun/scontrol/python: each node's command line
    carries keys the config accepts and torchrun's parser reads as two nodes."""
    import os
    import subprocess

    from pipeline.config_loader import load_config

    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-a01\\ngpu-a02\\n'\n")
    # srun runs the task once per node, as SLURM would (here one after the other)
    (stubs / "srun").write_text('#!/bin/sh\nshift\nfor n in 0 1; do SLURM_NODEID=$n "$@" || exit 1; done\n')
    (stubs / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/node$SLURM_NODEID.args\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/activate").write_text(f'export PATH="{stubs}:$PATH"\n')
    env = {**os.environ, "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_JOB_NODELIST": "gpu-a[01-02]",
           "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8"}
    result = subprocess.run(["bash", str(REPO / "launch/slurm/finetune.sbatch"), "train.learning_rate=2e-4"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for rank in (0, 1):
        args = (tmp_path / f"node{rank}.args").read_text().split()
        assert args[:2] == ["-m", "pipeline.stages.finetune"]
        train_cfg = load_config(args[2:], params_file=REPO / "params.yaml").train
        assert (train_cfg.num_nodes, train_cfg.node_rank, train_cfg.master_addr, train_cfg.num_processes) == \
            (2, rank, "gpu-a01", 8)
        assert train_cfg.distributed == "fsdp" and train_cfg.learning_rate == 2e-4
        parsed = torchrun_args(distributed.launch_command(train_cfg, [], cuda=True))
        assert (parsed.nnodes, parsed.node_rank, parsed.nproc_per_node) == ("2", rank, "8")
