"""What several commands share: consoles, the progress display, the cache flags, the checks table
and the `--reference` flag."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError


def console(stderr: bool = False):
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, emoji=False)
    if not out.is_terminal:  # CI logs and pipes: wide enough that tables never truncate
        out = Console(stderr=stderr, highlight=False, emoji=False, width=200)
    return out


class _DeprecatedBaseline(argparse.Action):
    """`--baseline RUN`, the old name of `--reference RUN` (it clashed with the encoder baselines)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("note: --baseline RUN is deprecated; use --reference RUN (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_reference_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--reference", metavar="RUN", help=help_text)
    parser.add_argument("--baseline", dest="reference", metavar="RUN", action=_DeprecatedBaseline,
                        help=argparse.SUPPRESS)


def add_allow_incomplete(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="accept a run whose status is incomplete (replay misses, stopped model, ...)")


def run_checks(checks, metrics: list[dict], reference_arg: str | None, title: str, out,
               allow_incomplete: bool = False) -> int:
    """Print the checks table, append it to $GITHUB_STEP_SUMMARY, return 1 if any failed."""
    from harness.checks import checks_markdown, checks_table, evaluate_checks, failed, write_step_summary
    from harness.runs import load_run

    if not checks:
        out.print("no checks in the spec (add `checks:`)")
        return 0
    reference = load_run(reference_arg, allow_incomplete=allow_incomplete).metrics if reference_arg else None
    results = evaluate_checks(checks, metrics, reference)
    out.print(checks_table(results, title=title))
    write_step_summary(checks_markdown(results, title))
    bad = failed(results)
    out.print(f"{len(bad)} of {len(results)} checks failed" if bad else f"all {len(results)} checks passed (or skipped)")
    return 1 if bad else 0


def cache_dir(args: argparse.Namespace) -> Path:
    from harness.cache import default_cache_dir

    return Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()


def out_folder(value: str | None) -> Path | None:
    """`--out FOLDER`: refuse a path that is an existing file before any work is done."""
    if value is None:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise HarnessError(f"--out {value}: is a file, not a folder; pass a folder path (it is created if missing)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise HarnessError(f"--out {value}: {parent} is a file, not a folder; pass a folder path")
    return path
