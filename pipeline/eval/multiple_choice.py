"""Multiple-choice benchmark scored by log-likelihood, as lm-evaluation-harness scores
`output_type: multiple_choice` tasks.

For each question the context is the filled prompt template ("Soru: …\\nCevap:") and each choice is
a continuation with a leading space. A choice's score is the sum of the log-probabilities of its
tokens given the context. The harness encodes context + continuation together and takes the
continuation's tokens as what follows the context's own encoding (HFLM `_encode_pair`, which also
moves trailing spaces of the context onto the continuation), with no special tokens added.

Metrics, from `ConfigurableTask.process_results` in lm_eval/api/task.py:
- `acc`: argmax of the summed log-likelihoods is the gold choice;
- `acc_norm`: argmax of log-likelihood / len(choice) in *characters* (`completion_len =
  np.array([float(len(i)) for i in choices])`), the choice text without the leading space;
- `acc_bytes`: the same divided by the UTF-8 byte length (`byte_length`); Turkish letters such as
  ç ğ ı ö ş ü are two bytes, so it differs from acc_norm here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import check_mc_template
from pipeline.errors import HasatError
from pipeline.eval.loglik import span_logprobs

N_CHOICES = 4
LETTERS = "ABCD"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    choices: list[str]
    answer: int
    topic: str


@dataclass(frozen=True)
class QuestionResult:
    question: Question
    loglikelihoods: list[float]
    pred: int  # argmax of the sums (acc)
    pred_norm: int  # argmax per character (acc_norm)
    pred_bytes: int  # argmax per byte (acc_bytes)

    @property
    def correct(self) -> dict[str, float]:
        gold = self.question.answer
        return {"acc": float(self.pred == gold), "acc_norm": float(self.pred_norm == gold),
                "acc_bytes": float(self.pred_bytes == gold)}


def _question(item: object, where: str) -> Question:
    if not isinstance(item, dict):
        raise HasatError(f"{where}: expected a JSON object with id, question, choices, answer")
    missing = [k for k in ("id", "question", "choices", "answer") if k not in item]
    if missing:
        raise HasatError(f"{where}: missing field '{missing[0]}'")
    if not isinstance(item["question"], str) or not item["question"].strip():
        raise HasatError(f"{where}: 'question' must be a non-empty string")
    choices = item["choices"]
    if not isinstance(choices, list) or len(choices) != N_CHOICES:
        got = len(choices) if isinstance(choices, list) else type(choices).__name__
        raise HasatError(f"{where}: 'choices' must be a list of {N_CHOICES} strings (got {got})")
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise HasatError(f"{where}: every choice must be a non-empty string")
    answer = item["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < N_CHOICES:
        raise HasatError(f"{where}: 'answer' must be a choice index 0-{N_CHOICES - 1} (got {answer!r})")
    return Question(str(item["id"]), item["question"].strip(), [c.strip() for c in choices], answer,
                    str(item.get("topic", "")))


def load_questions(path: str | Path) -> list[Question]:
    """Read and validate the benchmark; a bad row stops with `file:line: what is wrong`."""
    path = Path(path)
    if not path.is_file():
        raise HasatError(f"{path}: multiple-choice file not found (data.benchmark; set it to null or eval.mc.enabled=false to skip)")
    questions, seen = [], {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise HasatError(f"{where}: not valid JSON ({err.msg})") from None
            question = _question(item, where)
            if question.id in seen:
                raise HasatError(f"{where}: id '{question.id}' already used on line {seen[question.id]}")
            seen[question.id] = line_no
            questions.append(question)
    if not questions:
        raise HasatError(f"{path}: the multiple-choice file has no questions")
    return questions


def bos_prefix(tokenizer) -> list[int]:
    """[bos] for a tokenizer that starts every text with it (Gemma: without it the model scores far
    worse, and the harness adds it for Gemma too), else []."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if bos is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [bos] else []


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation token ids the way the harness's HFLM splits them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    prefix = bos_prefix(tokenizer)
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    if not context_ids and not prefix:  # the harness starts an empty context with the end-of-text token
        return [tokenizer.eos_token_id], whole
    return prefix + context_ids, whole[len(context_ids):]


def score_questions(model, tokenizer, questions: list[Question], template: str, batch_size: int,
                    desc: str | None = None) -> list[QuestionResult]:
    check_mc_template(template)
    sequences, starts = [], []
    for q in questions:
        context = template.format(question=q.question)
        for choice in q.choices:
            ctx, cont = encode_pair(tokenizer, context, " " + choice)
            sequences.append(ctx + cont)
            starts.append(len(ctx))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    spans = span_logprobs(model, sequences, starts, batch_size, pad_id, desc=desc)
    results = []
    for n, q in enumerate(questions):
        lls = np.array([s.logprob for s in spans[n * N_CHOICES:(n + 1) * N_CHOICES]])
        chars = np.array([float(len(c)) for c in q.choices])
        n_bytes = np.array([float(len(c.encode("utf-8"))) for c in q.choices])
        results.append(QuestionResult(q, [float(v) for v in lls], int(np.argmax(lls)),
                                      int(np.argmax(lls / chars)), int(np.argmax(lls / n_bytes))))
    return results


def correct_matrix(results: list[QuestionResult], metric: str) -> np.ndarray:
    """[100 if correct else 0, 1] per question: the per-item statistics the bootstrap resamples."""
    return np.array([[100.0 * r.correct[metric], 1.0] for r in results])


def accuracy(results: list[QuestionResult], metric: str) -> float:
    return 100.0 * float(np.mean([r.correct[metric] for r in results]))


def per_topic(results: list[QuestionResult], metric: str) -> dict[str, dict]:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in results:
        groups[r.question.topic or "(none)"].append(r.correct[metric])
    return {topic: {"n": len(v), metric: round(100.0 * sum(v) / len(v), 2)} for topic, v in sorted(groups.items())}
