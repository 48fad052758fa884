"""Preference tuning, the training side: prompt/chosen/rejected pairs (KTO: prompt/completion/label)
rendered with the configured prompt format, lengths counted and over-long rows dropped; training with
TRL's DPOTrainer, KTOTrainer or (from trl.experimental) ORPOTrainer, with LoRA from the base or by
continuing an SFT adapter (`task.sft_adapter`, the SFT -> DPO recipe). The reference model is what TRL
makes of it: with LoRA the policy with its adapter switched off (from the base) or a frozen copy of
the SFT adapter (TRL's "ref" adapter); ORPO needs none.

Tokenized rows keep the fields of an SFT row (input_ids and labels of prompt + chosen answer,
n_prompt_tokens, reference = the chosen answer) so the generation metrics and perplexity of
`evaluate` work on them, plus the answers' token ids for the held-out preference accuracy."""

from __future__ import annotations

import importlib.util
import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline.config import HasatConfig
from pipeline.data.records import is_preference, preference_prompt_text
from pipeline.errors import HasatError
from pipeline.tasks.base import TaskTraining, Tokenized
from pipeline.train.modeling import load_saved, merge_adapter
from pipeline.train.lengths import check_drop_share, length_report, length_stats, length_summary, resolve_max_seq_len
from pipeline.train.prompts import encode_full, fit_length, reject_row
from pipeline.train.trainer import TaskData, lora_config, train_token_ids

PAIR_ANSWERS = ("chosen", "rejected")


def answers_of(record: dict) -> tuple[str, ...]:
    """The answer fields of a pair (chosen, rejected) or of a KTO row (completion)."""
    return PAIR_ANSWERS if "chosen" in record else ("completion",)


def check_rows(rows: list[dict], method: str) -> None:
    """One line for data that does not fit the method, before any tokenizing."""
    other = next((r for r in rows if not is_preference(r)), None)
    if other is not None:
        raise HasatError(f"{other.get('source', '?')}: task.kind=preference needs prompt/chosen/rejected rows (or KTO's "
                         "prompt/completion/label); set data.schema=preference or kto, or map the columns")
    unpaired = next((r for r in rows if "chosen" not in r), None)
    if unpaired is not None and method != "kto":
        raise HasatError(f"{unpaired['source']}: a prompt/completion/label row (KTO data) needs task.method=kto; "
                         f"{method} learns from chosen/rejected pairs")


def encode_answer(record: dict, answer: str, tokenizer, cfg: HasatConfig):
    """prompt + answer at full length, as an SFT record would be encoded (same template, stop token)."""
    chat = {"source": record["source"], "messages": [*record["prompt"], {"role": "assistant", "content": answer}]}
    return encode_full(chat, tokenizer, cfg.task.prompt_format, cfg.data.system_prompt, False)


def tokenize_preference(cfg: HasatConfig, rows: list[dict], tokenizer,
                        context_length: Optional[int] = None) -> Tokenized:
    """Every answer of a row encoded at full length first; a row is as long as its longest answer.
    Then the length limit (`auto` resolved, max_drop_share checked) as for instruction tuning."""
    check_rows(rows, cfg.task.method)
    k = cfg.tokenize
    counts: Counter = Counter(rows_in=len(rows))
    rejects, encoded = [], []
    for record in rows:
        try:
            encoded.append((record, {name: encode_answer(record, record[name], tokenizer, cfg)
                                     for name in answers_of(record)}))
        except ValueError as err:
            counts["dropped_unformattable"] += 1
            rejects.append(reject_row(record, str(err)))
    full_lengths = [max(len(e.input_ids) for e in answers.values()) for _, answers in encoded]
    max_seq_len = resolve_max_seq_len(k.max_seq_len, full_lengths, k.max_drop_share, context_length)
    if k.truncation == "drop":
        check_drop_share(sum(n > max_seq_len for n in full_lengths), full_lengths, max_seq_len, k.max_drop_share,
                         context_length)
    records, lengths = [], []
    for record, answers in encoded:
        try:
            fitted = {name: fit_length(enc, record["source"], max_seq_len, k.truncation) for name, enc in answers.items()}
        except ValueError as err:
            counts["dropped_too_long" if str(err).startswith("too long") else "dropped_unformattable"] += 1
            rejects.append(reject_row(record, str(err)))
            continue
        first = fitted[answers_of(record)[0]]
        out = {**record, "prompt_text": preference_prompt_text(record), "reference": record[answers_of(record)[0]],
               "input_ids": first.input_ids, "labels": first.labels, "n_prompt_tokens": first.n_prompt_tokens,
               "truncated": any(e.truncated for e in fitted.values())}
        for name, enc in fitted.items():
            out[f"{name}_ids"] = enc.input_ids[enc.n_prompt_tokens:]
            lengths.append(len(enc.input_ids))
        counts["truncated"] += out["truncated"]
        counts["pairs" if "chosen" in record else ("desirable" if record["label"] else "undesirable")] += 1
        records.append(out)
    counts["rows_out"] = len(records)
    report = length_report(full_lengths, k.max_seq_len, max_seq_len, counts["dropped_too_long"], counts["truncated"],
                           k.max_drop_share, context_length)
    stats = {**dict(counts), **length_stats(lengths), **report, "truncation": k.truncation, "method": cfg.task.method}
    summary = (f"tokenize: {stats['rows_in']} preference rows -> {stats['rows_out']} "
               f"({stats.get('dropped_too_long', 0)} dropped as too long, {stats.get('truncated', 0)} truncated); "
               f"{length_summary(report)}")
    return Tokenized(records, rejects, stats, summary)


def trl_rows(rows: list[dict], cfg: HasatConfig, tokenizer) -> list[dict]:
    """The split's rows as TRL reads them. The model's chat template: conversational rows (TRL applies
    the template, as tokenize did); another prompt format: the rendered prompt and answers as text."""
    chat = cfg.task.prompt_format == "chat_template"
    system = cfg.data.system_prompt
    out = []
    for row in rows:
        if chat:
            prompt = row["prompt"] if not system or row["prompt"][0]["role"] == "system" else \
                [{"role": "system", "content": system}, *row["prompt"]]
            answers = {name: [{"role": "assistant", "content": row[name]}] for name in answers_of(row)}
        else:
            prompt = tokenizer.decode(row["input_ids"][: row["n_prompt_tokens"]])
            answers = {name: tokenizer.decode(row[f"{name}_ids"]) for name in answers_of(row)}
        out.append({"prompt": prompt, **answers, **({"label": bool(row["label"])} if "label" in row else {})})
    return out


def unpaired(rows: list[dict]) -> list[dict]:
    """Pairs as KTO rows: the chosen answer desirable, the rejected one not (TRL's unpair_preference_dataset)."""
    out = []
    for row in rows:
        if "chosen" not in row:
            out.append(row)
            continue
        rest = {k: v for k, v in row.items() if k not in PAIR_ANSWERS}
        out += [{**rest, "completion": row["chosen"], "label": True},
                {**rest, "completion": row["rejected"], "label": False}]
    return out


def trainer_factory(cfg: HasatConfig, tokenizer) -> Callable:
    """Builds the TRL trainer for `task.method` with hasat's TrainingArguments plus the method's own."""
    t, lora = cfg.task, cfg.train.method == "lora"
    common = {"max_length": cfg.tokenize.max_seq_len, "beta": t.beta, "train_sampling_strategy": "random"}

    def make(model, arguments, train_dataset, eval_dataset, callbacks):
        from peft import PeftModel

        # with an SFT adapter the model is a PeftModel already: TRL keeps a frozen copy as the reference
        token_ids = train_token_ids(tokenizer, cfg.model.train_tokens)
        peft = {"peft_config": lora_config(cfg.train.lora, token_ids=token_ids)} \
            if lora and not isinstance(model, PeftModel) else {}
        data = dict(model=model, train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=tokenizer,
                    callbacks=callbacks, **peft)
        if t.method == "dpo":
            from trl import DPOConfig, DPOTrainer

            losses = {"loss_type": [t.loss_type, "sft"], "loss_weights": [1.0, t.sft_weight]} if t.sft_weight \
                else {"loss_type": [t.loss_type]}
            return DPOTrainer(args=arguments(DPOConfig, **common, **losses), **data)
        if t.method == "kto":
            from trl import KTOConfig, KTOTrainer

            # KTO's KL estimate pairs each row with its batch neighbour's completion: TRL needs a fixed
            # order (the rows are shuffled once, seeded, in `training_data`)
            return KTOTrainer(args=arguments(KTOConfig, **{**common, "train_sampling_strategy": "sequential"}), **data)
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(args=arguments(ORPOConfig, **common), **data)

    return make


def require_trl() -> None:
    if importlib.util.find_spec("trl") is None:
        raise HasatError("task.kind=preference needs the trl package (Python >= 3.11): "
                         "pip install -c constraints.txt trl")


class PreferenceTraining(TaskTraining):
    kind = "preference"

    def tokenize(self, cfg: HasatConfig, rows: list[dict], tokenizer: Any,
                 context_length: Optional[int] = None) -> Tokenized:
        return tokenize_preference(cfg, rows, tokenizer, context_length)

    def training_model(self, cfg: HasatConfig, base_dir: Path, train_rows: list[dict]):
        require_trl()
        if cfg.train.quantization != "none":
            raise HasatError("task.kind=preference trains without quantization here (set train.quantization=none)")
        tokenizer, model = load_saved(base_dir)
        if cfg.task.sft_adapter:
            model = start_from_sft(model, Path(cfg.task.sft_adapter), trainable=cfg.train.method == "lora")
        return tokenizer, model, None

    def training_data(self, cfg: HasatConfig, tokenizer: Any, train_rows: list[dict], val_rows: list[dict],
                      labels: Optional[list[str]]) -> TaskData:
        kto = cfg.task.method == "kto"
        train, val = (unpaired(train_rows), unpaired(val_rows)) if kto else (train_rows, val_rows)
        if kto:  # a pair's two rows apart, so that a neighbour's completion answers another prompt
            random.Random(cfg.train.seed).shuffle(train)
        stats = {"train_rows": len(train), "method": cfg.task.method, "beta": cfg.task.beta,
                 "reference": reference_name(cfg)}
        return TaskData(trl_rows(train, cfg, tokenizer), trl_rows(val, cfg, tokenizer), collator=None,
                        task_type="CAUSAL_LM", stats=stats, trainer_factory=trainer_factory(cfg, tokenizer))

    def base_for_adapter(self, base_dir: Path, info: dict):
        # a continued SFT adapter is saved whole (SFT + preference): it merges into the plain base
        return load_saved(base_dir)

    def full_model(self, folder: Path):
        return load_saved(folder)


def start_from_sft(model, adapter: Path, trainable: bool):
    """The base with an SFT LoRA adapter: trainable (LoRA continues it), or merged (full fine-tuning)."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise HasatError(f"task.sft_adapter: {adapter} is not a LoRA adapter folder (no adapter_config.json); "
                         "copy models/finetuned/adapter of an SFT run there first")
    if not trainable:
        return merge_adapter(model, adapter)
    return PeftModel.from_pretrained(model, adapter, is_trainable=True)


def reference_name(cfg: HasatConfig) -> str:
    if cfg.task.method == "orpo":
        return "none (ORPO)"
    return f"base + SFT adapter {cfg.task.sft_adapter}" if cfg.task.sft_adapter else "base"
