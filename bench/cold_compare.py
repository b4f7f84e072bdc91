"""Before/after of the runner's own cost on a cold run: the same `harness eval` from two checkouts
(e.g. main and this branch), interleaved, against one local test server.

A generated spec of N examples (one json_object prompt and, with --prompts 2, a second prompt
sending the same bodies, as bare_label and likelihood do in the main spec), one model at the local
server (tests/http_stub.py, own process, --latency seconds per answer), concurrency 64, a fresh
cache folder for every run (`--cache rw`: every response is stored). Each checkout's code runs as
`python -m harness.cli` with the checkout as the working directory. Printed: median wall and CPU
(user + system of the child) per checkout, CPU per request, and requests the server received.

    python bench/cold_compare.py /work/main . [--n 1066] [--latency 0.1] [--repeat 3] [--prompts 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=1066)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prompts", type=int, choices=(1, 2), default=1)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "http_stub.py"), "--latency", str(args.latency)],
                              stdout=subprocess.PIPE, text=True)
    results: dict[str, list[tuple[float, float, int]]] = {str(c): [] for c in args.checkouts}
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="harness-cold-") as tmp:
            tmp = Path(tmp)
            (tmp / "data").mkdir()
            words = ["good", "dull", "moving", "tedious", "charming", "clumsy"]
            (tmp / "data" / "test.jsonl").write_text("".join(
                json.dumps({"text": f"review {i}: a {words[i % 6]} film", "label": "positive" if i % 2 else "negative"}) + "\n"
                for i in range(args.n)))
            (tmp / "p.j2").write_text("{% block system %}Classify the review.{% endblock %}{% block user %}{{ text }}{% endblock %}")
            prompts = [{"name": "a", "template": "p.j2", "mode": "json_object"},
                       {"name": "b", "template": "p.j2", "mode": "json_object"}][:args.prompts]
            spec = tmp / "spec.yaml"
            spec.write_text(json.dumps({
                "name": "cold", "dataset": {"source": "data", "split": "test", "train_split": None},
                "labels": [{"name": "negative"}, {"name": "positive"}], "prompts": prompts,
                "models": [{"provider": "openai", "model": "stub-model", "base_url": url, "concurrency": 64,
                            "timeout_s": 60, "params": {"temperature": 0, "max_tokens": 8}}],
            }))
            for round_ in range(args.repeat):
                for checkout in args.checkouts:
                    out = tmp / f"run-{checkout.name}-{round_}"
                    command = [sys.executable, "-m", "harness.cli", "eval", str(spec), "--no-baselines", "--quiet",
                               "--cache-dir", str(out / "cache"), "--out", str(out / "run")]
                    t0 = time.perf_counter()
                    child = subprocess.Popen(command, cwd=checkout.resolve(), env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True)
                    stderr = child.stderr.read()
                    _, status, usage = os.wait4(child.pid, 0)
                    wall = time.perf_counter() - t0
                    if os.waitstatus_to_exitcode(status) != 0:
                        raise SystemExit(f"{checkout}: exit {os.waitstatus_to_exitcode(status)}: {stderr[-2000:]}")
                    sent = json.loads((out / "run" / "metrics.json").read_text())["run"]["requests"]["openai:stub-model"]["sent"]
                    results[str(checkout)].append((wall, usage.ru_utime + usage.ru_stime, sent))
    finally:
        server.terminate()
        server.wait()
    print(f"{args.n} examples x {args.prompts} prompt(s), {args.latency * 1000:.0f} ms latency, concurrency 64, "
          f"cold cache (rw); medians of {args.repeat} interleaved rounds; load average {os.getloadavg()[0]:.1f}\n")
    print("| checkout | median wall | median CPU | requests sent | CPU per request sent |")
    print("|---|---:|---:|---:|---:|")
    for checkout, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        sent = rows[0][2]
        print(f"| {checkout} | {wall:.2f} s | {cpu:.2f} s | {sent} | {cpu / sent * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
