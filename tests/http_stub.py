"""A real local HTTP server speaking the OpenAI chat-completions protocol, for scheduler tests and the
throughput bench: it adds latency, admits at most `capacity` requests at once (the rest get a 429
with Retry-After), or answers every request with a fixed error status. Standard library only; one
thread per connection; loopback only.

Fault injection: `script(user_text, attempt)` (attempt 1, 2, ... counted per distinct user message)
returns None for a good answer or one of FAULTS, the bad replies a server can send:

  non_json       HTTP 200 whose body is not JSON (an HTML error page)
  truncated      HTTP 200 whose body stops half-way (content-length promises more; then EOF)
  no_choices     HTTP 200, JSON without `choices`
  empty_choices  HTTP 200, `choices: []`
  error_200      HTTP 200 carrying `{"error": {...}}` instead of a completion
  reset          the connection is reset (RST) after the request is read, no reply at all
  stall          no reply for `stall_s` seconds (longer than the client's timeout), then a good one
  http_500       HTTP 500 with an error body

`faults_sent` counts what was sent per kind.

Its answer is a valid label for the sentiment specs: `{"label": "positive"}` when the user message
contains "good", else `{"label": "negative"}` (or the bare word when no response_format is sent).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


FAULTS = ("non_json", "truncated", "no_choices", "empty_choices", "error_200", "reset", "stall", "http_500")


def _completion(body: dict, label: str, n: int) -> dict:
    content = json.dumps({"label": label}) if body.get("response_format") else label
    return {
        "id": f"chatcmpl-stub-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "stub-model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: 64 clients may connect at once

    def handle_error(self, request, client_address):  # a client that gave up (stall, reset): quiet
        pass


class OpenAIStub:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        capacity: int | None = None,
        retry_after_s: float = 0.05,
        fail_status: int | None = None,
        models: list[str] | None = None,
        script=None,
        stall_s: float = 2.0,
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
        self.script = script
        self.stall_s = min(stall_s, 10.0)  # bounded: a test never waits on the stub for long
        self.attempts: dict[str, int] = {}
        self.faults_sent: dict[str, int] = {}
        self._closing = threading.Event()
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

            def _fault(self, fault: str, body: dict) -> bool:
                """Send one bad reply; False when the request should then be answered normally."""
                if fault == "non_json":
                    data = b"<html><body>502 Bad Gateway</body></html>"
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif fault == "truncated":
                    data = json.dumps(_completion(body, "positive", 0)).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_WR)
                elif fault == "no_choices":
                    self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "stub-model"})
                elif fault == "empty_choices":
                    self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "stub-model",
                                     "choices": []})
                elif fault == "error_200":
                    self._send(200, {"error": {"message": "The server is overloaded", "type": "server_error"}})
                elif fault == "http_500":
                    self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                elif fault == "reset":
                    # SO_LINGER 0: close() sends RST instead of FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                elif fault == "stall":
                    stub._closing.wait(stub.stall_s)
                    return False  # the client has given up by now; answer anyway
                else:
                    raise ValueError(f"unknown fault {fault!r}")
                return True

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
                text = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
                with stub.lock:
                    stub.requests += 1
                    stub.bodies.append(body)
                    attempt = stub.attempts[text] = stub.attempts.get(text, 0) + 1
                fault = stub.script(text, attempt) if stub.script is not None else None
                if fault is not None:
                    with stub.lock:
                        stub.faults_sent[fault] = stub.faults_sent.get(fault, 0) + 1
                    if self._fault(fault, body):
                        return
                with stub.lock:
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
                    label = "positive" if "good" in text else "negative"
                    self._send(200, _completion(body, label, stub.requests))
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                        stub.answered += 1

        self.server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
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
