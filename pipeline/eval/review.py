"""The review report: one self-contained HTML file a domain expert opens in a browser.

Summary table with intervals on top, the plots (embedded), the multiple-choice results, then
every test item worst-first: prompt, reference, base answer, fine-tuned answer, per-item scores.
Every piece of text from data or models is HTML-escaped.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Optional, Sequence

from pipeline.eval.report import headline, summary_rows

SORT_DESCRIPTIONS = {
    "finetuned_chrf": "lowest fine-tuned chrF first (the answers of the model you would ship that match the "
                      "reference least)",
    "delta_chrf": "largest chrF loss of the fine-tuned model against the base first",
}

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; font-size: .9rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: right; vertical-align: top; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
.better { color: #1a7f37; font-weight: 600; } .worse { color: #c62828; font-weight: 600; } .ns { color: #57606a; }
.headline { font-size: 1.05rem; padding: .6rem .8rem; background: #f6f8fa; border-left: 4px solid #2a7ab0; }
.note { color: #57606a; font-size: .88rem; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: .5rem 0; }
.item { border: 1px solid #d0d7de; border-radius: 6px; margin: 1.2rem 0; padding: .8rem 1rem; }
.item h3 { margin: 0 0 .4rem 0; font-size: 1rem; } .item h3 .src { color: #57606a; font-weight: normal; }
.label { font-weight: 600; font-size: .85rem; color: #57606a; text-transform: uppercase; letter-spacing: .03em; }
.text { white-space: pre-wrap; background: #f6f8fa; padding: .4rem .6rem; border-radius: 4px; margin: .2rem 0 .6rem; }
.answers { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.scores { font-size: .85rem; color: #57606a; } .flag { color: #c62828; font-size: .85rem; }
details { margin: .6rem 0; } summary { cursor: pointer; }
"""

ITEM_SCORE_LABELS = (("chrf", "chrF"), ("rouge_l", "ROUGE-L"), ("token_f1", "token F1"), ("perplexity", "ref. PPL"))


def _verdict_class(text: str) -> str:
    return {"better": "better", "worse": "worse", "n.s.": "ns"}.get(text, "")


def summary_table(result: dict) -> str:
    head = "<tr><th>metric</th><th>base</th><th>fine-tuned</th><th>delta (fine-tuned − base)</th><th>delta interval</th></tr>"
    body = []
    for label, base, tuned, delta, verdict in summary_rows(result):
        shown = {"better": "excludes 0: better", "worse": "excludes 0: worse", "n.s.": "includes 0: n.s."}.get(verdict, "")
        body.append(f"<tr><td>{escape(label)}</td><td>{escape(base)}</td><td>{escape(tuned)}</td><td>{escape(delta)}</td>"
                    f"<td class=\"{_verdict_class(verdict)}\">{escape(shown)}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _scores_line(scores: dict, other: Optional[dict] = None) -> str:
    parts = []
    for key, label in ITEM_SCORE_LABELS:
        text = f"{label} {scores[key]:.1f}"
        if other is not None and key != "perplexity":
            text += f" (Δ {scores[key] - other[key]:+.1f})"
        parts.append(text)
    return " · ".join(parts)


def item_card(rank: int, item: dict) -> str:
    def answer(side: str, title: str, other: Optional[dict]) -> str:
        flag = "" if item[f"{side}_stopped"] else (f'<div class="flag">never stopped: hit max_new_tokens '
                                                   f'({item[f"{side}_new_tokens"]} tokens) without EOS</div>')
        return (f'<div><div class="label">{title}</div><div class="text">{escape(item[side]) or "<i>(empty)</i>"}</div>'
                f'<div class="scores">{escape(_scores_line(item[f"{side}_scores"], other))}</div>{flag}</div>')

    return (f'<div class="item"><h3>#{rank} <span class="src">{escape(item["source"])}</span></h3>'
            f'<div class="label">Prompt</div><div class="text">{escape(item["prompt"])}</div>'
            f'<div class="label">Reference</div><div class="text">{escape(item["reference"])}</div>'
            f'<div class="answers">{answer("base", "Base model", None)}'
            f'{answer("finetuned", "Fine-tuned model", item["base_scores"])}</div>{judge_line(item)}</div>')


def judge_line(item: dict) -> str:
    """The LLM judge's verdict on an item (eval.judge), when it ran: both orders and the reasons."""
    judged = item.get("judge")
    if not judged:
        return ""
    grades = "".join(f" · {side} grade {judged[f'{side}_grade']}" for side in ("base", "finetuned")
                     if judged.get(f"{side}_grade") is not None)
    reasons = "".join(f'<div class="text"><b>{escape(order)}:</b> {escape(reason)}</div>'
                      for order, reason in judged.get("reasons", {}).items())
    return (f'<div class="label">Judge: <b>{escape(judged["verdict"])}</b> (tuned shown first: '
            f'{escape(judged["tuned_first"])}, base shown first: {escape(judged["base_first"])}){escape(grades)}</div>'
            f'{reasons}')


def mc_section(mc: dict, questions: Sequence[dict]) -> str:
    topics = mc["per_topic"]
    rows = "".join(f"<tr><td>{escape(t)}</td><td>{v['n']}</td><td>{v['acc']:.1f}</td>"
                   f"<td>{topics['finetuned'][t]['acc']:.1f}</td></tr>" for t, v in topics["base"].items())
    wrong = [q for q in questions if q["finetuned_pred"] != q["answer"]]
    template = mc["template"].replace("\n", "\\n")  # shown as written in the config
    listing = "".join(
        f"<tr><td>{escape(q['id'])}</td><td>{escape(q['question'])}</td><td>{escape(q['choices'][q['answer']])}</td>"
        f"<td>{escape(q['choices'][q['base_pred']])}</td><td>{escape(q['choices'][q['finetuned_pred']])}</td></tr>"
        for q in wrong)
    return (f"<h2>Multiple-choice benchmark</h2><p class=\"note\">{mc['questions']} questions from "
            f"<code>{escape(mc['file'])}</code>, prompt <code>{escape(template)}</code>, each choice scored by "
            "its log-likelihood as a continuation (lm-evaluation-harness style). acc: highest summed log-likelihood; "
            "acc_norm: divided by the choice's length in characters. Chance is 25%. Per-topic numbers rest on "
            "about ten questions each: read them as hints, not results.</p>"
            f"<table><tr><th>topic</th><th>questions</th><th>base acc</th><th>fine-tuned acc</th></tr>{rows}</table>"
            f"<details><summary>{len(wrong)} questions the fine-tuned model got wrong (acc)</summary>"
            "<table><tr><th>id</th><th>question</th><th>correct</th><th>base chose</th><th>fine-tuned chose</th></tr>"
            f"{listing}</table></details>")


def harness_section(harness: Optional[dict], note: str) -> str:
    if not harness:
        return f"<h2>lm-evaluation-harness</h2><p class=\"note\">{escape(note)}</p>"
    rows = []
    for task, metrics in harness.get("finetuned", {}).items():
        for metric, value in metrics.items():
            base = harness.get("base", {}).get(task, {}).get(metric)
            rows.append(f"<tr><td>{escape(task)}</td><td>{escape(metric)}</td>"
                        f"<td>{'' if base is None else f'{base:.4f}'}</td><td>{value:.4f}</td></tr>")
    return ("<h2>lm-evaluation-harness</h2><table><tr><th>task</th><th>metric</th><th>base</th><th>fine-tuned</th></tr>"
            f"{''.join(rows)}</table>")


def render(result: dict, items: Sequence[dict], sort: str, context: dict[str, str],
           images: Sequence[tuple[Path, str]] = (), mc_questions: Sequence[dict] = (),
           harness_note: str = "", extra_html: str = "") -> str:
    """The whole report as one HTML string (`items` already sorted worst-first by `sort`); `extra_html`:
    a task kind's own sections (preference accuracy, the LLM judge) before the items."""
    meta = " · ".join(f"{escape(k)}: <code>{escape(str(v))}</code>" for k, v in context.items())
    b = result.get("bootstrap", {})
    plots = "".join(_image(path, alt) for path, alt in images if Path(path).is_file())
    sigs = "".join(f"<li>{escape(k)}: <code>{escape(v)}</code></li>" for k, v in result.get("signatures", {}).items())
    parts = [
        "<!DOCTYPE html><html lang=\"tr\"><head><meta charset=\"utf-8\">",
        "<title>hasat review: base vs fine-tuned</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Base vs fine-tuned: review report</h1>",
        f"<p class=\"meta\">{meta}</p>",
        f"<p class=\"headline\">{escape(headline(result))}</p>",
        f"<h2>Summary: {result['test_rows']} test items</h2>",
        summary_table(result),
        f"<p class=\"note\">Intervals: {b.get('confidence', 0.95):.0%} paired bootstrap over test items "
        f"({b.get('resamples', '?')} resamples, seed {b.get('seed', '?')}): both models are scored on the same "
        "resampled items, so the delta's interval shows whether the difference survives a different draw of "
        "test items. <b>n.s.</b> means it does not: this test set cannot tell the models apart on that metric. "
        "chrF / chrF++ / BLEU are sacrebleu corpus scores; ROUGE (Turkish tokenizer, no stemmer), token F1 and "
        "exact match (Turkish-aware lower-casing, punctuation removed) are averages over items; perplexity is "
        "that of the reference answers under each model (lower is better). <i>never stopped</i> counts answers "
        "that hit max_new_tokens without an end-of-sequence token.</p>",
        f"<details><summary>sacrebleu signatures</summary><ul>{sigs}</ul></details>",
        f"<h2>Plots</h2>{plots}" if plots else "",
        mc_section(result["mc"], mc_questions) if "mc" in result else "",
        harness_section(result.get("lm_eval"), harness_note),
        extra_html,
        f"<h2>Test items, worst first</h2><p class=\"note\">Sorted by {escape(SORT_DESCRIPTIONS[sort])}. "
        "Per-item scores: sentence-level chrF, ROUGE-L and token F1 against the reference (Δ: fine-tuned − base), "
        "and the perplexity of the reference answer under that model.</p>",
        *(item_card(rank, item) for rank, item in enumerate(items, start=1)),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _classification_table(result: dict) -> str:
    from pipeline.eval.classification import BASELINES, METRICS, table_rows

    header, *rows = table_rows(result)
    # the rows after the systems' are fine-tuned − each baseline, coloured by their verdicts
    verdicts = [[""] * len(METRICS)] * (len(rows) - len(BASELINES)) + [
        [result["vs_baselines"][name]["verdict"][key] for key, _ in METRICS] for name in BASELINES]
    body = "".join("<tr>" + f"<td>{escape(row[0])}</td>" + "".join(
        f"<td class=\"{_verdict_class(v)}\">{escape(cell)}</td>" for cell, v in zip(row[1:], marks)) + "</tr>"
        for row, marks in zip(rows, verdicts))
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_class_table(result: dict) -> str:
    tuned, tfidf = result["per_class"]["finetuned"], result["per_class"]["tfidf_char_lr"]
    head = ("<tr><th>class</th><th>support</th><th>precision</th><th>recall</th><th>F1</th>"
            "<th>TF-IDF + LR F1</th></tr>")
    body = "".join(f"<tr><td>{escape(label)}</td><td>{row['support']}</td><td>{row['precision']:.1f}</td>"
                   f"<td>{row['recall']:.1f}</td><td>{row['f1']:.1f}</td><td>{tfidf[label]['f1']:.1f}</td></tr>"
                   for label, row in tuned.items())
    return f"<table>{head}{body}</table>"


def _error_card(rank: int, item: dict) -> str:
    tfidf = item["tfidf_char_lr"]
    tfidf_note = "right" if tfidf == item["label"] else f"also wrong: {tfidf}"
    return (f'<div class="item"><h3>#{rank} <span class="src">{escape(item["source"])}</span></h3>'
            f'<div class="text">{escape(item["text"])}</div>'
            f'<div class="scores">actual <b>{escape(item["label"])}</b> · predicted '
            f'<b class="worse">{escape(item["finetuned"])}</b> (probability {item["finetuned_confidence"]:.2f}) · '
            f'TF-IDF + LR: {escape(tfidf_note)}</div></div>')


def render_classification(result: dict, errors: Sequence[dict], context: dict[str, str],
                          images: Sequence[tuple[Path, str]] = ()) -> str:
    """The review report of a classifier: the table against the baselines, plots, per-class scores,
    and every misclassified test text (most confident mistakes first)."""
    from pipeline.eval.classification import headline

    meta = " · ".join(f"{escape(k)}: <code>{escape(str(v))}</code>" for k, v in context.items())
    b = result["bootstrap"]
    plots = "".join(_image(path, alt) for path, alt in images if Path(path).is_file())
    parts = [
        "<!DOCTYPE html><html lang=\"tr\"><head><meta charset=\"utf-8\">",
        "<title>hasat review: classifier vs baselines</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Fine-tuned classifier vs baselines: review report</h1>",
        f"<p class=\"meta\">{meta}</p>",
        f"<p class=\"headline\">{escape(headline(result))}</p>",
        f"<h2>Summary: {result['test_rows']} test texts, {len(result['labels'])} classes</h2>",
        _classification_table(result),
        f"<p class=\"note\">Baselines are trained on the same {result['train_rows']} training texts: the majority "
        "class, and TF-IDF over character 2–5-grams within word boundaries (Turkish-aware lower-casing) with a "
        f"class-balanced logistic regression. Intervals: {b['confidence']:.0%} bootstrap over test texts "
        f"({b['resamples']} resamples, seed {b['seed']}); the differences are paired (same resampled texts), "
        "<b>n.s.</b>: the test split cannot tell the two apart.</p>",
        f"<h2>Plots</h2>{plots}" if plots else "",
        "<h2>Per class (fine-tuned classifier)</h2>",
        _per_class_table(result),
        f"<h2>Misclassified test texts: {len(errors)}</h2><p class=\"note\">Most confident mistakes first "
        "(the probability the classifier gave its wrong answer).</p>",
        *(_error_card(rank, item) for rank, item in enumerate(errors, start=1)),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
