"""The response cache: every answer a model gave, keyed on exactly what was sent.

Key: the sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of
`{"v": KEY_VERSION, "provider": ..., "endpoint": ..., "body": ...}` — the provider name, where the
request goes (for a launched llama-server: the model file's name and size, since its port changes
every run) and the exact JSON body (served model name, rendered messages, decoding params, seed,
response format and schema, extra_body). Timeouts, retries, concurrency, API keys and headers are
not in the body, so they never change a key. Bump KEY_VERSION when the meaning of a stored response
changes (e.g. how bodies are built). The key itself lives in `harness.keys` (shared with the Batch
API's `custom_id`); the requests a spec makes are listed by `harness.runner.planned_requests`.

Each entry stores its key material next to the response. A hit is served only when the stored
material equals the request's; otherwise it is a miss and is reported (`mismatches`), so one model's
answers can never be served for another even if an entry was edited by hand or a key collides.

What is stored: responses with no `error`. API and transport errors (401, 429, 5xx, timeouts,
connection failures, "no choices") are never stored, so a rerun asks again. A response cut by the
token limit (`finish_reason: "length"`) is stored *with* its finish_reason: the validator judges it
`truncated` again on every replay, never a success. It is stored because the same body (same
max_tokens) is deterministic at temperature 0 and would be cut the same way again; raising
max_tokens changes the body and so the key, which is the way to get a longer answer. Storing it is
also what makes a replay's metrics identical to the recorded run's.

Storage: a diskcache `Cache` (SQLite in WAL mode; safe across threads and processes) with
`eviction_policy="none"` — the default 1 GiB size limit would silently evict entries — and
`JSONDisk` (JSON + zlib, no pickle). Every read and write runs on the cache's own I/O thread, so
the event loop never waits on SQLite; one thread means one SQLite connection (diskcache keeps one
per thread, each with its own page cache and memory map), so memory stays flat however long the
run. Writes are group-committed: the responses stored while one transaction
runs go into the next, and `store` returns only once its transaction is committed. A run killed
with SIGKILL keeps every response whose `store` returned, and the runner stores a response before
it writes the prediction, so every prediction on disk has its response in the cache.

Modes (`harness eval --cache MODE`):
  rw      read hits, store new responses (default)
  read    read hits, store nothing
  write   ignore stored responses, call the model for everything, store (refresh)
  off     no cache
  replay  never call a model: answer from the fixture (spec `cache.fixture` or `--fixture`) or, when
          there is none, the cache folder; every request without a stored response is collected
          and the run fails with exit code 3 naming them.

Fixture files (`harness cache export` / `import`): JSONL, one entry per line,
`{"key", "material", "response", "v"}` with sorted keys, lines sorted by key — stable, diffable,
reviewable in a pull request.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from harness.errors import HarnessError
from harness.keys import KEY_VERSION, cache_key, canonical_json
from providers.base import ChatResponse

MODES = ("rw", "read", "write", "off", "replay")
CACHE_DIR_ENV = "HARNESS_CACHE_DIR"
MISS_KIND = "cache_miss"  # ChatResponse.error_kind of a replay miss (the runner records these)
# What ChatResponse.to_cache() writes; a fixture line with anything else was not made by the harness.
_RESPONSE_FIELDS = {"text", "finish_reason", "refusal", "usage", "logprobs", "served_model", "latency_s"}


def default_cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"


def unstorable(response: ChatResponse) -> str | None:
    """Why this response must not be stored, or None when it may be."""
    if response.error is not None or response.error_kind is not None:
        return f"error ({response.error_kind or 'unknown'})"
    if response.text is None and response.refusal is None and response.finish_reason is None:
        return "empty response"
    return None


def make_entry(material: dict, response: ChatResponse) -> dict:
    return {"v": KEY_VERSION, "material": material, "response": response.to_cache()}


def _differences(stored: dict, requested: dict) -> list[str]:
    """Which of provider / endpoint / model / the rest of the body differ."""
    out = []
    for name in ("provider", "endpoint"):
        if stored.get(name) != requested.get(name):
            out.append(name)
    stored_body, requested_body = stored.get("body") or {}, requested.get("body") or {}
    if stored_body.get("model") != requested_body.get("model"):
        out.append("model")
    if not out and stored != requested:
        out.append("body")
    return out


def _answers(entry: dict, material: dict) -> bool:
    """A stored entry answers a request only when its key material is the request's."""
    stored = entry.get("material")
    return stored == material or _same_json(stored, material)


def _same_json(a: Any, b: Any) -> bool:
    """Equal once serialized (a tuple in a request equals the list it was stored as)."""
    try:
        return canonical_json(a) == canonical_json(b)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# The disk store


def open_disk_cache(directory: Path):
    """The diskcache Cache in `directory`, created if needed, with eviction off and no pickle."""
    from diskcache import Cache, JSONDisk

    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        # A bounded SQLite page cache and memory map per connection (each reading thread has
        # one): the defaults (32 MiB cache + 64 MiB mmap) made a 100k-example replay hold
        # hundreds of MiB of pages it reads once.
        return Cache(str(directory), eviction_policy="none", disk=JSONDisk,
                     sqlite_cache_size=2**10, sqlite_mmap_size=2**23)
    except OSError as exc:
        raise HarnessError(f"cannot open the response cache in {directory}: {exc}; set --cache-dir or {CACHE_DIR_ENV}") from None


def _read_disk_entries(disk: Any, keys: list[str]) -> list[dict | None]:
    return [disk.get(key) for key in keys]


def _write_disk_entries(disk: Any, entries: list[tuple[str, dict]]) -> None:
    """Store entries in one committed transaction (all or none survive a kill)."""
    with disk.transact():
        for key, entry in entries:
            disk.set(key, entry)


# ---------------------------------------------------------------------------------------------
# Fixture files


def read_fixture(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, entry) for every line of a fixture file; bad lines raise HarnessError naming
    the file and line."""
    try:
        handle = open(path, "rb")  # bytes: orjson reads them without a decoded copy of each line
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such fixture file; record one with `harness cache export`") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the fixture: {exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                # the value json.loads gives, in half the time (the logprobs), except an integer
                # beyond 64 bits, which orjson reads as a float: such a body then misses, safely
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    raise HarnessError(
                        f"{path}:{number}: the fixture is not UTF-8 ({bad.reason}); record it again with "
                        f"`harness cache export`"
                    ) from None
                raise HarnessError(f"{path}:{number}: not valid JSON ({exc.msg}); a fixture holds one JSON entry per line") from None
            if not isinstance(entry, dict) or not all(k in entry for k in ("key", "material", "response")):
                raise HarnessError(f"{path}:{number}: an entry needs the fields key, material and response")
            if entry.get("v") != KEY_VERSION:
                raise HarnessError(
                    f"{path}:{number}: recorded with cache key version {entry.get('v')!r}, this harness uses "
                    f"{KEY_VERSION}; record the fixture again"
                )
            material = entry["material"]
            if not isinstance(material, dict) or not {"provider", "endpoint", "body"} <= set(material):
                raise HarnessError(f"{path}:{number}: material needs provider, endpoint and body")
            if not isinstance(entry["response"], dict):
                raise HarnessError(f"{path}:{number}: response must be an object")
            unknown = set(entry["response"]) - _RESPONSE_FIELDS
            if unknown:
                raise HarnessError(
                    f"{path}:{number}: response has unknown field(s) {', '.join(sorted(unknown))}; "
                    f"allowed: {', '.join(sorted(_RESPONSE_FIELDS))}"
                )
            yield number, entry


def fixture_line(key: str, entry: dict) -> str:
    """One fixture line: sorted keys, so the same entry always serializes to the same bytes."""
    record = {"key": key, "material": entry["material"], "response": entry["response"], "v": entry.get("v", KEY_VERSION)}
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False)
    # JSON leaves these raw inside strings, but many tools (str.splitlines, editors) break lines
    # on them; escaped, every entry is exactly one line for any reader.
    return text.translate(_LINE_BREAKS) + "\n"


_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def write_fixture(path: Path, entries: Iterable[tuple[str, dict]]) -> int:
    """Write entries sorted by key to `path` (atomically); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for key, entry in sorted(entries, key=lambda item: item[0]):
                f.write(fixture_line(key, entry))
                count += 1
        os.replace(tmp, path)
    except BaseException:  # a failed export leaves no empty or partial fixture behind
        tmp.unlink(missing_ok=True)
        raise
    return count


def load_fixture(path: Path) -> dict[str, dict]:
    """key -> entry. Keys are not recomputed here: a hit is served only when the stored material
    equals the request's, which catches an entry edited by hand just as well."""
    return {entry["key"]: entry for _, entry in read_fixture(path)}


# ---------------------------------------------------------------------------------------------
# The runner's cache seam


class ResponseCache:
    """The object the runner calls: `await lookup(material)` and `await store(material, response)`.

    `directory` is the diskcache folder; `fixture` (replay mode only) a JSONL file answered from
    instead of the folder. Counters and mismatches are kept for the run summary (`describe()`).
    """

    def __init__(self, mode: str = "rw", directory: Path | None = None, fixture: Path | None = None):
        if mode not in MODES:
            raise HarnessError(f"--cache {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "off":
            raise HarnessError("mode 'off' means no cache object: pass cache=None to the runner")
        self.mode = mode
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.fixture = Path(fixture) if fixture is not None and mode == "replay" else None
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.not_stored: dict[str, int] = {}
        self.mismatches: list[dict] = []
        self._disk: Any = None
        self._entries: dict[str, dict] | None = None  # the fixture, loaded on first lookup
        self._open_lock: asyncio.Lock | None = None
        # Disk reads are batched: lookups made in the same event-loop turn (one per worker) share
        # one thread hop, which costs more than the SQLite read itself.
        self._pending_reads: list[tuple[str, asyncio.Future]] = []
        self._read_tasks: set[asyncio.Task] = set()
        # Writes are batched too (`store`): one transaction per batch, committed before any of
        # its `store` calls returns, so the runner still writes a prediction only after its
        # response is on disk.
        self._pending_writes: list[tuple[str, dict, asyncio.Future]] = []
        self._write_task: asyncio.Future | None = None
        self._executor: Any = None  # the I/O thread (see _in_thread)

    def _in_thread(self, fn, *args):
        """Run `fn(*args)` on the cache's single I/O thread (started on first use)."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-cache")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def replay(self) -> bool:
        return self.mode == "replay"

    @property
    def reads(self) -> bool:
        return self.mode in ("rw", "read", "replay")

    @property
    def writes(self) -> bool:
        return self.mode in ("rw", "write")

    async def _open(self) -> None:
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self.fixture is not None:
                if self._entries is None:
                    self._entries = await asyncio.to_thread(load_fixture, self.fixture)
            elif self._disk is None:
                self._disk = await self._in_thread(open_disk_cache, self.directory)

    async def lookup(self, material: dict, *, record: bool = True, key: str | None = None) -> ChatResponse | None:
        """The stored response for `material`, or None. `record=False` probes without counting a
        hit, miss or mismatch (the batch pre-pass asks first, the run then asks again). `key`, when
        the caller has it already, must be `cache_key(material)` (it saves hashing the body again)."""
        if not self.reads:
            return None
        if self._entries is None and self._disk is None:
            await self._open()
        if key is None:
            key = cache_key(material)
        if self._entries is not None:
            entry = self._entries.get(key)  # in memory: no I/O
        else:
            entry = await self._disk_get(key)
        if entry is not None and not _answers(entry, material):
            if record:
                self.mismatches.append({
                    "key": key,
                    "differs": _differences(entry.get("material") or {}, material),
                    "stored": {k: (entry.get("material") or {}).get(k) for k in ("provider", "endpoint")}
                    | {"model": ((entry.get("material") or {}).get("body") or {}).get("model")},
                    "requested": {k: material.get(k) for k in ("provider", "endpoint")}
                    | {"model": (material.get("body") or {}).get("model")},
                })
            entry = None
        if entry is None:
            if record:
                self.misses += 1
            if self.replay:
                source = self.fixture or self.directory
                return ChatResponse(
                    error=f"no stored response in {source} (--cache replay never calls a model)",
                    error_kind=MISS_KIND,
                )
            return None
        if record:
            self.hits += 1
        return ChatResponse.from_cache(entry["response"])

    async def have(self, requests: list[tuple[str, dict]]) -> list[bool]:
        """Whether a stored response answers each (key, material), without counting hits or
        misses and without decoding any response: what a replay's pre-check and a pre-pass ask
        of every planned request (from a fixture in memory, or in one read on the I/O thread)."""
        if not self.reads:
            return [False] * len(requests)
        if self._entries is None and self._disk is None:
            await self._open()
        keys = [key for key, _ in requests]
        if self._entries is not None:
            entries = [self._entries.get(key) for key in keys]
        else:
            entries = await self._in_thread(_read_disk_entries, self._disk, keys)
        return [entry is not None and _answers(entry, material) for entry, (_, material) in zip(entries, requests)]

    async def _disk_get(self, key: str) -> dict | None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending_reads.append((key, future))
        if len(self._pending_reads) == 1:  # the first lookup of this turn schedules the batch
            loop.call_soon(self._start_batch)
        return await future

    def _start_batch(self) -> None:
        batch, self._pending_reads = self._pending_reads, []
        task = asyncio.ensure_future(self._read_batch(batch))
        self._read_tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._read_tasks.discard)

    async def _read_batch(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        try:
            entries = await self._in_thread(_read_disk_entries, self._disk, [key for key, _ in batch])
        except BaseException as exc:  # hand the failure to every waiting lookup
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else HarnessError(f"cache read interrupted: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), entry in zip(batch, entries):
            if not future.done():  # a cancelled lookup no longer wants its answer
                future.set_result(entry)

    async def store(self, material: dict, response: ChatResponse, *, key: str | None = None) -> None:
        if not self.writes:
            return
        reason = unstorable(response)
        if reason is not None:
            self.not_stored[reason] = self.not_stored.get(reason, 0) + 1
            return
        if self._disk is None:
            await self._open()
        loop = asyncio.get_running_loop()
        committed = loop.create_future()
        self._pending_writes.append((key or cache_key(material), make_entry(material, response), committed))
        if self._write_task is None:
            self._write_task = asyncio.ensure_future(self._write_batches())
        await committed  # returns once the transaction holding this entry is committed
        self.stored += 1

    async def _write_batches(self) -> None:
        """Group commit: whatever was stored while the previous transaction ran goes into the
        next one, so N answers arriving together cost one SQLite commit, not N."""
        try:
            while self._pending_writes:
                batch, self._pending_writes = self._pending_writes, []
                try:
                    await self._in_thread(_write_disk_entries, self._disk, [(k, e) for k, e, _ in batch])
                except BaseException as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else HarnessError(f"cache write interrupted: {exc!r}"))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for _, _, future in batch:
                    if not future.done():  # a cancelled store no longer waits (its entry is written)
                        future.set_result(None)
        finally:
            self._write_task = None

    def describe(self) -> dict:
        """A summary for metrics.json (paths, counters; never the stored texts)."""
        return {
            "mode": self.mode,
            "source": str(self.fixture or self.directory),
            "hits": self.hits,
            "misses": self.misses,
            "stored": self.stored,
            "not_stored": dict(self.not_stored),
            "mismatches": len(self.mismatches),
        }

    def close(self) -> None:
        if self._disk is not None:
            if self._executor is not None:  # the connection belongs to the I/O thread
                self._executor.submit(self._disk.close).result()
            else:
                self._disk.close()
            self._disk = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def make_cache(mode: str, directory: Path | None = None, fixture: Path | None = None) -> ResponseCache | None:
    """The cache for `--cache MODE`: None for `off`."""
    if mode not in MODES:
        raise HarnessError(f"--cache {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return None
    return ResponseCache(mode, directory, fixture)


# ---------------------------------------------------------------------------------------------
# Management: stats, clear, export, import


def cache_stats(directory: Path) -> dict:
    """Entries, bytes on disk and entries per provider / model / endpoint."""
    directory = Path(directory)
    if not (directory / "cache.db").exists():
        return {"directory": str(directory), "entries": 0, "bytes": 0, "by_model": {}, "exists": False}
    disk = open_disk_cache(directory)
    try:
        by_model: dict[str, int] = {}
        finish: dict[str, int] = {}
        count = 0
        for key in disk.iterkeys():
            entry = disk.get(key)
            if entry is None:
                continue
            count += 1
            material = entry.get("material") or {}
            name = f"{material.get('provider')}:{(material.get('body') or {}).get('model')} @ {material.get('endpoint')}"
            by_model[name] = by_model.get(name, 0) + 1
            reason = str((entry.get("response") or {}).get("finish_reason"))
            finish[reason] = finish.get(reason, 0) + 1
        return {
            "directory": str(directory),
            "exists": True,
            "entries": count,
            "bytes": disk.volume(),
            "eviction_policy": disk.eviction_policy,
            "key_version": KEY_VERSION,
            "by_model": dict(sorted(by_model.items())),
            "finish_reasons": dict(sorted(finish.items())),
        }
    finally:
        disk.close()


def cache_clear(directory: Path) -> int:
    """Remove every entry; returns how many were removed."""
    directory = Path(directory)
    if not (directory / "cache.db").exists():
        return 0
    disk = open_disk_cache(directory)
    try:
        return disk.clear()
    finally:
        disk.close()


def export_fixture(directory: Path, out: Path, keys: Iterable[str] | None = None) -> tuple[int, list[str]]:
    """Write the entries of `keys` (default: all) from the cache folder to a sorted JSONL file.
    Returns (written, keys that are not in the cache). When a key is missing nothing is written:
    a fixture without some of a spec's requests would only fail later, at replay."""
    disk = open_disk_cache(directory)
    try:
        wanted = sorted(set(keys)) if keys is not None else sorted(disk.iterkeys())
        entries, missing = [], []
        for key in wanted:
            entry = disk.get(key)
            if entry is None:
                missing.append(key)
            else:
                entries.append((key, entry))
        if missing:
            return 0, missing
        written = write_fixture(out, entries)
        return written, missing
    finally:
        disk.close()


def import_fixture(directory: Path, path: Path) -> int:
    """Load a fixture file into the cache folder, checking every line first (its key must be the
    hash of its material). Returns how many entries were imported."""
    entries = []
    for number, entry in read_fixture(Path(path)):
        expected = cache_key(entry["material"])
        if entry["key"] != expected:
            raise HarnessError(
                f"{path}:{number}: key {entry['key'][:12]}… is not the hash of this line's material "
                f"({expected[:12]}…); was the line edited by hand? Record the fixture again"
            )
        entries.append((entry["key"], {"v": entry["v"], "material": entry["material"], "response": entry["response"]}))
    disk = open_disk_cache(directory)
    try:
        with disk.transact():
            for key, entry in entries:
                disk.set(key, entry)
        return len(entries)
    finally:
        disk.close()


# ---------------------------------------------------------------------------------------------
# Summaries of missing responses (replay pre-check, `cache export --spec`)


def _by_model_prompt(requests: Iterable[dict]) -> dict[tuple[str, str], list[str]]:
    rows: dict[tuple[str, str], list[str]] = {}
    for r in requests:
        rows.setdefault((r["model"], r["prompt"]), []).append(r["example_id"])
    return rows


def miss_lines(misses: list[dict], shown: int = 5) -> list[str]:
    """`  MODEL / PROMPT: N missing: id, id, … (M more)`, one line per model × prompt."""
    lines = []
    for (model, prompt), ids in _by_model_prompt(misses).items():
        more = f", … ({len(ids) - shown} more)" if len(ids) > shown else ""
        lines.append(f"  {model} / {prompt}: {len(ids)} missing: {', '.join(ids[:shown])}{more}")
    return lines


def miss_summary(misses: list[dict], source: str, *, total: int | None = None, run_dir: Path | None = None) -> str:
    """The replay-miss error: what is missing per model × prompt and what to do."""
    of = f" (of {total} planned)" if total is not None else ""
    lines = [f"replay: {len(misses)} request(s) have no stored response in {source}{of}; no model was called."]
    lines += miss_lines(misses)
    where = f"The run folder {run_dir} is marked incomplete. " if run_dir is not None else ""
    lines.append(
        f"{where}Record them (harness eval with --cache rw against the model, then `harness cache export`), "
        f"or fix the spec/prompts that changed."
    )
    return "\n".join(lines)


def export_miss_summary(missing: list[dict], total: int, directory: Path) -> str:
    lines = [f"{len(missing)} of the spec's {total} requests are not in {directory}; nothing was written:"]
    lines += miss_lines(missing)
    lines.append("run `harness eval SPEC --cache rw` with the same --limit/--prompt/--model first (errors are never stored)")
    return "\n".join(lines)


async def find_misses(cache: "ResponseCache", planned: list[dict]) -> list[dict]:
    """The planned requests (from `planned_requests`) the cache cannot answer, probed without
    counting hits or misses; a replay checks this before any model or baseline work."""
    stored = await cache.have([(r["key"], r["material"]) for r in planned])
    return [{"model": r["model"], "prompt": r["prompt"], "example_id": r["example_id"]}
            for r, ok in zip(planned, stored) if not ok]
