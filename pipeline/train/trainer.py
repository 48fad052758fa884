"""Fine-tuning with the HF Trainer (+ peft LoRA/DoRA, QLoRA on CUDA, or full): dynamic padding
with length-grouped batches or sample packing, logits and loss at the answer positions only
(`answer_only`), validation loss during each epoch, early stopping, the best checkpoint kept,
resume from the last checkpoint, loss recorded per step."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch

from pipeline.config import TrainConfig
from pipeline.errors import HasatError
from pipeline.progress import Progress
from pipeline.train.distributed import full_state_dict, strategy_that_ran, trainer_arguments
from pipeline.train.packing import EvalAwareCollator, PackedCollator, pack, to_features
from pipeline.train.prompts import IGNORE_INDEX


def steps_per_epoch(n_rows: int, batch_size: int, grad_accum: int, world_size: int = 1) -> int:
    return max(1, math.ceil(n_rows / (batch_size * grad_accum * world_size)))


def lora_config(lora_cfg, task_type: str = "CAUSAL_LM", token_ids: Optional[list[int]] = None):
    """peft's LoraConfig; `token_ids`: embedding rows trained as well (peft's trainable tokens; with tied
    embeddings the output layer's rows follow), for special tokens a pretrained base never learned."""
    from peft import LoraConfig

    targets = list(lora_cfg.target_modules)
    return LoraConfig(
        # SEQ_CLS makes peft train the new classification head in full (modules_to_save)
        r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout, task_type=task_type,
        target_modules="all-linear" if targets == ["all-linear"] else targets, use_dora=lora_cfg.use_dora,
        **({"trainable_token_indices": list(token_ids)} if token_ids else {}),
    )


def train_token_ids(tokenizer, tokens) -> list[int]:
    """The ids of `model.train_tokens`; a string that is not one token of this tokenizer stops here."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise HasatError(f"model.train_tokens: {missing[0]!r} is not a token of this model's tokenizer")
    return [vocab[t] for t in tokens]


def wrap_lora(model, lora_cfg, quantized: bool = False, task_type: str = "CAUSAL_LM",
              token_ids: Optional[list[int]] = None):
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model)
    return get_peft_model(model, lora_config(lora_cfg, task_type, token_ids))


def check_quantization(train_cfg: TrainConfig) -> None:
    """QLoRA needs CUDA and bitsandbytes: say so before any heavy work."""
    if train_cfg.quantization == "none":
        return
    if train_cfg.method != "lora":
        raise HasatError(f"train.quantization={train_cfg.quantization} works with train.method=lora (QLoRA) only")
    if not torch.cuda.is_available():
        raise HasatError(f"train.quantization={train_cfg.quantization} (QLoRA) needs a CUDA GPU; none is available "
                         "(use train.quantization=none on this machine)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise HasatError("train.quantization needs the bitsandbytes package: pip install bitsandbytes") from None


def quantization_config(train_cfg: TrainConfig):
    from transformers import BitsAndBytesConfig

    if train_cfg.quantization == "4bit":
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute)
    return BitsAndBytesConfig(load_in_8bit=True)


@dataclass
class LossLog:
    """Train and validation loss (and learning rate) by optimiser step."""
    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)

    @classmethod
    def from_history(cls, history: list[dict]) -> "LossLog":
        log = cls()
        for entry in history:
            if "loss" in entry:
                log.train.append({"step": entry["step"], "epoch": round(entry.get("epoch", 0), 4),
                                  "loss": entry["loss"], "learning_rate": entry.get("learning_rate")})
            if "eval_loss" in entry:
                log.val.append({"step": entry["step"], "epoch": round(entry.get("epoch", 0), 4),
                                "loss": entry["eval_loss"]})
        return log


REWARD_GROUPS = ("rewards", "eval_rewards", "logps", "eval_logps")


def reward_summary(history: list[dict]) -> dict:
    """The last logged training and validation rewards (preference trainers), for the stage's stats."""
    found: dict = {}
    for entry in history:
        found.update({("val_" + k[5:] if k.startswith("eval_") else "train_" + k): float(v)
                      for k, v in entry.items() if k.split("/")[0] in REWARD_GROUPS[:2]})
    return found


def make_metrics_callback(on_metrics: Callable[[dict, int], None]):
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            metrics = {"train_loss": logs.get("loss"), "learning_rate": logs.get("learning_rate"),
                       "val_loss": logs.get("eval_loss")}
            # preference trainers (TRL) log rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies
            metrics.update({("val_" + k[5:] if k.startswith("eval_") else k): v for k, v in logs.items()
                            if k.split("/")[0] in REWARD_GROUPS})
            metrics = {k: float(v) for k, v in metrics.items() if v is not None}
            if metrics:
                on_metrics(metrics, state.global_step)

    return MetricsCallback()


def make_progress_callback(desc: str = "finetune"):
    """Training progress (step/total, rate, ETA, last loss and learning rate; validation losses as
    they come) from the chief process, in place of HF's PrinterCallback dicts and its tqdm bar."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self):
            self.progress: Optional[Progress] = None
            self.best: Optional[float] = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = Progress(state.max_steps, desc, unit="step", initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.advance_to(state.global_step, epoch=round(state.epoch or 0.0, 2))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is None or not logs:
                return
            if "loss" in logs:
                self.progress.set(loss=float(logs["loss"]), lr=logs.get("learning_rate"))
            if "eval_loss" in logs:
                loss = float(logs["eval_loss"])
                self.best = loss if self.best is None else min(self.best, loss)
                self.progress.write(f"step {state.global_step}/{state.max_steps}: val loss {loss:.4f} "
                                    f"(best {self.best:.4f})")

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.close()
                self.progress = None

    return ProgressCallback()


def training_arguments(train_cfg, n_train_rows: int, checkpoint_dir: Path, world_size: int = 1,
                       args_class=None, **extra):
    """TrainingArguments (or a subclass such as TRL's DPOConfig, with its own `extra` settings)."""
    from transformers import TrainingArguments

    per_epoch = steps_per_epoch(n_train_rows, train_cfg.batch_size, train_cfg.gradient_accumulation_steps,
                                world_size)
    eval_every = max(1, math.ceil(per_epoch / train_cfg.evals_per_epoch))
    if train_cfg.max_steps > 0:
        eval_every = min(eval_every, train_cfg.max_steps)
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported() if train_cfg.precision == "auto" else train_cfg.precision == "bf16"
    fp16 = (cuda and not bf16) if train_cfg.precision == "auto" else train_cfg.precision == "fp16"
    settings = dict(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=train_cfg.batch_size,
        per_device_eval_batch_size=train_cfg.batch_size,
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
        learning_rate=train_cfg.learning_rate,
        num_train_epochs=train_cfg.num_epochs,
        max_steps=train_cfg.max_steps,
        weight_decay=train_cfg.weight_decay,
        warmup_steps=train_cfg.warmup_ratio,
        lr_scheduler_type=train_cfg.lr_scheduler,
        max_grad_norm=train_cfg.max_grad_norm,
        logging_steps=train_cfg.logging_steps,
        eval_strategy="steps",
        eval_steps=eval_every,
        save_strategy="steps",
        save_steps=eval_every,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        # validation needs the loss only: without this the Trainer keeps every batch's logits
        # (rows x tokens x vocabulary floats: about 1.4 GB for the demo's validation split)
        prediction_loss_only=True,
        train_sampling_strategy="random" if train_cfg.packing else "group_by_length",
        remove_unused_columns=False,
        gradient_checkpointing=train_cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if train_cfg.gradient_checkpointing else None,
        seed=train_cfg.seed,
        data_seed=train_cfg.seed,
        bf16=bf16,
        fp16=fp16,
        use_cpu=not cuda,
        ddp_backend="gloo" if world_size > 1 and not cuda else None,
        report_to="none",  # MLflow logging is ours (one run per model, opened by the stage)
        disable_tqdm=True,  # progress is ours (make_progress_callback); HF's PrinterCallback is removed
        dataloader_num_workers=0,
        **trainer_arguments(train_cfg),  # FSDP2 / DeepSpeed settings; nothing for DDP
    )
    return (args_class or TrainingArguments)(**{**settings, **extra})


def last_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint (trainer_state.json written last), or None."""
    done = [p for p in checkpoint_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


@dataclass
class TaskData:
    """What the Trainer needs that differs between instruction tuning and classification."""
    train_features: list[dict]
    eval_features: list[dict]
    collator: Callable[[list[dict]], dict]
    task_type: str  # peft task type: CAUSAL_LM | SEQ_CLS
    compute_loss_func: Optional[Callable] = None
    stats: dict = field(default_factory=dict)
    # a trainer of its own (TRL's preference trainers): (model, arguments(args_class, **extra), train
    # dataset, eval dataset, callbacks) -> Trainer; it applies LoRA itself
    trainer_factory: Optional[Callable] = None
    train_token_ids: list[int] = field(default_factory=list)  # embedding rows LoRA trains too (model.train_tokens)


def sft_data(tokenizer, train_rows: list[dict], val_rows: list[dict], train_cfg: TrainConfig) -> TaskData:
    from transformers import DataCollatorForSeq2Seq

    padding = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    packed = pack(train_rows, train_cfg.pack_length) if train_cfg.packing else None
    collator = EvalAwareCollator(PackedCollator(tokenizer.pad_token_id), padding) if packed else padding
    stats = {"train_rows": len(train_rows), "packed_rows": len(packed) if packed else 0,
             "trained_label_tokens_per_epoch": sum(sum(t != IGNORE_INDEX for t in r["labels"]) for r in train_rows)}
    return TaskData(packed or to_features(train_rows), to_features(val_rows), collator, "CAUSAL_LM", stats=stats)


class Trained(NamedTuple):
    model: object
    loss_log: LossLog
    summary: dict
    state_dict: Optional[dict]  # the full weights when training was sharded (save with these), else None


def train(model, data: TaskData, train_cfg, checkpoint_dir: Path,
          on_metrics: Optional[Callable[[dict, int], None]] = None, resume: bool = False) -> Trained:
    """Train; returns the model with the best weights loaded, its LossLog, a summary and (FSDP or
    DeepSpeed) the gathered, unsharded weights to save."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

    set_seed(train_cfg.seed)
    model.config.use_cache = False  # a KV cache in training also hides packed sequence boundaries
    if train_cfg.method == "lora" and data.trainer_factory is None:
        model = wrap_lora(model, train_cfg.lora, quantized=train_cfg.quantization != "none", task_type=data.task_type,
                          token_ids=data.train_token_ids)
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else \
        int(os.environ.get("WORLD_SIZE", "1"))
    callbacks = [EarlyStoppingCallback(early_stopping_patience=train_cfg.early_stopping_patience),
                 make_progress_callback()]
    if on_metrics:
        callbacks.append(make_metrics_callback(on_metrics))
    trainer_class = Trainer
    if data.task_type == "CAUSAL_LM" and train_cfg.answer_only_logits and data.trainer_factory is None:
        from pipeline.train.answer_only import AnswerOnlyTrainer

        trainer_class = AnswerOnlyTrainer
    if data.trainer_factory is not None:
        def arguments(args_class, **extra):
            return training_arguments(train_cfg, len(data.train_features), checkpoint_dir, world_size, args_class,
                                      **extra)

        trainer = data.trainer_factory(model, arguments, Dataset.from_list(data.train_features),
                                       Dataset.from_list(data.eval_features), callbacks)
        trainer_class = type(trainer)
    else:
        trainer = trainer_class(
            model=model,
            args=training_arguments(train_cfg, len(data.train_features), checkpoint_dir, world_size),
            train_dataset=Dataset.from_list(data.train_features),
            eval_dataset=Dataset.from_list(data.eval_features),
            data_collator=data.collator,
            compute_loss_func=data.compute_loss_func,
            callbacks=callbacks,
        )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; ours prints a line with position and ETA
    checkpoint = last_checkpoint(checkpoint_dir) if resume else None
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    loss_log = LossLog.from_history(trainer.state.log_history)
    summary = {
        "train_loss": output.training_loss,
        "best_val_loss": min((row["loss"] for row in loss_log.val), default=float("nan")),
        "final_val_loss": loss_log.val[-1]["loss"] if loss_log.val else float("nan"),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "best_checkpoint_step": _step_of(trainer.state.best_model_checkpoint),
        "resumed_from_step": _step_of(str(checkpoint)) if checkpoint else 0,
        "val_rows": len(data.eval_features),
        **data.stats,
        "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 1),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in trainer.model.parameters()),
        "world_size": world_size,
        "strategy": strategy_that_ran(trainer, world_size),
        "answer_only_logits": data.trainer_factory is None and trainer_class is not Trainer,
        "trained_token_rows": len(data.train_token_ids) if train_cfg.method == "lora" else 0,
        **reward_summary(trainer.state.log_history),
    }
    # every rank takes part in gathering sharded weights
    return Trained(trainer.model, loss_log, summary, full_state_dict(trainer))


def _step_of(checkpoint: Optional[str]) -> Optional[int]:
    if not checkpoint:
        return None
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None
