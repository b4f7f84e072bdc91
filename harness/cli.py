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
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[invalid]} invalid"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=_console(stderr=True), transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def tracker(self, name: str, total: int):
        if self._progress is None:
            return None
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
    err = _console(stderr=True)
    with Progress(enabled=not args.quiet) as progress:
        outcome = asyncio.run(
            run_eval(
                spec,
                out_dir=Path(args.out) if args.out else None,
                limit=args.limit,
                prompt_names=args.prompt,
                models=models,
                concurrency=args.concurrency,
                progress=progress,
                log=lambda message: err.print(f"[yellow]{message}[/]"),
            )
        )
    out = _console()
    n = outcome.run["dataset"].get("rows_used")
    title = f"{spec.name}: {outcome.run['dataset'].get('split')} split, {n} examples"
    out.print(console_table(outcome.metrics, title=title))
    for skipped in outcome.run["skipped"]:
        out.print(f"skipped {skipped['model']}: {skipped['reason']}")
    out.print(f"run folder: {outcome.run_dir}  ({outcome.run['wall_s']:.1f}s)")
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
    fp = prepared.eval.fingerprint
    print(f"{args.spec}: ok")
    print(f"  dataset {fp['source']} split {fp['split']}: {fp['rows_used']} of {fp['rows_total']} rows")
    for pp in prepared.prompts:
        print(f"  prompt {pp.prompt.name}: {pp.renderer.path} (mode {pp.mode})")
    print("\n".join(notes))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from harness.runner import Prepared, parse_model_flag
    from harness.spec import load_spec
    from providers import ChatRequest, get_provider_class

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
            body = provider.build_body(
                ChatRequest(messages, model.params, pp.response_format, spec.label_names)
            )
            print(json.dumps(body, indent=2, ensure_ascii=False))
            continue
        if args.json:
            print(json.dumps({"prompt": pp.prompt.name, "example_id": example.id, "messages": messages}, ensure_ascii=False))
            continue
        out.rule(f"prompt {pp.prompt.name} · example {example.id} · mode {pp.mode} · gold {example.gold}")
        for message in messages:
            out.print(f"[bold]{message['role']}[/]")
            out.print(message["content"], markup=False, soft_wrap=True)
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

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


def _sigterm_to_interrupt(signum, frame):  # so `finally` blocks stop launched servers
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.__dict__.get("limit") is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.__dict__.get("concurrency") is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
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
