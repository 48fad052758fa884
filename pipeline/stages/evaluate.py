"""Stage evaluate: the base and the fine-tuned model on the same test items and benchmark; for
task.kind=classification, the fine-tuned classifier against the majority class and TF-IDF + LR.

Generation metrics (chrF, chrF++, BLEU, ROUGE-1/2/L, token F1, exact match; perplexity of the
reference answers) with paired bootstrap intervals, the multiple-choice benchmark (acc,
acc_norm), optional lm-evaluation-harness tasks; metrics/eval.json, an HTML review report,
plots, per-item predictions, all also logged to the model's MLflow run. A classifier gets
accuracy, macro/weighted F1 with intervals, the per-class report, confusion matrices and its
misclassified texts instead.

    python -m pipeline.stages.evaluate [eval.max_new_tokens=128] [eval.max_examples=20] [eval.mc.enabled=false]
"""

from __future__ import annotations

import csv
import gc
import logging
from pathlib import Path

from pipeline.eval import classification as C
from pipeline.eval import compare as E
from pipeline.tasks.classification import baselines, check_labels, predict_with_confidence
from pipeline.eval.classification_metrics import confusion_rows
from pipeline.errors import HasatError
from pipeline.eval.generation import Decoding
from pipeline.io import atomic_path, read_json, read_jsonl, write_json, write_jsonl
from pipeline.eval.lm_eval_hook import run_tasks
from pipeline.train.modeling import device, load_finetuned, load_saved, require_model_folder
from pipeline.eval.multiple_choice import LETTERS, load_questions
from pipeline.eval.plots import classification_plots, evaluation_plots
from pipeline.eval.report import format_table
from pipeline.eval.review import render, render_classification
from pipeline.stages._runner import run_stage
from pipeline.tracking import attach_run

BASE = "models/base"
FINETUNED = "models/finetuned"
TEST = Path("data/processed/split/test.jsonl")
TRAIN = Path("data/processed/split/train.jsonl")
OUT = Path("reports/eval")
PREDICTIONS = OUT / "predictions.jsonl"
MC_PREDICTIONS = OUT / "mc_predictions.jsonl"
REVIEW = OUT / "review.html"
ITEM_CHRF = OUT / "item_chrf.csv"
PLOTS = OUT / "plots"
MC_CONFUSION = {side: OUT / f"mc_confusion_{side}.json" for side in ("base", "finetuned")}
CONFUSION = OUT / "confusion.json"  # the classifier's actual vs predicted (empty for instruction tuning)
STATS = "metrics/eval.json"
log = logging.getLogger("hasat")


def load_test_rows(path: Path, max_examples) -> list[dict]:
    rows = read_jsonl(path)
    E.validate_test_rows(rows, str(path))
    return rows[:max_examples] if max_examples else rows


def evaluate_model(load, rows, questions, settings: E.RunSettings, harness_tasks: list, cfg, name: str) -> E.ModelRun:
    tokenizer, model = load()
    model.to(device())
    run = E.run_model(tokenizer, model, rows, questions, settings, name)
    lm = cfg.eval.lm_eval
    run.harness, run.harness_note = run_tasks(model, tokenizer, harness_tasks, lm.batch_size, lm.num_fewshot,
                                              lm.limit, lm.include_path)
    del model
    gc.collect()
    return run


def write_item_chrf(path: Path, items: list[dict]) -> None:  # a header only for a classifier
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "source", "base", "finetuned"])
        for i, item in enumerate(items, start=1):
            writer.writerow([i, item["source"], item["base_scores"]["chrf"], item["finetuned_scores"]["chrf"]])


def main(cfg) -> None:
    if cfg.task.kind == "classification":
        return evaluate_classifier(cfg)
    ev = cfg.eval
    rows = load_test_rows(TEST, ev.max_examples)
    require_model_folder(BASE)
    questions = load_questions(ev.mc.path)[: ev.mc.max_questions or None] if ev.mc.enabled else []
    settings = E.RunSettings(ev.max_new_tokens, ev.batch_size, Decoding.from_config(ev), ev.mc.template,
                             ev.mc.batch_size)
    tasks = list(ev.lm_eval.tasks)
    base = evaluate_model(lambda: load_saved(BASE), rows, questions, settings, tasks, cfg, "base")
    # the hook skipped for the base (and said why, once): skip it for the fine-tuned model too
    tuned = evaluate_model(lambda: load_finetuned(BASE, FINETUNED), rows, questions, settings,
                           tasks if base.harness else [], cfg, "fine-tuned")

    b = ev.bootstrap
    section, per_item = E.compare_generation([r["reference"] for r in rows], base, tuned, b.resamples, b.confidence,
                                             b.seed)
    result = {"test_rows": len(rows), "max_new_tokens": ev.max_new_tokens,
              "decoding": settings.decoding.describe(), **section,
              "bootstrap": {"resamples": b.resamples, "confidence": b.confidence, "seed": b.seed,
                            "method": "paired percentile bootstrap over test items"}}
    mc_rows = []
    if questions:
        result["mc"] = {"questions": len(questions), "file": ev.mc.path, "template": ev.mc.template,
                        **E.compare_mc(base, tuned, b.resamples, b.confidence, b.seed)}
        mc_rows = E.mc_item_rows(base, tuned)
    if base.harness:
        result["lm_eval"] = {"base": base.harness, "finetuned": tuned.harness or {}}

    items = E.per_item_rows(rows, base, tuned, per_item)
    write_jsonl(PREDICTIONS, items)
    write_jsonl(MC_PREDICTIONS, mc_rows)
    write_item_chrf(ITEM_CHRF, items)
    write_json(CONFUSION, [])
    for side, path in MC_CONFUSION.items():
        write_json(path, confusion_rows([LETTERS[r["answer"]] for r in mc_rows],
                                        [LETTERS[r[f"{side}_pred"]] for r in mc_rows]))
    with atomic_path(PLOTS) as tmp:
        tmp.mkdir()
        images = evaluation_plots(result, per_item, mc_rows, tmp)
        context = {"model": cfg.model.name, "data": cfg.data.name, "fine-tuning": cfg.train.method,
                   "decoding": result["decoding"], "max_new_tokens": ev.max_new_tokens, "test file": str(TEST)}
        html = render(result, E.worst_first(items, ev.report_sort), ev.report_sort, context, images, mc_rows,
                      base.harness_note)
    with atomic_path(REVIEW) as tmp:
        tmp.write_text(html, encoding="utf-8")
    write_json(STATS, result)
    log_to_mlflow(cfg, result)
    print(format_table(result))
    log.info("evaluate: review report %s", REVIEW)


def log_to_mlflow(cfg, result: dict) -> None:
    numbers = {f"test.{k}": v for k, v in E.numeric_leaves({k: result[k] for k in
               ("base", "finetuned", "delta", "ci", "delta_ci_excludes_zero")}).items()}
    if "mc" in result:
        mc = {k: v for k, v in result["mc"].items() if k in ("base", "finetuned", "delta", "ci", "delta_ci_excludes_zero")}
        numbers.update({f"mc.{k}": v for k, v in E.numeric_leaves(mc).items()})
    if "lm_eval" in result:
        numbers.update({f"lm_eval.{k}": v for k, v in E.numeric_leaves(result["lm_eval"]).items()})
    with attach_run(cfg, Path(FINETUNED) / "mlflow_run.json") as mlflow:
        mlflow.log_metrics(numbers)
        mlflow.set_tags({f"sacrebleu.{k}": v for k, v in result["signatures"].items()})
        mlflow.set_tag("eval.decoding", result["decoding"])
        for path in (PREDICTIONS, MC_PREDICTIONS, REVIEW, ITEM_CHRF, *MC_CONFUSION.values()):
            mlflow.log_artifact(str(path), artifact_path="eval")
        mlflow.log_artifacts(str(PLOTS), artifact_path="eval/plots")


def load_classification_rows(path: Path, labels: list[str], max_examples=None) -> list[dict]:
    rows = read_jsonl(path)
    if not rows:
        raise HasatError(f"{path}: the split is empty")
    bad = next((r.get("source", "?") for r in rows if "text" not in r or "label" not in r
                or not isinstance(r.get("input_ids"), list)), None)
    if bad:
        raise HasatError(f"{path}: row {bad} has no text, label or input_ids; is this a classification split? "
                         "(re-run tokenize and split with task=classification)")
    check_labels(rows, labels, f"{path} (the classifier was trained on other labels)")
    return rows[:max_examples] if max_examples else rows


def evaluate_classifier(cfg) -> None:
    ev = cfg.eval
    info = read_json(Path(FINETUNED) / "finetune.json")
    labels = info.get("labels")
    if info.get("task") != "classification" or not labels:
        raise HasatError(f"{FINETUNED}: not a classifier (finetune.json task={info.get('task')}); "
                         "re-run finetune with task=classification")
    rows = load_classification_rows(TEST, labels, ev.max_examples)
    train_rows = load_classification_rows(TRAIN, labels)
    tokenizer, model = load_finetuned(BASE, FINETUNED)
    model.to(device())
    log.info("evaluate: classifying %d test texts (%d classes); baselines trained on %d texts", len(rows),
             len(labels), len(train_rows))
    ids, confidence = predict_with_confidence(model, tokenizer, rows, ev.batch_size)
    del model
    predictions = {**baselines(train_rows, rows, cfg.seed), "finetuned": [labels[i] for i in ids]}
    b = ev.bootstrap
    result = {"task": "classification", "test_rows": len(rows), "train_rows": len(train_rows), "labels": labels,
              **C.compare([str(r["label"]) for r in rows], predictions, labels, b.resamples, b.confidence, b.seed),
              "bootstrap": {"resamples": b.resamples, "confidence": b.confidence, "seed": b.seed,
                            "method": "percentile bootstrap over test texts; differences paired"}}
    items = C.item_rows(rows, predictions, confidence)
    write_jsonl(PREDICTIONS, items)
    write_json(CONFUSION, confusion_rows([it["label"] for it in items], [it["finetuned"] for it in items]))
    write_jsonl(MC_PREDICTIONS, [])  # the instruction-tuning outputs dvc.yaml declares: empty here
    write_item_chrf(ITEM_CHRF, [])
    for path in MC_CONFUSION.values():
        write_json(path, [])
    with atomic_path(PLOTS) as tmp:
        tmp.mkdir()
        images = classification_plots(result, items, tmp)
        context = {"model": cfg.model.name, "data": cfg.data.name, "fine-tuning": cfg.train.method,
                   "class weights": cfg.task.class_weights, "test file": str(TEST)}
        html = render_classification(result, C.misclassified(items), context, images)
    with atomic_path(REVIEW) as tmp:
        tmp.write_text(html, encoding="utf-8")
    write_json(STATS, result)
    numbers = E.numeric_leaves({k: result[k] for k in ("systems", "ci", "vs_baselines")})
    numbers.update({"beats_tfidf": float(result["beats_tfidf"]), "beats_majority": float(result["beats_majority"])})
    with attach_run(cfg, Path(FINETUNED) / "mlflow_run.json") as mlflow:
        mlflow.log_metrics({f"test.{k}": v for k, v in numbers.items()})
        for path in (PREDICTIONS, REVIEW, CONFUSION):
            mlflow.log_artifact(str(path), artifact_path="eval")
        mlflow.log_artifacts(str(PLOTS), artifact_path="eval/plots")
    print(format_table(result))
    log.info("evaluate: review report %s", REVIEW)


if __name__ == "__main__":
    run_stage("evaluate", main)
