"""vLLM's OpenAI-compatible server: attach to a running one, or launch `vllm serve` for the run.

Attach: `base_url` in the spec (or `VLLM_BASE_URL`), with or without the trailing `/v1`. Launch
(neither set): `vllm serve MODEL --host 127.0.0.1 --port N --served-model-name NAME --seed 0
--generation-config vllm [...]` through the core launcher, which waits for `GET /health`; then the
provider checks `GET /v1/models` lists the name requests use and reads `GET /version`.
`VLLM_API_KEY`, when set, is sent as the bearer key; a launched server inherits it from the
environment (vLLM reads it itself), so the key never appears on a command line or in a log.

Request bodies differ from the plain OpenAI provider in three ways:
- `temperature` and `top_p` are always sent: vLLM fills unset sampling fields from the model's
  generation_config.json, so "unset" would silently mean "whatever the checkpoint ships".
- `options.constrain: choice` restricts a text-mode answer to one of the labels, with
  `structured_outputs: {choice: [...]}` on vLLM >= 0.10.2 and `guided_choice` before. The field name
  depends on the server version: 0.12+ answers the old names with HTTP 200 and unconstrained
  output, so guessing wrong fails silently. The body is built (and cached) before any server is
  started, so the version comes from `options.server_version`, else from `GET /version` of the
  attached server, else from `vllm --version` of the binary about to be launched; once the server is
  up, its `/version` must agree or the run stops.
- JSON modes send `response_format` (json_schema / json_object) unchanged: every vLLM version
  enforces it (its `strict` flag is ignored; output is always constrained).

Options (spec `options:`, checked by `VllmOptions`; unknown keys are an error):
  served_name, adapter, lora_modules, max_lora_rank, tensor_parallel_size, max_model_len,
  gpu_memory_utilization, dtype, seed, extra_args, binary, command, startup_timeout_s,
  attach_timeout_s, constrain, server_version; and the OpenAI provider's retry tuning
  (retry_base_s, retry_max_s, max_retry_after_s). vLLM has no Batch API: `batch: true` is an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import HarnessError
from providers.base import ChatRequest
from providers.launcher import ManagedServer, free_port
from providers.openai import BATCH_OPTIONS, OPENAI_OPTIONS as _OPENAI_OPTIONS, OpenAIProvider

# vLLM 0.10.2 renamed guided_* request fields to structured_outputs (vllm#22772); 0.12 removed them.
STRUCTURED_OUTPUTS_SINCE = (0, 10, 2)
_PLACEHOLDERS = ("{port}", "{host}", "{model}", "{served_name}")
# Options the OpenAI provider reads itself (scheduler tuning, schema constraints); vLLM has no
# Batch API, and `batch: true` is refused by the base class.
OPENAI_OPTIONS = _OPENAI_OPTIONS - BATCH_OPTIONS


class VllmOptions(BaseModel):
    """`options:` of a vllm model. Launch-only settings are ignored when attaching."""

    model_config = ConfigDict(extra="forbid")

    served_name: str | None = Field(
        None, description="--served-model-name when launching, and the `model` requests name; "
        "default: the model id."
    )
    adapter: str | None = Field(
        None, description="Send requests to this LoRA adapter (its served name, a key of "
        "lora_modules when launching) instead of the base model."
    )
    lora_modules: dict[str, str] = Field(
        default_factory=dict, description="Adapter served name -> path or hub id: "
        "--enable-lora --lora-modules name=path ..."
    )
    max_lora_rank: int | None = Field(None, ge=1, description="--max-lora-rank")
    tensor_parallel_size: int | None = Field(None, ge=1, description="--tensor-parallel-size")
    max_model_len: int | None = Field(None, ge=1, description="--max-model-len")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="--gpu-memory-utilization")
    dtype: str | None = Field(None, description="--dtype (auto, bfloat16, float16, ...)")
    seed: int = Field(0, description="--seed of the launched server")
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments.")
    binary: str = Field("vllm", description="The vllm executable (name on PATH or a path).")
    command: list[str] | None = Field(
        None, description="Replace the whole launch command; {port}, {host}, {model} and "
        "{served_name} are filled in. Any server speaking vLLM's HTTP API will do."
    )
    startup_timeout_s: float = Field(1200.0, gt=0, description="How long a launch may take to load.")
    attach_timeout_s: float = Field(30.0, gt=0, description="How long to wait for an attached server's /health.")
    constrain: Literal["none", "choice"] = Field(
        "none", description="choice: restrict text-mode answers of single-label tasks to the labels."
    )
    server_version: str | None = Field(
        None, description="The vLLM version to build request fields for, instead of asking the server."
    )


def parse_version(text: str) -> tuple[int, int, int]:
    """'0.10.2', '0.11.1rc2.dev5+g1a2b', 'v0.9' -> (major, minor, patch)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def uses_structured_outputs(version: tuple[int, int, int]) -> bool:
    return version >= STRUCTURED_OUTPUTS_SINCE


def _http_get(url: str, *, api_key: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class VllmProvider(OpenAIProvider):
    name = "vllm"
    key_env = "VLLM_API_KEY"  # optional: sent when set
    has_batch_api = False
    supports_prefill = True  # with continue_final_message (build_body)
    base_url_env = "VLLM_BASE_URL"
    default_base_url = ""

    def __init__(self, model):
        super().__init__(model)
        own = {k: v for k, v in model.options.items() if k not in OPENAI_OPTIONS and k != "batch"}
        try:
            self.options = VllmOptions.model_validate(own)
        except ValidationError as exc:
            problems = "; ".join(
                f"options.{'.'.join(str(p) for p in e['loc'])}: "
                + ("unknown option; allowed: " + ", ".join(sorted({*VllmOptions.model_fields, *OPENAI_OPTIONS}))
                   if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors(include_url=False)
            )
            raise HarnessError(f"model {model.id}: {problems}") from None
        if self.options.adapter and self.options.lora_modules and self.options.adapter not in self.options.lora_modules:
            raise HarnessError(
                f"model {model.id}: options.adapter {self.options.adapter!r} is not one of "
                f"options.lora_modules ({', '.join(self.options.lora_modules)})"
            )
        self.attached = bool(model.base_url or os.environ.get(self.base_url_env))
        self.server: ManagedServer | None = None
        self.server_version: str | None = None  # what the running server's /version said
        self.ready_after_s: float | None = None  # start() until the served name was confirmed
        self._body_version: tuple[int, int, int] | None = None
        self._body_version_source: str | None = None

    # -- where requests go ---------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """scheme://host:port of the server (where /health and /version live)."""
        if self.server is not None:
            return self.server.base_url
        url = super().base_url
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def launched_name(self) -> str:
        return self.options.served_name or self.model.model

    @property
    def served_name(self) -> str:
        """The `model` field of every request: the LoRA adapter when one is chosen."""
        return self.options.adapter or self.launched_name

    def missing_requirement(self) -> str | None:
        if self.model.api_key_env and not self.api_key:
            return f"{self.model.api_key_env} is not set"
        if self.attached or self.options.command:
            return None
        if shutil.which(self.options.binary) is None:
            return (
                f"`{self.options.binary}` is not installed here: install vLLM (on a GPU machine, in "
                f"its own environment) or attach to a running server with base_url / {self.base_url_env}"
            )
        return None

    def endpoint(self) -> str:
        if self.attached:
            return super().endpoint()
        # A launched server listens on a new port each run: the cache keys on what it serves.
        identity = f"vllm://{self.model.model}"
        if self.options.adapter:
            identity += f"+lora:{self.options.adapter}={self.options.lora_modules.get(self.options.adapter, '')}"
        return identity

    # -- request bodies --------------------------------------------------------------------------

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        body = super().build_body(request)
        p = request.params
        # vLLM takes unset sampling fields from the checkpoint's generation_config: always send
        # them (the OpenAI defaults when the spec leaves them unset).
        body["temperature"] = 1.0 if p.temperature is None else p.temperature
        body["top_p"] = 1.0 if p.top_p is None else p.top_p
        if request.continue_final:  # label likelihood: continue the assistant prefill
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if (
            self.options.constrain == "choice"
            and not request.likelihood
            and request.response_format is None
            and not {"structured_outputs", "guided_choice"} & set(p.extra_body)
        ):
            if not request.choices:
                raise HarnessError(
                    f"model {self.model.id}: options.constrain: choice restricts an answer to ONE "
                    f"label, so it needs a single_label task; remove it for multi_label specs"
                )
            choices = list(request.choices)
            if uses_structured_outputs(self.body_version()):
                body["structured_outputs"] = {"choice": choices}
            else:
                body["guided_choice"] = choices
        return body

    def body_version(self) -> tuple[int, int, int]:
        """The vLLM version request fields are built for (see the module docstring)."""
        if self._body_version is None:
            if self.options.server_version:
                text, source = self.options.server_version, "options.server_version"
            elif self.attached:
                text, source = self._read_version(), f"{self.root_url}/version"
                if text is None:
                    raise HarnessError(
                        f"model {self.model.id}: {self.root_url}/version did not answer a vLLM version; "
                        f"options.constrain: choice needs it to pick the request field "
                        f"(structured_outputs or guided_choice): set options.server_version"
                    )
            elif self.options.command:
                raise HarnessError(
                    f"model {self.model.id}: options.constrain: choice with options.command: set "
                    f"options.server_version (the request field depends on the vLLM version, and a "
                    f"custom command cannot be asked before it starts)"
                )
            else:
                text, source = self._binary_version(), f"{self.options.binary} --version"
            try:
                self._body_version = parse_version(text)
            except ValueError:
                raise HarnessError(f"model {self.model.id}: {source} gave {text!r}, not a version") from None
            self._body_version_source = source
        return self._body_version

    def _read_version(self) -> str | None:
        try:
            status, data = _http_get(self.root_url + "/version", timeout=10)
        except (OSError, urllib.error.URLError) as exc:
            raise HarnessError(f"model {self.model.id}: cannot reach {self.root_url}/version: {exc}") from None
        if status != 200:
            return None
        try:
            return str(json.loads(data)["version"])
        except (ValueError, KeyError, TypeError):
            return None

    def _binary_version(self) -> str:
        try:
            done = subprocess.run(
                [self.options.binary, "--version"], capture_output=True, text=True, timeout=300,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HarnessError(
                f"model {self.model.id}: `{self.options.binary} --version` failed ({exc}); "
                f"set options.server_version"
            ) from None
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()

    # -- lifecycle -------------------------------------------------------------------------------

    def launch_command(self, port: int) -> list[str]:
        o = self.options
        if o.command:
            values = {
                "{port}": str(port), "{host}": "127.0.0.1", "{model}": self.model.model,
                "{served_name}": self.launched_name,
            }
            out = []
            for arg in o.command:
                for key in _PLACEHOLDERS:
                    arg = arg.replace(key, values[key])
                out.append(arg)
            return out
        command = [
            o.binary, "serve", self.model.model,
            "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", self.launched_name,
            "--seed", str(o.seed),
            # Sampling defaults from the request (and vLLM), never from the checkpoint.
            "--generation-config", "vllm",
        ]
        if o.tensor_parallel_size is not None:
            command += ["--tensor-parallel-size", str(o.tensor_parallel_size)]
        if o.max_model_len is not None:
            command += ["--max-model-len", str(o.max_model_len)]
        if o.gpu_memory_utilization is not None:
            command += ["--gpu-memory-utilization", str(o.gpu_memory_utilization)]
        if o.dtype is not None:
            command += ["--dtype", o.dtype]
        if o.lora_modules:
            command += ["--enable-lora", "--lora-modules"]
            command += [f"{name}={path}" for name, path in o.lora_modules.items()]
            if o.max_lora_rank is not None:
                command += ["--max-lora-rank", str(o.max_lora_rank)]
        return command + [str(a) for a in o.extra_args]

    async def start(self) -> None:
        import asyncio

        started = time.monotonic()
        try:
            if not self.attached:
                port = free_port()
                self.server = ManagedServer(
                    self.launch_command(port),
                    port=port,
                    name=f"vllm ({self.launched_name})",
                    startup_timeout_s=self.options.startup_timeout_s,
                )
                await self.server.start()  # returns once GET /health answers 200
            await asyncio.to_thread(self._check_server)
        except BaseException:
            if self.server is not None:
                self.server.stop()
                self.server = None
            raise
        self.ready_after_s = time.monotonic() - started
        await super().start()

    def _check_server(self) -> None:
        """/health (attach only: the launcher already waited), /v1/models lists the served name,
        /version agrees with the request fields already built."""
        where = self.root_url
        if self.attached:
            deadline = time.monotonic() + self.options.attach_timeout_s
            while True:
                try:
                    status, _ = _http_get(where + "/health", timeout=5)
                except (OSError, urllib.error.URLError) as exc:
                    status = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"model {self.model.id}: the vLLM server at {where} is not healthy "
                        f"(GET /health -> {status}) after {self.options.attach_timeout_s:.0f}s"
                    )
                time.sleep(0.5)
        status, data = _http_get(where + "/v1/models", api_key=self.api_key, timeout=10)
        if status in (401, 403):
            raise HarnessError(
                f"model {self.model.id}: {where}/v1/models answered {status}: the server wants an API "
                f"key; set {self.model.api_key_env or self.key_env}"
            )
        try:
            served = [m["id"] for m in json.loads(data)["data"]]
        except (ValueError, KeyError, TypeError):
            raise HarnessError(
                f"model {self.model.id}: {where}/v1/models answered {status} without a model list: "
                f"{data[:200]!r}"
            ) from None
        if self.served_name not in served:
            hint = " (LoRA adapters are addressed by their served name)" if self.options.adapter else ""
            raise HarnessError(
                f"model {self.model.id}: {where} does not serve {self.served_name!r}{hint}; it serves: "
                f"{', '.join(served) or 'nothing'}"
            )
        self.server_version = self._read_version()
        if self._body_version is not None and self.server_version is not None:
            running = parse_version(self.server_version)
            if uses_structured_outputs(running) != uses_structured_outputs(self._body_version):
                raise HarnessError(
                    f"model {self.model.id}: requests were built for vLLM "
                    f"{'.'.join(map(str, self._body_version))} ({self._body_version_source}) but "
                    f"{where} runs {self.server_version}; they differ on structured_outputs vs "
                    f"guided_choice: fix options.server_version"
                )
