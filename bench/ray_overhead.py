"""What `--executor ray` costs on one machine: the local executor vs the Ray HTTP executor.

Two measurements, each from an empty response cache:

1. `stub` — no model: an OpenAI-compatible stub on 127.0.0.1 answers every chat request at once
   with a fixed completion, so the wall time is the executor's own: Ray's import and start-up
   (`ray.init`), the pipeline's actor start, and the per-request cost of Ray Data + aiohttp, against
   the local path (OpenAI SDK over httpx) on the same requests.
2. `llama` — the real llama-server with SmolLM2 (started once; both executors attach to it, so its
   load time is in neither): the same spec's bare-label requests answered by each executor. Run it
   under the llama-server lock: `flock /tmp/llama-server.lock python bench/ray_overhead.py llama`.

Each row is a fresh `run_eval` in this process with its own cache folder; Ray is started and shut
down inside the Ray rows (a local instance, `num_cpus=2`, no dashboard), as `harness eval
--executor ray` does. Prints a Markdown table (bench/RESULTS.md, "Ray executor overhead").

    HARNESS_DATA_DIR=../shared/datasets python bench/ray_overhead.py stub --n 200
    HARNESS_DATA_DIR=../shared/datasets flock /tmp/llama-server.lock python bench/ray_overhead.py llama --n 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

COMPLETION = json.dumps({
    "id": "x", "object": "chat.completion", "created": 0, "model": "smollm2",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "negative"}}],
    "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
}).encode()


class Stub:
    """Answers every POST with COMPLETION at once; counts them."""

    def __init__(self) -> None:
        stub = self
        self.count = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.count += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(COMPLETION)))
                self.end_headers()
                self.wfile.write(COMPLETION)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def spec_for(folder: Path, url: str, concurrency: int, batch_size: int):
    from harness.spec import load_spec
    from llama_proxy import BARE_LABEL, write_spec

    extra = f"execution:\n  engine: ray\n  num_cpus: 2\n  replicas: 1\n  batch_size: {batch_size}\n"
    return load_spec(write_spec(folder, url, templates={"bare_label": BARE_LABEL}, concurrency=concurrency,
                                max_tokens=4, extra=extra))


def one(spec, n: int, ray: bool, cache_dir: Path) -> dict:
    from harness.cache import ResponseCache
    from harness.ray_executor import RayExecutor
    from harness.runner import run_eval

    cache = ResponseCache("rw", cache_dir)
    executor = RayExecutor(spec.execution) if ray else None
    t0 = time.perf_counter()
    try:
        outcome = asyncio.run(run_eval(spec, out_dir=cache_dir.parent / f"run-{cache_dir.name}", limit=n, cache=cache,
                                       baselines=[], prefill=executor.prefill if executor else None))
    finally:
        cache.close()
    total = time.perf_counter() - t0
    row = {"executor": "ray" if ray else "local", "n": n, "total_s": round(total, 2),
           "accuracy": next(m for m in outcome.metrics if m.get("prompt") == "bare_label").get("accuracy"),
           "sent_locally": outcome.run["requests"][spec.models[0].id]["sent"]}
    if executor is not None:
        model = executor.record["models"][spec.models[0].id]
        row["ray_init_s"] = executor.record.get("ray_init_s")
        row["ray_pass_s"] = model.get("wall_s")
        row["sent_by_ray"] = model.get("stored", 0) + model.get("errors", 0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=("stub", "llama"))
    parser.add_argument("--n", default="60", help="examples (= requests: one bare-label prompt), comma-separated")
    parser.add_argument("--concurrency", type=int, default=4, help="local concurrency = Ray batch_size = server slots")
    parser.add_argument("--ray-batch", default="", help="Ray batch sizes to try, comma-separated (default: --concurrency)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    t0 = time.perf_counter()
    import ray  # noqa: F401 - timed: what the first --executor ray run pays before ray.init
    import ray.data.llm  # noqa: F401
    import_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.target == "stub":
            stub = Stub()
            url, server = stub.url, None
        else:
            from llama_proxy import LlamaServer

            server = LlamaServer(parallel=args.concurrency).__enter__()
            url = server.url
        try:
            batches = [int(b) for b in args.ray_batch.split(",") if b] or [args.concurrency]
            for r in range(args.repeat):
                for n in [int(v) for v in args.n.split(",")]:
                    for batch in [None] + batches:
                        spec = spec_for(tmp_path / f"spec-{batch}", url, args.concurrency, batch or args.concurrency)
                        row = one(spec, n, batch is not None, tmp_path / f"cache-{r}-{n}-{batch}")
                        row["batch_size"] = batch
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    load = os.getloadavg()[0]
    print(f"\n`import ray, ray.data.llm`: {import_s:.2f} s; load average at the end: {load:.1f}\n")
    print("| target | executor | Ray batch | n | total s | ray.init s | Ray pass s | total per request ms | accuracy | sent locally |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        per = (row["total_s"] / row["n"]) * 1000
        print(f"| {args.target} | {row['executor']} | {row['batch_size'] or '-'} | {row['n']} | {row['total_s']:.2f} | "
              f"{row.get('ray_init_s') or '-'} | {row.get('ray_pass_s') or '-'} | {per:.0f} | {row['accuracy']} | "
              f"{row['sent_locally']} |")
    # Ray's marginal cost per request: the slope of its pass time (minus ray.init) between two sizes
    sizes = sorted({row["n"] for row in rows})
    if len(sizes) > 1:
        print()
        for batch in [None] + sorted({row["batch_size"] for row in rows if row["batch_size"]}):
            for label, key in ((("ray", "ray_pass_s"),) if batch else (("local", "total_s"),)):
                pick = [row for row in rows if row["batch_size"] == batch]
                by_n = {row["n"]: row[key] - (row.get("ray_init_s") or 0) for row in pick}
                lo, hi = sizes[0], sizes[-1]
                slope = (by_n[hi] - by_n[lo]) / (hi - lo) * 1000
                fixed = by_n[lo] - slope * lo / 1000
                what = f"Ray (batch {batch}) pass without ray.init" if label == "ray" else "local run"
                print(f"- {what}: {slope:.1f} ms per request, {fixed:.1f} s fixed (sizes {lo} and {hi})")


if __name__ == "__main__":
    main()
