"""A stand-in OpenAI-compatible judge for tests: a real HTTP server on a free localhost port that
answers POST /v1/chat/completions with fixed replies, in turn, and records what it was asked."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JudgeStub:
    """`with JudgeStub(["[[A]]", "[[C]]"]) as judge:` ... `judge.url`, `judge.requests`. The first request
    (the stage's reachability probe, max_tokens 1) is answered "ok" and does not use a reply."""

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.requests: list[dict] = []
        self._next = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    stub.requests.append({**body, "auth": self.headers.get("Authorization"), "path": self.path})
                    if body.get("max_tokens") == 1:
                        text = "ok"
                    else:
                        text = stub.replies[stub._next % len(stub.replies)]
                        stub._next += 1
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "JudgeStub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
