"""Groq through its official SDK (`AsyncGroq`), on the shared scheduler.

Differences from OpenAI that this provider handles:

* The SDK appends `/openai/v1/...` itself, so `base_url` (or `GROQ_BASE_URL`) is the bare host
  (default https://api.groq.com); a URL ending in `/openai/v1` is trimmed rather than doubled.
* Strict structured outputs (constrained decoding) exist only for `openai/gpt-oss-20b` and
  `openai/gpt-oss-120b`; every other model gets the same schema with `strict: false` (best effort),
  so its answers can fail validation and show up as `schema_error`.
* `logprobs`/`top_logprobs` return HTTP 400 on Groq: they are dropped from the request with one
  warning, and predictions get no logprob confidence.
* `max_completion_tokens` (Groq deprecated `max_tokens`). Groq turns `temperature: 0` into 1e-8.
* Usage adds `queue_time`, `prompt_time`, `completion_time`, `total_time` (seconds), recorded with
  the response. `with_raw_response(...).parse()` is awaited in groq (it is not in openai).
"""

from __future__ import annotations

from typing import Any

from providers.base import ChatRequest
from providers.openai import OpenAIProvider, notice

GROQ_URL = "https://api.groq.com"
STRICT_MODELS = frozenset({"openai/gpt-oss-20b", "openai/gpt-oss-120b"})


class GroqProvider(OpenAIProvider):
    supports_logprobs = False  # logprobs/top_logprobs get HTTP 400 (harness.spec.NO_LOGPROBS_PROVIDERS)
    name = "groq"
    key_env = "GROQ_API_KEY"
    base_url_env = "GROQ_BASE_URL"
    default_base_url = GROQ_URL
    sdk = "groq"
    hosted_hosts = ("api.groq.com",)
    direct_capable = False  # Groq's URL layout and usage extras stay with its SDK

    def __init__(self, model):
        super().__init__(model)
        self._warned_logprobs = False

    @property
    def base_url(self) -> str:
        url = super().base_url  # normalised: ends in /v1
        for suffix in ("/openai/v1", "/v1"):
            if url.endswith(suffix):
                return url[: -len(suffix)]
        return url

    def missing_requirement(self) -> str | None:
        env = self.model.api_key_env or self.key_env
        return None if self.api_key else f"{env} is not set"

    def endpoint(self) -> str:
        return self.base_url + "/openai/v1"

    @property
    def supports_strict(self) -> bool:
        return self.served_name in STRICT_MODELS

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        body = super().build_body(request)
        if "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        dropped = [k for k in ("logprobs", "top_logprobs") if body.pop(k, None) is not None]
        if dropped and not self._warned_logprobs:
            self._warned_logprobs = True
            notice(f"{self.model.id}: Groq rejects logprobs (HTTP 400); not sending "
                   f"{', '.join(dropped)}, so predictions get no logprob confidence")
        return body

    def wire_response_format(self, response_format: dict) -> dict:
        if response_format.get("type") == "json_schema" and not self.supports_strict:
            spec = {**response_format["json_schema"], "strict": False}
            response_format = {"type": "json_schema", "json_schema": spec}
        return super().wire_response_format(response_format)

    def _make_client(self):
        from groq import AsyncGroq

        return AsyncGroq(**self._client_kwargs())

    async def _parse_raw(self, raw):
        return await raw.parse()  # groq's AsyncAPIResponse.parse() is a coroutine
