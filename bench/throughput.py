"""Throughput of the HTTP provider path at concurrency 1, 8 and 64, against the ideal.

Two local servers:

* `stub`: tests/http_stub.py, a real HTTP server (one thread per connection) that answers every chat
  request after a fixed latency L. The ideal wall time for N requests at concurrency c is
  N × L / c; whatever the harness adds (rendering, the SDK, the scheduler, validation, writing
  predictions) shows up as the gap.
* `llama`: a real llama-server with SmolLM2-135M (`--parallel 8` slots) on this 2-core machine. It is
  CPU-bound, so concurrency beyond what its batching absorbs cannot help; "ideal" there is still
  N × L / c with L the median latency of the sequential run, to show how far from it a CPU-bound
  server stays.

Each measurement is a full `run_eval` (cache off) of a generated spec with N examples, one prompt.

    HARNESS_DATA_DIR=../shared/datasets python bench/throughput.py stub --n 256 --latency 0.1
    python bench/throughput.py llama --n 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.runner import run_eval  # noqa: E402
from harness.spec import load_spec  # noqa: E402


def write_spec(folder: Path, n: int, model: dict, mode: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = ["good", "dull", "moving", "tedious", "charming", "clumsy"]
    rows = [{"text": f"a {words[i % len(words)]} film, take {i}", "label": "positive" if i % 2 == 0 else "negative"}
            for i in range(n)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "p.j2").write_text(
        "{% block system %}You are a sentiment classifier for movie reviews.{% endblock %}"
        "{% block user %}Review: {{ text }}\n\nIs the sentiment of this review negative or positive? "
        "Answer with one word: negative or positive.{% endblock %}"
    )
    spec = {
        "name": "throughput",
        "dataset": {"source": "data.jsonl", "train_split": None},
        "labels": [{"name": "negative"}, {"name": "positive"}],
        "prompts": [{"name": "p", "template": "p.j2", "mode": mode}],
        "models": [model],
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def measure(spec_path: Path, concurrency: int, out: Path) -> tuple[float, dict]:
    spec = load_spec(spec_path)
    t0 = time.perf_counter()
    outcome = asyncio.run(run_eval(spec, out_dir=out, concurrency=concurrency))
    wall = time.perf_counter() - t0
    return wall, outcome.metrics[0]


def row(label: str, n: int, c: int, latency: float, wall: float, metrics: dict) -> str:
    """`wall`: the whole run_eval (data, prompts, requests, scoring, report); `loop`: the requests
    only (the runner's per-prompt wall time), which is what N × L / c predicts."""
    ideal = n * latency / c
    loop = metrics["wall_s"]
    return (f"| {label} | {n} | {c} | {latency * 1000:.0f} ms | {ideal:.2f} s | {loop:.2f} s | {wall:.2f} s | "
            f"{n / loop:.1f} | {ideal / loop * 100:.0f}% | {metrics['validity'] * 100:.0f}% |")


HEADER = ("| server | N | concurrency | latency L | ideal N×L/c | request loop | whole run | req/s (loop) "
          "| ideal/loop | valid |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def bench_stub(n: int, latency: float, concurrencies: list[int], repeats: int) -> list[str]:
    # the server runs in its own process, so the client measured here does not share its GIL
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "http_stub.py"), "--latency", str(latency)],
                              stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        base_url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            lines = _bench_stub(base_url, Path(tmp), n, latency, concurrencies, repeats)
    finally:
        server.terminate()
        server.wait()
    return lines


def _bench_stub(base_url: str, tmp: Path, n: int, latency: float, concurrencies: list[int], repeats: int) -> list[str]:
    lines = []
    model = {"provider": "openai", "model": "stub-model", "base_url": base_url, "timeout_s": 60}
    spec = write_spec(tmp, n, model, "text")
    for c in concurrencies:
        runs = sorted((measure(spec, c, tmp / f"run-{c}-{r}") for r in range(repeats)),
                      key=lambda run: run[1]["wall_s"])
        wall, metrics = runs[len(runs) // 2]  # the median run by request-loop time
        lines.append(row("stub", n, c, latency, wall, metrics))
        print(lines[-1], flush=True)
    return lines


def bench_llama(n: int, concurrencies: list[int], parallel: int) -> list[str]:
    from providers.launcher import ManagedServer, free_port
    from providers.llamacpp import bundled_gguf, llama_server_binary

    port = free_port()
    server = ManagedServer(
        [llama_server_binary(), "-m", str(bundled_gguf("smollm2")), "--host", "127.0.0.1", "--port", str(port),
         "-t", "2", "-np", str(parallel), "-c", str(1024 * parallel), "--alias", "smollm2", "--no-webui",
         "--no-repack"],
        port=port, name="llama-server (bench)",
    )
    asyncio.run(server.start())
    lines = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = {"provider": "openai", "model": "smollm2", "base_url": server.base_url + "/v1",
                     "timeout_s": 600, "params": {"temperature": 0, "max_tokens": 8, "seed": 0}}
            spec = write_spec(Path(tmp), n, model, "text")
            measure(write_spec(Path(tmp) / "warm", 4, model, "text"), 1, Path(tmp) / "warm-run")
            # L: the median single-request latency of the sequential (concurrency 1) run
            results = [(c, *measure(spec, c, Path(tmp) / f"run-{c}")) for c in sorted(concurrencies)]
            latency = next((m["latency_p50_s"] for c, _, m in results if c == 1), results[0][2]["latency_p50_s"])
            for c, wall, metrics in results:
                lines.append(row(f"llama-server -np {parallel}", n, c, latency, wall, metrics))
                print(lines[-1], flush=True)
    finally:
        server.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=("stub", "llama"))
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.1, help="stub: seconds per answer")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=1, help="stub: runs per concurrency (median)")
    parser.add_argument("--parallel", type=int, default=8, help="llama: server slots")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    print(HEADER)
    if args.server == "stub":
        bench_stub(args.n, args.latency, concurrencies, args.repeats)
    else:
        bench_llama(args.n, concurrencies, args.parallel)


if __name__ == "__main__":
    main()
