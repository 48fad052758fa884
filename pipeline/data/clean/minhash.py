"""Exact keys and MinHash/LSH near-duplicate search that keep memory flat on millions of rows (the index
the in-order decisions in dedup.py query).

Exact: a 64-bit hash of the Turkish-normalised text (case, punctuation and spacing ignored).

Near: MinHash signatures of word n-gram shingles, in datasketch's `affine32` scheme (same
permutations, same values as `datasketch.MinHash.update_batch`, computed for a whole batch of rows in
numpy), and LSH banding with datasketch's optimal (bands, rows) for the threshold, weighted for
recall. datasketch's own `MinHashLSH` keeps about 2 KB of Python objects per row (~2 GB for a million rows), so the bands
live here in sorted numpy runs (12 bytes per band per row) and every LSH candidate is verified on
its estimated Jaccard similarity before a row is called a near-duplicate.

A bucket (one band's key) holds at most `bucket_cap` rows (clean.near_duplicates.bucket_cap, 64):
templated rows ("Soru {i}: ...") share the template's band keys, and an unbounded bucket makes every
new row verify against all rows before it (quadratic: 20k such rows took 221 s). Once a bucket is
full, later rows are still compared with its first `bucket_cap` rows and with every row in their
other, uncrowded buckets, but are not stored in it.
A true near-duplicate shares most bands with its original, so it is mostly still found through them
(on templated data a few are missed: see docs/data.md).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional

import numpy as np
import xxhash

from pipeline.data.turkish import normalise_for_match

_U32 = np.uint32
_MASK32 = np.uint64(0xFFFFFFFF)
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_FMIX32 = (_U32(16), _U32(0x85EBCA6B), _U32(13), _U32(0xC2B2AE35), _U32(16))
BUCKET_CAP = 64  # rows stored per LSH bucket: bounds the verifications per row at bands x BUCKET_CAP
_BYTE_POWERS = np.array([pow(0x100000001B3, k, 1 << 64) for k in range(64)], dtype=np.uint64)


def exact_key(text: str) -> int:
    """Rows whose texts match after Turkish-aware normalisation share this key."""
    return key_of_normalised(normalise_for_match(text))


def key_of_normalised(normalised: str) -> int:
    return xxhash.xxh3_64_intdigest(normalised.encode())


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (what datasketch's affine32 scheme pre-mixes inputs with)."""
    s1, m1, s2, m2, s3 = _FMIX32
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


def _fmix64(values: np.ndarray) -> np.ndarray:
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


def _word_hashes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of every word, where it starts) in UTF-8 bytes whose words are split by spaces and
    newlines: fmix64 of the sum of (byte + 1) * 0x100000001B3**position (positions from 63 on count
    as 63). Summed one byte position at a time over the words still that long: a few numpy calls per
    position instead of a dozen passes over every byte."""
    is_sep = (data == 32) | (data == 10)
    starts = ~is_sep
    ends = starts.copy()
    starts[1:] &= is_sep[:-1]
    ends[:-1] &= is_sep[1:]
    word_start = np.flatnonzero(starts)
    word_end = np.flatnonzero(ends) + 1
    lengths = word_end - word_start
    hashes = np.zeros(len(word_start), dtype=np.uint64)
    last = len(_BYTE_POWERS) - 1
    active = np.arange(len(word_start))
    offset = 0
    while len(active) and offset < last:
        hashes[active] += (data[word_start[active] + offset].astype(np.uint64) + np.uint64(1)) * _BYTE_POWERS[offset]
        offset += 1
        active = active[lengths[active] > offset]
    if len(active):  # bytes at position 63 and beyond all weigh 0x100000001B3**63: one prefix sum
        plus_one = np.cumsum(data, dtype=np.uint64) + np.arange(1, len(data) + 1, dtype=np.uint64)
        prefix = np.concatenate((np.zeros(1, dtype=np.uint64), plus_one))  # sum of (byte + 1) before each
        tails = prefix[word_end[active]] - prefix[word_start[active] + last]
        hashes[active] += tails * _BYTE_POWERS[last]
    return _fmix64(hashes), word_start


@lru_cache(maxsize=8)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's optimal (bands, rows per band) for this threshold and signature size, weighted
    for recall: every candidate is verified, so a false positive costs a comparison, while a false
    negative keeps a duplicate (balanced weights find only ~40% of pairs right at the threshold)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return lsh.b, lsh.r


class MinHasher:
    """Signatures for batches of texts; stateless apart from its permutations (safe in workers)."""

    def __init__(self, num_perm: int = 64, ngram: int = 3, seed: int = 1):
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.a, self.b = a.astype(_U32), b.astype(_U32)
        self.num_perm, self.ngram = num_perm, ngram

    def shingles(self, text: str) -> list[int]:
        """32-bit hashes of the word n-grams of the normalised text (its words if it has fewer)."""
        hashes, _ = self.shingle_batch([normalise_for_match(text)])
        return hashes.tolist()

    def shingle_batch(self, normalised: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(every text's shingle hashes, concatenated; how many each text has), vectorised over the
        batch: texts are `normalise_for_match` output (words split by single spaces)."""
        data = np.frombuffer("\n".join(normalised).encode("utf-8"), dtype=np.uint8)
        counts = np.zeros(len(normalised), dtype=np.int64)
        words, word_start = _word_hashes(data)
        if not len(words):
            return np.zeros(0, dtype=_U32), counts
        row = np.searchsorted(np.flatnonzero(data == 10), word_start)  # which text each word belongs to
        words_per_row = np.bincount(row, minlength=len(normalised))
        n = self.ngram
        grams = words[: len(words) - n + 1].copy() if len(words) >= n else np.zeros(0, dtype=np.uint64)
        for offset in range(1, n):
            grams = grams * _NGRAM_MULTIPLIER + words[offset: len(words) - n + 1 + offset]
        gram_row = row[: len(grams)]
        keep = gram_row == row[n - 1:][: len(grams)] if len(grams) else np.zeros(0, dtype=bool)
        short = words_per_row[row] < n  # texts with fewer words than n: their words are the shingles
        values = np.concatenate((grams[keep], words[short]))
        rows = np.concatenate((gram_row[keep], row[short]))
        order = np.argsort(rows, kind="stable")
        counts[:] = np.bincount(rows, minlength=len(normalised))
        return ((values[order] ^ (values[order] >> np.uint64(32))) & _MASK32).astype(_U32), counts

    def signatures_of_texts(self, normalised: list[str]) -> np.ndarray:
        hashes, counts = self.shingle_batch(normalised)
        return self.signatures_flat(hashes, counts)

    def signatures(self, shingle_lists: list[list[int]]) -> np.ndarray:
        """One row of `num_perm` uint32 minima per shingle list (all-max for an empty list)."""
        counts = np.fromiter((len(s) for s in shingle_lists), dtype=np.int64, count=len(shingle_lists))
        flat = np.fromiter((h for s in shingle_lists for h in s), dtype=_U32, count=int(counts.sum()))
        return self.signatures_flat(flat, counts)

    def signatures_flat(self, flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
        out = np.full((len(counts), self.num_perm), np.iinfo(np.uint32).max, dtype=_U32)
        filled = np.flatnonzero(counts)
        if not len(filled):
            return out
        # (permutations, shingles): each row's minimum is then taken over contiguous memory, ~5x faster
        # than reducing the (shingles, permutations) layout along its first axis
        permuted = np.multiply.outer(self.a, _fmix32(flat.astype(_U32)))
        permuted += self.b[:, None]
        starts = np.concatenate(([0], np.cumsum(counts[filled])[:-1]))
        out[filled] = np.minimum.reduceat(permuted, starts, axis=1).T
        return out


def _agreement(signatures: np.ndarray, signature: np.ndarray) -> np.ndarray:
    """How many of the num_perm values each row of `signatures` shares with `signature`."""
    return np.count_nonzero(signatures == signature, axis=1)


class _SortedRuns:
    """uint64 key -> int64 row, as a few sorted numpy runs merged LSM-style (appends stay cheap)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.runs.append((keys[order], rows[order]))
        while len(self.runs) > 1 and len(self.runs[-1][0]) * 2 >= len(self.runs[-2][0]):
            (k2, r2), (k1, r1) = self.runs.pop(), self.runs.pop()
            keys, rows = np.concatenate((k1, k2)), np.concatenate((r1, r2))
            order = np.argsort(keys, kind="stable")
            self.runs.append((keys[order], rows[order]))

    def lookup(self, keys: np.ndarray) -> dict[int, list[int]]:
        """{query position: rows stored under its key}, for the keys that are stored at all.

        The queries are sorted first (numpy's binary search then starts from the previous answer and
        stays in cache) and only the hits are searched a second time for the end of their range."""
        found: dict[int, list[int]] = {}
        if not self.runs or not len(keys):
            return found
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for run_keys, run_rows in self.runs:
            left = np.searchsorted(run_keys, sorted_keys, side="left")
            inside = left < len(run_keys)
            hit = np.flatnonzero(inside)
            hit = hit[run_keys[left[hit]] == sorted_keys[hit]]
            if not len(hit):
                continue
            right = np.searchsorted(run_keys, sorted_keys[hit], side="right")
            for query, start, end in zip(order[hit].tolist(), left[hit].tolist(), right.tolist()):
                found.setdefault(query, []).extend(run_rows[start:end].tolist())
        return found


class Match(NamedTuple):
    row: int  # in the index
    similarity: float  # estimated Jaccard


class NearDuplicateIndex:
    """The kept rows' signatures and LSH bands; `check` a batch, then `add` the rows that stay."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, bands: Optional[tuple[int, int]] = None,
                 bucket_cap: int = BUCKET_CAP):
        self.threshold = threshold
        self.bucket_cap = bucket_cap
        self.num_perm = num_perm
        self.b, self.r = bands or lsh_bands(threshold, num_perm)
        rng = np.random.RandomState(7)
        self._mix = (rng.randint(1, 2**62, size=(self.b, self.r), dtype=np.int64).astype(np.uint64) * np.uint64(2)
                     + np.uint64(1))
        self._band_salt = rng.randint(1, 2**62, size=self.b, dtype=np.int64).astype(np.uint64)
        self._chunks: list[np.ndarray] = []
        self._chunk_rows = 1 << 16
        self._filled = 0
        self._bands = _SortedRuns()
        self.labels: list[str] = []  # what to name a kept row in a reject reason (its source)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) uint64 keys: rows that agree on all r values of a band share that band's key."""
        bands = signatures[:, : self.b * self.r].astype(np.uint64).reshape(len(signatures), self.b, self.r)
        keys = (bands * self._mix[None]).sum(axis=2, dtype=np.uint64) + self._band_salt[None]
        return keys ^ (keys >> np.uint64(29))

    def _signature(self, row: int) -> np.ndarray:
        return self._chunks[row // self._chunk_rows][row % self._chunk_rows]

    def similarity(self, signature: np.ndarray, row: int) -> float:
        return float(np.count_nonzero(self._signature(row) == signature)) / self.num_perm

    def signatures_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored signatures of these index rows, (len(rows), num_perm)."""
        chunk, offset = np.divmod(rows, self._chunk_rows)
        if len(rows) and (chunk == chunk[0]).all():
            return self._chunks[int(chunk[0])][offset]
        return np.stack([self._chunks[c][o] for c, o in zip(chunk.tolist(), offset.tolist())])

    def lookup(self, keys: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
        """(kept rows sharing at least one band with each query row, how many rows each of its (row, band)
        buckets holds already: at most `bucket_cap`)."""
        per_row: dict[int, set[int]] = {}
        sizes = np.zeros(keys.size, dtype=np.int64)
        for flat, rows in self._bands.lookup(keys.reshape(-1)).items():
            sizes[flat] = len(rows)
            per_row.setdefault(flat // self.b, set()).update(rows)
        candidates = [sorted(per_row[i]) if i in per_row else [] for i in range(len(keys))]
        return candidates, sizes.reshape(keys.shape)

    def candidates(self, keys: np.ndarray) -> list[list[int]]:
        """Kept rows sharing at least one band with each query row."""
        return self.lookup(keys)[0]

    def best_match(self, signature: np.ndarray, candidates: list[int]) -> Optional[Match]:
        """The most similar candidate at or above the threshold (the first one on a tie), or None."""
        if not candidates:
            return None
        similarities = _agreement(self.signatures_of(np.asarray(candidates, dtype=np.int64)), signature)
        best = int(np.argmax(similarities))
        similarity = float(similarities[best]) / self.num_perm
        return Match(candidates[best], similarity) if similarity >= self.threshold else None

    def add(self, signatures: np.ndarray, keys: np.ndarray, labels: list[str],
            store: Optional[np.ndarray] = None) -> list[int]:
        """Store kept rows; returns their row numbers in the index. `store` (rows, bands) says in which
        buckets each row goes; by default in those that are not full."""
        if store is None:
            store = self.lookup(keys)[1] < self.bucket_cap
        rows = list(range(self._filled, self._filled + len(signatures)))
        done = 0
        while done < len(signatures):
            if self._filled % self._chunk_rows == 0:
                self._chunks.append(np.empty((self._chunk_rows, self.num_perm), dtype=_U32))
            at = self._filled % self._chunk_rows
            take = min(self._chunk_rows - at, len(signatures) - done)
            self._chunks[-1][at:at + take] = signatures[done:done + take]
            done += take
            self._filled += take
        if rows and store.any():
            row_array = np.repeat(np.array(rows, dtype=np.int64), self.b).reshape(keys.shape)
            self._bands.add(keys[store].copy(), row_array[store])
        self.labels.extend(labels)
        return rows

    def __len__(self) -> int:
        return self._filled
