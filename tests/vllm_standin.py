"""A stand-in for a vLLM server in tests: vLLM's HTTP surface in front of a real llama-server.

vLLM cannot run on these machines (no GPU, and its wheel pins another torch). What the harness needs
from it is its HTTP protocol, so this front answers `GET /version` the way vLLM does
(`{"version": "..."}`), forwards `/health`, `/v1/models` and `/v1/chat/completions` to a real
llama-server (which generates the answers), records every POST body, and, like `vllm serve
--api-key`, answers 401 on `/v1/*` without the bearer key. It never interprets vLLM-only fields:
the recorded bodies are what a vLLM server would have received.

Three ways to use it:
- in-process: `VllmStandin(port, upstream_url, version=...)` in a thread (attach tests);
- `python vllm_standin.py front --port P --version V [--record F] -- LLAMA-SERVER ARGS...` launches
  the llama-server (with `{upstream_port}` filled in) and serves in front of it (launch tests
  through `options.command`);
- `python vllm_standin.py vllm-cli ARGS...`: a `vllm` executable lookalike: `--version` prints
  $STANDIN_VERSION, `serve MODEL --host H --port P --served-model-name N ...` records its argv to
  $STANDIN_ARGV and serves SmolLM2 ($STANDIN_LLAMA_SERVER, $STANDIN_GGUF) under the served name,
  listing the `--lora-modules` names as served models too (as vLLM does).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    server: "VllmStandin"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._reply(401, json.dumps({"error": "Unauthorized"}).encode())
            return False
        return True

    def _forward(self, method: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.server.upstream + self.path, data=body, method=method,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, urllib.error.URLError):
            return 503, b'{"error": "upstream not ready"}'

    def do_GET(self) -> None:
        if self.path == "/version":
            if self.server.version is None:
                self._reply(404, b'{"detail": "Not Found"}')
            else:
                self._reply(200, json.dumps({"version": self.server.version}).encode())
        elif self.path == "/health":
            status, _ = self._forward("GET")
            self._reply(200 if status == 200 else 503, b"")
        elif self.path == "/v1/models":
            if not self._authorized():
                return
            status, payload = self._forward("GET")
            if status == 200:
                data = json.loads(payload)
                ids = [m["id"] for m in data.get("data", [])] + list(self.server.extra_models)
                payload = json.dumps({"object": "list", "data": [
                    {"id": i, "object": "model", "owned_by": "vllm"} for i in ids
                ]}).encode()
            self._reply(status, payload)
        else:
            self._reply(404, b'{"detail": "Not Found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        if self.path != "/v1/chat/completions":
            self._reply(404, b'{"detail": "Not Found"}')
            return
        self.server.record({
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "body": json.loads(raw),
        })
        status, payload = self._forward("POST", raw)
        self._reply(status, payload)


class VllmStandin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, upstream: str, *, version: str | None, api_key: str | None = None,
                 extra_models: tuple[str, ...] = (), record_path: str | None = None):
        super().__init__(("127.0.0.1", port), _Handler)
        self.upstream = upstream.rstrip("/")
        self.version = version
        self.api_key = api_key
        self.extra_models = extra_models
        self.record_path = record_path
        self.records: list[dict] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, entry: dict) -> None:
        with self._lock:
            self.records.append(entry)
            if self.record_path:
                with open(self.record_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")

    def start_in_thread(self) -> "VllmStandin":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


def _serve_front(port: int, upstream_command: list[str], *, version: str | None, record: str | None,
                 extra_models: tuple[str, ...]) -> None:
    upstream_port = free_port()
    command = [a.replace("{upstream_port}", str(upstream_port)) for a in upstream_command]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stdout, stderr=sys.stderr)
    front = VllmStandin(
        port, f"http://127.0.0.1:{upstream_port}", version=version,
        api_key=os.environ.get("VLLM_API_KEY") or None, extra_models=extra_models, record_path=record,
    )

    def shutdown(*_):
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    threading.Thread(target=lambda: (child.wait(), os._exit(3)), daemon=True).start()
    front.serve_forever()


def _vllm_cli(argv: list[str]) -> None:
    if argv[:1] in (["--version"], ["-v"]):
        print(os.environ.get("STANDIN_VERSION", "0.33.0"))
        return
    parser = argparse.ArgumentParser(prog="vllm")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", nargs="+")
    serve.add_argument("--seed", type=int)
    serve.add_argument("--generation-config")
    serve.add_argument("--tensor-parallel-size", type=int)
    serve.add_argument("--enable-lora", action="store_true")
    serve.add_argument("--lora-modules", nargs="+", default=[])
    serve.add_argument("--max-lora-rank", type=int)
    if argv[:1] != ["serve"]:
        sys.exit(f"vllm stand-in: only `serve` and `--version` are supported, not {argv[:1]}")
    args, _ = parser.parse_known_args(argv)
    if os.environ.get("STANDIN_ARGV"):
        with open(os.environ["STANDIN_ARGV"], "w", encoding="utf-8") as f:
            json.dump(argv, f)
    served = (args.served_model_name or [args.model])[0]
    upstream = [
        os.environ["STANDIN_LLAMA_SERVER"], "-m", os.environ["STANDIN_GGUF"], "--host", "127.0.0.1",
        "--port", "{upstream_port}", "--alias", served, "-t", "2", "-np", "2", "--no-repack", "--no-webui",
    ]
    loras = tuple(m.split("=", 1)[0] for m in args.lora_modules)
    _serve_front(args.port, upstream, version=os.environ.get("STANDIN_VERSION", "0.33.0"),
                 record=os.environ.get("STANDIN_RECORD"), extra_models=loras)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["vllm-cli"]:
        _vllm_cli(argv[1:])
        return
    if argv[:1] != ["front"] or "--" not in argv:
        sys.exit("usage: vllm_standin.py front --port P [--version V] [--record F] -- UPSTREAM... | vllm-cli ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="vllm_standin.py front")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version")
    parser.add_argument("--record")
    parser.add_argument("--extra-model", action="append", default=[])
    args = parser.parse_args(argv[1:split])
    _serve_front(args.port, argv[split + 1:], version=args.version, record=args.record,
                 extra_models=tuple(args.extra_model))


if __name__ == "__main__":
    main()
