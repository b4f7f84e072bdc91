"""report.html, the compare page and the history page in a real headless Chromium (Playwright).

Every page is loaded from file://; any console error, page error or request that is not file://
fails the test. The matrix numbers are read from the DOM and compared with metrics.json, and the
example browser's filters are clicked and their counts checked against the predictions.
Skips only when no Chromium is installed (CI installs Debian's chromium in .ci/run).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from html_runs import harness, metrics, predictions, replay_run, stub_spec

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = '<script>window.__pwned = 1</script><img src="http://127.0.0.1:9/x.png" onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        profile = tempfile.mkdtemp(prefix="harness-chromium-")
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": 1400, "height": 1000})
        yield context
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


class Loaded:
    def __init__(self, page, problems):
        self.page = page
        self.problems = problems


@pytest.fixture
def load(browser, tmp_path):
    pages = []

    def _load(path: Path, shot: str | None = None) -> Loaded:
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: problems.append(f"network request: {r.url}") if not r.url.startswith("file://") else None)
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body")
        if shot:
            page.screenshot(path=str(tmp_path / shot), full_page=True)
        pages.append(page)
        return Loaded(page, problems)

    yield _load
    for page in pages:
        page.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("html-runs")
    a = replay_run(root / "runs" / "rotten_tomatoes" / "20260101-000000", "--no-baselines")
    b = replay_run(root / "runs" / "rotten_tomatoes" / "20260102-000000", "--run-baseline", "tfidf_logreg")
    # C: B with probabilities and a calibration part (the likelihood helper's contract) and a
    # hostile raw answer, re-rendered by `harness report`
    c = root / "c"
    shutil.copytree(b, c)
    payload = metrics(c)
    row = next(m for m in payload["results"] if m["model"] == "baseline:tfidf_logreg")
    row["calibration"] = {"n": 300, "ece": 0.0421, "ece_equal_mass": 0.05, "brier": 0.1234, "log_loss": 0.41,
                          "margin_mean": 0.3, "entropy_mean": 0.62,
                          "bins": [{"lo": i / 10, "hi": (i + 1) / 10, "n": 30, "confidence": i / 10 + 0.05,
                                    "accuracy": min(1.0, i / 10 + 0.1)} for i in range(10)]}
    (c / "metrics.json").write_text(json.dumps(payload), encoding="utf-8")
    preds = predictions(c)
    hostile = next(p for p in preds if p["model"] == "llamacpp:smollm2" and p["outcome"] != "valid")
    hostile["raw"] = XSS
    for p in preds:
        if p["example_id"] == hostile["example_id"]:
            p["text"] = XSS
    with open(c / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(p) + "\n")
    harness("report", str(c))
    return {"root": root, "a": a, "b": b, "c": c, "hostile": hostile["example_id"]}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def test_matrix_numbers_match_metrics_json(runs, load):
    loaded = load(runs["b"] / "report.html", shot="report.png")
    page = loaded.page
    rows = metrics(runs["b"])["results"]
    assert len(rows) == 3  # json_schema, bare_label, tfidf
    for figure, kind in (("accuracy", "pct"), ("accuracy_valid", "pct"), ("validity", "pct"), ("macro_f1", "f1")):
        page.click(f'#matrix button.fig-btn[data-figure="{figure}"]')
        for m in rows:
            cell = page.locator(f'td.cell[data-row="{m["model"]}|{m["prompt"]}"] .fig-{figure}')
            assert cell.is_visible(), (figure, m["model"], m["prompt"])
            shown = cell.locator(".v").inner_text()
            expected = _pct(m[figure]) if kind == "pct" else f"{m[figure]:.3f}"
            assert shown == expected, (figure, m["model"], m["prompt"], shown, expected)
            assert float(cell.get_attribute("data-value")) == pytest.approx(m[figure])
            if figure in ("accuracy", "macro_f1"):
                ci = m[f"{figure}_ci"]
                low = _pct(ci[0]) if kind == "pct" else f"{ci[0]:.3f}"
                assert low in cell.locator(".ci").inner_text()
        # the figure not chosen is hidden
        other = "validity" if figure != "validity" else "accuracy"
        assert not page.locator(f"td.cell .fig-{other}").first.is_visible()
    # best of the run (tfidf, 82.3%) is framed; the LLM column's best prompts carry a star
    page.click('#matrix button.fig-btn[data-figure="accuracy"]')
    assert page.locator('td.cell[data-row="baseline:tfidf_logreg|-"] .fig-accuracy.top').count() == 1
    llm = [m for m in rows if not m["model"].startswith("baseline:")]
    best = max(m["accuracy"] for m in llm)
    for m in llm:
        marked = page.locator(f'td.cell[data-row="{m["model"]}|{m["prompt"]}"] .fig-accuracy .mark.best').count()
        assert marked == (1 if m["accuracy"] == best else 0), m["prompt"]
    assert loaded.problems == []


def test_pairs_use_compare_statistics(runs, load):
    from harness.compare import mcnemar_exact

    loaded = load(runs["b"] / "report.html")
    rows = loaded.page.locator("#significance tbody tr")
    # 1 prompt pair + 2 LLM-vs-baseline pairs
    assert rows.count() == 3
    preds = predictions(runs["b"])
    by = {}
    for p in preds:
        by.setdefault((p["model"], p["prompt"]), {})[p["example_id"]] = p
    a, b = by[("llamacpp:smollm2", "json_schema")], by[("llamacpp:smollm2", "bare_label")]
    right = lambda p: p["outcome"] == "valid" and p["prediction"] == p["gold"]  # noqa: E731
    x = sum(right(a[i]) and not right(b[i]) for i in a)
    y = sum(right(b[i]) and not right(a[i]) for i in a)
    row = loaded.page.locator('#significance tr[data-a="llamacpp:smollm2|json_schema"][data-b="llamacpp:smollm2|bare_label"]')
    assert float(row.locator(".pval").get_attribute("data-p")) == pytest.approx(mcnemar_exact(x, y))
    assert loaded.problems == []


def test_example_browser_filters(runs, load):
    loaded = load(runs["b"] / "report.html")
    page = loaded.page
    preds = predictions(runs["b"])
    by_example: dict[str, list[dict]] = {}
    for p in preds:
        by_example.setdefault(p["example_id"], []).append(p)
    right = lambda p: p["outcome"] == "valid" and p["prediction"] == p["gold"]  # noqa: E731
    shown = lambda p: p["prediction"] if p["outcome"] == "valid" else f"<{p['outcome']}>"  # noqa: E731

    def count() -> int:
        return int(page.locator("#browser-count").get_attribute("data-count"))

    assert count() == 300
    assert page.locator("#browser-body tr").count() == 25  # one page
    page.select_option("#f-kind", "wrong")
    assert count() == sum(any(not right(p) for p in ps) for ps in by_example.values())
    page.select_option("#f-kind", "invalid")
    expected_invalid = sum(any(p["outcome"] != "valid" for p in ps) for ps in by_example.values())
    assert count() == expected_invalid
    page.select_option("#f-kind", "disagree")
    assert count() == sum(len({shown(p) for p in ps}) > 1 for ps in by_example.values())
    page.select_option("#f-kind", "confident")
    assert count() == sum(any(not right(p) and p["outcome"] == "valid" and (p["confidence"] or 0) >= 0.8 for p in ps)
                          for ps in by_example.values())
    page.select_option("#f-kind", "wrong")
    page.select_option("#f-row", label="baseline:tfidf_logreg")
    tfidf_wrong = sum(not right(p) for p in preds if p["model"] == "baseline:tfidf_logreg")
    assert count() == tfidf_wrong == 76  # 300 x (1 - 0.747)
    page.select_option("#f-kind", "all")
    page.select_option("#f-row", "")
    page.fill("#f-search", "clever")
    assert count() == sum(any("clever" in (x or "").lower() for p in ps for x in (p["text"], p["example_id"], shown(p), p["raw"]))
                          for ps in by_example.values())  # the search reads text, id, answers and raw answers
    first = page.locator("#browser-body tr").first
    assert "clever" in first.locator("td.text").inner_text().lower()
    page.fill("#f-search", "")
    page.click("#p-next")
    assert "page 2 of 12" in page.locator("#p-page").inner_text()
    page.screenshot(path=str(Path(tempfile.gettempdir()) / "harness-browser-filter.png"))
    assert loaded.problems == []


def test_reliability_diagram_and_escaping(runs, load):
    loaded = load(runs["c"] / "report.html", shot="calibrated.png")
    page = loaded.page
    card = page.locator('.reliability[data-row="baseline:tfidf_logreg|-"]')
    assert card.locator(".ece").inner_text() == "0.042"
    assert card.locator(".brier").inner_text() == "0.123"
    assert card.locator("svg rect.relbar").count() == 10
    rows_without = [m for m in metrics(runs["c"])["results"] if not m.get("calibration")]
    for m in rows_without:
        assert f"{m['model']} / {m['prompt']}" in page.locator("#confidence").inner_text()
    # the hostile answer is text, never markup: no script ran, no image was requested
    assert page.evaluate("window.__pwned") is None
    page.fill("#f-search", runs["hostile"])
    assert int(page.locator("#browser-count").get_attribute("data-count")) >= 1
    assert XSS in page.locator("#browser-body td.text").first.inner_text()
    assert XSS in page.locator("#browser-body").text_content()  # the raw answer, inside a closed <details>
    assert "<script>window.__pwned" in page.locator("#outcomes").text_content()
    assert page.evaluate("window.__pwned") is None
    assert loaded.problems == []


def test_compare_and_history_pages(runs, load, tmp_path):
    out = tmp_path / "compare.html"
    done = harness("compare", str(runs["a"]), str(runs["b"]), "--html", str(out), "--markdown", str(tmp_path / "c.md"))
    assert out.is_file(), done.stderr
    loaded = load(out, shot="compare.png")
    table = loaded.page.locator("#compare-table tbody tr")
    assert table.count() == 2  # the LLM rows both runs have
    assert "only in B: baseline:tfidf_logreg" in loaded.page.inner_text("body")
    assert "same template" in loaded.page.locator("#templates").inner_text()
    assert "| llamacpp:smollm2 | bare_label |" in (tmp_path / "c.md").read_text()
    assert loaded.problems == []

    done = harness("history", "rotten_tomatoes", cwd=runs["root"])
    index = runs["root"] / "runs" / "rotten_tomatoes" / "index.html"
    assert index.is_file(), done.stdout
    loaded = load(index, shot="history.png")
    links = loaded.page.locator("#runs-table a")
    assert links.count() == 2
    href = links.first.get_attribute("href")
    assert (index.parent / href).resolve() == (runs["b"] / "report.html").resolve()
    loaded.page.click('button.fig-btn[data-figure="validity"]')
    assert loaded.page.locator(".fig-validity svg").is_visible()
    assert not loaded.page.locator(".fig-accuracy svg").is_visible()
    assert loaded.problems == []


def test_slices_and_suites_in_the_browser(load, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from http_stub import OpenAIStub

    with OpenAIStub() as stub:
        spec = stub_spec(tmp_path, stub.base_url, slices=["domain"],
                         suites=[{"name": "negation", "cases": [{"text": "not good", "label": "negative"},
                                                                {"text": "good", "label": "positive"}]}])
        harness("eval", str(spec), "--quiet", "--cache", "off", "--out", str(tmp_path / "run"), cwd=tmp_path)
    loaded = load(tmp_path / "run" / "report.html", shot="suites.png")
    page = loaded.page
    rows = page.locator("#suites-table tbody tr")
    assert rows.count() == 2  # one per prompt
    assert page.locator('#suites-table tr[data-row="openai:stub-model|json"] .passed').inner_text() == "1/2"
    count = lambda: int(page.locator("#browser-count").get_attribute("data-count"))  # noqa: E731
    assert count() == 10  # the suites' cases are not in the browser of the main examples
    page.select_option("#f-slice", label="domain = news (6)")
    assert count() == 6
    page.select_option("#f-kind", "wrong")
    news_wrong = sum(1 for p in predictions(tmp_path / "run") if not p["suite"] and p["slices"]["domain"] == "news"
                     and p["prompt"] == "json" and p["prediction"] != p["gold"])
    assert count() == news_wrong
    assert "Accuracy by slice domain" in page.locator("#failures").inner_text()
    assert loaded.problems == []
