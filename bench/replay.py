"""Benchmark: a fully cached replay of the rotten_tomatoes spec (its examples × every prompt).

The spec samples `dataset.limit: 300` of the 1066 test reviews, and the committed fixture holds
exactly those requests; the output says how many examples were replayed.

    HARNESS_DATA_DIR=../shared/datasets python bench/replay.py [--repeat 5] [--fixture FILE]

It times the real command, `harness eval specs/rotten_tomatoes.yaml --cache replay --no-baselines`, in fresh
processes (medians of --repeat runs), against:

* `python -c pass` — interpreter start, which no harness change can remove;
* the same replay with `--limit 10` — fixed costs (imports, spec, templates, dataset, scoring set-up);
  the per-example overhead is the slope (full − limit 10) / (examples − 10);
* the same replay from the diskcache folder (`--no-fixture --cache-dir`) instead of the fixture.

Responses come from the committed fixture (specs/fixtures/rotten_tomatoes.jsonl) when it exists, else
from SYNTHETIC entries: the exact request bodies the runner would send (built by the runner's own
code, so every lookup hits) paired with plausible SmolLM2-like answers. Synthetic entries measure
harness overhead only; their accuracy figures mean nothing. The output says which source was used.
It also lists which heavy modules a replay imports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "rotten_tomatoes.yaml"
COMMITTED = ROOT / "specs" / "fixtures" / "rotten_tomatoes.jsonl"
HEAVY = ("sklearn", "scipy", "openai", "groq", "httpx", "httpx2", "torch", "pandas", "pyarrow", "datasets", "sentence_transformers")


def synthesize(fixture: Path, cache_dir: Path) -> int:
    """Write a fixture of plausible answers to every request the spec makes, and import it."""
    sys.path.insert(0, str(ROOT))
    from harness.cache import import_fixture, make_entry, planned_requests, write_fixture
    from harness.spec import load_spec
    from providers.base import ChatResponse

    spec = load_spec(SPEC)
    rng = random.Random(0)
    labels = spec.label_names
    golds = {}
    from harness.data import load_eval_split

    for e in load_eval_split(spec).examples:
        golds[e.id] = e.gold
    entries = []
    for r in planned_requests(spec):
        gold = golds[r["example_id"]]
        label = gold if rng.random() < 0.6 else rng.choice([x for x in labels if x != gold])
        is_json = "response_format" in r["material"]["body"]
        text = '{\n    "label": "%s"\n}' % label if is_json else label
        response = ChatResponse(
            text=text, finish_reason="stop", served_model="smollm2",
            usage={"prompt_tokens": rng.randint(80, 200), "completion_tokens": 21 if is_json else 2},
            latency_s=round(rng.uniform(0.1, 0.6), 4),
        )
        entries.append((r["key"], make_entry(r["material"], response)))
    write_fixture(fixture, entries)
    import_fixture(cache_dir, fixture)
    return len(entries)


def timed(command: list[str], env: dict, repeat: int) -> tuple[float, list[float], float, float]:
    """(median wall, all walls, median CPU seconds, median peak RSS in MiB) of `repeat` runs in
    fresh processes. CPU time (user + system) and peak memory come from the kernel's accounting of
    that one child (`os.wait4`), which other work on the machine disturbs less than wall time."""
    walls, cpus, rss = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - t0)
        cpus.append(usage.ru_utime + usage.ru_stime)
        rss.append(usage.ru_maxrss / 1024)  # KiB on Linux
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {child.returncode}:\n{stderr}")
    return statistics.median(walls), walls, statistics.median(cpus), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fixture", type=Path, help="replay this fixture (default: the committed one, else synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic entries even if a fixture exists")
    parser.add_argument("--keep-fixture", type=Path, help="also copy the replayed fixture here (e.g. for bench/replay_breakdown.py)")
    args = parser.parse_args()
    if "HARNESS_DATA_DIR" not in os.environ:
        raise SystemExit("set HARNESS_DATA_DIR (e.g. ../shared/datasets)")

    work = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    cache_dir = work / "cache"
    fixture = args.fixture or (None if args.synthetic else (COMMITTED if COMMITTED.is_file() else None))
    if fixture is None:
        fixture = work / "synthetic.jsonl"
        n = synthesize(fixture, cache_dir)
        source = f"SYNTHETIC entries ({n}) built from the runner's exact request bodies"
    else:
        sys.path.insert(0, str(ROOT))
        from harness.cache import import_fixture

        n = import_fixture(cache_dir, fixture)
        source = f"fixture {fixture} ({n} entries)"

    if args.keep_fixture:
        shutil.copyfile(fixture, args.keep_fixture)
    harness = shutil.which("harness", path=str(Path(sys.executable).parent)) or "harness"
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache_dir)}
    # The spec's encoder baselines are not responses and not cached here (they train models and
    # import torch): --no-baselines keeps the measurement on the replay path.
    replay = [harness, "eval", str(SPEC), "--cache", "replay", "--quiet", "--no-baselines"]

    results = {}
    results["python -c pass"] = timed([sys.executable, "-c", "pass"], env, args.repeat)
    results["replay, fixture, --limit 10"] = timed(replay + ["--fixture", str(fixture), "--limit", "10", "--out", str(work / "r10")], env, args.repeat)
    results["replay, fixture, the spec's examples"] = timed(replay + ["--fixture", str(fixture), "--out", str(work / "rfull")], env, args.repeat)
    results["replay, cache folder, --limit 10"] = timed(replay + ["--no-fixture", "--limit", "10", "--out", str(work / "d10")], env, args.repeat)
    results["replay, cache folder, the spec's examples"] = timed(replay + ["--no-fixture", "--out", str(work / "dfull")], env, args.repeat)

    probe = (
        "import sys; from harness.cli import main; "
        f"rc = main({json.dumps(replay[1:] + ['--fixture', str(fixture), '--out', str(work / 'probe')])}); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(rc)"
    )
    probe_out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    heavy = probe_out.stdout.strip().splitlines()[-1] if probe_out.stdout.strip() else probe_out.stderr[-500:]

    rows = json.loads((work / "rfull" / "metrics.json").read_text())["results"]
    examples = rows[0]["n"]
    print(f"source: {source}; {examples} examples per full replay")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at the end, Python {sys.version.split()[0]}; "
          f"medians of {args.repeat} runs\n")
    print("| command | median wall | median CPU (user+sys) | median peak RSS | walls |")
    print("|---|---:|---:|---:|---|")
    for name, (median, walls, cpu, rss) in results.items():
        print(f"| {name} | {median * 1000:.0f} ms | {cpu * 1000:.0f} ms | {rss:.0f} MiB | "
              f"{', '.join(f'{w * 1000:.0f}' for w in walls)} |")
    for label, small, full in (
        ("fixture", "replay, fixture, --limit 10", "replay, fixture, the spec's examples"),
        ("cache folder", "replay, cache folder, --limit 10", "replay, cache folder, the spec's examples"),
    ):
        for kind, i in (("wall", 0), ("CPU", 2)):
            slope = (results[full][i] - results[small][i]) / (examples - 10)
            beyond = (results[full][i] - results["python -c pass"][i]) / examples
            print(
                f"{label}, {kind}: per-example cost (slope between --limit 10 and {examples}; {len(rows)} requests "
                f"per example) {slope * 1000:.3f} ms; (whole command − interpreter start) / examples "
                f"{beyond * 1000:.3f} ms; whole command {results[full][i]:.2f} s"
            )
    print(f"\nheavy modules imported by a replay: {heavy}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
