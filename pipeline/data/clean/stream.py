"""The whole clean run: per-row work (rows.py, maybe in workers), then the in-order decisions (dedup.py),
then class balance; in memory (`clean_records`, small data and tests) or streaming a JSONL file
(`clean_file`, the stage). Every dropped row becomes a reject {"source", "reason", "raw"}; a rejects file
starts with a header line (pipeline/data/rejects.py)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import orjson

from pipeline.config import CleanConfig
from pipeline.data.clean.balance import apply_balance
from pipeline.data.clean.dedup import Deduplicator
from pipeline.data.clean.rows import BatchResult, RowCleaner, RowInfo, reject_of, source_file
from pipeline.data.clean.stats import CleanStats, stats_dict
from pipeline.data.clean.workers import cleaned_batches, resolve_workers
from pipeline.data.rejects import rejects_header
from pipeline.errors import HasatError
from pipeline.io import JsonlWriter, iter_jsonl_lines, parse_json_line


def clean_batches(batches: Iterable[BatchResult], cfg: CleanConfig, write: Callable[[bytes, RowInfo], None],
                  write_reject: Callable[[dict], None], stats: CleanStats) -> None:
    """Decide, in order, each row of each cleaned (packed) batch; write kept rows and rejects."""
    dedup = Deduplicator(cfg)
    started = time.perf_counter()
    for batch in batches:
        decisions = dedup.decide(batch)  # before add_batch: it times itself into batch.seconds
        writing = time.process_time()
        for line, info, failure in zip(batch.lines, batch.info, decisions):
            stats.rows_in += 1
            per_source = stats.by_source[source_file(info.source)]
            per_source["in"] += 1
            if failure is None:
                stats.kept += 1
                per_source["kept"] += 1
                write(line, info)
            else:
                stats.rejected += 1
                per_source["rejected"] += 1
                stats.reasons[failure.code] += 1
                write_reject(reject_of(orjson.loads(line), failure.reason))
        batch.seconds["write"] += time.process_time() - writing
        batch.rows_seen["write"] += len(batch.lines)
        stats.add_batch(batch)
    stats.wall_seconds += time.perf_counter() - started


@dataclass
class CleanResult:
    records: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: CleanStats = field(default_factory=CleanStats)
    counts: Counter = field(default_factory=Counter)


def clean_records(records: list[dict], cfg: Optional[CleanConfig] = None, tokenizer: Any = None,
                  detector: Any = None, batch_size: int = 512) -> CleanResult:
    """In memory, for small data and tests: the stage streams through the same pieces."""
    cfg = cfg or CleanConfig()
    cleaner = RowCleaner(cfg, tokenizer, detector)
    result = CleanResult()
    kept: list[dict] = []
    batches = (cleaner.process(records[i:i + batch_size]).pack() for i in range(0, len(records), batch_size))
    clean_batches(batches, cfg, lambda line, info: kept.append(orjson.loads(line)), result.rejects.append,
                  result.stats)
    labels = [r["label"] for r in kept if "label" in r]
    if labels and len(labels) == len(kept):
        apply_balance(kept, labels, cfg.balance.method, cfg.balance.seed, result.records.append,
                      result.rejects.append, result.stats)
    elif cfg.balance.method != "none" and kept:
        raise HasatError(f"clean.balance.method={cfg.balance.method} needs labelled (text + label) rows")
    else:
        result.records.extend(kept)
    result.stats.check()
    result.counts = Counter(stats_dict(result.stats, cfg)["rejected_by_reason"])
    result.counts.update({"rows_in": result.stats.rows_in, "rows_out": len(result.records)})
    return result


class _KeptLines:
    """Writes kept rows and collects their labels: balancing needs the class counts before its pass."""

    def __init__(self, writer: JsonlWriter):
        self.writer = writer
        self.labels: list[str] = []
        self.unlabelled = 0

    def __call__(self, line: bytes, info: RowInfo) -> None:
        if info.label is not None:
            self.labels.append(info.label)
        else:
            self.unlabelled += 1
        self.writer.write_line(line)


def clean_file(in_path: str | Path, out_path: str | Path, rejects_path: str | Path, cfg: CleanConfig,
               tokenizer_file: Optional[str | Path] = None, workers: int = 0,
               spill_dir: Optional[str | Path] = None) -> CleanStats:
    """Clean the JSONL at `in_path` into `out_path` and `rejects_path`, streaming. Balancing labelled
    data needs the class counts first: kept rows are spilled to a file and read back once."""
    stats = CleanStats()
    workers = resolve_workers(workers, Path(in_path).stat().st_size if Path(in_path).is_file() else 0)
    balancing = cfg.balance.method != "none"
    spill = Path(spill_dir or Path(out_path).parent) / "kept-before-balance.jsonl"
    with JsonlWriter(rejects_path) as rejects, JsonlWriter(spill if balancing else out_path) as writer:
        rejects.write(rejects_header("clean"))
        kept = _KeptLines(writer)
        batches = cleaned_batches(iter_jsonl_lines(in_path), cfg, tokenizer_file, workers, str(in_path))
        clean_batches(batches, cfg, kept, rejects.write, stats)
        if balancing:
            writer.close()
            _balance_spilled(spill, out_path, kept, cfg, rejects, stats)
        elif kept.labels:
            stats.labels_before.update(kept.labels)
            stats.labels_after.update(kept.labels)
    stats.check()
    return stats


def _balance_spilled(spill: Path, out_path: str | Path, kept: _KeptLines, cfg: CleanConfig, rejects: JsonlWriter,
                     stats: CleanStats) -> None:
    if kept.unlabelled:
        raise HasatError(f"clean.balance.method={cfg.balance.method} needs labelled (text + label) rows; "
                         f"{kept.unlabelled} rows have no label")
    with JsonlWriter(out_path) as out:
        rows = (parse_json_line(line, f"{spill}:{line_no}") for line_no, line in iter_jsonl_lines(spill))
        apply_balance(rows, kept.labels, cfg.balance.method, cfg.balance.seed, out.write, rejects.write, stats)
    spill.unlink()
