"""The metric kernel: one encoding of a group of predictions, every figure computed from it.

A group (normally one model × prompt) is encoded once by `encode`:

* `gold`, `pred` — boolean label matrices, one row per example, one column per label. A single-label
  answer is a one-hot row; an answer that could not be read, or names no known label, sets no
  column (so it only costs recall, as scikit-learn's `labels=labels` does with a stray class);
* `correct` — THE definition of a right answer, used by every figure, interval, paired test and
  coverage curve: the answer is valid and its label row equals the gold row (single-label: and the
  gold is one of the labels, which `harness.data` guarantees).

Every figure is then a function of per-example weights `w`: all ones for the point estimate,
`valid` for the valid-only figure, and a `(resamples, n)` matrix of draw counts for a bootstrap
(`resample_weights`), so one matrix product scores all resamples at once and the point estimate,
the interval and the paired comparison cannot disagree about what a figure means.

The definitions are scikit-learn's (precision_recall_fscore_support with zero_division=0), written
with numpy because importing sklearn costs 1.6–3.4 s, more than a whole cached replay;
tests/test_score_sklearn.py holds sklearn as the reference, resampled figures included.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

TASKS = ("single_label", "multi_label")


@dataclass(frozen=True, eq=False)
class Encoding:
    """One group of predictions as arrays (rows in the order given to `encode`)."""

    task: str
    labels: tuple[str, ...]
    example_ids: tuple[str, ...]
    gold: np.ndarray  # (n, k) bool
    pred: np.ndarray  # (n, k) bool; an invalid answer is an all-False row
    valid: np.ndarray  # (n,) bool
    correct: np.ndarray  # (n,) bool
    confidence: np.ndarray  # (n,) float, NaN where the record has none
    # (n,) float, NaN where the record has no label distribution: top-two probability gap, entropy (nats)
    margin: np.ndarray
    entropy: np.ndarray
    # float32 copies for the weighted sums (small integers are exact; `_sum` hands the sums on as
    # float64); the label matrices transposed, (k, n), one contiguous row per label
    _gold: np.ndarray
    _pred: np.ndarray
    _hits: np.ndarray
    _correct: np.ndarray
    _errors: np.ndarray  # (n,) labels wrong per example (gold != pred), for the Hamming loss

    @property
    def n(self) -> int:
        return len(self.example_ids)


def label_set(value: Any, labels: Sequence[str]) -> list[str]:
    """Known label names in an answer or gold value (one name, or a list/tuple of names), once each.
    Unknown names are dropped: they can never be a hit."""
    if value is None:
        return []
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    known = set(labels)
    out: list[str] = []
    for item in items:
        name = str(item)
        if name in known and name not in out:
            out.append(name)
    return out


def encode(preds: Sequence[Any], labels: Sequence[str], task: str) -> Encoding:
    """Encode `Prediction`-like records (gold, prediction, outcome, confidence, example_id)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    labels = tuple(labels)
    n, k = len(preds), len(labels)
    valid = np.fromiter((p.outcome == "valid" for p in preds), dtype=bool, count=n)
    if task == "single_label":
        index = {name: i for i, name in enumerate(labels)}
        gold_i = np.fromiter((index.get(str(p.gold), -1) for p in preds), dtype=np.int64, count=n)
        pred_i = np.fromiter(
            (index.get(str(p.prediction), -1) if p.outcome == "valid" else -1 for p in preds),
            dtype=np.int64, count=n,
        )
        classes = np.arange(k)
        gold = gold_i[:, None] == classes  # -1 (unknown / invalid) sets no column
        pred = pred_i[:, None] == classes
        correct = valid & (gold_i >= 0) & (gold_i == pred_i)
    else:
        column = {name: j for j, name in enumerate(labels)}
        gold = np.zeros((n, k), dtype=bool)
        pred = np.zeros((n, k), dtype=bool)
        for i, p in enumerate(preds):
            gold[i, [column[name] for name in label_set(p.gold, labels)]] = True
            if p.outcome == "valid":
                pred[i, [column[name] for name in label_set(p.prediction, labels)]] = True
        correct = valid & (gold == pred).all(axis=1)
    def per_example(name: str) -> np.ndarray:
        values = (getattr(p, name, None) for p in preds)
        return np.fromiter((math.nan if v is None else float(v) for v in values), dtype=np.float64, count=n)

    return _encoding(task, labels, tuple(p.example_id for p in preds), gold, pred, valid, correct,
                     per_example("confidence"), per_example("margin"), per_example("entropy"))


def _encoding(task, labels, example_ids, gold, pred, valid, correct, confidence, margin, entropy) -> Encoding:
    return Encoding(
        task=task, labels=tuple(labels), example_ids=example_ids,
        gold=gold, pred=pred, valid=valid, correct=correct, confidence=confidence,
        margin=margin, entropy=entropy,
        _gold=_columns(gold), _pred=_columns(pred), _hits=_columns(gold & pred),
        _correct=correct.astype(np.float32),
        _errors=(gold != pred).sum(axis=1).astype(np.float32),
    )


def coarsen(enc: Encoding, labels: Sequence[str], ancestor: dict[str, str]) -> Encoding:
    """`enc` one or more levels up a label hierarchy: each label column is mapped to the column of
    its ancestor (`ancestor[label]`, one of `labels`), so gold and prediction name groups instead of
    labels and every figure of this module applies unchanged. A right answer stays right; a wrong
    one becomes right when both labels share the ancestor. An invalid answer still sets no column;
    a single-label answer stays one-hot (multi-label: the set of the labels' ancestors)."""
    labels = tuple(labels)
    column = {name: j for j, name in enumerate(labels)}
    up = np.zeros((len(enc.labels), len(labels)), dtype=np.int64)
    for i, label in enumerate(enc.labels):
        up[i, column[ancestor[label]]] = 1
    gold = (enc.gold.astype(np.int64) @ up) > 0
    pred = (enc.pred.astype(np.int64) @ up) > 0
    correct = enc.valid & (gold == pred).all(axis=1)
    if enc.task == "single_label":
        correct &= gold.any(axis=1)
    return _encoding(enc.task, labels, enc.example_ids, gold, pred, enc.valid, correct,
                     enc.confidence, enc.margin, enc.entropy)


# ---------------------------------------------------------------------------------------------
# Weights: the point estimate, the valid-only view, bootstrap resamples


def ones(enc: Encoding) -> np.ndarray:
    return np.ones(enc.n)


def valid_weights(enc: Encoding, w: np.ndarray | None = None) -> np.ndarray:
    """Restrict weights to the valid answers (the `*_valid` figures)."""
    return (ones(enc) if w is None else w) * enc.valid


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) example indices drawn with replacement, numpy's default_rng(seed)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """How often each example is drawn in each resample: row r weighs example i by its count in
    row r of `resample_indices(n, resamples, seed)` (the same draws, taken a block of rows at a
    time), so a figure over these weights equals the figure over the resampled list of examples.
    float32 (small integer counts are exact); the whole (resamples, n) matrix: for large n use
    `resample_weight_blocks`."""
    blocks = [block.copy() for block in resample_weight_blocks(n, resamples, seed)]  # each is overwritten
    return np.concatenate(blocks) if blocks else np.empty((0, n), dtype=np.float32)


# Cells of one block of `resample_weight_blocks` (16 MiB of float32), whatever n.
BLOCK_CELLS = 1 << 22


def resample_weight_blocks(n: int, resamples: int, seed: int, cells: int = BLOCK_CELLS) -> Iterator[np.ndarray]:
    """The rows of `resample_weights(n, resamples, seed)`, a block of rows at a time (the same
    draws in the same order), so scoring 100k examples x 1000 resamples never holds the whole
    matrix: figure(enc, block) for each block, concatenated, equals figure(enc, whole matrix).

    Every block is a view of one buffer, which the next block overwrites: score a block before
    asking for the next one (copy it to keep it). A fresh array per block meant two blocks alive at
    once (the loop still holds the last while the next is made), 32 MiB, the peak of scoring a
    large run."""
    draw = max(1, (1 << 16) // max(n, 1))  # rows drawn per call: the peak is one draw of indices
    per_block = max(draw, cells // max(n, 1) // draw * draw)
    if 0 < resamples <= per_block:  # one block: drawn once, then the same read-only array
        yield _one_block(n, resamples, seed, draw)
        return
    rng = np.random.default_rng(seed)
    buffer = np.empty((min(per_block, resamples), n), dtype=np.float32) if resamples > 0 else None
    for start in range(0, resamples, per_block):
        yield _draw_counts(buffer[:min(per_block, resamples - start)], rng, n, draw)


def _draw_counts(out: np.ndarray, rng: np.random.Generator, n: int, draw: int) -> np.ndarray:
    """Fill `out` (rows, n) with resampling counts, `draw` rows of indices per call to `rng`."""
    for offset in range(0, len(out), draw):
        rows = rng.integers(0, n, size=(min(draw, len(out) - offset), n))
        rows += n * np.arange(len(rows))[:, None]
        out[offset:offset + len(rows)] = np.bincount(rows.ravel(), minlength=len(rows) * n).reshape(len(rows), n)
    return out


@functools.lru_cache(maxsize=1)
def _one_block(n: int, resamples: int, seed: int, draw: int) -> np.ndarray:
    """All the weights of a run small enough for one block, drawn as the blocked loop draws them.
    Every row's interval and every paired test of a report resample the same examples (same n,
    resamples and seed), so the last draw is kept (read-only; at most one block, 16 MiB) instead of
    being drawn again for each: a 300-example report drew it ten times."""
    out = _draw_counts(np.empty((resamples, n), dtype=np.float32), np.random.default_rng(seed), n, draw)
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------------------------------------
# Figures: f(enc, w) -> a float for 1-D weights, an array of one value per row for 2-D weights


def _divide(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _columns(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix.T, dtype=np.float32)


def _sum(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weighted sums over the examples, as float64: w is (n,) or (resamples, n); values is (n,) or
    (k, n) label rows, giving (...,) or (..., k). numpy's own loops (einsum), one pass per label,
    not BLAS: on a busy 2-core machine OpenBLAS's threads made a (1000 × 1200) product 25× slower."""
    w = w.astype(np.float32, copy=False)
    if values.ndim == 1:
        return np.asarray(np.einsum("...n,n->...", w, values), dtype=np.float64)
    out = np.empty(w.shape[:-1] + (len(values),))
    for j, row in enumerate(values):
        out[..., j] = np.einsum("...n,n->...", w, row)
    return out


def counts(enc: Encoding, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted per-label (true positives, predicted, actual), shape (..., k)."""
    return _sum(w, enc._hits), _sum(w, enc._pred), _sum(w, enc._gold)


def prf(tp, predicted, actual) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label precision, recall and F1 = 2·TP / (actual + predicted); 0 where undefined."""
    return _divide(tp, predicted), _divide(tp, actual), _divide(2.0 * tp, actual + predicted)


def accuracy(enc: Encoding, w: np.ndarray):
    """Share of right answers (multi-label: the exact label set, i.e. subset accuracy)."""
    total = w.sum(axis=-1, dtype=np.float64)
    return np.where(total > 0, _sum(w, enc._correct) / np.maximum(total, 1e-300), np.nan)


def macro_f1(enc: Encoding, w: np.ndarray):
    tp, predicted, actual = counts(enc, w)
    return prf(tp, predicted, actual)[2].mean(axis=-1)


def weighted_f1(enc: Encoding, w: np.ndarray):
    """F1 averaged with each label's support as weight (all supports 0: the plain mean)."""
    tp, predicted, actual = counts(enc, w)
    f1 = prf(tp, predicted, actual)[2]
    support = actual.sum(axis=-1)
    return np.where(support > 0, (f1 * actual).sum(axis=-1) / np.maximum(support, 1e-300), f1.mean(axis=-1))


def balanced_accuracy(enc: Encoding, w: np.ndarray):
    """Mean recall over the labels that occur in the gold (scikit-learn's balanced_accuracy_score):
    a model that always answers the majority class scores 1 / (number of labels)."""
    tp, _, actual = counts(enc, w)
    present = actual > 0
    return _divide((_divide(tp, actual) * present).sum(axis=-1), present.sum(axis=-1))


def micro_f1(enc: Encoding, w: np.ndarray):
    tp, predicted, actual = counts(enc, w)
    return _divide(2.0 * tp.sum(axis=-1), actual.sum(axis=-1) + predicted.sum(axis=-1))


def hamming_loss(enc: Encoding, w: np.ndarray):
    total = w.sum(axis=-1, dtype=np.float64) * len(enc.labels)
    return np.where(total > 0, _sum(w, enc._errors) / np.maximum(total, 1e-300), np.nan)


# ---------------------------------------------------------------------------------------------
# Uncertainty of a label distribution: per example (`uncertainty`), then weighted like any figure

# A margin below this (the top two labels within 10 points of each other) counts as a near tie.
LOW_MARGIN = 0.1


def uncertainty(probs) -> tuple[np.ndarray, np.ndarray]:
    """(margin, entropy) of each row of label probabilities (n, k): the top probability minus the
    second, and -sum p·ln p in nats (0·ln 0 = 0). One label: margin 1, entropy 0."""
    p = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    top = np.sort(p, axis=1)
    margin = top[:, -1] - (top[:, -2] if p.shape[1] > 1 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return margin, terms.sum(axis=1)


def _mean_where_known(w: np.ndarray, values: np.ndarray):
    known = ~np.isnan(values)
    weights = w * known
    total = weights.sum(axis=-1, dtype=np.float64)
    return np.where(total > 0, _sum(weights, np.where(known, values, 0.0)) / np.maximum(total, 1e-300), np.nan)


def margin_mean(enc: Encoding, w: np.ndarray):
    """Mean top-two margin over the weighted examples that have a label distribution."""
    return _mean_where_known(w, enc.margin)


def entropy_mean(enc: Encoding, w: np.ndarray):
    """Mean entropy (nats) over the weighted examples that have a label distribution."""
    return _mean_where_known(w, enc.entropy)


def low_margin_share(enc: Encoding, w: np.ndarray, threshold: float = LOW_MARGIN):
    """Share of the examples with a distribution whose margin is below `threshold` (near ties)."""
    low = np.where(np.isnan(enc.margin), np.nan, (enc.margin < threshold).astype(np.float64))
    return _mean_where_known(w, low)


# Figures by name, as `metrics.json` calls them; `subset_accuracy` is multi-label accuracy.
FIGURES: dict[str, Callable[[Encoding, np.ndarray], Any]] = {
    "accuracy": accuracy,
    "subset_accuracy": accuracy,
    "macro_f1": macro_f1,
    "weighted_f1": weighted_f1,
    "balanced_accuracy": balanced_accuracy,
    "micro_f1": micro_f1,
    "hamming_loss": hamming_loss,
}


# ---------------------------------------------------------------------------------------------
# Across repeats: encodings of the same examples (same order), one per repeat of the requests


def same_answer(a: Encoding, b: Encoding) -> np.ndarray:
    """(n,) bool: two repeats gave the same answer (the same label row, or both unreadable)."""
    return (a.valid == b.valid) & (~a.valid | (a.pred == b.pred).all(axis=1))


def _pairs(encs: Sequence[Encoding]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(encs)) for j in range(i + 1, len(encs))]


def all_agree(encs: Sequence[Encoding], w: np.ndarray):
    """Weighted share of examples on which every repeat gave the same answer."""
    same = np.ones(encs[0].n, dtype=bool)
    for enc in encs[1:]:
        same &= same_answer(encs[0], enc)
    total = w.sum(axis=-1, dtype=np.float64)
    return np.where(total > 0, _sum(w, same.astype(np.float32)) / np.maximum(total, 1e-300), np.nan)


def pairwise_agreement(encs: Sequence[Encoding], w: np.ndarray):
    """Weighted mean over examples of the share of repeat pairs that gave the same answer
    (N repeats: N(N-1)/2 pairs per example)."""
    pairs = _pairs(encs)
    share = sum(same_answer(encs[i], encs[j]).astype(np.float64) for i, j in pairs) / max(len(pairs), 1)
    total = w.sum(axis=-1, dtype=np.float64)
    return np.where(total > 0, _sum(w, share.astype(np.float32)) / np.maximum(total, 1e-300), np.nan)


def per_class(enc: Encoding, w: np.ndarray) -> dict[str, dict[str, Any]]:
    tp, predicted, actual = counts(enc, w)
    precision, recall, f1 = prf(tp, predicted, actual)
    return {
        label: {"precision": rounded(precision[j]), "recall": rounded(recall[j]), "f1": rounded(f1[j]),
                "support": int(round(actual[j]))}
        for j, label in enumerate(enc.labels)
    }


def confusion(enc: Encoding) -> dict[str, Any]:
    """Rows = gold label, columns = labels + `<invalid>` (unreadable or unknown answers); an
    example whose gold is not a label has no row."""
    columns = np.concatenate([enc.pred, ~enc.pred.any(axis=1, keepdims=True)], axis=1)
    matrix = enc.gold.T.astype(np.int64) @ columns.astype(np.int64)
    return {"labels": list(enc.labels), "columns": list(enc.labels) + ["<invalid>"], "matrix": matrix.tolist()}


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval [low, high] of `samples`, rounded like every figure."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [rounded(low), rounded(high)]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (integer arithmetic):
    2·P(X ≤ min(b, c)), X ~ Bin(b + c, ½), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    if n > EXACT_MCNEMAR_MAX:
        # Integer arithmetic costs O(n^2) digit work (minutes for a 100k-example run): the same
        # sum in log space, terms added from the largest down, is exact to double precision.
        k = min(b, c)
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
        top = max(logs)
        log_tail = top + math.log(math.fsum(math.exp(v - top) for v in logs)) - n * math.log(2)
        return min(1.0, 2 * math.exp(log_tail))
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


# Discordant pairs above which mcnemar_exact sums in log space instead of integers.
EXACT_MCNEMAR_MAX = 2000


def rounded(value: Any) -> float | None:
    """A plain float rounded to 6 decimals (numpy scalars converted); None for None or NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 6)
