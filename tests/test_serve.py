"""The OpenAI-compatible server, started as a real subprocess on a free localhost port with the tiny
model, talked to with the official `openai` client: chat, streaming, concurrent requests batched
with the same answers as one at a time, a classifier, and the bad requests that must get a 4xx
JSON error while the server keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

openai = pytest.importorskip("openai")
QUESTION = [{"role": "user", "content": "Buğday ne zaman ekilir?"}]
SAMPLED = {"temperature": 1.0, "seed": 3}  # the random tiny model answers greedy prompts with newlines only


def start_server(model: Path, *overrides: str):
    port = free_port()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", f"serve.model={model}", f"serve.port={port}",
                             *overrides], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("server did not start in 120 s")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def chat_server(tiny_model_dir):
    proc, url = start_server(tiny_model_dir, "serve.max_tokens=64", "serve.max_prompt_tokens=200",
                             "serve.batch_wait_ms=200", "serve.max_concurrency=4")
    yield url, openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stop(proc)


def test_models_chat_and_streaming(chat_server, tiny_model_dir):
    url, client = chat_server
    [model] = client.models.list().data
    assert model.id == tiny_model_dir.name
    answer = client.chat.completions.create(model=model.id, messages=QUESTION, max_tokens=12, **SAMPLED)
    text = answer.choices[0].message.content
    assert text and answer.usage.completion_tokens <= 12 and answer.usage.prompt_tokens > 10
    assert answer.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(model=model.id, messages=QUESTION, max_tokens=12, stream=True,
                                            stream_options={"include_usage": True}, **SAMPLED)
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == text and len([p for p in pieces if p]) > 1
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    # the system prompt and list-of-parts content that OpenAI clients send are understood
    parts = client.chat.completions.create(model=model.id, max_tokens=4, messages=[
        {"role": "developer", "content": "Kısa yanıt ver."},
        {"role": "user", "content": [{"type": "text", "text": "Buğday?"}]}])
    assert parts.usage.completion_tokens <= 4


def test_concurrent_requests_are_batched_with_the_same_greedy_answers(chat_server, tiny_model_dir):
    url, client = chat_server
    questions = ["Arı", "Toprak pH değeri kaç olmalı?", "Damla sulama nedir?", "Buğday?"]

    def ask(q, **extra):
        return client.chat.completions.create(model=tiny_model_dir.name, messages=[{"role": "user", "content": q}],
                                              max_tokens=8, **extra).choices[0].message.content

    alone = [ask(q, temperature=0) for q in questions]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: ask(q, temperature=0), questions))
    assert together == alone
    with urllib.request.urlopen(f"{url}/health") as answer:  # the server is still healthy after all this
        assert json.loads(answer.read())["status"] == "ok"


def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(chat_server, tiny_model_dir):
    url, client = chat_server
    name = tiny_model_dir.name
    endpoint = f"{url}/v1/chat/completions"
    ok = {"model": name, "messages": QUESTION, "max_tokens": 2}
    cases = {
        "malformed json": (b'{"model": "x", "messages": [', 400, "invalid_json"),
        "not an object": (b'[1, 2]', 400, "invalid_json"),
        "unknown model": (json.dumps({**ok, "model": "gpt-4o"}).encode(), 404, "model_not_found"),
        "empty messages": (json.dumps({**ok, "messages": []}).encode(), 400, "invalid_value"),
        "messages not a list": (json.dumps({**ok, "messages": "Merhaba"}).encode(), 400, "invalid_value"),
        "wrong role": (json.dumps({**ok, "messages": [{"role": "robot", "content": "x"}]}).encode(), 400,
                       "invalid_value"),
        "max_tokens a string": (json.dumps({**ok, "max_tokens": "çok"}).encode(), 400, "invalid_value"),
        "max_tokens over the limit": (json.dumps({**ok, "max_tokens": 65}).encode(), 400, "max_tokens_exceeded"),
        "prompt too long": (json.dumps({**ok, "messages": [{"role": "user", "content": "buğday " * 300}]}).encode(),
                            400, "context_length_exceeded"),
        "classifier endpoint on a chat model": (json.dumps({"model": name, "input": "x"}).encode(), 400,
                                                "wrong_endpoint"),
    }
    for case, (body, status, code) in cases.items():
        target = f"{url}/v1/classifications" if "classifier" in case else endpoint
        got, answer = post(target, body)
        assert (got, answer["error"]["code"]) == (status, code), case
        assert answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error", case
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=name, messages=QUESTION, max_tokens=1000)
    assert client.chat.completions.create(model=name, messages=QUESTION, max_tokens=2).usage.completion_tokens <= 2


def test_over_the_concurrency_limit_answers_429(chat_server, tiny_model_dir):
    url, client = chat_server
    body = json.dumps({"model": tiny_model_dir.name, "messages": QUESTION, "max_tokens": 64}).encode()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(f"{url}/v1/chat/completions", body), range(8)))
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(200) >= 4 and 429 in statuses, statuses
    assert next(a for s, a in answers if s == 429)["error"]["code"] == "rate_limit_exceeded"
    assert client.chat.completions.create(model=tiny_model_dir.name, messages=QUESTION, max_tokens=2).choices


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir, tmp_path_factory) -> Path:
    from pipeline.train.classifier import sequence_classifier

    tokenizer, model = sequence_classifier(tiny_model_dir, ["bitkisel", "hayvansal", "ekonomi"])
    folder = tmp_path_factory.mktemp("classifier") / "haber"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_classifier_endpoint(classifier_dir):
    proc, url = start_server(classifier_dir)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        answer = client.post("/classifications", cast_to=object,
                             body={"model": "haber", "input": ["Buğday hasadı başladı.", "Süt fiyatları arttı."]})
        labels = {"bitkisel", "hayvansal", "ekonomi"}
        assert [d["index"] for d in answer["data"]] == [0, 1]
        assert all(d["label"] in labels and 0 < d["score"] <= 1 for d in answer["data"])
        one = client.post("/classifications", cast_to=object, body={"model": "haber", "input": "Süt fiyatları arttı."})
        assert one["data"][0]["label"] == answer["data"][1]["label"]
        status, error = post(f"{url}/v1/chat/completions",
                             json.dumps({"model": "haber", "messages": QUESTION}).encode())
        assert status == 400 and error["error"]["code"] == "wrong_endpoint"
        status, error = post(f"{url}/v1/classifications", json.dumps({"model": "haber", "input": []}).encode())
        assert status == 400
    finally:
        stop(proc)


def test_a_request_without_temperature_gets_the_decoding_the_model_was_evaluated_with():
    from pipeline.config_loader import load_config
    from pipeline.deploy.models import serving_info
    from pipeline.deploy.server import request_decoding
    from pipeline.eval.generation import GREEDY

    cfg = load_config(["eval.do_sample=true", "eval.temperature=0.7", "eval.top_p=0.9", "eval.no_repeat_ngram_size=4"])
    evaluated = serving_info(cfg, "sft")["decoding"]
    assert evaluated == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 50,
                         "repetition_penalty": 1.0, "no_repeat_ngram_size": 4}
    assert serving_info(cfg, "classification")["decoding"] == {}
    default = request_decoding(None, None, None, evaluated)
    assert (default.do_sample, default.temperature, default.top_p, default.top_k, default.no_repeat_ngram_size) == \
        (True, 0.7, 0.9, 50, 4)
    assert (request_decoding(None, 0.5, 4, evaluated).top_p, request_decoding(None, 0.5, 4, evaluated).seed) == (0.5, 4)
    greedy = request_decoding(0, None, None, evaluated)  # temperature 0: greedy, the repetition control kept
    assert not greedy.do_sample and greedy.no_repeat_ngram_size == 4
    old = request_decoding(None, None, None, {})  # an export from before: greedy as it was
    assert old.generate_kwargs() == GREEDY.generate_kwargs() == request_decoding(0, None, None, {}).generate_kwargs()
    asked = request_decoding(1.2, 0.8, 5, evaluated)
    assert (asked.do_sample, asked.temperature, asked.top_p, asked.top_k, asked.seed) == (True, 1.2, 0.8, 0, 5)
