"""Top-down prompts against the real llama-server with SmolLM2-135M (run under
`flock /tmp/llama-server.lock`): the coarse and the fine request of each example are sent once,
stored in the cache, and a replay with no model walks exactly the same path."""

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


def harness(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_top_down_sends_each_level_once_and_replays_exactly(tmp_path):
    spec = yaml.safe_load((ROOT / "specs" / "go_emotions_ekman.yaml").read_text())
    spec["dataset"]["limit"] = 6
    spec["prompts"] = [p for p in spec["prompts"] if p["name"] == "top_down"]
    spec.pop("cache", None)
    path = ROOT / "specs" / f".test-top-down-{os.getpid()}.yaml"  # beside the real spec: same template paths
    path.write_text(yaml.safe_dump(spec))
    cache = tmp_path / "cache"
    try:
        live = harness("eval", str(path), "--no-baselines", "--quiet", "--cache", "rw", "--cache-dir", str(cache),
                       "--out", str(tmp_path / "live"))
        assert live.returncode == 0, live.stdout[-3000:] + live.stderr[-3000:]
        again = harness("eval", str(path), "--no-baselines", "--quiet", "--cache", "replay", "--cache-dir", str(cache),
                        "--out", str(tmp_path / "replay"))
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    finally:
        path.unlink()
    h = yaml.safe_load((ROOT / "specs" / "go_emotions_ekman.yaml").read_text())["hierarchy"][0]["groups"]

    def records(run):
        return sorted((json.loads(line) for line in (tmp_path / run / "predictions.jsonl").read_text().splitlines()),
                      key=lambda r: r["example_id"])

    first, second = records("live"), records("replay")
    # requests: one coarse per example, one fine per example whose group has several labels
    expected = sum(1 + (r["levels"] is not None and len(h[r["levels"]["ekman"]]) > 1) for r in first)
    live_requests = json.loads((tmp_path / "live" / "metrics.json").read_text())["run"]["requests"]["llamacpp:smollm2"]
    replay_requests = json.loads((tmp_path / "replay" / "metrics.json").read_text())["run"]["requests"]["llamacpp:smollm2"]
    assert live_requests["sent"] == expected and live_requests["cache_hits"] == 0
    assert (replay_requests["sent"], replay_requests["cache_hits"], replay_requests["cache_misses"]) == (0, expected, 0)
    assert all(r["cached"] for r in second) and not any(r["cached"] for r in first)
    drop = ("cached", "latency_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in first] == \
           [{k: v for k, v in r.items() if k not in drop} for r in second]
    for r in first:
        if r["outcome"] == "valid":
            assert r["prediction"] in h[r["levels"]["ekman"]]
