"""The metric kernel and the typed rows of a run's `metrics.json`.

* `harness.metrics.kernel` — encode one group of predictions once (gold and predicted label
  matrices, a `correct` vector) and compute every figure from that encoding, over the examples as
  they are or over bootstrap resamples (numpy only: scikit-learn is the test-time reference);
* `harness.metrics.row` — the Pydantic row model (`MetricsRow` and its optional parts), the names
  checks may test, the report columns, the `compare` headline figures and the published schema;
* `harness.metrics.assemble` — the one place a run's rows are built from one grouping of its
  predictions.

Nothing is imported here, so `harness.spec` can read the row model's figure names without
loading numpy or the scorers.
"""
