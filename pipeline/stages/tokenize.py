"""Stage tokenize: records -> training examples, as the task kind defines them. Instruction tuning:
prompt format (chat template, Alpaca, ...), -100 on prompt tokens, EOS kept as a label, truncation
counted and reported, token length statistics and tokenizer fertility. Classification: the texts'
token ids and label ids (label order fixed here). Both report the length distribution of every row
before the length limit; `tokenize.max_seq_len=auto` picks the limit that keeps 1 - max_drop_share
of the rows, and a limit that drops more than `tokenize.max_drop_share` stops the stage.

    python -m pipeline.stages.tokenize [task.prompt_format=alpaca] [tokenize.max_seq_len=512|auto]
"""

from __future__ import annotations

import logging

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.data.rejects import reject_record, rejects_header
from pipeline.io import read_jsonl, write_json, write_jsonl
from pipeline.stages._runner import StageHelp, run_stage
from pipeline.tasks.training import training_for
from pipeline.train.modeling import context_length, require_model_folder

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=[str(paths.CLEANED), f"{paths.BASE_MODEL}/ (its tokenizer and chat template)"],
    writes=[str(paths.TOKENIZED), f"{paths.rejects('tokenize')} (rows too long or unformattable)",
            f"{paths.stats('tokenize')} (token lengths, truncation, fertility)"],
    keys=["task.kind", "task.prompt_format", "task.train_on_inputs", "task.labels", "data.system_prompt",
          "tokenize.max_seq_len", "tokenize.max_drop_share", "tokenize.truncation"],
)


def main(cfg: HasatConfig) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(require_model_folder(paths.BASE_MODEL))
    result = training_for(cfg.task.kind).tokenize(cfg, read_jsonl(paths.CLEANED), tokenizer,
                                                  context_length(paths.BASE_MODEL))
    write_jsonl(paths.TOKENIZED, result.records)
    write_jsonl(paths.rejects("tokenize"),  # a header first: never empty (DVC warns about empty outputs)
                [rejects_header("tokenize"),
                 *({**reject_record(r["source"], r["reason"], r["raw"]), "id": r["id"]} for r in result.rejects)])
    write_json(paths.stats("tokenize"), result.stats)
    log.info(result.summary)


if __name__ == "__main__":
    run_stage("tokenize", main, HELP)
