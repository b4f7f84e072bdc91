"""`harness check RUN`: a spec's checks on a finished run; exit 1 if one fails."""

from __future__ import annotations

import argparse

from harness.cli._common import add_allow_incomplete, add_reference_flag, console, run_checks
from harness.errors import HarnessError

HELP = "run a spec's checks on a finished run; exit 1 if one fails"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("check", help=HELP, description=HELP)
    p.add_argument("run", help="run folder, runs/SPEC/latest, runs/SPEC or a spec name")
    p.add_argument("--spec", help="take the checks from this spec file (default: the run's own spec)")
    add_reference_flag(p, "the run that max_drop checks compare with")
    add_allow_incomplete(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.runs import load_run
    from harness.spec import load_spec

    data = load_run(args.run, allow_incomplete=args.allow_incomplete)
    if args.spec:
        spec = load_spec(args.spec)
        checks, name = spec.checks, spec.name
    else:  # the checks as they were when the run was made
        from pydantic import ValidationError

        from harness.spec import Check

        try:
            checks = [Check.model_validate(c) for c in (data.resolved_spec or {}).get("checks", [])]
        except (ValidationError, AttributeError, TypeError) as exc:
            why = exc.errors(include_url=False)[0]["msg"] if isinstance(exc, ValidationError) else "not a list of checks"
            raise HarnessError(
                f"{data.dir / 'spec.resolved.json'}: its checks are not valid for this harness "
                f"({why}); pass --spec SPEC to use a spec file's checks"
            ) from None
        name = data.run.get("spec", data.dir.parent.name)
    return run_checks(checks, data.metrics, args.reference, f"checks: {name} ({data.name})", console(),
                      allow_incomplete=args.allow_incomplete)
