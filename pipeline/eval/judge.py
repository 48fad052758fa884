"""LLM-as-judge: a judge model compares the base and the fine-tuned answer to each test prompt.

Pairwise, MT-Bench style (Zheng et al. 2023): the judge sees the question and two answers, A and B,
explains briefly and ends with [[A]], [[B]] or [[C]] (tie). Every item is judged in both orders (tuned
as A, then base as A): position bias is real, so a verdict that flips with the order counts as a tie,
and the share of items whose verdict survives the swap is reported (position consistency). Optional
single-answer grading on a 1-10 scale ("[[7]]"). Win/tie/loss rates (tuned against base) and mean grades
carry percentile bootstrap intervals over items (pipeline.eval.bootstrap).

The judge is a local model folder (transformers, greedy) or an OpenAI-compatible endpoint
(`POST {url}/chat/completions`); the endpoint's key is read from the environment variable
`eval.judge.api_key_env` and is never written anywhere. The prompts are Turkish.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from pipeline.config import CONF_DIR, JudgeConfig
from pipeline.errors import HasatError
from pipeline.eval.bootstrap import paired_bootstrap, percentile_interval, resample_counts
from pipeline.eval.metrics import mean_score

SYSTEM = ("Sen tarafsız bir hakemsin. Türkçe sorulara verilen yapay zekâ yanıtlarının kalitesini "
          "doğruluk, yararlılık, alaka, ayrıntı düzeyi ve Türkçenin doğruluğu açısından değerlendirirsin.")
PAIR_PROMPT = """Aşağıdaki kullanıcı sorusuna iki yapay zekâ asistanının verdiği yanıtları karşılaştır ve hangisinin \
daha iyi olduğuna karar ver. Yanıtların sırası kararını etkilemesin, uzunluk tek başına üstünlük değildir ve \
asistanların adları önemsizdir. Önce kısa bir gerekçe yaz, sonra son satıra yalnızca kararını şu biçimde yaz: \
A daha iyiyse "[[A]]", B daha iyiyse "[[B]]", berabereyse "[[C]]".

[Kullanıcı sorusu]
{question}

[A asistanının yanıtının başı]
{answer_a}
[A asistanının yanıtının sonu]

[B asistanının yanıtının başı]
{answer_b}
[B asistanının yanıtının sonu]"""
GRADE_PROMPT = """Aşağıdaki kullanıcı sorusuna bir yapay zekâ asistanının verdiği yanıtı değerlendir. Önce kısa bir \
gerekçe yaz, sonra son satıra yanıta 1 ile 10 arasında bir puan ver, tam olarak şu biçimde: "[[puan]]", \
örneğin "[[5]]".

[Kullanıcı sorusu]
{question}

[Asistanın yanıtının başı]
{answer}
[Asistanın yanıtının sonu]"""
# eval.judge.verdict=logits: the instruction asks for the verdict alone; the judge's turn opens with "[["
REASON_FIRST = ("Önce kısa bir gerekçe yaz, sonra son satıra yalnızca kararını şu biçimde yaz:",
                "Önce kısa bir gerekçe yaz, sonra son satıra yanıta 1 ile 10 arasında bir puan ver,")
VERDICT_ONLY = ("Gerekçe yazma, yalnızca kararını şu biçimde yaz:",
                "Gerekçe yazma, yalnızca yanıta 1 ile 10 arasında bir puan ver,")
VERDICT_OPENER = "[["
assert REASON_FIRST[0] in PAIR_PROMPT and REASON_FIRST[1] in GRADE_PROMPT
PAIR_PROMPTS = {"text": PAIR_PROMPT, "logits": PAIR_PROMPT.replace(REASON_FIRST[0], VERDICT_ONLY[0])}
GRADE_PROMPTS = {"text": GRADE_PROMPT, "logits": GRADE_PROMPT.replace(REASON_FIRST[1], VERDICT_ONLY[1])}
VERDICT_RE = re.compile(r"\[\[\s*([ABC])\s*\]\]")
GRADE_RE = re.compile(r"\[\[\s*(10|[1-9])(?:\s*/\s*10)?\s*\]\]")
OUTCOMES = ("win", "tie", "loss")  # of the fine-tuned model against the base


class Judge(Protocol):
    name: str

    def complete(self, prompts: list[str]) -> list[str]:
        """The judge's reply to each user prompt (after the system prompt)."""


@dataclass
class EndpointJudge:
    """An OpenAI-compatible chat completions endpoint (vLLM, llama.cpp server, hasat's own, a hosted API)."""

    url: str
    model: str = "judge"
    api_key_env: str = "HASAT_JUDGE_API_KEY"
    max_tokens: int = 256
    timeout_s: float = 60.0

    @property
    def name(self) -> str:
        return f"{self.model} at {self.url}"

    def _post(self, prompt: str, max_tokens: int) -> str:
        body = {"model": self.model, "temperature": 0, "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.url.rstrip('/')}/chat/completions", json.dumps(body).encode("utf-8"),
                                         headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                reply = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise HasatError(f"eval.judge.url: the judge at {self.url} answered HTTP {err.code} {err.reason}"
                             + (f" (is {self.api_key_env} set?)" if err.code in (401, 403) else "")) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise HasatError(f"eval.judge.url: cannot reach the judge at {self.url} ({reason})") from None
        except json.JSONDecodeError:
            raise HasatError(f"eval.judge.url: the judge at {self.url} did not answer with JSON") from None
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise HasatError(f"eval.judge.url: the judge at {self.url} answered without choices[0].message") from None

    def check(self) -> None:
        """Fail in one line before any evaluation work when the endpoint cannot be reached."""
        self._post("Merhaba", 1)

    def complete(self, prompts: list[str]) -> list[str]:
        return [self._post(prompt, self.max_tokens) for prompt in prompts]


class LocalJudge:
    """A local model: a folder written by the pipeline (models/base, models/export) or a model profile of
    conf/model/ (e.g. `gemma3_270m`, built from its offline package when the judge starts).

    `complete` answers greedily. `choose` (eval.judge.verdict=logits) starts the judge's turn with "[[" and
    takes the most probable of the allowed next tokens: a small model that rarely writes a well-formed
    verdict still gives one, and the reply records the probabilities instead of a reason."""

    def __init__(self, location: str, max_new_tokens: int = 256, batch_size: int = 8, seed: int = 42):
        from pipeline.train.modeling import device, load_saved, require_model_folder

        profile = Path(CONF_DIR) / "model" / f"{location}.yaml"
        if not Path(location).exists() and "/" not in location and profile.is_file():
            from pipeline.config_loader import load_config
            from pipeline.train.modeling import load_base

            model_cfg = load_config([f"model={location}"]).model
            self.name = f"model profile {location} ({model_cfg.name})"
            self.tokenizer, self.model = load_base(model_cfg, seed)
        else:
            try:
                require_model_folder(location)
            except HasatError as err:
                raise HasatError(f"eval.judge.model: {err} (or name a model profile of conf/model/)") from None
            self.name = f"local model {location}"
            self.tokenizer, self.model = load_saved(location)
        self.model.to(device()).eval()
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def check(self) -> None:
        return None

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM},
                                                  {"role": "user", "content": prompt}],
                                                 add_generation_prompt=True, tokenize=True, return_dict=False)
        return list(ids["input_ids"]) if isinstance(ids, dict) else list(ids)

    def complete(self, prompts: list[str]) -> list[str]:
        from pipeline.eval.generation import generate

        outs = generate(self.model, self.tokenizer, [self._prompt_ids(p) for p in prompts], self.max_new_tokens,
                        self.batch_size, desc="evaluate: judge")
        return [o.text for o in outs]

    def choose(self, prompts: list[str], options: list[str]) -> list[str]:
        """For each prompt, "[[X]] (p ...)": X the most probable option after the judge's turn opens with "[["
        (options that are not one token are left out; none left is an error)."""
        import torch

        from pipeline.progress import Progress

        opener = self.tokenizer.encode(VERDICT_OPENER, add_special_tokens=False)
        ids = {o: self.tokenizer.encode(o, add_special_tokens=False) for o in options}
        single = {o: i[0] for o, i in ids.items() if len(i) == 1}
        if not single:
            raise HasatError(f"eval.judge.verdict=logits: none of {options} is one token for this judge's tokenizer")
        replies, shown = [], Progress(len(prompts), "evaluate: judge (logits)", unit="prompt")
        with torch.inference_mode():
            for prompt in prompts:
                input_ids = torch.tensor([self._prompt_ids(prompt) + opener], device=self.model.device)
                # the last position's logits only: a 262k vocabulary over every position costs most of the time
                logits = self.model(input_ids=input_ids, logits_to_keep=1).logits[0, -1].float()
                probs = torch.softmax(logits[list(single.values())], dim=0).tolist()
                ranked = sorted(zip(single, probs), key=lambda kv: -kv[1])
                replies.append(f"[[{ranked[0][0]}]] (p " + ", ".join(f"{o} {p:.2f}" for o, p in ranked) + ")")
                shown.update()
        shown.close()
        return replies


def make_judge(cfg: JudgeConfig):
    if cfg.url:
        if cfg.verdict == "logits":
            raise HasatError("eval.judge.verdict=logits needs a local judge (eval.judge.model), not an endpoint")
        return EndpointJudge(cfg.url, cfg.endpoint_model, cfg.api_key_env, cfg.max_new_tokens, cfg.timeout_s)
    if cfg.model:
        return LocalJudge(cfg.model, cfg.max_new_tokens)
    raise HasatError("eval.judge.enabled=true needs eval.judge.model (a local model folder) or eval.judge.url "
                     "(an OpenAI-compatible endpoint)")


def ready_judge(cfg: JudgeConfig):
    """The configured judge, checked reachable; None when `eval.judge.enabled` is false."""
    if not cfg.enabled:
        return None
    judge = make_judge(cfg)
    judge.check()
    return judge


def ask(judge, cfg: JudgeConfig, prompts: list[str], options: list[str]) -> list[str]:
    """The judge's replies: written (verdict=text), or its most probable option (verdict=logits)."""
    if cfg.verdict != "logits":
        return judge.complete(prompts)
    if not hasattr(judge, "choose"):
        raise HasatError(f"eval.judge.verdict=logits: the judge {judge.name} gives no token probabilities")
    return judge.choose(prompts, options)


def parse_verdict(text: str) -> Optional[str]:
    """A, B or C from the judge's last [[X]]; None when it gave none."""
    found = VERDICT_RE.findall(text or "")
    return found[-1] if found else None


def parse_grade(text: str) -> Optional[int]:
    found = GRADE_RE.findall(text or "")
    return int(found[-1]) if found else None


def winner(verdict: Optional[str], tuned_is: str) -> str:
    """'tuned', 'base' or 'tie' from a verdict, given which letter the tuned answer had."""
    if verdict in ("A", "B"):
        return "tuned" if verdict == tuned_is else "base"
    return "tie"  # [[C]], or no verdict at all (counted apart as unparsed)


def combine(tuned_first: str, base_first: str) -> tuple[str, bool]:
    """(final verdict, position consistent): a verdict that changes with the order is a tie."""
    consistent = tuned_first == base_first
    return (tuned_first if consistent else "tie"), consistent


def _rate(values: np.ndarray, counts: np.ndarray, confidence: float) -> dict:
    stats = np.stack([100.0 * values, np.ones_like(values)], axis=1)
    ci = percentile_interval(mean_score(counts @ stats), confidence)
    return {"value": round(float(mean_score(stats.sum(axis=0))), 2), "low": round(ci.low, 2),
            "high": round(ci.high, 2)}


def judge_items(cfg: JudgeConfig, items: list[dict], resamples: int, confidence: float, seed: int,
                judge=None) -> dict:
    """Judge every item (prompt, base, finetuned) in both orders; adds `judge` to each item and returns
    eval.json's `judge` section."""
    if judge is None:
        judge = make_judge(cfg)
        judge.check()
    items = items[: cfg.max_items] if cfg.max_items else items
    if not items:
        raise HasatError("eval.judge: no test items to judge")
    prompts = []
    for item in items:
        template = PAIR_PROMPTS[cfg.verdict]
        prompts.append(template.format(question=item["prompt"], answer_a=item["finetuned"], answer_b=item["base"]))
        prompts.append(template.format(question=item["prompt"], answer_a=item["base"], answer_b=item["finetuned"]))
    replies = ask(judge, cfg, prompts, ["A", "B", "C"])
    finals, consistent, unparsed = [], [], 0
    for i, item in enumerate(items):
        first, second = replies[2 * i], replies[2 * i + 1]
        v1, v2 = parse_verdict(first), parse_verdict(second)
        unparsed += (v1 is None) + (v2 is None)
        w1, w2 = winner(v1, "A"), winner(v2, "B")
        final, same = combine(w1, w2)
        finals.append(final)
        both = v1 is not None and v2 is not None  # consistency is judged where both orders gave a verdict
        if both:
            consistent.append(same)
        item["judge"] = {"verdict": final, "tuned_first": w1, "base_first": w2,
                         "position_consistent": same if both else None,
                         "reasons": {"tuned shown first": first.strip(), "base shown first": second.strip()}}
    counts = resample_counts(len(items), resamples, seed)
    outcome = {"win": "tuned", "tie": "tie", "loss": "base"}
    section = {"judge": judge.name, "verdict": cfg.verdict, "items": len(items), "orders": 2,
               **{k: _rate(np.array([f == outcome[k] for f in finals], dtype=float), counts, confidence)
                  for k in OUTCOMES},
               "position_consistency": _rate(np.array(consistent, dtype=float),
                                             resample_counts(len(consistent), resamples, seed), confidence)
               if consistent else None,
               "position_consistency_items": len(consistent),
               "unparsed_verdicts": unparsed,
               "rule": "a verdict that flips when the answers swap places counts as a tie"}
    if cfg.single_grade:
        section["grades"] = grade_items(judge, cfg, items, counts, confidence)
    return section


def grade_items(judge, cfg: JudgeConfig, items: list[dict], counts: np.ndarray, confidence: float) -> dict:
    """Single-answer grading (1-10) of both answers; items without a readable grade are left out."""
    prompts = [GRADE_PROMPTS[cfg.verdict].format(question=item["prompt"], answer=item[side])
               for item in items for side in ("base", "finetuned")]
    replies = ask(judge, cfg, prompts, [str(grade) for grade in range(1, 11)])
    grades = {"base": [], "finetuned": []}
    for i, item in enumerate(items):
        for j, side in enumerate(("base", "finetuned")):
            grade = parse_grade(replies[2 * i + j])
            item["judge"][f"{side}_grade"] = grade
            grades[side].append(grade)
    keep = [i for i in range(len(items)) if grades["base"][i] is not None and grades["finetuned"][i] is not None]
    if not keep:
        return {"graded_items": 0}
    stats = {side: np.array([[grades[side][i], 1.0] for i in keep]) for side in grades}
    kept_counts = resample_counts(len(keep), counts.shape[0], 0) if len(keep) != counts.shape[1] else counts
    paired = paired_bootstrap(stats["base"], stats["finetuned"], mean_score, kept_counts, confidence)
    return {"graded_items": len(keep), "base": round(paired.base, 2), "finetuned": round(paired.finetuned, 2),
            "delta": round(paired.delta, 2), "delta_ci": [round(paired.delta_ci.low, 2), round(paired.delta_ci.high, 2)]}


def mlflow_numbers(section: dict) -> dict[str, float]:
    numbers = {f"judge.{k}": section[k]["value"] for k in (*OUTCOMES, "position_consistency") if section[k]}
    numbers.update({f"judge.{k}.low": section[k]["low"] for k in OUTCOMES})
    numbers.update({f"judge.{k}.high": section[k]["high"] for k in OUTCOMES})
    grades = section.get("grades", {})
    numbers.update({f"judge.grade.{k}": grades[k] for k in ("base", "finetuned", "delta") if k in grades})
    return numbers


def section_html(section: dict) -> str:
    cells = "".join(f"<tr><td>{k}</td><td>{section[k]['value']:.1f}</td>"
                    f"<td>[{section[k]['low']:.1f}, {section[k]['high']:.1f}]</td></tr>"
                    for k in (*OUTCOMES, "position_consistency") if section[k])
    grades = section.get("grades", {})
    graded = (f"<p>Single-answer grades (1-10, {grades['graded_items']} items): base {grades['base']:.2f}, "
              f"fine-tuned {grades['finetuned']:.2f}, delta {grades['delta']:+.2f} {grades['delta_ci']}.</p>"
              if grades.get("graded_items") else "")
    how = (" (verdict: its most probable of A/B/C after \"[[\", no written reason)"
           if section.get("verdict") == "logits" else "")
    return (f"<h2>LLM judge: fine-tuned vs base</h2><p class=\"note\">Judge: {escape(section['judge'])}{how}; "
            f"{section['items']} items, each judged in both orders; {escape(section['rule'])}. Rates in % of items "
            f"with percentile bootstrap intervals; {section['unparsed_verdicts']} replies had no verdict (tie); "
            f"position consistency over the {section['position_consistency_items']} items with a verdict in both "
            "orders. "
            "A small local judge is weak: read its reasons below before trusting the rates.</p>"
            f"<table><tr><th>outcome (fine-tuned)</th><th>%</th><th>interval</th></tr>{cells}</table>{graded}")


def summary_lines(section: dict) -> list[str]:
    w, t, lo, pc = (section[k] for k in ("win", "tie", "loss", "position_consistency"))
    consistency = (f"position-consistent {pc['value']:.1f}% of {section['position_consistency_items']}" if pc
                   else "no item got a verdict in both orders")
    how = ", verdicts read from its logits" if section.get("verdict") == "logits" else ""
    return [f"judge ({section['judge']}{how}, {section['items']} items, both orders): fine-tuned wins {w['value']:.1f}% "
            f"[{w['low']:.1f}, {w['high']:.1f}], ties {t['value']:.1f}%, loses {lo['value']:.1f}% "
            f"[{lo['low']:.1f}, {lo['high']:.1f}]; {consistency}; {section['unparsed_verdicts']} replies without "
            "a verdict"]
