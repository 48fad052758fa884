"""Stage export: LoRA merged into the base; safetensors + tokenizer + generation config + a
model card with the metrics, loadable with plain AutoModelForCausalLM.from_pretrained. A classifier
(task.kind=classification) is exported with its id2label, loadable with
AutoModelForSequenceClassification and usable through pipeline("text-classification").

    python -m pipeline.stages.export [export.dtype=bfloat16]
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.errors import HasatError
from pipeline.io import atomic_path, read_json
from pipeline.stages._runner import StageHelp, run_stage
from pipeline.tasks.base import TaskReport
from pipeline.tasks.reporting import report_for
from pipeline.tasks.training import load_finetuned
from pipeline.tracking import log_data_report, log_export
from pipeline.train.modeling import DTYPES, copy_notices, licence_files_in

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=[f"{paths.BASE_MODEL}/", f"{paths.FINETUNED}/", str(paths.stats("eval")),
           f"{paths.DATA_REPORT} (logged to the model's MLflow run)"],
    writes=[f"{paths.EXPORT}/ (merged model, tokenizer, model card README.md, licence notices)",
            "the model's MLflow run (model_card/, data/report.html, and the model with export.log_model)"],
    keys=["task.kind", "export.dtype", "export.log_model"],
)


def main(cfg: HasatConfig) -> None:
    metrics = read_json(paths.stats("eval"))
    task = report_for(cfg.task.kind)
    if metrics.get("task", "sft") != task.kind:
        raise HasatError(f"{paths.stats('eval')} does not belong to a task.kind={cfg.task.kind} run; re-run evaluate")
    tokenizer, model = load_finetuned(paths.BASE_MODEL, paths.FINETUNED)
    model = model.to(DTYPES[cfg.export.dtype])
    with atomic_path(paths.EXPORT) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if model.can_generate():
            model.generation_config.save_pretrained(tmp)
        copy_notices(licence_files_in(paths.BASE_MODEL), tmp)  # the base's licence travels with its derivative
        (tmp / "README.md").write_text(task.model_card(cfg, metrics, paths.EXPORT), encoding="utf-8")
        check_loadable(tmp, task)
    log_export(cfg, paths.FINETUNED / paths.RUN_FILE, paths.EXPORT / "README.md", paths.EXPORT, cfg.export.log_model)
    log_data_report(cfg, paths.FINETUNED / paths.RUN_FILE, paths.DATA_REPORT)
    log.info("export: merged %s written to %s", task.export_noun, paths.EXPORT)


def check_loadable(folder: Path, task: TaskReport) -> None:
    try:
        task.check_export(folder)
    except HasatError:
        raise
    except Exception as err:  # any failure here means a broken export
        raise HasatError(f"export: the written model does not load back ({err})") from None


if __name__ == "__main__":
    run_stage("export", main, HELP)
