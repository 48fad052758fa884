"""RowCleaner over a stream of JSONL lines in batches, in this process or, for large inputs, in a pool of
forked worker processes that is fed only a few batches ahead (memory stays flat however long the input)."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Optional

from pipeline.config import CleanConfig
from pipeline.data.clean.minhash import lsh_bands
from pipeline.data.clean.rows import BatchResult, RowCleaner
from pipeline.io import parse_json_line

_WORKER: Optional[RowCleaner] = None  # this process's cleaner; forked workers inherit it
PARALLEL_FROM_BYTES = 8 << 20  # smaller inputs are cleaned in-process: starting workers costs more


def load_tokenizer_file(path: str | Path) -> object:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _init_worker(cfg: CleanConfig, tokenizer_file: Optional[str | Path]) -> None:
    global _WORKER
    _WORKER = RowCleaner(cfg, load_tokenizer_file(tokenizer_file) if tokenizer_file else None)


def _clean_lines(lines: list[tuple[int, bytes]], name: str) -> BatchResult:
    records = [parse_json_line(line, f"{name}:{line_no}") for line_no, line in lines]
    return _WORKER.process(records).pack()


def resolve_workers(configured: int, input_bytes: int) -> int:
    if configured:
        return configured
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 4) if input_bytes >= PARALLEL_FROM_BYTES else 1


def iter_batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cleaned_batches(lines: Iterable[tuple[int, bytes]], cfg: CleanConfig, tokenizer_file: Optional[str | Path] = None,
                    workers: int = 1, name: str = "input", batch_size: int = 1024) -> Iterator[BatchResult]:
    """Batches through RowCleaner, in order; with workers > 1 in a process pool that is fed a few
    batches ahead only, so memory stays flat however long the input is."""
    # Build the cleaner (tokenizer, fastText model, imports) once, here: forked workers inherit it.
    _init_worker(cfg, tokenizer_file)
    if workers <= 1:
        for chunk in iter_batches(lines, batch_size):
            yield _clean_lines(chunk, name)
        return
    if cfg.near_duplicates.enabled:
        lsh_bands(cfg.near_duplicates.threshold, cfg.near_duplicates.num_perm)  # cached: not once per worker
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: deque = deque()
        for chunk in iter_batches(lines, batch_size):
            pending.append(pool.submit(_clean_lines, chunk, name))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
