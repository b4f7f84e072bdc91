"""`harness report RUN`, `harness history SPEC` and the `compare --html/--markdown` outputs.

Each command is an `add_parser(subparsers)` / `run(args) -> int` pair, so the CLI only registers
them (harness.cli). They read finished run folders only; no model is called and no dataset is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError


# ---------------------------------------------------------------------------------------------
# harness report RUN


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="re-render report.md and report.html from a run folder (old runs too)")
    p.add_argument("run", help="run folder, runs/SPEC/latest, runs/SPEC or a spec name")
    p.add_argument("--no-html", action="store_true", help="only report.md")
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    from harness.html_report import write_html_report
    from harness.report import _write_atomic, markdown_report
    from harness.runs import load_run, resolve_run_dir

    run_dir = resolve_run_dir(args.run)
    data = load_run(run_dir)
    import json

    suites = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("suites")
    _write_atomic(run_dir / "report.md", markdown_report(data.run, data.metrics, suites))
    print(f"report.md: {run_dir / 'report.md'}")
    if not args.no_html:
        print(f"report.html: {write_html_report(run_dir)}")
    return 0


# ---------------------------------------------------------------------------------------------
# harness history SPEC


def add_history_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("history", help="an index page of all runs of a spec: each figure over time, links to each report")
    p.add_argument("spec", help="a spec name (rotten_tomatoes), a spec file (specs/x.yaml) or its runs folder (runs/x)")
    p.add_argument("--runs", default="runs", help="the runs folder (default runs)")
    p.add_argument("--out", help="the page to write (default RUNS/SPEC/index.html)")
    p.set_defaults(func=run_history)
    return p


def _spec_runs_folder(argument: str, runs_root: Path) -> tuple[str, Path]:
    path = Path(argument)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        from harness.spec import load_spec

        name = load_spec(path).name
        return name, runs_root / name
    if path.is_dir() and not (path / "metrics.json").exists() and path.parent.resolve() == runs_root.resolve():
        return path.name, path
    if (runs_root / argument).is_dir():
        return argument, runs_root / argument
    if path.is_dir() and not (path / "metrics.json").exists():
        return path.name, path
    raise HarnessError(f"{argument}: no runs found (looked for {runs_root / argument}); pass a spec name, a spec file or runs/SPEC")


def run_history(args: argparse.Namespace) -> int:
    from harness.html_pages import history_page, read_runs, write_text

    name, folder = _spec_runs_folder(args.spec, Path(args.runs))
    runs = read_runs(folder)
    if not runs:
        raise HarnessError(f"{folder}: holds no finished run (no */metrics.json)")
    out = Path(args.out) if args.out else folder / "index.html"
    write_text(out, history_page(name, runs, out))
    print(f"history of {len(runs)} runs: {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# harness compare A B --html FILE --markdown FILE


def add_compare_arguments(parser) -> None:
    parser.add_argument("--html", metavar="FILE", help="also write a side-by-side page: flipped examples, template diff")
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary for CI (`-` prints it)")


def write_compare_outputs(args: argparse.Namespace, comparison, a, b) -> None:
    html_file, md_file = getattr(args, "html", None), getattr(args, "markdown", None)
    if not html_file and not md_file:
        return
    from harness.compare import comparison_markdown, fill_flip_texts, template_diffs
    from harness.html_pages import compare_page, write_text

    diffs = template_diffs(a, b)
    fill_flip_texts(comparison, a, b)
    if html_file:
        write_text(Path(html_file), compare_page(comparison, a, b, diffs))
        print(f"compare page: {html_file}", file=sys.stderr)
    if md_file:
        text = comparison_markdown(comparison, diffs)
        if md_file == "-":
            sys.stdout.write(text)
        else:
            write_text(Path(md_file), text)
            print(f"compare summary: {md_file}", file=sys.stderr)
