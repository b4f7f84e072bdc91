"""The `harness` command line.

Exit codes: 0 done; 1 checks failed; 2 bad input (spec, template, dataset, flags); 3 replay found
requests with no stored response; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from harness.errors import HarnessError


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # CI logs and pipes: wide enough that tables never truncate
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


class Progress:
    """A progress bar per model on stderr; results are counted from the runner's callback."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None

    def __enter__(self):
        return self

    def _start(self) -> None:
        # Started with the first model, not before: an error while preparing the run then prints
        # alone, without the blank line an empty progress display leaves on stderr.
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
        from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[invalid]} invalid"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=_console(stderr=True), transient=False,
        )
        self._progress.__enter__()

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def tracker(self, name: str, total: int):
        if not self.enabled:
            return None
        if self._progress is None:
            self._start()
        task = self._progress.add_task(name, total=total, invalid=0)
        invalid = 0

        def on_result(prediction) -> None:
            nonlocal invalid
            invalid += prediction.outcome != "valid"
            self._progress.update(task, advance=1, invalid=invalid)

        return on_result


def cmd_eval(args: argparse.Namespace) -> int:
    from harness.report import console_table
    from harness.runner import parse_model_flag, run_eval
    from harness.spec import load_spec

    spec = load_spec(args.spec)
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
    err = _console(stderr=True)
    cache = _eval_cache(args, spec)
    try:
        with Progress(enabled=not args.quiet) as progress:
            outcome = asyncio.run(
                run_eval(
                    spec,
                    out_dir=Path(args.out) if args.out else None,
                    limit=args.limit,
                    prompt_names=args.prompt,
                    models=models,
                    concurrency=args.concurrency,
                    cache=cache,
                    progress=progress,
                    log=lambda message: err.print(f"[yellow]{message}[/]"),
                    baselines=_eval_baselines(args, spec),
                )
            )
    finally:
        if cache is not None:
            cache.close()
    out = _console()
    n = outcome.run["dataset"].get("rows_used")
    title = f"{spec.name}: {outcome.run['dataset'].get('split')} split, {n} examples"
    out.print(console_table(outcome.metrics, title=title))
    for skipped in outcome.run["skipped"]:
        out.print(f"skipped {skipped['model']}: {skipped['reason']}")
    for stopped in outcome.run.get("stopped", []):
        out.print(f"stopped {stopped['model']} ({stopped['not_sent']} requests not sent): {stopped['reason']}",
                  markup=False)
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
        _report_cache(cache, outcome, err)
    if (outcome.run_dir / "report.html").is_file():
        out.print(f"report: {outcome.run_dir / 'report.html'}", markup=False)
    if args.check:
        return _run_checks(spec.checks, outcome.metrics, args.baseline, f"checks: {spec.name}", out)
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from harness.curve import parse_sizes, run_curve, worth_phrase
    from harness.spec import load_spec

    spec = load_spec(args.spec)
    err = _console(stderr=True)
    result = run_curve(
        spec, sizes=parse_sizes(args.sizes), repeats=args.repeats, run=args.run, metric=args.metric,
        baseline_names=args.run_baseline, limit=args.limit, out_dir=Path(args.out) if args.out else None,
        log=lambda message: err.print(message, markup=False, highlight=False),
    )
    from rich.table import Table

    out = _console()
    sizes = sorted({row["size"] for row in result.summary})
    table = Table(title=f"{spec.name}: {result.metric} by train size (mean ± std)")
    table.add_column("baseline")
    for size in sizes:
        table.add_column(str(size), justify="right")
    for baseline in dict.fromkeys(row["baseline"] for row in result.summary):
        cells = []
        for size in sizes:
            row = next((r for r in result.summary if r["baseline"] == baseline and r["size"] == size), None)
            cells.append(f"{row['mean']:.3f} ± {row['std']:.3f}" if row else "–")
        table.add_row(baseline, *cells)
    out.print(table)
    for ref in result.references:
        worth = ", ".join(
            f"{w['baseline'].removeprefix('baseline:')} {worth_phrase(w)}"
            for w in result.worth if w["model"] == ref.model and w["prompt"] == ref.prompt
        )
        out.print(f"{ref.model} / {ref.prompt} ({result.metric} {ref.value:.3f}) is worth, in labels: {worth}",
                  markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)
    out.print(f"curve folder: {result.out_dir}  ({result.wall_s:.1f}s)", markup=False)
    return 0


def _eval_baselines(args: argparse.Namespace, spec):
    """The spec's baselines to run: all (default), those named by --run-baseline, or none."""
    from harness.baselines import select_baselines

    if args.no_baselines:
        return []
    return select_baselines(spec, args.run_baseline)


def _eval_cache(args: argparse.Namespace, spec):
    """The response cache for `--cache MODE` (None for off). A replay answers from `--fixture`,
    else the spec's `cache.fixture`, else the cache folder."""
    from harness.cache import default_cache_dir, make_cache

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
    directory = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    return make_cache(args.cache, directory, fixture)


def _report_cache(cache, outcome, err) -> None:
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
    misses = outcome.cache_misses
    if misses:
        per_row: dict[tuple[str, str], list[str]] = {}
        for miss in misses:
            per_row.setdefault((miss["model"], miss["prompt"]), []).append(miss["example_id"])
        lines = [f"replay: {len(misses)} request(s) have no stored response in {d['source']}; no model was called."]
        for (model, prompt), ids in per_row.items():
            shown = ", ".join(ids[:10]) + (f", … ({len(ids) - 10} more)" if len(ids) > 10 else "")
            lines.append(f"  {model} / {prompt}: {len(ids)} missing: {shown}")
        lines.append(
            f"The run folder {outcome.run_dir} counts them as api_error. Record them (harness eval with "
            f"--cache rw against the model, then `harness cache export`), or fix the spec/prompts that changed."
        )
        raise CacheMissError("\n".join(lines))


def _run_checks(checks, metrics: list[dict], baseline_arg: str | None, title: str, out) -> int:
    """Print the checks table, append it to $GITHUB_STEP_SUMMARY, return 1 if any failed."""
    from harness.checks import checks_markdown, checks_table, evaluate_checks, failed, write_step_summary
    from harness.runs import load_run

    if not checks:
        out.print("no checks in the spec (add `checks:`)")
        return 0
    baseline = load_run(baseline_arg).metrics if baseline_arg else None
    results = evaluate_checks(checks, metrics, baseline)
    out.print(checks_table(results, title=title))
    write_step_summary(checks_markdown(results, title))
    bad = failed(results)
    out.print(f"{len(bad)} of {len(results)} checks failed" if bad else f"all {len(results)} checks passed (or skipped)")
    return 1 if bad else 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.runs import load_run
    from harness.spec import load_spec

    data = load_run(args.run)
    if args.spec:
        spec = load_spec(args.spec)
        checks, name = spec.checks, spec.name
    else:  # the checks as they were when the run was made
        from pydantic import ValidationError

        from harness.spec import Check

        try:
            checks = [Check.model_validate(c) for c in (data.resolved_spec or {}).get("checks", [])]
        except ValidationError as exc:
            raise HarnessError(
                f"{data.dir / 'spec.resolved.json'}: its checks are not valid for this harness "
                f"({exc.errors(include_url=False)[0]['msg']}); pass --spec SPEC to use a spec file's checks"
            ) from None
        name = data.run.get("spec", data.dir.parent.name)
    return _run_checks(checks, data.metrics, args.baseline, f"checks: {name} ({data.name})", _console())


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import compare_runs, print_comparison
    from harness.runs import finished_runs, load_run, resolve_run_dir

    if args.run_b is None:  # one argument: a spec's two newest runs
        folder = Path(args.run_a)
        if not folder.is_dir() and Path("runs", args.run_a).is_dir():
            folder = Path("runs", args.run_a)
        if not folder.is_dir() or (folder / "metrics.json").exists():
            raise HarnessError(f"{args.run_a}: with one argument, pass a spec's runs folder (runs/SPEC) or spec name")
        runs = finished_runs(folder)
        if len(runs) < 2:
            raise HarnessError(f"{folder}: needs two finished runs to compare, found {len(runs)}")
        a, b = load_run(runs[-2]), load_run(runs[-1])
    else:
        a, b = load_run(args.run_a), load_run(args.run_b)
    if resolve_run_dir(a.dir) == resolve_run_dir(b.dir):
        raise HarnessError(f"both arguments are the same run ({a.dir})")
    comparison = compare_runs(a, b, resamples=args.resamples, seed=args.seed)
    from harness.html_commands import write_compare_outputs

    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False))
    elif args.markdown != "-":
        from harness.compare import print_template_diffs, template_diffs

        console = _console()
        print_comparison(comparison, console, show=args.show)
        print_template_diffs(template_diffs(a, b), console)
    write_compare_outputs(args, comparison, a, b)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from harness import cache as rc

    directory = Path(args.cache_dir).expanduser() if args.cache_dir else rc.default_cache_dir()
    if args.action == "stats":
        stats = rc.cache_stats(directory)
        if args.json:
            print(json.dumps(stats, indent=2))
            return 0
        print(f"cache folder: {stats['directory']}" + ("" if stats["exists"] else " (empty: not created yet)"))
        print(f"entries: {stats['entries']}  size on disk: {stats['bytes'] / 1e6:.1f} MB")
        if stats["exists"]:
            print(f"eviction policy: {stats['eviction_policy']}  key version: {stats['key_version']}")
            for name, count in stats["by_model"].items():
                print(f"  {count:7d}  {name}")
            print("finish reasons: " + ", ".join(f"{k} {v}" for k, v in stats["finish_reasons"].items()))
        return 0
    if args.action == "clear":
        print(f"removed {rc.cache_clear(directory)} entries from {directory}")
        return 0
    if args.action == "import":
        print(f"imported {rc.import_fixture(directory, Path(args.file))} entries from {args.file} into {directory}")
        return 0
    # export
    keys = None
    if args.spec:
        from harness.runner import parse_model_flag
        from harness.spec import load_spec

        spec = load_spec(args.spec)
        models = [parse_model_flag(m, spec.models[0] if spec.models else None) for m in args.model] if args.model else None
        planned = rc.planned_requests(spec, limit=args.limit, prompt_names=args.prompt, models=models)
        keys = [r["key"] for r in planned]
    elif args.limit or args.prompt or args.model:
        raise HarnessError("--limit, --prompt and --model select a spec's requests: pass --spec SPEC too")
    written, missing = rc.export_fixture(directory, Path(args.file), keys)
    print(f"wrote {written} entries to {args.file}")
    if missing:
        by_key = {r["key"]: r for r in planned}
        rows: dict[tuple[str, str], list[str]] = {}
        for key in missing:
            r = by_key[key]
            rows.setdefault((r["model"], r["prompt"]), []).append(r["example_id"])
        lines = [f"{len(missing)} of the spec's {len(keys)} requests are not in {directory}:"]
        for (model, prompt), ids in rows.items():
            lines.append(f"  {model} / {prompt}: {len(ids)}: {', '.join(ids[:10])}{' …' if len(ids) > 10 else ''}")
        lines.append("run `harness eval SPEC --cache rw` with the same --limit/--prompt/--model first (errors are never stored)")
        from harness.errors import CacheMissError

        raise CacheMissError("\n".join(lines))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.runner import Prepared
    from harness.spec import load_spec
    from providers import get_provider_class

    spec = load_spec(args.spec)
    prepared = Prepared(spec)
    for pp in prepared.prompts:  # render one example per prompt: catches undefined variables
        if prepared.eval.examples:
            prepared.messages(pp, prepared.eval.examples[0])
    notes = []
    for model in spec.models:
        reason = get_provider_class(model.provider)(model).missing_requirement()
        notes.append(f"  model {model.id}: " + (f"will be skipped ({reason})" if reason else "ok"))
    for baseline in spec.baselines:
        reason = baseline.missing_requirement()
        notes.append(f"  {baseline.id}: " + (f"will be skipped ({reason})" if reason else "ok"))
    fp = prepared.eval.fingerprint
    print(f"{args.spec}: ok")
    print(f"  dataset {fp['source']} split {fp['split']}: {fp['rows_used']} of {fp['rows_total']} rows")
    for pp in prepared.prompts:
        print(f"  prompt {pp.prompt.name}: {pp.renderer.path} (mode {pp.mode})")
    print("\n".join(notes))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from harness.runner import Prepared, parse_model_flag, request_body
    from harness.spec import load_spec
    from providers import get_provider_class

    spec = load_spec(args.spec)
    prepared = Prepared(spec, prompt_names=[args.prompt] if args.prompt else None)
    examples = prepared.eval.examples
    if not 0 <= args.index < len(examples):
        raise HarnessError(f"--index {args.index}: the evaluated split has {len(examples)} examples (0-{len(examples) - 1})")
    example = examples[args.index]
    out = _console()
    for pp in prepared.prompts:
        messages = prepared.messages(pp, example)
        if args.body:
            model = parse_model_flag(args.model, spec.models[0] if spec.models else None) if args.model else (
                spec.models[0] if spec.models else None
            )
            if model is None:
                raise HarnessError("--body needs a model: add one to the spec or pass --model")
            provider = get_provider_class(model.provider)(model)
            # The runner's own function, so the body shown is exactly the one `eval` sends.
            body = request_body(prepared, pp, example, model, provider)
            print(json.dumps(body, indent=2, ensure_ascii=False))
            continue
        if args.json:
            print(json.dumps({"prompt": pp.prompt.name, "example_id": example.id, "messages": messages}, ensure_ascii=False))
            continue
        out.rule(f"prompt {pp.prompt.name} · example {example.id} · mode {pp.mode} · gold {example.gold}")
        for message in messages:
            out.print(f"[bold]{message['role']}[/]")
            # Written as is: rich would expand tabs and turn `:smile:` into an emoji.
            out.file.write(message["content"] + "\n")
            out.print()
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.spec import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Evaluate LLM prompts against declarative YAML specs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="run a spec: call the models, validate, score, write a run folder")
    p.add_argument("spec")
    p.add_argument("--out", help="run folder (default runs/SPEC_NAME/TIMESTAMP)")
    p.add_argument("--limit", type=int, help="evaluate a seeded, stratified sample of N examples")
    p.add_argument("--prompt", action="append", help="run only this prompt (repeatable)")
    p.add_argument("--model", action="append", help="PROVIDER:MODEL replacing the spec's models (repeatable)")
    p.add_argument("--concurrency", type=int, help="requests in flight per model")
    p.add_argument("--batch", action="store_true",
                   help="send the models through the OpenAI/Groq Batch API (half price; answers within the batch window)")
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
    p.add_argument("--baseline", help="with --check: the run that max_drop checks compare with")
    p.add_argument("--no-baselines", action="store_true", help="skip the spec's encoder baselines")
    p.add_argument("--no-models", action="store_true", help="run only the baselines (no LLM is called)")
    p.add_argument("--run-baseline", action="append", metavar="NAME",
                   help="run only this baseline of the spec (name or kind; repeatable)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("curve", help="learning curve: trainable baselines on growing train subsets vs the LLMs")
    p.add_argument("spec")
    p.add_argument("--sizes", default="50,100,200,500,1000,2000,5000",
                   help="comma-separated train sizes (default 50,100,200,500,1000,2000,5000)")
    p.add_argument("--repeats", type=int, default=3, help="seeded subsets per size (default 3)")
    p.add_argument("--run", help="the LLM run to compare with (default runs/SPEC/latest, else the newest run)")
    p.add_argument("--metric", choices=("accuracy", "macro_f1"), default="accuracy",
                   help="the figure compared (default accuracy; multi-label: subset accuracy)")
    p.add_argument("--run-baseline", action="append", metavar="NAME",
                   help="only this trainable baseline (name or kind; repeatable)")
    p.add_argument("--limit", type=int, help="evaluate this many examples when there is no run to follow")
    p.add_argument("--out", help="output folder (default runs/SPEC/curve-TIMESTAMP)")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("check", help="run a spec's checks on a finished run; exit 1 if one fails")
    p.add_argument("run", help="run folder, runs/SPEC/latest, runs/SPEC or a spec name")
    p.add_argument("--spec", help="take the checks from this spec file (default: the run's own spec)")
    p.add_argument("--baseline", help="the run that max_drop checks compare with")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compare", help="per model x prompt deltas, paired statistics and flipped examples")
    p.add_argument("run_a", help="the earlier run (or, alone, runs/SPEC: compare its two newest runs)")
    p.add_argument("run_b", nargs="?", help="the later run")
    p.add_argument("--show", type=int, default=10, help="flipped examples shown per direction (default 10)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="the full comparison as JSON")
    from harness.html_commands import add_compare_arguments, add_history_parser, add_report_parser

    add_compare_arguments(p)
    p.set_defaults(func=cmd_compare)
    add_report_parser(sub)
    add_history_parser(sub)

    p = sub.add_parser("cache", help="manage the response cache: stats, clear, export, import")
    p.add_argument("action", choices=("stats", "clear", "export", "import"))
    p.add_argument("file", nargs="?", help="export: the JSONL file to write; import: the file to read")
    p.add_argument("--cache-dir", help="cache folder (default $HARNESS_CACHE_DIR, else ~/.cache/harness)")
    p.add_argument("--spec", help="export: only the requests this spec makes (fails, exit 3, if any is missing)")
    p.add_argument("--limit", type=int, help="export --spec: as `harness eval --limit`")
    p.add_argument("--prompt", action="append", help="export --spec: as `harness eval --prompt`")
    p.add_argument("--model", action="append", help="export --spec: as `harness eval --model`")
    p.add_argument("--json", action="store_true", help="stats as JSON")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("validate", help="check a spec, its templates and dataset without calling a model")
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="print exactly the messages that would be sent")
    p.add_argument("spec")
    p.add_argument("--prompt", help="prompt name (default: all)")
    p.add_argument("--index", type=int, default=0, help="example index in the evaluated split")
    p.add_argument("--json", action="store_true", help="one JSON object per prompt")
    p.add_argument("--body", action="store_true", help="print the full request body for the model")
    p.add_argument("--model", help="PROVIDER:MODEL for --body (default: the spec's first model)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("schema", help="print the spec JSON schema (for editor completion)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_schema)
    return parser


def _sigterm_to_interrupt(signum, frame):
    """SIGTERM does what Ctrl-C does. Inside asyncio.run the SIGINT handler cancels the main task,
    which unwinds through every `finally` (stopping launched servers) before KeyboardInterrupt
    ends the command. Raising KeyboardInterrupt here instead lands in whichever task is running
    and can escape the loop twice, ending the process before the server is stopped."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.__dict__.get("limit") is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.__dict__.get("concurrency") is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.command == "cache" and args.action in ("export", "import") and not args.file:
        parser.error(f"cache {args.action} needs a FILE")
    if args.command == "compare" and (args.resamples < 1 or args.show < 0):
        parser.error("--resamples must be at least 1 and --show at least 0")
    # Both signals end the run through `finally` blocks that stop launched servers. SIGINT is set
    # explicitly because a process started in the background by a shell inherits it as ignored.
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
