"""One file, then every source: rows stream to `emit` (records) or `reject` (rejects), with sampling
weights and per-file counts; `ingest` is the in-memory form for small data and tests.

Every row read ends in exactly one place: a record, or a reject {"source", "reason", "raw"} whose
`source` is `file:line` (JSONL), `file:item N` (JSON array) or `file:row N` (CSV, Parquet, HF).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import orjson

from pipeline.config import SourceConfig
from pipeline.data.encoding import first_bad_byte
from pipeline.data.ingest.readers import open_rows
from pipeline.data.ingest.rows import Row, RowError, safe_raw, utf8_or_none
from pipeline.data.ingest.schemas import (check_columns, peek_schema, rename, row_schema, schema_of_columns,
                                          to_record)
from pipeline.data.ingest.sources import LinkReport, detect_format, resolve_sources
from pipeline.data.rejects import check_reject_share, reject_record
from pipeline.errors import HasatError


@dataclass
class FileStats:
    format: str = ""
    schema: str = ""
    encoding: str = ""
    read: int = 0
    kept: int = 0
    rejected: int = 0
    sampled_out: int = 0
    copies_added: int = 0
    weight: float = 1.0
    reasons: Counter = field(default_factory=Counter)
    first_reject: dict = field(default_factory=dict)  # code -> source of its first row
    schemas: Counter = field(default_factory=Counter)  # rows kept per schema (a file may mix chat kinds)

    @property
    def invalid(self) -> int:
        return self.rejected - self.sampled_out


@dataclass
class IngestStats:
    files: dict = field(default_factory=dict)  # name -> FileStats
    links: LinkReport = field(default_factory=LinkReport)  # symbolic link loops, dangling links, second paths

    def totals(self) -> dict:
        keys = ("read", "kept", "rejected", "sampled_out", "copies_added")
        return {key: sum(getattr(s, key) for s in self.files.values()) for key in keys}

    def reasons(self) -> Counter:
        return sum((s.reasons for s in self.files.values()), Counter())


@dataclass
class IngestResult:
    records: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: IngestStats = field(default_factory=IngestStats)

    @property
    def rows_read_by_file(self) -> dict[str, int]:
        return {name: s.read for name, s in self.stats.files.items()}


@dataclass
class Sampler:
    """Seeded per source: weight w keeps each row floor(w) times, plus once more with chance frac(w)."""

    weight: float
    rng: random.Random

    def copies(self) -> int:
        whole = int(self.weight)
        return whole + (1 if self.rng.random() < self.weight - whole else 0)


def _may_hold_surrogates(raw: str) -> bool:
    return "\\u" in raw or utf8_or_none(raw) is None


def _schema(spec: SourceConfig, name: str, columns: Optional[list[str]], rows: Iterator[Row], mapping: dict,
            seen_mapped: set) -> tuple[str, Iterator[Row]]:
    """The configured schema, else the header's, else the first rows' (which are handed back)."""
    schema = spec.schema
    if columns is not None:
        schema = schema if schema != "auto" else schema_of_columns(mapping.get(c, c) for c in columns) or "alpaca"
        check_columns(name, columns, mapping, schema)
    elif schema == "auto":
        try:
            schema, rows = peek_schema(rows, name)
        except HasatError:
            _check_mapped_seen(name, mapping, seen_mapped)  # a mapping that matched nothing is the likelier cause
            raise
    return schema, rows


def _record_of(row: Row, schema: str, per_row: bool) -> tuple[dict, str]:
    """(the row as a record, its schema), or RowError with the reason it is rejected. `per_row`: the
    file's schema was detected, so each row's is too (row_schema)."""
    if row.error:
        raise row.error
    if per_row:
        schema = row_schema(row.item, schema)
    try:
        record = to_record(row.item, row.source, schema)  # its id hashes the fields as UTF-8 JSON
        if _may_hold_surrogates(row.raw):
            orjson.dumps(record)  # a lone surrogate cannot be written as UTF-8: reject the row, not the file
    except (orjson.JSONEncodeError, TypeError):
        bad = first_bad_byte(row.raw)
        raise RowError("undecodable_bytes",
                       f"undecodable {bad}" if bad else "text holds a lone surrogate (a broken \\u escape)") from None
    return record, schema


def ingest_file(spec: SourceConfig, target: Path | str, sampler: Optional[Sampler], emit: Callable[[dict], None],
                reject: Callable[[dict], None], max_reject_share: float = 1.0) -> FileStats:
    """Stream one file's rows to `emit` (records) and `reject` (rejects); return its counts."""
    name = str(target)
    fmt = detect_format(Path(target), spec.format) if isinstance(target, Path) else spec.format
    stats = FileStats(format=fmt, weight=sampler.weight if sampler else 1.0)
    opened = open_rows(spec, target, fmt)
    stats.encoding, stats.format = opened.encoding, opened.format
    mapping = dict(spec.columns or {})
    seen_mapped: set[str] = set()

    def renamed(rows: Iterator[Row]) -> Iterator[Row]:
        for row in rows:
            if isinstance(row.item, dict):
                seen_mapped.update(user for user in mapping if user in row.item)
                row.item = rename(row.item, mapping)
            yield row

    rows = renamed(opened.rows) if mapping else opened.rows
    stats.schema, rows = _schema(spec, name, opened.columns, rows, mapping, seen_mapped)
    per_row = spec.schema == "auto"
    for row in rows:
        stats.read += 1
        try:
            record, schema = _record_of(row, stats.schema, per_row)
        except RowError as err:
            _reject(stats, reject, row.source, err.code, str(err), row.raw)
            continue
        stats.schemas[schema] += 1
        _emit_sampled(stats, record, row, sampler, emit, reject)
    if len(stats.schemas) > 1:
        stats.schema = "+".join(sorted(stats.schemas))
    if stats.read == 0:
        raise HasatError(f"{name}: file is empty (no data rows)")
    if opened.columns is None and stats.read > stats.invalid:
        _check_mapped_seen(name, mapping, seen_mapped)
    _check_rejects(name, stats, max_reject_share)
    return stats


def _emit_sampled(stats: FileStats, record: dict, row: Row, sampler: Optional[Sampler], emit: Callable[[dict], None],
                  reject: Callable[[dict], None]) -> None:
    """A weight below 1 drops some rows (as rejects, so they are accounted); above 1 adds marked copies."""
    copies = sampler.copies() if sampler else 1
    if copies == 0:
        stats.sampled_out += 1
        _reject(stats, reject, row.source, "sampled_out", f"sampled out (source weight {sampler.weight})", row.raw)
        return
    stats.kept += 1
    emit(record)
    for copy in range(1, copies):
        stats.copies_added += 1
        emit({**record, "id": f"{record['id']}-{copy}", "meta": {**record["meta"], "sample_copy": copy}})


def _check_mapped_seen(name: str, mapping: dict, seen: set) -> None:
    never = [user for user in mapping if user not in seen]
    if never:
        raise HasatError(f"{name}: mapped column(s) {', '.join(repr(m) for m in never)} found in no row")


def _reject(stats: FileStats, reject: Callable[[dict], None], source: str, code: str, reason: str, raw: str) -> None:
    stats.rejected += 1
    stats.reasons[code] += 1
    stats.first_reject.setdefault(code, f"{reason} at {source}")
    reject(reject_record(source, reason, safe_raw(raw)))


def _check_rejects(name: str, stats: FileStats, max_reject_share: float) -> None:
    if stats.kept == 0 and stats.sampled_out == 0:
        code, _ = stats.reasons.most_common(1)[0]
        raise HasatError(f"{name}: no usable rows ({stats.rejected} rejected; first: {stats.first_reject[code]})")

    def most_often() -> str:
        code, count = (stats.reasons - Counter({"sampled_out": stats.sampled_out})).most_common(1)[0]
        return f"most often {code} ({count}), first: {stats.first_reject[code]}"

    check_reject_share(name, stats.invalid, stats.read, max_reject_share, "max_reject_share", most_often)


def ingest_stream(root: str | Path, sources: list[SourceConfig], defaults: SourceConfig,
                  emit: Callable[[dict], None], reject: Callable[[dict], None], seed: int = 42,
                  max_reject_share: float = 1.0) -> IngestStats:
    """Read every source under `root` in order; rows go to `emit` / `reject` as they are read."""
    stats = IngestStats()
    for spec, target in resolve_sources(root, sources, defaults, stats.links):
        sampler = None
        if spec.weight is not None and spec.weight != 1.0:
            if spec.weight <= 0:
                raise HasatError(f"source {spec.path}: weight {spec.weight} must be positive")
            sampler = Sampler(spec.weight, random.Random(f"{seed}:{spec.path}:{target}"))
        stats.files[str(target)] = ingest_file(spec, target, sampler, emit, reject, max_reject_share)
    return stats


def ingest(path: str | Path, configured_format: str = "auto", schema: str = "auto", columns: Optional[dict] = None,
           encoding: str = "auto", sources: Optional[list[SourceConfig]] = None, seed: int = 42,
           max_reject_share: float = 1.0) -> IngestResult:
    """In memory, for small data and tests: the stage streams through `ingest_stream` instead."""
    result = IngestResult()
    defaults = SourceConfig(path=str(path), format=configured_format, schema=schema, encoding=encoding,
                            columns=dict(columns or {}))
    result.stats = ingest_stream(path, list(sources or []), defaults, result.records.append, result.rejects.append,
                                 seed, max_reject_share)
    return result
