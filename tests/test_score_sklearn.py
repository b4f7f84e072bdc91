"""harness.score computes its figures with numpy; scikit-learn is the reference they must equal."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from sklearn.metrics import (
    accuracy_score, balanced_accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

from harness.records import Prediction
from harness.score import INVALID, score_group


def _r(x) -> float:
    return round(float(x), 6)


def single_cases():
    rng = random.Random(7)
    for case in range(300):
        labels = [f"c{i}" for i in range(rng.randint(2, 6))]
        n = rng.randint(1, 60)
        preds = []
        for i in range(n):
            # skewed golds so that some classes have no support at all
            gold = rng.choice(labels[: rng.randint(1, len(labels))])
            roll = rng.random()
            if roll < 0.15:
                preds.append(Prediction(f"t:{i}", "m", "p", gold, None, rng.choice(["invalid_json", "truncated"])))
            else:
                answer = gold if roll < 0.55 else rng.choice(labels)
                preds.append(Prediction(f"t:{i}", "m", "p", gold, answer, "valid"))
        yield labels, preds


def test_single_label_figures_equal_sklearn():
    for labels, preds in single_cases():
        m = score_group(preds, labels, "single_label")
        y_true = [p.gold for p in preds]
        y_pred = [p.prediction if p.outcome == "valid" else INVALID for p in preds]
        assert m["accuracy"] == _r(accuracy_score(y_true, y_pred))
        assert m["macro_f1"] == _r(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
        assert m["weighted_f1"] == _r(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))
        with warnings.catch_warnings():  # sklearn warns about the `<invalid>` column having no gold
            warnings.simplefilter("ignore")
            assert m["balanced_accuracy"] == _r(balanced_accuracy_score(y_true, y_pred))
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=None, zero_division=0
        )
        for i, label in enumerate(labels):
            assert m["per_class"][label] == {
                "precision": _r(precision[i]), "recall": _r(recall[i]), "f1": _r(f1[i]), "support": int(support[i]),
            }
        valid = [p for p in preds if p.outcome == "valid"]
        if valid:
            vt, vp = [p.gold for p in valid], [p.prediction for p in valid]
            assert m["accuracy_valid"] == _r(accuracy_score(vt, vp))
            assert m["macro_f1_valid"] == _r(f1_score(vt, vp, labels=labels, average="macro", zero_division=0))
        else:
            assert m["accuracy_valid"] is None


def multi_cases(seed: int, count: int, max_labels: int = 7, max_n: int = 50):
    rng = random.Random(seed)
    for case in range(count):
        labels = [f"l{i}" for i in range(rng.randint(2, max_labels))]
        preds = []
        for i in range(rng.randint(1, max_n)):
            gold = sorted(rng.sample(labels, rng.randint(0, min(3, len(labels)))))
            if rng.random() < 0.15:
                preds.append(Prediction(f"t:{i}", "m", "p", gold, None, "schema_error"))
                continue
            answer = set(gold) if rng.random() < 0.4 else set(rng.sample(labels, rng.randint(0, 2)))
            preds.append(Prediction(f"t:{i}", "m", "p", gold, sorted(answer), "valid"))
        yield labels, preds


def test_multi_label_figures_equal_sklearn():
    for labels, preds in multi_cases(11, 200):
        m = score_group(preds, labels, "multi_label")
        binarizer = MultiLabelBinarizer(classes=labels).fit([labels])
        true = binarizer.transform([p.gold for p in preds])
        pred = binarizer.transform([p.prediction if p.outcome == "valid" else [] for p in preds])
        # Strict subset accuracy: an unreadable answer is wrong even where the gold set is empty
        # (for sklearn, an empty answer row would match it), so it is compared as "never equal".
        never = np.where([p.outcome == "valid" for p in preds], 0, 1)[:, None]
        assert m["subset_accuracy"] == _r(accuracy_score(true, np.where(never, 1 - true, pred)))
        assert m["hamming_loss"] == _r(hamming_loss(true, pred))
        assert m["micro_f1"] == _r(f1_score(true, pred, average="micro", zero_division=0))
        assert m["macro_f1"] == _r(f1_score(true, pred, average="macro", zero_division=0))
        precision, recall, f1, support = precision_recall_fscore_support(true, pred, average=None, zero_division=0)
        for i, label in enumerate(labels):
            assert m["per_class"][label] == {
                "precision": _r(precision[i]), "recall": _r(recall[i]), "f1": _r(f1[i]), "support": int(support[i]),
            }


def test_scoring_does_not_import_sklearn():
    import subprocess
    import sys

    code = (
        "import sys; from harness.score import score_group; from harness.records import Prediction;"
        "score_group([Prediction('t:0','m','p','a','a','valid')], ['a','b'], 'single_label');"
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Resampled figures: the kernel scores every bootstrap resample at once through per-example draw
# counts; each resample must equal sklearn on the resampled list of examples.


def _resampled(preds, resamples=10, seed=0):
    from harness.metrics.kernel import resample_indices, resample_weights

    n = len(preds)
    return resample_indices(n, resamples, seed), resample_weights(n, resamples, seed)


def test_resampled_single_label_figures_equal_sklearn():
    from harness.metrics import kernel

    for case, (labels, preds) in enumerate(single_cases()):
        if case % 10:  # 30 of the 300 cases, 10 resamples each
            continue
        enc = kernel.encode(preds, labels, "single_label")
        idx, w = _resampled(preds, seed=case)
        accuracy, macro, weighted = kernel.accuracy(enc, w), kernel.macro_f1(enc, w), kernel.weighted_f1(enc, w)
        balanced = kernel.balanced_accuracy(enc, w)
        valid_macro = kernel.macro_f1(enc, kernel.valid_weights(enc, w))
        for r, rows in enumerate(idx):
            y_true = [preds[i].gold for i in rows]
            y_pred = [preds[i].prediction if preds[i].outcome == "valid" else INVALID for i in rows]
            assert accuracy[r] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
            assert macro[r] == pytest.approx(
                f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), abs=1e-12)
            assert weighted[r] == pytest.approx(
                f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0), abs=1e-12)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert balanced[r] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
            kept = [i for i in rows if preds[i].outcome == "valid"]
            if kept:
                assert valid_macro[r] == pytest.approx(f1_score(
                    [preds[i].gold for i in kept], [preds[i].prediction for i in kept],
                    labels=labels, average="macro", zero_division=0), abs=1e-12)


def test_resampled_multi_label_figures_equal_sklearn():
    from harness.metrics import kernel

    for case, (labels, preds) in enumerate(multi_cases(13, 25, max_labels=6, max_n=40)):
        enc = kernel.encode(preds, labels, "multi_label")
        idx, w = _resampled(preds, seed=case)
        binarizer = MultiLabelBinarizer(classes=labels).fit([labels])
        true = binarizer.transform([p.gold for p in preds])
        pred = binarizer.transform([p.prediction if p.outcome == "valid" else [] for p in preds])
        never = np.array([p.outcome != "valid" for p in preds])[:, None]
        figures = {name: kernel.FIGURES[name](enc, w) for name in ("subset_accuracy", "micro_f1", "macro_f1", "hamming_loss")}
        for r, rows in enumerate(idx):
            t, q = true[rows], pred[rows]
            assert figures["subset_accuracy"][r] == pytest.approx(
                accuracy_score(t, np.where(never[rows], 1 - t, q)), abs=1e-12)
            assert figures["micro_f1"][r] == pytest.approx(f1_score(t, q, average="micro", zero_division=0), abs=1e-12)
            assert figures["macro_f1"][r] == pytest.approx(f1_score(t, q, average="macro", zero_division=0), abs=1e-12)
            assert figures["hamming_loss"][r] == pytest.approx(hamming_loss(t, q), abs=1e-12)


def test_intervals_and_paired_deltas_are_percentiles_of_sklearn_resamples():
    """The interval a row carries and the paired CI `harness compare` prints, rebuilt from sklearn
    on the same resampled index lists."""
    from harness.compare import paired_bootstrap
    from harness.intervals import bootstrap_ci
    from harness.metrics.kernel import encode, resample_indices

    labels, a = next(c for c in single_cases() if len(c[1]) > 30)
    rng = random.Random(1)
    b = [Prediction(p.example_id, "m", "p", p.gold, p.gold if rng.random() < 0.7 else rng.choice(labels), "valid")
         for p in a]
    enc_a, enc_b = encode(a, labels, "single_label"), encode(b, labels, "single_label")
    idx = resample_indices(len(a), 200, 4)

    def f1(preds, rows):
        y_pred = [preds[i].prediction if preds[i].outcome == "valid" else INVALID for i in rows]
        return f1_score([preds[i].gold for i in rows], y_pred, labels=labels, average="macro", zero_division=0)

    samples = [f1(a, rows) for rows in idx]
    assert bootstrap_ci(enc_a, resamples=200, seed=4)["macro_f1_ci"] == [
        _r(np.percentile(samples, 2.5)), _r(np.percentile(samples, 97.5))]
    deltas = [f1(b, rows) - f1(a, rows) for rows in idx]
    got = paired_bootstrap(enc_a, enc_b, resamples=200, seed=4)["macro_f1_ci"]
    assert got == pytest.approx([np.percentile(deltas, 2.5), np.percentile(deltas, 97.5)], abs=2e-6)


@pytest.mark.parametrize("n,resamples", [(1, 3), (7, 5), (1201, 130)])  # 1201: blocks of 54 rows
def test_resample_weights_count_the_same_draws_as_resample_indices(n, resamples):
    from harness.metrics.kernel import resample_indices, resample_weights

    idx = resample_indices(n, resamples, seed=9)
    expected = np.stack([np.bincount(row, minlength=n) for row in idx])
    assert np.array_equal(resample_weights(n, resamples, seed=9), expected)
