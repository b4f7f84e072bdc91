"""Replays HTTP responses to a real SDK client through its HTTP library's MockTransport.

The hosted APIs (api.openai.com, api.groq.com) cannot be reached from here, so their answers are
JSON files under tests/wire/ in the documented wire format: `{"status", "headers", "body"}`. The SDK
client, its request building, error mapping and response parsing are the real ones; only the socket
is replaced. Every request the client makes is kept, so tests assert the exact bodies sent.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable

WIRE = Path(__file__).parent / "wire"


def recorded(name: str) -> dict[str, Any]:
    """A stored response: tests/wire/<name>.json."""
    return json.loads((WIRE / f"{name}.json").read_text(encoding="utf-8"))


class Wire:
    """A scripted server: answers requests in order from `script`.

    Items: a recorded dict `{"status", "headers", "body"}` (or a name under tests/wire/), an exception
    instance to raise (e.g. a ReadTimeout), or a callable `(request) -> item`. With `repeat_last`, the
    last item answers every further request.
    """

    def __init__(self, http, script: list, *, repeat_last: bool = False, delay_s: float = 0.0):
        self.http = http  # the httpx or httpx2 module
        self.script = list(script)
        self.repeat_last = repeat_last
        self.delay_s = delay_s
        self.requests: list = []

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.headers.get("content-type", "").startswith("application/json")]

    async def handler(self, request):
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        item = self.script[0] if (self.repeat_last and len(self.script) == 1) else self.script.pop(0)
        if callable(item) and not isinstance(item, dict):
            item = item(request)
        if isinstance(item, str):
            item = recorded(item)
        if isinstance(item, BaseException):
            raise item
        body = item.get("body")
        headers = dict(item.get("headers") or {})
        if isinstance(body, (dict, list)):
            return self.http.Response(item["status"], headers=headers, json=body)
        return self.http.Response(item["status"], headers=headers, content=(body or "").encode())

    def client_factory(self) -> Callable[[], Any]:
        return lambda: self.http.AsyncClient(transport=self.http.MockTransport(self.handler))


def send_through(provider, wire: Wire, bodies: list[dict]) -> list:
    """Start `provider` with `wire` as its HTTP client (the SDK's http_client, or the direct
    client's transport), send `bodies` concurrently, stop; the responses in order."""
    cls = type(provider)

    async def main():
        cls.http_client_factory = staticmethod(wire.client_factory())
        try:
            await provider.start()
            try:
                return await asyncio.gather(*(provider.send(b) for b in bodies))
            finally:
                await provider.stop()
        finally:
            cls.http_client_factory = None

    return asyncio.run(main())
