"""Resume: SIGKILL a real `harness eval` mid-run, rerun the same command, and count at the server
that no example answered before the kill is requested again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.data import load_eval_split
from harness.records import read_predictions
from harness.spec import load_spec

from llama_proxy import BARE_LABEL, CountingProxy, LlamaServer, server_test, write_spec

LIMIT = 16
KILL_AFTER = 5  # predictions on disk before the kill


def _complete_lines(path: Path) -> list[dict]:
    """Predictions whose line was fully written (the kill may tear the last one)."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def kill_mid_run(command: list[str], cwd: Path, env: dict, runs: Path, after: int) -> Path:
    """Start `command`, SIGKILL it once its run folder holds `after` complete predictions, and
    return that folder (the test fails if the run ended first)."""
    first = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        folders = [p for p in runs.glob("*") if p.is_dir()] if runs.exists() else []
        if folders and len(_complete_lines(folders[0] / "predictions.jsonl")) >= after:
            break
        time.sleep(0.02)
    assert first.poll() is None, f"the first run ended before the kill: {first.stderr.read().decode()[-2000:]}"
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    first.stderr.close()
    return [p for p in runs.glob("*") if p.is_dir()][0]


@server_test
def test_sigkill_mid_run_then_rerun_requests_only_the_unanswered(tmp_path):
    with LlamaServer(parallel=2) as server, CountingProxy(server.url) as proxy:
        spec = write_spec(tmp_path / "spec", proxy.url, templates={"bare_label": BARE_LABEL}, concurrency=2)
        env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
        command = [sys.executable, "-m", "harness.cli", "eval", str(spec), "--limit", str(LIMIT), "--quiet"]
        runs = tmp_path / "runs" / "rt_test"

        first_dir = kill_mid_run(command, tmp_path, env, runs, KILL_AFTER)
        answered_ids = {p["example_id"] for p in _complete_lines(first_dir / "predictions.jsonl")}
        assert KILL_AFTER <= len(answered_ids) < LIMIT
        assert not (first_dir / "metrics.json").exists()  # it really died mid-run
        requests_before_kill = proxy.count()

        before = proxy.count()
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]

        asked_again = proxy.user_messages(since=before)
        texts = {e.id: e.text for e in load_eval_split(load_spec(spec), limit=LIMIT).examples}
        repeated = [i for i in answered_ids if any(m.startswith(f"Review: {texts[i]}\n") for m in asked_again)]
        assert repeated == [], f"answered before the kill but requested again: {repeated}"

        second_dir = (runs / "latest").resolve()
        assert second_dir != first_dir.resolve()
        predictions = read_predictions(second_dir / "predictions.jsonl")
        assert sorted(p.example_id for p in predictions) == sorted(texts)  # the rerun answers every example
        from_cache = {p.example_id for p in predictions if p.cached}
        assert answered_ids <= from_cache
        # exactly the examples the cache could not answer were requested, each once
        assert len(asked_again) == LIMIT - len(from_cache)
        asked_ids = sorted(i for i in texts if any(m.startswith(f"Review: {texts[i]}\n") for m in asked_again))
        assert asked_ids == sorted(set(texts) - from_cache)
        metrics = json.loads((second_dir / "metrics.json").read_text())
        assert metrics["run"]["requests"]["llamacpp:smollm2"]["sent"] == len(asked_again)
        # the first run had sent at most its 2 in-flight requests beyond what it had written
        assert requests_before_kill - len(answered_ids) <= 2
