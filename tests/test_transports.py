"""The direct client's two transports (providers/http.py) against real loopback servers.

`StreamTransport` (asyncio's own streams: plain `http://`, no proxy) and `AiohttpTransport` (HTTPS,
proxies) must hand the client the same `Reply` for the same exchange. The servers are real sockets:
tests/http_stub.py (Python's http.server, keep-alive) for whole exchanges through both, and a raw
asyncio server below that writes exact bytes for what http.server never sends — chunked bodies with
trailers, interim 1xx replies, HTTP/1.0, a body read to the end, a connection closed after a reply,
malformed replies.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from providers.http import AiohttpTransport, DirectClient, StreamTransport, TransportError, make_transport
from http_stub import OpenAIStub

TRANSPORTS = {"streams": StreamTransport, "aiohttp": AiohttpTransport}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", TRANSPORTS)
def test_both_transports_deliver_the_exact_body_and_read_the_same_reply(name):
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "a good film, ünïcode"}],
            "response_format": {"type": "json_object"}}
    with OpenAIStub() as stub:
        transport = TRANSPORTS[name](stub.base_url, connect_timeout_s=2)
        client = DirectClient(stub.base_url, None, transport)

        async def main():
            try:
                posted = [await client.post("/chat/completions", json.dumps(body).encode()) for _ in range(3)]
                listed = await client.get("/models")
                return posted, listed
            finally:
                await transport.close()

        posted, listed = asyncio.run(main())
        received = list(stub.bodies)
    assert received == [body] * 3
    for reply in posted:
        assert reply.status == 200
        assert json.loads(reply.content)["choices"][0]["message"]["content"] == '{"label": "positive"}'
        assert reply.headers["Content-Type"] == reply.headers.get("content-type") == "application/json"
    assert listed.status == 200 and [m["id"] for m in json.loads(listed.content)["data"]] == ["stub-model"]


class RawServer:
    """A loopback server that answers each request with the next scripted bytes (then keeps the
    connection open, or closes it when the script says so), counting connections."""

    def __init__(self, replies: list[bytes | tuple[bytes, str]]):
        self.replies = list(replies)
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                then = "keep"
                if isinstance(reply, tuple):
                    reply, then = reply
                writer.write(reply)
                await writer.drain()
                if then == "close":
                    break
                if then == "reset":
                    writer.transport.abort()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def exchange(replies, requests: int = 1, pause_s: float = 0.0):
    """Send `requests` POSTs through one StreamTransport to a RawServer with `replies`; returns
    (replies or TransportErrors, server)."""

    async def main():
        async with RawServer(replies) as server:
            transport = StreamTransport(server.url, connect_timeout_s=2)
            out = []
            try:
                for _ in range(requests):
                    try:
                        out.append(await transport.request("POST", server.url + "/chat/completions",
                                                           {"Content-Type": "application/json"}, b'{"a": 1}'))
                    except TransportError as exc:
                        out.append(exc)
                    await asyncio.sleep(pause_s)
            finally:
                await transport.close()
            return out, server

    return asyncio.run(main())


def test_keep_alive_reuses_one_connection_and_sends_host_and_length():
    ok = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'
    [a, b, c], server = exchange([ok, ok, ok], requests=3)
    assert [r.content for r in (a, b, c)] == [b"{}"] * 3
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 8\r\n" in first and first.endswith(b'\r\n\r\n{"a": 1}')


def test_a_chunked_body_with_extensions_and_trailers_is_joined():
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"4;ext=1\r\n{\"ok\r\n6\r\n\": tru\r\n2\r\ne}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    [first, second], server = exchange([reply, ok], requests=2)
    assert first.status == 200 and first.content == b'{"ok": true}'
    assert second.content == b"{}" and server.connections == 1  # the connection stayed usable


def test_interim_replies_http_1_0_and_a_body_read_to_the_end():
    interim = (b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabc")
    [reply], _ = exchange([interim])
    assert reply.status == 201 and reply.content == b"abc" and reply.headers["X-A"] == "1, 2"
    # HTTP/1.0 without keep-alive, and no Content-Length: the body is what arrives before EOF
    [old, again], server = exchange([(b"HTTP/1.0 200 OK\r\n\r\nto the end", "close"),
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], requests=2)
    assert old.content == b"to the end" and again.status == 200 and server.connections == 2


def test_connection_close_and_a_server_closing_an_idle_connection_open_a_new_one():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    [a, b], server = exchange([closing, ok], requests=2)
    assert a.content == b.content == b"{}" and server.connections == 2
    # the server drops the connection after a reply, without saying so: the transport sees the
    # EOF on the idle connection and does not reuse it
    [a, b], server = exchange([(ok, "close"), ok], requests=2, pause_s=0.05)
    assert a.content == b.content == b"{}" and server.connections == 2


@pytest.mark.parametrize("reply, reason", [
    ((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "close"), "the body is incomplete"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "close"), "the body is incomplete"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "close"), "malformed"),
    ((b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "close"), "not an HTTP/1.x status line"),
    ((b"", "close"), "closed or reset the connection without a reply"),
    ((b"HTTP/1.1 200 OK\r\nContent-Le", "close"), "closed inside its headers"),
    ((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "reset"), "(reset|incomplete)"),
])
def test_a_broken_reply_is_a_connection_error_and_the_connection_is_dropped(reply, reason):
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    [error, after], server = exchange([reply, ok], requests=2)
    assert isinstance(error, TransportError) and error.kind == "connection"
    assert re.search(reason, error.reason)
    assert after.content == b"{}" and server.connections == 2


def test_refused_and_unresolvable_endpoints_are_unreachable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the block ends

    async def main(url):
        transport = StreamTransport(url, connect_timeout_s=2)
        try:
            await transport.request("GET", url + "/models", {})
        finally:
            await transport.close()

    for url, reason in ((f"http://127.0.0.1:{port}/v1", "connection refused"),
                        ("http://no-such-host.invalid/v1", "does not resolve")):
        with pytest.raises(TransportError) as info:
            asyncio.run(main(url))
        assert info.value.kind == "unreachable" and reason in info.value.reason


def test_plain_http_without_a_proxy_takes_the_streams_and_the_rest_aiohttp(monkeypatch):
    assert isinstance(make_transport("http://127.0.0.1:8080/v1", connect_timeout_s=1), StreamTransport)
    assert isinstance(make_transport("https://example.org/v1", connect_timeout_s=1), AiohttpTransport)
    assert isinstance(make_transport("http://u:p@10.0.0.5:8000/v1", connect_timeout_s=1), AiohttpTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    proxied = make_transport("http://10.0.0.5:8000/v1", connect_timeout_s=1)
    assert isinstance(proxied, AiohttpTransport) and proxied.proxy == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert isinstance(make_transport("http://10.0.0.5:8000/v1", connect_timeout_s=1), StreamTransport)
