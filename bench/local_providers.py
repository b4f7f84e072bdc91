"""Benchmarks of the two local-model providers of issue 4: vllm (launch readiness) and transformers.

    HARNESS_DATA_DIR=../shared/datasets python bench/local_providers.py vllm-ready [--repeat 5]
    HARNESS_DATA_DIR=../shared/datasets python bench/local_providers.py transformers [--n 48]

`vllm-ready`: vLLM cannot run here, so the launched server is its test stand-in: a real llama-server
with SmolLM2 (a) started directly through `options.command`, and (b) behind tests/vllm_standin.py
started as the `vllm` executable (`vllm serve ...` -> a recording front with /version). Reported:
the provider's `ready_after_s` (launch until `/health` is 200 and `/v1/models` lists the served
name) and the whole `start()`, medians over --repeat launches.

`transformers`: SmolLM2-135M-Instruct's GGUF loaded through transformers (dequantized to float32),
the spec's bare_label prompt over the first N rotten_tomatoes test examples, greedy, max_tokens 12.
Reported: load time, then for batch_size 1, 4 and 8 (concurrency = batch size, same loaded model)
the wall time, examples/s and the batch sizes generate() really got. Bodies are built by the
runner's own `request_body`.

Each run prints a Markdown table and the 1-minute load average before and after: on a shared 2-core
machine other processes change the numbers a lot, so read them with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def vllm_ready(repeat: int) -> None:
    import stat
    import tempfile

    from harness.spec import Model, Params
    from providers.llamacpp import bundled_gguf, llama_server_binary
    from providers.vllm import VllmProvider

    binary, gguf = llama_server_binary(), str(bundled_gguf("smollm2"))
    direct = [binary, "-m", gguf, "--host", "127.0.0.1", "--port", "{port}", "--alias", "{served_name}",
              "-t", "2", "-np", "2", "--no-repack", "--no-webui"]
    folder = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    fake = folder / "vllm"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests' / 'vllm_standin.py'} vllm-cli \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    os.environ.update(STANDIN_LLAMA_SERVER=binary, STANDIN_GGUF=gguf, STANDIN_VERSION="0.33.0")
    setups = {
        "llama-server via options.command": {"command": direct},
        "`vllm serve` stand-in (front + llama-server)": {"binary": str(fake)},
    }
    print(f"load average before: {load_average()}")
    print("| launched server | ready_after_s (median) | start() s (median) | all ready_after_s |")
    print("|---|---|---|---|")
    for label, options in setups.items():
        ready, total = [], []
        for _ in range(repeat):
            provider = VllmProvider(Model(provider="vllm", model="smol", params=Params(), options=options))

            async def once():
                t0 = time.perf_counter()
                await provider.start()
                elapsed = time.perf_counter() - t0
                await provider.stop()
                return elapsed

            total.append(asyncio.run(once()))
            ready.append(provider.ready_after_s)
        print(f"| {label} | {statistics.median(ready):.2f} | {statistics.median(total):.2f} | "
              f"{', '.join(f'{r:.2f}' for r in ready)} |")
    print(f"load average after: {load_average()}")


def transformers_throughput(n: int, batch_sizes: list[int]) -> None:
    from harness.runner import Prepared, request_body
    from harness.spec import Model, Params, load_spec
    from providers.transformers import TransformersProvider

    spec = load_spec(ROOT / "specs" / "rotten_tomatoes.yaml")
    prepared = Prepared(spec, prompt_names=["bare_label"])
    examples = prepared.eval.examples[:n]
    model = Model(provider="transformers", model="smollm2", params=Params(temperature=0, max_tokens=12))
    provider = TransformersProvider(model)
    pp = prepared.prompts[0]
    bodies = [request_body(prepared, pp, e, model, provider) for e in examples]
    print(f"load average before: {load_average()}")

    async def main():
        t0 = time.perf_counter()
        await provider.start()
        print(f"start (load {provider.load_s:.1f}s + warm-up): {time.perf_counter() - t0:.1f}s, "
              f"{n} examples, bare_label, greedy, max_tokens 12\n")
        print("| batch_size = concurrency | wall s | examples/s | mean completion tokens | batches (sizes) |")
        print("|---|---|---|---|---|")
        for size in batch_sizes:
            provider.options.batch_size = size
            provider.batch_sizes.clear()
            queue = list(bodies)
            answers = []

            async def worker():
                while queue:
                    answers.append(await provider.send(queue.pop()))

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(size)))
            wall = time.perf_counter() - t
            tokens = statistics.mean(a.usage.get("completion_tokens", 0) for a in answers)
            sizes = provider.batch_sizes
            print(f"| {size} | {wall:.1f} | {n / wall:.2f} | {tokens:.1f} | {len(sizes)} "
                  f"(median {statistics.median(sizes):.0f}) |")
        await provider.stop()

    asyncio.run(main())
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("vllm-ready")
    a.add_argument("--repeat", type=int, default=5)
    b = sub.add_parser("transformers")
    b.add_argument("--n", type=int, default=48)
    b.add_argument("--batch-sizes", default="1,4,8")
    args = parser.parse_args()
    if args.what == "vllm-ready":
        vllm_ready(args.repeat)
    else:
        transformers_throughput(args.n, [int(x) for x in args.batch_sizes.split(",")])
