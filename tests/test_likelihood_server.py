"""Label likelihood end to end against the real llama-server with SmolLM2-135M (run under
`flock /tmp/llama-server.lock`): a small slice, calibration on a small validation sample, and an
exact replay of the recorded requests (validation requests included) with no model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")


def harness(args, tmp_path, **kw):
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, **kw)


def test_label_likelihood_and_calibration_against_llama_server(tmp_path):
    spec = yaml.safe_load((ROOT / "specs" / "rotten_tomatoes.yaml").read_text())
    spec["dataset"]["limit"] = 8
    spec["prompts"] = [p for p in spec["prompts"] if p["name"].startswith("likelihood")]
    spec["prompts"][0]["likelihood_max_tokens"] = 1  # the request shape: one token
    spec["prompts"][1]["likelihood_max_tokens"] = 1
    spec["prompts"][1]["calibration"] = {"method": "threshold", "validation_limit": 6}
    spec["prompts"].append({"name": "contextual", "template": "prompts/sentiment_label.j2",
                            "answer": "label_likelihood", "calibration": {"method": "contextual"}})
    spec.pop("checks", None)
    spec.pop("cache", None)
    path = ROOT / "specs" / f".test-likelihood-{os.getpid()}.yaml"  # beside the real spec: same template paths
    path.write_text(yaml.safe_dump(spec))
    try:
        cache = tmp_path / "cache"
        done = harness(["eval", str(path), "--no-baselines", "--quiet", "--cache", "rw", "--cache-dir", str(cache),
                        "--out", str(tmp_path / "run")], tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        records = [json.loads(l) for l in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        assert len(records) == 3 * 8
        for r in records:
            assert r["outcome"] == "valid", r
            assert set(r["label_probs"]) == {"negative", "positive"}
            assert sum(r["label_probs"].values()) == pytest.approx(1, abs=1e-5)
            assert 0.05 < r["label_mass"] <= 1  # SmolLM2 puts real mass on the label tokens
            assert r["completion_tokens"] == 1
        rows = {m["prompt"]: m for m in metrics["results"]}
        fit = rows["likelihood_calibrated"]["calibration_fit"]
        assert fit["method"] == "threshold" and fit["validation"]["n"] == 6 and 0 < fit["params"]["threshold"] < 1
        ctx = rows["contextual"]["calibration_fit"]
        assert set(ctx["params"]["content_free_probs"]) == {"negative", "positive"}
        for name in ("likelihood", "likelihood_calibrated", "contextual"):
            assert rows[name]["calibration"]["n"] == 8 and rows[name]["answer"] == "label_likelihood"
        calibrated = [r for r in records if r["prompt"] == "likelihood_calibrated"]
        assert all(r["label_probs_uncalibrated"] for r in calibrated)
        # 8 eval (shared by both likelihood prompts through the cache) + 6 validation + 3 content-free
        assert metrics["run"]["requests"]["llamacpp:smollm2"]["sent"] == 8 + 6 + 3

        # the planned requests include validation and content-free ones; the replay is exact
        fixture = tmp_path / "fixture.jsonl"
        done = harness(["cache", "export", str(fixture), "--cache-dir", str(cache), "--spec", str(path)], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(fixture.read_text().splitlines()) == 8 + 6 + 3
        done = harness(["eval", str(path), "--no-baselines", "--quiet", "--cache", "replay", "--fixture", str(fixture),
                        "--out", str(tmp_path / "replay")], tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        replay = json.loads((tmp_path / "replay" / "metrics.json").read_text())

        def strip(results):
            return [{k: v for k, v in m.items() if k not in ("cached", "wall_s")} for m in results]

        assert strip(replay["results"]) == strip(metrics["results"])
    finally:
        path.unlink(missing_ok=True)
