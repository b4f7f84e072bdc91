"""`harness cache stats|clear|export|import`: manage the response cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli._common import cache_dir
from harness.errors import HarnessError

HELP = "manage the response cache: stats, clear, export, import"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("cache", help=HELP, description=HELP)
    p.add_argument("action", choices=("stats", "clear", "export", "import"))
    p.add_argument("file", nargs="?", help="export: the JSONL file to write; import: the file to read")
    p.add_argument("--cache-dir", help="cache folder (default $HARNESS_CACHE_DIR, else ~/.cache/harness)")
    p.add_argument("--spec", help="export: only the requests this spec makes (fails, exit 3, if any is missing)")
    p.add_argument("--limit", type=int, help="export --spec: as `harness eval --limit`")
    p.add_argument("--prompt", action="append", help="export --spec: as `harness eval --prompt`")
    p.add_argument("--model", action="append", help="export --spec: as `harness eval --model`")
    p.add_argument("--json", action="store_true", help="stats as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness import cache as rc

    directory = cache_dir(args)
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
    out = Path(args.file)
    if out.is_dir():
        raise HarnessError(f"{out}: is a folder; pass the fixture file to write (e.g. {out}/fixture.jsonl)")
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
    written, missing = rc.export_fixture(directory, out, keys)
    if not missing:
        print(f"wrote {written} entries to {args.file}")
    if missing:
        from harness.errors import CacheMissError

        by_key = {r["key"]: r for r in planned}
        raise CacheMissError(rc.export_miss_summary([by_key[k] for k in missing], len(keys), directory))
    return 0
