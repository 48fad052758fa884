"""Instruction tuning (SFT), the training side: records -> prompt/answer token ids with the prompt
masked by -100 (pipeline.train.prompts), the causal LM (optionally quantised for QLoRA), padded or
packed batches (pipeline.train.packing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pipeline.config import HasatConfig
from pipeline.data.records import require_rows_of
from pipeline.tasks.base import TaskTraining, Tokenized
from pipeline.train.lengths import length_report, length_stats, length_summary
from pipeline.train.modeling import load_saved
from pipeline.train.prompts import tokenize_records
from pipeline.train.trainer import TaskData, quantization_config, sft_data, train_token_ids


class SftTraining(TaskTraining):
    kind = "sft"

    def tokenize(self, cfg: HasatConfig, rows: list[dict], tokenizer: Any,
                 context_length: Optional[int] = None) -> Tokenized:
        require_rows_of(rows, "sft")
        t, k = cfg.task, cfg.tokenize
        result = tokenize_records(rows, tokenizer, t.prompt_format, cfg.data.system_prompt, t.train_on_inputs,
                                  k.max_seq_len, k.truncation, k.max_drop_share, context_length)
        lengths = length_report(result.full_lengths, k.max_seq_len, result.max_seq_len,
                                result.counts["dropped_too_long"], result.counts["truncated"], k.max_drop_share,
                                context_length)
        stats = {**dict(result.counts), **length_stats(result.lengths),
                 "fertility_tokens_per_word": round(result.answer_tokens / max(1, result.answer_words), 3),
                 **lengths, "truncation": k.truncation}
        summary = (f"tokenize: {stats['rows_in']} rows -> {stats['rows_out']} ({stats.get('dropped_too_long', 0)} "
                   f"dropped as too long, {stats.get('truncated', 0)} truncated); {length_summary(lengths)}; "
                   f"{stats['fertility_tokens_per_word']:.2f} tokens/word")
        return Tokenized(result.records, result.rejects, stats, summary)

    def training_model(self, cfg: HasatConfig, base_dir: Path, train_rows: list[dict]):
        if cfg.train.quantization == "none":
            return (*load_saved(base_dir), None)
        return (*load_saved(base_dir, quantization_config=quantization_config(cfg.train)), None)

    def training_data(self, cfg: HasatConfig, tokenizer: Any, train_rows: list[dict], val_rows: list[dict],
                      labels: Optional[list[str]]) -> TaskData:
        data = sft_data(tokenizer, train_rows, val_rows, cfg.train)
        data.train_token_ids = train_token_ids(tokenizer, cfg.model.train_tokens)
        return data

    def base_for_adapter(self, base_dir: Path, info: dict):
        return load_saved(base_dir)

    def full_model(self, folder: Path):
        return load_saved(folder)
