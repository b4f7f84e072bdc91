"""Spec checks: thresholds, max drop against a baseline run, the failure table and exit code, the
GitHub step summary, and spec errors. Runs are made by the real CLI, replaying a fixture whose
answers are chosen here (so the figures are known), with no model."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.cache import export_fixture, make_entry, open_disk_cache
from harness.runner import planned_requests
from harness.checks import evaluate_checks, failed
from harness.cli import main
from harness.errors import SpecError
from harness.spec import load_spec, parse_spec
from providers.base import ChatResponse

ROWS = [("great fun", 1), ("dull and slow", 0), ("a triumph", 1), ("a mess", 0), ("lovely", 1), ("awful", 0)]


def rows(**figures_by_prompt) -> list[dict]:
    return [{"model": "llamacpp:smollm2", "prompt": p, **f} for p, f in figures_by_prompt.items()]


# ---------------------------------------------------------------------------------------------
# evaluate_checks


def test_min_max_and_globs():
    metrics = rows(json={"validity": 0.98, "accuracy": 0.61}, label={"validity": 0.90, "accuracy": 0.55})
    results = evaluate_checks(
        [
            {"metric": "validity", "min": 0.95},  # fails for label
            {"metric": "accuracy", "min": 0.55, "max": 0.7, "prompt": "l*"},  # 0.55 == min passes
            {"metric": "accuracy", "min": 0.5, "model": "llamacpp:*"},
        ],
        metrics,
    )
    table = [(r.check, r.prompt, r.rule, r.status) for r in results]
    assert table == [
        (0, "json", "min 0.95", "pass"), (0, "label", "min 0.95", "fail"),
        (1, "label", "min 0.55", "pass"), (1, "label", "max 0.7", "pass"),
        (2, "json", "min 0.5", "pass"), (2, "label", "min 0.5", "pass"),
    ]
    assert failed(results)[0].reason == "below 0.95"


def test_no_matching_row_and_undefined_figures_fail():
    metrics = rows(json={"validity": 0.0, "accuracy_valid": None})
    results = evaluate_checks(
        [{"metric": "validity", "min": 0.5, "model": "openai:gpt-4o"}, {"metric": "accuracy_valid", "min": 0.5}], metrics
    )
    assert [(r.status, r.reason) for r in results] == [
        ("fail", "no model × prompt row in the run matches"), ("fail", "figure is undefined in this run"),
    ]


def test_max_drop_against_a_baseline_run():
    now = rows(json={"accuracy": 0.60}, label={"accuracy": 0.52}, new={"accuracy": 0.4})
    before = rows(json={"accuracy": 0.61}, label={"accuracy": 0.56})
    checks = [{"metric": "accuracy", "max_drop": 0.02}]
    results = evaluate_checks(checks, now, before)
    assert [(r.prompt, r.status, r.baseline) for r in results] == [
        ("json", "pass", 0.61), ("label", "fail", 0.56), ("new", "skip", None),
    ]
    assert results[1].reason == "fell by 0.04 (allowed 0.02)"
    assert results[2].reason == "the baseline run has no such row"
    without = evaluate_checks(checks, now, None)
    assert {r.status for r in without} == {"skip"} and "no baseline run given" in without[0].reason


def test_spec_errors_point_at_the_line():
    base = textwrap.dedent("""\
        name: t
        dataset: {source: d.jsonl}
        labels: [{name: a}, {name: b}]
        prompts: [{name: p, template: p.j2}]
        checks:
          - metric: validity
            min: 0.9
    """)
    parse_spec(base, "s.yaml")
    with pytest.raises(SpecError, match=r"s.yaml:8: checks\[1\].metric: Input should be 'n', 'n_valid', 'validity'"):
        parse_spec(base + "  - metric: acuracy\n    min: 0.5\n", "s.yaml")
    with pytest.raises(SpecError, match=r"s.yaml:8: checks\[1\]: check on 'accuracy' needs at least one of min, max, max_drop"):
        parse_spec(base + "  - metric: accuracy\n", "s.yaml")
    with pytest.raises(SpecError, match="min 0.9 is above max 0.5"):
        parse_spec(base + "  - {metric: accuracy, min: 0.9, max: 0.5}\n", "s.yaml")
    with pytest.raises(SpecError, match=r"greater than or equal to 0"):
        parse_spec(base + "  - {metric: accuracy, max_drop: -0.1}\n", "s.yaml")


# ---------------------------------------------------------------------------------------------
# Through the CLI, on runs made by replaying a fixture


def make_project(tmp_path: Path, checks: str, correct: int) -> tuple[Path, Path]:
    """A spec over 6 local rows, and a fixture in which the first `correct` answers are right."""
    folder = tmp_path / "project"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS))
    (folder / "p.j2").write_text("{% block user %}Review: {{ text }}{% endblock %}")
    (folder / "spec.yaml").write_text(textwrap.dedent("""\
        name: tiny
        dataset: {source: data.jsonl, split: test, train_split: null, label_map: {0: negative, 1: positive}}
        labels: [{name: negative}, {name: positive}]
        prompts: [{name: p, template: p.j2, mode: text}]
        models:
          - {provider: openai, model: gpt-4o-mini}
        cache: {fixture: fixture.jsonl}
        checks:
    """) + textwrap.indent(checks, "  "))
    spec = load_spec(folder / "spec.yaml")
    disk = open_disk_cache(tmp_path / f"cache-{correct}")
    for i, r in enumerate(planned_requests(spec)):
        gold = dict((f"test:{n}", "positive" if y else "negative") for n, (_, y) in enumerate(ROWS))[r["example_id"]]
        wrong = "negative" if gold == "positive" else "positive"
        disk.set(r["key"], make_entry(r["material"], ChatResponse(text=gold if i < correct else wrong, finish_reason="stop")))
    disk.close()
    export_fixture(tmp_path / f"cache-{correct}", folder / "fixture.jsonl")
    return folder / "spec.yaml", folder / "fixture.jsonl"


CHECKS = "- {metric: validity, min: 1.0}\n- {metric: accuracy, min: 0.8}\n- {metric: accuracy, max_drop: 0.1}\n"


def test_eval_check_fails_with_a_table_exit_1_and_a_step_summary(tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    spec, _ = make_project(tmp_path, CHECKS, correct=3)  # accuracy 0.5
    rc = main(["eval", str(spec), "--cache", "replay", "--check", "--quiet", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in out and "below 0.8" in out and "1 of 3 checks failed" in out
    assert "SKIP" in out and "no baseline run given" in out  # the max_drop check, without --baseline
    text = summary.read_text()
    assert "❌ failed" in text and "| ❌ **fail** | accuracy | `openai:gpt-4o-mini` | `p` | min 0.8 | 0.5 |" in text
    # appended, not overwritten
    main(["check", str(tmp_path / "run")])
    assert summary.read_text().count("### checks:") == 2


def test_check_passes_and_max_drop_uses_the_baseline_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    spec, _ = make_project(tmp_path / "good", CHECKS, correct=6)  # accuracy 1.0
    assert main(["eval", str(spec), "--cache", "replay", "--check", "--quiet", "--out", str(tmp_path / "good-run")]) == 0
    assert "all 3 checks passed (or skipped)" in capsys.readouterr().out
    # a worse run (accuracy 5/6) against the good one: drop 0.166 > 0.1 fails
    spec_worse, _ = make_project(tmp_path / "worse", CHECKS.replace("min: 0.8", "min: 0.5"), correct=5)
    assert main(["eval", str(spec_worse), "--cache", "replay", "--quiet", "--out", str(tmp_path / "worse-run")]) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "worse-run"), "--baseline", str(tmp_path / "good-run")]) == 1
    out = capsys.readouterr().out
    assert "fell by 0.166667 (allowed 0.1)" in out
    # the checks of another spec file can be applied to a run: min 0.8 holds for 5/6
    assert main(["check", str(tmp_path / "worse-run"), "--spec", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "no baseline run given" in out


def test_check_on_a_run_without_checks(tmp_path, capsys):
    spec, _ = make_project(tmp_path, "[]\n", correct=6)
    spec.write_text(spec.read_text().replace("checks:\n  []\n", "checks: []\n"))
    assert main(["eval", str(spec), "--cache", "replay", "--check", "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert "no checks in the spec" in capsys.readouterr().out
