"""tfidf_logreg: word n-gram TF-IDF features + logistic regression, trained on the train split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence

from pydantic import Field, model_validator

from harness.baselines.base import Baseline, TrainOptions
from harness.baselines.linear import LogRegOptions
from harness.errors import FieldProblem

if TYPE_CHECKING:
    import numpy as np


class TfidfLogReg(TrainOptions, LogRegOptions, Baseline):
    """Word n-gram TF-IDF features + logistic regression, trained on dataset.train_split."""

    kind: Literal["tfidf_logreg"]
    max_features: Optional[int] = Field(50000, ge=1, description="Vocabulary size cap.")
    ngram_range: tuple[int, int] = Field((1, 2), description="Word n-gram sizes [min, max].")
    min_df: int = Field(1, ge=1, description="Drop terms seen in fewer documents.")

    _vectorizer: Any = None
    _head: Any = None

    @model_validator(mode="after")
    def _ngrams_in_order(self) -> "TfidfLogReg":
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise FieldProblem(("ngram_range",), f"[{low}, {high}]: need 1 <= min <= max")
        return self

    def fit(self, texts: Sequence[str], y: "np.ndarray") -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(
            ngram_range=tuple(self.ngram_range), min_df=self.min_df, max_features=self.max_features,
            sublinear_tf=True, strip_accents="unicode",
        )
        X = self._vectorizer.fit_transform(list(texts))
        self._head = self.logreg_head(len(self.labels), self.multi).fit(X, y)

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        return self._head.predict_proba(self._vectorizer.transform(list(texts)))
