"""Repeats against the real llama-server (SmolLM2, temperature 0.8): SIGKILL a `harness eval` with
`repeats: 3` mid-run, rerun it, and count at the server that no repeat answered before the kill is
requested again (each repeat is its own cached request, committed before its prediction)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness.records import read_predictions

from llama_proxy import BARE_LABEL, CountingProxy, LlamaServer, server_test, write_spec
from test_resume import _complete_lines, kill_mid_run  # _complete_lines: fully written predictions

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

        first_dir = kill_mid_run(command, tmp_path, env, runs, KILL_AFTER)
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
