"""`harness eval SPEC`: call the models, validate, score, write a run folder."""

from __future__ import annotations

import argparse
import asyncio
import gc
from pathlib import Path

from harness.cli._common import add_reference_flag, cache_dir, console, out_folder, run_checks
from harness.cli._progress import Progress
from harness.errors import HarnessError

HELP = "run a spec: call the models, validate, score, write a run folder"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help=HELP, description=HELP)
    p.add_argument("spec")
    p.add_argument("--out", help="run folder (default runs/SPEC_NAME/TIMESTAMP)")
    p.add_argument("--limit", type=int, help="evaluate a seeded, stratified sample of N examples")
    p.add_argument("--prompt", action="append", help="run only this prompt (repeatable)")
    p.add_argument("--model", action="append", help="PROVIDER:MODEL replacing the spec's models (repeatable)")
    p.add_argument("--concurrency", type=int, help="requests in flight per model")
    p.add_argument("--batch", action="store_true",
                   help="send the models through the OpenAI/Groq Batch API (half price; answers within the batch window)")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="ray: answer the uncached requests with a Ray Data pipeline first (spec `execution:`; "
                   "pip install 'harness[ray]'); default: the spec's execution.engine, else local")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--cache", choices=("rw", "read", "write", "off", "replay"), default="rw",
        help="response cache: rw (default) reads and stores; read only reads; write refreshes; off; "
        "replay never calls a model and fails (exit 3) on any request without a stored response",
    )
    p.add_argument("--cache-dir", help="cache folder (default $HARNESS_CACHE_DIR, else ~/.cache/harness)")
    p.add_argument("--fixture", help="--cache replay: answer from this JSONL fixture (default: the spec's cache.fixture)")
    p.add_argument("--no-fixture", action="store_true", help="--cache replay: ignore the spec's fixture, replay from --cache-dir")
    p.add_argument("--check", action="store_true", help="run the spec's checks on the result; exit 1 if one fails")
    add_reference_flag(p, "with --check: the run that max_drop checks compare with")
    p.add_argument("--no-baselines", action="store_true", help="skip the spec's encoder baselines")
    p.add_argument("--no-models", action="store_true", help="run only the baselines (no LLM is called)")
    p.add_argument("--run-baseline", action="append", metavar="NAME",
                   help="run only this baseline of the spec (name or kind; repeatable)")
    p.add_argument("--max-error-share", type=float, metavar="SHARE",
                   help="a model with more than this share of api_error answers makes the run incomplete, "
                   "exit 4 (default: the spec's run.max_error_share, 0.05)")
    p.add_argument("--strict", action="store_true",
                   help="a model skipped for a missing API key makes the run incomplete (exit 4), not a warning")
    p.set_defaults(func=run)
    return p


def selected_baselines(args: argparse.Namespace, spec):
    """The spec's baselines to run: all (default), those named by --run-baseline, or none."""
    if args.no_baselines:  # before the import: the baseline machinery costs ~0.2 s to load
        return []
    from harness.baselines import select_baselines

    return select_baselines(spec, args.run_baseline)


def open_cache(args: argparse.Namespace, spec):
    """The response cache for `--cache MODE` (None for off). A replay answers from `--fixture`,
    else the spec's `cache.fixture`, else the cache folder."""
    from harness.cache import make_cache

    fixture = None
    if args.fixture and args.no_fixture:
        raise HarnessError("--fixture and --no-fixture contradict each other; pass one")
    if args.cache == "replay":
        if args.fixture:
            fixture = Path(args.fixture)
        elif spec.resolve_fixture() is not None and not args.no_fixture:
            fixture = spec.resolve_fixture()
            if not fixture.is_file():
                raise HarnessError(
                    f"{spec.path}: cache.fixture {spec.cache.fixture!r} -> {fixture}: no such file; record it "
                    f"(bench/record_fixture.sh) or replay from the cache folder with --no-fixture"
                )
    elif args.fixture or args.no_fixture:
        raise HarnessError(
            "--fixture/--no-fixture are read only by --cache replay; to load a fixture into the cache "
            "folder use `harness cache import FILE`"
        )
    return make_cache(args.cache, cache_dir(args), fixture)


def report_cache(cache, outcome, err) -> None:
    from harness.cache import miss_summary
    from harness.errors import CacheMissError

    d = cache.describe()
    line = f"cache {d['mode']} ({d['source']}): {d['hits']} hits, {d['misses']} misses, {d['stored']} stored"
    if d["not_stored"]:
        line += " (not stored: " + ", ".join(f"{n} {why}" for why, n in d["not_stored"].items()) + ")"
    err.print(line, markup=False)
    for m in cache.mismatches[:10]:
        err.print(
            f"[yellow]cache entry {m['key'][:12]}… was stored for {m['stored']} but requested for "
            f"{m['requested']} ({', '.join(m['differs'])} differ): ignored[/]"
        )
    if outcome.cache_misses:
        raise CacheMissError(miss_summary(outcome.cache_misses, d["source"], run_dir=outcome.run_dir))


def _summary(markdown: list[str]) -> None:
    from harness.checks import write_step_summary

    write_step_summary("\n".join(markdown))


def run(args: argparse.Namespace) -> int:
    """The eval command; every exit (bad input excepted) writes the GitHub step summary."""
    from harness.errors import CacheMissError

    if args.max_error_share is not None and not 0 <= args.max_error_share <= 1:
        raise HarnessError(f"--max-error-share {args.max_error_share}: expected a share between 0 and 1 (e.g. 0.05)")
    try:
        return _run(args)
    except CacheMissError as exc:
        _summary([f"## harness eval {args.spec}: replay misses (exit 3)", "", "```", str(exc), "```", ""])
        raise


def _run(args: argparse.Namespace) -> int:
    from harness.runner import parse_model_flag, run_eval
    from harness.spec import load_spec

    spec = load_spec(args.spec)
    # A short-lived process: what the imports and the spec built (pydantic's schemas, modules,
    # compiled templates) lives until exit, and CPython's cyclic collector would walk all of it at
    # every full collection (~0.1 s of a one-second warm replay). Frozen, it is never walked again.
    gc.freeze()
    out_dir = out_folder(args.out)
    models = None
    if args.model:
        template = spec.models[0] if spec.models else None
        models = [parse_model_flag(m, template) for m in args.model]
    if args.batch:  # the same as `options: {batch: true}` on every model
        models = [m.model_copy(update={"options": {**m.options, "batch": True}}) for m in (models or spec.models)]
    if args.no_models:
        if args.model:
            raise HarnessError("--no-models and --model contradict each other; drop one")
        models = []  # the baselines only: no LLM is called
    err = console(stderr=True)
    prefill = None
    if (args.executor or spec.execution.engine) == "ray":
        from harness.ray_executor import RayExecutor

        prefill = RayExecutor(spec.execution, log=lambda message: err.print(message, markup=False)).prefill
    cache = open_cache(args, spec)
    try:
        with Progress(enabled=not args.quiet) as progress:
            outcome = asyncio.run(
                run_eval(
                    spec,
                    out_dir=out_dir,
                    limit=args.limit,
                    prompt_names=args.prompt,
                    models=models,
                    concurrency=args.concurrency,
                    cache=cache,
                    progress=progress,
                    log=lambda message: err.print(f"[yellow]{message}[/]"),
                    baselines=selected_baselines(args, spec),
                    max_error_share=args.max_error_share,
                    strict=args.strict or None,
                    prefill=prefill,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    from harness.report import console_table  # after the run: nothing the first request needs

    out = console()
    n = outcome.run["dataset"].get("rows_used")
    title = f"{spec.name}: {outcome.run['dataset'].get('split')} split, {n} examples"
    out.print(console_table(outcome.metrics, title=title))
    for skipped in outcome.run["skipped"]:
        out.print(f"skipped {skipped['model']}: {skipped['reason']}")
    for stopped in outcome.run.get("stopped", []):
        out.print(f"stopped {stopped['model']} ({stopped['not_sent']} requests not sent): {stopped['reason']}",
                  markup=False)
    from harness.runs import status_markdown, throttle_notes

    for note in throttle_notes(outcome.run):
        out.print(f"[yellow]{note}[/]")
    for warning in outcome.run.get("status_warnings", []):
        out.print(f"warning: {warning}", markup=False)
    totals: dict[str, list[int]] = {}  # per suite, over its model x prompt rows; report.md has the rest
    for s in outcome.suites:
        passed_n = totals.setdefault(s["suite"], [0, 0, 0])
        passed_n[0] += s["passed"]
        passed_n[1] += s["n"]
        passed_n[2] += 1
    for name, (passed, n, rows) in totals.items():
        out.print(f"suite {name}: {passed}/{n} passed over {rows} rows (failures in report.md)", markup=False)
    out.print(f"run folder: {outcome.run_dir}  ({outcome.run['wall_s']:.1f}s)")
    if cache is not None:
        report_cache(cache, outcome, err)
    if (outcome.run_dir / "report.html").is_file():
        out.print(f"report: {outcome.run_dir / 'report.html'}", markup=False)
    heading = f"## harness eval {spec.name}: {outcome.run['status']}"
    if not outcome.complete:
        out.print("[bold red]status: INCOMPLETE[/] — these figures are not a result (exit 4):")
        for reason in outcome.run["status_reasons"]:
            out.print(f"  - {reason}", markup=False)
        if args.check:
            out.print("checks not run: the run is incomplete", markup=False)
        _summary([heading + " (exit 4)", "", *status_markdown(outcome.run)])
        return 4
    _summary([heading, "", *status_markdown(outcome.run)])
    if args.check:
        return run_checks(spec.checks, outcome.metrics, args.reference, f"checks: {spec.name}", out)
    return 0
