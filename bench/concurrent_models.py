"""Benchmark: 3 models x 3 prompts on three endpoints at once vs each model alone (issue 12).

Three local OpenAI-compatible servers (tests/http_stub.py, each in its own process, answering every
request after --latency seconds) stand for three endpoints. One generated spec names three models,
one per server, and three prompts (json_schema, json_object, text: three different bodies per
example, so nothing is shared between prompts). Each measurement is the real command in a fresh
process with the cache off:

    harness eval SPEC --cache off --no-baselines --quiet [--out ...]

run once with all three models, and once per model with a spec that has that model only; the
rounds are interleaved (alone 1, alone 2, alone 3, all three, ...). The target: the three-model run
takes at most 1.3x the slowest single model. Printed: the whole command's wall time, and the run's
own `wall_s` from metrics.json (the part after start-up), medians over --repeat rounds.

    HARNESS_DATA_DIR=../shared/datasets python bench/concurrent_models.py [--n 64] [--latency 0.2] [--concurrency 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [("json_schema", "json_schema"), ("json_object", "json_object"), ("text", "text")]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "http_stub.py"), "--latency", str(latency)],
                              stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().strip()


def write_spec(folder: Path, n: int, models: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    data.mkdir(exist_ok=True)
    words = ["good", "dull", "moving", "tedious", "charming", "clumsy"]
    with open(data / "test.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"review {i}: a {words[i % len(words)]} film", "label": "positive" if i % 2 else "negative"}) + "\n")
    (folder / "p.j2").write_text("{% block system %}Classify the review.{% endblock %}{% block user %}{{ text }}{% endblock %}")
    spec = {
        "name": "concurrent_models",
        "dataset": {"source": "data", "split": "test", "train_split": None},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": [{"name": name, "template": "p.j2", "mode": mode} for name, mode in PROMPTS],
        "models": models,
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec, indent=1))
    return path


def run(spec: Path, out: Path, env: dict) -> tuple[float, float]:
    """(whole command wall, the run's wall_s) of one fresh `harness eval`."""
    command = [sys.executable, "-m", "harness.cli", "eval", str(spec), "--cache", "off", "--no-baselines", "--quiet",
               "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    run_wall = json.loads((out / "metrics.json").read_text())["run"]["wall_s"]
    return wall, run_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="examples (each model sends n x 3 requests)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    servers = [start_server(args.latency) for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    try:
        models = [{"provider": "openai", "model": "stub-model", "name": f"endpoint{i + 1}", "base_url": url,
                   "concurrency": args.concurrency, "timeout_s": 60, "params": {"temperature": 0, "max_tokens": 8}}
                  for i, (_, url) in enumerate(servers)]
        with tempfile.TemporaryDirectory(prefix="harness-concurrent-") as tmp:
            tmp = Path(tmp)
            specs = {m["name"]: write_spec(tmp / m["name"], args.n, [m]) for m in models}
            specs["all three"] = write_spec(tmp / "all", args.n, models)
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in specs}
            for round_ in range(args.repeat):
                for name, spec in specs.items():
                    times[name].append(run(spec, tmp / f"run-{name}-{round_}", env))
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait()

    ideal = args.n * len(PROMPTS) * args.latency / args.concurrency
    print(f"{args.n} examples x {len(PROMPTS)} prompts per model, {args.latency * 1000:.0f} ms latency, concurrency "
          f"{args.concurrency} per model; ideal per model {ideal:.1f} s; medians of {args.repeat} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| run | command wall | run wall_s | walls (command) |")
    print("|---|---:|---:|---|")
    med = {}
    for name, rows in times.items():
        wall = statistics.median(w for w, _ in rows)
        inner = statistics.median(r for _, r in rows)
        med[name] = (wall, inner)
        print(f"| {name} | {wall:.2f} s | {inner:.2f} s | {', '.join(f'{w:.2f}' for w, _ in rows)} |")
    slowest = max((v for k, v in med.items() if k != "all three"), key=lambda v: v[0])
    slowest_inner = max(v[1] for k, v in med.items() if k != "all three")
    print(f"\nall three / slowest single model: {med['all three'][0] / slowest[0]:.2f}x (command wall), "
          f"{med['all three'][1] / slowest_inner:.2f}x (run wall_s); target <= 1.3x")


if __name__ == "__main__":
    main()
