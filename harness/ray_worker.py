"""The code that runs inside Ray workers for `--executor ray` (harness.ray_executor drives it).

Standard library only, and shipped to the workers by value (`ray.cloudpickle.register_pickle_by_value`),
so a cluster's workers need `ray[data]` and aiohttp (the HTTP back end) or vLLM (the engine back end),
never the harness itself.

Why the HTTP back end goes through `RawSession`: Ray Data stores rows as Arrow tables, which unify
the fields of nested dicts across a batch (a text-mode body gains `"response_format": null`, an int
`temperature` can come back a float). The response cache keys on the exact body, so the body must
reach the server byte for byte as the harness rendered it. It therefore travels as one JSON string
(`{"__harness_body__": "<json>"}`); `RawSession` — Ray's documented `session_factory` hook of
`HttpRequestProcessorConfig` — unwraps it just before the POST and hands the stage the reply as
text (`{"__harness_raw__": text, "status": ..., "latency_s": ...}`), which the driver reads with
the same OpenAI SDK code as the local path. Three more things it does, and why:

* Every status is handed back as a reply, never raised or reported as retryable: Ray's HTTP stage
  ends the whole dataset with a RuntimeError once a row runs out of retries. A failed row is an
  error the driver does not store, so the local pass that follows re-sends it through the
  provider's own scheduler (backoff, Retry-After, 401 stops the model).
* The POST starts when the stage calls `post()` (the stage paces those calls by `qps`), not when it
  later awaits the reply: Ray's stage awaits the replies of a batch one by one, so without this a
  batch's requests would go out one after another. In flight per actor: up to `batch_size`.
* Connection failures come back as status 0 with the reason, for the same reason as the first point.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

BODY = "__harness_body__"
RAW = "__harness_raw__"


# -- HTTP back end ------------------------------------------------------------------------------


def http_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """Row {key, body (JSON text)} -> the stage's `payload`, still one opaque JSON string."""
    return {"payload": {BODY: row["body"]}}


def http_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The stage's row -> {key, status, text, latency_s}: plain scalars, nothing Arrow can reshape."""
    reply = row["http_response"]
    return {"key": row["key"], "status": int(reply["status"]), "text": reply[RAW],
            "latency_s": float(reply["latency_s"])}


async def _fetch(session: Any, url: str, headers: dict, data: str) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    try:
        async with session.post(url, headers=headers, data=data.encode("utf-8")) as response:
            text = await response.text()
            return response.status, response.reason or "", text, time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - a transport failure is an answer the driver reads
        return 0, type(exc).__name__, f"{type(exc).__name__}: {exc}", time.perf_counter() - started


class _Reply:
    """What the stage sees as the aiohttp response: always a usable JSON body."""

    def __init__(self, status: int, reason: str, text: str, latency_s: float):
        self.status = 200  # the real status travels in the body (see the module docstring)
        self.reason = reason
        self._body = {RAW: text, "status": status, "latency_s": latency_s}

    async def __aenter__(self) -> "_Reply":
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        return False

    async def json(self) -> dict:
        return self._body


class _Started:
    """`session.post(...)` as the stage expects it (awaited later, then used as `async with`)."""

    def __init__(self, task: "asyncio.Task"):
        self._task = task

    def __await__(self):
        return self._reply().__await__()

    async def _reply(self) -> _Reply:
        return _Reply(*await self._task)


class RawSession:
    """The `session_factory` of the HTTP processor: an aiohttp session that sends the harness's
    exact body and returns the exact reply text (see the module docstring)."""

    def __init__(self) -> None:
        self._session: Any = None
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "RawSession":
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def post(self, url: str, headers: dict | None = None, data: str = "", **_: Any) -> _Started:
        payload = json.loads(data)
        body = payload[BODY] if isinstance(payload, dict) and BODY in payload else data
        task = asyncio.ensure_future(_fetch(self._session, url, dict(headers or {}), body))
        self._tasks.append(task)
        return _Started(task)


# -- vLLM engine back end -------------------------------------------------------------------------


def vllm_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """Row {key, request (JSON text of harness.ray_executor.engine_request)} -> the vLLM stages'
    inputs: `messages` (the chat template stage applies the model's template; a final assistant
    message is continued), `sampling_params` (with `structured_outputs`), and `model` naming a
    LoRA adapter when one is used."""
    request = json.loads(row["request"])
    out = {"messages": request["messages"], "sampling_params": request["sampling_params"]}
    if request.get("lora"):
        out["model"] = request["lora"]
    return out


def vllm_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """vLLM's output row -> {key, status, text, latency_s}; `text` is the JSON of an OpenAI-shaped
    completion, so the driver reads it with the same code as an HTTP reply."""
    request = json.loads(row["request"])
    max_tokens = request["sampling_params"].get("max_tokens")
    generated = _plain(row.get("generated_tokens")) or []
    n_out = int(row.get("num_generated_tokens") or len(generated))
    # vLLM's output row carries no finish reason: a reply that used every allowed token was cut.
    finish = "length" if max_tokens is not None and n_out >= max_tokens else "stop"
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                              "message": {"role": "assistant", "content": row.get("generated_text") or ""}}
    logprobs = _plain(row.get("logprobs"))
    if logprobs:
        choice["logprobs"] = {"content": [_token_logprobs(step, token) for step, token in zip(logprobs, generated)]}
    completion = {
        "id": row["key"], "object": "chat.completion", "created": 0, "model": request["served_model"],
        "choices": [choice],
        "usage": {"prompt_tokens": int(row.get("num_input_tokens") or 0), "completion_tokens": n_out,
                  "total_tokens": int(row.get("num_input_tokens") or 0) + n_out},
    }
    return {"key": row["key"], "status": 200, "text": json.dumps(completion, ensure_ascii=False),
            "latency_s": float(row.get("time_taken_llm") or 0.0)}


def _token_logprobs(step: dict, token_id: int) -> dict:
    """One generated position: {token_id: {logprob, rank, decoded_token}} -> OpenAI's shape."""
    entries = sorted(((int(t), v) for t, v in step.items() if v is not None),
                     key=lambda item: (item[1].get("rank") or 0))
    chosen = next((v for t, v in entries if t == int(token_id)), None) or {}
    top = [{"token": v.get("decoded_token") or "", "logprob": float(v["logprob"]), "bytes": None}
           for _, v in entries if (v.get("rank") or 0) >= 1]
    return {"token": chosen.get("decoded_token") or "", "logprob": float(chosen.get("logprob", 0.0)),
            "bytes": None, "top_logprobs": top}


def _plain(value: Any) -> Any:
    """Arrow/numpy values as plain Python (lists of dicts come back as numpy arrays)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
