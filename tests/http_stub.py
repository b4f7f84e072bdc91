"""A real local HTTP server speaking the OpenAI chat-completions protocol, for scheduler tests and the
throughput bench: it adds latency, admits at most `capacity` requests at once (the rest get a 429
with Retry-After), or answers every request with a fixed error status. Standard library only; one
thread per connection.

Its answer is a valid label for the sentiment specs: `{"label": "positive"}` when the user message
contains "good", else `{"label": "negative"}` (or the bare word when no response_format is sent).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: 64 clients may connect at once


class OpenAIStub:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        capacity: int | None = None,
        retry_after_s: float = 0.05,
        fail_status: int | None = None,
        models: list[str] | None = None,
    ):
        self.latency_s = latency_s
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self.fail_status = fail_status
        self.models = models or ["stub-model"]
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests = 0
        self.throttled = 0
        self.answered = 0
        self.bodies: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "OpenAIStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

            def setup(self):
                super().setup()
                # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every answer
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in stub.models
                    ]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"File Not Found: {self.path}", "type": "not_found_error"}})
                    return
                body = json.loads(raw or b"{}")
                with stub.lock:
                    stub.requests += 1
                    stub.bodies.append(body)
                    if stub.fail_status is None and stub.capacity is not None and stub.in_flight >= stub.capacity:
                        stub.throttled += 1
                        busy = True
                    else:
                        busy = False
                        stub.in_flight += 1
                        stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                if stub.fail_status is not None:
                    self._send(stub.fail_status, {"error": {
                        "message": "Incorrect API key provided: sk-wrong-****ab12." if stub.fail_status == 401
                        else f"error {stub.fail_status}", "type": "invalid_request_error", "code": None}})
                    return
                if busy:
                    self._send(429, {"error": {"message": "Too many requests in flight", "type": "requests",
                                               "code": "rate_limit_exceeded"}},
                               {"retry-after": f"{stub.retry_after_s:g}"})
                    return
                try:
                    if stub.latency_s:
                        time.sleep(stub.latency_s)
                    text = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
                    label = "positive" if "good" in text else "negative"
                    content = json.dumps({"label": label}) if body.get("response_format") else label
                    self._send(200, {
                        "id": f"chatcmpl-stub-{stub.requests}", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model", "stub-model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                     "logprobs": None, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
                    })
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                        stub.answered += 1

        self.server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":  # a stand-alone server, so a benchmark's client does not share its GIL
    import argparse

    parser = argparse.ArgumentParser(description="OpenAI-protocol stub server")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--capacity", type=int)
    args = parser.parse_args()
    with OpenAIStub(latency_s=args.latency, capacity=args.capacity) as stub:
        print(stub.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
