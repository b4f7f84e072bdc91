"""report.html contents, `harness report` on old runs, suites, slices, templates and compare's
template diff — without a browser (tests/test_html_browser.py drives Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from html_runs import ROOT, harness, metrics, predictions, replay_run, stub_spec

sys.path.insert(0, str(Path(__file__).parent))
from http_stub import OpenAIStub  # noqa: E402


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    return replay_run(tmp_path_factory.mktemp("replay") / "run", "--no-baselines")


def test_run_folder_records_templates_and_texts(replayed):
    templates = json.loads((replayed / "templates.json").read_text())
    assert set(templates) == {"json_schema", "bare_label"}
    source = (ROOT / "prompts" / "sentiment_json.j2").read_text()
    import hashlib

    assert templates["json_schema"]["source"] == source
    assert templates["json_schema"]["sha256"] == hashlib.sha256(source.encode()).hexdigest()
    assert templates["json_schema"]["system"].startswith("You are a sentiment classifier")
    preds = predictions(replayed, suites=True)
    assert all(isinstance(p["text"], str) and p["text"] for p in preds)
    assert all(m["n"] == 300 for m in metrics(replayed)["results"])


def test_report_html_is_self_contained(replayed):
    text = (replayed / "report.html").read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # nothing to fetch: no external src/href
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert '<script src' not in text and '<link ' not in text
    assert len(text.encode()) < 3_000_000


def test_harness_report_rebuilds_an_old_run(replayed, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(replayed, old)
    # a run made before this change: no templates.json, no report.html, no text in predictions
    (old / "templates.json").unlink()
    (old / "report.html").unlink()
    lines = []
    for line in (old / "predictions.jsonl").read_text().splitlines():
        if line.strip() and not json.loads(line)["suite"]:
            p = json.loads(line)
            for key in ("text", "suite", "slices"):
                p.pop(key)
            lines.append(json.dumps(p))
    (old / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    done = harness("report", str(old))
    assert "report.html" in done.stdout
    page = (old / "report.html").read_text()
    assert "Templates not recorded" in page
    assert "carry no example text" in page
    assert '"t":null' in page
    assert (old / "report.md").read_text().startswith("# rotten_tomatoes")


def test_report_errors_are_clear(tmp_path):
    done = harness("report", str(tmp_path / "nope"), check=False)
    assert done.returncode == 2 and "no such run" in done.stderr and "Traceback" not in done.stderr
    done = harness("history", "no_such_spec", cwd=tmp_path, check=False)
    assert done.returncode == 2 and "no runs found" in done.stderr


def test_compare_shows_a_template_diff(replayed, tmp_path):
    from harness.compare import compare_runs, comparison_markdown, template_diffs
    from harness.runs import load_run

    b = tmp_path / "b"
    shutil.copytree(replayed, b)
    templates = json.loads((b / "templates.json").read_text())
    templates["bare_label"]["source"] += "Answer in one word.\n"
    templates["bare_label"]["sha256"] = "0" * 64
    (b / "templates.json").write_text(json.dumps(templates))
    diffs = {d["prompt"]: d for d in template_diffs(load_run(replayed), load_run(b))}
    assert diffs["json_schema"]["status"] == "same"
    assert diffs["bare_label"]["status"] == "changed"
    assert "+Answer in one word." in diffs["bare_label"]["diff"]
    md = comparison_markdown(compare_runs(load_run(replayed), load_run(b)), list(diffs.values()))
    assert "template bare_label changed" in md and "+Answer in one word." in md
    done = harness("compare", str(replayed), str(b))
    assert "template bare_label changed" in done.stdout and "+Answer in one word." in done.stdout
    done = harness("compare", str(replayed), str(b), "--markdown", "-")
    assert "```diff" in done.stdout and "+Answer in one word." in done.stdout
    out = tmp_path / "cmp.html"
    harness("compare", str(replayed), str(b), "--html", str(out))
    assert "bare_label: template changed" in out.read_text()


def test_suites_and_slices_run_through_the_runner(tmp_path):
    (tmp_path / "negation.jsonl").write_text(json.dumps({"text": "not good at all", "label": "negative"}) + "\n"
                                             + json.dumps({"text": "good", "label": "positive"}) + "\n")
    with OpenAIStub() as stub:
        spec = stub_spec(tmp_path, stub.base_url, slices=["domain"], suites=[
            {"name": "negation", "file": "negation.jsonl"},
            {"name": "plain", "cases": [{"text": "a good one", "label": "positive"}, {"text": "bad", "label": "negative"},
                                        {"text": "<b>bold</b> and bad", "label": "positive"}]},
        ])
        done = harness("eval", str(spec), "--quiet", "--out", str(tmp_path / "run"), "--cache", "off", cwd=tmp_path)
        assert stub.requests == (10 + 5) * 2  # the suites' cases go through the same prompts and model
    run = tmp_path / "run"
    assert f"report: {run / 'report.html'}" in done.stdout
    assert "suite negation: 2/4 passed over 2 rows" in done.stdout
    payload = metrics(run)
    assert [m["n"] for m in payload["results"]] == [10, 10]  # the main figures leave the suites out
    suites = {(s["suite"], s["prompt"]): s for s in payload["suites"]}
    # the stub answers positive when the text says "good": negation's first case fails
    neg = suites[("negation", "json")]
    assert (neg["n"], neg["passed"]) == (2, 1)
    assert neg["failures"][0]["example_id"] == "suite:negation:0"
    assert neg["failures"][0]["text"] == "not good at all"
    assert suites[("plain", "bare")]["passed"] == 2
    preds = predictions(run, suites=True)
    tagged = [p for p in preds if p["suite"]]
    assert len(tagged) == 10 and all(p["example_id"].startswith("suite:") for p in tagged)
    assert {p["slices"]["domain"] for p in preds if not p["suite"]} == {"news", "blog"}
    md = (run / "report.md").read_text()
    assert "## Edge-case suites" in md and "suite:negation:0" in md
    page = (run / "report.html").read_text()
    assert 'id="suites-table"' in page and "Accuracy by slice domain" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_bad_suite_and_slice_are_clear_errors(tmp_path):
    spec = stub_spec(tmp_path, "http://127.0.0.1:9/v1", slices=["genre"])
    done = harness("validate", str(spec), cwd=tmp_path, check=False)
    assert done.returncode == 2 and "slices[0]: 'genre' is not a column" in done.stderr
    spec = stub_spec(tmp_path, "http://127.0.0.1:9/v1", suites=[{"name": "x", "cases": [{"text": "t", "label": "neutral"}]}])
    done = harness("validate", str(spec), cwd=tmp_path, check=False)
    assert done.returncode == 2 and "suites[0].cases[0].label" in done.stderr and "'neutral' is not a label" in done.stderr
    spec = stub_spec(tmp_path, "http://127.0.0.1:9/v1", suites=[{"name": "x", "file": "missing.jsonl"}])
    done = harness("validate", str(spec), cwd=tmp_path, check=False)
    assert done.returncode == 2 and "missing.jsonl" in done.stderr and "Traceback" not in done.stderr


def test_multi_label_and_empty_runs_render(tmp_path):
    """A multi-label run (no confusion matrix, label sets) and a run with no predictions file still
    give a page; nothing in the builder assumes single-label answers."""
    from harness.html_report import build_report_html
    from harness.metrics.assemble import build_rows
    from harness.records import Prediction
    from harness.report import write_run_files

    labels = ["joy", "anger", "fear"]
    preds = [Prediction(f"test:{i}", "m:x", "p", ["joy", "fear"] if i % 2 else ["anger"],
                        ["joy", "fear"] if i % 3 else None, "valid" if i % 3 else "schema_error",
                        raw='{"labels": ["joy"]}', text=f"text {i}") for i in range(12)]
    run = tmp_path / "ml"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(p.to_json() + "\n" for p in preds))
    (run / "spec.resolved.json").write_text(json.dumps({"name": "ml", "task": "multi_label", "labels": [{"name": n} for n in labels]}))
    write_run_files(run, {"spec": "ml"}, build_rows(preds, labels, "multi_label"))
    page = build_report_html(run)
    assert "No confusion matrix (multi-label task)" in page
    assert 'data-row="m:x|p"' in page
    (run / "predictions.jsonl").unlink()
    assert "predictions.jsonl is missing" in build_report_html(run)
