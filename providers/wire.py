"""OpenAI wire helpers shared by every OpenAI-shaped provider and the Batch API: reading a
chat.completions reply, naming what is wrong with one that is not a usable completion, describing
and redacting errors.

Kept apart from `providers.openai` so that `providers.batch` (which reads batch output lines with
the same code) and the provider classes import it instead of each other.

A reply is usable only when it is a completion with at least one choice carrying a message. Anything
else a server can send — a body that is not JSON or is cut short, JSON without `choices`, an empty
`choices`, an `error` object inside an HTTP 200 — is an outcome of kind `server`: retried like a
5xx and, when retries run out, recorded as `api_error` with the reason. Nothing a server sends
raises out of here.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from providers.base import ChatResponse

STATUS_KIND = {401: "auth", 403: "auth", 404: "not_found", 400: "bad_request", 422: "bad_request",
               408: "timeout", 409: "server", 429: "rate_limit"}


def notice(message: str) -> None:
    """A one-line note on stderr for things the user must know but that are not errors."""
    print(f"harness: {message}", file=sys.stderr, flush=True)


def redact(text: str | None, secret: str | None) -> str | None:
    """Remove a key (and key-like tokens) from an error message before it is written anywhere."""
    if text is None:
        return None
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return re.sub(r"\b(sk|gsk|xai|pk)[-_][A-Za-z0-9*_\-]{8,}", "[redacted]", text)


def short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _get(obj: Any, name: str) -> Any:
    """A field of a reply read either way: a parsed JSON dict (the direct client, Batch output) or
    an SDK response object (its unknown fields are attributes too), so one reader serves both."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def completion_problem(completion: Any) -> str | None:
    """Why a parsed reply is not a usable completion (None when it is one)."""
    if completion is None:
        return "the reply has no body"
    if isinstance(completion, (str, bytes)):  # the SDK hands back text it could not read as JSON
        return f"the reply is not a JSON completion: {short(completion)}"
    error = _get(completion, "error")
    choices = _get(completion, "choices")
    if error and not choices:
        message = error.get("message") if isinstance(error, dict) else error
        return f"the reply carries an error instead of a completion: {short(message)}"
    if choices is None:
        return "the reply has no `choices`"
    if not isinstance(choices, list):
        return f"`choices` is not a list: {short(choices)}"
    if not choices:
        return "the reply has an empty `choices`"
    if _get(choices[0], "message") is None:
        return "the first choice has no `message`"
    return None


def read_completion(completion: Any, latency_s: float | None) -> ChatResponse:
    """A chat.completions reply -> ChatResponse (shared by every OpenAI-shaped provider and the
    Batch API), from a parsed JSON dict or an SDK response object. A reply that is not a usable
    completion comes back with `error` set, kind `server`."""
    problem = completion_problem(completion)
    if problem is not None:
        return ChatResponse(error=problem, error_kind="server", latency_s=latency_s)
    try:
        return _read(completion, latency_s)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:  # odd field shapes
        return ChatResponse(error=f"the reply is not a readable completion: {type(exc).__name__}: "
                            f"{short(str(exc))}", error_kind="server", latency_s=latency_s)


def _read(completion: Any, latency_s: float | None) -> ChatResponse:
    choice = completion["choices"][0] if isinstance(completion, dict) else completion.choices[0]
    message = _get(choice, "message")
    usage: dict[str, Any] = {}
    u = _get(completion, "usage")
    if u is not None:
        usage = {"prompt_tokens": _get(u, "prompt_tokens"), "completion_tokens": _get(u, "completion_tokens")}
        details = _get(u, "prompt_tokens_details")
        if details is not None and _get(details, "cached_tokens") is not None:
            usage["cached_tokens"] = _get(details, "cached_tokens")
        details = _get(u, "completion_tokens_details")
        if details is not None and _get(details, "reasoning_tokens"):
            usage["reasoning_tokens"] = _get(details, "reasoning_tokens")
        for timing in ("queue_time", "prompt_time", "completion_time", "total_time"):  # Groq
            value = _get(u, timing)
            if value is not None:
                usage[timing] = value
    # llama.cpp: prompt/predicted milliseconds in `timings`, read into Groq's names (seconds), so
    # predictions carry one server_timing shape whatever the server
    timings = _get(completion, "timings")
    if isinstance(timings, dict):
        _read_llamacpp_timings(timings, usage)
    logprobs = None
    lp = _get(choice, "logprobs")
    content = _get(lp, "content") if lp is not None else None
    if content:
        logprobs = [
            {
                "token": _get(t, "token"),
                "logprob": _get(t, "logprob"),
                "top_logprobs": [{"token": _get(x, "token"), "logprob": _get(x, "logprob")}
                                 for x in (_get(t, "top_logprobs") or [])],
            }
            for t in content
        ]
    text = _get(message, "content")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"message.content is {type(text).__name__}, not text")
    return ChatResponse(
        text=text,
        finish_reason=_get(choice, "finish_reason"),
        refusal=_get(message, "refusal"),
        usage=usage,
        logprobs=logprobs,
        served_model=_get(completion, "model"),
        latency_s=latency_s,
    )


def _read_llamacpp_timings(timings: dict, usage: dict[str, Any]) -> None:
    """llama-server's top-level `timings` -> usage: prompt and generation seconds (Groq's names)
    and, when usage has no `prompt_tokens_details`, the prompt tokens reused from its KV cache."""
    prompt_ms, predicted_ms = timings.get("prompt_ms"), timings.get("predicted_ms")
    if isinstance(prompt_ms, (int, float)) and "prompt_time" not in usage:
        usage["prompt_time"] = round(prompt_ms / 1000, 6)
    if isinstance(predicted_ms, (int, float)) and "completion_time" not in usage:
        usage["completion_time"] = round(predicted_ms / 1000, 6)
    if "total_time" not in usage and isinstance(prompt_ms, (int, float)) and isinstance(predicted_ms, (int, float)):
        usage["total_time"] = round((prompt_ms + predicted_ms) / 1000, 6)
    cache_n = timings.get("cache_n")
    if isinstance(cache_n, int) and "cached_tokens" not in usage:
        usage["cached_tokens"] = cache_n


def error_code(exc: Exception) -> str | None:
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


def connect_failure(exc: BaseException) -> str | None:
    """When `exc` (an SDK connection error) means the server could not be reached at all — refused,
    no such host, TLS handshake — a short reason; None for a connection lost mid-exchange."""
    import socket
    import ssl

    seen: set[int] = set()
    cause: BaseException | None = exc
    names: list[str] = []
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        names.append(type(cause).__name__)
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({short(str(cause), 80)})"
        cause = cause.__cause__ or cause.__context__
    text = " ".join(names) + " " + str(exc.__cause__ or exc)
    if "ConnectError" in names or "ConnectTimeout" in names:
        low = text.lower()
        if "refused" in low or "errno 111" in low:
            return "connection refused"
        if "name or service" in low or "nodename" in low or "getaddrinfo" in low or "resolve" in low:
            return "the host name does not resolve"
        if "ssl" in low or "certificate" in low or "tls" in low:
            return "TLS handshake failed"
        if "ConnectTimeout" in names:
            return "connect timed out"
        return short(str(exc.__cause__ or exc), 80) or "cannot connect"
    return None
