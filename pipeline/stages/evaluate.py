"""Stage evaluate: the fine-tuned model scored on the test split the way its task kind defines.

Instruction tuning: the base and the fine-tuned model on the same test items and benchmark —
generation metrics (chrF, chrF++, BLEU, ROUGE-1/2/L, token F1, exact match; perplexity of the
reference answers) with paired bootstrap intervals, the multiple-choice benchmark (acc, acc_norm),
optional lm-evaluation-harness tasks. Classification: the fine-tuned classifier against the
majority class and TF-IDF + LR — accuracy, macro/weighted F1 with intervals, the per-class report,
confusion matrices and its misclassified texts. Preference tuning: held-out preference accuracy
(policy vs reference log-ratios) and the SFT generation metrics against the chosen answers.
Optionally an LLM judge compares base and fine-tuned answers in both orders (eval.judge). All write
metrics/eval.json, an HTML review report, plots and per-item predictions, all also logged to the
model's MLflow run.

    python -m pipeline.stages.evaluate [eval.max_new_tokens=128] [eval.max_examples=20] [eval.mc.enabled=false]
        [data.benchmark=data/benchmarks/my_mc.jsonl]
"""

from __future__ import annotations

import logging

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.eval.report import format_table
from pipeline.io import write_json
from pipeline.stages._runner import StageHelp, run_stage
from pipeline.tasks.reporting import report_for
from pipeline.tracking import log_eval

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=[f"{paths.BASE_MODEL}/", f"{paths.FINETUNED}/", str(paths.TEST_SPLIT),
           f"{paths.TRAIN_SPLIT} (classification baselines; SFT: the known-word share)", "data/benchmarks/ (data.benchmark: the multiple-choice benchmark, if the data config names one)"],
    writes=[str(paths.stats("eval")), str(paths.PREDICTIONS), str(paths.MC_PREDICTIONS), str(paths.REVIEW),
            f"{paths.PLOTS}/", str(paths.ITEM_CHRF), *map(str, paths.MC_CONFUSION.values()), str(paths.CONFUSION),
            "the model's MLflow run (eval/)"],
    keys=["seed", "task.kind", "task.method", "task.beta", "task.sft_adapter", "eval.max_examples",
          "eval.max_new_tokens", "eval.batch_size", "eval.do_sample", "eval.repetition_penalty", "eval.no_repeat_ngram_size",
          "eval.mc.enabled",
          "data.benchmark", "eval.bootstrap.resamples", "eval.bootstrap.confidence", "eval.judge.enabled",
          "eval.judge.model", "eval.judge.url"],
)


def main(cfg: HasatConfig) -> None:
    evaluation = report_for(cfg.task.kind).evaluate(cfg)
    write_json(paths.stats("eval"), evaluation.result)
    log_eval(cfg, paths.FINETUNED / paths.RUN_FILE, evaluation.metrics, evaluation.tags, evaluation.artifacts)
    print(format_table(evaluation.result))
    log.info("evaluate: review report %s", paths.REVIEW)


if __name__ == "__main__":
    run_stage("evaluate", main, HELP)
