"""Benchmark: loading the evaluated split and drawing few-shot examples (what used to be two
timed unit tests; speed is measured here, tests assert behaviour).

    HARNESS_DATA_DIR=../shared/datasets python bench/data_load.py [--repeat 5]

For each shared dataset: `load_eval_split` of its spec-default split (file cache warm: the first
load is not counted), median of `--repeat`; and for rotten_tomatoes, `draw_shots(pool, 8, ...)`
for every evaluated review against the 8530-review train pool.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.data import draw_shots, load_eval_split, load_split  # noqa: E402
from harness.spec import Spec  # noqa: E402


def spec_for(source: str, labels: list[str]) -> Spec:
    return Spec.model_validate({
        "name": "bench", "dataset": {"source": source, "train_split": "train"},
        "labels": [{"name": n} for n in labels],
        "prompts": [{"name": "p", "template": "p.j2"}],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not os.environ.get("HARNESS_DATA_DIR"):
        raise SystemExit("set HARNESS_DATA_DIR (e.g. ../shared/datasets)")
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeat}\n")
    print("| what | rows | median | min |")
    print("|---|---:|---:|---:|")
    spec = spec_for("rotten_tomatoes", ["negative", "positive"])
    load_eval_split(spec)  # warm the file cache
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        split = load_eval_split(spec)
        times.append(time.perf_counter() - t0)
    n = len(split.examples)
    print(f"| load_eval_split rotten_tomatoes (test) | {n} | {statistics.median(times) * 1000:.1f} ms | {min(times) * 1000:.1f} ms |")
    pool = load_split(spec, "train").examples
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for e in split.examples:
            draw_shots(pool, 8, 0, e)
        times.append(time.perf_counter() - t0)
    print(f"| draw_shots k=8 for every test review, train pool of {len(pool)} | {n} | "
          f"{statistics.median(times) * 1000:.1f} ms | {min(times) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
