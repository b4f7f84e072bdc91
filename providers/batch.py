"""OpenAI's (and Groq's) Batch API as a provider mode: `options: {batch: true}` on a model.

The runner first hands every request the cache cannot answer to `provider.prefetch(bodies)`; this
module writes them as JSONL (one line per request: `custom_id`, `method`, `url`, `body` — the exact
body the synchronous path would send), uploads the file, creates the batch, polls it until it ends,
downloads the output and error files and joins the lines on `custom_id` (never on line order). The
answers then flow through the runner's usual path — `send()` returns them — so they are validated,
cached and scored exactly like synchronous answers.

`custom_id` is the request's response-cache key (harness.keys.request_key), so a body sent twice
(duplicate texts) is one request. Large inputs are split into several batches (at most
`batch_max_requests` lines, default 50,000, and ~190 MB per file).

Resuming: the id of each submitted batch is kept in `HARNESS_BATCH_DIR` (default
`~/.cache/harness/batches`), keyed by a hash of its input file. Rerunning the same command while a
batch is in progress polls that batch instead of paying for a second one; the record is deleted
once the results are read. Options: `batch_window` (default "24h"; Groq accepts 24h to 7d),
`batch_poll_s` (default 30), `batch_timeout_s` (default: none — the API's window applies).
Batch requests cost 50% of the synchronous price on both OpenAI and Groq (see harness.pricing).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import os
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.errors import HarnessError
from harness.keys import canonical_json, request_key
from providers.base import ChatResponse
from providers.wire import describe_error, read_completion, redact

if TYPE_CHECKING:  # for annotations only: openai imports this module
    from providers.openai import OpenAIProvider

CHAT_URL = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_FILE_BYTES = 190 * 1024 * 1024  # OpenAI's limit is 200 MB; leave room for multipart framing


def custom_id(provider: "OpenAIProvider", body: dict[str, Any]) -> str:
    """The request's identity: its response-cache key (sha256 of the runner's cache material)."""
    return request_key(provider, body)


def request_lines(requests: dict[str, dict[str, Any]]) -> list[bytes]:
    return [
        (canonical_json({"custom_id": cid, "method": "POST", "url": CHAT_URL, "body": body}) + "\n").encode()
        for cid, body in requests.items()
    ]


def chunk_lines(lines: list[bytes], max_requests: int, max_bytes: int = MAX_FILE_BYTES) -> list[bytes]:
    """Split JSONL lines into files within the request and size limits."""
    files, current, size = [], [], 0
    for line in lines:
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            files.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        files.append(b"".join(current))
    return files


def state_dir() -> Path:
    return Path(os.environ.get("HARNESS_BATCH_DIR") or "~/.cache/harness/batches").expanduser()


async def _text_of(content: Any) -> str:
    """File content from either SDK (openai: `.text` property; groq: `await .text()`)."""
    text = content.text
    if callable(text):
        text = text()
    if inspect.isawaitable(text):
        text = await text
    return text


class BatchJob:
    """Submits, polls and collects the batches for one provider."""

    def __init__(self, provider: "OpenAIProvider", *, log: Callable[[str], None] = lambda m: None):
        self.provider = provider
        self.client = provider.client
        o = provider.options
        self.window = o.batch_window
        self.poll_s = o.batch_poll_s
        self.timeout_s = o.batch_timeout_s
        self.max_requests = o.batch_max_requests
        self.log = log
        self.submitted: list[str] = []  # batch ids, for tests and the record

    async def run(self, requests: dict[str, dict[str, Any]]) -> dict[str, ChatResponse]:
        sdk = importlib.import_module(self.provider.sdk)
        results: dict[str, ChatResponse] = {}
        files = chunk_lines(request_lines(requests), self.max_requests)
        # batches run concurrently on the provider's side; wait for all of them together
        try:
            parts = await asyncio.gather(*(self._one(data, i, len(files)) for i, data in enumerate(files)))
        except sdk.APIError as exc:
            raise HarnessError(
                f"{self.provider.model.id}: a Batch API call to {self.provider.endpoint()} failed: "
                f"{redact(describe_error(exc), self.provider.api_key)}"
                + (" — does this server offer /v1/files and /v1/batches?" if not self.provider.is_hosted else "")
            ) from None
        for part in parts:
            results.update(part)
        for cid in requests:
            if cid not in results:
                results[cid] = ChatResponse(
                    error="the batch output has no line for this request", error_kind="server"
                )
        return results

    async def _one(self, data: bytes, index: int, total: int) -> dict[str, ChatResponse]:
        name = f"{self.provider.model.id} batch {index + 1}/{total}" if total > 1 else f"{self.provider.model.id} batch"
        record = state_dir() / f"{hashlib.sha256(self.provider.endpoint().encode() + data).hexdigest()}.json"
        batch = None
        if record.is_file():
            try:
                batch_id = json.loads(record.read_text())["batch_id"]
                batch = await self.client.batches.retrieve(batch_id)
                if batch.status in ("failed", "cancelled", "cancelling"):
                    batch = None  # submit afresh
                else:
                    self.log(f"{name}: resuming {batch.id} ({batch.status})")
            except Exception:  # noqa: BLE001 - an unreadable or unknown record: submit afresh
                batch = None
        if batch is None:
            batch = await self._submit(data, name)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({
                "batch_id": batch.id, "provider": self.provider.name,
                "endpoint": self.provider.endpoint(), "model": self.provider.model.id,
                "requests": data.count(b"\n"), "submitted_at": int(time.time()),
            }) + "\n")
        self.submitted.append(batch.id)
        batch = await self._wait(batch, name)
        if batch.status == "failed":
            record.unlink(missing_ok=True)
            errors = getattr(getattr(batch, "errors", None), "data", None) or []
            detail = "; ".join(
                f"line {getattr(e, 'line', '?')}: {getattr(e, 'message', e)}" for e in errors[:5]
            ) or "no detail given"
            raise HarnessError(f"{name} {batch.id} failed validation: {detail}")
        results = await self._collect(batch)
        if batch.status == "expired":
            self.log(f"{name}: {batch.id} expired with {len(results)} answers; rerun to retry the rest")
        if batch.status in ("completed", "expired", "cancelled"):
            record.unlink(missing_ok=True)
        return results

    async def _submit(self, data: bytes, name: str):
        uploaded = await self.client.files.create(file=("requests.jsonl", data), purpose="batch")
        batch = await self.client.batches.create(
            input_file_id=uploaded.id, endpoint=CHAT_URL, completion_window=self.window,
        )
        lines = data.count(b"\n")
        self.log(f"{name}: submitted {batch.id} ({lines} requests, window {self.window}); "
                 f"polling every {self.poll_s:g}s — rerunning the same command resumes it")
        return batch

    async def _wait(self, batch, name: str):
        started = time.monotonic()
        last = None
        while batch.status not in TERMINAL:
            if self.timeout_s is not None and time.monotonic() - started > self.timeout_s:
                raise HarnessError(
                    f"{name} {batch.id} still {batch.status} after {self.timeout_s:g}s "
                    "(batch_timeout_s); rerun the same command later to collect it"
                )
            counts = getattr(batch, "request_counts", None)
            status = (batch.status, getattr(counts, "completed", None))
            if status != last:
                done = f", {counts.completed}/{counts.total} done" if counts is not None else ""
                self.log(f"{name}: {batch.id} {batch.status}{done}")
                last = status
            await asyncio.sleep(self.poll_s)
            batch = await self.client.batches.retrieve(batch.id)
        return batch

    async def _collect(self, batch) -> dict[str, ChatResponse]:
        results: dict[str, ChatResponse] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = await _text_of(await self.client.files.content(file_id))
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise HarnessError(f"batch file {file_id} line {n}: not JSON: {line[:80]!r}") from None
                cid = record.get("custom_id")
                if cid:
                    results[cid] = self.read_line(record)
        return results

    def read_line(self, record: dict[str, Any]) -> ChatResponse:
        """One output/error line -> ChatResponse, through the SDK's own ChatCompletion type."""
        chat_types = importlib.import_module(f"{self.provider.sdk}.types.chat")
        error = record.get("error")
        response = record.get("response") or {}
        status = response.get("status_code")
        body = response.get("body")
        if error or status != 200 or not isinstance(body, dict):
            detail = error or (body.get("error") if isinstance(body, dict) else body) or {}
            message = detail.get("message") if isinstance(detail, dict) else str(detail)
            code = detail.get("code") if isinstance(detail, dict) else None
            kind = {400: "bad_request", 401: "auth", 403: "auth", 404: "not_found", 429: "rate_limit"}.get(
                status, "server"
            )
            return ChatResponse(
                error=f"batch request failed ({status or code or 'no status'}): {message or 'no message'}",
                error_kind=kind,
            )
        completion = chat_types.ChatCompletion.construct(**body)
        return read_completion(completion, None)
