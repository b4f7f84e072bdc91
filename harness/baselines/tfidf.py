"""tfidf_logreg: word n-gram TF-IDF features + logistic regression, trained on the train split."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.baselines.base import BaselineModel
from harness.baselines.linear import LogRegHead


class TfidfLogReg(BaselineModel):
    trainable = True

    def fit(self, texts: Sequence[str], y: np.ndarray) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        c = self.config
        self.vectorizer = TfidfVectorizer(
            ngram_range=tuple(c.ngram_range), min_df=c.min_df, max_features=c.max_features,
            sublinear_tf=True, strip_accents="unicode",
        )
        X = self.vectorizer.fit_transform(list(texts))
        self.head = LogRegHead(len(self.labels), self.multi, C=c.C, class_weight=c.class_weight,
                               max_iter=c.max_iter).fit(X, y)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.predict_proba(self.vectorizer.transform(list(texts)))
