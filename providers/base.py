"""The provider interface: turn a request into the exact JSON body sent, send it, read the reply.

Splitting `build_body` from `send` lets the runner key its response cache on exactly what goes over
the wire, and lets tests assert request bodies without a network. A provider is a small class with a
few hooks; most HTTP providers only override `build_body` and `_client_kwargs`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.spec import Model, Params


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
    error_kind: str | None = None  # auth | rate_limit | bad_request | not_found | timeout | connection | server

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

    def __init__(self, model: Model):
        self.model = model
        if model.options.get("batch") and not self.has_batch_api:
            from harness.errors import HarnessError

            raise HarnessError(
                f"model {model.id}: provider {self.name!r} has no Batch API mode (options.batch / "
                "--batch); it serves concurrent requests itself: raise `concurrency` instead"
            )

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

    @abstractmethod
    def endpoint(self) -> str:
        """Where requests go (scheme://host:port or a local identity), for the cache key."""

    @abstractmethod
    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        """The exact JSON body sent for this request."""

    @abstractmethod
    async def send(self, body: dict[str, Any]) -> ChatResponse:
        """Send one body; never raise for API failures: return a ChatResponse with `error` set."""
