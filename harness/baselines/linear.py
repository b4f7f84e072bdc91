"""Logistic regression on feature rows (TF-IDF or embeddings), multi-class or one-vs-rest.

Classes (or, multi-label, labels) absent from the training rows get probability 0 (multi-class)
or a constant (one-vs-rest: always 0 when never seen, always 1 when on every row), instead of the
errors and warnings scikit-learn gives for them: small learning-curve subsets hit this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, Field

from harness.baselines.base import full_proba

if TYPE_CHECKING:
    import numpy as np


class LogRegOptions(BaseModel):
    """Options of the kinds with a logistic-regression head (LogRegHead)."""

    C: float = Field(1.0, gt=0, description="Inverse regularisation strength.")
    class_weight: Optional[Literal["balanced"]] = Field(None, description="`balanced` reweights rare classes.")
    max_iter: int = Field(1000, ge=1, description="Solver iterations.")

    def logreg_head(self, n_labels: int, multi: bool) -> "LogRegHead":
        return LogRegHead(n_labels, multi, C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)


class LogRegHead:
    def __init__(self, n_labels: int, multi: bool, *, C: float = 1.0, class_weight: str | None = None,
                 max_iter: int = 1000):
        self.n_labels = n_labels
        self.multi = multi
        self.params = {"C": C, "class_weight": class_weight, "max_iter": max_iter}
        self._models: list[Any] = []  # multi-class: one model; one-vs-rest: one per label (or a constant)
        self._seen: list[int] = []

    def _new(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(solver="lbfgs", **self.params)

    def fit(self, X: Any, y: "np.ndarray") -> "LogRegHead":
        import numpy as np

        if not self.multi:
            self._seen = sorted(int(c) for c in np.unique(y))
            if len(self._seen) == 1:
                self._models = [None]  # one class seen: it is always the answer
            else:
                self._models = [self._new().fit(X, y)]
            return self
        self._models = []
        for j in range(self.n_labels):
            column = y[:, j]
            if column.min() == column.max():
                self._models.append(float(column[0]))
            else:
                self._models.append(self._new().fit(X, column))
        return self

    def predict_proba(self, X: Any) -> "np.ndarray":
        import numpy as np

        n = X.shape[0]
        if not self.multi:
            model = self._models[0]
            if model is None:
                return full_proba(np.ones((n, 1)), self._seen, self.n_labels)
            # predict_proba's columns follow model.classes_, which is the sorted set of seen classes.
            return full_proba(model.predict_proba(X), self._seen, self.n_labels)
        out = np.zeros((n, self.n_labels))
        for j, model in enumerate(self._models):
            out[:, j] = model if isinstance(model, float) else model.predict_proba(X)[:, 1]
        return out
