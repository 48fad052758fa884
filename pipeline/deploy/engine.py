"""The server's batcher: requests that arrive together are generated together.

One worker thread owns the model. It takes the first waiting request, waits up to
`batch_wait_ms` for others (up to `max_batch_size`), splits them by decoding settings and runs each
group as one left-padded batch (`pipeline.eval.generation.generate_batch`, the evaluate stage's
code), each row stopping at its own max_tokens. Greedy answers are the same as one at a time.
Streaming requests ride in the same batches: a streamer hands each row's new text to its request
as the batch decodes. Classification requests are batched the same way (one forward pass).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from pipeline.deploy.models import LoadedModel
from pipeline.eval.generation import Decoding, Generation, eos_token_ids, generate_batch

log = logging.getLogger("hasat")


@dataclass
class Job:
    prompt: list[int]  # token ids (generation) or the text's ids (classification)
    max_tokens: int
    decoding: Optional[Decoding]  # None: classification
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    stream: Optional[asyncio.Queue] = None  # text pieces, then None
    started: float = field(default_factory=time.perf_counter)


class Engine:
    def __init__(self, loaded: LoadedModel, max_batch_size: int, batch_wait_ms: int):
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.batch_wait = batch_wait_ms / 1000
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.batches = 0  # how many batches ran, and their sizes: for the log and the tests
        self.batch_sizes: list[int] = []
        self._thread = threading.Thread(target=self._work, name="hasat-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            deadline = time.perf_counter() + self.batch_wait
            while len(batch) < self.max_batch_size:
                try:
                    job = self.jobs.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)
                    break
                batch.append(job)
            for group in _groups(batch):
                self._run(group)

    def _run(self, group: list[Job]) -> None:
        self.batches += 1
        self.batch_sizes.append(len(group))
        try:
            if group[0].decoding is None:
                results: list[Any] = self._classify(group)
            else:
                results = self._generate(group)
        except Exception as err:  # a failed batch fails its requests, not the server
            log.exception("batch of %d failed", len(group))
            for job in group:
                _finish(job, err)
            return
        for job, result in zip(group, results):
            _finish(job, result)

    def _generate(self, group: list[Job]) -> list[Generation]:
        decoding = group[0].decoding
        if decoding.do_sample:
            torch.manual_seed(decoding.seed)
        streams = [job.stream for job in group]
        streamer = RowStreamer(group, self.loaded.tokenizer, eos_token_ids(self.loaded.model, self.loaded.tokenizer)) \
            if any(streams) else None
        return generate_batch(self.loaded.model, self.loaded.tokenizer, [job.prompt for job in group],
                              [job.max_tokens for job in group], decoding, streamer)

    def _classify(self, group: list[Job]) -> list[dict]:
        from pipeline.eval.classification import predict_with_confidence

        model, tokenizer, labels = self.loaded.model, self.loaded.tokenizer, self.loaded.labels
        rows = [{"input_ids": job.prompt} for job in group]
        ids, confidence = predict_with_confidence(model, tokenizer, rows, len(rows))
        return [{"label": labels[i], "score": c} for i, c in zip(ids, confidence)]


def _groups(batch: list[Job]) -> list[list[Job]]:
    """Jobs with the same decoding settings (and classification jobs) run together, in arrival order."""
    groups: dict[Any, list[Job]] = {}
    for job in batch:
        key = None if job.decoding is None else tuple(sorted(vars(job.decoding).items()))
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def _finish(job: Job, result: Any) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)
        if job.stream is not None:
            job.stream.put_nowait(None)

    job.loop.call_soon_threadsafe(settle)


class RowStreamer:
    """transformers' streamer protocol (put/end) for a batch: each step's new token of every row goes
    to that row's request as text, stripped as the non-streamed answer is, until its EOS or limit."""

    def __init__(self, group: list[Job], tokenizer, eos_ids: list[int]):
        self.group, self.tokenizer, self.eos_ids = group, tokenizer, set(eos_ids)
        self.ids: list[list[int]] = [[] for _ in group]
        self.sent = ["" for _ in group]
        self.done = [job.stream is None for job in group]
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompts
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            job = self.group[row]
            if token in self.eos_ids:
                self.done[row] = True
                continue
            self.ids[row].append(token)
            if len(self.ids[row]) >= job.max_tokens:
                self.done[row] = True
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True).strip()
            if text.endswith("\ufffd") or not text.startswith(self.sent[row]):
                continue  # half a multi-byte character: wait for the rest
            piece, self.sent[row] = text[len(self.sent[row]):], text
            if piece:
                job.loop.call_soon_threadsafe(job.stream.put_nowait, piece)

    def end(self) -> None:
        return None
