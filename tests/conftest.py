"""Shared pytest setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_response_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty response cache (also inherited by `harness` subprocesses), so
    no test reads answers stored by another test or by the user's ~/.cache/harness."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("response-cache")))
