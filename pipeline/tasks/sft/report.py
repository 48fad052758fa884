"""Instruction tuning (SFT), the evaluation side: base vs fine-tuned generation on the test split
with paired bootstrap intervals (pipeline.eval.compare), the multiple-choice benchmark, optional
lm-evaluation-harness tasks, the review report; the exported model's card and load check."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Callable, Optional

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.eval import compare, judge
from pipeline.eval.classification_metrics import confusion_rows
from pipeline.eval.generation import Decoding
from pipeline.eval.lm_eval_hook import run_tasks
from pipeline.eval.metrics import vocabulary
from pipeline.eval.multiple_choice import LETTERS, Question, load_questions
from pipeline.eval.plots import evaluation_plots
from pipeline.eval.review import render
from pipeline.io import atomic_path, read_jsonl, write_json, write_jsonl
from pipeline.tasks.base import (Evaluation, TaskReport, domain_tag, licence_front_matter, licence_section,
                                 params_table, trained_on, write_item_chrf)
from pipeline.tasks.training import load_finetuned
from pipeline.train.modeling import device, load_saved, require_model_folder

log = logging.getLogger("hasat")
MLFLOW_SECTIONS = ("base", "finetuned", "delta", "ci", "delta_ci_excludes_zero")


class SftReport(TaskReport):
    kind = "sft"
    export_noun = "model"
    mlflow_task = "llm/v1/chat"  # MLflow's chat schema: /invocations takes OpenAI-style messages
    promotion_metric = "chrf"

    def headline_numbers(self, metrics: dict) -> dict[str, float]:
        return {"test_rows": metrics["test_rows"], "chrf": metrics["finetuned"]["chrf"],
                "chrf_delta_vs_base": metrics["delta"]["chrf"]}

    def evaluate(self, cfg: HasatConfig) -> Evaluation:
        ev = cfg.eval
        rows = load_test_rows(paths.TEST_SPLIT, ev.max_examples)
        require_model_folder(paths.BASE_MODEL)
        questions = benchmark_questions(cfg)
        settings = compare.RunSettings(ev.max_new_tokens, ev.batch_size, Decoding.from_config(ev), ev.mc.template,
                                       ev.mc.batch_size)
        tasks = list(ev.lm_eval.tasks)
        the_judge = judge.ready_judge(ev.judge)  # an unreachable judge stops here, before any generation
        base = evaluate_model(lambda: load_saved(paths.BASE_MODEL), rows, questions, settings, tasks, cfg, "base")
        # the hook skipped for the base (and said why, once): skip it for the fine-tuned model too
        tuned = evaluate_model(lambda: load_finetuned(paths.BASE_MODEL, paths.FINETUNED), rows, questions, settings,
                               tasks if base.harness else [], cfg, "fine-tuned")
        result, items, mc_rows, per_item = score(cfg, rows, questions, settings, base, tuned)
        extra = ""
        if the_judge is not None:
            b = ev.bootstrap
            result["judge"] = judge.judge_items(ev.judge, items, b.resamples, b.confidence, b.seed, the_judge)
            extra = judge.section_html(result["judge"])
        write_outputs(cfg, result, items, mc_rows, per_item, base.harness_note, extra)
        return Evaluation(result, mlflow_numbers(result),
                          tags={**{f"sacrebleu.{k}": v for k, v in result["signatures"].items()},
                                "eval.decoding": result["decoding"]},
                          artifacts=[paths.PREDICTIONS, paths.MC_PREDICTIONS, paths.REVIEW, paths.ITEM_CHRF,
                                     *paths.MC_CONFUSION.values(), paths.PLOTS])

    def model_card(self, cfg: HasatConfig, metrics: dict, folder: Path) -> str:
        return model_card(cfg, metrics, folder)

    def check_export(self, folder: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        AutoTokenizer.from_pretrained(folder)
        AutoModelForCausalLM.from_pretrained(folder)


def benchmark_questions(cfg: HasatConfig) -> list[Question]:
    """The data config's multiple-choice questions (data.benchmark), none when it has none or eval.mc is off."""
    if not (cfg.eval.mc.enabled and cfg.data.benchmark):
        return []
    return load_questions(cfg.data.benchmark)[: cfg.eval.mc.max_questions or None]


def load_test_rows(path: Path, max_examples: Optional[int]) -> list[dict]:
    rows = read_jsonl(path)
    compare.validate_test_rows(rows, str(path))
    return rows[:max_examples] if max_examples else rows


def evaluate_model(load: Callable, rows: list[dict], questions: list[Question], settings: compare.RunSettings,
                   harness_tasks: list, cfg: HasatConfig, name: str) -> compare.ModelRun:
    tokenizer, model = load()
    model.to(device())
    run = compare.run_model(tokenizer, model, rows, questions, settings, name)
    lm = cfg.eval.lm_eval
    run.harness, run.harness_note = run_tasks(model, tokenizer, harness_tasks, lm.batch_size, lm.num_fewshot,
                                              lm.limit, lm.include_path)
    del model
    gc.collect()
    return run


def score(cfg: HasatConfig, rows: list[dict], questions: list[Question], settings: compare.RunSettings,
          base: compare.ModelRun, tuned: compare.ModelRun) -> tuple[dict, list[dict], list[dict], dict]:
    """(eval.json, per-item rows, multiple-choice rows, per-item scores)."""
    ev, b = cfg.eval, cfg.eval.bootstrap
    # the known-word share: answer words that occur in the training split (absent without it)
    known = vocabulary(read_jsonl(paths.TRAIN_SPLIT)) if paths.TRAIN_SPLIT.is_file() else None
    section, per_item = compare.compare_generation([r["reference"] for r in rows], base, tuned, b.resamples,
                                                   b.confidence, b.seed, known)
    result = {"test_rows": len(rows), "max_new_tokens": ev.max_new_tokens,
              "decoding": settings.decoding.describe(), **section,
              "bootstrap": {"resamples": b.resamples, "confidence": b.confidence, "seed": b.seed,
                            "method": "paired percentile bootstrap over test items"}}
    mc_rows = []
    if questions:
        result["mc"] = {"questions": len(questions), "file": cfg.data.benchmark, "template": ev.mc.template,
                        **compare.compare_mc(base, tuned, b.resamples, b.confidence, b.seed)}
        mc_rows = compare.mc_item_rows(base, tuned)
    if base.harness:
        result["lm_eval"] = {"base": base.harness, "finetuned": tuned.harness or {}}
    return result, compare.per_item_rows(rows, base, tuned, per_item), mc_rows, per_item


def write_outputs(cfg: HasatConfig, result: dict, items: list[dict], mc_rows: list[dict], per_item: dict,
                  harness_note: str, extra_html: str = "") -> None:
    """Predictions, DVC plot data, PNGs and the review report under reports/eval/."""
    ev = cfg.eval
    write_jsonl(paths.PREDICTIONS, items)
    write_jsonl(paths.MC_PREDICTIONS, mc_rows)
    write_item_chrf(paths.ITEM_CHRF, items)
    write_json(paths.CONFUSION, [])
    for side, path in paths.MC_CONFUSION.items():
        write_json(path, confusion_rows([LETTERS[r["answer"]] for r in mc_rows],
                                        [LETTERS[r[f"{side}_pred"]] for r in mc_rows]))
    with atomic_path(paths.PLOTS) as tmp:
        tmp.mkdir()
        images = evaluation_plots(result, per_item, mc_rows, tmp)
        context = {"model": cfg.model.name, "data": cfg.data.name, "fine-tuning": cfg.train.method,
                   "decoding": result["decoding"], "max_new_tokens": ev.max_new_tokens,
                   "test file": str(paths.TEST_SPLIT)}
        html = render(result, compare.worst_first(items, ev.report_sort), ev.report_sort, context, images, mc_rows,
                      harness_note, extra_html)
    with atomic_path(paths.REVIEW) as tmp:
        tmp.write_text(html, encoding="utf-8")


def mlflow_numbers(result: dict) -> dict[str, float]:
    numbers = {f"test.{k}": v for k, v in compare.numeric_leaves({k: result[k] for k in MLFLOW_SECTIONS}).items()}
    if "mc" in result:
        mc = {k: v for k, v in result["mc"].items() if k in MLFLOW_SECTIONS}
        numbers.update({f"mc.{k}": v for k, v in compare.numeric_leaves(mc).items()})
    if "judge" in result:
        numbers.update(judge.mlflow_numbers(result["judge"]))
    if "lm_eval" in result:
        numbers.update({f"lm_eval.{k}": v for k, v in compare.numeric_leaves(result["lm_eval"]).items()})
    return numbers


def model_card(cfg: HasatConfig, metrics: dict, folder: Path) -> str:
    rows = "\n".join(f"| {k} | {metrics['base'][k]:.2f} | {metrics['finetuned'][k]:.2f} | {metrics['delta'][k]:+.2f} |"
                     for k in ("chrf", "bleu", "rouge_l", "exact_match", "repetition", "never_stopped"))
    return f"""---
language: tr
library_name: transformers
pipeline_tag: text-generation
tags: [hasat, turkish, {domain_tag(cfg)}, {cfg.train.method}]
{licence_front_matter(cfg)}---
# {cfg.model.name} fine-tuned on {cfg.data.name} (hasat)

Base `{cfg.model.name}` ({cfg.model.source}: `{cfg.model.location}`), fine-tuned with
`{cfg.train.method}` by the hasat pipeline; the LoRA adapter is merged, so this folder loads with

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{folder}")
tokenizer = AutoTokenizer.from_pretrained("{folder}")
```

Prompt format: `{cfg.task.prompt_format}`; system prompt: "{cfg.data.system_prompt or ''}".

## Test-split results ({metrics['test_rows']} items, greedy, max_new_tokens={metrics['max_new_tokens']})

| metric | base | fine-tuned | delta |
|---|---|---|---|
{rows}

sacrebleu signatures: chrF `{metrics['signatures']['chrf']}`, BLEU `{metrics['signatures']['bleu']}`.

{licence_section(cfg)}

## Training configuration

| key | value |
|---|---|
{params_table(cfg)}

## Limitations

Trained on {trained_on(cfg)}. Check facts before acting on them.
"""
