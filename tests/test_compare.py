"""`harness compare`: paired statistics against scipy (the kernel's figures against sklearn are in
tests/test_score_sklearn.py), and two real runs of SmolLM2 with
different prompt wordings compared through the CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from scipy.stats import binomtest

from harness.cli import main
from harness.compare import compare_runs, mcnemar_exact, paired_bootstrap
from harness.metrics.kernel import encode
from harness.data import load_split
from harness.records import Prediction, read_predictions
from harness.runs import load_run
from harness.spec import load_spec

from llama_proxy import BARE_LABEL, ONE_WORD, CountingProxy, LlamaServer, server_test, write_spec

LIMIT = 12


# ---------------------------------------------------------------------------------------------
# Statistics against the references


def test_exact_mcnemar_equals_scipy_binomial_test():
    for b in range(0, 30):
        for c in range(0, 30):
            expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
            assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert mcnemar_exact(120, 80) == pytest.approx(binomtest(120, 200, 0.5).pvalue, rel=1e-12)


def _random_preds(rng: random.Random, labels: list[str], golds: list[str], skill: float) -> list[Prediction]:
    out = []
    for i, gold in enumerate(golds):
        if rng.random() < 0.1:
            out.append(Prediction(f"t:{i}", "m", "p", gold, None, "invalid_json"))
        else:
            answer = gold if rng.random() < skill else rng.choice(labels)
            out.append(Prediction(f"t:{i}", "m", "p", gold, answer, "valid"))
    return out


def test_paired_bootstrap_is_seeded_and_paired():
    rng = random.Random(5)
    labels = ["negative", "positive"]
    golds = [rng.choice(labels) for _ in range(300)]
    a = _random_preds(rng, labels, golds, 0.5)
    b = _random_preds(rng, labels, golds, 0.9)
    a, b = encode(a, labels, "single_label"), encode(b, labels, "single_label")
    first = paired_bootstrap(a, b, resamples=500, seed=1)
    assert first == paired_bootstrap(a, b, resamples=500, seed=1)
    assert first != paired_bootstrap(a, b, resamples=500, seed=2)
    low, high = first["macro_f1_ci"]
    assert low <= first["macro_f1_delta"] <= high and low > 0  # b is much better: the CI excludes 0
    # identical runs: every resample's delta is exactly 0 (the pairing is what makes that so)
    same = paired_bootstrap(a, a, resamples=200, seed=0)
    assert same["macro_f1_ci"] == [0.0, 0.0] and same["accuracy_ci"] == [0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# Two real runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Run A (one wording) then run B (another wording) on the same 12 examples, through the CLI,
    into runs/rt_test/ under a temporary working folder."""
    root = tmp_path_factory.mktemp("compare")
    with LlamaServer(parallel=2) as server, CountingProxy(server.url) as proxy:
        spec = write_spec(root / "spec", proxy.url, templates={"label": BARE_LABEL})
        cwd = Path.cwd()
        import os

        os.chdir(root)
        try:
            cache = ["--cache-dir", str(root / "cache")]
            assert main(["eval", str(spec), "--limit", str(LIMIT), "--quiet", *cache]) == 0
            (root / "spec" / "label.j2").write_text(ONE_WORD)
            assert main(["eval", str(spec), "--limit", str(LIMIT), "--quiet", *cache]) == 0
        finally:
            os.chdir(cwd)
    runs = sorted(p for p in (root / "runs" / "rt_test").iterdir() if not p.is_symlink())
    assert len(runs) == 2
    return root, runs[0], runs[1], spec


def _correct(p: Prediction) -> bool:
    return p.outcome == "valid" and p.prediction == p.gold


@server_test
def test_compare_real_runs_json(two_runs, capsys):
    root, run_a, run_b, spec = two_runs
    capsys.readouterr()
    assert main(["compare", str(run_a), str(run_b), "--json", "--resamples", "400"]) == 0
    result = json.loads(capsys.readouterr().out)
    [pair] = result["pairs"]
    assert (pair["model"], pair["prompt"], pair["n_paired"]) == ("llamacpp:smollm2", "label", LIMIT)

    a = {p.example_id: p for p in read_predictions(run_a / "predictions.jsonl")}
    b = {p.example_id: p for p in read_predictions(run_b / "predictions.jsonl")}
    right_to_wrong = sorted(i for i in a if _correct(a[i]) and not _correct(b[i]))
    wrong_to_right = sorted(i for i in a if not _correct(a[i]) and _correct(b[i]))
    assert sorted(f["example_id"] for f in pair["right_to_wrong"]) == right_to_wrong
    assert sorted(f["example_id"] for f in pair["wrong_to_right"]) == wrong_to_right
    assert pair["both_right"] + pair["both_wrong"] + len(right_to_wrong) + len(wrong_to_right) == LIMIT
    b_, c_ = len(right_to_wrong), len(wrong_to_right)
    assert pair["mcnemar_p"] == pytest.approx(1.0 if b_ + c_ == 0 else binomtest(b_, b_ + c_, 0.5).pvalue, abs=1e-6)

    # flips carry the review text from the dataset
    texts = {e.id: e.text for e in load_split(load_spec(spec), "test").examples}
    for flip in pair["right_to_wrong"] + pair["wrong_to_right"]:
        assert flip["text"] == texts[flip["example_id"]]

    # figures are the recorded ones; the paired macro-F1 recomputed with numpy equals them
    metrics_a = json.loads((run_a / "metrics.json").read_text())["results"][0]
    metrics_b = json.loads((run_b / "metrics.json").read_text())["results"][0]
    assert pair["figures"]["accuracy"] == {
        "a": metrics_a["accuracy"], "b": metrics_b["accuracy"], "delta": round(metrics_b["accuracy"] - metrics_a["accuracy"], 6),
    }
    assert pair["bootstrap"]["macro_f1_a"] == metrics_a["macro_f1"]
    assert pair["bootstrap"]["macro_f1_b"] == metrics_b["macro_f1"]
    low, high = pair["bootstrap"]["macro_f1_ci"]
    assert low <= high


@server_test
def test_compare_console_and_run_shorthands(two_runs, capsys, monkeypatch):
    root, run_a, run_b, _ = two_runs
    monkeypatch.chdir(root)
    capsys.readouterr()
    # one argument: the spec's two newest runs; a spec name resolves to runs/NAME
    assert main(["compare", "rt_test", "--resamples", "200"]) == 0
    shorthand = capsys.readouterr().out
    assert main(["compare", str(run_a), "runs/rt_test/latest", "--resamples", "200"]) == 0
    explicit = capsys.readouterr().out
    assert shorthand == explicit
    assert f"A: rt_test/{run_a.name}" in explicit and f"B: rt_test/{run_b.name}" in explicit
    assert "exact McNemar p =" in explicit and "macro F1 Δ" in explicit and "95% CI" in explicit
    assert main(["compare", str(run_b), str(run_b)]) == 2
    assert "same run" in capsys.readouterr().err


@server_test
def test_compare_falls_back_to_ids_when_the_dataset_is_gone(two_runs, tmp_path, capsys):
    _, run_a, run_b, _ = two_runs
    copies = []
    for run in (run_a, run_b):
        copy = tmp_path / "runs" / "rt_test" / run.name
        shutil.copytree(run, copy)
        resolved = json.loads((copy / "spec.resolved.json").read_text())
        resolved["dataset"]["source"] = str(tmp_path / "no-such-data.jsonl")
        (copy / "spec.resolved.json").write_text(json.dumps(resolved))
        copies.append(copy)
    comparison = compare_runs(load_run(copies[0]), load_run(copies[1]), resamples=100)
    assert any("example texts unavailable" in note for note in comparison.notes)
    flips = comparison.pairs[0].right_to_wrong + comparison.pairs[0].wrong_to_right
    assert all(f["text"] is None for f in flips)


def test_compare_errors_are_clear(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    assert "no such run" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "predictions.jsonl").write_text("")
    assert main(["compare", str(tmp_path / "half"), str(tmp_path / "half")]) == 2
    assert "did not finish" in capsys.readouterr().err
