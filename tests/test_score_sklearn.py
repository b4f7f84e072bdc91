"""harness.score computes its figures with numpy; scikit-learn is the reference they must equal."""

from __future__ import annotations

import random

from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support
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


def test_multi_label_figures_equal_sklearn():
    rng = random.Random(11)
    for case in range(200):
        labels = [f"l{i}" for i in range(rng.randint(2, 7))]
        preds = []
        for i in range(rng.randint(1, 50)):
            gold = sorted(rng.sample(labels, rng.randint(0, min(3, len(labels)))))
            if rng.random() < 0.15:
                preds.append(Prediction(f"t:{i}", "m", "p", gold, None, "schema_error"))
                continue
            answer = set(gold) if rng.random() < 0.4 else set(rng.sample(labels, rng.randint(0, 2)))
            preds.append(Prediction(f"t:{i}", "m", "p", gold, sorted(answer), "valid"))
        m = score_group(preds, labels, "multi_label")
        binarizer = MultiLabelBinarizer(classes=labels).fit([labels])
        true = binarizer.transform([p.gold for p in preds])
        pred = binarizer.transform([p.prediction if p.outcome == "valid" else [] for p in preds])
        assert m["subset_accuracy"] == _r(accuracy_score(true, pred))
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
