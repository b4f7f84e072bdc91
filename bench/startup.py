"""Benchmark: start-up of `harness eval --limit 1` against a local OpenAI-compatible server.

A local test server (tests/http_stub.py, own process, no latency) and a generated one-prompt spec
whose model points at it; then, in fresh processes, interleaved:

    python -c pass                                                       (the interpreter)
    python -m harness.cli eval SPEC --limit 1 --cache off --no-baselines --quiet --out DIR

and once more with `-X importtime`, to list the heavy modules that one-example run imports and what
each cost (cumulative microseconds of the import, as Python reports them). Bytecode caching is on
(PYTHONDONTWRITEBYTECODE is removed from the children's environment; the first round warms it).

    python bench/startup.py [--repeat 5]
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
HEAVY = ("numpy", "sklearn", "scipy", "openai", "httpx", "aiohttp", "pyarrow", "pandas", "rich", "jinja2", "pydantic",
         "yaml", "diskcache", "torch", "harness.html_report", "harness.baselines.run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "http_stub.py")], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="harness-startup-") as tmp:
            tmp = Path(tmp)
            (tmp / "data").mkdir()
            (tmp / "data" / "test.jsonl").write_text("".join(
                json.dumps({"text": f"a {'good' if i % 2 else 'dull'} film", "label": "positive" if i % 2 else "negative"}) + "\n"
                for i in range(20)))
            (tmp / "p.j2").write_text("{% block user %}{{ text }}{% endblock %}")
            spec = tmp / "spec.yaml"
            spec.write_text(json.dumps({
                "name": "startup", "dataset": {"source": "data", "split": "test", "train_split": None},
                "labels": [{"name": "negative"}, {"name": "positive"}],
                "prompts": [{"name": "a", "template": "p.j2", "mode": "json_schema"}],
                "models": [{"provider": "openai", "model": "stub-model", "base_url": url,
                            "params": {"temperature": 0, "max_tokens": 8}}],
            }))
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "harness eval --limit 1": [sys.executable, "-m", "harness.cli", "eval", str(spec), "--limit", "1",
                                            "--cache", "off", "--no-baselines", "--quiet", "--out", str(tmp / "run")],
            }
            walls: dict[str, list[float]] = {name: [] for name in commands}
            for round_ in range(args.repeat + 1):
                for name, command in commands.items():
                    t0 = time.perf_counter()
                    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
                    if done.returncode != 0:
                        raise SystemExit(f"{name} exited {done.returncode}: {done.stderr[-2000:]}")
                    if round_:  # round 0 warms the bytecode cache
                        walls[name].append(time.perf_counter() - t0)
            probe = subprocess.run([sys.executable, "-X", "importtime", *commands["harness eval --limit 1"][1:]],
                                   cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        server.terminate()
        server.wait()
    cumulative = {}
    for line in probe.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = line.split("|")
            if name.strip() in HEAVY:
                cumulative[name.strip()] = int(cum)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; medians of {args.repeat}\n")
    print("| command | median wall | walls |")
    print("|---|---:|---|")
    for name, values in walls.items():
        print(f"| {name} | {statistics.median(values) * 1000:.0f} ms | {', '.join(f'{v * 1000:.0f}' for v in values)} |")
    beyond = statistics.median(walls["harness eval --limit 1"]) - statistics.median(walls["python -c pass"])
    print(f"\nbeyond the interpreter: {beyond * 1000:.0f} ms")
    print("heavy modules imported (cumulative import ms): " + ", ".join(
        f"{name} {us / 1000:.0f}" for name, us in sorted(cumulative.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
