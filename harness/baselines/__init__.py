"""Encoder baselines compared with the LLMs in the same run: TF-IDF + logistic regression,
sentence embeddings (+ logistic regression, class centroids, zero-shot label similarity),
SetFit few-shot fine-tuning of the encoder, task-specific transformers classifiers and NLI zero-shot.

Modules: `base` (the `Baseline` class, the registry of kinds, probabilities -> predictions),
`linear` (logistic regression heads), the kinds (`tfidf`, `embedding_kinds`, `setfit`, `classifiers`: each
kind is one registered `Baseline` subclass, its options are its fields), `embeddings` (the
sentence-transformers encoder and its disk cache), `run` (baselines inside `harness eval`).

Importing this package imports nothing: `harness.spec` imports `base` and the kinds to build its
schema, so the names below load their module on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BASELINE_PROMPT": "harness.baselines.base",
    "Baseline": "harness.baselines.base",
    "baseline_class": "harness.baselines.base",
    "baseline_kinds": "harness.baselines.base",
    "BaselineResult": "harness.baselines.run",
    "run_baselines": "harness.baselines.run",
    "select_baselines": "harness.baselines.run",
}

__all__ = [*_EXPORTS, "KINDS", "TRAINABLE"]


def __getattr__(name: str) -> Any:
    if name == "KINDS":  # kind -> class
        return importlib.import_module("harness.baselines.base").baseline_kinds()
    if name == "TRAINABLE":  # the kinds that learn from dataset.train_split
        return importlib.import_module("harness.baselines.base").trainable_kinds()
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness.baselines' has no attribute {name!r}")
