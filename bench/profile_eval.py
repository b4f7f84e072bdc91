"""Profile one cold `harness eval` of the 1066 rotten_tomatoes test reviews against a local
OpenAI-compatible server (tests/http_stub.py in its own process, so its CPU is not the client's).

The spec is generated: the rotten_tomatoes dataset (whole test split), one prompt
(`prompts/sentiment_json.j2` as json_object, or `sentiment_label.j2` as text), one `openai` model
with `base_url` at the stub, `--no-baselines --cache off`. The eval runs in this process, under
cProfile (`--profiler cprofile`, default: a `.prof` file plus the top functions by own time and by
cumulative time) or py-spy (`--profiler py-spy`: a sampled flame graph of a `harness eval`
subprocess, `--native` off). Wall and CPU of the eval itself are printed either way.

    HARNESS_DATA_DIR=/work/shared/datasets python bench/profile_eval.py --out /tmp/prof
    HARNESS_DATA_DIR=/work/shared/datasets python bench/profile_eval.py --profiler py-spy --out /tmp/prof

What a line of the cProfile output means: `tottime` is CPU time (the profiler's clock is
`time.process_time`, so waiting on the server counts nothing) in the function itself, `cumtime`
includes what it calls; `bench/profile_split.py eval.prof` sums own time by where the code lives. Profiling inflates every Python call, so compare shares, not totals;
take wall and CPU figures from bench/throughput.py (no profiler attached).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_spec(folder: Path, base_url: str, mode: str, concurrency: int, provider: str = "openai", *,
               model: str = "stub-model", params: dict | None = None, options: dict | None = None) -> Path:
    """A one-prompt spec over the whole rotten_tomatoes test split (1066 reviews)."""
    folder.mkdir(parents=True, exist_ok=True)
    template = "sentiment_json.j2" if mode != "text" else "sentiment_label.j2"
    spec = {
        "name": "throughput",
        "dataset": {
            "source": "cornell-movie-review-data/rotten_tomatoes", "split": "test", "train_split": None,
            "text_field": "text", "label_field": "label", "label_map": {0: "negative", 1: "positive"},
        },
        "labels": [{"name": "negative", "description": "The reviewer dislikes the movie."},
                   {"name": "positive", "description": "The reviewer likes the movie."}],
        "prompts": [{"name": mode, "template": str(ROOT / "prompts" / template), "mode": mode}],
        "output": {"shape": "label"},
        "models": [{"provider": provider, "model": model, "base_url": base_url,
                    "concurrency": concurrency, "timeout_s": 60, "options": options or {},
                    "params": params or {"temperature": 0, "max_tokens": 32, "seed": 0}}],
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "http_stub.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    return server, server.stdout.readline().strip()


def eval_args(spec: Path, out: Path) -> list[str]:
    return ["eval", str(spec), "--no-baselines", "--cache", "off", "--quiet", "--out", str(out)]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile_cprofile(spec: Path, out: Path, top: int) -> None:
    import cProfile
    import pstats

    from harness.cli import main as harness_main

    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting on the server is not a cost
    wall0, cpu0 = time.perf_counter(), cpu_s()
    profiler.enable()
    try:
        code = harness_main(eval_args(spec, out / "run"))
    finally:
        profiler.disable()
    if code:
        raise SystemExit(f"harness eval exited {code}")
    wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
    profiler.dump_stats(out / "eval.prof")
    print(f"eval under cProfile: wall {wall:.2f} s, CPU {cpu:.2f} s (profiler overhead included)")
    stats = pstats.Stats(str(out / "eval.prof"))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def profile_pyspy(spec: Path, out: Path) -> None:
    svg = out / "eval.svg"
    command = ["py-spy", "record", "--rate", "250", "--output", str(svg), "--format", "flamegraph", "--",
               sys.executable, "-m", "harness.cli", *eval_args(spec, out / "run")]
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"py-spy flame graph: {svg} (wall {time.perf_counter() - t0:.2f} s with sampling)")
    raw = out / "eval.txt"
    subprocess.run(command[:4] + ["--output", str(raw), "--format", "raw"] + command[8:], check=True)
    print(f"collapsed stacks (one line per stack, count last): {raw}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the profile and the run")
    parser.add_argument("--profiler", choices=("cprofile", "py-spy"), default="cprofile")
    parser.add_argument("--mode", choices=("json_object", "text"), default="json_object")
    parser.add_argument("--provider", default="openai", help="openai, llamacpp or vllm (all with base_url)")
    parser.add_argument("--client", choices=("auto", "sdk"), default="auto",
                        help="the model's options.client: auto (the direct client) or sdk (the openai SDK)")
    parser.add_argument("--latency", type=float, default=0.1, help="stub seconds per answer")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--top", type=int, default=45, help="cprofile: lines per table")
    args = parser.parse_args()
    if not os.environ.get("HARNESS_DATA_DIR"):
        parser.error("set HARNESS_DATA_DIR (the rotten_tomatoes dataset folder's parent)")
    args.out.mkdir(parents=True, exist_ok=True)
    server, base_url = start_stub(args.latency)
    try:
        spec = write_spec(args.out / "spec", base_url, args.mode, args.concurrency, args.provider,
                          options={"client": args.client})
        if args.profiler == "cprofile":
            profile_cprofile(spec, args.out, args.top)
        else:
            profile_pyspy(spec, args.out)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
