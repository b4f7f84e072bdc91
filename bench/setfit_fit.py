"""SetFit fit time and accuracy per k (examples per class) on rotten_tomatoes.

For each k, `kind: setfit` (its defaults unless flags say otherwise; MiniLM from the offline wheel)
is fitted on a seeded k-per-class draw from the train split, from an empty model cache (a fresh
temporary HARNESS_CACHE_DIR, so every fit is cold), scored on the spec's evaluated examples
(the 300-review sample of specs/rotten_tomatoes_setfit.yaml, the main spec's), then fitted again:
the second fit must be a cache hit, and its time is the load time.

    HARNESS_DATA_DIR=../shared/datasets python bench/setfit_fit.py --sizes 8,16,32,64 --out bench/setfit_fit.json

Prints a Markdown table; --out writes every figure as JSON. The load average before and after is
recorded because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "rotten_tomatoes_setfit.yaml"))
    parser.add_argument("--sizes", default="8,16,32,64", help="k values (examples per class)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-iterations", type=int, help="default: the kind's default")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--keep-cache", action="store_true",
                        help="keep the temporary model cache (~90 MB per k) and print its path")
    args = parser.parse_args()

    cache_dir = tempfile.mkdtemp(prefix="setfit-bench-")
    os.environ["HARNESS_CACHE_DIR"] = cache_dir  # cold: nothing fitted before
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from harness.baselines.run import BaselineData, build, fit_baseline, predict_records
    from harness.baselines.setfit import SetFitBaseline
    from harness.data import load_eval_split
    from harness.score import score_group
    from harness.spec import load_spec

    spec = load_spec(args.spec)
    evaluated = load_eval_split(spec).examples
    data = BaselineData(spec)
    options = {"kind": "setfit", "seed": args.seed}
    if args.num_iterations is not None:
        options["num_iterations"] = args.num_iterations
    rows = []
    load_before = os.getloadavg()
    for k in [int(s) for s in args.sizes.split(",") if s.strip()]:
        config = SetFitBaseline(**options, per_class=k, name=f"setfit_k{k}")
        model = build(config, spec, None)
        train = model.train_rows(data)
        decision, cold = fit_baseline(model, data, train=train)
        records, predict_s = predict_records(model, decision, evaluated)
        figures = score_group(records, spec.label_names, spec.task)
        stats = model.stats()
        again = build(config, spec, None)
        _, warm = fit_baseline(again, data, train=train)
        hit = again.stats()["setfit_cache"]
        row = {
            "per_class": k, "train_texts": len(train), "pairs": stats.get("setfit_pairs"),
            "fit_s": cold.fit_s, "predict_s": round(predict_s, 3), "accuracy": figures["accuracy"],
            "macro_f1": figures["macro_f1"], "refit_s": warm.fit_s, "refit_cache": hit,
            "num_iterations": config.num_iterations, "epochs": config.epochs, "batch_size": config.batch_size,
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if args.out:  # after every k, so a run stopped half-way keeps what it measured
            Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n", encoding="utf-8")
    result = {
        "spec": str(args.spec), "evaluated": len(evaluated), "seed": args.seed,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    print(f"| k per class | train texts | pairs | fit (s) | accuracy ({len(evaluated)}) | macro F1 | predict (s) | refit from cache (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['per_class']} | {r['train_texts']} | {r['pairs']} | {r['fit_s']:.1f} | {r['accuracy']:.3f} | "
              f"{r['macro_f1']:.3f} | {r['predict_s']:.1f} | {r['refit_s']:.2f} ({r['refit_cache']}) |")
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}; "
          f"torch threads {result['torch_threads']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.keep_cache:
        print(f"fitted models kept in {cache_dir}/setfit")
    else:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
