"""The same requests through `harness eval` and through a bare aiohttp loop, interleaved in one run.

Every measured client is its own process, timed from the outside (wall clock, and user + system
CPU from `wait4`), so both figures include Python start-up and imports, as a user sees them:

* `harness` — `harness eval SPEC --no-baselines --cache off --quiet --concurrency C`, the spec from
  bench/profile_eval.py: the rotten_tomatoes test split (1066 reviews), one json_object prompt
  (`--mode text` for the bare-label prompt), one model at the server (`openai` with `base_url`;
  `llamacpp` attached by `base_url` for the llama run): the direct client (providers/http.py).
* `sdk` — the same command with the model's `options: {client: sdk}`: the official openai SDK.
* `fresh-cache` — `harness` with `--cache rw` into an empty `--cache-dir` (every answer is stored:
  the cold run of a user with the default cache). Not in the default `--clients`.
* `startup` — `harness` with `--limit 2`: the fixed cost (start-up imports, data, scoring, the
  report files) that every run pays whatever its size.
* `bare` — this script's own loop (`bare` subcommand): C asyncio workers over one
  aiohttp session, posting the harness's own request bodies (`planned_requests`, so byte-for-byte
  the same JSON values) encoded with orjson and decoding each reply with orjson. No validation, no
  records, no report: the floor a Python client can reach.

Rounds: each round runs every client once, in turn (the order reversed every other round),
against one server; the table gives medians over rounds. Servers:

* `stub`: tests/http_stub.py in its own process (stdlib, one thread per connection) answering
  after L seconds; cells for every concurrency x latency asked.
* `provider`: no `harness eval`: in this process, interleaved, `provider.send` over the same bodies
  (scheduler + direct client + reply reader) against the bare loop: the provider's own CPU.
* `llama`: a real llama-server with SmolLM2-135M (`-np C -t 2`), launched once under the caller's
  flock; the bare-label prompt, `max_tokens` 4, temperature 0 (`--n` reviews, a stratified sample).

    HARNESS_DATA_DIR=/work/shared/datasets python bench/throughput.py stub --concurrency 4,64 --latency 0,0.1 --rounds 3
    HARNESS_DATA_DIR=/work/shared/datasets python bench/throughput.py provider --concurrency 4,64 --latency 0 --rounds 5
    HARNESS_DATA_DIR=/work/shared/datasets flock /tmp/llama-server.lock python bench/throughput.py llama --n 200 --concurrency 4 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from profile_eval import start_stub, write_spec  # noqa: E402

CLIENTS = ("harness", "bare", "sdk", "startup", "fresh-cache")


def timed_child(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall s, user + system CPU s of the child from wait4, its stdout) for one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, out.decode()


def harness_command(spec: Path, out: Path, concurrency: int, limit: int | None, cache_dir: Path | None = None) -> list[str]:
    cache = ["--cache", "rw", "--cache-dir", str(cache_dir)] if cache_dir else ["--cache", "off"]
    command = [sys.executable, "-m", "harness.cli", "eval", str(spec), "--no-baselines", *cache,
               "--quiet", "--out", str(out), "--concurrency", str(concurrency)]
    return command + (["--limit", str(limit)] if limit else [])


def write_bodies(spec: Path, path: Path, limit: int | None) -> int:
    """The harness's own request bodies for the spec (what `harness eval` sends), one per line."""
    from harness.runner import planned_requests
    from harness.spec import load_spec

    planned = planned_requests(load_spec(spec), limit=limit)
    path.write_text("".join(json.dumps(p["material"]["body"]) + "\n" for p in planned))
    return len(planned)


def measure_cell(base_url: str, tmp: Path, *, provider: str, model: str, params: dict, mode: str,
                 concurrency: int, limit: int | None, rounds: int, clients: list[str]) -> dict[str, list]:
    """Every client `rounds` times, interleaved; {client: [(wall, cpu), ...]} and the request count."""
    spec = write_spec(tmp / "spec", base_url, mode, concurrency, provider, model=model, params=params)
    sdk_spec = write_spec(tmp / "spec-sdk", base_url, mode, concurrency, provider, model=model, params=params,
                          options={"client": "sdk"})
    bodies = tmp / "bodies.jsonl"
    n = write_bodies(spec, bodies, limit)
    url = base_url.rstrip("/") + "/chat/completions"
    results: dict[str, list] = {c: [] for c in clients}
    for r in range(rounds):
        # the order alternates: on a machine whose load drifts, always going first is a bias
        for client in (clients if r % 2 == 0 else clients[::-1]):
            if client == "bare":
                command = [sys.executable, __file__, "bare", "--url", url, "--bodies", str(bodies),
                           "--concurrency", str(concurrency)]
            else:
                command = harness_command(sdk_spec if client == "sdk" else spec, tmp / f"run-{client}-{r}",
                                          concurrency, 2 if client == "startup" else limit,
                                          tmp / f"cache-{r}" if client == "fresh-cache" else None)
            wall, cpu, out = timed_child(command)
            if client == "bare":
                done = json.loads(out.strip().splitlines()[-1])
                assert done["ok"] == n, done
                loop = done["wall_s"]
            else:
                metrics = json.loads((tmp / f"run-{client}-{r}" / "metrics.json").read_text())
                sent = metrics["run"]["requests"][next(iter(metrics["run"]["requests"]))]["sent"]
                assert sent == (2 if client == "startup" else n), (client, sent)
                if provider == "openai":  # the stub answers every request with a valid label
                    assert all(row["validity"] == 1.0 for row in metrics["results"]), "every answer must be valid"
                loop = metrics["run"]["wall_s"]  # provider start + the request loop
            results[client].append((wall, cpu, loop))
            print(f"  round {r + 1} {client:8s} c={concurrency:<3d} wall {wall:6.2f} s  requests {loop:6.2f} s  "
                  f"CPU {cpu:6.2f} s", flush=True)
    results["n"] = n
    return results


def table_rows(label: str, latency_ms: float | None, concurrency: int, results: dict) -> list[str]:
    bare_wall = statistics.median(w for w, _, _ in results["bare"]) if "bare" in results else None
    lines = []
    for client in (c for c in CLIENTS if c in results):
        walls = [w for w, _, _ in results[client]]
        wall = statistics.median(walls)
        cpu = statistics.median(c for _, c, _ in results[client])
        loop = statistics.median(lp for _, _, lp in results[client])
        n = 2 if client == "startup" else results["n"]
        ratio = f"{wall / bare_wall:.2f}×" if bare_wall and client != "startup" else "–"
        lat = "–" if latency_ms is None else f"{latency_ms:.0f} ms"
        lines.append(
            f"| {label} | {lat} | {concurrency} | {LABELS.get(client, client)} | {wall:.2f} s ({min(walls):.2f}–{max(walls):.2f}) "
            f"| {ratio} | {loop:.2f} s | {n / wall:.1f} | {n / loop:.1f} | {cpu:.2f} s | {cpu / n * 1000:.2f} ms |"
        )
    return lines


LABELS = {"startup": "harness, 2 requests", "fresh-cache": "harness, fresh cache"}
HEADER = ("| server | latency | concurrency | client | wall, median (min–max) | wall / bare | requests phase "
          "| req/s (wall) | req/s (requests phase) | CPU | CPU per request |\n"
          "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")


def bench_stub(args) -> None:
    lines = []
    for latency in args.latency:
        server, base_url = start_stub(latency)
        try:
            for c in args.concurrency:
                print(f"stub latency {latency * 1000:.0f} ms, concurrency {c}", flush=True)
                with tempfile.TemporaryDirectory() as tmp:
                    results = measure_cell(base_url, Path(tmp), provider="openai", model="stub-model",
                                           params={"temperature": 0, "max_tokens": 32, "seed": 0}, mode=args.mode,
                                           concurrency=c, limit=args.n, rounds=args.rounds, clients=args.clients)
                lines += table_rows("stub", latency * 1000, c, results)
        finally:
            server.terminate()
            server.wait()
    print(HEADER)
    print("\n".join(lines))


def bench_llama(args) -> None:
    from providers.launcher import ManagedServer, free_port
    from providers.llamacpp import bundled_gguf, llama_server_binary

    lines = []
    for c in args.concurrency:
        port = free_port()
        server = ManagedServer(
            [llama_server_binary(), "-m", str(bundled_gguf("smollm2")), "--host", "127.0.0.1", "--port", str(port),
             "-t", "2", "-np", str(c), "-c", str(1024 * c), "--alias", "smollm2", "--no-webui", "--no-repack"],
            port=port, name="llama-server (bench)",
        )
        asyncio.run(server.start())
        try:
            print(f"llama-server -np {c}, concurrency {c}", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                results = measure_cell(server.base_url + "/v1", Path(tmp), provider="llamacpp", model="smollm2",
                                       params={"temperature": 0, "max_tokens": 4, "seed": 0}, mode="text",
                                       concurrency=c, limit=args.n, rounds=args.rounds, clients=args.clients)
            lines += table_rows(f"llama-server -np {c}", None, c, results)
        finally:
            server.stop()
    print(HEADER)
    print("\n".join(lines))


def bench_provider(args) -> None:
    """In one process, interleaved: the provider's request path alone (`provider.send`: the
    scheduler, the direct client, the reply reader) and the bare loop, over the same bodies: the
    CPU the provider adds per request, apart from rendering, validation, records and start-up."""
    from harness.spec import Model, Params
    from providers.openai import OpenAIProvider

    server, base_url = start_stub(args.latency[0])
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for c in args.concurrency:
                spec = write_spec(Path(tmp) / f"spec-{c}", base_url, args.mode, c)
                write_bodies(spec, Path(tmp) / "bodies.jsonl", args.n)
                bodies = [json.loads(x) for x in (Path(tmp) / "bodies.jsonl").read_text().splitlines()]
                url = base_url.rstrip("/") + "/chat/completions"
                cpu: dict[str, list[float]] = {"provider.send": [], "bare": []}
                for _ in range(args.rounds):
                    for label in cpu:
                        model = Model(provider="openai", model="stub-model", base_url=base_url, concurrency=c,
                                      timeout_s=60, params=Params(temperature=0, max_tokens=32, seed=0))
                        t0 = time.process_time()
                        if label == "bare":
                            ok = asyncio.run(bare_loop(url, bodies, c))
                        else:
                            ok = asyncio.run(provider_loop(OpenAIProvider(model), bodies, c))
                        cpu[label].append(time.process_time() - t0)
                        assert ok == len(bodies), (label, ok)
                for label, values in cpu.items():
                    per = statistics.median(values) / len(bodies) * 1000
                    rows.append(f"| {args.latency[0] * 1000:.0f} ms | {c} | {label} | {len(bodies)} | "
                                f"{statistics.median(values):.3f} s | {per:.3f} ms |")
                    print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait()
    print("| latency | concurrency | path | requests | CPU, median | CPU per request |\n|---:|---:|---|---:|---:|---:|")
    print("\n".join(rows))


async def provider_loop(provider, bodies: list[dict], concurrency: int) -> int:
    """`concurrency` workers sending through `provider.send` (the runner's pool, minus the runner)."""
    await provider.start()
    ok = 0
    items = iter(bodies)
    try:
        async def worker() -> None:
            nonlocal ok
            for body in items:
                response = await provider.send(body)
                ok += response.error is None and isinstance(response.text, str)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await provider.stop()
    return ok


async def bare_loop(url: str, bodies: list[dict], concurrency: int) -> int:
    import aiohttp
    import orjson

    headers = {"Content-Type": "application/json", "Authorization": "Bearer EMPTY"}
    ok = 0
    items = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal ok
            for body in items:  # one shared iterator: each body is sent once
                async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
                    data = orjson.loads(await resp.read())
                ok += resp.status == 200 and isinstance(data["choices"][0]["message"]["content"], str)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        parser = argparse.ArgumentParser(prog="throughput.py bare")
        parser.add_argument("bare")
        parser.add_argument("--url", required=True)
        parser.add_argument("--bodies", type=Path, required=True)
        parser.add_argument("--concurrency", type=int, required=True)
        args = parser.parse_args()
        bodies = [json.loads(line) for line in args.bodies.read_text().splitlines()]
        t0 = time.perf_counter()
        ok = asyncio.run(bare_loop(args.url, bodies, args.concurrency))
        print(json.dumps({"ok": ok, "wall_s": round(time.perf_counter() - t0, 3)}))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=("stub", "llama", "provider"))
    parser.add_argument("--n", type=int, default=None, help="--limit: a stratified sample (default: all 1066)")
    parser.add_argument("--latency", default="0,0.1", help="stub: seconds per answer, comma-separated")
    parser.add_argument("--concurrency", default="4,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("json_object", "text"), default="json_object", help="stub: the prompt")
    parser.add_argument("--clients", default="harness,bare,sdk,startup", help=f"some of {','.join(CLIENTS)}")
    args = parser.parse_args()
    if not os.environ.get("HARNESS_DATA_DIR"):
        parser.error("set HARNESS_DATA_DIR (the rotten_tomatoes dataset folder's parent)")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.latency = [float(x) for x in args.latency.split(",")]
    args.clients = [c for c in args.clients.split(",") if c]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        parser.error(f"--clients: unknown {', '.join(sorted(unknown))}")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} cores", flush=True)
    {"stub": bench_stub, "llama": bench_llama, "provider": bench_provider}[args.server](args)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
