"""Launching a local OpenAI-compatible server (llama.cpp's llama-server, `vllm serve`) for one run.

The server gets a free loopback port, its own process group (so stopping it also stops any worker
processes it forked) and, on Linux, a parent-death signal, so a harness killed with SIGKILL does not
leave a model server running. Readiness is polled over HTTP: servers bind their port before the
model is loaded, so an open port proves nothing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.errors import HarnessError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent(parent: int) -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            return
        # A parent killed between fork and prctl sends no signal: the child sees it re-parented
        # and ends here instead of becoming an orphaned server.
        if os.getppid() != parent:
            os._exit(1)


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ManagedServer:
    """A server process started with `command` (which must listen on `port`) and stopped with the run.

    `health_path` must answer 200 once the model is loaded; then `models_path` lists served names.
    """

    def __init__(
        self,
        command: list[str],
        *,
        port: int,
        host: str = "127.0.0.1",
        name: str = "server",
        health_path: str = "/health",
        models_path: str = "/v1/models",
        startup_timeout_s: float = 300.0,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ):
        self.command = command
        self.port = port
        self.host = host
        self.name = name
        self.health_path = health_path
        self.models_path = models_path
        self.startup_timeout_s = startup_timeout_s
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.served_models: list[str] = []
        self.ready_after_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start_process(self) -> None:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"harness-{self.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                env={**os.environ, **(self.env or {})},
            )
        except OSError as exc:
            self._log.close()
            raise HarnessError(f"cannot start {self.name}: {self.command[0]}: {exc}") from None

    def wait_ready(self) -> None:
        start = time.monotonic()
        deadline = start + self.startup_timeout_s
        delay = 0.05
        while True:
            if self.process.poll() is not None:
                raise HarnessError(
                    f"{self.name} exited with code {self.process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                status, _ = _get(self.base_url + self.health_path, timeout=2)
            except (OSError, urllib.error.URLError):
                status = None
            if status == 200:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(
                    f"{self.name} was not ready after {self.startup_timeout_s:.0f}s "
                    f"(GET {self.health_path} -> {status}); last lines of {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        status, body = _get(self.base_url + self.models_path, timeout=10)
        if status == 200:
            try:
                self.served_models = [m["id"] for m in json.loads(body).get("data", [])]
            except (ValueError, KeyError, TypeError, AttributeError):
                self.served_models = []
        self.ready_after_s = time.monotonic() - start

    async def start(self) -> None:
        self.start_process()
        try:
            await asyncio.to_thread(self.wait_ready)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                tail = collections.deque(f, maxlen=lines)
        except OSError:
            return "(no log)"
        return b"".join(tail).decode("utf-8", "replace").rstrip()
