"""Shared pytest setup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The README runs the tests with HARNESS_DATA_DIR=../shared/datasets, relative to the repository.
# Tests that change directory, and the `harness` subprocesses they start elsewhere, must see the
# same folder: pin it to an absolute path once, against the directory pytest was started from.
if os.environ.get("HARNESS_DATA_DIR", "").strip():
    os.environ["HARNESS_DATA_DIR"] = str(Path(os.environ["HARNESS_DATA_DIR"].strip()).expanduser().absolute())


@pytest.fixture(autouse=True)
def _private_response_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty response cache (also inherited by `harness` subprocesses), so
    no test reads answers stored by another test or by the user's ~/.cache/harness."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("response-cache")))
