"""Repeats against the real llama-server (SmolLM2, temperature 0.8): SIGKILL a `harness eval` with
`repeats: 3` mid-run, rerun it, and count at the server that no repeat answered before the kill is
requested again (each repeat is its own cached request, committed before its prediction)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from harness.records import read_predictions

from llama_proxy import BARE_LABEL, CountingProxy, LlamaServer, server_test, write_spec
from test_resume import _complete_lines  # predictions whose line was fully written

LIMIT = 6
REPEATS = 3
KILL_AFTER = 7  # predictions on disk before the kill: example 0's three repeats and more


@server_test
def test_a_killed_repeats_run_resumes_without_asking_any_answered_repeat_again(tmp_path):
    with LlamaServer(parallel=2) as server, CountingProxy(server.url) as proxy:
        spec = write_spec(tmp_path / "spec", proxy.url, templates={"bare_label": BARE_LABEL}, concurrency=2)
        text = spec.read_text().replace("params: {temperature: 0,", f"repeats: {REPEATS}\n    params: {{temperature: 0.8,")
        spec.write_text(text)
        env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
        command = [sys.executable, "-m", "harness.cli", "eval", str(spec), "--limit", str(LIMIT), "--quiet"]
        runs = tmp_path / "runs" / "rt_test"

        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and first.poll() is None:
            folders = [p for p in runs.glob("*") if p.is_dir()] if runs.exists() else []
            if folders and len(_complete_lines(folders[0] / "predictions.jsonl")) >= KILL_AFTER:
                break
            time.sleep(0.02)
        assert first.poll() is None, f"the first run ended before the kill: {first.stderr.read().decode()[-2000:]}"
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
        first.stderr.close()
        first_dir = [p for p in runs.glob("*") if p.is_dir()][0]
        answered = {(p["example_id"], p["repeat"]) for p in _complete_lines(first_dir / "predictions.jsonl")}
        assert KILL_AFTER <= len(answered) < LIMIT * REPEATS

        before = proxy.count()
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
        asked_again = len(proxy.user_messages(since=before))

        second_dir = (runs / "latest").resolve()
        predictions = read_predictions(second_dir / "predictions.jsonl")
        assert len(predictions) == LIMIT * REPEATS
        assert sorted({p.repeat for p in predictions}) == list(range(REPEATS))
        from_cache = {(p.example_id, p.repeat) for p in predictions if p.cached}
        assert answered <= from_cache  # every repeat answered before the kill comes back from the cache
        assert asked_again == LIMIT * REPEATS - len(from_cache)  # and only the others were asked
        metrics = json.loads((second_dir / "metrics.json").read_text())
        assert metrics["run"]["requests"]["llamacpp:smollm2"]["sent"] == asked_again
        rows = {m["prompt"]: m for m in metrics["results"]}
        assert set(rows) == {"bare_label", "bare_label@vote"}
        assert rows["bare_label"]["repeats"]["repeats"] == REPEATS and rows["bare_label"]["n"] == LIMIT
