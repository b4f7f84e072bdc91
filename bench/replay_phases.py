"""Where a large replay's memory goes, phase by phase, in one process.

    python bench/replay_phases.py FOLDER [--tracemalloc]

FOLDER is one size's folder kept by `bench/replay_scale.py --keep DIR` (DIR/n30000: spec.yaml,
data/, cache/). The real `harness eval SPEC --cache replay --no-fixture ...` runs in this process
(harness.cli.main) with the harness's stage functions wrapped; a thread samples VmRSS every 5 ms.
For every phase it prints the RSS when it started, the highest RSS while it ran and the RSS when it
ended, so the peak of the run can be pinned on a phase and what each phase keeps can be read off.
With `--tracemalloc` it also prints, per phase, Python's traced peak and the ten source lines
holding the most memory at that phase's end (tracing slows the run about 3x and adds its own
memory to the RSS, so read the RSS figures from a run without it).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (module, attribute path): the stages of `run_eval` and of report.html, outermost first. A phase
# that runs inside another (a view inside the report) is indented under it.
PHASES = (
    ("harness.runner", "Prepared.__init__"),
    ("harness.runner", "replay_precheck"),
    ("harness.runner", "run_model"),
    ("harness.records", "read_predictions"),
    ("harness.suites", "score_suites"),
    ("harness.metrics.assemble", "build_rows"),
    ("harness.report", "write_run_files"),
    ("harness.html_report", "write_html_report"),
    ("harness.html_report", "load_view"),
    ("harness.html_report", "all_pairs"),
    ("harness.html_report", "section_failures"),
    ("harness.html_report", "browser_json"),  # a generator: measured over its whole iteration
)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Polls VmRSS; `active` maps each running phase (its order number) to its highest RSS so far."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.active: dict[int, float] = {}
        self.overall = 0.0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            value = rss_mib()
            self.overall = max(self.overall, value)
            for key, peak in list(self.active.items()):
                if value > peak:
                    self.active[key] = value
            time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    folder = args.folder.resolve()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    sampler = Sampler()
    sampler.start()
    if args.tracemalloc:
        tracemalloc.start(1)
    # (order started, depth, name, RSS at start, peak, RSS at end, CPU s, traced peak, top lines)
    records: list[tuple[int, int, str, float, float, float, float, float, list[str]]] = []
    depth = [0]
    counter = [0]

    def wrap(name: str, fn):
        is_async = hasattr(fn, "__code__") and fn.__code__.co_flags & 0x80

        def before():
            depth[0] += 1
            counter[0] += 1
            start = rss_mib()
            sampler.active[counter[0]] = start
            if args.tracemalloc:
                tracemalloc.reset_peak()
            return (counter[0], depth[0] - 1, start), time.process_time()

        def after(started, cpu0):
            order, level, start = started
            depth[0] -= 1
            peak = max(sampler.active.pop(order), rss_mib())
            top: list[str] = []
            traced_peak = 0.0
            if args.tracemalloc:
                traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
                snapshot = tracemalloc.take_snapshot()
                for stat in snapshot.statistics("lineno")[:10]:
                    frame = stat.traceback[0]
                    top.append(f"{stat.size / 2**20:8.1f} MiB {stat.count:>9} blocks  "
                               f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}")
            records.append((order, level, name, start, peak, rss_mib(), time.process_time() - cpu0,
                            traced_peak, top))

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def wrapper(*a, **k):
                start, cpu0 = before()
                try:
                    yield from fn(*a, **k)
                finally:
                    after(start, cpu0)
        elif is_async:
            @functools.wraps(fn)
            async def wrapper(*a, **k):
                start, cpu0 = before()
                try:
                    return await fn(*a, **k)
                finally:
                    after(start, cpu0)
        else:
            @functools.wraps(fn)
            def wrapper(*a, **k):
                start, cpu0 = before()
                try:
                    return fn(*a, **k)
                finally:
                    after(start, cpu0)
        return wrapper

    for module_name, path in PHASES:
        module = importlib.import_module(module_name)
        owner, attr = module, path
        if "." in path:
            cls, attr = path.split(".")
            owner = getattr(module, cls)
        setattr(owner, attr, wrap(path, getattr(owner, attr)))
        # names imported into other modules at import time (`from harness.x import f`)
        for other in list(sys.modules.values()):
            if owner is module and getattr(other, "__name__", "").startswith("harness") and other is not module \
                    and getattr(other, attr, None) is not None and getattr(getattr(other, attr), "__wrapped__", None) is None \
                    and getattr(other, attr) is getattr(owner, attr).__wrapped__:
                setattr(other, attr, getattr(owner, attr))

    from harness.cli import main as cli_main

    out = Path(f"/tmp/replay-phases-{os.getpid()}")
    argv = ["eval", str(folder / "spec.yaml"), "--cache", "replay", "--no-fixture", "--cache-dir", str(folder / "cache"),
            "--no-baselines", "--quiet", "--out", str(out)]
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    start_rss = rss_mib()
    try:
        code = cli_main(argv)
    except SystemExit as exc:
        code = exc.code
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sampler.stop = True
    print(f"{folder.name}: exit {code}, {wall:.1f} s wall, {cpu:.1f} s CPU; RSS {start_rss:.0f} MiB after imports, "
          f"peak {sampler.overall:.0f} MiB (sampled), ru_maxrss {__import__('resource').getrusage(0).ru_maxrss / 1024:.0f} MiB\n")
    print("| phase | RSS at start | peak during | RSS at end | CPU s |" + (" traced peak |" if args.tracemalloc else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if args.tracemalloc else ""))
    records.sort()
    for _, depth_, name, start, peak, end, phase_cpu, traced, _ in records:
        pad = "&nbsp;&nbsp;" * depth_
        print(f"| {pad}{name} | {start:.0f} | {peak:.0f} | {end:.0f} | {phase_cpu:.1f} |"
              + (f" {traced:.0f} |" if args.tracemalloc else ""))
    if args.tracemalloc:
        for *_, name, _start, _peak, _end, _cpu, _traced, top in records:
            print(f"\n{name}: largest holders at its end")
            print("\n".join(top))
    import shutil

    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
