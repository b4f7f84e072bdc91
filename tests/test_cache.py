"""The response cache: keys, what is stored, modes, mismatches, eviction, JSON on disk, concurrency,
export/import, and (with a real llama-server) edit-one-template reruns and bit-identical replays."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from harness.cache import (
    KEY_VERSION, MISS_KIND, ResponseCache, cache_key, cache_stats, export_fixture, import_fixture,
    make_cache, make_entry, open_disk_cache, read_fixture,
)
from harness.cli import main
from harness.errors import HarnessError
from harness.runner import planned_requests
from harness.spec import load_spec
from providers.base import ChatResponse

from llama_proxy import BARE_LABEL, ONE_WORD, CountingProxy, LlamaServer, server_test, write_spec


def tiny_spec(folder: Path, model_block: str | None = None) -> Path:
    """A local 6-row dataset and a spec with two prompts; no hub, no server."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [("great fun", 1), ("dull and slow", 0), ("a triumph", 1), ("a mess", 0), ("lovely", 1), ("awful", 0)]
    (folder / "data.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    (folder / "a.j2").write_text(BARE_LABEL)
    (folder / "b.j2").write_text(ONE_WORD)
    model_block = model_block or textwrap.dedent("""\
        - provider: openai
          model: served-name
          base_url: http://127.0.0.1:9/v1
          params: {temperature: 0, max_tokens: 4, seed: 0}
    """)
    (folder / "spec.yaml").write_text(
        "name: tiny\ndataset: {source: data.jsonl, split: test, train_split: null, label_map: {0: negative, 1: positive}}\n"
        "labels: [{name: negative}, {name: positive}]\n"
        "prompts:\n  - {name: a, template: a.j2, mode: text}\n  - {name: b, template: b.j2, mode: json_schema}\n"
        "models:\n" + textwrap.indent(model_block, "  ")
    )
    return folder / "spec.yaml"


def materials(spec_path: Path) -> list[dict]:
    return planned_requests(load_spec(spec_path))


def answer(text="positive", finish_reason="stop", **kw) -> ChatResponse:
    return ChatResponse(text=text, finish_reason=finish_reason, usage={"prompt_tokens": 5, "completion_tokens": 1},
                        served_model="served-name", latency_s=0.25, **kw)


# ---------------------------------------------------------------------------------------------
# Keys


def test_key_is_stable_and_covers_everything_sent(tmp_path):
    planned = materials(tiny_spec(tmp_path))
    assert len(planned) == 12  # 6 examples x 2 prompts
    assert len({r["key"] for r in planned}) == 12
    m = planned[1]["material"]
    assert cache_key(m) == planned[1]["key"]
    # dict order does not matter: the JSON is canonical
    reordered = {"body": dict(reversed(list(m["body"].items()))), "endpoint": m["endpoint"], "provider": m["provider"]}
    assert cache_key(reordered) == cache_key(m)
    changed = [
        {**m, "provider": "vllm"},
        {**m, "endpoint": "http://127.0.0.1:10/v1"},
        {**m, "body": {**m["body"], "model": "other"}},
        {**m, "body": {**m["body"], "temperature": 0.7}},
        {**m, "body": {**m["body"], "seed": 1}},
        {**m, "body": {**m["body"], "max_tokens": 5}},
        {**m, "body": {**m["body"], "messages": m["body"]["messages"][:-1]}},
        {**m, "body": {**m["body"], "response_format": {"type": "json_object"}}},
    ]
    assert len({cache_key(c) for c in changed} | {cache_key(m)}) == len(changed) + 1


def test_key_ignores_timeouts_retries_concurrency_and_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET_KEY", "sk-very-secret-value")
    base = materials(tiny_spec(tmp_path / "a"))
    other = materials(tiny_spec(tmp_path / "b", textwrap.dedent("""\
        - provider: openai
          model: served-name
          base_url: http://127.0.0.1:9/v1
          api_key_env: MY_SECRET_KEY
          timeout_s: 3
          max_retries: 0
          concurrency: 64
          params: {temperature: 0, max_tokens: 4, seed: 0}
    """)))
    assert [r["key"] for r in base] == [r["key"] for r in other]
    assert "sk-very-secret-value" not in json.dumps([r["material"] for r in other])


def test_response_format_and_schema_are_in_the_key(tmp_path):
    planned = materials(tiny_spec(tmp_path))
    json_prompt = [r for r in planned if r["prompt"] == "b"][0]["material"]["body"]
    assert json_prompt["response_format"]["type"] == "json_schema"
    assert "schema" in json_prompt["response_format"]["json_schema"]


# ---------------------------------------------------------------------------------------------
# Store and lookup on a real diskcache


def test_store_then_lookup_across_instances_and_processes(tmp_path):
    m = materials(tiny_spec(tmp_path))[0]["material"]

    async def write():
        cache = ResponseCache("rw", tmp_path / "cache")
        assert await cache.lookup(m) is None
        await cache.store(m, answer("negative"))
        cache.close()

    asyncio.run(write())

    async def read():
        cache = ResponseCache("read", tmp_path / "cache")
        hit = await cache.lookup(m)
        cache.close()
        return hit

    hit = asyncio.run(read())
    assert hit.text == "negative" and hit.finish_reason == "stop" and hit.latency_s == 0.25
    assert hit.usage == {"prompt_tokens": 5, "completion_tokens": 1}
    # another process sees it too
    code = (
        "import asyncio, json, sys; from harness.cache import ResponseCache;"
        f"m = json.loads({json.dumps(json.dumps(m))});"
        f"c = ResponseCache('read', {str(tmp_path / 'cache')!r});"
        "print(asyncio.run(c.lookup(m)).text)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "negative"


def test_errors_are_never_stored_truncations_are_stored_with_their_finish_reason(tmp_path):
    planned = materials(tiny_spec(tmp_path))
    m1, m2, m3 = (planned[i]["material"] for i in range(3))

    async def go():
        cache = ResponseCache("rw", tmp_path / "cache")
        await cache.store(m1, ChatResponse(error="RateLimitError (429): slow down", error_kind="rate_limit"))
        await cache.store(m2, ChatResponse(error="APIConnectionError: refused", error_kind="connection"))
        await cache.store(m3, answer('{"lab', finish_reason="length"))
        result = (await cache.lookup(m1), await cache.lookup(m2), await cache.lookup(m3), cache.describe())
        cache.close()
        return result

    miss1, miss2, truncated, summary = asyncio.run(go())
    assert miss1 is None and miss2 is None
    assert truncated.finish_reason == "length" and truncated.text == '{"lab'
    assert summary["stored"] == 1
    assert summary["not_stored"] == {"error (rate_limit)": 1, "error (connection)": 1}
    # the validator still reads a stored truncation as `truncated`, never as an answer
    from harness.validate import AnswerContract

    contract = AnswerContract(load_spec(tmp_path / "spec.yaml"))
    verdict = contract.judge(truncated.text, "json_schema", finish_reason=truncated.finish_reason)
    assert verdict.outcome == "truncated"


def test_modes(tmp_path):
    m = materials(tiny_spec(tmp_path))[0]["material"]

    async def go():
        out = {}
        read = ResponseCache("read", tmp_path / "c")
        await read.store(m, answer())
        out["read stores nothing"] = await read.lookup(m) is None
        write = ResponseCache("write", tmp_path / "c")
        await write.store(m, answer("negative"))
        out["write never reads"] = await write.lookup(m) is None
        rw = ResponseCache("rw", tmp_path / "c")
        out["rw reads what write stored"] = (await rw.lookup(m)).text == "negative"
        replay = ResponseCache("replay", tmp_path / "empty")
        miss = await replay.lookup(m)
        out["replay miss is an error response"] = miss.error_kind == MISS_KIND and miss.text is None
        await replay.store(m, answer())
        out["replay stores nothing"] = (await replay.lookup(m)).error_kind == MISS_KIND
        for c in (read, write, rw, replay):
            c.close()
        return out

    assert asyncio.run(go()) == {k: True for k in (
        "read stores nothing", "write never reads", "rw reads what write stored",
        "replay miss is an error response", "replay stores nothing",
    )}
    assert make_cache("off") is None
    with pytest.raises(HarnessError, match="expected one of"):
        make_cache("sometimes")


def test_an_entry_stored_for_another_model_is_a_reported_miss(tmp_path):
    """lm-eval #4063: one model's answers served for another. Plant model B's entry under model A's key."""
    m = materials(tiny_spec(tmp_path))[0]["material"]
    other = {**m, "body": {**m["body"], "model": "another-model"}}
    disk = open_disk_cache(tmp_path / "cache")
    disk.set(cache_key(m), make_entry(other, answer("negative")))
    disk.close()

    async def go(mode):
        cache = ResponseCache(mode, tmp_path / "cache")
        hit = await cache.lookup(m)
        cache.close()
        return hit, cache.mismatches

    hit, mismatches = asyncio.run(go("rw"))
    assert hit is None
    assert mismatches[0]["differs"] == ["model"]
    assert mismatches[0]["stored"]["model"] == "another-model"
    assert mismatches[0]["requested"]["model"] == "served-name"
    hit, _ = asyncio.run(go("replay"))
    assert hit.error_kind == MISS_KIND


def test_eviction_is_off_and_values_are_json_not_pickle(tmp_path):
    disk = open_disk_cache(tmp_path / "cache")
    assert disk.eviction_policy == "none"
    disk.reset("size_limit", 10_000)  # far below what 300 entries take: the default policy would cull
    planned = materials(tiny_spec(tmp_path))[0]["material"]
    for i in range(300):
        m = {**planned, "body": {**planned["body"], "seed": i}}
        disk.set(cache_key(m), make_entry(m, answer("x" * 200)))
    assert len(disk) == 300
    disk.close()
    con = sqlite3.connect(tmp_path / "cache" / "cache.db")
    raw = con.execute("select value from Cache limit 1").fetchone()[0]
    con.close()
    entry = json.loads(zlib.decompress(raw))  # plain JSON (zlib): never unpickled
    assert entry["v"] == KEY_VERSION and set(entry) == {"v", "material", "response"}


def test_concurrent_writers_threads_and_processes(tmp_path):
    base = materials(tiny_spec(tmp_path))[0]["material"]
    directory = tmp_path / "cache"
    writer = textwrap.dedent(f"""
        import asyncio, json, sys
        from harness.cache import ResponseCache
        from providers.base import ChatResponse
        base = json.loads({json.dumps(json.dumps(base))})
        async def go(offset):
            cache = ResponseCache("rw", {str(directory)!r})
            async def one(i):
                m = {{**base, "body": {{**base["body"], "seed": i}}}}
                await cache.store(m, ChatResponse(text=str(i), finish_reason="stop"))
            await asyncio.gather(*(one(offset + i) for i in range(150)))
        asyncio.run(go(int(sys.argv[1])))
    """)
    processes = [subprocess.Popen([sys.executable, "-c", writer, str(offset)]) for offset in (0, 1000)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]

    async def read_all():
        cache = ResponseCache("read", directory)
        hits = await asyncio.gather(*(
            cache.lookup({**base, "body": {**base["body"], "seed": i}}) for i in [*range(150), *range(1000, 1150)]
        ))
        cache.close()
        return hits

    hits = asyncio.run(read_all())
    assert [h.text for h in hits] == [str(i) for i in [*range(150), *range(1000, 1150)]]


# ---------------------------------------------------------------------------------------------
# Export / import


def _filled_cache(tmp_path) -> tuple[Path, list[dict]]:
    planned = materials(tiny_spec(tmp_path))
    disk = open_disk_cache(tmp_path / "cache")
    for i, r in enumerate(planned):
        disk.set(r["key"], make_entry(r["material"], answer("positive" if i % 2 else "negative")))
    disk.close()
    return tmp_path / "cache", planned


def test_export_is_sorted_stable_and_round_trips(tmp_path):
    directory, planned = _filled_cache(tmp_path)
    out1, out2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert export_fixture(directory, out1) == (12, [])
    export_fixture(directory, out2)
    assert out1.read_bytes() == out2.read_bytes()
    lines = out1.read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert keys == sorted(keys) == sorted(r["key"] for r in planned)
    assert all(list(json.loads(line)) == ["key", "material", "response", "v"] for line in lines)
    # import into a new folder, export again: identical bytes
    assert import_fixture(tmp_path / "copy", out1) == 12
    export_fixture(tmp_path / "copy", tmp_path / "three.jsonl")
    assert (tmp_path / "three.jsonl").read_bytes() == out1.read_bytes()


def test_import_rejects_edited_or_foreign_lines_naming_the_line(tmp_path):
    directory, _ = _filled_cache(tmp_path)
    fixture = tmp_path / "f.jsonl"
    export_fixture(directory, fixture)
    lines = fixture.read_text().splitlines()

    edited = json.loads(lines[2])
    edited["material"]["body"]["model"] = "someone-else"
    (tmp_path / "edited.jsonl").write_text("\n".join(lines[:2] + [json.dumps(edited)] + lines[3:]) + "\n")
    with pytest.raises(HarnessError, match=r"edited\.jsonl:3: key .* is not the hash of this line's material"):
        import_fixture(tmp_path / "new", tmp_path / "edited.jsonl")

    old = json.loads(lines[0]) | {"v": KEY_VERSION + 1}
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n")
    with pytest.raises(HarnessError, match=r"old\.jsonl:1: recorded with cache key version"):
        import_fixture(tmp_path / "new", tmp_path / "old.jsonl")

    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(HarnessError, match=r"bad\.jsonl:2: not valid JSON"):
        list(read_fixture(tmp_path / "bad.jsonl"))
    (tmp_path / "latin1.jsonl").write_bytes((lines[0] + "\n\n").encode() + '{"key": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(HarnessError, match=r"latin1\.jsonl:3: the fixture is not UTF-8 \(invalid continuation byte\)"):
        list(read_fixture(tmp_path / "latin1.jsonl"))
    assert len(open_disk_cache(tmp_path / "new")) == 0  # nothing half-imported


def test_replay_from_a_fixture_file(tmp_path):
    directory, planned = _filled_cache(tmp_path)
    fixture = tmp_path / "f.jsonl"
    export_fixture(directory, fixture)
    # drop one line: that request must miss
    lines = fixture.read_text().splitlines()
    dropped = json.loads(lines[5])["key"]
    fixture.write_text("\n".join(lines[:5] + lines[6:]) + "\n")

    async def go():
        cache = ResponseCache("replay", tmp_path / "unused", fixture=fixture)
        return [await cache.lookup(r["material"]) for r in planned], cache

    answers, cache = asyncio.run(go())
    missed = [r["key"] for r, a in zip(planned, answers) if a.error_kind == MISS_KIND]
    assert missed == [dropped]
    assert cache.describe()["hits"] == 11 and not (tmp_path / "unused").exists()


MAIN_SPEC = Path(__file__).resolve().parent.parent / "specs" / "rotten_tomatoes.yaml"


@pytest.mark.skipif(not (MAIN_SPEC.parent / "fixtures" / "rotten_tomatoes.jsonl").is_file(),
                    reason="the committed fixture is absent")
def test_a_replay_reads_the_same_records_whether_the_precheck_kept_its_requests_or_not(tmp_path, monkeypatch):
    """The replay pre-check builds every request once and the run takes those it kept
    (`Prepared.take_planned`, bounded by PLANNED_KEPT); past the bound the run builds its own. Both
    halves must give the very same records: a kept request is the one the run would have built."""
    from harness.runner import Prepared, run_eval

    spec = load_spec(MAIN_SPEC)

    def replay(out: Path) -> list[str]:
        cache = ResponseCache("replay", tmp_path / "unused", fixture=MAIN_SPEC.parent / "fixtures" / "rotten_tomatoes.jsonl")
        try:
            outcome = asyncio.run(run_eval(spec, out_dir=out, limit=40, baselines=[], cache=cache))
        finally:
            cache.close()
        assert outcome.complete and cache.describe()["misses"] == 0
        return sorted((out / "predictions.jsonl").read_text().splitlines())

    kept = replay(tmp_path / "kept")
    monkeypatch.setattr(Prepared, "PLANNED_KEPT", 7)  # 7 of the 180 planned kept, the rest rebuilt
    partly = replay(tmp_path / "partly")
    monkeypatch.setattr(Prepared, "PLANNED_KEPT", 0)
    rebuilt = replay(tmp_path / "rebuilt")
    assert len(kept) == 4 * 40 and kept == partly == rebuilt


def test_cache_cli_stats_export_import_clear(tmp_path, capsys):
    directory, planned = _filled_cache(tmp_path)
    assert main(["cache", "stats", "--cache-dir", str(directory), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 12 and stats["eviction_policy"] == "none"
    assert stats["by_model"] == {"openai:served-name @ http://127.0.0.1:9/v1": 12}
    assert stats == cache_stats(directory)

    spec = str(tmp_path / "spec.yaml")
    assert main(["cache", "export", str(tmp_path / "x.jsonl"), "--cache-dir", str(directory), "--spec", spec, "--prompt", "a"]) == 0
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 6
    capsys.readouterr()
    # a spec request that is not in the cache: exit 3, naming the example
    disk = open_disk_cache(directory)
    disk.delete(planned[0]["key"])
    disk.close()
    assert main(["cache", "export", str(tmp_path / "y.jsonl"), "--cache-dir", str(directory), "--spec", spec]) == 3
    err = capsys.readouterr().err
    assert f"1 of the spec's 12 requests are not in {directory}" in err and planned[0]["example_id"] in err

    assert main(["cache", "clear", "--cache-dir", str(directory)]) == 0
    assert "removed 11 entries" in capsys.readouterr().out
    assert main(["cache", "import", str(tmp_path / "x.jsonl"), "--cache-dir", str(directory)]) == 0
    assert cache_stats(directory)["entries"] == 6


def test_replay_needs_the_fixture_the_spec_names(tmp_path, capsys):
    spec = tiny_spec(tmp_path)
    spec.write_text(spec.read_text() + "cache: {fixture: fixtures/missing.jsonl}\n")
    assert main(["eval", str(spec), "--cache", "replay", "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "cache.fixture 'fixtures/missing.jsonl'" in err and "no such file" in err
    assert main(["eval", str(spec), "--fixture", "x.jsonl", "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert "--fixture/--no-fixture are read only by --cache replay" in capsys.readouterr().err
    # --no-fixture replays from the cache folder, which is empty here: exit 3, nothing called
    assert main(["eval", str(spec), "--cache", "replay", "--no-fixture", "--quiet", "--out", str(tmp_path / "run")]) == 3
    assert "replay: 12 request(s) have no stored response" in capsys.readouterr().err


def test_replay_without_a_server_or_an_api_key(tmp_path, capsys, monkeypatch):
    """A spec whose model needs an API key that is not set, and whose endpoint does not exist:
    replay answers every request from the fixture and never calls the model."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = tiny_spec(tmp_path, textwrap.dedent("""\
        - provider: openai
          model: gpt-4o-mini
          params: {temperature: 0, max_tokens: 4, seed: 0}
    """))
    planned = planned_requests(load_spec(spec))
    assert planned[0]["material"]["endpoint"] == "https://api.openai.com/v1"
    disk = open_disk_cache(tmp_path / "cache")
    for r in planned:
        disk.set(r["key"], make_entry(r["material"], answer('{"label": "positive"}' if r["prompt"] == "b" else "negative")))
    disk.close()
    export_fixture(tmp_path / "cache", tmp_path / "fixture.jsonl")
    rc = main(["eval", str(spec), "--cache", "replay", "--fixture", str(tmp_path / "fixture.jsonl"),
               "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["run"]["skipped"] == []
    counts = metrics["run"]["requests"]["openai:gpt-4o-mini"]
    assert (counts["sent"], counts["cache_hits"], counts["cache_misses"]) == (0, 12, 0)
    by_prompt = {m["prompt"]: m for m in metrics["results"]}
    assert by_prompt["a"]["accuracy"] == 0.5 and by_prompt["b"]["accuracy"] == 0.5  # 3 of 6 are each label


# ---------------------------------------------------------------------------------------------
# With a real llama-server behind a counting proxy


@pytest.fixture(scope="module")
def server_and_proxy():
    with LlamaServer(parallel=2) as server, CountingProxy(server.url) as proxy:
        yield server, proxy


def _metrics(run_dir: Path) -> list[dict]:
    results = json.loads((run_dir / "metrics.json").read_text())["results"]
    # everything but the figures that say how the answers were obtained
    return [{k: v for k, v in m.items() if k not in ("cached", "wall_s")} for m in results]


@server_test
def test_edit_one_template_reruns_only_that_prompt_and_replay_is_identical(server_and_proxy, tmp_path, capsys):
    server, proxy = server_and_proxy
    spec = write_spec(tmp_path / "spec", proxy.url, templates={"a": BARE_LABEL, "b": ONE_WORD})
    cache_dir = str(tmp_path / "cache")
    limit = ["--limit", "4"]
    start = proxy.count()
    assert main(["eval", str(spec), *limit, "--cache-dir", cache_dir, "--quiet", "--out", str(tmp_path / "r1")]) == 0
    assert proxy.count() - start == 8  # 4 examples x 2 prompts

    # edit prompt b only
    (tmp_path / "spec" / "b.j2").write_text(ONE_WORD.replace("exactly one word", "one word only"))
    before = proxy.count()
    assert main(["eval", str(spec), *limit, "--cache-dir", cache_dir, "--quiet", "--out", str(tmp_path / "r2")]) == 0
    asked = proxy.user_messages(since=before)
    assert len(asked) == 4 and all("one word only" in m for m in asked)
    run2 = json.loads((tmp_path / "r2" / "metrics.json").read_text())["run"]
    counts = run2["requests"]["llamacpp:smollm2"]
    assert (counts["sent"], counts["cache_hits"], counts["cache_misses"]) == (4, 4, 0)

    # replay: no request reaches the server, metrics identical to the run that recorded them
    before = proxy.count()
    capsys.readouterr()
    assert main(["eval", str(spec), *limit, "--cache-dir", cache_dir, "--cache", "replay", "--quiet", "--out", str(tmp_path / "r3")]) == 0
    assert proxy.count() == before
    assert _metrics(tmp_path / "r3") == _metrics(tmp_path / "r2")

    # export exactly this spec's requests; a fresh clone replays the fixture with an empty cache
    fixture = tmp_path / "spec" / "fixtures" / "rt.jsonl"
    assert main(["cache", "export", str(fixture), "--cache-dir", cache_dir, "--spec", str(spec), *limit]) == 0
    assert len(fixture.read_text().splitlines()) == 8
    spec.write_text(spec.read_text() + "cache: {fixture: fixtures/rt.jsonl}\n")
    empty = str(tmp_path / "empty-cache")
    assert main(["eval", str(spec), *limit, "--cache-dir", empty, "--cache", "replay", "--quiet", "--out", str(tmp_path / "r4")]) == 0
    assert _metrics(tmp_path / "r4") == _metrics(tmp_path / "r2")
    assert proxy.count() == before

    # one response missing from the fixture: exit 3, naming model, prompt and example; still no call
    lines = fixture.read_text().splitlines()
    gone = json.loads(lines[0])
    fixture.write_text("\n".join(lines[1:]) + "\n")
    prompt_of_gone = "b" if "one word only" in gone["material"]["body"]["messages"][-1]["content"] else "a"
    capsys.readouterr()
    assert main(["eval", str(spec), *limit, "--cache-dir", empty, "--cache", "replay", "--quiet", "--out", str(tmp_path / "r5")]) == 3
    err = capsys.readouterr().err
    assert "replay: 1 request(s) have no stored response" in err
    assert f"llamacpp:smollm2 / {prompt_of_gone}: 1 missing: test:" in err
    assert proxy.count() == before


@server_test
def test_truncated_answers_replay_as_truncated(server_and_proxy, tmp_path):
    server, proxy = server_and_proxy
    spec = write_spec(
        tmp_path / "spec", proxy.url, templates={"j": BARE_LABEL + "{# reply in JSON #}"}, modes={"j": "json_object"},
        max_tokens=2,  # no JSON object fits in 2 tokens
    )
    cache_dir = str(tmp_path / "cache")
    assert main(["eval", str(spec), "--limit", "2", "--cache-dir", cache_dir, "--quiet", "--out", str(tmp_path / "r1")]) == 0
    stats = cache_stats(Path(cache_dir))
    assert stats["entries"] == 2 and stats["finish_reasons"] == {"length": 2}
    before = proxy.count()
    assert main(["eval", str(spec), "--limit", "2", "--cache-dir", cache_dir, "--cache", "replay", "--quiet", "--out", str(tmp_path / "r2")]) == 0
    assert proxy.count() == before
    assert _metrics(tmp_path / "r2") == _metrics(tmp_path / "r1")
    assert _metrics(tmp_path / "r2")[0]["outcomes"]["truncated"] == 2


def test_fixture_lines_survive_any_line_splitter(tmp_path):
    """Review text may hold U+2028/U+2029/NEL, which JSON leaves raw but str.splitlines and editors
    treat as line breaks: the fixture escapes them, so one entry is always one line."""
    m = materials(tiny_spec(tmp_path))[0]["material"]
    odd = {**m, "body": {**m["body"], "messages": [{"role": "user", "content": "a\u2028b\u2029c\x85d"}]}}
    disk = open_disk_cache(tmp_path / "cache")
    disk.set(cache_key(odd), make_entry(odd, answer("a\u2028b")))
    disk.close()
    export_fixture(tmp_path / "cache", tmp_path / "f.jsonl")
    text = (tmp_path / "f.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 1
    [(_, entry)] = list(read_fixture(tmp_path / "f.jsonl"))
    assert entry["material"] == odd and entry["response"]["text"] == "a\u2028b"
    assert import_fixture(tmp_path / "copy", tmp_path / "f.jsonl") == 1
