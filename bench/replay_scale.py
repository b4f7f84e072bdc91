"""Benchmark: replay at scale. A synthetic dataset of N examples and a response cache holding an
answer to every request of a spec over it, both generated into a temporary folder (never
committed), then the real command in a fresh process:

    harness eval SPEC --cache replay --no-fixture --cache-dir DIR --no-baselines --quiet

for N = 10k, 30k, 100k (default). For each it prints wall time, CPU time (user + system of the
child) and peak RSS (the kernel's `ru_maxrss` of that child), and the time per example, so that
linearity can be read off: the per-example figure should stay flat as N grows.

    python bench/replay_scale.py [--sizes 10000 30000 100000] [--prompts 2] [--keep DIR]
    python bench/replay_scale.py --sizes 30000 --reuse DIR   # rerun on folders kept by --keep DIR

`--reuse DIR` skips the generation (a 100k cache takes a minute to build) and replays DIR/nN as
kept by an earlier `--keep DIR`, so the replay itself can be rerun while iterating on the code;
`bench/replay_phases.py DIR/nN` breaks one such replay down by phase.

The spec: one OpenAI-compatible model at an address nothing listens on (a replay never calls a
model), `--prompts` prompts (json_schema, then a bare label: each example costs that many
requests), binary sentiment labels. The cache entries are built by the runner's own
`planned_requests` (exact bodies, keys and material), so every lookup hits; the answers are
plausible labels (70% correct), so the figures measure harness overhead only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("film", "plot", "actor", "scene", "score", "story", "script", "ending", "camera", "cast")
GOOD = ("moving", "sharp", "funny", "tender", "bold")
BAD = ("dull", "flat", "tired", "clumsy", "hollow")


def write_dataset(folder: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            positive = i % 2 == 1
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
            words.insert(rng.randrange(len(words)), rng.choice(GOOD if positive else BAD))
            f.write(json.dumps({"text": f"review {i}: " + " ".join(words), "label": int(positive)}) + "\n")


def write_spec(folder: Path, prompts: int) -> Path:
    (folder / "json.j2").write_text(
        "{% block system %}Classify the sentiment of the movie review. Answer as JSON.{% endblock %}"
        "{% block user %}{{ text }}{% endblock %}")
    (folder / "label.j2").write_text(
        "{% block system %}Answer with one word: negative or positive.{% endblock %}"
        "{% block user %}{{ text }}{% endblock %}")
    chosen = [{"name": "json_schema", "template": "json.j2", "mode": "json_schema"},
              {"name": "bare_label", "template": "label.j2", "mode": "text"}][:prompts]
    spec = {
        "name": "replay_scale",
        "dataset": {"source": "data", "split": "test", "train_split": None, "label_map": {0: "negative", 1: "positive"}},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": chosen,
        # nothing listens on port 9: a replay never calls the model
        "models": [{"provider": "openai", "model": "synthetic", "base_url": "http://127.0.0.1:9/v1",
                    "params": {"temperature": 0, "max_tokens": 16, "seed": 0}}],
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec, indent=1))
    return path


def fill_cache(spec_path: Path, cache_dir: Path, seed: int = 0) -> int:
    """An answer for every planned request, written in transactions of 5000 entries."""
    sys.path.insert(0, str(ROOT))
    from harness.cache import make_entry, open_disk_cache
    from harness.data import load_eval_split
    from harness.runner import planned_requests
    from harness.spec import load_spec
    from providers.base import ChatResponse

    spec = load_spec(spec_path)
    golds = {e.id: e.gold for e in load_eval_split(spec).examples}
    rng = random.Random(seed)
    disk = open_disk_cache(cache_dir)
    n = 0
    try:
        planned = planned_requests(spec)
        for start in range(0, len(planned), 5000):
            with disk.transact():
                for r in planned[start:start + 5000]:
                    gold = golds[r["example_id"]]
                    label = gold if rng.random() < 0.7 else ("positive" if gold == "negative" else "negative")
                    is_json = "response_format" in r["material"]["body"]
                    response = ChatResponse(
                        text=json.dumps({"label": label}) if is_json else label, finish_reason="stop",
                        served_model="synthetic", latency_s=round(rng.uniform(0.05, 0.3), 4),
                        usage={"prompt_tokens": rng.randint(40, 90), "completion_tokens": 6 if is_json else 1},
                    )
                    disk.set(r["key"], make_entry(r["material"], response))
                    n += 1
    finally:
        disk.close()
    return n


def measure(command: list[str], cwd: Path, env: dict) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stderr) of one fresh process."""
    t0 = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{stderr[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr


def generate(folder: Path, n: int, prompts: int) -> int:
    """The dataset, spec and cache of one size (run in its own process by `main`)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_dataset(folder / "data", n)
    return fill_cache(write_spec(folder, prompts), folder / "cache")


def main() -> None:
    if sys.argv[1:2] == ["--generate"]:  # the child process of main's generation step
        print(generate(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--prompts", type=int, choices=(1, 2), default=2)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it (default: a temp dir, removed)")
    parser.add_argument("--reuse", type=Path, help="replay the folders an earlier --keep DIR left (nothing generated)")
    args = parser.parse_args()
    if args.keep and args.reuse:
        parser.error("--keep and --reuse exclude each other")

    work = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="harness-replay-scale-"))
    keep = args.keep is not None or args.reuse is not None
    rows = []
    prompts = args.prompts
    try:
        for n in args.sizes:
            folder = work / f"n{n}"
            spec = folder / "spec.yaml"
            if args.reuse:
                if not (spec.is_file() and (folder / "cache").is_dir()):
                    raise SystemExit(f"{folder}: no kept replay here (make one with --keep {args.reuse} --sizes {n})")
                entries, built = None, 0.0
            else:
                # Generated in a child process: Linux gives a child the peak RSS of the process
                # it was forked from (exec keeps the old memory's high-water mark), so building
                # 200k cache entries here first made the measured replay report this process's
                # ~390 MiB instead of its own.
                t0 = time.perf_counter()
                made = subprocess.run([sys.executable, __file__, "--generate", str(folder), str(n), str(args.prompts)],
                                      cwd=ROOT, capture_output=True, text=True)
                if made.returncode != 0:
                    raise SystemExit(f"generating {folder} failed:\n{made.stderr[-3000:]}")
                entries = int(made.stdout.split()[-1])
                built = time.perf_counter() - t0
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            command = [sys.executable, "-m", "harness.cli", "eval", str(spec), "--cache", "replay", "--no-fixture",
                       "--cache-dir", str(folder / "cache"), "--no-baselines", "--quiet", "--out", str(folder / "run")]
            wall, cpu, rss, stderr = measure(command, ROOT, env)
            metrics = json.loads((folder / "run" / "metrics.json").read_text())
            assert metrics["run"]["status"] == "complete", metrics["run"]["status_reasons"]
            hits = sum(r["cache_hits"] for r in metrics["run"]["requests"].values())
            prompts = len(metrics["run"]["prompts"])
            entries = hits if entries is None else entries  # reused: every request hit an entry
            rows.append((n, entries, hits, wall, cpu, rss))
            made = "reused" if args.reuse else f"built in {built:.0f}s"
            print(f"n={n}: {entries} cache entries {made}; replay {wall:.1f}s wall, {cpu:.1f}s CPU, "
                  f"{rss:.0f} MiB peak RSS, {hits} hits", flush=True)
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end, Python {sys.version.split()[0]}; "
          f"{prompts} prompt(s) per example\n")
    print("| examples | requests | wall | CPU (user+sys) | peak RSS | wall per example | CPU per example |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, entries, hits, wall, cpu, rss in rows:
        print(f"| {n:,} | {entries:,} | {wall:.1f} s | {cpu:.1f} s | {rss:.0f} MiB | {wall / n * 1e3:.3f} ms | {cpu / n * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
