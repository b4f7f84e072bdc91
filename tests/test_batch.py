"""Batch API mode through the real SDK clients (AsyncOpenAI over httpx2, AsyncGroq over httpx) and the
real runner and response cache, against a scripted Batch API that speaks the documented wire format
(files upload, batches create/retrieve, file content with output and error JSONL)."""

from __future__ import annotations

import asyncio
import email
import json
from pathlib import Path

import httpx
import httpx2
import pytest

from harness.cache import cache_key, make_cache
from harness.errors import HarnessError
from harness.records import read_predictions
from harness.runner import Prepared, cache_material, request_body, run_eval
from harness.spec import load_spec
from providers.batch import chunk_lines, request_lines
from providers.groq import GroqProvider
from providers.openai import OpenAIProvider
from test_scheduling import write_spec


class BatchAPI:
    """Files and batches endpoints. A batch is `validating`, then `in_progress`, then (after
    `polls_to_finish` retrieves) `completed` with its answers in reverse order (results are joined on
    custom_id, not line order); `fail_first` requests get an error line instead of an answer."""

    def __init__(self, http, *, polls_to_finish: int = 2, fail_first: int = 0, finish: bool = True):
        self.http = http
        self.polls_to_finish = polls_to_finish
        self.fail_first = fail_first
        self.finish = finish
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.uploads: list[list[dict]] = []

    def factory(self):
        return lambda: self.http.AsyncClient(transport=self.http.MockTransport(self.handle))

    def _json(self, status, payload):
        return self.http.Response(status, json=payload, headers={"x-request-id": "req_batch"})

    def handle(self, request):
        path = request.url.path.removeprefix("/openai")  # Groq serves the same API under /openai/v1
        self.calls.append((request.method, path))
        if request.method == "POST" and path == "/v1/files":
            message = email.message_from_bytes(
                b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
            )
            data = next(p.get_payload(decode=True) for p in message.walk() if p.get_filename())
            fid = f"file-in-{len(self.files)}"
            self.files[fid] = data
            self.uploads.append([json.loads(line) for line in data.decode().splitlines()])
            return self._json(200, {"id": fid, "object": "file", "bytes": len(data), "created_at": 1732262400,
                                    "filename": "requests.jsonl", "purpose": "batch"})
        if request.method == "POST" and path == "/v1/batches":
            body = json.loads(request.content)
            assert body == {"input_file_id": body["input_file_id"], "endpoint": "/v1/chat/completions",
                            "completion_window": "24h"}
            bid = f"batch_{len(self.batches)}"
            total = self.files[body["input_file_id"]].count(b"\n")
            self.batches[bid] = {
                "id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": body["input_file_id"], "completion_window": "24h", "status": "validating",
                "output_file_id": None, "error_file_id": None, "created_at": 1732262400,
                "request_counts": {"total": total, "completed": 0, "failed": 0}, "polls": 0,
            }
            return self._json(200, self._public(bid))
        if request.method == "GET" and path.startswith("/v1/batches/"):
            bid = path.rsplit("/", 1)[1]
            if bid not in self.batches:
                return self._json(404, {"error": {"message": f"No batch found with id '{bid}'.",
                                                  "type": "invalid_request_error", "code": None}})
            batch = self.batches[bid]
            batch["polls"] += 1
            if batch["status"] == "validating":
                batch["status"] = "in_progress"
            elif self.finish and batch["polls"] >= self.polls_to_finish and batch["status"] == "in_progress":
                self._complete(bid)
            return self._json(200, self._public(bid))
        if request.method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            fid = path.split("/")[3]
            return self.http.Response(200, content=self.files[fid], headers={"content-type": "application/octet-stream"})
        raise AssertionError(f"unexpected {request.method} {request.url}")

    def _public(self, bid):
        return {k: v for k, v in self.batches[bid].items() if k != "polls"}

    def _complete(self, bid):
        batch = self.batches[bid]
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines()]
        out, err = [], []
        for n, line in enumerate(lines):
            if n < self.fail_first:
                err.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "error": None, "response": {
                    "status_code": 500, "request_id": f"req_{n}",
                    "body": {"error": {"message": "The server had an error processing your request.",
                                       "type": "server_error", "param": None, "code": None}}}})
                continue
            text = " ".join(m["content"] for m in line["body"]["messages"] if m["role"] == "user")
            label = "positive" if "good" in text else "negative"
            out.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "error": None, "response": {
                "status_code": 200, "request_id": f"req_{n}", "body": {
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1732262400,
                    "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"label": label}),
                                                         "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
                              "prompt_tokens_details": {"cached_tokens": 0}}}}})
        out.reverse()  # results come back in any order
        batch["output_file_id"] = f"file-out-{bid}"
        self.files[batch["output_file_id"]] = "".join(json.dumps(x) + "\n" for x in out).encode()
        if err:
            batch["error_file_id"] = f"file-err-{bid}"
            self.files[batch["error_file_id"]] = "".join(json.dumps(x) + "\n" for x in err).encode()
        batch["status"] = "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}


@pytest.fixture
def batch_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch-0123456789abcdef")
    monkeypatch.setenv("GROQ_API_KEY", "gsk_test_batch_0123456789abcdef")
    monkeypatch.setenv("HARNESS_BATCH_DIR", str(tmp_path / "batches"))
    monkeypatch.delenv("HARNESS_PRICES", raising=False)
    yield tmp_path
    OpenAIProvider.http_client_factory = None
    GroqProvider.http_client_factory = None


def batch_spec(tmp: Path, n: int, provider: str = "openai", model: str = "gpt-4o-mini", **options):
    path = write_spec(tmp, "https://api.openai.com/v1" if provider == "openai" else "https://api.groq.com",
                      n, concurrency=4, provider=provider, model=model,
                      options={"batch": True, "batch_poll_s": 0.01, **options})
    return load_spec(path)


def test_openai_batch_run_joins_on_custom_id_and_feeds_cache_and_validation(batch_env):
    tmp, n = batch_env, 12
    api = BatchAPI(httpx2, fail_first=1)
    OpenAIProvider.http_client_factory = staticmethod(api.factory())
    spec = batch_spec(tmp, n)
    cache = make_cache("rw", directory=tmp / "cache")
    outcome = asyncio.run(run_eval(spec, out_dir=tmp / "run1", cache=cache))

    # the uploaded JSONL: one line per request, custom_id = the response-cache key of the exact body
    [upload] = api.uploads
    provider = OpenAIProvider(spec.models[0])
    prepared = Prepared(spec)
    [pp] = prepared.prompts
    bodies = [request_body(prepared, pp, ex, spec.models[0], provider) for ex in prepared.eval.examples]
    assert [line["body"] for line in upload] == bodies
    assert [line["custom_id"] for line in upload] == [cache_key(cache_material(provider, b)) for b in bodies]
    assert {(line["method"], line["url"]) for line in upload} == {("POST", "/v1/chat/completions")}
    assert bodies[0]["max_completion_tokens"] == 64  # the same body the synchronous path sends
    assert not any(path.endswith("/chat/completions") for _, path in api.calls)  # nothing synchronous

    predictions = read_predictions(outcome.run_dir / "predictions.jsonl")
    by_outcome = {}
    for p in predictions:
        by_outcome[p.outcome] = by_outcome.get(p.outcome, 0) + 1
    assert by_outcome == {"valid": n - 1, "api_error": 1}
    [failed] = [p for p in predictions if p.outcome == "api_error"]
    assert failed.example_id == prepared.eval.examples[0].id and "batch request failed (500)" in failed.error
    assert all(p.prediction == p.gold for p in predictions if p.outcome == "valid")
    [row] = outcome.metrics
    # gpt-4o-mini built-in price at the 50% batch rate: (100 × 0.15 + 10 × 0.60) / 1e6 / 2 per answer
    assert row["cost_usd"] == pytest.approx((n - 1) * (100 * 0.15 + 10 * 0.60) / 1e6 / 2)
    assert row["cost_per_valid_usd"] == pytest.approx(row["cost_usd"] / (n - 1))
    assert "batch" in row["price"]["source"]
    assert not list((tmp / "batches").glob("*.json"))  # the resume record is gone once collected
    # the pre-pass only probes the cache: each request is counted once, as a miss
    assert (cache.hits, cache.misses) == (0, n)

    # a rerun pays only for what failed: the answered requests come from the cache
    api.fail_first = 0
    cache = make_cache("rw", directory=tmp / "cache")
    outcome = asyncio.run(run_eval(spec, out_dir=tmp / "run2", cache=cache))
    assert (cache.hits, cache.misses) == (n - 1, 1)
    assert len(api.uploads) == 2 and len(api.uploads[1]) == 1
    assert api.uploads[1][0]["custom_id"] == upload[0]["custom_id"]
    predictions = read_predictions(outcome.run_dir / "predictions.jsonl")
    assert {p.outcome for p in predictions} == {"valid"}
    assert sum(p.cached for p in predictions) == n - 1


def test_an_interrupted_batch_is_resumed_not_resubmitted(batch_env):
    tmp, n = batch_env, 6
    api = BatchAPI(httpx2, finish=False)
    OpenAIProvider.http_client_factory = staticmethod(api.factory())
    spec = batch_spec(tmp, n, batch_timeout_s=0.2)
    with pytest.raises(HarnessError, match="still in_progress after 0.2s .*rerun the same command"):
        asyncio.run(run_eval(spec, out_dir=tmp / "run1", cache=make_cache("rw", directory=tmp / "cache")))
    [record] = list((tmp / "batches").glob("*.json"))
    assert json.loads(record.read_text())["batch_id"] == "batch_0"

    api.finish = True  # the provider finishes the batch while we were away
    outcome = asyncio.run(run_eval(spec, out_dir=tmp / "run2", cache=make_cache("rw", directory=tmp / "cache")))
    assert len(api.uploads) == 1 and len(api.batches) == 1  # no second file, no second batch
    assert ("GET", "/v1/batches/batch_0") in api.calls
    assert outcome.metrics[0]["validity"] == 1.0
    assert not record.exists()


def test_groq_batch_through_the_groq_client(batch_env):
    tmp, n = batch_env, 4
    api = BatchAPI(httpx)
    GroqProvider.http_client_factory = staticmethod(api.factory())
    spec = batch_spec(tmp, n, provider="groq", model="llama-3.1-8b-instant")
    outcome = asyncio.run(run_eval(spec, out_dir=tmp / "run", cache=None))
    assert ("POST", "/v1/files") in api.calls and len(api.uploads[0]) == n
    assert all("max_completion_tokens" in line["body"] for line in api.uploads[0])
    assert outcome.metrics[0]["validity"] == 1.0
    assert outcome.metrics[0]["cost_usd"] == pytest.approx(n * (100 * 0.05 + 10 * 0.08) / 1e6 / 2)


def test_a_server_without_a_batch_api_is_a_clear_error(batch_env):
    from http_stub import OpenAIStub

    with OpenAIStub() as stub:
        spec = load_spec(write_spec(batch_env, stub.base_url, 3, concurrency=2, options={"batch": True}))
        with pytest.raises(HarnessError, match="Batch API call to .* failed: NotFoundError \\(404\\).*/v1/batches"):
            asyncio.run(run_eval(spec, out_dir=batch_env / "run", cache=None))
    assert stub.requests == 0  # no chat request was sent instead


def test_large_inputs_are_split_into_several_files():
    lines = request_lines({f"id{i}": {"model": "m", "messages": []} for i in range(7)})
    files = chunk_lines(lines, max_requests=3)
    assert [f.count(b"\n") for f in files] == [3, 3, 1]
    assert b"".join(files) == b"".join(lines)
    assert len(chunk_lines(lines, max_requests=100, max_bytes=len(lines[0]) * 2 + 1)) == 4
