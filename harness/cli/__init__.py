"""The `harness` command line: one module per command, each with `add_parser(sub)` and
`run(args) -> int`. This module builds the parser, turns errors into exit codes and handles signals.
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness.errors import HarnessError

EXIT_CODES = """\
exit codes:
  0    complete: every planned request answered, checks (if any) passed
  1    checks failed (--check, harness check)
  2    bad input: spec, template, dataset, fixture, run folder or flag (one-paragraph error)
  3    --cache replay found requests with no stored response (listed per model x prompt)
  4    incomplete: a model was stopped (401/404, unreachable), nothing ran, more than
       --max-error-share of requests ended in api_error, or (with --strict) a model was skipped
  130  interrupted (Ctrl-C, SIGTERM)"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("harness")
    except PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, looked up only when asked for (importlib.metadata costs ~20 ms at every start)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show program's version number and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"harness {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from harness.cli import cache, check, compare, curve, eval as eval_cmd, history, render, report, schema, validate

    parser = argparse.ArgumentParser(
        prog="harness", description="Evaluate LLM prompts against declarative YAML specs.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (eval_cmd, curve, check, compare, report, history, cache, validate, render, schema):
        p = module.add_parser(sub)
        p.epilog = EXIT_CODES
        p.formatter_class = argparse.RawDescriptionHelpFormatter
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
