"""The direct HTTP client for self-hosted OpenAI-compatible servers (llama.cpp, vLLM, Ollama, ...).

Why not the official SDK there: profiling a cold 1066-request eval against a local server
(bench/profile_eval.py) put ~7 ms of CPU per request inside `openai` — request-option transforms,
httpx2's connection-pool bookkeeping and building typed response objects — against ~1 ms for a
bare aiohttp exchange. A self-hosted server needs none of what the SDK adds (strict-schema helpers,
billing headers, the Batch API stay on the SDK path for hosted APIs), so these providers send the
body their `build_body` built, encoded with orjson, over one pooled aiohttp session per endpoint,
and read the reply as a dict with the same reader the SDK path uses (`providers.wire`).

The pieces:

* `Transport` — the seam: `request(method, url, headers, content) -> Reply`, raising
  `TransportError(kind, reason)` for everything that is not an HTTP reply. `kind` is what the
  scheduler retries on: `unreachable` (could not connect: refused, DNS, TLS, connect timeout),
  `timeout`, `connection` (lost mid-exchange: reset, closed early, body cut short).
* `AiohttpTransport` — the real one: one `aiohttp.ClientSession` with no connection cap of its own
  (the endpoint's adaptive limiter, `providers.scheduling`, caps requests in flight), keep-alive
  shorter than llama-server's 5 s so an idle connection is never reused just as the server drops
  it, redirects not followed (like the SDK), an `HTTP(S)_PROXY` / `NO_PROXY` from the environment
  honoured like httpx does, but looked up once per endpoint (aiohttp's `trust_env` looks up the
  proxy and `.netrc` in a worker thread on every request: two thread hops per request).
* `HttpxTransport` — any httpx-style `AsyncClient` (httpx or httpx2), so tests replay recorded wire
  traffic through the direct client with `httpx.MockTransport` (tests/wire_replay.py), exactly
  as they do through the SDK.
* `shared_transport` / `release_transport` — one transport per endpoint key (the limiter's key:
  provider, base URL, key hash) and event loop, reference-counted, so every model and prompt that
  talks to one server shares its connection pool.
"""

from __future__ import annotations

import asyncio
import errno
import sys
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import orjson

from providers.wire import connect_failure
from providers.wire import short as _short_text

KEEPALIVE_S = 4.0  # below llama-server's (cpp-httplib's) 5 s keep-alive


@dataclass
class Reply:
    """An HTTP reply: status, case-insensitive headers, the whole body."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class TransportError(Exception):
    """No HTTP reply: `kind` is unreachable | timeout | connection; `reason` says what happened."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class Transport(ABC):
    @abstractmethod
    async def request(self, method: str, url: str, headers: Mapping[str, str], content: bytes | None = None) -> Reply:
        """One exchange; raises TransportError when no complete reply arrived."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class AiohttpTransport(Transport):
    """The production transport (see the module docstring). The session is created on first use,
    inside the running event loop."""

    def __init__(self, base_url: str, *, connect_timeout_s: float):
        self.connect_timeout_s = connect_timeout_s
        self.proxy = env_proxy(base_url)
        self._session = None

    def _open(self):
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
            proxy=self.proxy,
        )
        return self._session

    async def request(self, method: str, url: str, headers: Mapping[str, str], content: bytes | None = None) -> Reply:
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.request(method, url, data=content, headers=headers, allow_redirects=False) as resp:
                body = await resp.read()
                return Reply(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorDNSError:
            raise TransportError("unreachable", "the host name does not resolve") from None
        except aiohttp.ClientSSLError as exc:
            raise TransportError("unreachable", f"TLS handshake failed ({_short_text(str(exc), 80)})") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError) or exc.os_error.errno == errno.ECONNREFUSED:
                raise TransportError("unreachable", "connection refused") from None
            raise TransportError("unreachable", _short_text(exc.os_error.strerror or str(exc), 80)) from None
        except aiohttp.ConnectionTimeoutError:
            raise TransportError("unreachable", "connect timed out") from None
        except aiohttp.ServerTimeoutError as exc:
            raise TransportError("timeout", f"no reply in time ({type(exc).__name__})") from None
        except aiohttp.ClientPayloadError as exc:
            raise TransportError("connection", f"the body is incomplete: {_short_text(str(exc), 160)}") from None
        except aiohttp.ServerDisconnectedError:
            raise TransportError(
                "connection", "the server closed or reset the connection without a reply (ServerDisconnectedError)"
            ) from None
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
                reason = "connection reset by peer"
            else:
                reason = f"{type(exc).__name__}: {_short_text(str(exc), 160) or 'no detail'}"
            raise TransportError("connection", reason) from None
        except aiohttp.ClientError as exc:  # anything else aiohttp raises: no usable reply
            raise TransportError("connection", f"{type(exc).__name__}: {_short_text(str(exc), 160) or 'no detail'}") from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class StreamTransport(Transport):
    """HTTP/1.1 over asyncio's own streams, for a plain `http://` endpoint with no proxy — a local
    llama-server, vLLM or Ollama, the common case — with nothing else imported.

    Why not aiohttp there: importing aiohttp costs ~170 ms (its connector builds two TLS contexts,
    loading the CA store, at import), about a fifth of a one-example `harness eval`, for TLS a
    plain-HTTP server never uses. What the direct client needs of HTTP is small: a POST or GET with
    a JSON body; a reply with Content-Length, chunked, or read to the end; keep-alive. That is all
    this does. HTTPS and proxied endpoints keep `AiohttpTransport`.

    Connections: idle ones are kept (last in, first out) and dropped after KEEPALIVE_S, below
    llama-server's 5 s, so one is never reused just as the server closes it. A connection is reused
    only after a complete reply (an exchange cut by a timeout or a cancel closes it). Nothing is
    re-sent here, as with aiohttp: whether a lost exchange reached the server cannot be known, so
    the scheduler's retry (counted, with backoff) decides. No cap of its own: the endpoint's
    adaptive limiter caps requests in flight. Errors are the `TransportError` kinds
    AiohttpTransport raises."""

    def __init__(self, base_url: str, *, connect_timeout_s: float):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 80
        self.authority = parts.netloc  # the Host header: host[:port] (make_transport sends credentials elsewhere)
        self.connect_timeout_s = connect_timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def request(self, method: str, url: str, headers: Mapping[str, str], content: bytes | None = None) -> Reply:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if content is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(content or b'')}")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (content or b"")
        conn = self._take_idle()
        reader, writer = conn if conn is not None else await self._connect()
        done = keep = False
        try:
            writer.write(message)
            await writer.drain()
            first = await reader.readline()
            if not first:
                raise TransportError("connection", "the server closed or reset the connection without a reply")
            reply, keep = await _read_reply(reader, first, method)
            done = True
            return reply
        except (ConnectionError, OSError) as exc:
            raise TransportError("connection", _lost(exc)) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise TransportError("connection", f"the body is incomplete or malformed: {_short_text(str(exc), 160)}") from None
        finally:
            if done and keep:
                self._idle.append((reader, writer, _now()))
            else:
                writer.close()

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = _now()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < KEEPALIVE_S and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        import socket

        try:
            async with asyncio.timeout(self.connect_timeout_s):
                return await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise TransportError("unreachable", "connect timed out") from None
        except socket.gaierror:
            raise TransportError("unreachable", "the host name does not resolve") from None
        except ConnectionRefusedError:
            raise TransportError("unreachable", "connection refused") from None
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                raise TransportError("unreachable", "connection refused") from None
            raise TransportError("unreachable", _short_text(exc.strerror or str(exc), 80)) from None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer, _ in idle:
            writer.close()
        for _, writer, _ in idle:
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


class _Headers(dict):
    """Reply headers, case-insensitive (stored lower-case), as aiohttp's and httpx's are."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


async def _read_reply(reader: asyncio.StreamReader, first: bytes, method: str) -> tuple[Reply, bool]:
    """The reply whose status line is `first`, and whether its connection may be reused."""
    while True:
        version, _, rest = first.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {first[:80]!r}")
        status = int(rest[:3])
        headers = _Headers()
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise TransportError("connection", "the reply is incomplete: the connection closed inside its headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if not 100 <= status < 200:  # an interim 1xx reply: the real one follows
            break
        first = await reader.readline()
        if not first:
            raise TransportError("connection", "the reply is incomplete: the connection closed after an interim reply")
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"x", 16)  # ValueError if not hex
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # no length given: the body runs to the end of the connection
        body = await reader.read()
        keep = False
    return Reply(status, headers, body), keep


def _lost(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return "connection reset by peer"
    return f"{type(exc).__name__}: {_short_text(str(exc), 160) or 'no detail'}"


def _now() -> float:
    return asyncio.get_running_loop().time()


def make_transport(base_url: str, *, connect_timeout_s: float) -> Transport:
    """The transport for an endpoint: asyncio's own streams for plain HTTP with no proxy (no
    aiohttp import), aiohttp for HTTPS, proxied endpoints and URLs carrying credentials
    (`http://user:pass@host`: aiohttp sends them as basic auth)."""
    plain = base_url.lower().startswith("http://") and urlsplit(base_url).username is None
    if plain and env_proxy(base_url) is None:
        return StreamTransport(base_url, connect_timeout_s=connect_timeout_s)
    return AiohttpTransport(base_url, connect_timeout_s=connect_timeout_s)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`),
    None when there is none or `NO_PROXY` covers its host."""
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or (parts.hostname and proxy_bypass(parts.hostname)):
        return None
    return proxy


class HttpxTransport(Transport):
    """An httpx-style AsyncClient (httpx or httpx2) as the transport: a MockTransport in tests."""

    def __init__(self, client: Any):
        self.client = client
        self.http = sys.modules[type(client).__module__.split(".")[0]]

    async def request(self, method: str, url: str, headers: Mapping[str, str], content: bytes | None = None) -> Reply:
        http = self.http
        try:
            resp = await self.client.request(method, url, headers=dict(headers), content=content)
        except http.ConnectTimeout:
            raise TransportError("unreachable", "connect timed out") from None
        except http.ConnectError as exc:
            raise TransportError("unreachable", connect_failure(exc) or _short_text(str(exc), 80)) from None
        except http.TimeoutException as exc:
            raise TransportError("timeout", f"no reply in time ({type(exc).__name__})") from None
        except http.TransportError as exc:
            raise TransportError("connection", f"{type(exc).__name__}: {_short_text(str(exc), 160) or 'no detail'}") from None
        return Reply(resp.status_code, resp.headers, resp.content)

    async def close(self) -> None:
        await self.client.aclose()


# ---------------------------------------------------------------------------------------------
# One transport per endpoint and event loop

_SHARED: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, list]]" = weakref.WeakKeyDictionary()


def shared_transport(key: tuple, make: Callable[[], Transport]) -> Transport:
    """The transport for `key` in this event loop (made on first use); pair with release_transport."""
    table = _SHARED.setdefault(asyncio.get_running_loop(), {})
    entry = table.get(key)
    if entry is None:
        entry = table[key] = [make(), 0]
    entry[1] += 1
    return entry[0]


async def release_transport(key: tuple) -> None:
    """One user fewer; the last one closes the transport."""
    table = _SHARED.get(asyncio.get_running_loop(), {})
    entry = table.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del table[key]
        await entry[0].close()


# ---------------------------------------------------------------------------------------------
# The client


class DirectClient:
    """JSON over a Transport to one OpenAI-compatible base URL (`.../v1`)."""

    def __init__(self, base_url: str, api_key: str | None, transport: Transport):
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        # the SDK sends "EMPTY" for keyless servers (it refuses an empty key); so does this client,
        # so a server or proxy sees the same request whichever client sent it
        auth = {"Authorization": f"Bearer {api_key or 'EMPTY'}", "Accept": "application/json"}
        self._get_headers = auth
        self._post_headers = {**auth, "Content-Type": "application/json"}

    async def post(self, path: str, content: bytes) -> Reply:
        return await self.transport.request("POST", self.base_url + path, self._post_headers, content)

    async def get(self, path: str) -> Reply:
        return await self.transport.request("GET", self.base_url + path, self._get_headers)


def encode(body: dict[str, Any]) -> bytes:
    """The body as JSON bytes (orjson: several times faster than json, same JSON value)."""
    return orjson.dumps(body)


def decode(content: bytes) -> Any:
    """JSON bytes -> value; raises ValueError (orjson.JSONDecodeError is one) when not JSON."""
    return orjson.loads(content)
