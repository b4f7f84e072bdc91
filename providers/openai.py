"""OpenAI and any OpenAI-compatible server, through the official SDK's AsyncOpenAI client.

The client is created in `start()`, inside the running event loop (an AsyncOpenAI reused across
event loops fails with "Event loop is closed"). The SDK retries 408/409/429/5xx and connection errors
itself, honouring Retry-After; `max_retries` and `timeout_s` come from the spec.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlsplit

from providers.base import ChatRequest, ChatResponse, Provider

OPENAI_URL = "https://api.openai.com/v1"
# Keyword arguments chat.completions.create() takes; anything else in a body goes via extra_body.
_CREATE_KWARGS = {
    "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed",
    "stop", "logprobs", "top_logprobs", "response_format", "n", "presence_penalty",
    "frequency_penalty", "logit_bias", "user", "service_tier", "reasoning_effort",
}


class OpenAIProvider(Provider):
    name = "openai"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = OPENAI_URL

    def __init__(self, model):
        super().__init__(model)
        self.client = None

    @property
    def base_url(self) -> str:
        return (
            self.model.base_url or os.environ.get(self.base_url_env) or self.default_base_url
        ).rstrip("/")

    @property
    def is_hosted_openai(self) -> bool:
        return urlsplit(self.base_url).hostname == "api.openai.com"

    def missing_requirement(self) -> str | None:
        # A self-hosted OpenAI-compatible server usually needs no key.
        if not self.is_hosted_openai and not self.model.api_key_env:
            return None
        return super().missing_requirement()

    def endpoint(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    @property
    def served_name(self) -> str:
        return self.model.model

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
            body["response_format"] = request.response_format
        body.update(p.extra_body)
        return body

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key or "EMPTY",  # the SDK refuses an empty key, local servers need none
            "base_url": self.base_url,
            "timeout": self.model.timeout_s,
            "max_retries": self.model.max_retries,
        }

    async def start(self) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(**self._client_kwargs())

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def send(self, body: dict[str, Any]) -> ChatResponse:
        import openai

        kwargs = {k: v for k, v in body.items() if k in _CREATE_KWARGS}
        extra = {k: v for k, v in body.items() if k not in _CREATE_KWARGS}
        if extra:
            kwargs["extra_body"] = extra
        started = time.perf_counter()
        try:
            completion = await self.client.chat.completions.create(**kwargs)
        except openai.APIError as exc:
            return ChatResponse(
                error=_describe(exc), error_kind=_error_kind(exc),
                latency_s=time.perf_counter() - started,
            )
        return read_completion(completion, time.perf_counter() - started)


def read_completion(completion: Any, latency_s: float) -> ChatResponse:
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


def _error_kind(exc: Exception) -> str:
    import openai

    for cls, kind in (
        (openai.AuthenticationError, "auth"),
        (openai.PermissionDeniedError, "auth"),
        (openai.RateLimitError, "rate_limit"),
        (openai.NotFoundError, "not_found"),
        (openai.BadRequestError, "bad_request"),
        (openai.UnprocessableEntityError, "bad_request"),
        (openai.APITimeoutError, "timeout"),
        (openai.APIConnectionError, "connection"),
    ):
        if isinstance(exc, cls):
            return kind
    return "server"


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__} ({status}): {message}" if status else f"{type(exc).__name__}: {message}"
