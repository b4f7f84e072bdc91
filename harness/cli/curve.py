"""`harness curve SPEC`: trainable baselines on growing train subsets vs the LLMs."""

from __future__ import annotations

import argparse

from harness.cli._common import add_allow_incomplete, console, out_folder

HELP = "learning curve: trainable baselines on growing train subsets vs the LLMs"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("curve", help=HELP, description=HELP)
    p.add_argument("spec")
    p.add_argument("--sizes",
                   help="comma-separated train sizes (default 50,100,200,500,1000,2000,5000)")
    p.add_argument("--per-class", metavar="K,K,...",
                   help="size the subsets per label instead: K examples of every label (single-label "
                   "tasks; the SetFit setting), e.g. --per-class 8,16,32,64")
    p.add_argument("--repeats", type=int, default=3, help="seeded subsets per size (default 3)")
    p.add_argument("--run", help="the LLM run to compare with (default runs/SPEC/latest, else the newest run)")
    p.add_argument("--metric", choices=("accuracy", "macro_f1"), default="accuracy",
                   help="the figure compared (default accuracy; multi-label: subset accuracy)")
    p.add_argument("--run-baseline", action="append", metavar="NAME",
                   help="only this trainable baseline (name or kind; repeatable)")
    p.add_argument("--limit", type=int, help="evaluate this many examples when there is no run to follow")
    p.add_argument("--out", help="output folder (default runs/SPEC/curve-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_allow_incomplete(p)
    p.set_defaults(func=run)
    return p


def _sizes(args: argparse.Namespace) -> list[int]:
    from harness.curve import DEFAULT_SIZES, parse_sizes
    from harness.errors import HarnessError

    if args.per_class and args.sizes:
        raise HarnessError("--sizes and --per-class: give one (train rows, or examples per class)")
    if args.per_class:
        return parse_sizes(args.per_class, "--per-class")
    return parse_sizes(args.sizes or ",".join(map(str, DEFAULT_SIZES)))


def run(args: argparse.Namespace) -> int:
    from harness.curve import curve_table, run_curve, worth_lines
    from harness.spec import load_spec

    spec = load_spec(args.spec)
    out_dir = out_folder(args.out)
    from harness.cli._progress import Progress

    err = console(stderr=True)
    with Progress(enabled=not args.quiet) as progress:
        result = run_curve(
            spec, sizes=_sizes(args),
            per_class=bool(args.per_class), repeats=args.repeats, run=args.run, metric=args.metric,
            baseline_names=args.run_baseline, limit=args.limit, out_dir=out_dir,
            log=lambda message: err.print(message, markup=False, highlight=False),
            allow_incomplete=args.allow_incomplete, progress=progress,
        )
    out = console()
    out.print(curve_table(result, spec.name))
    for line in worth_lines(result):
        out.print(line, markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)
    out.print(f"curve folder: {result.out_dir}  ({result.wall_s:.1f}s)", markup=False)
    return 0
