"""The project's own regression gate, run by .ci/run through the README test command: replay the
committed rotten_tomatoes fixture with no model and run the spec's checks.

It uses the real CLI in a subprocess, an empty cache folder and no model server: every response
must come from specs/fixtures/rotten_tomatoes.jsonl, and the checks in specs/rotten_tomatoes.yaml
must pass. It skips only when the fixture file is absent (record it with bench/record_fixture.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.data import load_eval_split
from harness.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rotten_tomatoes.yaml"
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")


def test_spec_points_at_the_committed_fixture():
    fixture = load_spec(SPEC).resolve_fixture()
    assert fixture == ROOT / "specs" / "fixtures" / "rotten_tomatoes.jsonl"


@pytest.mark.skipif(
    not (ROOT / "specs" / "fixtures" / "rotten_tomatoes.jsonl").is_file(),
    reason="specs/fixtures/rotten_tomatoes.jsonl is absent: record it with bench/record_fixture.sh",
)
def test_replay_the_committed_fixture_and_pass_the_checks(tmp_path):
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "empty-cache"), "HARNESS_DATA_DIR": str(DATA_DIR)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    command = [
        sys.executable, "-m", "harness.cli", "eval", str(SPEC), "--cache", "replay", "--check",
        "--no-baselines", "--quiet", "--out", str(tmp_path / "run"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for model, counts in metrics["run"]["requests"].items():
        assert counts["sent"] == 0 and counts["cache_misses"] == 0, (model, counts)
    assert metrics["run"]["cache"]["source"].endswith("specs/fixtures/rotten_tomatoes.jsonl")
    assert not (tmp_path / "empty-cache").exists()  # nothing came from (or went to) a cache folder
    assert "checks passed" in done.stdout


@pytest.mark.skipif(
    not (ROOT / "specs" / "fixtures" / "rotten_tomatoes.jsonl").is_file(),
    reason="specs/fixtures/rotten_tomatoes.jsonl is absent: record it with bench/record_fixture.sh",
)
def test_a_smaller_limit_replays_from_the_fixture_recorded_at_the_spec_limit(tmp_path):
    """Samples are nested (a prefix of one seeded, stratified order): --limit 50 is a subset of the
    spec's 300, so a quick check replays from the committed fixture instead of missing it."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "empty-cache"), "HARNESS_DATA_DIR": str(DATA_DIR)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    command = [
        sys.executable, "-m", "harness.cli", "eval", str(SPEC), "--cache", "replay", "--limit", "50",
        "--no-baselines", "--quiet", "--out", str(tmp_path / "run"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["run"]["dataset"]["rows_used"] == 50
    assert {r["n"] for r in metrics["results"]} == {50}
    full = {e.id for e in load_eval_split(load_spec(SPEC)).examples}
    ids = {json.loads(line)["example_id"] for line in (tmp_path / "run" / "predictions.jsonl").open()}
    assert len(ids) == 50 and ids <= full
