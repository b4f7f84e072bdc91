"""The provider interface: turn a request into the exact JSON body sent, send it, read the reply.

Splitting `build_body` from `send` lets the runner key its response cache on exactly what goes over
the wire, and lets tests assert request bodies without a network. A provider is a small class with a
few hooks; most HTTP providers only override `build_body` and `_client_kwargs`.

Everything the runner calls is declared here, with a default, so the runner never probes a provider
with getattr: `start`/`stop`, `missing_requirement`, `endpoint`, `build_body`, `send`, and the
optional `prefetches` + `prefetch(bodies)` (Batch APIs answer a whole run in one submission) and
`stats()` (scheduling figures for the run's record). A provider's `options:` are a Pydantic model,
`Options`, validated once here: a typo gets the spec's own `file:line: field` error with a
suggestion. Providers that may launch their own server mix in `LaunchedServer`, which owns the
process and stops it with the provider.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.spec import Model, Params, model_error, options_error

if TYPE_CHECKING:
    from providers.launcher import ManagedServer


class ProviderOptions(BaseModel):
    """A provider's `options:`; each provider declares its own subclass as `Options`. Unknown keys
    are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    params: Params
    response_format: dict | None = None  # OpenAI-shaped: json_schema / json_object / None (text)
    choices: list[str] | None = None  # single-label tasks: the labels, for providers that can constrain to them
    # label likelihood (harness.likelihood): the last message is an assistant prefill to continue
    continue_final: bool = False
    # a label-likelihood request (one token, logprobs): no answer constraint may be added to it
    likelihood: bool = False
    # label likelihood on providers with `scores_sequences`: spellings whose exact log-probability
    # as the answer is wanted (the response's logprobs list one {token, logprob} per spelling)
    score: list[str] | None = None


@dataclass
class ChatResponse:
    text: str | None = None
    finish_reason: str | None = None
    refusal: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)  # prompt_tokens, completion_tokens, ...
    logprobs: list[dict] | None = None  # [{token, logprob, top_logprobs: [{token, logprob}]}]
    served_model: str | None = None
    latency_s: float | None = None
    error: str | None = None  # set when no usable response arrived
    # auth | rate_limit | bad_request | not_found | timeout | connection (lost mid-exchange) |
    # unreachable (could not connect: refused, DNS, TLS) | server (5xx, or a reply that is not a
    # usable completion) | skipped (not sent)
    error_kind: str | None = None

    def to_cache(self) -> dict[str, Any]:
        return {
            "text": self.text, "finish_reason": self.finish_reason, "refusal": self.refusal,
            "usage": self.usage, "logprobs": self.logprobs, "served_model": self.served_model,
            "latency_s": self.latency_s,
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> "ChatResponse":
        return cls(**data)


class Provider(ABC):
    """One model behind one endpoint. Lifecycle: `start()`, many `send()`s, `stop()`."""

    name: ClassVar[str]
    key_env: ClassVar[str | None] = None  # env var holding the API key, when one is needed
    # Whether `options.batch` / --batch can send this model's requests through a Batch API
    # (OpenAI, Groq). Servers that batch concurrent requests themselves have none.
    has_batch_api: ClassVar[bool] = False
    # What `answer: label_likelihood` may use: token logprobs with top alternatives; continuing a
    # final assistant message (to split labels that share first tokens); exact sequence scores.
    supports_logprobs: ClassVar[bool] = True
    supports_prefill: ClassVar[bool] = False
    scores_sequences: ClassVar[bool] = False
    # The model's `options:`, checked once in __init__ (the validated object is `self.options`).
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(self, model: Model):
        self.model = model
        given = dict(model.options)
        if given.get("batch") and not self.has_batch_api:
            raise model_error(
                model, ("options", "batch"),
                f"provider {self.name!r} has no Batch API mode (options.batch / --batch); it serves "
                "concurrent requests itself: raise `concurrency` instead",
            )
        if not self.has_batch_api:
            given.pop("batch", None)  # `batch: false` says nothing to a provider without one
        try:
            self.options = self.Options.model_validate(given)
        except ValidationError as exc:
            raise options_error(model, exc, self.Options) from None

    def missing_requirement(self) -> str | None:
        """Why this model cannot run here (e.g. no API key), or None. Skips the model, not an error."""
        env = self.model.api_key_env or self.key_env
        if env and not os.environ.get(env):
            return f"{env} is not set"
        return None

    @property
    def api_key(self) -> str | None:
        env = self.model.api_key_env or self.key_env
        return os.environ.get(env) if env else None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open clients, launch servers. Called inside the running event loop."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close clients, stop servers. Must be safe to call after a failed start."""

    # -- optional hooks (defaults: nothing to do) ------------------------------------------------

    @property
    def prefetches(self) -> bool:
        """True when the runner should hand every uncached body to `prefetch` before sending."""
        return False

    async def prefetch(self, bodies: list[dict[str, Any]]) -> None:  # noqa: B027 - optional hook
        """Answer these bodies ahead (e.g. one Batch API submission); `send` then returns them."""

    def stats(self) -> dict[str, Any] | None:
        """Scheduling figures for the run's record (requests, 429s, retries), or None."""
        return None

    # -- required --------------------------------------------------------------------------------

    @abstractmethod
    def endpoint(self) -> str:
        """Where requests go (scheme://host:port or a local identity), for the cache key."""

    @abstractmethod
    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        """The exact JSON body sent for this request."""

    @abstractmethod
    async def send(self, body: dict[str, Any]) -> ChatResponse:
        """Send one body; never raise for API failures: return a ChatResponse with `error` set."""


class LaunchedServer:
    """Mixin for providers that may launch their own server for the run (llama-server, vllm serve).

    It owns the process: `server` is the running `ManagedServer` (None when attached to a server
    someone else runs), and `stop()` stops it after the provider's own `stop()`, even when that
    fails. Put it first in the bases: `class P(LaunchedServer, OpenAIProvider)`.
    """

    server: "ManagedServer | None" = None

    async def stop(self) -> None:
        try:
            await super().stop()  # type: ignore[misc]
        finally:
            self.stop_server()

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()
