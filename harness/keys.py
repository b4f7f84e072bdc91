"""The request key: what the response cache (and the Batch API's `custom_id`) names a request by.

Kept apart and importing nothing else of the project, so the cache, the runner and the providers
(the Batch API joins its answers on this key) all share one definition without importing each
other. Changing anything here changes every key: bump KEY_VERSION when the meaning of a stored
response changes (e.g. how bodies are built), and never otherwise.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

KEY_VERSION = 1


class _Endpoint(Protocol):
    name: str

    def endpoint(self) -> str: ...


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept as is: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def cache_material(provider: _Endpoint, body: dict, repeat: int = 0) -> dict:
    """What the response cache keys on: everything that decides the answer, nothing else (the
    provider name, where the request goes and the exact JSON body sent), and for a model's
    `repeats:` the repeat index. Repeat 0 has no `repeat` key, so it is the very request of a
    run without repeats (they share the cached answer); repeat i > 0 is a request of its own even
    where the body cannot tell repeats apart (no seed), which keeps a replay exact."""
    material = {"provider": provider.name, "endpoint": provider.endpoint(), "body": body}
    if repeat:
        material["repeat"] = repeat
    return material


def cache_key(material: dict) -> str:
    """sha256 hex of the canonical JSON of the key version plus the material."""
    return hashlib.sha256(canonical_json({"v": KEY_VERSION, **material}).encode("utf-8")).hexdigest()


def request_key(provider: _Endpoint, body: dict, repeat: int = 0) -> str:
    """The key of one request body sent by `provider` (the cache key of its material)."""
    return cache_key(cache_material(provider, body, repeat))
