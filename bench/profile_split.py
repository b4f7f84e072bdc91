"""Own CPU time of a cProfile file (bench/profile_eval.py) split by where the code lives: the
harness stages, providers, aiohttp, asyncio, the import machinery, jinja2, pydantic, ...

    python bench/profile_split.py /tmp/prof/eval.prof
"""

from __future__ import annotations

import pstats
import sys
from collections import defaultdict

GROUPS = [
    ("imports (start-up)", ("<frozen importlib", "marshal.loads", "builtins.compile", "_imp.", "io.open_code",
                            "posix.stat", "posix.listdir", "__build_class__", "builtins.exec")),
    ("harness/runner.py", ("harness/runner.py",)),
    ("harness/cache.py", ("harness/cache.py",)),
    ("harness/records.py", ("harness/records.py",)),
    ("harness/prompt.py + jinja2", ("harness/prompt.py", "jinja2/")),
    ("harness/validate.py + shapes", ("harness/validate.py", "harness/shapes.py")),
    ("harness/cli/_progress.py + rich", ("harness/cli/_progress.py", "rich/")),
    ("harness report/metrics/html", ("harness/report", "harness/metrics", "harness/html", "harness/score",
                                     "harness/intervals", "harness/coverage", "numpy")),
    ("harness (other)", ("harness/",)),
    ("providers/http.py", ("providers/http.py",)),
    ("providers/scheduling.py", ("providers/scheduling.py",)),
    ("providers (other)", ("providers/",)),
    ("openai / httpx2 SDK", ("openai/", "httpx2/", "httpcore2/", "h11/", "anyio/")),
    ("aiohttp + yarl + multidict", ("aiohttp/", "yarl/", "multidict/")),
    ("asyncio event loop", ("asyncio/", "select.epoll", "selectors.py", "_contextvars.Context")),
    ("sockets (send/recv)", ("_socket.socket",)),
    ("pydantic", ("pydantic",)),
    ("json (stdlib)", ("json/",)),
    ("file writes / flush", ("_io.",)),
]


def group_of(key: tuple) -> str:
    filename, _, name = key
    where = f"{filename}:{name}"
    for group, needles in GROUPS:
        if any(n in where for n in needles):
            return group
    return "other"


def main() -> None:
    stats = pstats.Stats(sys.argv[1])
    totals: dict[str, float] = defaultdict(float)
    for key, (_, _, tottime, _, callers) in stats.stats.items():
        if callers and group_of(key) == "other":
            # a builtin or stdlib helper (isinstance, typing, re, ...): its time goes to its callers
            weights = {c: v[2] for c, v in callers.items()}
            scale = sum(weights.values()) or 1.0
            for caller, weight in weights.items():
                totals[group_of(caller)] += tottime * (weight / scale if sum(weights.values()) else 1 / len(weights))
        else:
            totals[group_of(key)] += tottime
    grand = sum(totals.values())
    print(f"| where | own time | share |\n|---|---:|---:|")
    for group, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {t:.3f} s | {t / grand * 100:.0f}% |")
    print(f"| total (profiled; the profiler inflates every call) | {grand:.3f} s | |")


if __name__ == "__main__":
    main()
