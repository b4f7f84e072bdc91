"""GroqProvider through the real AsyncGroq client, with recorded wire responses (tests/wire/groq)
replayed by an httpx MockTransport."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from harness.spec import Model, Params
from harness.validate import AnswerContract
from providers import get_provider_class
from providers.base import ChatRequest
from providers.groq import GroqProvider
from test_openai_provider import LABEL_SCHEMA, MESSAGES, make_spec
from wire_replay import Wire, send_through

KEY = "gsk_testabcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.delenv("GROQ_BASE_URL", raising=False)


def make_model(model: str = "llama-3.1-8b-instant", **kw) -> Model:
    return Model(provider="groq", model=model, max_retries=2, timeout_s=5,
                 params=Params(temperature=0, max_tokens=16, seed=0),
                 options={"retry_base_s": 0.01}, **kw)


def run(provider: GroqProvider, wire: Wire, bodies: list[dict]):
    """Start the provider with the replaying client, send `bodies` concurrently, stop."""
    return send_through(provider, wire, bodies)


def request(params: Params | None = None) -> ChatRequest:
    contract = AnswerContract(make_spec())
    return ChatRequest(MESSAGES, params or Params(temperature=0, max_tokens=16, seed=0),
                       contract.response_format("json_schema"), ["negative", "positive"])


def test_registered_and_needs_a_key(monkeypatch):
    assert get_provider_class("groq") is GroqProvider
    monkeypatch.delenv("GROQ_API_KEY")
    assert GroqProvider(make_model()).missing_requirement() == "GROQ_API_KEY is not set"


def test_best_effort_schema_for_most_models_exact_body_and_timings():
    provider = GroqProvider(make_model())
    body = provider.build_body(request())
    assert body == {
        "model": "llama-3.1-8b-instant",
        "messages": MESSAGES,
        "temperature": 0.0,
        "max_completion_tokens": 16,
        "seed": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": LABEL_SCHEMA, "strict": False},
        },
    }
    wire = Wire(httpx, ["groq/chat_ok"])
    [response] = run(provider, wire, [body])
    sent = wire.requests[0]
    assert str(sent.url) == "https://api.groq.com/openai/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.content) == body
    assert response.error is None and response.text == '{"label": "positive"}'
    assert response.usage == {
        "prompt_tokens": 88, "completion_tokens": 6,
        "queue_time": 0.017542, "prompt_time": 0.004436, "completion_time": 0.008, "total_time": 0.012436,
    }
    assert provider.stats()["rate_limits"]["x-ratelimit-remaining-tokens"] == "5912"


def test_strict_schema_only_for_gpt_oss():
    provider = GroqProvider(make_model("openai/gpt-oss-20b"))
    body = provider.build_body(request())
    assert body["response_format"]["json_schema"]["strict"] is True
    wire = Wire(httpx, ["groq/chat_gpt_oss"])
    [response] = run(provider, wire, [body])
    assert json.loads(wire.requests[0].content)["response_format"]["json_schema"]["strict"] is True
    assert response.text == '{"label":"negative"}'
    assert GroqProvider(make_model("openai/gpt-oss-120b")).supports_strict
    assert not GroqProvider(make_model("llama-3.3-70b-versatile")).supports_strict


def test_logprobs_are_dropped_with_one_warning(capsys):
    provider = GroqProvider(make_model())
    params = Params(temperature=0, max_tokens=16, seed=0, logprobs=True, top_logprobs=5)
    first = provider.build_body(request(params))
    second = provider.build_body(request(params))
    assert "logprobs" not in first and "top_logprobs" not in first and first == second
    err = capsys.readouterr().err
    assert err.count("Groq rejects logprobs") == 1


def test_base_url_is_not_doubled(monkeypatch):
    monkeypatch.setenv("GROQ_BASE_URL", "https://api.groq.com/openai/v1")
    provider = GroqProvider(make_model())
    assert provider.base_url == "https://api.groq.com"
    assert provider.endpoint() == "https://api.groq.com/openai/v1"
    wire = Wire(httpx, ["groq/chat_ok"])
    run(provider, wire, [provider.build_body(request())])
    assert str(wire.requests[0].url) == "https://api.groq.com/openai/v1/chat/completions"


def test_429_with_retry_after_then_success():
    provider = GroqProvider(make_model())
    wire = Wire(httpx, ["groq/429_retry_after", "groq/chat_ok"])
    t0 = time.monotonic()
    [response] = run(provider, wire, [provider.build_body(request())])
    assert response.error is None
    assert len(wire.requests) == 2
    # Retry-After: 1, but x-ratelimit-remaining-tokens: 0 with reset 2.44s: the longer wait wins
    assert time.monotonic() - t0 >= 2.4


def test_401_names_the_key_variable_and_is_not_retried():
    provider = GroqProvider(make_model())
    wire = Wire(httpx, ["groq/401"], repeat_last=True)
    [response] = run(provider, wire, [provider.build_body(request())])
    assert len(wire.requests) == 1
    assert response.error_kind == "auth" and "check GROQ_API_KEY" in response.error
