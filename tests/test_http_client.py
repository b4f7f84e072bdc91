"""The direct HTTP client (providers/http.py) for self-hosted OpenAI-compatible servers.

Three layers, no mocks of our own code:
* the transport seam: recorded wire responses (tests/wire) replayed through httpx2's MockTransport
  into the direct client AND into the official SDK, side by side: the same JSON body on the wire,
  the same cache key, the same ChatResponse (text, finish reason, refusal, usage, logprobs, error
  kind and message);
* a real loopback HTTP server (tests/http_stub.py): exact bodies, 429 + Retry-After, a 401 that
  closes the limiter, a refused port, a 404 with a wrong path, one shared connection pool;
* the real llama-server with SmolLM2 (marked `server`, run under the flock): the direct client and
  the SDK read the same answer, llama.cpp's timings included.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx2
import pytest

from harness.keys import request_key
from harness.spec import Model, Params
from providers.base import ChatRequest
from providers.http import HttpxTransport, StreamTransport, _SHARED
from providers.llamacpp import LlamaCppProvider
from providers.openai import OpenAIProvider
from http_stub import OpenAIStub
from wire_replay import WIRE, Wire, send_through as replay

LOCAL = "http://127.0.0.1:11434/v1"  # a self-hosted server (never contacted: replayed)
MESSAGES = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Review: a good film"}]
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["negative", "positive"]}}, "required": ["label"],
          "additionalProperties": False}


def model(**kw) -> Model:
    defaults = dict(provider="openai", model="gpt-4o-mini", base_url=LOCAL, max_retries=0, timeout_s=5,
                    concurrency=4, params=Params(temperature=0, max_tokens=16, seed=0),
                    options={"retry_base_s": 0.01, "retry_max_s": 0.05})
    defaults.update(kw)
    return Model(**defaults)


def body_for(provider, *, logprobs: bool = False, mode: str = "json_schema") -> dict:
    params = Params(temperature=0, max_tokens=16, seed=0, logprobs=logprobs, top_logprobs=2 if logprobs else None)
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}} \
        if mode == "json_schema" else None
    return provider.build_body(ChatRequest(MESSAGES, params, fmt, ["negative", "positive"]))


@pytest.fixture(autouse=True)
def _no_env_urls(monkeypatch):
    for name in ("OPENAI_BASE_URL", "LLAMACPP_BASE_URL", "OPENAI_API_KEY", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# -- the transport seam: direct client and SDK side by side on recorded traffic -----------------

RECORDED = sorted(p.stem for p in (WIRE / "openai").glob("*.json"))


@pytest.mark.parametrize("name", RECORDED)
def test_direct_client_and_sdk_send_the_same_body_and_read_the_same_answer(name):
    logprobs = name == "chat_logprobs"
    direct = OpenAIProvider(model())
    sdk = OpenAIProvider(model(options={"retry_base_s": 0.01, "retry_max_s": 0.05, "client": "sdk"}))
    assert direct.uses_direct_client and not sdk.uses_direct_client
    body = body_for(direct, logprobs=logprobs)
    assert body == body_for(sdk, logprobs=logprobs)
    # the client is not part of the cache key: a cache filled by one answers the other
    assert request_key(direct, body) == request_key(sdk, body)

    got = {}
    for label, provider in (("direct", direct), ("sdk", sdk)):
        wire = Wire(httpx2, [f"openai/{name}"], repeat_last=True)
        [response] = replay(provider, wire, [body])
        chat = [r for r in wire.requests if r.method == "POST"]
        assert str(chat[0].url) == f"{LOCAL}/chat/completions"
        assert json.loads(chat[0].content) == body  # exactly the body, nothing added or dropped
        assert request_key(provider, json.loads(chat[0].content)) == request_key(provider, body)
        assert chat[0].headers["authorization"] == "Bearer EMPTY"
        assert chat[0].headers["content-type"] == "application/json"
        got[label] = response
    d, s = got["direct"], got["sdk"]
    assert d.error_kind == s.error_kind
    assert d.error == s.error
    assert {**d.to_cache(), "latency_s": None} == {**s.to_cache(), "latency_s": None}
    if name == "chat_ok":
        assert d.text == '{"label":"positive"}' and d.usage["cached_tokens"] == 64
    if name == "chat_logprobs":
        assert [t["token"] for t in d.logprobs] == ['{"', "label", '":"', "positive", '"}']
    if name == "chat_refusal":
        assert d.text is None and d.refusal.startswith("I'm sorry")
    if name == "chat_length":
        assert d.finish_reason == "length"
    if name.startswith(("4", "5")):
        assert d.error and d.error_kind in ("auth", "rate_limit", "bad_request", "not_found", "server")


def test_llamacpp_reply_timings_and_cached_tokens_are_read_by_both_clients():
    """llama-server's top-level `timings` (ms) become prompt/completion/total seconds in usage (the
    prediction's server_timing), like Groq's usage times."""
    record = json.loads((WIRE / "llamacpp" / "smollm2_logprobs.json").read_text())[0]
    reply = {"status": 200, "headers": {"content-type": "application/json"}, "body": record["response"]}
    responses = {}
    for client in ("auto", "sdk"):
        provider = LlamaCppProvider(model(provider="llamacpp", model="smollm2", options={"client": client}))
        assert provider.uses_direct_client == (client == "auto")
        wire = Wire(httpx2, [reply])
        [responses[client]] = replay(provider, wire, [record["request"]])
        assert json.loads(wire.requests[0].content) == record["request"]
    d, s = responses["auto"], responses["sdk"]
    assert d.error is None and d.text == '{"label": "negative"}'
    assert d.usage == {"prompt_tokens": 169, "completion_tokens": 8, "cached_tokens": 0,
                       "prompt_time": 6.439909, "completion_time": 34.067053, "total_time": 40.506962}
    assert len(d.logprobs) == len(record["response"]["choices"][0]["logprobs"]["content"])
    assert {**d.to_cache(), "latency_s": None} == {**s.to_cache(), "latency_s": None}


def test_a_transport_failure_is_classified_like_the_sdk_does():
    """httpx-style transport errors through the seam: a read timeout is retried as `timeout`, a
    refused connect is `unreachable` with the one-line hint."""
    provider = OpenAIProvider(model(max_retries=1))
    body = body_for(provider)
    wire = Wire(httpx2, [httpx2.ReadTimeout("read timed out"), "openai/chat_ok"])
    [ok] = replay(provider, wire, [body])
    assert ok.error is None and len(wire.requests) == 2
    provider = OpenAIProvider(model(max_retries=0))
    wire = Wire(httpx2, [httpx2.ConnectError("[Errno 111] Connection refused")])
    [refused] = replay(provider, wire, [body])
    assert refused.error_kind == "unreachable"
    assert refused.error.startswith(f"cannot reach {LOCAL}: connection refused — is the server running?")


def test_hosted_apis_and_the_batch_api_keep_the_sdk():
    assert not OpenAIProvider(model(base_url=None)).uses_direct_client  # api.openai.com
    assert not OpenAIProvider(model(options={"batch": True})).uses_direct_client
    from providers.groq import GroqProvider

    assert not GroqProvider(model(provider="groq", base_url="http://127.0.0.1:9/v1")).uses_direct_client


# -- a real loopback server ----------------------------------------------------------------------


def run(providers: list[OpenAIProvider], bodies: list[list[dict]]):
    """Start every provider, send each its bodies concurrently, stop them all."""

    async def main():
        for p in providers:
            await p.start()
        try:
            return await asyncio.gather(*(asyncio.gather(*(p.send(b) for b in bs)) for p, bs in zip(providers, bodies)))
        finally:
            for p in providers:
                await p.stop()
            assert not _SHARED.get(asyncio.get_running_loop())  # the last user closed the pool

    return asyncio.run(main())


def test_exact_bodies_reach_a_real_server_through_one_shared_pool():
    with OpenAIStub(latency_s=0.02) as stub:
        a = OpenAIProvider(model(model="stub-model", base_url=stub.base_url))
        b = OpenAIProvider(model(model="stub-model", base_url=stub.base_url, params=Params(temperature=0.5)))
        bodies_a = [a.build_body(ChatRequest([{"role": "user", "content": f"a good film {i}"}], a.model.params,
                                             {"type": "json_object"})) for i in range(6)]
        bodies_b = [b.build_body(ChatRequest([{"role": "user", "content": f"a dull film {i}"}], b.model.params))
                    for i in range(6)]
        transports = []

        async def main():
            await a.start()
            await b.start()
            transports.extend([a.direct.transport, b.direct.transport])
            try:
                return await asyncio.gather(*(a.send(x) for x in bodies_a), *(b.send(x) for x in bodies_b))
            finally:
                await a.stop()
                assert list(_SHARED[asyncio.get_running_loop()].values())[0][0] is transports[1]  # b still uses it
                await b.stop()

        responses = asyncio.run(main())
        received = list(stub.bodies)
    # plain http://, no proxy: asyncio's own streams (no aiohttp import; tests/test_transports.py)
    assert transports[0] is transports[1] and isinstance(transports[0], StreamTransport)
    assert sorted(map(json.dumps, received)) == sorted(map(json.dumps, bodies_a + bodies_b))
    assert [r.text for r in responses] == ['{"label": "positive"}'] * 6 + ["negative"] * 6
    assert all(r.usage == {"prompt_tokens": 20, "completion_tokens": 5} for r in responses)
    assert all(r.served_model == "stub-model" and r.finish_reason == "stop" for r in responses)


def test_429_with_retry_after_halves_the_limit_and_every_request_succeeds():
    with OpenAIStub(latency_s=0.05, capacity=1, retry_after_s=0.05) as stub:
        p = OpenAIProvider(model(model="stub-model", base_url=stub.base_url, concurrency=4, max_retries=10))
        bodies = [p.build_body(ChatRequest([{"role": "user", "content": f"a good film {i}"}], p.model.params))
                  for i in range(8)]
        stats = {}

        async def main():
            await p.start()
            try:
                out = await asyncio.gather(*(p.send(x) for x in bodies))
                stats.update(p.stats())
                return out
            finally:
                await p.stop()

        responses = asyncio.run(main())
        throttled = stub.throttled
    assert all(r.error is None and r.text == "positive" for r in responses)
    assert throttled > 0 and stats["throttled"] == throttled
    assert stats["lowest_limit"] < 4 and stats["retries"] >= throttled


def test_401_closes_the_limiter_and_the_key_is_redacted(monkeypatch):
    key = "sk-wrong-abcdefghijklmnop1234ab12"
    monkeypatch.setenv("LOCAL_KEY", key)
    with OpenAIStub(fail_status=401) as stub:
        p = OpenAIProvider(model(model="stub-model", base_url=stub.base_url, concurrency=1, max_retries=4,
                                 api_key_env="LOCAL_KEY"))
        body = body_for(p)
        [responses] = run([p], [[body] * 5])
        sent = stub.requests
    assert sent == 1  # one request, not one per example or per retry
    first, rest = responses[0], responses[1:]
    assert first.error_kind == "auth" and first.error.startswith("AuthenticationError (401): Incorrect API key")
    assert "check LOCAL_KEY" in first.error and "sk-wrong" not in first.error
    assert all(r.error_kind == "skipped" and r.error.startswith("not sent:") for r in rest)


def test_a_refused_port_is_unreachable_after_quick_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = OpenAIProvider(model(model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=4))
    [[response]] = run([p], [[body_for(p)]])
    assert response.error_kind == "unreachable"
    assert response.error.startswith(f"cannot reach http://127.0.0.1:{port}/v1: connection refused")
    assert "(after 3 attempts)" in response.error  # connect_retries, not max_retries


def test_a_wrong_path_is_a_404_with_a_hint():
    with OpenAIStub() as stub:
        root = stub.base_url[: -len("/v1")]
        p = OpenAIProvider(model(model="stub-model", base_url=root + "/api", max_retries=3))
        [[response]] = run([p], [[body_for(p)]])
    assert response.error_kind == "not_found" and p.stats()["sent"] == 1  # not retried
    assert response.error.startswith("NotFoundError (404): File Not Found: /api/chat/completions")
    assert response.error.endswith("OpenAI-compatible servers usually answer under /v1: check base_url")


def test_a_reply_that_is_not_json_and_a_body_that_cannot_be_encoded():
    with OpenAIStub(script=lambda text, attempt: "non_json") as stub:
        p = OpenAIProvider(model(model="stub-model", base_url=stub.base_url))
        huge = {**body_for(p), "seed": 2**70}  # beyond 64 bits: orjson refuses it
        [[bad, unencodable]] = run([p], [[body_for(p), huge]])
        sent = stub.requests
    assert bad.error_kind == "server" and bad.error.startswith("HTTP 200: the reply is not a JSON completion: <html>")
    assert unencodable.error_kind == "bad_request" and "not JSON-encodable" in unencodable.error
    assert sent == 1


def test_httpx_transport_wraps_any_httpx_style_client():
    wire = Wire(httpx2, ["openai/chat_ok"])
    transport = HttpxTransport(wire.client_factory()())

    async def main():
        try:
            return await transport.request("POST", LOCAL + "/chat/completions", {"x-test": "1"}, b"{}")
        finally:
            await transport.close()

    reply = asyncio.run(main())
    assert reply.status == 200 and json.loads(reply.content)["model"].startswith("gpt-4o-mini")
    assert reply.headers["X-RateLimit-Remaining-Requests"] == "499"  # case-insensitive headers
    assert wire.requests[0].headers["x-test"] == "1"


# -- the real llama-server -----------------------------------------------------------------------


@pytest.mark.server
def test_direct_client_and_sdk_read_the_same_answer_from_llama_server():
    """One launched llama-server (SmolLM2), the same body through both clients: the same text,
    tokens and logprobs (temperature 0), llama.cpp's timings read by both."""
    launched = LlamaCppProvider(model(provider="llamacpp", model="smollm2", base_url=None, concurrency=2,
                                      max_retries=2, timeout_s=120, options={"threads": 2}))
    request = ChatRequest([{"role": "user", "content": "Is this review positive or negative? 'A good film.' "
                            "Answer with one word."}],
                          Params(temperature=0, max_tokens=4, seed=0, logprobs=True, top_logprobs=3))
    body = launched.build_body(request)

    async def main():
        await launched.start()
        try:
            assert launched.uses_direct_client
            attached = LlamaCppProvider(model(provider="llamacpp", model="smollm2", base_url=launched.base_url,
                                              timeout_s=120, options={"client": "sdk"}))
            await attached.start()
            try:
                direct = await launched.send(body)
                sdk = await attached.send(body)
            finally:
                await attached.stop()
        finally:
            await launched.stop()
        return direct, sdk

    direct, sdk = asyncio.run(main())
    assert direct.error is None and sdk.error is None, (direct.error, sdk.error)
    assert direct.text == sdk.text and direct.text.strip()
    assert direct.finish_reason == sdk.finish_reason
    assert direct.served_model == sdk.served_model == "smollm2"
    assert [t["token"] for t in direct.logprobs] == [t["token"] for t in sdk.logprobs]
    assert len(direct.logprobs[0]["top_logprobs"]) == 3
    for key in ("prompt_tokens", "completion_tokens"):
        assert direct.usage[key] == sdk.usage[key] > 0
    for r in (direct, sdk):
        assert r.usage["prompt_time"] > 0 and r.usage["completion_time"] > 0 and "cached_tokens" in r.usage
    assert sdk.usage["cached_tokens"] > 0  # the second identical prompt reused llama.cpp's KV cache
