"""The data report's numbers, gathered from what the data stages left behind: their stats JSONs, their
rejects files and the tokenized rows. Every input may be missing or lack keys (an older stage, a task
kind without answers): a section then says what it lacks instead of failing.

`collect()` returns plain values; `pipeline.data.report_html` draws them. Files are streamed, so a
large corpus costs one pass and little memory; a reject's raw row is cut to a short prefix."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from pipeline.data.rejects import HEADER_KEY

EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 300
MAX_BINS = 40
IGNORE_INDEX = -100
_SOURCE_SUFFIX = re.compile(r":(\d+|row \d+|item \d+|line \d+)$")
_TOO_LONG = re.compile(r"too long: (?:prompt alone is )?(\d+) tokens")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass
class ReasonGroup:
    reason: str  # the reason with its numbers and row names generalised
    count: int = 0
    examples: list[dict] = field(default_factory=list)


@dataclass
class StageRejects:
    total: int = 0
    groups: dict[str, ReasonGroup] = field(default_factory=dict)
    languages: Counter = field(default_factory=Counter)  # clean: the detected language of rejected rows


@dataclass
class SourceTokens:
    rows: int = 0
    truncated: int = 0
    tokens: int = 0
    fertility_tokens: int = 0  # answer tokens (labelled) or text tokens (classification)
    fertility_words: int = 0


@dataclass
class DataReport:
    stats: dict[str, dict]  # stage -> its stats JSON ({} when missing)
    rejects: dict[str, StageRejects]
    tokens: dict[str, SourceTokens]  # source file -> tokenized rows
    lengths_kept: list[int]
    lengths_all: list[int]  # before the length filter: kept, dropped (from the reason) and truncated rows
    lengths_all_exact: bool  # False when truncated rows stand in at max_seq_len (their full length unknown)
    flagged_languages: Counter


def source_file(source: str) -> str:
    """`data/x.jsonl:12` -> `data/x.jsonl` (also `file:row N`, `file:item N`)."""
    return _SOURCE_SUFFIX.sub("", str(source))


def reason_group(reason: str) -> str:
    """Reasons name rows and numbers ("exact duplicate of a.jsonl:3", "too long: 412 tokens"): keep the
    kind so that reasons of one kind fall together."""
    reason = str(reason)
    for kind in ("exact duplicate", "near duplicate"):
        if reason.startswith(kind):
            return kind
    language = re.match(r"language (\S+):", reason)
    if language:
        return f"language {language.group(1)}"
    return _NUMBER.sub("N", reason)[:120]


def read_stats(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _lines(path: Path) -> Iterator[dict]:
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict):
                    yield item


def _prefix(raw) -> tuple[str, int]:
    """A reject's raw row as text, cut to EXAMPLE_CHARS, and its full length in characters."""
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    return (text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"), len(text)


def _rejects(path: Optional[Path]) -> Iterator[dict]:
    """A rejects file's rows, without its header line (pipeline.data.rejects writes one)."""
    return (item for item in (_lines(path) if path else ()) if HEADER_KEY not in item)


def read_rejects(path: Path) -> StageRejects:
    out = StageRejects()
    for item in _rejects(path):
        reason = str(item.get("reason", "(no reason)"))
        key = reason_group(reason)
        group = out.groups.setdefault(key, ReasonGroup(key))
        group.count += 1
        out.total += 1
        language = re.match(r"language (\S+):", reason)
        if language:
            out.languages[language.group(1)] += 1
        if len(group.examples) < EXAMPLES_PER_REASON:
            raw, n_chars = _prefix(item.get("raw", item.get("id", "")))
            group.examples.append({"source": str(item.get("source", "?")), "reason": reason, "raw": raw,
                                   "raw_chars": item.get("raw_chars", n_chars)})
    out.groups = dict(sorted(out.groups.items(), key=lambda kv: -kv[1].count))
    return out


def _fertility(row: dict) -> tuple[int, int]:
    """(tokens, words) of a row's answer (labelled tokens over the reference's words), or of its text
    for a classifier's row; (0, 0) when the row has neither."""
    if isinstance(row.get("reference"), str) and isinstance(row.get("labels"), list):
        return sum(1 for t in row["labels"] if t != IGNORE_INDEX), len(row["reference"].split())
    if isinstance(row.get("text"), str):
        return len(row.get("input_ids") or []), len(row["text"].split())
    return 0, 0


def read_tokenized(path: Path) -> tuple[dict[str, SourceTokens], list[int], int]:
    """Per source file: rows, truncated rows, tokens, fertility counts; every row's length; and how
    many rows were truncated."""
    by_source: dict[str, SourceTokens] = defaultdict(SourceTokens)
    lengths, truncated = [], 0
    for row in _lines(path):
        n = len(row.get("input_ids") or [])
        counts = by_source[source_file(row.get("source", "?"))]
        counts.rows += 1
        counts.tokens += n
        if row.get("truncated"):
            counts.truncated += 1
            truncated += 1
        tokens, words = _fertility(row)
        counts.fertility_tokens += tokens
        counts.fertility_words += words
        lengths.append(n)
    return dict(sorted(by_source.items())), lengths, truncated


def flagged_languages(clean_rows: Path) -> Counter:
    """clean.language.action=flag keeps rows in another language and names it in meta.language."""
    found: Counter = Counter()
    for row in _lines(clean_rows):
        meta = row.get("meta")
        if isinstance(meta, dict) and meta.get("language"):
            found[str(meta["language"])] += 1
    return found


def collect(stats_files: dict[str, Path], rejects_files: dict[str, Path], tokenized: Path,
            clean_rows: Optional[Path] = None) -> DataReport:
    stats = {stage: read_stats(path) for stage, path in stats_files.items()}
    rejects = {stage: read_rejects(path) for stage, path in rejects_files.items()}
    tokens, kept, n_truncated = read_tokenized(tokenized)
    dropped = _dropped_lengths(rejects_files.get("tokenize"))
    max_seq_len = stats.get("tokenize", {}).get("max_seq_len")
    # a truncated row's full length is not kept: it counts at max_seq_len (the report says so)
    return DataReport(stats, rejects, tokens, kept, kept + dropped,
                      lengths_all_exact=not n_truncated or not isinstance(max_seq_len, int),
                      flagged_languages=flagged_languages(clean_rows) if clean_rows else Counter())


def _dropped_lengths(path: Optional[Path]) -> list[int]:
    """Token counts of the rows tokenize dropped as too long (their reason says how long)."""
    lengths = []
    for item in _rejects(path):
        found = _TOO_LONG.search(str(item.get("reason", "")))
        if found:
            lengths.append(int(item.get("n_tokens", found.group(1))))
    return lengths


def nice_bin_width(longest: int, max_bins: int = MAX_BINS) -> int:
    """1, 2, 5, 10, 20, 50, ... tokens: the smallest that gives at most `max_bins` bins."""
    width, steps = 1, (2, 2.5, 2)
    i = 0
    while longest / width > max_bins:
        width = int(width * steps[i % 3])
        i += 1
    return max(1, width)


def histogram(series: dict[str, list[int]]) -> tuple[int, list[dict]]:
    """Counts per bin of token length for each series, on shared bins: (bin width, rows of
    {tokens: bin start, <series>: count})."""
    longest = max((max(v) for v in series.values() if v), default=0)
    width = nice_bin_width(longest)
    n_bins = longest // width + 1
    rows = [{"tokens": i * width, **{name: 0 for name in series}} for i in range(n_bins)]
    for name, values in series.items():
        for value in values:
            rows[value // width][name] += 1
    return width, rows
