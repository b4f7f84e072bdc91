"""Encoder baselines compared with the LLMs in the same run: TF-IDF + logistic regression,
sentence embeddings (+ logistic regression, class centroids, zero-shot label similarity),
task-specific transformers classifiers and NLI zero-shot.

Modules: `base` (registry, interface, probabilities -> predictions), `linear` (logistic
regression heads), `tfidf`, `embeddings` (sentence-transformers encoder and its disk cache),
`embedding_kinds`, `classifiers` (hf_classifier, nli_zero_shot), `run` (baselines inside
`harness eval`). Importing this package imports no heavy library.
"""

from harness.baselines.base import BASELINE_PROMPT, KINDS, TRAINABLE, baseline_class
from harness.baselines.run import BaselineResult, run_baselines, select_baselines

__all__ = [
    "BASELINE_PROMPT", "KINDS", "TRAINABLE", "baseline_class",
    "BaselineResult", "run_baselines", "select_baselines",
]
