"""The shared scheduler: header parsing, the adaptive limiter, and whole runs against a real local
HTTP server (tests/http_stub.py) that adds latency, answers 429 with Retry-After when more requests
arrive than it admits, or rejects the key."""

from __future__ import annotations

import asyncio
import json
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from harness.records import read_predictions
from harness.runner import run_eval
from harness.spec import load_spec
from http_stub import OpenAIStub
from providers.base import ChatResponse
from providers.scheduling import (
    Attempt, Limiter, RetryPolicy, Scheduler, exhausted_wait_s, key_fingerprint, limiter_for,
    parse_duration, retry_after_s,
)


# -- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("2m59.56s", 179.56), ("250ms", 0.25), ("1h2m3s", 3723.0),
    ("12", 12.0), ("0.5", 0.5), ("soon", None), ("3x", None), (None, None),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_forms():
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    now = time.time()
    assert retry_after_s({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30, abs=1)
    assert retry_after_s({}) is None and retry_after_s({"retry-after": "later"}) is None


def test_exhausted_rate_limit_headers_pause_until_reset():
    assert exhausted_wait_s({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s",
                             "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}) == 360.0
    assert exhausted_wait_s({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}) is None


def test_limiters_are_shared_per_provider_url_and_key_hash():
    async def main():
        a = limiter_for("openai", "https://api.openai.com/v1", "sk-one", 8)
        b = limiter_for("openai", "https://api.openai.com/v1/", "sk-one", 8)
        c = limiter_for("openai", "https://api.openai.com/v1", "sk-two", 8)
        return a, b, c

    a, b, c = asyncio.run(main())
    assert a is b and a is not c
    assert "sk-one" not in repr(a.key) and a.key[2] == key_fingerprint("sk-one")


# -- the limiter --------------------------------------------------------------------------------


def test_limit_halves_once_per_wave_of_429s_and_grows_back_slowly():
    async def main():
        limiter = Limiter(("p", "u", "k"), 8)
        generations = [await limiter.acquire() for _ in range(8)]
        for g in generations:  # eight requests in flight all get 429: one halving, not eight
            await limiter.release(g, ok=False, throttled=True)
        assert limiter.limit == 4
        g = await limiter.acquire()  # a request sent after the halving may halve again
        await limiter.release(g, ok=False, throttled=True)
        assert limiter.limit == 2
        for _ in range(2):  # `limit` successes in a row: +1
            await limiter.release(await limiter.acquire(), ok=True)
        assert limiter.limit == 3
        for _ in range(100):
            await limiter.release(await limiter.acquire(), ok=True)
        assert limiter.limit == 8  # never above the maximum
        return limiter.stats

    stats = asyncio.run(main())
    assert stats["throttled"] == 9 and stats["lowest_limit"] == 2


def test_limiter_caps_requests_in_flight_and_honours_a_pause():
    async def main():
        limiter = Limiter(("p", "u", "k"), 3)
        in_flight, peak = 0, 0

        async def request(i):
            nonlocal in_flight, peak
            g = await limiter.acquire()
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            await limiter.release(g, ok=True, pause_s=0.2 if i == 0 else None)

        t0 = time.monotonic()
        await asyncio.gather(*(request(i) for i in range(12)))
        return peak, time.monotonic() - t0

    peak, elapsed = asyncio.run(main())
    assert peak == 3
    assert elapsed >= 0.2  # everything after the first answer waited out its pause


def test_scheduler_does_not_retry_final_errors_and_backs_off_on_retryable_ones():
    async def main(kinds):
        calls = []

        async def attempt():
            kind = kinds[min(len(calls), len(kinds) - 1)]
            calls.append(kind)
            return Attempt(ChatResponse(text=None if kind else "ok", error=kind and f"e {kind}", error_kind=kind))

        scheduler = Scheduler(Limiter(("p", "u", "k"), 2), RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.02))
        return await scheduler.run(attempt), calls

    for final in ("bad_request", "not_found", "auth"):
        response, calls = asyncio.run(main([final]))
        assert response.error_kind == final and calls == [final]
    response, calls = asyncio.run(main(["server", "connection", "timeout", None]))
    assert response.text == "ok" and len(calls) == 4
    response, calls = asyncio.run(main(["server"]))
    assert len(calls) == 4 and "after 4 attempts" in response.error


# -- whole runs against a real HTTP server ------------------------------------------------------


def write_spec(tmp: Path, base_url: str, n: int, concurrency: int, **model) -> Path:
    rows = [{"text": f"review {i}: {'good' if i % 2 else 'dull'} film", "label": "positive" if i % 2 else "negative"}
            for i in range(n)]
    (tmp / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "p.j2").write_text("{% block system %}Classify.{% endblock %}{% block user %}{{ text }}{% endblock %}")
    spec = {
        "name": "sched",
        "dataset": {"source": "data.jsonl", "train_split": None},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": [{"name": "p", "template": "p.j2", "mode": "json_schema"}],
        "models": [{"provider": "openai", "model": "stub-model", "base_url": base_url,
                    "concurrency": concurrency, "max_retries": 8, "timeout_s": 10,
                    "options": {"retry_base_s": 0.02, "retry_max_s": 0.2}, **model}],
    }
    path = tmp / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def test_run_against_a_throttling_server_loses_nothing_and_adapts(tmp_path):
    n = 60
    with OpenAIStub(latency_s=0.05, capacity=4, retry_after_s=0.05) as stub:
        spec = load_spec(write_spec(tmp_path, stub.base_url, n, concurrency=16))
        outcome = asyncio.run(run_eval(spec, out_dir=tmp_path / "run"))
    predictions = read_predictions(outcome.run_dir / "predictions.jsonl")
    assert len(predictions) == n and len({p.example_id for p in predictions}) == n  # none lost, none twice
    assert {p.outcome for p in predictions} == {"valid"}
    assert outcome.metrics[0]["accuracy"] == 1.0
    assert stub.throttled > 0  # the server did push back ...
    assert stub.answered == n and stub.requests == n + stub.throttled  # ... and every 429 was retried
    scheduling = outcome.run["requests"]["openai:stub-model"]["scheduling"]
    assert scheduling["throttled"] == stub.throttled
    assert scheduling["lowest_limit"] <= 8  # halved at least once from 16
    assert scheduling["peak_in_flight"] <= 16


def test_run_without_pushback_keeps_full_concurrency(tmp_path):
    with OpenAIStub(latency_s=0.1) as stub:
        spec = load_spec(write_spec(tmp_path, stub.base_url, 32, concurrency=8))
        t0 = time.monotonic()
        outcome = asyncio.run(run_eval(spec, out_dir=tmp_path / "run"))
        elapsed = time.monotonic() - t0
    assert stub.peak_in_flight == 8 and stub.throttled == 0
    assert outcome.metrics[0]["validity"] == 1.0
    assert elapsed < 32 * 0.1  # concurrent, not one after another


def test_a_rejected_key_stops_the_model_with_one_message(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("STUB_KEY", "sk-wrong-0123456789abcdefab12")
    n, concurrency = 40, 8
    with OpenAIStub(fail_status=401) as stub:
        path = write_spec(tmp_path, stub.base_url, n, concurrency=concurrency, api_key_env="STUB_KEY")
        code = main(["eval", str(path), "--out", str(tmp_path / "run"), "--quiet", "--cache", "off"])
    assert code == 4  # a stopped model makes the run incomplete
    assert stub.requests <= concurrency  # only the requests already in flight, never one per example
    out = capsys.readouterr()
    console = out.out + out.err
    assert console.count("stopped openai:stub-model") == 1
    assert "check STUB_KEY" in console and "0123456789abcdef" not in console
    predictions = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert len(predictions) == n and {p.outcome for p in predictions} == {"api_error"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.count("## Stopped") == 1 and f"({n - stub.requests} requests not sent)" in report
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["run"]["stopped"][0]["not_sent"] == n - stub.requests
    assert "0123456789abcdef" not in (tmp_path / "run" / "predictions.jsonl").read_text()
