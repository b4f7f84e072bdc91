"""Large runs stream: bootstrap weights come in blocks that reproduce the whole matrix, so scoring
100k examples never holds (resamples x n) at once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.metrics import kernel


@pytest.mark.parametrize("n,resamples,cells,n_blocks", [
    (7, 50, 21, 1), (3000, 40, 1 << 16, 2), (70_000, 5, 1 << 16, 5), (5, 0, 10, 0)])
def test_weight_blocks_are_the_rows_of_the_resampled_counts(n, resamples, cells, n_blocks):
    blocks = [b.copy() for b in kernel.resample_weight_blocks(n, resamples, seed=3, cells=cells)]
    assert len(blocks) == n_blocks and sum(len(b) for b in blocks) == resamples
    idx = kernel.resample_indices(n, resamples, seed=3)
    expected = np.stack([np.bincount(row, minlength=n) for row in idx]) if resamples else np.empty((0, n))
    got = np.concatenate(blocks) if blocks else np.empty((0, n))
    assert np.array_equal(got, expected)
    assert np.array_equal(kernel.resample_weights(n, resamples, seed=3), expected)


def test_weight_blocks_share_one_buffer():
    """A block is overwritten by the next (one buffer: scoring holds one block, not two)."""
    blocks = list(kernel.resample_weight_blocks(3000, 40, seed=3, cells=1 << 16))
    assert len(blocks) == 2 and np.shares_memory(blocks[0], blocks[1])


@pytest.mark.parametrize("b,c", [(1000, 1100), (1500, 1600), (2900, 3100), (1200, 1210), (3000, 3000), (5, 2500)])
def test_mcnemar_in_log_space_matches_the_integer_sum(b, c):
    import math

    n = b + c
    exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)
    assert n > kernel.EXACT_MCNEMAR_MAX
    assert kernel.mcnemar_exact(b, c) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_a_replay_remembers_finished_keys_and_recalls_their_answers_from_the_cache():
    """SingleFlight with `recall` (a replay) keeps no response once its flight ends: a later caller
    of the same key gets `recall()`'s answer, counted shared and cached as a remembered answer was."""
    import asyncio

    from harness.runner import SingleFlight
    from providers.base import ChatResponse

    key = "ab" * 32  # a cache key: sha256 hex
    calls = []

    async def fetch():
        calls.append("fetch")
        return ChatResponse(text="positive"), True

    async def recall():
        calls.append("recall")
        return ChatResponse(text="positive")

    async def main():
        flights = SingleFlight(remember=True)
        first = await flights.run(key, fetch, recall=recall)
        assert flights._flights == {}  # nothing held for the rest of the run
        second = await flights.run(key, fetch, recall=recall)
        other = await flights.run("cd" * 32, fetch, recall=recall)  # another key: fetched
        return flights, first, second, other

    flights, first, second, other = asyncio.run(main())
    assert calls == ["fetch", "recall", "fetch"]
    assert (first[0].text, first[1:]) == ("positive", (True, False))
    assert (second[0].text, second[1:]) == ("positive", (True, True))
    assert other[1:] == (True, False) and flights.shared == 1


def test_a_replay_of_two_prompts_with_one_body_counts_what_the_recorded_run_remembered(tmp_path):
    """Two prompts sending the same body over 6 rows, recorded with `--cache write`, then replayed:
    each of the 6 bodies is looked up once (6 cache hits), the second prompt's 6 are shared, and
    the 12 answers count as cache hits, as when the replay kept every answer in memory."""
    import asyncio

    from harness.cache import ResponseCache
    from harness.runner import run_eval
    from harness.spec import load_spec
    from http_stub import OpenAIStub

    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(
        json.dumps({"text": f"{i}: a {'good' if i % 2 else 'dull'} film", "label": i % 2}) + "\n" for i in range(6)))
    (tmp_path / "p.j2").write_text("{% block system %}Classify.{% endblock %}{% block user %}{{ text }}{% endblock %}")

    def run(mode: str, base_url: str, out: str):
        spec = {"name": "same_body", "dataset": {"source": "data", "split": "test", "train_split": None,
                                                  "label_map": {0: "negative", 1: "positive"}},
                "labels": [{"name": "negative"}, {"name": "positive"}],
                "prompts": [{"name": "first", "template": "p.j2", "mode": "text"},
                            {"name": "second", "template": "p.j2", "mode": "text"}],
                "models": [{"provider": "openai", "model": "stub-model", "base_url": base_url, "concurrency": 1,
                            "params": {"temperature": 0, "max_tokens": 4}}]}
        (tmp_path / "spec.yaml").write_text(json.dumps(spec))
        cache = ResponseCache(mode, tmp_path / "cache")
        try:
            return asyncio.run(run_eval(load_spec(tmp_path / "spec.yaml"), out_dir=tmp_path / out, baselines=[], cache=cache))
        finally:
            cache.close()

    with OpenAIStub() as stub:
        recorded = run("write", stub.base_url, "recorded")
        assert stub.requests == 6
    replayed = run("replay", stub.base_url, "replayed")  # the stub is gone: a replay never calls it
    counts = replayed.run["requests"]["openai:stub-model"]
    assert (counts["sent"], counts["cache_hits"], counts["shared"]) == (0, 12, 6)
    assert (replayed.run["cache"]["hits"], replayed.run["cache"]["misses"]) == (6, 0)
    assert [r["accuracy"] for r in replayed.metrics] == [r["accuracy"] for r in recorded.metrics]


def test_a_streamed_split_reads_and_fingerprints_like_the_whole_file(tmp_path):
    """JSONL is read line by line and the fingerprint hashed row by row: the same examples, error
    lines and sha256 as the canonical JSON of the whole list of rows (its definition)."""
    import hashlib

    from harness.data import load_split
    from harness.errors import HarnessError
    from harness.spec import parse_spec

    def spec(source: Path):
        return parse_spec(f"name: t\ndataset: {{source: {source}, split: test}}\n"
                          "labels: [{name: negative}, {name: positive}]\nprompts: [{name: p, template: t.j2}]\n")

    rows = [{"text": "ünï\u2028code ok", "label": "positive"}, {"text": "dull", "label": "negative"}]
    path = tmp_path / "test.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n\n", encoding="utf-8")
    split = load_split(spec(path), "test")
    assert [(e.id, e.text, e.gold) for e in split.examples] == [
        ("test:0", "ünï\u2028code ok", "positive"), ("test:1", "dull", "negative")]
    canonical = json.dumps([{"gold": r["label"], "id": f"test:{i}", "text": r["text"]} for i, r in enumerate(rows)],
                           ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert split.fingerprint["sha256"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    path.write_text(json.dumps(rows[0]) + "\n\n{broken\n")
    with pytest.raises(HarnessError, match=r"test.jsonl:3: invalid JSON"):
        load_split(spec(path), "test")
    array = tmp_path / "array.json"  # a JSON array after blank lines: its error names its own line
    array.write_text("\n\n[" + json.dumps(rows[0]) + ",\n oops]")
    with pytest.raises(HarnessError, match=r"array.json:4: invalid JSON"):
        load_split(spec(array), "test")


def test_report_html_is_written_in_pieces_that_make_the_whole_page(tmp_path, monkeypatch):
    """The example browser's JSON comes in pieces of EXAMPLES_PER_PIECE examples: joined, they are
    the one JSON text of the whole data (escaped for <script> the same way), and report.html on
    disk is the page `build_report_html` returns."""
    from harness import html_report
    from harness.metrics.assemble import build_rows
    from harness.records import Prediction
    from harness.report import write_run_files

    labels = ["negative", "positive"]
    preds = [Prediction(f"test:{i}", "m:x", prompt, labels[i % 2], labels[(i // 3) % 2], "valid" if i % 5 else "invalid_json",
                        raw="</script>\u2028" if i == 4 else labels[(i // 3) % 2], text=f"text <{i}>\u2029",
                        confidence=0.5 + i / 40)
             for prompt in ("a", "b") for i in range(7)]
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(p.to_json() + "\n" for p in preds))
    (run / "spec.resolved.json").write_text(json.dumps({"name": "s", "labels": [{"name": n} for n in labels]}))
    write_run_files(run, {"spec": "s"}, build_rows(preds, labels, "single_label"))
    monkeypatch.setattr(html_report, "EXAMPLES_PER_PIECE", 3)
    view = html_report.load_view(run)
    pieces = list(html_report.browser_json(view))
    assert len(pieces) == 2 + 3  # head, examples 0-2, 3-5, 6, tail
    whole = html_report._json(html_report.browser_data(view))
    assert "".join(pieces) == whole and json.loads(whole)["examples"][4]["a"][0][2] == "</script>\u2028"
    page = html_report.build_report_html(run)
    blob = page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert blob == html_report._script_safe(whole) and "\u2028" not in blob and "<" not in blob
    assert html_report.write_html_report(run).read_text(encoding="utf-8") == page
