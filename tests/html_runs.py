"""Run folders for the report tests, made by replaying the committed rotten_tomatoes fixture with
the real CLI (no model server), and a small spec answered by the local OpenAI-protocol stub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rotten_tomatoes.yaml"
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")


def harness(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    done = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def replay_run(out: Path, *extra: str) -> Path:
    """`harness eval specs/rotten_tomatoes.yaml --cache replay EXTRA --out OUT`."""
    # two answer-format prompts the report tests count rows and pairs for
    prompts = ["--prompt", "json_schema", "--prompt", "bare_label"]
    harness("eval", str(SPEC), "--cache", "replay", "--quiet", "--out", str(out), *prompts, *extra)
    return out


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def predictions(run: Path, *, suites: bool = False) -> list[dict]:
    """The run's prediction records; without `suites`, only the evaluated split's (as the main
    figures and the example browser count them)."""
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return records if suites else [p for p in records if not p.get("suite")]


def stub_spec(tmp: Path, base_url: str, **extra) -> Path:
    rows = [{"text": f"a good film {i}" if i % 2 else f"a dull film {i}", "label": i % 2, "domain": "news" if i < 6 else "blog"}
            for i in range(10)]
    (tmp / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "p.j2").write_text("{% block system %}Classify.{% endblock %}{% block user %}{{ text }}{% endblock %}")
    spec = {
        "name": "stubbed", "dataset": {"source": str(tmp / "data.jsonl"), "split": "test", "train_split": None,
                                       "label_map": {0: "negative", 1: "positive"}},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": [{"name": "json", "template": "p.j2", "mode": "json_object"}, {"name": "bare", "template": "p.j2", "mode": "text"}],
        "models": [{"provider": "openai", "model": "stub-model", "base_url": base_url, "concurrency": 2}],
        **extra,
    }
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
