"""OpenAIProvider through the real AsyncOpenAI client, with recorded wire responses (tests/wire/openai)
replayed by an httpx2 MockTransport: exact request bodies, reading answers, retries and errors."""

from __future__ import annotations

import json
import math
import time

import httpx2
import pytest

from harness.confidence import label_confidence
from harness.errors import HarnessError
from harness.spec import Model, Params, Spec
from harness.validate import AnswerContract
from providers.base import ChatRequest
from providers.openai import OpenAIProvider, normalise_base_url, redact, strict_schema_problems, wire_schema
from wire_replay import Wire, send_through

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz0123456789"
MESSAGES = [
    {"role": "system", "content": "You are a sentiment classifier."},
    {"role": "user", "content": "Review: a good film"},
]
LABEL_SCHEMA = {
    "additionalProperties": False,
    "properties": {"label": {"enum": ["negative", "positive"], "title": "Label", "type": "string"}},
    "required": ["label"],
    "title": "Answer",
    "type": "object",
}


def make_spec(shape: str = "label", strict: bool = True) -> Spec:
    return Spec.model_validate({
        "name": "t",
        "dataset": {"source": "x.jsonl"},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": [{"name": "p", "template": "p.j2"}],
        "output": {"shape": shape, "strict": strict},
    })


def make_model(**kw) -> Model:
    defaults = dict(
        provider="openai", model="gpt-4o-mini", max_retries=3, timeout_s=5, concurrency=4,
        params=Params(temperature=0, max_tokens=16, seed=0),
        options={"retry_base_s": 0.01, "retry_max_s": 0.05},
    )
    defaults.update(kw)
    return Model(**defaults)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def run(provider: OpenAIProvider, wire: Wire, bodies: list[dict]):
    """Start the provider with the replaying client, send `bodies` concurrently, stop."""
    return send_through(provider, wire, bodies)


def request(contract: AnswerContract, mode: str = "json_schema", params: Params | None = None) -> ChatRequest:
    return ChatRequest(MESSAGES, params or Params(temperature=0, max_tokens=16, seed=0),
                       contract.response_format(mode), ["negative", "positive"])


# -- request bodies ------------------------------------------------------------------------------


def test_hosted_strict_json_schema_body_is_exact_and_answer_is_read():
    provider = OpenAIProvider(make_model())
    body = provider.build_body(request(AnswerContract(make_spec())))
    assert body == {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "temperature": 0.0,
        "max_completion_tokens": 16,
        "seed": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": LABEL_SCHEMA, "strict": True},
        },
    }
    wire = Wire(httpx2, ["openai/chat_ok"])
    [response] = run(provider, wire, [body])

    sent = wire.requests[0]
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.content) == body  # exactly the body, nothing added or dropped
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert response.error is None
    assert response.text == '{"label":"positive"}'
    assert response.finish_reason == "stop"
    assert response.served_model == "gpt-4o-mini-2024-07-18"
    assert response.usage == {"prompt_tokens": 88, "completion_tokens": 6, "cached_tokens": 64}
    stats = provider.stats()
    assert stats["rate_limits"]["x-ratelimit-remaining-requests"] == "499"
    assert stats["sent"] == 1 and stats["ok"] == 1


def test_json_object_and_text_modes():
    provider = OpenAIProvider(make_model())
    contract = AnswerContract(make_spec())
    assert provider.build_body(request(contract, "json_object"))["response_format"] == {"type": "json_object"}
    assert "response_format" not in provider.build_body(request(contract, "text"))


def test_value_bounds_are_validated_locally_not_sent_to_strict_mode():
    contract = AnswerContract(make_spec("label_confidence"))
    prompt_schema = contract.json_schema()
    assert prompt_schema["properties"]["confidence"]["minimum"] == 0  # the prompt still shows the range
    body = OpenAIProvider(make_model()).build_body(request(contract))
    sent = body["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["confidence"] == {"title": "Confidence", "type": "number"}
    assert sent["required"] == ["label", "confidence"] and sent["additionalProperties"] is False
    # the local check still rejects an out-of-range answer
    assert contract.judge('{"label": "positive", "confidence": 1.5}', "json_schema").outcome == "schema_error"
    kept = OpenAIProvider(make_model(options={"schema_constraints": "keep"})).build_body(request(contract))
    assert kept["response_format"]["json_schema"]["schema"]["properties"]["confidence"]["maximum"] == 1


def test_a_schema_that_strict_mode_rejects_is_a_clear_error_before_sending():
    bad = {"type": "object", "properties": {"label": {"type": "string"}, "extra": {"type": "object"}},
           "required": ["label"]}
    problems = strict_schema_problems(bad)
    assert any("not required: extra" in p for p in problems)
    assert any("additionalProperties" in p for p in problems)
    assert any("extra" in p and "dict" in p for p in problems)
    assert strict_schema_problems(LABEL_SCHEMA) == []
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": bad, "strict": True}}
    with pytest.raises(HarnessError, match="strict structured-output rules.*output.strict: false"):
        OpenAIProvider(make_model()).build_body(ChatRequest(MESSAGES, Params(), fmt))
    # not strict: sent as given (best effort)
    loose = {"type": "json_schema", "json_schema": {"name": "answer", "schema": bad, "strict": False}}
    assert OpenAIProvider(make_model()).build_body(ChatRequest(MESSAGES, Params(), loose))["response_format"] == loose


def test_wire_schema_inlines_refs_with_siblings():
    schema = {"type": "object", "properties": {"label": {"$ref": "#/$defs/L", "description": "the label"}},
              "required": ["label"], "additionalProperties": False,
              "$defs": {"L": {"type": "string", "enum": ["a", "b"], "maxLength": 3}}}
    out = wire_schema(schema)
    assert out["properties"]["label"] == {"type": "string", "enum": ["a", "b"], "description": "the label"}


# -- answers ------------------------------------------------------------------------------------


def test_refusal_becomes_outcome_refusal():
    contract = AnswerContract(make_spec())
    provider = OpenAIProvider(make_model())
    [response] = run(provider, Wire(httpx2, ["openai/chat_refusal"]), [provider.build_body(request(contract))])
    assert response.text is None and response.refusal.startswith("I'm sorry")
    verdict = contract.judge(response.text, "json_schema", finish_reason=response.finish_reason,
                             refusal=response.refusal, error=response.error)
    assert verdict.outcome == "refusal"


def test_length_finish_becomes_truncated():
    contract = AnswerContract(make_spec())
    provider = OpenAIProvider(make_model())
    [response] = run(provider, Wire(httpx2, ["openai/chat_length"]), [provider.build_body(request(contract))])
    assert response.finish_reason == "length"
    verdict = contract.judge(response.text, "json_schema", finish_reason=response.finish_reason)
    assert verdict.outcome == "truncated"


def test_logprobs_are_requested_read_and_give_the_label_probability():
    contract = AnswerContract(make_spec())
    provider = OpenAIProvider(make_model())
    params = Params(temperature=0, max_tokens=16, seed=0, logprobs=True, top_logprobs=2)
    body = provider.build_body(request(contract, params=params))
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    wire = Wire(httpx2, ["openai/chat_logprobs"])
    [response] = run(provider, wire, [body])
    assert json.loads(wire.requests[0].content)["top_logprobs"] == 2
    assert [t["token"] for t in response.logprobs] == ['{"', "label", '":"', "positive", '"}']
    confidence = label_confidence(response.logprobs, response.text, "positive", ["negative", "positive"], "json_schema")
    # "positive" e^-0.1269 against "negative" e^-2.1269 at the distinguishing token
    assert confidence == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-6)


# -- retries and errors -------------------------------------------------------------------------


def test_429_with_retry_after_waits_then_succeeds_and_halves_concurrency():
    provider = OpenAIProvider(make_model(concurrency=4))
    body = provider.build_body(request(AnswerContract(make_spec())))
    wire = Wire(httpx2, ["openai/429_retry_after", "openai/chat_ok"])
    t0 = time.monotonic()
    [response] = run(provider, wire, [body])
    waited = time.monotonic() - t0
    assert response.error is None and response.text == '{"label":"positive"}'
    assert len(wire.requests) == 2
    assert json.loads(wire.requests[1].content) == body  # the same request again
    assert waited >= 0.3  # the recorded Retry-After: 0.3
    stats = provider.stats()
    assert stats["throttled"] == 1 and stats["retries"] == 1
    assert stats["lowest_limit"] == 2  # 4 halved once


def test_500_then_success_is_retried():
    provider = OpenAIProvider(make_model())
    wire = Wire(httpx2, ["openai/500", "openai/chat_ok"])
    [response] = run(provider, wire, [provider.build_body(request(AnswerContract(make_spec())))])
    assert response.error is None
    assert len(wire.requests) == 2
    assert provider.stats()["retries"] == 1


def test_500_until_retries_run_out_is_an_api_error():
    provider = OpenAIProvider(make_model(max_retries=2))
    wire = Wire(httpx2, ["openai/500"], repeat_last=True)
    [response] = run(provider, wire, [provider.build_body(request(AnswerContract(make_spec())))])
    assert response.error_kind == "server"
    assert "InternalServerError (500)" in response.error and "after 3 attempts" in response.error
    assert len(wire.requests) == 3


def test_transport_timeout_is_retried_then_reported():
    provider = OpenAIProvider(make_model(max_retries=1))
    body = provider.build_body(request(AnswerContract(make_spec())))
    wire = Wire(httpx2, [httpx2.ReadTimeout("read timed out"), "openai/chat_ok"])
    [ok] = run(provider, wire, [body])
    assert ok.error is None and len(wire.requests) == 2

    provider = OpenAIProvider(make_model(max_retries=0))
    wire = Wire(httpx2, [httpx2.ReadTimeout("read timed out")])
    [failed] = run(provider, wire, [body])
    assert failed.error_kind == "timeout" and "APITimeoutError" in failed.error


def test_a_slow_answer_hits_the_per_request_timeout():
    provider = OpenAIProvider(make_model(max_retries=0, timeout_s=0.2))
    wire = Wire(httpx2, ["openai/chat_ok"], delay_s=2.0)
    t0 = time.monotonic()
    [response] = run(provider, wire, [provider.build_body(request(AnswerContract(make_spec())))])
    assert response.error_kind == "timeout"
    assert time.monotonic() - t0 < 1.5


def test_401_is_not_retried_and_stops_everything_queued_behind_it():
    provider = OpenAIProvider(make_model(concurrency=1, max_retries=4))
    body = provider.build_body(request(AnswerContract(make_spec())))
    wire = Wire(httpx2, ["openai/401"], repeat_last=True)
    responses = run(provider, wire, [body] * 6)
    assert len(wire.requests) == 1  # one request, not one per example, not one per retry
    first, rest = responses[0], responses[1:]
    assert first.error_kind == "auth"
    assert "AuthenticationError (401)" in first.error and "check OPENAI_API_KEY" in first.error
    assert all(r.error_kind == "skipped" and r.error.startswith("not sent:") for r in rest)
    assert all(KEY not in (r.error or "") for r in responses)


def test_400_and_insufficient_quota_are_not_retried():
    provider = OpenAIProvider(make_model(max_retries=4))
    body = provider.build_body(request(AnswerContract(make_spec())))
    wire = Wire(httpx2, ["openai/400_bad_schema"])
    [bad] = run(provider, wire, [body])
    assert bad.error_kind == "bad_request" and len(wire.requests) == 1
    assert "Invalid schema" in bad.error

    provider = OpenAIProvider(make_model(max_retries=4))
    wire = Wire(httpx2, ["openai/429_insufficient_quota"], repeat_last=True)
    [quota] = run(provider, wire, [body])
    assert len(wire.requests) == 1
    assert quota.error_kind == "auth" and "out of quota" in quota.error


# -- OpenAI-compatible servers ------------------------------------------------------------------


def test_compatible_server_quirks(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    assert normalise_base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/v1"
    assert normalise_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/v1"
    assert normalise_base_url("http://localhost:11434/v1/chat/completions") == "http://localhost:11434/v1"
    assert normalise_base_url("https://example.com/api/v1/") == "https://example.com/api/v1"
    with pytest.raises(HarnessError, match="expected an http"):
        normalise_base_url("localhost:8080")

    model = make_model(model="llama3.2:1b", base_url="http://127.0.0.1:11434")
    provider = OpenAIProvider(model)
    assert provider.missing_requirement() is None  # no key needed
    assert provider.endpoint() == "http://127.0.0.1:11434/v1"
    body = provider.build_body(request(AnswerContract(make_spec("label_confidence"))))
    assert body["max_tokens"] == 16 and "max_completion_tokens" not in body
    # a local server gets the schema as it is (llama.cpp turns bounds into its grammar)
    assert body["response_format"]["json_schema"]["schema"]["properties"]["confidence"]["maximum"] == 1
    wire = Wire(httpx2, ["openai/chat_ok"])
    run(provider, wire, [body])
    assert str(wire.requests[0].url) == "http://127.0.0.1:11434/v1/chat/completions"
    assert wire.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_compatible_server_404_names_the_served_models(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    provider = OpenAIProvider(make_model(model="llama3.2", base_url="http://127.0.0.1:11434/v1"))
    served = {"status": 200, "headers": {"content-type": "application/json"}, "body": {
        "object": "list", "data": [{"id": "llama3.2:1b", "object": "model", "created": 0, "owned_by": "library"}]}}
    wire = Wire(httpx2, ["openai/404_model", served])
    [response] = run(provider, wire, [provider.build_body(request(AnswerContract(make_spec())))])
    assert response.error_kind == "not_found"
    assert "serves llama3.2:1b" in response.error and "served names" in response.error


def test_redact_removes_keys():
    assert redact(f"bad key {KEY}!", KEY) == "bad key [redacted]!"
    assert "sk-proj" not in redact("Incorrect API key provided: sk-proj-abc********************wxyz.", None)


def test_unknown_options_are_named_with_a_suggestion():
    with pytest.raises(HarnessError, match="options.batch_pol_s: unknown option for provider 'openai'; did you mean 'batch_poll_s'"):
        OpenAIProvider(make_model(options={"batch_pol_s": 1}))
