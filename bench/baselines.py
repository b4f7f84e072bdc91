"""Wall times of the encoder baselines on a spec (default specs/rotten_tomatoes.yaml):

1. `harness eval SPEC --no-models` twice with a fresh, private embedding cache: fit / predict per
   baseline, and the embedding step of the first run (every text encoded) against the second
   (every vector from the disk cache, the model never loaded);
2. optionally (--curve RUN) `harness curve SPEC --run RUN`, timed.

Run from the repository root with HARNESS_DATA_DIR set:

    HARNESS_DATA_DIR=../shared/datasets python bench/baselines.py [--spec S] [--curve runs/S/latest]

Results are written down in bench/baselines.md (with the machine's load at the time: these are CPU
bound and the 2-core machines are shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def harness(*args: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/rotten_tomatoes.yaml")
    parser.add_argument("--curve", help="also time `harness curve SPEC --run THIS`")
    parser.add_argument("--sizes", default="50,100,200,500,1000,2000,5000")
    parser.add_argument("--repeats", default="3")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HARNESS_CACHE_DIR": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        runs = []
        for label in ("first run (empty cache)", "second run (cached)"):
            out = Path(tmp) / label.split()[0]
            wall = harness("eval", args.spec, "--no-models", "--quiet", "--out", str(out), env=env)
            metrics = json.loads((out / "metrics.json").read_text())
            runs.append((label, wall, metrics))
        for label, wall, metrics in runs:
            print(f"\n{label}: whole command {wall:.1f}s")
            print(f"  {'baseline':30} {'fit_s':>8} {'predict_s':>9} {'embed_s':>8} {'encoded':>8} {'cached':>7} {'accuracy':>8}")
            rows = {m["model"]: m for m in metrics["results"]}
            for bid, record in metrics["run"]["baselines"].items():
                embedding = record.get("embedding") or {}
                print(f"  {bid:30} {record.get('fit_s', 0):8.2f} {record.get('predict_s', 0):9.3f} "
                      f"{embedding.get('total_s', 0):8.2f} {embedding.get('misses', 0):8d} "
                      f"{embedding.get('hits', 0):7d} {rows[bid]['accuracy']:8.3f}")
        if args.curve:
            out = Path(tmp) / "curve"
            wall = harness("curve", args.spec, "--run", args.curve, "--sizes", args.sizes,
                           "--repeats", args.repeats, "--out", str(out), env=env)
            payload = json.loads((out / "curve.json").read_text())
            print(f"\ncurve (--sizes {args.sizes} --repeats {args.repeats}): whole command {wall:.1f}s, "
                  f"{len(payload['points'])} fits")
            print((out / "curve.md").read_text())
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
