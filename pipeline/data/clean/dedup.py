"""The decisions that depend on the rows before: exact and near-duplicates of rows kept so far, and
sampling copies that follow their original. They run in order, in the main process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from pipeline.config import CleanConfig
from pipeline.data.clean.minhash import NearDuplicateIndex
from pipeline.data.clean.rows import BatchResult, Failure, RowInfo


class NearMatch(NamedTuple):
    source: str  # of the kept row it matches
    similarity: float


@dataclass
class _BatchView:
    """A batch's survivors of the row filters and their LSH band keys; positions index the survivors."""

    survivors: list[int]
    candidates: list[list[int]]  # per position: rows of the index sharing a band
    keys: Optional[np.ndarray]  # (positions, bands)
    shares: list[bool]  # per position: another survivor of this batch has one of its band keys
    sizes: Optional[np.ndarray] = None  # (positions, bands): rows the index holds in that bucket already
    in_batch: dict[int, list[int]] = field(default_factory=dict)  # band key -> positions kept and stored so far
    kept: list[int] = field(default_factory=list)  # positions kept, for the index
    stored: list[np.ndarray] = field(default_factory=list)  # per kept position: in which of its buckets it goes

    def source(self, batch: BatchResult, position: int) -> str:
        return batch.info[self.survivors[position]].source


class Deduplicator:
    """Exact keys and the near-duplicate index of the rows kept so far (main process, in order).
    Sampling copies made by ingest (`meta.sample_copy`) follow their original instead."""

    def __init__(self, cfg: CleanConfig):
        self.exact = cfg.drop_exact_duplicates
        n = cfg.near_duplicates
        self.index = NearDuplicateIndex(n.threshold, n.num_perm, bucket_cap=n.bucket_cap) if n.enabled else None
        self.first_source: dict[int, str] = {}
        self.last_original_id = ""  # the last row that is not a sampling copy, and whether it was kept
        self.last_original_kept = False

    def decide(self, batch: BatchResult) -> list[Optional[Failure]]:
        """Per record: None to keep it, or why not; updates the index with the kept rows."""
        decisions = list(batch.failures)
        started = time.process_time()
        batch.rows_seen["dedup_decisions"] += len(batch.info)
        view = self._view(batch)
        position_of = {i: position for position, i in enumerate(view.survivors)}
        for i, info in enumerate(batch.info):
            if info.is_copy:
                decisions[i] = self._copy_decision(info)
                continue
            if decisions[i] is None:
                decisions[i] = self._decide_survivor(batch, view, i, position_of[i])
            self.last_original_id, self.last_original_kept = info.record_id, decisions[i] is None
        if self.index is not None and view.kept:
            self.index.add(batch.signatures[view.kept], view.keys[view.kept],
                           [view.source(batch, p) for p in view.kept], np.array(view.stored))
        batch.seconds["dedup_decisions"] += time.process_time() - started
        return decisions

    def _copy_decision(self, info: RowInfo) -> Optional[Failure]:
        original = info.record_id.rsplit("-", 1)[0]
        kept = self.last_original_kept and self.last_original_id == original
        return None if kept else Failure("copy_of_rejected", "sampling copy of a rejected row")

    def _view(self, batch: BatchResult) -> _BatchView:
        survivors = [i for i, failure in enumerate(batch.failures) if failure is None]
        if self.index is None or not survivors:
            return _BatchView(survivors, [], None, [])
        keys = self.index.band_keys(batch.signatures)
        candidates, sizes = self.index.lookup(keys)
        return _BatchView(survivors, candidates, keys, _shares_a_band(keys), sizes)

    def _decide_survivor(self, batch: BatchResult, view: _BatchView, i: int, position: int) -> Optional[Failure]:
        key = batch.exact_keys[i]
        first = self.first_source.get(key) if key is not None and self.exact else None
        # Band keys that no other row of this batch has cannot match an earlier row in it.
        band_keys = view.keys[position].tolist() if self.index is not None and view.shares[position] else ()
        decision = None
        if first:
            decision = Failure("exact_duplicate", f"exact duplicate of {first}")
        elif self.index is not None and (view.candidates[position] or band_keys):
            decision = self._near(batch, view, band_keys, position)
        if decision is None:
            if key is not None:
                self.first_source[key] = batch.info[i].source
            if self.index is not None:
                self._keep(view, band_keys, position)
        return decision

    def _keep(self, view: _BatchView, band_keys: list[int], position: int) -> None:
        """A kept row goes into each of its buckets that is not full (`BUCKET_CAP`, counting the rows of
        this batch stored there before it)."""
        store = view.sizes[position] < self.index.bucket_cap
        for band, band_key in enumerate(band_keys):  # only keys another row of this batch has
            earlier = view.in_batch.setdefault(band_key, [])
            if store[band] and view.sizes[position, band] + len(earlier) < self.index.bucket_cap:
                earlier.append(position)
            else:
                store[band] = False
        view.kept.append(position)
        view.stored.append(store)

    def _near(self, batch: BatchResult, view: _BatchView, band_keys: list[int], position: int) -> Optional[Failure]:
        """The best match among kept rows of earlier batches (the index) and of this batch so far."""
        candidates = view.candidates[position]
        earlier = {p for key in band_keys for p in view.in_batch.get(key, ())}
        if not candidates and not earlier:
            return None
        batch.counts["near_comparisons"] += len(candidates) + len(earlier)
        signature = batch.signatures[position]
        best = self.index.best_match(signature, candidates)
        match = NearMatch(self.index.labels[best.row], best.similarity) if best else None
        if earlier:
            positions = sorted(earlier)
            agree = np.count_nonzero(batch.signatures[positions] == signature, axis=1)
            top = int(np.argmax(agree))
            similarity = float(agree[top]) / self.index.num_perm
            if similarity >= self.index.threshold and (match is None or similarity > match.similarity):
                match = NearMatch(view.source(batch, positions[top]), similarity)
        if match is None:
            return None
        return Failure("near_duplicate", f"near duplicate of {match.source} (estimated Jaccard {match.similarity:.2f})")


def _shares_a_band(keys: np.ndarray) -> list[bool]:
    """Per row of (rows, bands) band keys: whether another row of the batch has one of its keys."""
    if not len(keys):
        return []
    _, inverse, counts = np.unique(keys.reshape(-1), return_inverse=True, return_counts=True)
    return (counts[inverse].reshape(keys.shape) > 1).any(axis=1).tolist()
