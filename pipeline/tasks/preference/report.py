"""Preference tuning, the evaluation side: the tuned policy against its reference (the model tuning
started from: the base, or the base + SFT adapter) on the held-out pairs — preference accuracy from the
policy/reference log-ratios with a bootstrap interval (pipeline.eval.preference), the generation
metrics against the chosen answers as for SFT (pipeline.eval.compare), optionally the LLM judge
(pipeline.eval.judge); the exported model's card and load check as for SFT."""

from __future__ import annotations

import gc
import logging
from html import escape
from pathlib import Path
from typing import Callable

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.eval import compare, judge, preference
from pipeline.eval.generation import Decoding
from pipeline.io import read_jsonl
from pipeline.tasks.base import Evaluation
from pipeline.tasks.preference.train import answers_of, reference_name
from pipeline.tasks.sft import report as sft_report
from pipeline.tasks.training import load_finetuned
from pipeline.train.modeling import device, load_saved, merge_adapter, require_model_folder

log = logging.getLogger("hasat")


def load_reference(cfg: HasatConfig):
    """The model preference tuning started from: the base, merged with the SFT adapter if one was continued."""
    tokenizer, model = load_saved(paths.BASE_MODEL)
    if cfg.task.sft_adapter:
        model = merge_adapter(model, Path(cfg.task.sft_adapter))
    return tokenizer, model


def run_side(load: Callable, rows: list[dict], gen_rows: list[dict], questions, settings: compare.RunSettings,
             name: str) -> tuple[compare.ModelRun, preference.AnswerLogprobs]:
    tokenizer, model = load()
    model.to(device())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    log.info("evaluate: %s: log-probabilities of %d held-out answers", name, len(rows))
    logprobs = preference.answer_logprobs(model, rows, answers_of(rows[0]), settings.batch_size, pad_id,
                                          desc=f"evaluate: {name}: log p(answer)")
    run = compare.run_model(tokenizer, model, gen_rows, questions, settings, name)
    del model
    gc.collect()
    return run, logprobs


def preference_html(section: dict, reference: str) -> str:
    acc = section["reward_accuracy"]
    rows = [("reward accuracy (%)", f"{acc['value']:.1f}", f"[{acc['low']:.1f}, {acc['high']:.1f}]")]
    if "reward_margin" in section:
        m = section["reward_margin"]
        rows.append(("reward margin", f"{m['value']:+.4f}", f"[{m['low']:+.4f}, {m['high']:+.4f}]"))
        like = section["likelihood_accuracy"]
        for side in ("base", "finetuned", "delta"):
            low, high = like["ci"][side]
            rows.append((f"log p(chosen) &gt; log p(rejected), {side} (%)", f"{like[side]:.1f}",
                         f"[{low:.1f}, {high:.1f}]"))
    cells = "".join(f"<tr><td>{name}</td><td>{value}</td><td>{ci}</td></tr>" for name, value, ci in rows)
    return (f"<h2>Held-out preference accuracy</h2><p class=\"note\">Reference: {escape(reference)}. A pair is won "
            "when the tuned model raises log p(chosen) relative to the reference more than log p(rejected) "
            "(DPO's implicit reward, beta × log-ratio). Intervals: percentile bootstrap over test items.</p>"
            f"<table><tr><th>measure</th><th>value</th><th>interval</th></tr>{cells}</table>")


class PreferenceReport(sft_report.SftReport):
    kind = "preference"
    export_noun = "model"

    def evaluate(self, cfg: HasatConfig) -> Evaluation:
        ev, b = cfg.eval, cfg.eval.bootstrap
        require_model_folder(paths.BASE_MODEL)
        rows = read_jsonl(paths.TEST_SPLIT)
        compare.validate_test_rows(rows, str(paths.TEST_SPLIT))
        rows = rows[: ev.max_examples] if ev.max_examples else rows
        the_judge = judge.ready_judge(ev.judge)  # an unreachable judge stops here, before any generation
        gen_rows = [r for r in rows if r.get("label", True)]  # KTO: generation is scored against desirable answers
        questions = sft_report.benchmark_questions(cfg)
        settings = compare.RunSettings(ev.max_new_tokens, ev.batch_size, Decoding.from_config(ev), ev.mc.template,
                                       ev.mc.batch_size)
        base, base_lp = run_side(lambda: load_reference(cfg), rows, gen_rows, questions, settings, "base")
        tuned, tuned_lp = run_side(lambda: load_finetuned(paths.BASE_MODEL, paths.FINETUNED), rows, gen_rows,
                                   questions, settings, "fine-tuned")
        result, items, mc_rows, per_item = sft_report.score(cfg, gen_rows, questions, settings, base, tuned)
        result["task"] = "preference"
        result["method"] = cfg.task.method
        result["reference_model"] = reference_name(cfg) if cfg.task.method != "orpo" else "base"
        labels = [bool(r["label"]) for r in rows] if "label" in rows[0] else None
        result["preference"] = preference.preference_section(base_lp, tuned_lp, cfg.task.beta, labels, b.resamples,
                                                             b.confidence, b.seed)
        extra = preference_html(result["preference"], result["reference_model"])
        if ev.judge.enabled:
            result["judge"] = judge.judge_items(ev.judge, items, b.resamples, b.confidence, b.seed, the_judge)
            extra += judge.section_html(result["judge"])
        sft_report.write_outputs(cfg, result, items, mc_rows, per_item, "", extra)
        numbers = {**sft_report.mlflow_numbers(result), **preference.mlflow_numbers(result["preference"])}
        return Evaluation(result, numbers,
                          tags={**{f"sacrebleu.{k}": v for k, v in result["signatures"].items()},
                                "eval.decoding": result["decoding"], "preference.method": cfg.task.method},
                          artifacts=[paths.PREDICTIONS, paths.MC_PREDICTIONS, paths.REVIEW, paths.ITEM_CHRF,
                                     *paths.MC_CONFUSION.values(), paths.PLOTS])

    def model_card(self, cfg: HasatConfig, metrics: dict, folder: Path) -> str:
        card = sft_report.model_card(cfg, metrics, folder)
        acc = metrics.get("preference", {}).get("reward_accuracy")
        if not acc:
            return card
        line = (f"\n## Preference tuning\n\n`{cfg.task.method}` (beta {cfg.task.beta}) on `{cfg.data.name}`, "
                f"reference: {metrics.get('reference_model')}. Held-out preference accuracy "
                f"{acc['value']:.1f}% [{acc['low']:.1f}, {acc['high']:.1f}].\n")
        marker = "\n## Licence"
        return card.replace(marker, line + marker, 1) if marker in card else card + line
