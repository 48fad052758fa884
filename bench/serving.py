"""N concurrent clients against the OpenAI-compatible server: batched vs one request at a time.

    python bench/serving.py --model models/base                # the SmolLM2 base (dvc repro base_model)
    python bench/serving.py --model models/export --clients 8 --requests 4 --max-tokens 48
    python bench/serving.py --url http://127.0.0.1:8000 --served-name hasat-tarim_sft   # a running server only

Starts `python -m pipeline.serve` twice on a free localhost port with the same model: once with
serve.max_batch_size=<clients> (requests that arrive together are generated together) and once
with serve.max_batch_size=1 (one at a time), and sends each the same load: `--clients` threads,
each asking `--requests` questions one after the other (Turkish questions from data.path), greedy,
`--max-tokens` new tokens at most. Prints requests/s, generated tokens/s and p50/p95 latency for
both, the throughput ratio, and fails if any answer differs between the two (greedy answers must
not depend on the batch).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def questions(count: int) -> list[str]:
    rows = [json.loads(line) for f in sorted((REPO / "data/raw/tarim_sft").glob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["instruction"] for r in rows if not r.get("input")][:count]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, batch: int, wait_ms: int):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", f"serve.model={model}", f"serve.port={port}",
                             f"serve.max_batch_size={batch}", f"serve.batch_wait_ms={wait_ms}",
                             "serve.max_concurrency=256"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"the server did not start: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as answer:
                return proc, url, json.loads(answer.read())["data"][0]["id"]
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("the server did not answer within 5 minutes")


def ask(url: str, name: str, question: str, max_tokens: int) -> tuple[float, int, str]:
    body = json.dumps({"model": name, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as answer:
        reply = json.loads(answer.read())
    return time.perf_counter() - started, reply["usage"]["completion_tokens"], reply["choices"][0]["message"]["content"]


def load(url: str, name: str, qs: list[str], clients: int, requests: int, max_tokens: int) -> dict:
    ask(url, name, qs[0], 4)  # warm-up, not counted

    def client(c: int) -> list[tuple[str, float, int, str]]:
        mine = [qs[(c * requests + i) % len(qs)] for i in range(requests)]
        return [(q, *ask(url, name, q, max_tokens)) for q in mine]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - started
    latencies = sorted(r[1] for r in done)
    return {"requests": len(done), "wall_s": wall, "requests_per_s": len(done) / wall,
            "tokens_per_s": sum(r[2] for r in done) / wall, "p50_s": statistics.median(latencies),
            "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
            "answers": {r[0]: r[3] for r in done}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/export", help="model folder or registry spec (serve.model)")
    parser.add_argument("--url", help="bench a running server instead (no comparison)")
    parser.add_argument("--served-name", help="the model id of the running server (--url)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4, help="requests per client, one after the other")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--batch-wait-ms", type=int, default=20)
    args = parser.parse_args()
    qs = questions(args.clients * args.requests)
    if args.url:
        report("running server", load(args.url, args.served_name, qs, args.clients, args.requests, args.max_tokens))
        return 0
    results = {}
    for mode, batch in (("batched", args.clients), ("one at a time", 1)):
        proc, url, name = start(args.model, batch, args.batch_wait_ms if batch > 1 else 0)
        try:
            results[mode] = load(url, name, qs, args.clients, args.requests, args.max_tokens)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"model {args.model}; {args.clients} concurrent clients x {args.requests} requests, greedy, "
          f"max_tokens={args.max_tokens}; {os.cpu_count()} CPU cores")
    for mode, result in results.items():
        report(mode, result)
    same = results["batched"]["answers"] == results["one at a time"]["answers"]
    ratio = results["batched"]["requests_per_s"] / results["one at a time"]["requests_per_s"]
    print(f"throughput batched / one at a time: {ratio:.2f}x; identical greedy answers: {same}")
    return 0 if same else 1


def report(mode: str, r: dict) -> None:
    print(f"{mode:>15}: {r['requests']} requests in {r['wall_s']:.1f}s = {r['requests_per_s']:.2f} requests/s, "
          f"{r['tokens_per_s']:.1f} generated tokens/s, latency p50 {r['p50_s']:.2f}s p95 {r['p95_s']:.2f}s")


if __name__ == "__main__":
    sys.exit(main())
