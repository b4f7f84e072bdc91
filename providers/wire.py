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


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def completion_problem(completion: Any) -> str | None:
    """Why a parsed reply is not a usable completion (None when it is one)."""
    if completion is None:
        return "the reply has no body"
    if isinstance(completion, (str, bytes)):  # the SDK hands back text it could not read as JSON
        return f"the reply is not a JSON completion: {_short(completion)}"
    extra = getattr(completion, "model_extra", None) or {}
    error = extra.get("error") if isinstance(extra, dict) else None
    choices = getattr(completion, "choices", None)
    if error and not choices:
        message = error.get("message") if isinstance(error, dict) else error
        return f"the reply carries an error instead of a completion: {_short(message)}"
    if choices is None:
        return "the reply has no `choices`"
    if not isinstance(choices, list):
        return f"`choices` is not a list: {_short(choices)}"
    if not choices:
        return "the reply has an empty `choices`"
    if getattr(choices[0], "message", None) is None:
        return "the first choice has no `message`"
    return None


def read_completion(completion: Any, latency_s: float | None) -> ChatResponse:
    """A chat.completions response object -> ChatResponse (shared by OpenAI-shaped providers).
    A reply that is not a usable completion comes back with `error` set, kind `server`."""
    problem = completion_problem(completion)
    if problem is not None:
        return ChatResponse(error=problem, error_kind="server", latency_s=latency_s)
    try:
        return _read(completion, latency_s)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:  # odd field shapes
        return ChatResponse(error=f"the reply is not a readable completion: {type(exc).__name__}: "
                            f"{_short(str(exc))}", error_kind="server", latency_s=latency_s)


def _read(completion: Any, latency_s: float | None) -> ChatResponse:
    choice = completion.choices[0]
    message = choice.message
    usage: dict[str, Any] = {}
    if getattr(completion, "usage", None) is not None:
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
    if getattr(choice, "logprobs", None) is not None and choice.logprobs.content:
        logprobs = [
            {
                "token": t.token,
                "logprob": t.logprob,
                "top_logprobs": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])],
            }
            for t in choice.logprobs.content
        ]
    text = message.content
    if text is not None and not isinstance(text, str):
        raise TypeError(f"message.content is {type(text).__name__}, not text")
    return ChatResponse(
        text=text,
        finish_reason=getattr(choice, "finish_reason", None),
        refusal=getattr(message, "refusal", None),
        usage=usage,
        logprobs=logprobs,
        served_model=getattr(completion, "model", None),
        latency_s=latency_s,
    )


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
            return f"TLS handshake failed ({_short(str(cause), 80)})"
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
        return _short(str(exc.__cause__ or exc), 80) or "cannot connect"
    return None
