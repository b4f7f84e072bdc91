"""OpenAI and any OpenAI-compatible server, through the official SDK's AsyncOpenAI client.

The client is created in `start()`, inside the running event loop (an AsyncOpenAI reused across
event loops fails with "Event loop is closed"). Requests go through the shared scheduler
(`providers.scheduling`): one adaptive limiter per (provider, base URL, key hash), per-request
timeouts, retries with backoff that honour Retry-After. The SDK's own retries are switched off
(`max_retries=0`) so the two do not multiply; `max_retries` and `timeout_s` come from the spec.

What is sent:

* `json_schema` mode: the answer's schema with `strict` from `output.strict`. For hosted APIs
  (api.openai.com, Groq) the schema is first checked against the strict-mode rules (every property
  required, `additionalProperties: false`, an object at the root) and stripped of value constraints
  that strict mode rejects or that differ between providers (`minimum`, `maxLength`, `pattern`, ...);
  the harness still enforces them when it validates the answer. `options: {schema_constraints: keep}`
  sends them as they are.
* `json_object` and plain text as asked; `logprobs`/`top_logprobs` when `params.logprobs` is set.
* `max_completion_tokens` for api.openai.com (it counts reasoning tokens too), `max_tokens` for other
  servers (older llama.cpp, Ollama and LM Studio ignore `max_completion_tokens`).

What is read: text, finish reason (`length` -> outcome `truncated`), refusal (-> `refusal`), usage
(prompt, completion, cached prompt and reasoning tokens), logprobs, the served model and the
`x-ratelimit-*` headers (through `with_raw_response`; in openai `raw.parse()` is not awaited).

OpenAI-compatible servers (llama.cpp, Ollama, LM Studio, vLLM, ...): `base_url` names the server. A
URL with no path gets `/v1` appended and a trailing `/chat/completions` is dropped (the SDK adds it);
other paths are used as given. No key is needed unless `api_key_env` is set (the SDK refuses an empty
key, so "EMPTY" is sent). `model` must be the server's served name: a 404 from such a server lists
the names it serves. With `options: {batch: true}` the model runs through the Batch API
(`providers.batch`).
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from harness.errors import HarnessError
from providers.base import ChatRequest, ChatResponse, Provider
from providers.scheduling import Attempt, RetryPolicy, Scheduler, limiter_for

OPENAI_URL = "https://api.openai.com/v1"

# Value constraints left out of hosted strict schemas (validated locally instead).
SCHEMA_CONSTRAINTS = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format",
    "minItems", "maxItems", "uniqueItems", "contains", "minContains", "maxContains",
    "minProperties", "maxProperties", "patternProperties", "propertyNames",
    "unevaluatedProperties", "unevaluatedItems",
})
# `options:` this provider reads (subclasses with options of their own extend or check them).
BATCH_OPTIONS = frozenset({  # providers.batch
    "batch", "batch_window", "batch_poll_s", "batch_timeout_s", "batch_max_requests",
})
OPENAI_OPTIONS = frozenset({
    "retry_base_s", "retry_max_s", "max_retry_after_s",  # scheduling (providers.scheduling)
    "schema_constraints",  # keep | drop: value constraints in hosted strict schemas
}) | BATCH_OPTIONS
_STATUS_KIND = {401: "auth", 403: "auth", 404: "not_found", 400: "bad_request", 422: "bad_request",
                408: "timeout", 409: "server", 429: "rate_limit"}


def notice(message: str) -> None:
    """A one-line note on stderr for things the user must know but that are not errors."""
    print(f"harness: {message}", file=sys.stderr, flush=True)


def normalise_base_url(url: str) -> str:
    """`http://host:port` -> `http://host:port/v1`; `.../v1/chat/completions` -> `.../v1`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HarnessError(
            f"base_url {url!r}: expected an http(s) URL such as http://127.0.0.1:8080/v1"
        )
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def redact(text: str | None, secret: str | None) -> str | None:
    """Remove a key (and key-like tokens) from an error message before it is written anywhere."""
    if text is None:
        return None
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return re.sub(r"\b(sk|gsk|xai|pk)[-_][A-Za-z0-9*_\-]{8,}", "[redacted]", text)


# ---------------------------------------------------------------------------------------------
# Strict schemas


def strict_schema_problems(schema: dict) -> list[str]:
    """Where a JSON schema breaks OpenAI's strict-mode rules (empty when it is fine)."""
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append("the root must be an object (`type: object`), not a union or a scalar")

    def visit(node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                visit(item, f"{where}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" or "properties" in node:
            props = node.get("properties")
            if props is None:
                problems.append(f"{where or '<root>'}: an object without fixed `properties` (a dict) "
                                "is not allowed in strict mode")
            else:
                missing = [p for p in props if p not in (node.get("required") or [])]
                if missing:
                    problems.append(f"{where or '<root>'}: not required: {', '.join(missing)}")
                if node.get("additionalProperties") is not False:
                    problems.append(f"{where or '<root>'}: needs `additionalProperties: false`")
        for key, value in node.items():
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                for name, sub in value.items():
                    visit(sub, f"{where}.{name}" if where else name)
            elif key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
                visit(value, f"{where}.{key}" if where else key)

    visit(schema, "")
    return problems


def wire_schema(schema: dict, *, keep_constraints: bool = False) -> dict:
    """The schema as sent to a hosted strict endpoint: `$ref`s with sibling keys inlined (strict
    mode rejects them), and value constraints dropped unless `keep_constraints`."""
    defs = schema.get("$defs", {})

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and len(node) > 1 and node["$ref"].startswith("#/$defs/"):
            target = defs.get(node["$ref"].split("/")[-1])
            if target is not None:
                node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        out = {}
        for key, value in node.items():
            if not keep_constraints and key in SCHEMA_CONSTRAINTS:
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: visit(sub) for name, sub in value.items()}
            else:
                out[key] = visit(value)
        return out

    return visit(schema)


# ---------------------------------------------------------------------------------------------


class OpenAIProvider(Provider):
    name = "openai"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = OPENAI_URL
    sdk = "openai"  # the SDK module whose exception and type classes are used
    hosted_hosts: tuple[str, ...] = ("api.openai.com",)  # hosts with strict-mode rules and billing
    # Supplies the SDK's HTTP client when set (tests replay recorded wire traffic through it); a
    # class attribute so it can be set for providers the runner creates.
    http_client_factory: Callable[[], Any] | None = None
    # Options checked at construction; only for the classes that set this themselves (subclasses
    # such as llamacpp and vllm read options of their own).
    known_options: frozenset[str] = OPENAI_OPTIONS
    has_batch_api = True

    def __init__(self, model):
        super().__init__(model)
        if "known_options" in type(self).__dict__:
            for key in model.options:
                if key not in self.known_options:
                    hint = difflib.get_close_matches(key, sorted(self.known_options), n=1)
                    raise HarnessError(
                        f"model {model.id}: options.{key}: unknown option for provider {self.name!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else "")
                        + f" Allowed: {', '.join(sorted(self.known_options))}"
                    )
        self.client = None
        self.scheduler: Scheduler | None = None
        self._create_params: frozenset[str] | None = None
        self._batch_results: dict[str, ChatResponse] | None = None
        self._served_models: list[str] | None = None
        self._checked_schemas: set[int] = set()

    # -- where requests go ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        url = self.model.base_url or os.environ.get(self.base_url_env) or self.default_base_url
        return normalise_base_url(url) if url else url

    @property
    def is_hosted_openai(self) -> bool:
        return urlsplit(self.base_url).hostname == "api.openai.com"

    @property
    def is_hosted(self) -> bool:
        """A hosted API with strict-mode schema rules (not a self-hosted compatible server)."""
        return urlsplit(self.base_url).hostname in self.hosted_hosts

    def missing_requirement(self) -> str | None:
        # A self-hosted OpenAI-compatible server usually needs no key.
        if not self.is_hosted and not self.model.api_key_env:
            return None
        return super().missing_requirement()

    def endpoint(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    @property
    def served_name(self) -> str:
        return self.model.model

    @property
    def batch_mode(self) -> bool:
        return bool(self.model.options.get("batch", False))

    # -- the request body ----------------------------------------------------------------------

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {"model": self.served_name, "messages": request.messages}
        if p.temperature is not None:
            body["temperature"] = p.temperature
        if p.top_p is not None:
            body["top_p"] = p.top_p
        if p.max_tokens is not None:
            # api.openai.com wants max_completion_tokens (it counts reasoning tokens too); local
            # servers (older llama.cpp, Ollama, LM Studio) ignore it and need max_tokens.
            body["max_completion_tokens" if self.is_hosted_openai else "max_tokens"] = p.max_tokens
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = p.stop
        if p.logprobs:
            body["logprobs"] = True
            if p.top_logprobs is not None:
                body["top_logprobs"] = p.top_logprobs
        if request.response_format is not None:
            body["response_format"] = self.wire_response_format(request.response_format)
        body.update(p.extra_body)
        return body

    def wire_response_format(self, response_format: dict) -> dict:
        """The response_format as this endpoint wants it (hook for provider rules on `strict`)."""
        if response_format.get("type") != "json_schema" or not self.is_hosted:
            return response_format
        spec = dict(response_format["json_schema"])
        schema = spec["schema"]
        if spec.get("strict") and id(schema) not in self._checked_schemas:
            problems = strict_schema_problems(schema)
            if problems:
                raise HarnessError(
                    f"{self.model.id}: the answer schema does not meet strict structured-output "
                    f"rules: {'; '.join(problems)}. Fix the output model or set `output.strict: false`."
                )
            self._checked_schemas.add(id(schema))
        keep = self.model.options.get("schema_constraints", "drop") == "keep"
        spec["schema"] = wire_schema(schema, keep_constraints=keep)
        return {"type": "json_schema", "json_schema": spec}

    def create_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        """Body -> keyword arguments of chat.completions.create; unknown fields go in extra_body."""
        if self._create_params is None:
            params = inspect.signature(self.client.chat.completions.create).parameters
            self._create_params = frozenset(
                n for n, prm in params.items()
                if prm.kind is inspect.Parameter.KEYWORD_ONLY
                and n not in ("extra_headers", "extra_query", "extra_body", "timeout")
            )
        kwargs = {k: v for k, v in body.items() if k in self._create_params}
        extra = {k: v for k, v in body.items() if k not in self._create_params}
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    # -- lifecycle -----------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs = {
            "api_key": self.api_key or "EMPTY",  # the SDK refuses an empty key, local servers need none
            "base_url": self.base_url,
            "timeout": self.model.timeout_s,
            "max_retries": 0,  # the scheduler retries; SDK retries would multiply them
        }
        factory = type(self).http_client_factory
        if factory is not None:
            kwargs["http_client"] = factory()
        return kwargs

    def _make_client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(**self._client_kwargs())

    def retry_policy(self) -> RetryPolicy:
        o = self.model.options
        return RetryPolicy(
            max_retries=self.model.max_retries,
            timeout_s=self.model.timeout_s,
            base_delay_s=float(o.get("retry_base_s", 0.5)),
            max_delay_s=float(o.get("retry_max_s", 30.0)),
            max_server_wait_s=float(o.get("max_retry_after_s", 300.0)),
        )

    async def start(self) -> None:
        self.client = self._make_client()
        limiter = limiter_for(self.name, self.endpoint(), self.api_key, self.model.concurrency)
        self.scheduler = Scheduler(limiter, self.retry_policy())

    async def stop(self) -> None:
        try:
            if self.client is not None:
                await self.client.close()
                self.client = None
        finally:
            # Subclasses that launch their server (llamacpp, vllm) keep it in `self.server`.
            server = getattr(self, "server", None)
            if server is not None:
                server.stop()
                self.server = None

    def scheduling_stats(self) -> dict[str, Any] | None:
        return self.scheduler.limiter.snapshot() if self.scheduler is not None else None

    # -- sending -------------------------------------------------------------------------------

    async def send(self, body: dict[str, Any]) -> ChatResponse:
        if self._batch_results is not None:
            return self._batch_answer(body)
        return await self.scheduler.run(lambda: self.attempt(body))

    async def _create_raw(self, kwargs: dict[str, Any]):
        return await self.client.chat.completions.with_raw_response.create(**kwargs)

    async def _parse_raw(self, raw):
        return raw.parse()  # openai's LegacyAPIResponse.parse() is synchronous

    async def attempt(self, body: dict[str, Any]) -> Attempt:
        """One HTTP exchange, never raising for API failures."""
        sdk = __import__(self.sdk)
        kwargs = self.create_kwargs(body)
        started = time.perf_counter()
        try:
            raw = await self._create_raw(kwargs)
            completion = await self._parse_raw(raw)
        except sdk.APIError as exc:
            return await self._failed(exc, time.perf_counter() - started)
        response = read_completion(completion, time.perf_counter() - started)
        return Attempt(response, status=raw.status_code, headers=dict(raw.headers))

    async def _failed(self, exc: Exception, latency_s: float) -> Attempt:
        sdk = __import__(self.sdk)
        status = getattr(exc, "status_code", None)
        headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else {}
        if isinstance(exc, sdk.APITimeoutError):
            kind = "timeout"
        elif isinstance(exc, sdk.APIConnectionError):
            kind = "connection"
        elif status is not None:
            kind = _STATUS_KIND.get(status, "server" if status >= 500 else "bad_request")
        else:
            kind = "server"
        message = describe_error(exc)
        if status == 429 and _error_code(exc) == "insufficient_quota":
            # out of credits: every further request fails the same way, so stop like a bad key
            kind = "auth"
            message += " — the account is out of quota: check its plan and billing"
        elif kind == "auth":
            env = self.model.api_key_env or self.key_env
            message += f" — check {env}" if env else ""
        elif kind == "not_found" and not self.is_hosted:
            served = await self._list_served_models()
            if served is not None and self.served_name not in served:
                message += (f" — {self.base_url} serves {', '.join(served) or 'no models'}; "
                            "set `model:` to one of these served names")
            elif urlsplit(self.base_url).path.rstrip("/").split("/")[-1] != "v1":
                message += " — OpenAI-compatible servers usually answer under /v1: check base_url"
        return Attempt(
            ChatResponse(error=redact(message, self.api_key), error_kind=kind, latency_s=latency_s),
            status=status, headers=headers,
        )

    async def _list_served_models(self) -> list[str] | None:
        if self._served_models is None:
            try:
                page = await self.client.models.list()
                self._served_models = [m.id for m in page.data]
            except Exception:  # noqa: BLE001 - only a hint for an error message
                return None
        return self._served_models

    # -- Batch API -----------------------------------------------------------------------------

    async def run_batch(self, bodies: list[dict[str, Any]]) -> None:
        """Submit `bodies` as Batch API jobs, wait, and keep the answers for `send()`."""
        from providers.batch import BatchJob, custom_id

        job = BatchJob(self, log=notice)
        by_id = {custom_id(self, body): body for body in bodies}
        results = await job.run(by_id)
        if self._batch_results is None:
            self._batch_results = {}
        self._batch_results.update(results)

    def _batch_answer(self, body: dict[str, Any]) -> ChatResponse:
        from providers.batch import custom_id

        response = self._batch_results.get(custom_id(self, body))
        if response is None:
            return ChatResponse(error="the batch returned no result for this request", error_kind="server")
        return response


def read_completion(completion: Any, latency_s: float | None) -> ChatResponse:
    """A chat.completions response object -> ChatResponse (shared by OpenAI-shaped providers)."""
    if not completion.choices:
        return ChatResponse(error="the response has no choices", error_kind="server", latency_s=latency_s)
    choice = completion.choices[0]
    message = choice.message
    usage: dict[str, Any] = {}
    if completion.usage is not None:
        u = completion.usage
        usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
        details = getattr(u, "prompt_tokens_details", None)
        if details is not None and getattr(details, "cached_tokens", None) is not None:
            usage["cached_tokens"] = details.cached_tokens
        details = getattr(u, "completion_tokens_details", None)
        if details is not None and getattr(details, "reasoning_tokens", None):
            usage["reasoning_tokens"] = details.reasoning_tokens
        for timing in ("queue_time", "prompt_time", "completion_time", "total_time"):  # Groq
            value = getattr(u, timing, None)
            if value is not None:
                usage[timing] = value
    logprobs = None
    if choice.logprobs is not None and choice.logprobs.content:
        logprobs = [
            {
                "token": t.token,
                "logprob": t.logprob,
                "top_logprobs": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])],
            }
            for t in choice.logprobs.content
        ]
    return ChatResponse(
        text=message.content,
        finish_reason=choice.finish_reason,
        refusal=getattr(message, "refusal", None),
        usage=usage,
        logprobs=logprobs,
        served_model=completion.model,
        latency_s=latency_s,
    )


def _error_code(exc: Exception) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner.get("code") or inner.get("type")
    return getattr(exc, "code", None)


def describe_error(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    message = re.sub(r"^Error code: \d+ - ", "", message)  # the SDK's prefix repeats the status
    return f"{type(exc).__name__} ({status}): {message}" if status else f"{type(exc).__name__}: {message}"


# kept for callers of the core module
_describe = describe_error
