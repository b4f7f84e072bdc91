"""OpenAI and any OpenAI-compatible server: hosted APIs through the official SDK's AsyncOpenAI
client, self-hosted servers through the harness's direct HTTP client (`providers.http`).

Which client: api.openai.com and other hosted APIs (`hosted_hosts`), and the Batch API, use the
SDK. A self-hosted server (`base_url` on any other host: llama.cpp, vLLM, Ollama, LM Studio, ...)
gets the direct client — aiohttp + orjson, several milliseconds of CPU less per request — unless
`options: {client: sdk}`. Both send the same body (`build_body`, so cache keys do not depend on the
client) and read replies with the same reader (`providers.wire.read_completion`) into the same
outcomes and error kinds.

Clients are created in `start()`, inside the running event loop (an AsyncOpenAI reused across
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

import asyncio
import inspect
import os
import time
from typing import Any, Callable, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from harness.errors import HarnessError
from providers.base import ChatRequest, ChatResponse, Provider, ProviderOptions
from providers.batch import BatchJob, custom_id
from providers.http import (
    DirectClient, HttpxTransport, Transport, TransportError, decode, encode, make_transport, release_transport,
    shared_transport,
)
from providers.scheduling import Attempt, RetryPolicy, Scheduler, key_fingerprint, limiter_for
from providers.wire import (  # noqa: F401 - redact, describe_error, notice, read_completion: public here too
    STATUS_KIND, connect_failure, describe_error, error_code, notice, read_completion, redact,
)
from providers.wire import short as _short_text

OPENAI_URL = "https://api.openai.com/v1"
# The SDK's exception class names per status: the direct client names errors the same way, so an
# error message reads the same whichever client met it.
STATUS_ERROR = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                404: "NotFoundError", 409: "ConflictError", 422: "UnprocessableEntityError",
                429: "RateLimitError"}
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS setup; a reply may take up to the model's timeout_s

# Value constraints left out of hosted strict schemas (validated locally instead).
SCHEMA_CONSTRAINTS = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format",
    "minItems", "maxItems", "uniqueItems", "contains", "minContains", "maxContains",
    "minProperties", "maxProperties", "patternProperties", "propertyNames",
    "unevaluatedProperties", "unevaluatedItems",
})


class HttpOptions(ProviderOptions):
    """`options:` of every provider on the shared scheduler (providers.scheduling)."""

    retry_base_s: float = Field(0.5, gt=0, description="First retry backoff (doubles each retry).")
    retry_max_s: float = Field(30.0, gt=0, description="Longest backoff between two attempts.")
    max_retry_after_s: float = Field(
        300.0, ge=0, description="A longer Retry-After ends the request instead of waiting."
    )
    schema_constraints: Literal["keep", "drop"] = Field(
        "drop", description="keep: send value constraints (minimum, pattern, ...) in hosted strict schemas."
    )
    client: Literal["auto", "sdk"] = Field(
        "auto", description="auto: self-hosted servers through the harness's direct HTTP client, hosted "
        "APIs through the official SDK; sdk: the SDK for every server."
    )


class BatchOptions(ProviderOptions):
    """`options:` of the Batch API mode (providers.batch)."""

    batch: bool = Field(False, description="Send this model's requests through the Batch API (half price).")
    batch_window: str = Field("24h", description="completion_window (Groq accepts 24h to 7d).")
    batch_poll_s: float = Field(30.0, gt=0, description="Seconds between two status polls.")
    batch_timeout_s: float | None = Field(None, gt=0, description="Give up waiting after this long.")
    batch_max_requests: int = Field(50_000, ge=1, description="Requests per batch file.")


class OpenAIOptions(HttpOptions, BatchOptions):
    """`options:` of the openai and groq providers."""


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
    # Supplies an httpx-style AsyncClient when set (tests replay recorded wire traffic through it):
    # the SDK's http_client, or the direct client's transport (providers.http.HttpxTransport). A
    # class attribute so it can be set for providers the runner creates.
    http_client_factory: Callable[[], Any] | None = None
    # Whether self-hosted base URLs may use the direct client (Groq's SDK path is always kept).
    direct_capable: ClassVar[bool] = True
    _raw_base_url: str | None = None  # base_url memo (see the property)
    _base_url: str = ""
    _env_base_url: str | None = None  # $base_url_env as first read ("" when unset)
    _parsed_url: str | None = None  # the URL _host_endpoint was parsed from
    _host_endpoint: tuple[str | None, str] = (None, "://")
    Options = OpenAIOptions
    has_batch_api = True

    def __init__(self, model):
        super().__init__(model)
        self.client = None  # the SDK client (hosted APIs, `client: sdk`)
        self.direct: DirectClient | None = None  # the direct client (self-hosted servers)
        self._transport_key: tuple | None = None
        self.scheduler: Scheduler | None = None
        self._create_params: frozenset[str] | None = None
        self._batch_results: dict[str, ChatResponse] | None = None
        self._served_models: list[str] | None = None
        self._checked_schemas: set[int] = set()

    # -- where requests go ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._env_base_url is None:  # read once, on first use (os.environ.get costs µs per body)
            self._env_base_url = os.environ.get(self.base_url_env) or ""
        url = self.model.base_url or self._env_base_url or self.default_base_url
        if url != self._raw_base_url:  # normalised once: the cache key reads it on every request
            self._raw_base_url, self._base_url = url, normalise_base_url(url) if url else url
        return self._base_url

    def _parsed(self) -> tuple[str | None, str]:
        """(host name, endpoint) of the base URL in use, parsed once per URL: every body asks."""
        url = self.base_url  # a launched server's own URL, for subclasses that launch one
        if url != self._parsed_url:
            parts = urlsplit(url or "")
            self._parsed_url = url
            self._host_endpoint = parts.hostname, f"{parts.scheme}://{parts.netloc}{parts.path}"
        return self._host_endpoint

    @property
    def host(self) -> str | None:
        return self._parsed()[0]

    @property
    def is_hosted_openai(self) -> bool:
        return self.host == "api.openai.com"

    @property
    def is_hosted(self) -> bool:
        """A hosted API with strict-mode schema rules (not a self-hosted compatible server)."""
        return self.host in self.hosted_hosts

    def missing_requirement(self) -> str | None:
        # A self-hosted OpenAI-compatible server usually needs no key.
        if not self.is_hosted and not self.model.api_key_env:
            return None
        return super().missing_requirement()

    def endpoint(self) -> str:
        return self._parsed()[1]

    @property
    def served_name(self) -> str:
        return self.model.model

    @property
    def uses_direct_client(self) -> bool:
        """Self-hosted servers go through providers.http; hosted APIs (strict structured outputs,
        billing, rate-limit semantics the SDK tracks) and the Batch API keep the official SDK."""
        return (self.direct_capable and self.options.client == "auto" and not self.is_hosted
                and not self.prefetches)

    @property
    def prefetches(self) -> bool:
        """With `options.batch` the runner submits every uncached request as a batch first."""
        return bool(getattr(self.options, "batch", False))

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
        keep = self.options.schema_constraints == "keep"
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
            # a host that drops packets must not hold each attempt for the whole timeout_s
            "timeout": __import__(self.sdk).Timeout(
                self.model.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.model.timeout_s)
            ),
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
        o = self.options
        return RetryPolicy(
            max_retries=self.model.max_retries,
            timeout_s=self.model.timeout_s,
            base_delay_s=o.retry_base_s,
            max_delay_s=o.retry_max_s,
            max_server_wait_s=o.max_retry_after_s,
        )

    async def start(self) -> None:
        if self.uses_direct_client:
            self.direct = DirectClient(self.base_url, self.api_key, self._open_transport())
        else:
            self.client = self._make_client()
        limiter = limiter_for(self.name, self.endpoint(), self.api_key, self.model.concurrency)
        self.scheduler = Scheduler(limiter, self.retry_policy())

    def _open_transport(self) -> Transport:
        """The endpoint's shared connection pool (every model and prompt sending to this base URL
        with this key uses one), or a private replaying transport in tests."""
        factory = type(self).http_client_factory
        if factory is not None:
            return HttpxTransport(factory())
        self._transport_key = ("http", self.base_url, key_fingerprint(self.api_key))
        connect = min(CONNECT_TIMEOUT_S, self.model.timeout_s)
        return shared_transport(self._transport_key, lambda: make_transport(self.base_url, connect_timeout_s=connect))

    async def stop(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
        if self.direct is not None:
            direct, self.direct = self.direct, None
            if self._transport_key is not None:
                key, self._transport_key = self._transport_key, None
                await release_transport(key)
            else:
                await direct.transport.close()

    def stats(self) -> dict[str, Any] | None:
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
        """One HTTP exchange, never raising for anything the server sends: an API error, a lost
        connection or a reply that is not a usable completion (not JSON, cut short, no `choices`,
        an error object in a 200, ...) comes back as a response with `error` set."""
        if self.direct is not None:
            return await self._direct_attempt(body)
        sdk = __import__(self.sdk)
        kwargs = self.create_kwargs(body)
        started = time.perf_counter()
        raw = None
        try:
            raw = await self._create_raw(kwargs)
            completion = await self._parse_raw(raw)
        except sdk.APIError as exc:
            return await self._failed(exc, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a body the SDK cannot read is the server's fault
            status = getattr(raw, "status_code", None)
            headers = dict(raw.headers) if raw is not None else {}
            reason = f"the reply is not a JSON completion ({type(exc).__name__}: {str(exc)[:120]})"
            if status is not None:
                reason = f"HTTP {status}: {reason}"
            return Attempt(ChatResponse(error=reason, error_kind="server",
                                        latency_s=time.perf_counter() - started),
                           status=status, headers=headers)
        response = read_completion(completion, time.perf_counter() - started)
        return Attempt(response, status=raw.status_code, headers=dict(raw.headers))

    async def _direct_attempt(self, body: dict[str, Any]) -> Attempt:
        """`attempt` through the direct client: the body as JSON bytes, the reply read as a dict."""
        try:
            content = encode(body)
        except TypeError as exc:  # e.g. an integer beyond 64 bits in extra_body
            return Attempt(ChatResponse(error=f"the request body is not JSON-encodable: {exc}",
                                        error_kind="bad_request"))
        started = time.perf_counter()
        try:
            reply = await self.direct.post("/chat/completions", content)
        except TransportError as exc:
            latency = time.perf_counter() - started
            name = {"timeout": "APITimeoutError"}.get(exc.kind, "APIConnectionError")
            return await self._error_attempt(
                exc.kind, f"{name}: {exc.reason}", latency,
                unreachable=exc.reason if exc.kind == "unreachable" else None,
                lost=exc.reason if exc.kind == "connection" else None,
            )
        latency = time.perf_counter() - started
        status = reply.status
        try:
            data = decode(reply.content) if reply.content else None
        except ValueError:
            data = reply.content.decode("utf-8", "replace")
        if not 200 <= status < 300:
            detail = data.get("error", data) if isinstance(data, dict) else data
            text = detail.get("message") if isinstance(detail, dict) else detail
            code = (detail.get("code") or detail.get("type")) if isinstance(detail, dict) else None
            name = STATUS_ERROR.get(status, "InternalServerError" if status >= 500 else "APIStatusError")
            kind = STATUS_KIND.get(status, "server" if status >= 500 else "bad_request")
            if not (isinstance(data, dict) and isinstance(text, str) and text):
                text = _short_text(text) if text else "no detail"  # not an error object: cut short
            message = f"{name} ({status}): {text}"  # the server's own message in full, as the SDK gives it
            return await self._error_attempt(kind, message, latency, status=status, headers=reply.headers, code=code)
        if isinstance(data, str):
            response = ChatResponse(
                error=f"HTTP {status}: the reply is not a JSON completion: {_short_text(data)}",
                error_kind="server", latency_s=latency,
            )
        else:
            response = read_completion(data, latency)
        return Attempt(response, status=status, headers=reply.headers)

    async def _failed(self, exc: Exception, latency_s: float) -> Attempt:
        """`attempt`'s outcome for an SDK exception."""
        sdk = __import__(self.sdk)
        status = getattr(exc, "status_code", None)
        headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else {}
        unreachable = lost = None
        if isinstance(exc, sdk.APITimeoutError):
            unreachable = connect_failure(exc)  # only a connect timeout: the host never answered
            kind = "unreachable" if unreachable else "timeout"
        elif isinstance(exc, sdk.APIConnectionError):
            unreachable = connect_failure(exc)
            kind = "unreachable" if unreachable else "connection"
            if kind == "connection" and exc.__cause__ is not None:
                cause = exc.__cause__
                lost = f"{type(cause).__name__}: {str(cause)[:160] or 'no detail'}"
        elif status is not None:
            kind = STATUS_KIND.get(status, "server" if status >= 500 else "bad_request")
        else:
            kind = "server"
        return await self._error_attempt(kind, describe_error(exc), latency_s, status=status, headers=headers,
                                         code=error_code(exc), unreachable=unreachable, lost=lost)

    async def _error_attempt(
        self, kind: str, message: str, latency_s: float | None, *, status: int | None = None,
        headers: Any = None, code: str | None = None, unreachable: str | None = None, lost: str | None = None,
    ) -> Attempt:
        """A failed exchange as an Attempt, whichever client saw it: the message says what to do
        (start the server, check the key, pick a served model name), with the key redacted."""
        if unreachable:
            message = (f"cannot reach {self.base_url}: {unreachable} — is the server running? "
                       f"check base_url / {self.base_url_env}")
        elif kind == "connection" and lost:
            message = f"the connection was lost before a complete reply ({lost})"
        elif status == 429 and code == "insufficient_quota":
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
            status=status, headers=headers if headers is not None else {},
        )

    async def _list_served_models(self) -> list[str] | None:
        if self._served_models is None:
            try:
                if self.direct is not None:
                    # outside the scheduler, so bounded here: a hint must not hang the request
                    async with asyncio.timeout(min(CONNECT_TIMEOUT_S, self.model.timeout_s)):
                        reply = await self.direct.get("/models")
                    self._served_models = [m["id"] for m in decode(reply.content)["data"]]
                else:
                    page = await self.client.models.list()
                    self._served_models = [m.id for m in page.data]
            except Exception:  # noqa: BLE001 - only a hint for an error message
                return None
        return self._served_models

    # -- Batch API -----------------------------------------------------------------------------

    async def prefetch(self, bodies: list[dict[str, Any]]) -> None:
        """Submit `bodies` as Batch API jobs, wait, and keep the answers for `send()`."""
        job = BatchJob(self, log=notice)
        by_id = {custom_id(self, body): body for body in bodies}
        results = await job.run(by_id)
        if self._batch_results is None:
            self._batch_results = {}
        self._batch_results.update(results)

    def _batch_answer(self, body: dict[str, Any]) -> ChatResponse:
        response = self._batch_results.get(custom_id(self, body))
        if response is None:
            return ChatResponse(error="the batch returned no result for this request", error_kind="server")
        return response


