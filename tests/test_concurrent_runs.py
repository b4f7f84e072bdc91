"""Every model x prompt in flight at once, against a real local OpenAI-compatible server
(tests/http_stub.py): models overlap, a model's `concurrency` bounds all its prompts together,
identical bodies are sent once, a calibrated prompt's validation requests finish before its
evaluated examples (and only that prompt waits), and a SIGKILL mid-run with group-committed cache
writes never pays twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.cache import ResponseCache, open_disk_cache
from harness.records import read_predictions
from harness.runner import planned_requests, run_eval
from harness.spec import load_spec
from http_stub import OpenAIStub

TEMPLATE = "{% block system %}Classify.{% endblock %}{% block user %}{{ text }}{% endblock %}"


def _rows(n: int, prefix: str = "test") -> list[dict]:
    return [{"text": f"{prefix} {i}: a {'good' if i % 2 else 'dull'} film", "label": "positive" if i % 2 else "negative"}
            for i in range(n)]


def write_spec(tmp: Path, base_url: str, *, prompts: list[dict], models: list[str], concurrency: int,
               rows: int = 6, validation: int = 0) -> Path:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(rows)))
    if validation:
        (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(validation, "val")))
    (tmp / "p.j2").write_text(TEMPLATE)
    spec = {
        "name": "overlap",
        "dataset": {"source": "data", "split": "test", "train_split": None,
                    "validation_split": "validation" if validation else None},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": prompts,
        "models": [{"provider": "openai", "model": m, "base_url": base_url, "concurrency": concurrency,
                    "params": {"temperature": 0, "max_tokens": 4}} for m in models],
    }
    path = tmp / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def _run(path: Path, out: Path, mode: str | None = "rw", cache_dir: Path | None = None):
    cache = ResponseCache(mode, cache_dir or out.parent / "cache") if mode else None
    try:
        return asyncio.run(run_eval(load_spec(path), out_dir=out, baselines=[], cache=cache))
    finally:
        if cache is not None:
            cache.close()


def test_two_models_are_in_flight_at_once_and_concurrency_bounds_all_prompts_of_a_model(tmp_path):
    prompts = [{"name": n, "template": "p.j2", "mode": m} for n, m in (("a", "text"), ("b", "json_object"), ("c", "json_schema"))]
    # two endpoints (each keeps its own limiter; models on one endpoint share it)
    with OpenAIStub(latency_s=0.15, models=["m1"]) as one, OpenAIStub(latency_s=0.15, models=["m2"]) as two:
        path = write_spec(tmp_path, one.base_url, prompts=prompts, models=["m1", "m2"], concurrency=2)
        spec = json.loads(path.read_text())
        spec["models"][1]["base_url"] = two.base_url
        path.write_text(json.dumps(spec))
        outcome = _run(path, tmp_path / "run", None)
        peaks = (one.peak_in_flight, two.peak_in_flight)
        requests = (one.requests, two.requests)
    assert outcome.complete
    assert requests == (3 * 6, 3 * 6)
    # each model's three prompts share its two slots: both slots busy, never more
    assert peaks == (2, 2)
    spans = {m: outcome.run["requests"][m]["prompt_spans"] for m in ("openai:m1", "openai:m2")}
    for model_spans in spans.values():
        assert set(model_spans) == {"a", "b", "c"}
        assert all(s["end_s"] > s["start_s"] for s in model_spans.values())
    def overlap(x, y):
        return x["start_s"] < y["end_s"] and y["start_s"] < x["end_s"]

    # the prompts' spans overlap within a model, and the models' spans overlap each other
    assert overlap(spans["openai:m1"]["a"], spans["openai:m1"]["c"])
    assert overlap(spans["openai:m1"]["a"], spans["openai:m2"]["c"])
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]
    assert {(r["model"], r["prompt"]) for r in rows if r.get("wall_s")} == {
        (m, p) for m in ("openai:m1", "openai:m2") for p in ("a", "b", "c")}


def test_one_model_with_concurrency_one_never_has_two_requests_in_flight(tmp_path):
    prompts = [{"name": n, "template": "p.j2", "mode": m} for n, m in (("a", "text"), ("b", "json_object"))]
    with OpenAIStub(latency_s=0.05) as stub:
        path = write_spec(tmp_path, stub.base_url, prompts=prompts, models=["stub-model"], concurrency=1, rows=4)
        outcome = _run(path, tmp_path / "run")
        peak = stub.peak_in_flight
    assert outcome.complete and peak == 1


def _same_body_prompts() -> list[dict]:
    # two prompts sending the same body (same template, same mode), read the same way
    return [{"name": "first", "template": "p.j2", "mode": "text"}, {"name": "second", "template": "p.j2", "mode": "text"}]


def test_two_prompts_with_the_same_body_pay_once_in_every_cache_mode(tmp_path):
    """rw serves the second from the cache or the first's flight; write (which reads nothing) keeps
    the run's answers; off shares only what is in flight at once (concurrency 12: everything)."""
    for mode, concurrency in (("rw", 3), ("write", 3), ("off", 12)):
        with OpenAIStub(latency_s=0.05) as stub:
            path = write_spec(tmp_path / mode, stub.base_url, prompts=_same_body_prompts(), models=["stub-model"],
                              concurrency=concurrency, rows=6)
            outcome = _run(path, tmp_path / mode / "run", None if mode == "off" else mode)
            requests = stub.requests
        assert outcome.complete, mode
        assert requests == 6, f"--cache {mode}: {requests} requests for 6 distinct bodies"
        counts = outcome.run["requests"]["openai:stub-model"]
        assert counts["sent"] == 6 and counts["shared"] + counts["cache_hits"] >= 6, (mode, counts)
        predictions = read_predictions(tmp_path / mode / "run" / "predictions.jsonl")
        assert sorted((p.prompt, p.example_id) for p in predictions) == sorted(
            (name, f"test:{i}") for name in ("first", "second") for i in range(6))
        by = {(p.prompt, p.example_id): p.prediction for p in predictions}
        assert all(by[("first", f"test:{i}")] == by[("second", f"test:{i}")] for i in range(6))


def test_calibration_requests_finish_before_that_prompts_examples_and_only_that_prompt_waits(tmp_path):
    prompts = [
        {"name": "gen", "template": "p.j2", "mode": "json_object"},
        {"name": "cal", "template": "p.j2", "answer": "label_likelihood",
         "calibration": {"method": "threshold", "validation_limit": 6}},
    ]
    with OpenAIStub(latency_s=0.1) as stub:
        path = write_spec(tmp_path, stub.base_url, prompts=prompts, models=["stub-model"], concurrency=2,
                          rows=6, validation=6)
        outcome = _run(path, tmp_path / "run")
        bodies = list(stub.bodies)

    def user(body):
        return next(m["content"] for m in body["messages"] if m["role"] == "user")

    validation = [i for i, b in enumerate(bodies) if user(b).startswith("val ")]
    cal_eval = [i for i, b in enumerate(bodies) if user(b).startswith("test ") and b.get("logprobs")]
    gen = [i for i, b in enumerate(bodies) if b.get("response_format")]
    assert len(validation) == 6 and len(cal_eval) == 6 and len(gen) == 6
    assert max(validation) < min(cal_eval)  # the calibrated prompt's examples wait for its fit
    assert min(gen) < max(validation)  # ... and the other prompt does not wait
    assert "cal" in outcome.run["requests"]["openai:stub-model"]["prompt_spans"]


def test_sigkill_mid_run_with_batched_cache_writes_never_pays_twice(tmp_path):
    """Every prediction on disk at the kill has its response committed in the cache, and the
    rerun requests only what had no prediction."""
    rows = 40
    prompts = [{"name": "a", "template": "p.j2", "mode": "text"}]
    with OpenAIStub(latency_s=0.05) as stub:
        path = write_spec(tmp_path, stub.base_url, prompts=prompts, models=["stub-model"], concurrency=8, rows=rows)
        env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
        command = [sys.executable, "-m", "harness.cli", "eval", str(path), "--quiet", "--no-baselines",
                   "--out", str(tmp_path / "run")]
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        predictions = tmp_path / "run" / "predictions.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if predictions.exists() and len(predictions.read_text().splitlines()) >= 8:
                break
            time.sleep(0.005)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        first.stderr.close()
        done = []
        for line in predictions.read_text().splitlines():
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line torn by the kill
        assert 8 <= len(done) < rows
        keys = {r["example_id"]: r["key"] for r in planned_requests(load_spec(path))}
        disk = open_disk_cache(tmp_path / "cache")
        try:
            assert all(disk.get(keys[p["example_id"]]) is not None for p in done)
        finally:
            disk.close()
        before = stub.requests
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        asked = [next(m["content"] for m in b["messages"] if m["role"] == "user") for b in stub.bodies[before:]]
    assert second.returncode == 0, second.stderr
    answered_texts = {p["text"] for p in done}
    assert not answered_texts & set(asked)
    assert len(read_predictions(predictions)) == rows


def test_stores_made_together_commit_in_one_transaction_and_return_after_it(tmp_path, monkeypatch):
    """Group commit: 40 responses stored at once cost a few SQLite transactions, not 40, and each
    `store` returns only when its entry is readable from another connection (what the kill/resume
    guarantee needs: the prediction is written after that)."""
    import harness.cache as hc
    from harness.keys import cache_key
    from providers.base import ChatResponse

    batches: list[int] = []
    real = hc._write_disk_entries

    def counted(disk, entries):
        batches.append(len(entries))
        real(disk, entries)

    monkeypatch.setattr(hc, "_write_disk_entries", counted)
    cache = ResponseCache("rw", tmp_path / "cache")
    materials = [{"provider": "openai", "endpoint": "http://x/v1", "body": {"model": "m", "n": i}} for i in range(40)]
    seen_after_store: list[bool] = []

    async def main():
        async def one(material):
            await cache.store(material, ChatResponse(text="positive", finish_reason="stop"))
            other = open_disk_cache(tmp_path / "cache")
            try:
                seen_after_store.append(other.get(cache_key(material)) is not None)
            finally:
                other.close()

        await asyncio.gather(*(one(m) for m in materials))

    try:
        asyncio.run(main())
    finally:
        cache.close()
    assert sum(batches) == 40 and len(batches) < 40
    assert seen_after_store == [True] * 40


def test_prediction_writer_buffers_within_a_turn_and_flushes_on_close(tmp_path):
    from harness.records import Prediction
    from harness.runner import PredictionWriter

    path = tmp_path / "p.jsonl"

    async def main():
        writer = PredictionWriter(path)
        for i in range(3):
            writer.write(Prediction(example_id=f"e{i}", model="m", prompt="p", gold="a", prediction="a", outcome="valid"))
        assert path.read_text() == ""  # the same event-loop turn: still buffered
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(path.read_text().splitlines()) == 3  # flushed once the turn ended
        writer.write(Prediction(example_id="e3", model="m", prompt="p", gold="a", prediction="a", outcome="valid"))
        writer.close()

    asyncio.run(main())
    assert [json.loads(line)["example_id"] for line in path.read_text().splitlines()] == ["e0", "e1", "e2", "e3"]
