"""Stage export: LoRA merged into the base; safetensors + tokenizer + generation config + a
model card with the metrics, loadable with plain AutoModelForCausalLM.from_pretrained. A classifier
(task.kind=classification) is exported with its id2label, loadable with
AutoModelForSequenceClassification and usable through pipeline("text-classification").
With export.log_model the merged model is logged as an MLflow transformers model and, with
registry.enabled, registered as `hasat-<data.name>` with the alias `challenger`
(`python -m pipeline.promote` decides whether it becomes `champion`).

    python -m pipeline.stages.export [export.dtype=bfloat16]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.deploy.models import SERVING_INFO, serving_info
from pipeline.errors import HasatError
from pipeline.io import atomic_path, read_json
from pipeline.stages._runner import StageHelp, run_stage
from pipeline.tasks.base import TaskReport
from pipeline.tasks.reporting import report_for
from pipeline.tasks.training import load_finetuned
from pipeline.tracking import git_commit, log_data_report, log_export, log_registered_model, registry_name
from pipeline.train.modeling import DTYPES, copy_notices, licence_files_in

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=[f"{paths.BASE_MODEL}/", f"{paths.FINETUNED}/", str(paths.stats("eval")),
           f"{paths.DATA_REPORT} (logged to the model's MLflow run)"],
    writes=[f"{paths.EXPORT}/ (merged model, tokenizer, model card README.md, licence notices, hasat.json)",
            "the model's MLflow run (model_card/, data/report.html)",
            "with export.log_model: the merged model logged and registered in MLflow, alias challenger"],
    keys=["task.kind", "data.name", "data.domain", "data.description", "data.system_prompt", "export.dtype",
          "export.log_model", "registry.enabled", "registry.model_name"],
)


def main(cfg: HasatConfig) -> None:
    metrics = read_json(paths.stats("eval"))
    task = report_for(cfg.task.kind)
    if metrics.get("task", "sft") != task.kind:
        raise HasatError(f"{paths.stats('eval')} does not belong to a task.kind={cfg.task.kind} run; re-run evaluate")
    tokenizer, model = load_finetuned(paths.BASE_MODEL, paths.FINETUNED)
    model = model.to(DTYPES[cfg.export.dtype])
    info = serving_info(cfg, task.kind, metrics.get("labels"))
    with atomic_path(paths.EXPORT) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if model.can_generate():
            model.generation_config.save_pretrained(tmp)
        copy_notices(licence_files_in(paths.BASE_MODEL), tmp)  # the base's licence travels with its derivative
        (tmp / "README.md").write_text(task.model_card(cfg, metrics, paths.EXPORT), encoding="utf-8")
        (tmp / SERVING_INFO).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        check_loadable(tmp, task)
    run_file = paths.FINETUNED / paths.RUN_FILE
    log_export(cfg, run_file, paths.EXPORT / "README.md", paths.EXPORT)
    log_data_report(cfg, run_file, paths.DATA_REPORT)
    log.info("export: merged %s written to %s", task.export_noun, paths.EXPORT)
    if cfg.export.log_model:  # the merged model only: a PeftModel logs base weights under LoRA names (mlflow #23761)
        version = log_registered_model(cfg, run_file, model, tokenizer, task.mlflow_task, info,
                                       version_tags(cfg, metrics, task))
        if version:
            log.info("export: registered as version %s of '%s', alias challenger (promote decides on champion)",
                     version, registry_name(cfg))


def version_tags(cfg: HasatConfig, metrics: dict, task: TaskReport) -> dict[str, str]:
    """What a registry reader needs to know about a version without opening its run."""
    tags = {"hasat.data": cfg.data.name, "hasat.base_model": f"{cfg.model.name} ({cfg.model.source}: "
            f"{cfg.model.location})", "hasat.license": cfg.model.license or "unknown", "hasat.task": task.kind,
            "hasat.train_method": cfg.train.method,
            "hasat.dvc_experiment": os.environ.get("DVC_EXP_NAME", "workspace (dvc repro)"),
            "hasat.promotion": "pending (python -m pipeline.promote)"}
    commit = git_commit()
    if commit:
        tags["hasat.git_commit"] = commit
    tags.update({f"hasat.eval.{k}": str(v) for k, v in task.headline_numbers(metrics).items()})
    return tags


def check_loadable(folder: Path, task: TaskReport) -> None:
    try:
        task.check_export(folder)
    except HasatError:
        raise
    except Exception as err:  # any failure here means a broken export
        raise HasatError(f"export: the written model does not load back ({err})") from None


if __name__ == "__main__":
    run_stage("export", main, HELP)
