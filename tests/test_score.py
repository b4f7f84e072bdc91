"""Scoring against small cases computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from harness.records import OUTCOMES, Prediction
from harness.metrics.assemble import score_run
from harness.score import INVALID, score_group

LABELS = ["pos", "neg", "neu"]


def pred(gold, prediction=None, outcome="valid", model="m", prompt="p", **kw) -> Prediction:
    if outcome != "valid":
        prediction = None
    return Prediction(
        example_id=kw.pop("example_id", "test:0"), model=model, prompt=prompt, gold=gold,
        prediction=prediction, outcome=outcome, **kw,
    )


def single_case() -> list[Prediction]:
    # 6 examples, 1 invalid:
    #   #  gold  output           latency  tokens   cached  confidence  parsed_from
    #   1  pos   pos              0.5      10/2     no      0.9         whole
    #   2  pos   neg              1.0      10/2     no      0.6         whole
    #   3  pos   <invalid_json>   None     None     no      None        -
    #   4  neg   neg              1.5      None     yes     None        fence
    #   5  neg   pos              2.0      20/None  yes     None        label
    #   6  neu   neu              3.0      None     no      None        label
    return [
        pred("pos", "pos", latency_s=0.5, prompt_tokens=10, completion_tokens=2,
             confidence=0.9, parsed_from="whole"),
        pred("pos", "neg", latency_s=1.0, prompt_tokens=10, completion_tokens=2,
             confidence=0.6, parsed_from="whole"),
        pred("pos", outcome="invalid_json", raw="{oops"),
        pred("neg", "neg", latency_s=1.5, cached=True, parsed_from="fence"),
        pred("neg", "pos", latency_s=2.0, prompt_tokens=20, cached=True, parsed_from="label"),
        pred("neu", "neu", latency_s=3.0, parsed_from="label"),
    ]


# ---------------------------------------------------------------------------------------------
# Single-label


def test_single_label_counts_and_outcomes():
    m = score_group(single_case(), LABELS, "single_label")
    assert m["n"] == 6
    assert m["n_valid"] == 5
    assert m["validity"] == round(5 / 6, 6) == 0.833333
    # every outcome is listed, zeros included, in OUTCOMES order
    assert list(m["outcomes"]) == list(OUTCOMES)
    assert m["outcomes"] == {
        "valid": 5, "invalid_json": 1, "schema_error": 0, "refusal": 0, "truncated": 0,
        "api_error": 0,
    }
    assert m["parsed_from"] == {"fence": 1, "label": 2, "whole": 2}


def test_single_label_strict_figures():
    m = score_group(single_case(), LABELS, "single_label")
    # strict: y_true = pos pos pos neg neg neu, y_pred = pos neg <invalid> neg pos neu
    # correct: #1, #4, #6 -> 3/6
    assert m["accuracy"] == 0.5
    # pos: predicted at #1 #5 -> P = 1/2; gold at #1 #2 #3 -> R = 1/3; F1 = 2PR/(P+R) = (1/3)/(5/6) = 0.4
    # neg: predicted at #2 #4 -> P = 1/2; gold at #4 #5 -> R = 1/2; F1 = 0.5
    # neu: P = R = F1 = 1
    # <invalid> is not a class: it only cost pos one unit of recall.
    assert m["per_class"] == {
        "pos": {"precision": 0.5, "recall": 0.333333, "f1": 0.4, "support": 3},
        "neg": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "neu": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    # macro F1 = (0.4 + 0.5 + 1) / 3 = 1.9 / 3 = 0.633333
    assert m["macro_f1"] == 0.633333
    # weighted F1 = (3*0.4 + 2*0.5 + 1*1) / 6 = 3.2 / 6 = 0.533333
    assert m["weighted_f1"] == 0.533333


def test_single_label_valid_only_figures():
    m = score_group(single_case(), LABELS, "single_label")
    # valid only: y_true = pos pos neg neg neu, y_pred = pos neg neg pos neu -> 3/5
    assert m["accuracy_valid"] == 0.6
    # pos: P 1/2, R 1/2, F1 0.5; neg: P 1/2, R 1/2, F1 0.5; neu: 1, 1, 1
    assert m["per_class_valid"] == {
        "pos": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "neg": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "neu": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    # macro = (0.5 + 0.5 + 1) / 3 = 0.666667; weighted = (2*0.5 + 2*0.5 + 1*1) / 5 = 0.6
    assert m["macro_f1_valid"] == 0.666667
    assert m["weighted_f1_valid"] == 0.6


def test_single_label_confusion_has_invalid_column():
    m = score_group(single_case(), LABELS, "single_label")
    # rows = gold, columns = pos neg neu <invalid>
    #   pos: #1 -> pos, #2 -> neg, #3 -> <invalid>   = [1, 1, 0, 1]
    #   neg: #4 -> neg, #5 -> pos                    = [1, 1, 0, 0]
    #   neu: #6 -> neu                               = [0, 0, 1, 0]
    assert m["confusion"] == {
        "labels": ["pos", "neg", "neu"],
        "columns": ["pos", "neg", "neu", INVALID],
        "matrix": [[1, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0]],
    }
    assert sum(map(sum, m["confusion"]["matrix"])) == m["n"]
    assert all(type(v) is int for row in m["confusion"]["matrix"] for v in row)


def test_timing_tokens_cache_confidence():
    m = score_group(single_case(), LABELS, "single_label")
    # latencies (None skipped, cached ones included), sorted: 0.5 1.0 1.5 2.0 3.0
    # p50: position 4*0.50 = 2   -> 1.5
    # p95: position 4*0.95 = 3.8 -> 2.0 + 0.8*(3.0-2.0) = 2.8
    assert m["latency_p50_s"] == 1.5
    assert m["latency_p95_s"] == 2.8
    assert m["latency_p95_s"] == round(float(np.percentile([0.5, 1.0, 1.5, 2.0, 3.0], 95)), 6)
    assert m["prompt_tokens"] == 10 + 10 + 20
    assert m["completion_tokens"] == 2 + 2
    assert m["cached"] == 2
    assert m["mean_confidence"] == 0.75  # (0.9 + 0.6) / 2


def test_group_with_zero_valid_outputs():
    preds = [
        pred("pos", outcome="refusal"),
        pred("neg", outcome="api_error", error="boom"),
        pred("neu", outcome="truncated"),
    ]
    m = score_group(preds, LABELS, "single_label")
    assert (m["n"], m["n_valid"], m["validity"]) == (3, 0, 0.0)
    # strict figures: everything is wrong
    assert m["accuracy"] == 0.0
    assert m["macro_f1"] == 0.0
    assert m["weighted_f1"] == 0.0
    assert all(f == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
               for f in m["per_class"].values())
    # valid-only figures are undefined
    for key in ("accuracy_valid", "macro_f1_valid", "weighted_f1_valid", "per_class_valid"):
        assert m[key] is None, key
    assert m["parsed_from"] == {}
    assert m["confusion"]["matrix"] == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]
    assert m["outcomes"]["refusal"] == m["outcomes"]["api_error"] == m["outcomes"]["truncated"] == 1
    # no timing data at all
    assert m["latency_p50_s"] is None and m["latency_p95_s"] is None
    assert m["prompt_tokens"] is None and m["completion_tokens"] is None
    assert m["cached"] == 0
    assert m["mean_confidence"] is None


def test_perfect_single_label_and_no_sklearn_warnings():
    preds = [pred("pos", "pos"), pred("neg", "neg"), pred("neu", "neu")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = score_group(preds, LABELS, "single_label")
        score_group(single_case(), LABELS, "single_label")
        score_group([pred("pos", outcome="refusal")], LABELS, "single_label")
    assert m["accuracy"] == m["accuracy_valid"] == m["macro_f1"] == 1.0


def test_stray_valid_answer_counts_as_wrong_and_in_invalid_column():
    # A "valid" answer outside the label set cannot be right; it is not a class either.
    preds = [pred("pos", "maybe"), pred("neg", "neg")]
    m = score_group(preds, LABELS, "single_label")
    assert m["accuracy"] == 0.5 and m["accuracy_valid"] == 0.5
    assert list(m["per_class"]) == LABELS
    assert m["confusion"]["matrix"][0] == [0, 0, 0, 1]


def test_all_floats_rounded_and_json_types():
    m = score_group(single_case(), LABELS, "single_label")

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or type(value) in (int, float, str, bool), type(value)
            if isinstance(value, float):
                assert value == round(value, 6)

    walk(m)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown task"):
        score_group(single_case(), LABELS, "regression")


# ---------------------------------------------------------------------------------------------
# Multi-label

ML = ["a", "b", "c"]


def multi_case() -> list[Prediction]:
    # 4 examples, 1 invalid (scored as the empty set in strict figures):
    #   #  gold    output        indicator gold / output
    #   1  a b     a b           110 / 110   exact
    #   2  a       a c           100 / 101   c is a false positive
    #   3  b c     <schema_err>  011 / 000   b and c missed
    #   4  c       c             001 / 001   exact
    return [
        pred(["a", "b"], ["a", "b"]),
        pred(["a"], ["a", "c"]),
        pred(["b", "c"], outcome="schema_error"),
        pred(["c"], ["c"]),
    ]


def test_multi_label_strict():
    m = score_group(multi_case(), ML, "multi_label")
    assert (m["n"], m["n_valid"], m["validity"]) == (4, 3, 0.75)
    # exact matches #1 #4 -> 2/4
    assert m["subset_accuracy"] == 0.5
    assert m["accuracy"] == m["subset_accuracy"]
    # wrong cells: #2 c, #3 b, #3 c -> 3 of 4*3 = 0.25
    assert m["hamming_loss"] == 0.25
    # a: TP 2 FP 0 FN 0 -> F1 1
    # b: TP 1 FP 0 FN 1 -> P 1, R 1/2, F1 2/3
    # c: TP 1 FP 1 FN 1 -> P 1/2, R 1/2, F1 1/2
    assert m["per_class"] == {
        "a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
        "b": {"precision": 1.0, "recall": 0.5, "f1": 0.666667, "support": 2},
        "c": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
    }
    # micro: TP 4, FP 1, FN 2 -> F1 = 2*4 / (2*4 + 1 + 2) = 8/11
    assert m["micro_f1"] == round(8 / 11, 6) == 0.727273
    # macro: (1 + 2/3 + 1/2) / 3 = 13/18
    assert m["macro_f1"] == round(13 / 18, 6) == 0.722222
    assert "confusion" not in m
    assert m["outcomes"]["schema_error"] == 1


def test_multi_label_valid_only():
    m = score_group(multi_case(), ML, "multi_label")
    # examples #1 #2 #4: exact #1 #4 -> 2/3
    assert m["subset_accuracy_valid"] == 0.666667
    assert m["accuracy_valid"] == m["subset_accuracy_valid"]
    # wrong cells: #2 c -> 1 of 9
    assert m["hamming_loss_valid"] == 0.111111
    # micro: TP 4, FP 1, FN 0 -> 8/9
    assert m["micro_f1_valid"] == 0.888889
    # a: 1; b: 1; c: P 1/2, R 1, F1 2/3 -> macro (1 + 1 + 2/3) / 3 = 8/9
    assert m["macro_f1_valid"] == 0.888889
    assert m["per_class_valid"]["c"] == {
        "precision": 0.5, "recall": 1.0, "f1": 0.666667, "support": 1,
    }


def test_multi_label_ignores_unknown_names_and_accepts_tuples():
    preds = multi_case()
    preds[3].prediction = ["c", "zzz", "c"]  # unknown and repeated names change nothing
    preds[0].gold = ("a", "b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = score_group(preds, ML, "multi_label")
    base = score_group(multi_case(), ML, "multi_label")
    assert m == base


def test_multi_label_zero_valid():
    preds = [pred(["a"], outcome="invalid_json"), pred(["b", "c"], outcome="refusal")]
    m = score_group(preds, ML, "multi_label")
    # strict: empty predictions -> no exact match; wrong cells a, b, c = 3 of 6
    assert m["subset_accuracy"] == m["accuracy"] == 0.0
    assert m["hamming_loss"] == 0.5
    assert m["micro_f1"] == 0.0 and m["macro_f1"] == 0.0
    for key in ("subset_accuracy_valid", "accuracy_valid", "hamming_loss_valid",
                "micro_f1_valid", "macro_f1_valid", "per_class_valid"):
        assert m[key] is None, key


def test_multi_label_empty_gold_and_empty_answer_is_exact():
    m = score_group([pred([], []), pred(["a"], ["a"])], ML, "multi_label")
    assert m["subset_accuracy"] == 1.0 and m["hamming_loss"] == 0.0


# ---------------------------------------------------------------------------------------------
# Grouping


def test_score_run_groups_in_first_appearance_order():
    preds = [
        pred("pos", "pos", model="m2", prompt="p1"),
        pred("pos", "neg", model="m1", prompt="p1"),
        pred("neg", "neg", model="m2", prompt="p1"),
        pred("neu", outcome="refusal", model="m1", prompt="p2"),
        pred("neu", "neu", model="m1", prompt="p1"),
    ]
    results = score_run(preds, LABELS, "single_label")
    assert [(r["model"], r["prompt"]) for r in results] == [("m2", "p1"), ("m1", "p1"), ("m1", "p2")]
    assert list(results[0])[:3] == ["model", "prompt", "n"]
    assert [r["n"] for r in results] == [2, 2, 1]
    assert results[0]["accuracy"] == 1.0
    assert results[1]["accuracy"] == 0.5  # pos->neg wrong, neu->neu right
    assert results[2]["accuracy"] == 0.0 and results[2]["accuracy_valid"] is None
    # each group equals scoring that group alone
    alone = score_group([preds[1], preds[4]], LABELS, "single_label")
    assert {k: v for k, v in results[1].items() if k not in ("model", "prompt")} == alone


def test_score_run_empty():
    assert score_run([], LABELS, "single_label") == []
