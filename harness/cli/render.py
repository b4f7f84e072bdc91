"""`harness render SPEC`: print exactly the messages (or request body) that would be sent."""

from __future__ import annotations

import argparse
import json

from harness.cli._common import console
from harness.errors import HarnessError

HELP = "print exactly the messages that would be sent"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help=HELP, description=HELP)
    p.add_argument("spec")
    p.add_argument("--prompt", help="prompt name (default: all)")
    p.add_argument("--index", type=int, default=0, help="example index in the evaluated split")
    p.add_argument("--json", action="store_true", help="one JSON object per prompt")
    p.add_argument("--body", action="store_true", help="print the full request body for the model")
    p.add_argument("--model", help="PROVIDER:MODEL for --body (default: the spec's first model)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.runner import Prepared, parse_model_flag, request_body
    from harness.spec import load_spec
    from providers import get_provider_class

    spec = load_spec(args.spec)
    prepared = Prepared(spec, prompt_names=[args.prompt] if args.prompt else None)
    examples = prepared.eval.examples
    if not 0 <= args.index < len(examples):
        raise HarnessError(f"--index {args.index}: the evaluated split has {len(examples)} examples (0-{len(examples) - 1})")
    example = examples[args.index]
    out = console()
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
