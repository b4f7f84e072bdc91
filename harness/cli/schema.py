"""`harness schema`: the spec JSON schema, for editor completion."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import HarnessError

HELP = "print the spec JSON schema (for editor completion)"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("schema", help=HELP, description=HELP)
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.files import atomic_write_text
    from harness.spec import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.out:
        if Path(args.out).is_dir():
            raise HarnessError(f"--out {args.out}: is a folder; pass a file path")
        atomic_write_text(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0
