"""`harness compare A [B]`: per model x prompt deltas, paired statistics and flipped examples."""

from __future__ import annotations

import argparse
import json

from harness.cli._common import add_allow_incomplete, console

HELP = "per model x prompt deltas, paired statistics and flipped examples"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help=HELP, description=HELP)
    p.add_argument("run_a", help="the earlier run (or, alone, runs/SPEC: compare its two newest runs)")
    p.add_argument("run_b", nargs="?", help="the later run")
    p.add_argument("--show", type=int, default=10, help="flipped examples shown per direction (default 10)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="the full comparison as JSON")
    add_allow_incomplete(p)
    from harness.html_commands import add_compare_arguments

    add_compare_arguments(p)  # --html FILE, --markdown FILE|-
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.compare import compare_runs, print_comparison
    from harness.runs import runs_to_compare

    a, b = runs_to_compare(args.run_a, args.run_b, allow_incomplete=args.allow_incomplete)
    comparison = compare_runs(a, b, resamples=args.resamples, seed=args.seed)
    from harness.html_commands import write_compare_outputs

    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False))
    elif args.markdown != "-":
        from harness.compare import print_template_diffs, template_diffs

        out = console()
        print_comparison(comparison, out, show=args.show)
        print_template_diffs(template_diffs(a, b), out)
    write_compare_outputs(args, comparison, a, b)
    return 0
