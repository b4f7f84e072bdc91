"""Polite request scheduling shared by every HTTP provider.

One `Limiter` per (provider, base URL, hash of the API key) — never the key itself — holds the
number of requests in flight under an adaptive ceiling:

* it starts at the model's `concurrency` (also its maximum; `--concurrency N` overrides both);
* a 429 halves it (once per "generation": the 429s of requests that were already in flight when it
  was last halved do not halve it again), down to 1;
* every `limit` consecutive successes raise it by one, back up to the maximum (AIMD);
* `Retry-After` / `retry-after-ms` on a 429 or 503, and `x-ratelimit-remaining-* == 0` with its
  `x-ratelimit-reset-*` on any response, pause every request that shares the limiter.

`Scheduler.run()` sends one request through the limiter with a per-request timeout, retrying
rate limits, timeouts, connection errors and 408/409/5xx with exponential backoff and jitter (the
server's Retry-After wins when it gives one). A server that cannot be reached at all (refused,
DNS, TLS: kind `unreachable`) gets only `connect_retries` quick retries, so a dead endpoint is
known within a second and the runner can stop the model. 400/401/403/404/422 are never retried. A 401/403 closes
the limiter: requests still waiting are answered "not sent" at once, so a wrong key costs a handful of
requests, not one per example. The SDK clients are built with `max_retries=0` so that retries do not
multiply.

The number of coroutines in flight is capped by the runner's worker pool (`concurrency` workers);
the limiter caps the HTTP requests among them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from providers.base import ChatResponse

# error kinds worth another attempt; everything else is final
RETRYABLE = frozenset({"rate_limit", "server", "timeout", "connection", "unreachable"})


@dataclass
class Attempt:
    """One HTTP exchange: the response as the harness reads it, plus what the scheduler needs."""

    response: ChatResponse
    status: int | None = None  # HTTP status; None when no response arrived (timeout, connection)
    headers: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Header parsing

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str | None) -> float | None:
    """Seconds in a rate-limit reset header: `1s`, `6m0s`, `2m59.56s`, `250ms`, `1h2m`, or `12`."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's requested wait: `retry-after-ms`, then `retry-after` (seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # only for the rare HTTP-date form

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def exhausted_wait_s(headers: Mapping[str, str]) -> float | None:
    """How long to pause when `x-ratelimit-remaining-{requests,tokens}` says nothing is left."""
    waits = []
    for what in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{what}")
        if remaining is None:
            continue
        try:
            left = float(remaining)
        except ValueError:
            continue
        if left <= 0:
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{what}"))
            if reset is not None:
                waits.append(reset)
    return max(waits) if waits else None


def rate_limit_snapshot(headers: Mapping[str, str]) -> dict[str, str]:
    """The `x-ratelimit-*` headers of a response, for the run's record."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


# ---------------------------------------------------------------------------------------------
# The limiter


class LimiterClosed(Exception):
    """The limiter was closed (e.g. the key was rejected): nothing more is sent through it."""


class Limiter:
    """Adaptive concurrency for one (provider, base URL, key). See the module docstring."""

    def __init__(self, key: tuple[str, str, str], maximum: int, *, clock: Callable[[], float] = time.monotonic):
        self.key = key
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self.generation = 0  # bumped whenever the limit drops
        self.blocked_until = 0.0
        self.closed: str | None = None
        self._successes = 0  # consecutive, since the last change of limit
        self._clock = clock
        self._condition: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats: dict[str, Any] = {
            "sent": 0, "ok": 0, "throttled": 0, "retries": 0, "timeouts": 0, "errors": 0,
            "lowest_limit": maximum, "peak_in_flight": 0, "waited_s": 0.0,  # request-seconds paused
        }
        self.last_rate_limits: dict[str, str] = {}

    def _cond(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._condition is None or self._loop is not loop:
            # asyncio primitives belong to one event loop; a new `asyncio.run` starts afresh
            self._condition = asyncio.Condition()
            self._loop = loop
            self.in_flight = 0
        return self._condition

    def configure(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = min(self.limit, maximum) if self.stats["throttled"] else maximum

    async def acquire(self) -> int:
        """Wait for a slot; returns the generation the request was sent in."""
        cond = self._cond()
        while True:
            async with cond:
                if self.closed:
                    raise LimiterClosed(self.closed)
                wait = self.blocked_until - self._clock()
                if wait <= 0:
                    if self.in_flight < self.limit:
                        self.in_flight += 1
                        self.stats["sent"] += 1
                        self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self.in_flight)
                        return self.generation
                    await cond.wait()
                    continue
            # sleep outside the lock; a later, longer pause is picked up on the next pass
            self.stats["waited_s"] += wait
            await asyncio.sleep(wait)

    async def release(
        self, generation: int, *, ok: bool, throttled: bool = False, pause_s: float | None = None
    ) -> None:
        cond = self._cond()
        async with cond:
            self.in_flight = max(0, self.in_flight - 1)
            if pause_s is not None and pause_s > 0:
                self.blocked_until = max(self.blocked_until, self._clock() + pause_s)
            if throttled:
                self.stats["throttled"] += 1
                self._successes = 0
                if generation == self.generation:  # one halving per wave of 429s
                    self.limit = max(1, self.limit // 2)
                    self.generation += 1
                    self.stats["lowest_limit"] = min(self.stats["lowest_limit"], self.limit)
            elif ok:
                self.stats["ok"] += 1
                if self.limit < self.maximum:
                    self._successes += 1
                    if self._successes >= self.limit:
                        self.limit += 1
                        self._successes = 0
            cond.notify_all()

    async def close(self, reason: str) -> None:
        cond = self._cond()
        async with cond:
            if self.closed is None:
                self.closed = reason
            cond.notify_all()

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats, "waited_s": round(self.stats["waited_s"], 3), "limit": self.limit,
            "maximum": self.maximum, "rate_limits": dict(self.last_rate_limits),
        }


# limiters per event loop (a loop that ends takes its limiters with it)
_LIMITERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, Limiter]]" = (
    weakref.WeakKeyDictionary()
)


def key_fingerprint(api_key: str | None) -> str:
    """A short hash naming a key without revealing it."""
    if not api_key:
        return "-"
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def limiter_for(provider: str, base_url: str, api_key: str | None, maximum: int) -> Limiter:
    """The shared limiter for (provider, base URL, key), created on first use in this event loop."""
    loop = asyncio.get_running_loop()
    table = _LIMITERS.setdefault(loop, {})
    key = (provider, base_url.rstrip("/"), key_fingerprint(api_key))
    limiter = table.get(key)
    if limiter is None:
        limiter = table[key] = Limiter(key, maximum)
    else:
        limiter.configure(maximum)
    return limiter


# ---------------------------------------------------------------------------------------------
# Retrying one request


@dataclass
class RetryPolicy:
    max_retries: int = 4
    timeout_s: float = 120.0  # per attempt, whole exchange
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0  # cap of our own backoff
    max_server_wait_s: float = 300.0  # a longer Retry-After ends the request instead of waiting
    # A refused connection is answered at once and a server being restarted is back in well under a
    # second; waiting longer only delays telling the user that nothing listens there.
    connect_retries: int = 2
    connect_delay_s: float = 0.1

    def backoff(self, retry: int) -> float:
        """Exponential with "equal jitter": half fixed, half random, so waits never collapse to 0."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Scheduler:
    """Runs single requests through a shared limiter with timeouts and retries."""

    def __init__(self, limiter: Limiter, policy: RetryPolicy):
        self.limiter = limiter
        self.policy = policy

    async def run(self, attempt: Callable[[], Awaitable[Attempt]]) -> ChatResponse:
        limiter, policy = self.limiter, self.policy
        retry = 0
        while True:
            try:
                generation = await limiter.acquire()
            except LimiterClosed as exc:
                return ChatResponse(error=f"not sent: {exc}", error_kind="skipped")
            release: dict[str, Any] = {"ok": False}  # a cancelled request still frees its slot
            try:
                try:
                    # asyncio.timeout, not wait_for: no extra task per attempt (cheaper on the hot path)
                    async with asyncio.timeout(policy.timeout_s):
                        result = await attempt()
                except TimeoutError:
                    result = Attempt(ChatResponse(
                        error=f"no complete answer within {policy.timeout_s:g}s (timeout_s)",
                        error_kind="timeout", latency_s=policy.timeout_s,
                    ))
                response = result.response
                kind = response.error_kind
                headers = result.headers or {}
                snapshot = rate_limit_snapshot(headers)
                if snapshot:
                    limiter.last_rate_limits = snapshot
                server_wait = retry_after_s(headers)
                pause = exhausted_wait_s(headers)
                if kind == "rate_limit" or (server_wait is not None and kind in RETRYABLE):
                    pause = max(pause or 0.0, server_wait or 0.0)
                if pause is not None:  # a daily quota's "come back in 6h" must not freeze the run
                    pause = min(pause, policy.max_server_wait_s)
                release = {"ok": kind is None, "throttled": kind == "rate_limit", "pause_s": pause}
            finally:
                await limiter.release(generation, **release)
            if kind is None:
                return response
            if kind == "timeout":
                limiter.stats["timeouts"] += 1
            if kind == "auth":
                await limiter.close(response.error or "authentication failed")
            retries = min(policy.max_retries, policy.connect_retries) if kind == "unreachable" else policy.max_retries
            if kind not in RETRYABLE or retry >= retries:
                limiter.stats["errors"] += 1
                if retry:
                    response.error = f"{response.error} (after {retry + 1} attempts)"
                return response
            if server_wait is not None:
                if server_wait > policy.max_server_wait_s:
                    limiter.stats["errors"] += 1
                    response.error = (
                        f"{response.error} (the server asked to wait {server_wait:.0f}s, more than "
                        f"{policy.max_server_wait_s:.0f}s)"
                    )
                    return response
                delay = server_wait + random.uniform(0, 0.1 * server_wait + 0.05)
            elif kind == "unreachable":
                delay = policy.connect_delay_s * 2**retry * random.uniform(0.5, 1.0)
            else:
                delay = policy.backoff(retry)
            retry += 1
            limiter.stats["retries"] += 1
            await asyncio.sleep(delay)
