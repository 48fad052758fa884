"""Stage tokenize: records -> training examples, as the task kind defines them. Instruction tuning:
prompt format (chat template, Alpaca, ...), -100 on prompt tokens, EOS kept as a label, truncation
counted and reported, token length statistics and tokenizer fertility. Classification: the texts'
token ids and label ids (label order fixed here).

    python -m pipeline.stages.tokenize [task.prompt_format=alpaca] [tokenize.max_seq_len=512]
"""

from __future__ import annotations

import logging

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.data.rejects import rejects_header
from pipeline.io import read_jsonl, write_json, write_jsonl
from pipeline.stages._runner import StageHelp, run_stage
from pipeline.tasks.training import training_for
from pipeline.train.modeling import require_model_folder

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=[str(paths.CLEANED), f"{paths.BASE_MODEL}/ (its tokenizer and chat template)"],
    writes=[str(paths.TOKENIZED), f"{paths.rejects('tokenize')} (rows too long or unformattable)",
            f"{paths.stats('tokenize')} (token lengths, truncation, fertility)"],
    keys=["task.kind", "task.prompt_format", "task.train_on_inputs", "task.labels", "tokenize.max_seq_len",
          "tokenize.truncation"],
)


def main(cfg: HasatConfig) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(require_model_folder(paths.BASE_MODEL))
    result = training_for(cfg.task.kind).tokenize(cfg, read_jsonl(paths.CLEANED), tokenizer)
    write_jsonl(paths.TOKENIZED, result.records)
    write_jsonl(paths.rejects("tokenize"), [rejects_header("tokenize"), *result.rejects])  # never empty: DVC warns
    write_json(paths.stats("tokenize"), result.stats)
    log.info(result.summary)


if __name__ == "__main__":
    run_stage("tokenize", main, HELP)
