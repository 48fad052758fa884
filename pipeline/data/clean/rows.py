"""The cleaning steps that look at one row alone, for a batch of rows: text fixes, KVKK masking, then the
filters (empty, length in characters and tokens, language) and the keys the dedup decisions need.
`RowCleaner` runs in worker processes on large inputs, so what it returns is cheap to send back."""

from __future__ import annotations

import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from pipeline.config import CleanConfig
from pipeline.data.clean.minhash import MinHasher, key_of_normalised
from pipeline.data.clean.text import (fix_mojibake, normalise_unicode, normalise_whitespace, remove_control_chars,
                                      strip_html)
from pipeline.data.pii import PiiMasker
from pipeline.data.records import is_chat, is_preference, text_slots
from pipeline.data.rejects import reject_record
from pipeline.data.turkish import normalise_for_match
from pipeline.errors import HasatError

# ------------------------------------------------------------------ records


def record_texts(record: dict) -> list[str]:
    return [container[key] for container, key in text_slots(record)]


def joined_text(record: dict) -> str:
    """The record's texts as one string (what length and language are judged on)."""
    return "\n".join(t for t in record_texts(record) if t)


def match_text(record: dict) -> str:
    """What exact and near-duplicate detection compare: texts (and role, label) in order."""
    if is_chat(record):
        return "\n".join(f"{m['role']}: {m['content']}" for m in record["messages"])
    if is_preference(record):
        turns = [f"{m['role']}: {m['content']}" for m in record["prompt"]]
        answers = [f"{k}: {record[k]}" for k in ("chosen", "rejected", "completion", "label") if k in record]
        return "\n".join(turns + answers)
    parts = [record.get(k) or "" for k in ("instruction", "input", "output", "text")]
    if "label" in record:
        parts.append(f"label: {record['label']}")
    return "\n".join(parts)


def empty_field(record: dict) -> str | None:
    """The name of a required text (or the label) that is empty, or None."""
    if is_chat(record):
        for i, message in enumerate(record["messages"]):
            if not message["content"].strip():
                return f"messages[{i}].content"
        return None
    if is_preference(record):
        for i, message in enumerate(record["prompt"]):
            if not message["content"].strip():
                return f"prompt[{i}].content"
        return next((k for k in ("chosen", "rejected", "completion") if k in record and not record[k].strip()), None)
    names = ("text", "label") if "text" in record else ("instruction", "output")
    return next((name for name in names if not str(record[name]).strip()), None)


def source_file(source: str) -> str:
    """`data/x.csv:row 5` -> `data/x.csv`."""
    return source.rsplit(":", 1)[0]


def reject_of(record: dict, reason: str) -> dict:
    """The reject for a record: its fields as `raw`, less the id (derived) and source (named already)."""
    return reject_record(record["source"], reason, {k: v for k, v in record.items() if k not in ("id", "source")})


def same_answers(record: dict) -> Optional["Failure"]:
    """A preference pair whose chosen and rejected answers match (Turkish-aware, case and punctuation
    aside) teaches nothing: quarantined."""
    if "chosen" in record and "rejected" in record and \
            normalise_for_match(record["chosen"]) == normalise_for_match(record["rejected"]):
        return Failure("same_answers", "chosen and rejected are the same answer after cleaning")
    return None


# ------------------------------------------------------------------ per-row work (batch, worker-safe)


class Failure(NamedTuple):
    code: str  # counted in rejected_by_reason
    reason: str  # the reject's text


class RowInfo(NamedTuple):
    """What the in-order decisions need of a cleaned record without parsing its JSON again."""

    source: str
    record_id: str
    is_copy: bool  # a sampling copy made by ingest (`meta.sample_copy`)
    label: Optional[str]


@dataclass
class BatchResult:
    records: Optional[list[dict]]
    failures: list[Optional[Failure]]  # per record: None (survived) or why it fails
    exact_keys: list[Optional[int]]
    signatures: Optional[np.ndarray]  # rows of survivors, in order
    counts: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    rows_seen: Counter = field(default_factory=Counter)
    lines: list[bytes] = field(default_factory=list)  # the cleaned records as JSON (after `pack`)
    info: list[RowInfo] = field(default_factory=list)  # per record (after `pack`)

    def pack(self) -> "BatchResult":
        """Records as JSON lines plus what the in-order decisions need: cheap to send between processes."""
        import orjson

        self.lines = [orjson.dumps(r) for r in self.records]
        self.info = [RowInfo(r["source"], r["id"], bool(r.get("meta", {}).get("sample_copy")), r.get("label"))
                     for r in self.records]
        self.records = None
        return self


class RowCleaner:
    """The steps that look at one row at a time. `tokenizer` (a `tokenizers.Tokenizer` or anything
    with `encode_batch`) is needed only when token bounds are set."""

    def __init__(self, cfg: CleanConfig, tokenizer: Any = None, detector: Any = None):
        self.cfg = cfg
        self.masker = PiiMasker(list(cfg.pii.kinds), dict(cfg.pii.placeholders)) if cfg.pii.enabled else None
        self.tokens_on = cfg.length.min_tokens is not None or cfg.length.max_tokens is not None
        if self.tokens_on and tokenizer is None:
            raise HasatError("clean.length.min_tokens/max_tokens need the base tokenizer (models/base); "
                             "set both to null to switch the token-length filter off")
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else None
        self.longest_token = max(map(len, vocab)) if vocab else None  # characters (= bytes, byte-level BPE)
        self.detector = detector
        if cfg.language.enabled and detector is None:
            from pipeline.data.langid import LanguageDetector

            self.detector = LanguageDetector()
        n = cfg.near_duplicates
        self.hasher = MinHasher(n.num_perm, n.ngram) if n.enabled else None
        self.flagged = 0
        self.uncertain = 0

    def _transforms(self) -> list[tuple[str, Callable[[str], str]]]:
        c = self.cfg
        steps = []
        if c.mojibake:
            steps.append(("mojibake", fix_mojibake))
        if c.html:
            steps.append(("html", strip_html))
        if c.unicode_form != "none":
            steps.append(("unicode", lambda t, form=c.unicode_form: normalise_unicode(t, form)))
        if c.control_chars:
            steps.append(("control_chars", remove_control_chars))
        if c.collapse_whitespace:
            steps.append(("whitespace", normalise_whitespace))
        if self.masker:
            steps.append(("pii", self.masker.mask))
        return steps

    def process(self, records: list[dict]) -> BatchResult:
        result = BatchResult(records, [None] * len(records), [None] * len(records), None)
        self._fix_texts(result)
        for record in records:  # labels are values, not text: trimmed and NFC only
            if "label" in record and isinstance(record["label"], str):
                record["label"] = unicodedata.normalize("NFC", record["label"].strip())
        alive = self._filters(result)
        self._dedup_keys(result, alive)
        return result

    def _fix_texts(self, result: BatchResult) -> None:
        records = result.records
        slots = [(container, key) for record in records for container, key in text_slots(record)]
        for name, fix in self._transforms():
            started = time.process_time()
            before = sum(self.masker.counts.values()) if name == "pii" else 0
            changed = 0
            for container, key in slots:
                value = container[key]
                fixed = fix(value)
                if fixed != value:
                    container[key] = fixed
                    changed += 1
            result.counts[f"changed.{name}"] += changed
            if name == "pii":
                result.counts["pii_total"] += sum(self.masker.counts.values()) - before
            self._time(result, name, len(records), started)
        if self.masker:
            for kind, count in self.masker.counts.items():
                result.counts[f"pii.{kind}"] += count
            self.masker.counts.clear()

    def _filters(self, result: BatchResult) -> list[int]:
        """Positions of the records that pass every filter; the others get their Failure."""
        alive = list(range(len(result.records)))
        alive = self._filter(result, "empty", alive, self._empty)
        alive = self._filter(result, "same_answers", alive, same_answers)
        alive = self._filter(result, "length_chars", alive, self._length_chars)
        joined: dict[int, str] = {}  # the token and language filters judge the same joined text
        if self.tokens_on:
            alive = self._filter_tokens(result, alive, joined)
        if self.detector is not None:
            alive = self._filter(result, "language", alive,
                                 lambda record: self._language(record, joined.get(id(record))))
            result.counts["flagged_language"] += self.flagged
            result.counts["uncertain_language"] += self.uncertain
            self.flagged = self.uncertain = 0
        return alive

    def _dedup_keys(self, result: BatchResult, alive: list[int]) -> None:
        """Exact keys and MinHash signatures of the survivors: the order-dependent decisions come later."""
        started = time.process_time()
        normalised = [normalise_for_match(match_text(result.records[i])) for i in alive]
        if self.cfg.drop_exact_duplicates:
            for i, text in zip(alive, normalised):
                result.exact_keys[i] = key_of_normalised(text)
        self._time(result, "exact_dedup", len(alive), started)
        if self.hasher is not None:
            started = time.process_time()
            result.signatures = self.hasher.signatures_of_texts(normalised)
            self._time(result, "near_dedup", len(alive), started)

    @staticmethod
    def _time(result: BatchResult, step: str, rows: int, started: float) -> None:
        result.seconds[step] += time.process_time() - started
        result.rows_seen[step] += rows

    def _filter(self, result: BatchResult, step: str, alive: list[int],
                check: Callable[[dict], Optional[Failure]]) -> list[int]:
        started = time.process_time()
        kept = []
        for i in alive:
            failure = check(result.records[i])
            if failure:
                result.failures[i] = failure
            else:
                kept.append(i)
        self._time(result, step, len(alive), started)
        return kept

    def _empty(self, record: dict) -> Optional[Failure]:
        if not self.cfg.drop_empty:
            return None
        name = empty_field(record)
        return Failure("empty", f"empty field '{name}' after cleaning") if name else None

    def _length_chars(self, record: dict) -> Optional[Failure]:
        length = sum(len(t) for t in record_texts(record))
        low, high = self.cfg.length.min_chars, self.cfg.length.max_chars
        if low is not None and length < low:
            return Failure("too_short", f"too short: {length} characters < min_chars {low}")
        if high is not None and length > high:
            return Failure("too_long", f"too long: {length} characters > max_chars {high}")
        return None

    def _filter_tokens(self, result: BatchResult, alive: list[int], joined: dict[int, str]) -> list[int]:
        """Tokenize only rows whose length could break a bound: a token holds at least one byte (+1 for
        a SentencePiece-style prefix), and at most as many characters as the longest vocabulary entry.
        `joined` gets each record's joined text, by id(record), for the language filter."""
        started = time.process_time()
        low, high = self.cfg.length.min_tokens, self.cfg.length.max_tokens
        texts = {i: joined_text(result.records[i]) for i in alive}
        joined.update((id(result.records[i]), text) for i, text in texts.items())
        unsure = [i for i, text in texts.items() if not self._surely_fits(text)]
        counts = self._token_counts(texts, unsure)
        result.counts["tokenized_for_length"] += len(unsure)
        kept = []
        for i in alive:
            n = counts.get(i)
            if n is not None and low is not None and n < low:
                result.failures[i] = Failure("too_few_tokens", f"too few tokens: {n} < min_tokens {low}")
            elif n is not None and high is not None and n > high:
                result.failures[i] = Failure("too_many_tokens", f"too many tokens: {n} > max_tokens {high}")
            else:
                kept.append(i)
        self._time(result, "length_tokens", len(alive), started)
        return kept

    def _surely_fits(self, text: str) -> bool:
        low, high = self.cfg.length.min_tokens, self.cfg.length.max_tokens
        size = len(text.encode("utf-8"))
        surely_short_enough = high is None or size + 1 <= high
        surely_long_enough = low is None or (self.longest_token and size / self.longest_token >= low)
        return bool(surely_short_enough and surely_long_enough)

    def _token_counts(self, texts: dict[int, str], unsure: list[int]) -> dict[int, int]:
        if not unsure:
            return {}
        encodings = self.tokenizer.encode_batch([texts[i] for i in unsure], add_special_tokens=False)
        return {i: len(e.ids) if hasattr(e, "ids") else len(e) for i, e in zip(unsure, encodings)}

    def _language(self, record: dict, text: Optional[str] = None) -> Optional[Failure]:
        """Reject (or flag, by `action`) a row only when another language is the top guess with enough
        confidence or p(expected) is very low; a row in between is uncertain: kept, counted, marked."""
        lang = self.cfg.language
        text = joined_text(record) if text is None else text
        if len(text) < lang.min_chars:
            return None
        judged = self.detector.judge(text, lang.expected)
        p = judged.expected_probability
        if p >= lang.min_confidence:
            return None
        other = judged.best != lang.expected and judged.best_probability >= lang.reject_other_confidence
        if not other and p >= lang.reject_below:
            self.uncertain += 1
            _mark(record, judged.best, f"uncertain_{lang.expected}")
            return None
        if other:
            reason = (f"language {judged.best}: p({lang.expected}) = {p:.2f}, p({judged.best}) = "
                      f"{judged.best_probability:.2f} >= reject_other_confidence {lang.reject_other_confidence}")
        else:
            reason = f"language {judged.best}: p({lang.expected}) = {p:.3f} < reject_below {lang.reject_below}"
        if lang.action == "flag":
            self.flagged += 1
            _mark(record, judged.best, f"not_{lang.expected}")
            return None
        return Failure("wrong_language", reason)


def _mark(record: dict, language: str, flag: str) -> None:
    meta = record.get("meta", {})
    record["meta"] = {**meta, "language": language, "flags": [*meta.get("flags", []), flag]}
