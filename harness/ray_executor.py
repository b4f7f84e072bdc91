"""`harness eval SPEC --executor ray`: answer a run's requests with a Ray Data pipeline first.

The shape is the Batch API pre-pass of the runner (`provider.prefetches`), moved in front of the
whole run: the harness renders every planned request with its own code (`runner.planned_bodies`,
so the same bodies and the same cache keys as a local run), skips what the response cache already
answers, hands the rest to Ray Data's LLM batch API (`ray.data.llm`), and stores each answer in
the response cache as it comes back. Then the ordinary local run starts and reads everything from
the cache: validation, scoring, report and run status are the local executor's, unchanged.

Consequences, by construction:
* A run killed mid-way keeps every answer stored before the kill (each row is committed as it
  arrives, not at the end); rerunning the same command sends only the rest.
* A run whose requests are all cached never imports or starts Ray.
* Errors (HTTP 4xx/5xx, a refused connection, an engine failure on one row) are never stored; the
  local pass sends those requests again through the provider's own scheduler (retries with
  backoff, Retry-After, a 401 stops the model) and records them as a local run would.
* Label-likelihood follow-up requests (labels sharing their first tokens) depend on the first
  answer, so they cannot be planned: the local pass sends them. So do models whose provider runs
  in-process (`transformers`) or uses the Batch API (`options.batch`).

Two back ends (`execution.backend`):
* `http` — `HttpRequestProcessorConfig`: the rendered bodies are POSTed to the model's
  OpenAI-compatible server (a `llamacpp` model's launched llama-server is started for the pass and
  stopped after it), or spread round-robin over `execution.base_urls` (replicas of that server;
  answers are keyed on the model's own endpoint, as a local run keys them). `replicas` actors per
  URL, each with up to `batch_size` requests in flight, at most `qps` requests per second each.
  The body reaches the server byte for byte (see harness.ray_worker).
* `vllm` — `vLLMEngineProcessorConfig`: vLLM engines as Ray actors (`replicas`, each with
  `tensor_parallel_size` x `pipeline_parallel_size` GPUs, or `gpus_per_replica`), the chat template
  applied by vLLM, sampling parameters and the answer contract (JSON schema, `choice` for
  `options.constrain: choice`) taken from the rendered body, the model's LoRA adapter
  (`options.adapter` / `lora_modules`) per request. Models with provider `vllm`; answers are keyed
  as the `vllm` provider keys them, so a later local run against `vllm serve` reads them back.

The cache must be readable and writable (`--cache rw`, the default): the answers travel through
it. `--cache replay` needs no executor (nothing is sent); `read`/`write`/`off` are refused.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from harness.errors import HarnessError
from harness.keys import canonical_json
from harness.runner import Prepared, uncached_planned
from harness.spec import Execution, Model
from providers import ChatResponse, Provider, get_provider_class
from providers.wire import STATUS_KIND, read_completion, redact

if TYPE_CHECKING:
    from harness.cache import ResponseCache

INSTALL_HINT = "pip install 'harness[ray]' (ray[data]>=2.60 and aiohttp)"


def require_ray() -> None:
    """Fail early, with what to install, when Ray Data's LLM API cannot be imported."""
    try:
        importlib.import_module("ray")
        importlib.import_module("aiohttp")
    except ImportError as exc:
        raise HarnessError(f"--executor ray needs Ray Data and aiohttp ({exc}): {INSTALL_HINT}") from None


@dataclass
class Pending:
    """The requests of one model the cache cannot answer: key -> (material, body)."""

    model: Model
    provider: Provider
    requests: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    planned: int = 0
    distinct: int = 0


def local_reason(provider: Provider, backend: str) -> str | None:
    """Why this model's requests stay on the local path, or None when Ray can send them."""
    from providers.openai import OpenAIProvider

    if provider.prefetches:
        return "it uses the Batch API (options.batch)"
    if backend == "http" and not isinstance(provider, OpenAIProvider):
        return f"provider {provider.name!r} is not an OpenAI-compatible server"
    if backend == "vllm" and provider.name != "vllm":
        return f"backend vllm runs models with provider: vllm, not {provider.name!r}"
    return None


async def find_pending(prepared: Prepared, model: Model, provider: Provider,
                       cache: "ResponseCache") -> Pending:
    """Every planned request of `model` that the cache cannot answer, each body once (duplicate
    texts and shared prompts are one request): the runner's own `uncached_planned`."""
    pending = Pending(model, provider)
    pending.planned, pending.distinct, pending.requests = await uncached_planned(prepared, model, provider, cache)
    return pending


def read_reply(status: int, text: str, latency_s: float | None, *, sdk: str = "openai",
               url: str = "", secret: str | None = None) -> ChatResponse:
    """One reply as the pipeline returns it -> ChatResponse, read by the same SDK type and
    `read_completion` as the local path (so a stored answer is the one a local run would store)."""
    if status == 0:
        return ChatResponse(error=redact(f"cannot reach {url}: {text}", secret), error_kind="unreachable",
                            latency_s=latency_s)
    if status != 200:
        kind = STATUS_KIND.get(status, "server" if status >= 500 else "bad_request")
        return ChatResponse(error=redact(f"HTTP {status}: {text[:300]}", secret), error_kind=kind,
                            latency_s=latency_s)
    try:
        body = json.loads(text)
    except ValueError:
        return ChatResponse(error=f"the reply is not JSON: {text[:120]!r}", error_kind="server", latency_s=latency_s)
    if not isinstance(body, dict):
        return ChatResponse(error=f"the reply is not a JSON object: {text[:120]!r}", error_kind="server",
                            latency_s=latency_s)
    chat_types = importlib.import_module(f"{sdk}.types.chat")
    return read_completion(chat_types.ChatCompletion.construct(**body), latency_s)


# -- the vLLM engine back end: configuration and request translation ----------------------------

# Body fields the engine request carries over; anything else in a body cannot be honoured by the
# engine path and is refused rather than silently dropped.
_ENGINE_FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed",
                  "stop", "logprobs", "top_logprobs", "response_format", "structured_outputs", "guided_choice",
                  # a final assistant message is continued by Ray's chat template stage by itself
                  "continue_final_message", "add_generation_prompt"}


def engine_request(body: dict, *, lora: str | None = None) -> dict:
    """A rendered chat body -> what the vLLM stages take: messages (templated by vLLM), vLLM
    SamplingParams fields, the answer constraint as `structured_outputs`, the LoRA adapter."""
    unknown = sorted(set(body) - _ENGINE_FIELDS)
    if unknown:
        raise HarnessError(
            f"backend vllm cannot send body field(s) {', '.join(unknown)} to a vLLM engine; "
            f"remove them from params.extra_body or use backend: http against `vllm serve`"
        )
    if body.get("continue_final_message") and (body.get("messages") or [{}])[-1].get("role") != "assistant":
        raise HarnessError("continue_final_message needs a final assistant message to continue")
    sp: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed", "stop"):
        if body.get(name) is not None:
            sp[name] = body[name]
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None:
        sp["max_tokens"] = max_tokens
    if body.get("logprobs"):
        sp["logprobs"] = body.get("top_logprobs") or 0  # vLLM: the sampled token plus N alternatives
    structured: dict[str, Any] = {}
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        structured["json"] = fmt["json_schema"]["schema"]
    elif fmt.get("type") == "json_object":
        structured["json_object"] = True
    if body.get("structured_outputs"):
        structured.update(body["structured_outputs"])
    if body.get("guided_choice"):
        structured["choice"] = body["guided_choice"]
    if structured:
        sp["structured_outputs"] = structured
    return {"messages": body["messages"], "sampling_params": sp, "served_model": body["model"], "lora": lora}


def vllm_processor_config(execution: Execution, model: Model, provider: Provider):
    """The `vLLMEngineProcessorConfig` of one vllm model: engine arguments from the model's
    options (dtype, max_model_len, LoRA, ...) and the spec's `execution:` (replicas, batch size,
    parallelism, GPUs per replica). Built here and asserted by tests without a GPU."""
    from ray.data.llm import vLLMEngineProcessorConfig

    o = provider.options
    tp = o.tensor_parallel_size or execution.tensor_parallel_size
    pp = execution.pipeline_parallel_size
    engine: dict[str, Any] = {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "seed": o.seed}
    if execution.max_model_len or o.max_model_len:
        engine["max_model_len"] = execution.max_model_len or o.max_model_len
    if o.dtype:
        engine["dtype"] = o.dtype
    if o.gpu_memory_utilization:
        engine["gpu_memory_utilization"] = o.gpu_memory_utilization
    if o.lora_modules:
        engine["enable_lora"] = True
        engine["max_loras"] = len(o.lora_modules)
        if o.max_lora_rank:
            engine["max_lora_rank"] = o.max_lora_rank
    engine.update(execution.engine_kwargs)
    kwargs: dict[str, Any] = {}
    workers = tp * pp
    if execution.gpus_per_replica is not None and execution.gpus_per_replica != workers:
        # One bundle per engine worker, sharing the replica's GPUs (a fraction packs small models).
        kwargs["placement_group_config"] = {
            "bundles": [{"GPU": execution.gpus_per_replica / workers, "CPU": 1} for _ in range(workers)],
            "strategy": "PACK",
        }
    return vLLMEngineProcessorConfig(
        model_source=model.model,
        engine_kwargs=engine,
        concurrency=execution.replicas,
        batch_size=execution.batch_size or 64,  # vLLM batches inside the engine; 64 keeps rows flowing
        accelerator_type=execution.accelerator_type,
        runtime_env=execution.runtime_env,
        should_continue_on_error=True,  # one bad row is an unstored error, not a failed pipeline
        **kwargs,
    )


def lora_of(provider: Provider) -> str | None:
    """The adapter a vllm model's requests use (path or hub id), or None for the base model."""
    o = provider.options
    return o.lora_modules.get(o.adapter, o.adapter) if o.adapter else None


# -- the executor -------------------------------------------------------------------------------


class RayExecutor:
    """Answers a prepared run's uncached requests through Ray, into the response cache."""

    def __init__(self, execution: Execution, *, log: Callable[[str], None] = lambda message: None):
        require_ray()
        self.execution = execution
        self.log = log
        self._ray_started = False
        self.record: dict[str, Any] = {"engine": "ray", "backend": execution.backend, "ray_started": False,
                                       "models": {}}

    async def prefill(self, prepared: Prepared, models: list[Model], cache: "ResponseCache | None") -> dict:
        """Send every uncached planned request of `models` through Ray and store the answers."""
        if cache is None or cache.mode in ("read", "write"):
            mode = "off" if cache is None else cache.mode
            raise HarnessError(
                f"--executor ray with --cache {mode}: the Ray pass hands its answers to the run through the "
                f"response cache; use --cache rw (the default)"
            )
        if cache.replay:
            self.log("ray: --cache replay sends nothing, so Ray is not started")
            return self.record
        try:
            for model in models:
                await self._one_model(prepared, model, cache)
        finally:
            self._shutdown()
        return self.record

    async def _one_model(self, prepared: Prepared, model: Model, cache: "ResponseCache") -> None:
        provider = get_provider_class(model.provider)(model)
        reason = provider.missing_requirement() or local_reason(provider, self.execution.backend)
        if reason:
            self.log(f"ray: {model.id} runs on the local path: {reason}")
            self.record["models"][model.id] = {"local": reason}
            return
        pending = await find_pending(prepared, model, provider, cache)
        entry: dict[str, Any] = {"planned": pending.planned, "distinct": pending.distinct, "to_send": len(pending.requests),
                                 "stored": 0, "errors": 0}
        self.record["models"][model.id] = entry
        if not pending.requests:
            self.log(f"ray: {model.id}: all {pending.planned} planned requests are in the cache; nothing to send")
            return
        self.log(f"ray: {model.id}: sending {len(pending.requests)} of {pending.planned} planned requests "
                 f"through Ray ({self.execution.backend} back end)")
        t0 = time.perf_counter()
        if self.execution.backend == "vllm":
            await self._run_vllm(pending, cache, entry)
        else:
            await self._run_http(pending, cache, entry)
        entry["wall_s"] = round(time.perf_counter() - t0, 3)
        failed = f"; {entry['errors']} failed and are sent again by the local pass" if entry["errors"] else ""
        self.log(f"ray: {model.id}: {entry['stored']} answers stored in {entry['wall_s']:.1f}s{failed}")

    # -- Ray ----------------------------------------------------------------------------------

    def _start(self) -> Any:
        """ray.init once per run: the cluster at `address`, else a local instance (timed)."""
        import ray

        import harness.ray_worker as worker

        # The workers get the row functions by value: they need Ray, not the harness.
        ray.cloudpickle.register_pickle_by_value(worker)
        if not ray.is_initialized():
            from ray.data import DataContext

            t0 = time.perf_counter()
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": "WARNING", "runtime_env": self.execution.runtime_env}
            if self.execution.address:
                kwargs["address"] = self.execution.address
            elif self.execution.num_cpus:
                kwargs["num_cpus"] = self.execution.num_cpus
            ray.init(**kwargs)
            DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # the harness says what happens
            self._ray_started = True
            self.record["ray_started"] = True
            self.record["ray_init_s"] = round(time.perf_counter() - t0, 3)
        return ray

    def _shutdown(self) -> None:
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    async def _stream(self, dataset: Any, pending: Pending, cache: "ResponseCache", entry: dict,
                      read: Callable[[dict], ChatResponse]) -> None:
        """Iterate the pipeline's rows (in a thread: Ray's iterator blocks) and store each answer
        the moment it arrives, so a kill keeps everything that came back before it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def pump() -> None:
            try:
                for row in dataset.iter_rows():
                    if stop.is_set():
                        return
                    loop.call_soon_threadsafe(queue.put_nowait, ("row", row))
                loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop, raised there
                if not stop.is_set():
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        thread = threading.Thread(target=pump, name="ray-rows", daemon=True)
        thread.start()
        first_error: str | None = None
        try:
            while True:
                kind, row = await queue.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise HarnessError(
                        f"the Ray pipeline failed after {entry['stored']} stored answers "
                        f"({type(row).__name__}: {str(row)[:300]}); rerun to resume from the cache, "
                        f"or use --executor local"
                    )
                material, _ = pending.requests[row["key"]]
                response = read(row)
                if response.error is not None:
                    entry["errors"] += 1
                    first_error = first_error or response.error
                    continue
                await cache.store(material, response)
                entry["stored"] += 1
        finally:
            stop.set()
        if first_error:
            entry["first_error"] = first_error[:300]

    async def _run_http(self, pending: Pending, cache: "ResponseCache", entry: dict) -> None:
        from providers.openai import normalise_base_url

        provider = pending.provider
        launched = False
        try:
            if self.execution.base_urls:
                bases = [normalise_base_url(u) for u in self.execution.base_urls]
            else:
                # As the local path would: a llamacpp (or vllm) model without base_url launches its
                # server here, an attached one just opens its client.
                await provider.start()
                launched = True
                bases = [provider.base_url]
            urls = [b.rstrip("/") + "/chat/completions" for b in bases]
            ray = self._start()
            from ray.data.llm import HttpRequestProcessorConfig, build_processor

            import harness.ray_worker as worker

            headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else None
            rows = [{"key": key, "body": canonical_json(body)} for key, (_, body) in pending.requests.items()]
            batch_size = self.execution.batch_size or provider.model.concurrency
            light = {"num_cpus": 0.25}  # I/O-bound stages: leave the CPUs to the server and the driver
            parts = []
            for i, url in enumerate(urls):
                shard = rows[i::len(urls)]
                if not shard:
                    continue
                config = HttpRequestProcessorConfig(
                    url=url, headers=headers, qps=self.execution.qps, batch_size=batch_size,
                    concurrency=self.execution.replicas, session_factory=worker.RawSession,
                    http_request_stage={"num_cpus": 0.25},
                )
                processor = build_processor(config, preprocess=worker.http_preprocess,
                                            postprocess=worker.http_postprocess,
                                            preprocess_map_kwargs=light, postprocess_map_kwargs=light)
                blocks = max(1, math.ceil(len(shard) / batch_size))
                parts.append(processor(ray.data.from_items(shard, override_num_blocks=blocks)))
            dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
            sdk = getattr(provider, "sdk", "openai")
            secret = provider.api_key
            await self._stream(dataset, pending, cache, entry, lambda row: read_reply(
                row["status"], row["text"], row["latency_s"], sdk=sdk, url=", ".join(bases), secret=secret))
            entry["urls"] = len(urls)
        finally:
            if launched:
                await provider.stop()

    async def _run_vllm(self, pending: Pending, cache: "ResponseCache", entry: dict) -> None:
        ray = self._start()
        from ray.data.llm import build_processor

        import harness.ray_worker as worker

        provider = pending.provider
        config = vllm_processor_config(self.execution, pending.model, provider)
        lora = lora_of(provider)
        rows = [{"key": key, "request": json.dumps(engine_request(body, lora=lora), ensure_ascii=False)}
                for key, (_, body) in pending.requests.items()]
        processor = build_processor(config, preprocess=worker.vllm_preprocess, postprocess=worker.vllm_postprocess)
        blocks = max(1, math.ceil(len(rows) / config.batch_size))
        dataset = processor(ray.data.from_items(rows, override_num_blocks=blocks))

        def read(row: dict) -> ChatResponse:
            if row.get("__inference_error__"):
                return ChatResponse(error=f"vLLM engine: {row['__inference_error__'][:300]}", error_kind="server")
            return read_reply(row["status"], row["text"], row["latency_s"])

        await self._stream(dataset, pending, cache, entry, read)
