"""An OpenAI-compatible HTTP API over one loaded model (FastAPI; `python -m pipeline.serve` runs it).

    GET  /v1/models                 the served model
    POST /v1/chat/completions       chat (instruction-tuned models); "stream": true answers as SSE
    POST /v1/classifications        {"model", "input": text or [texts]} -> label and score per text (classifiers)
    GET  /health

Bad requests get a 4xx answer with OpenAI's error body {"error": {"message", "type", "param",
"code"}} and the server keeps serving: malformed JSON, wrong types, no messages (400), an unknown
model (404), a prompt over serve.max_prompt_tokens or max_tokens over serve.max_tokens (400),
more than serve.max_concurrency requests in flight (429).

Decoding: a request without `temperature` gets the decoding evaluate measured the model with (the
export's serving info; greedy if it has none); 0 makes it greedy, > 0 samples with the request's
`top_p`; the evaluated repetition controls (no_repeat_ngram_size, repetition_penalty) always apply.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import List, Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import ServeConfig
from pipeline.deploy.engine import Engine, Job
from pipeline.deploy.models import LoadedModel
from pipeline.eval.generation import GREEDY, Decoding
from pipeline.train.prompts import prompt_ids


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, List[ContentPart]]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields this server does not use
    model: str
    messages: List[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[dict] = None
    n: int = Field(1, ge=1, le=1)


class ClassificationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    input: Union[str, List[str]] = Field(min_length=1)


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def create_app(loaded: LoadedModel, limits: ServeConfig) -> FastAPI:
    engine = Engine(loaded, limits.max_batch_size, limits.batch_wait_ms)
    in_flight = {"n": 0}

    @asynccontextmanager
    async def lifespan(_app):
        yield
        engine.close()

    app = FastAPI(title="hasat", lifespan=lifespan)
    app.state.engine = engine

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError):
        return err.response()

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": loaded.name, "kind": loaded.kind}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": loaded.name, "object": "model", "created": 0, "owned_by": "hasat",
                                            "kind": loaded.kind, "source": loaded.source}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, ChatRequest)
        _check_model(body.model, loaded, "sft")
        prompt = _chat_prompt(body.messages, loaded)
        if len(prompt) > limits.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {len(prompt)} tokens; this server takes at most "
                           f"{limits.max_prompt_tokens} (serve.max_prompt_tokens)", "messages", "context_length_exceeded")
        max_tokens = body.max_completion_tokens or body.max_tokens or limits.default_max_tokens
        if max_tokens > limits.max_tokens:
            raise ApiError(400, f"max_tokens={max_tokens} is over this server's limit of {limits.max_tokens} "
                           "(serve.max_tokens)", "max_tokens", "max_tokens_exceeded")
        decoding = request_decoding(body.temperature, body.top_p, body.seed, loaded.decoding)
        _admit(in_flight, limits)
        loop = asyncio.get_running_loop()
        job = Job(prompt, max_tokens, decoding, loop, loop.create_future(),
                  asyncio.Queue() if body.stream else None)
        engine.submit(job)
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_sse(job, loaded.name, len(prompt), include_usage, in_flight),
                                     media_type="text/event-stream")
        try:
            out = await job.future
        finally:
            in_flight["n"] -= 1
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": loaded.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                             "finish_reason": "stop" if out.stopped else "length"}],
                "usage": _usage(len(prompt), out.n_new_tokens)}

    @app.post("/v1/classifications")
    async def classify(request: Request):
        body = await _parse(request, ClassificationRequest)
        _check_model(body.model, loaded, "classification")
        texts = [body.input] if isinstance(body.input, str) else body.input
        encoded = [loaded.tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
        too_long = next((i for i, ids in enumerate(encoded) if len(ids) > limits.max_prompt_tokens), None)
        if too_long is not None:
            raise ApiError(400, f"input {too_long} is {len(encoded[too_long])} tokens; this server takes at most "
                           f"{limits.max_prompt_tokens} (serve.max_prompt_tokens)", "input", "context_length_exceeded")
        if any(not ids for ids in encoded):
            raise ApiError(400, "an input text is empty", "input")
        _admit(in_flight, limits)
        loop = asyncio.get_running_loop()
        jobs = [Job(ids, 0, None, loop, loop.create_future()) for ids in encoded]
        for job in jobs:
            engine.submit(job)
        try:
            results = await asyncio.gather(*(job.future for job in jobs))
        finally:
            in_flight["n"] -= 1
        return {"object": "list", "model": loaded.name,
                "data": [{"object": "classification", "index": i, "label": r["label"], "score": round(r["score"], 6)}
                         for i, r in enumerate(results)],
                "usage": {"prompt_tokens": sum(len(ids) for ids in encoded), "total_tokens": sum(map(len, encoded))}}

    return app


async def _parse(request: Request, schema):
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON ({err})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}", param=where, code="invalid_value") from None


def request_decoding(temperature: Optional[float], top_p: Optional[float], seed: Optional[int],
                     evaluated: dict) -> Decoding:
    """The decoding the model was evaluated with (greedy if unknown), its repetition controls kept;
    a request's temperature 0 makes it greedy, a temperature > 0 samples with the request's top_p."""
    base = replace(GREEDY, **{k: v for k, v in evaluated.items() if k in Decoding.__dataclass_fields__},
                   seed=seed if seed is not None else 0)
    if temperature is None:
        return replace(base, top_p=top_p) if top_p is not None else base
    if temperature == 0:
        return replace(base, do_sample=False)
    return replace(base, do_sample=True, temperature=temperature, top_p=top_p or 1.0, top_k=0)


def _check_model(name: str, loaded: LoadedModel, kind: str) -> None:
    if name != loaded.name:
        raise ApiError(404, f"the model '{name}' does not exist; this server serves '{loaded.name}' (GET /v1/models)",
                       "model", "model_not_found")
    if loaded.kind != kind:
        other = "/v1/classifications" if loaded.kind == "classification" else "/v1/chat/completions"
        raise ApiError(400, f"'{loaded.name}' is a {loaded.kind} model: use POST {other}", "model", "wrong_endpoint")


def _admit(in_flight: dict, limits: ServeConfig) -> None:
    if in_flight["n"] >= limits.max_concurrency:
        raise ApiError(429, f"{in_flight['n']} requests in flight, the limit is {limits.max_concurrency} "
                       "(serve.max_concurrency); retry shortly", code="rate_limit_exceeded", kind="rate_limit_error")
    in_flight["n"] += 1


def _chat_prompt(messages: list[Message], loaded: LoadedModel) -> list[int]:
    """The prompt exactly as training and evaluate build it (the model's prompt format and system prompt)."""
    said = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
    record = {"messages": said + [{"role": "assistant", "content": ""}]}  # the answer to come
    try:
        return prompt_ids(record, loaded.tokenizer, loaded.prompt_format, loaded.system_prompt)
    except Exception as err:  # a template that rejects the conversation (e.g. roles out of order)
        raise ApiError(400, f"the messages cannot be formatted for this model ({str(err).splitlines()[0]})",
                       "messages") from None


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _sse(job: Job, model: str, prompt_tokens: int, include_usage: bool, in_flight: dict):
    """Server-sent events as OpenAI streams them: role, content pieces, finish_reason, [DONE]."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def event(delta: dict, finish: Optional[str] = None, usage: Optional[dict] = None) -> str:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    try:
        yield event({"role": "assistant", "content": ""})
        sent = ""
        while (piece := await job.stream.get()) is not None:
            sent += piece
            yield event({"content": piece})
        try:
            out = await job.future
        except Exception as err:  # the batch failed: say so in the stream, which has already begun
            yield f"data: {json.dumps({'error': {'message': str(err), 'type': 'server_error'}})}\n\n"
            return
        if out.text.startswith(sent) and out.text != sent:  # what the streamer held back (a split character)
            yield event({"content": out.text[len(sent):]})
        yield event({}, "stop" if out.stopped else "length")
        if include_usage:
            yield event({}, usage=_usage(prompt_tokens, out.n_new_tokens))
        yield "data: [DONE]\n\n"
    finally:
        in_flight["n"] -= 1
