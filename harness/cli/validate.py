"""`harness validate SPEC`: check a spec, its templates and dataset without calling a model."""

from __future__ import annotations

import argparse

HELP = "check a spec, its templates and dataset without calling a model"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help=HELP, description=HELP)
    p.add_argument("spec")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
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
