"""Stage tokenize: prompt format (chat template, Alpaca, ...), -100 on prompt tokens, EOS kept as
a label, truncation counted and reported, token length statistics and tokenizer fertility. For
task.kind=classification: the texts' token ids and label ids (label order fixed here).

    python -m pipeline.stages.tokenize [task.prompt_format=alpaca] [tokenize.max_seq_len=512]
"""

from __future__ import annotations

import logging

from pipeline.tasks.classification import check_labels, encode_texts, label_list
from pipeline.errors import HasatError
from pipeline.io import read_jsonl, write_json, write_jsonl
from pipeline.train.modeling import require_model_folder
from pipeline.train.prompts import length_stats, tokenize_records
from pipeline.stages._runner import run_stage

BASE = "models/base"
IN = "data/interim/clean.jsonl"
OUT = "data/processed/tokenized.jsonl"
REJECTS = "data/rejects/tokenize.jsonl"
STATS = "metrics/tokenize.json"
log = logging.getLogger("hasat")


def tokenize_classification(cfg, rows: list[dict], tokenizer) -> None:
    missing = next((r["source"] for r in rows if "text" not in r or "label" not in r), None)
    if missing:
        raise HasatError(f"{missing}: task.kind=classification needs rows with 'text' and 'label' "
                         "(check data.* and the column mapping)")
    blank = next((r["source"] for r in rows if not str(r["label"]).strip()), None)
    if blank:
        raise HasatError(f"{blank}: blank label (set clean.drop_empty=true to quarantine such rows, or fill it in)")
    labels = label_list(rows, cfg.task.labels)
    check_labels(rows, labels, "the data")
    encoded, truncated = encode_texts(rows, tokenizer, labels, cfg.tokenize.max_seq_len)
    stats = {"rows_in": len(rows), "rows_out": len(encoded), "truncated": truncated,
             **length_stats([len(r["input_ids"]) for r in encoded]), "labels": labels,
             "rows_by_label": {label: sum(r["label"] == label for r in encoded) for label in labels},
             "max_seq_len": cfg.tokenize.max_seq_len}
    write_jsonl(OUT, encoded)
    write_jsonl(REJECTS, [])
    write_json(STATS, stats)
    log.info("tokenize: %d texts, %d labels, %d truncated to %d tokens; p95 %s tokens", len(encoded), len(labels),
             truncated, cfg.tokenize.max_seq_len, stats.get("tokens_p95"))


def main(cfg) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(require_model_folder(BASE))
    if cfg.task.kind == "classification":
        return tokenize_classification(cfg, read_jsonl(IN), tokenizer)
    t = cfg.task
    result = tokenize_records(read_jsonl(IN), tokenizer, t.prompt_format, t.system_prompt, t.train_on_inputs,
                              cfg.tokenize.max_seq_len, cfg.tokenize.truncation)
    stats = {**dict(result.counts), **length_stats(result.lengths),
             "fertility_tokens_per_word": round(result.answer_tokens / max(1, result.answer_words), 3),
             "max_seq_len": cfg.tokenize.max_seq_len, "truncation": cfg.tokenize.truncation}
    write_jsonl(OUT, result.records)
    write_jsonl(REJECTS, result.rejects)
    write_json(STATS, stats)
    log.info("tokenize: %d rows -> %d (%d dropped as too long, %d truncated); %.2f tokens/word; p95 %s tokens",
             stats["rows_in"], stats["rows_out"], stats.get("dropped_too_long", 0), stats.get("truncated", 0),
             stats["fertility_tokens_per_word"], stats.get("tokens_p95"))


if __name__ == "__main__":
    run_stage("tokenize", main)
