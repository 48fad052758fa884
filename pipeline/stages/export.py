"""Stage export: LoRA merged into the base; safetensors + tokenizer + generation config + a
model card with the metrics, loadable with plain AutoModelForCausalLM.from_pretrained. A classifier
(task.kind=classification) is exported with its id2label, loadable with
AutoModelForSequenceClassification and usable through pipeline("text-classification").

    python -m pipeline.stages.export [export.dtype=bfloat16]
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import flatten
from pipeline.errors import HasatError
from pipeline.io import atomic_path, read_json
from pipeline.train.modeling import DTYPES, load_finetuned
from pipeline.stages._runner import run_stage
from pipeline.tracking import attach_run

BASE = "models/base"
FINETUNED = "models/finetuned"
EVAL = "metrics/eval.json"
OUT_DIR = "models/export"
log = logging.getLogger("hasat")


def model_card(cfg, metrics: dict) -> str:
    rows = "\n".join(f"| {k} | {metrics['base'][k]:.2f} | {metrics['finetuned'][k]:.2f} | {metrics['delta'][k]:+.2f} |"
                     for k in ("chrf", "bleu", "rouge_l", "exact_match", "never_stopped"))
    params = _params_table(cfg)
    return f"""---
language: tr
library_name: transformers
pipeline_tag: text-generation
tags: [hasat, turkish, agriculture, {cfg.train.method}]
---
# {cfg.model.name} fine-tuned on {cfg.data.name} (hasat)

Base `{cfg.model.name}` ({cfg.model.source}: `{cfg.model.location}`), fine-tuned with
`{cfg.train.method}` by the hasat pipeline; the LoRA adapter is merged, so this folder loads with

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{OUT_DIR}")
tokenizer = AutoTokenizer.from_pretrained("{OUT_DIR}")
```

Prompt format: `{cfg.task.prompt_format}`; system prompt: "{cfg.task.system_prompt or ''}".

## Test-split results ({metrics['test_rows']} items, greedy, max_new_tokens={metrics['max_new_tokens']})

| metric | base | fine-tuned | delta |
|---|---|---|---|
{rows}

sacrebleu signatures: chrF `{metrics['signatures']['chrf']}`, BLEU `{metrics['signatures']['bleu']}`.

## Training configuration

| key | value |
|---|---|
{params}

## Limitations

Trained on a small Turkish agriculture instruction set; the answers are general advice, not
agronomic advice for a specific field. Check facts before acting on them.
"""


def _params_table(cfg) -> str:
    return "\n".join(f"| `{k}` | `{v}` |" for k, v in flatten(cfg).items()
                     if k.split(".")[0] in ("model", "data", "task", "tokenize", "split", "train"))


def classifier_card(cfg, metrics: dict) -> str:
    from pipeline.eval.classification import headline, table_rows

    rows = table_rows(metrics)
    table = "\n".join("| " + " | ".join(row) + " |" for row in [rows[0], tuple("---" for _ in rows[0]), *rows[1:]])
    labels = ", ".join(f"`{label}`" for label in metrics["labels"])
    return f"""---
language: tr
library_name: transformers
pipeline_tag: text-classification
tags: [hasat, turkish, text-classification, {cfg.train.method}]
---
# {cfg.model.name} text classifier fine-tuned on {cfg.data.name} (hasat)

Base `{cfg.model.name}` ({cfg.model.source}: `{cfg.model.location}`) with a sequence-classification
head (the last non-pad token is pooled), fine-tuned with `{cfg.train.method}` by the hasat pipeline.
Classes ({len(metrics["labels"])}, `config.id2label` holds the order): {labels}.

```python
from transformers import pipeline
classify = pipeline("text-classification", model="{OUT_DIR}")
classify("Konya'da buğday hasadı başladı; verim geçen yıldan yüzde 8 yüksek.")
```

## Test-split results ({metrics['test_rows']} texts; baselines trained on the same {metrics['train_rows']} texts)

{table}

{headline(metrics)}

## Training configuration

| key | value |
|---|---|
{_params_table(cfg)}

## Limitations

Trained on a small set of short, fictional Turkish news texts; expect errors on long articles,
other registers and topics outside the classes above.
"""


def main(cfg) -> None:
    metrics = read_json(EVAL)
    classifier = cfg.task.kind == "classification"
    if classifier != (metrics.get("task") == "classification"):
        raise HasatError(f"{EVAL} does not belong to a task.kind={cfg.task.kind} run; re-run evaluate")
    tokenizer, model = load_finetuned(BASE, FINETUNED)
    model = model.to(DTYPES[cfg.export.dtype])
    with atomic_path(OUT_DIR) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not classifier:
            model.generation_config.save_pretrained(tmp)
        card = classifier_card(cfg, metrics) if classifier else model_card(cfg, metrics)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        check_loadable(tmp, classifier)
    with attach_run(cfg, Path(FINETUNED) / "mlflow_run.json") as mlflow:
        mlflow.log_artifact(str(Path(OUT_DIR) / "README.md"), artifact_path="model_card")
        if cfg.export.log_model:
            # the HF folder itself: mlflow.transformers.log_model breaks on transformers 5's
            # pipeline registry (impl given as a string), and the folder is what users load
            mlflow.log_artifacts(OUT_DIR, artifact_path="model")
    log.info("export: merged %s written to %s", "classifier" if classifier else "model", OUT_DIR)


def check_loadable(folder: Path, classifier: bool = False) -> None:
    """The promise of the export: plain from_pretrained works on it (and, for a classifier, the
    text-classification pipeline answers with one of its labels)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if not classifier:
            AutoModelForCausalLM.from_pretrained(folder)
            return
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        answer = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")("Hasat başladı.")
    except Exception as err:  # any failure here means a broken export
        raise HasatError(f"export: the written model does not load back ({err})") from None
    if answer[0]["label"] not in set(model.config.id2label.values()):
        raise HasatError(f"export: the classifier answered '{answer[0]['label']}', not one of its labels")


if __name__ == "__main__":
    run_stage("export", main)
