"""Text classification, the evaluation side: the fine-tuned classifier against the majority class
and TF-IDF char n-grams + logistic regression (pipeline.eval.classification), confusion matrix,
review report of the misclassified texts; the exported classifier's card and its
`pipeline("text-classification")` check."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.errors import HasatError
from pipeline.eval import classification as scoring
from pipeline.eval.classification_metrics import confusion_rows
from pipeline.eval.compare import numeric_leaves
from pipeline.eval.plots import classification_plots
from pipeline.eval.review import render_classification
from pipeline.io import atomic_path, read_json, read_jsonl, write_json, write_jsonl
from pipeline.tasks.base import (Evaluation, TaskReport, domain_tag, licence_front_matter, licence_section,
                                 params_table, trained_on, write_item_chrf)
from pipeline.tasks.classification.train import check_labels
from pipeline.tasks.training import load_finetuned
from pipeline.train.modeling import device

log = logging.getLogger("hasat")


class ClassificationReport(TaskReport):
    kind = "classification"
    export_noun = "classifier"
    mlflow_task = "text-classification"
    promotion_metric = "macro_f1"

    def headline_numbers(self, metrics: dict) -> dict[str, float]:
        return {"test_rows": metrics["test_rows"], "macro_f1": metrics["systems"]["finetuned"]["macro_f1"],
                "accuracy": metrics["systems"]["finetuned"]["accuracy"]}

    def evaluate(self, cfg: HasatConfig) -> Evaluation:
        ev = cfg.eval
        labels = trained_labels(paths.FINETUNED)
        rows = load_classification_rows(paths.TEST_SPLIT, labels, ev.max_examples)
        train_rows = load_classification_rows(paths.TRAIN_SPLIT, labels)
        tokenizer, model = load_finetuned(paths.BASE_MODEL, paths.FINETUNED)
        model.to(device())
        log.info("evaluate: classifying %d test texts (%d classes); baselines trained on %d texts", len(rows),
                 len(labels), len(train_rows))
        ids, confidence = scoring.predict_with_confidence(model, tokenizer, rows, ev.batch_size,
                                                          desc="evaluate: classify")
        del model
        predictions = {**scoring.baselines(train_rows, rows, cfg.seed), "finetuned": [labels[i] for i in ids]}
        b = ev.bootstrap
        result = {"task": "classification", "test_rows": len(rows), "train_rows": len(train_rows), "labels": labels,
                  **scoring.compare([str(r["label"]) for r in rows], predictions, labels, b.resamples, b.confidence,
                                    b.seed),
                  "bootstrap": {"resamples": b.resamples, "confidence": b.confidence, "seed": b.seed,
                                "method": "percentile bootstrap over test texts; differences paired"}}
        write_outputs(cfg, result, scoring.item_rows(rows, predictions, confidence))
        return Evaluation(result, mlflow_numbers(result),
                          artifacts=[paths.PREDICTIONS, paths.REVIEW, paths.CONFUSION, paths.PLOTS])

    def model_card(self, cfg: HasatConfig, metrics: dict, folder: Path) -> str:
        return classifier_card(cfg, metrics, folder)

    def check_export(self, folder: Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        answer = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")("Hasat başladı.")
        if answer[0]["label"] not in set(model.config.id2label.values()):
            raise HasatError(f"export: the classifier answered '{answer[0]['label']}', not one of its labels")


def trained_labels(finetuned: Path) -> list[str]:
    info = read_json(finetuned / "finetune.json")
    labels = info.get("labels")
    if info.get("task") != "classification" or not labels:
        raise HasatError(f"{finetuned}: not a classifier (finetune.json task={info.get('task')}); "
                         "re-run finetune with task=classification")
    return labels


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


def write_outputs(cfg: HasatConfig, result: dict, items: list[dict]) -> None:
    """Predictions, the confusion matrix (dvc plots), PNGs and the review report; the files dvc.yaml
    declares for instruction tuning are written empty."""
    write_jsonl(paths.PREDICTIONS, items)
    write_json(paths.CONFUSION, confusion_rows([it["label"] for it in items], [it["finetuned"] for it in items]))
    write_jsonl(paths.MC_PREDICTIONS, [])
    write_item_chrf(paths.ITEM_CHRF, [])
    for path in paths.MC_CONFUSION.values():
        write_json(path, [])
    with atomic_path(paths.PLOTS) as tmp:
        tmp.mkdir()
        images = classification_plots(result, items, tmp)
        context = {"model": cfg.model.name, "data": cfg.data.name, "fine-tuning": cfg.train.method,
                   "class weights": cfg.task.class_weights, "test file": str(paths.TEST_SPLIT)}
        html = render_classification(result, scoring.misclassified(items), context, images)
    with atomic_path(paths.REVIEW) as tmp:
        tmp.write_text(html, encoding="utf-8")


def mlflow_numbers(result: dict) -> dict[str, float]:
    numbers = numeric_leaves({k: result[k] for k in ("systems", "ci", "vs_baselines")})
    numbers.update({"beats_tfidf": float(result["beats_tfidf"]), "beats_majority": float(result["beats_majority"])})
    return {f"test.{k}": v for k, v in numbers.items()}


def classifier_card(cfg: HasatConfig, metrics: dict, folder: Path) -> str:
    rows = scoring.table_rows(metrics)
    table = "\n".join("| " + " | ".join(row) + " |" for row in [rows[0], tuple("---" for _ in rows[0]), *rows[1:]])
    labels = ", ".join(f"`{label}`" for label in metrics["labels"])
    return f"""---
language: tr
library_name: transformers
pipeline_tag: text-classification
tags: [hasat, turkish, text-classification, {domain_tag(cfg)}, {cfg.train.method}]
{licence_front_matter(cfg)}---
# {cfg.model.name} text classifier fine-tuned on {cfg.data.name} (hasat)

Base `{cfg.model.name}` ({cfg.model.source}: `{cfg.model.location}`) with a sequence-classification
head (the last non-pad token is pooled), fine-tuned with `{cfg.train.method}` by the hasat pipeline.
Classes ({len(metrics["labels"])}, `config.id2label` holds the order): {labels}.

```python
from transformers import pipeline
classify = pipeline("text-classification", model="{folder}")
classify("Sınıflandırılacak Türkçe metin")
```

## Test-split results ({metrics['test_rows']} texts; baselines trained on the same {metrics['train_rows']} texts)

{table}

{scoring.headline(metrics)}

{licence_section(cfg)}

## Training configuration

| key | value |
|---|---|
{params_table(cfg)}

## Limitations

Trained on {trained_on(cfg)}; expect errors on longer texts, other registers and topics outside
the classes above.
"""
