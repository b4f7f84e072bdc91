"""Budgets of the HTML report (issue 10), measured, not asserted by a test:

* the page size of a run (< 3 MB) and its first render in headless Chromium (< 1 s);
* `harness report RUN` (< 2 s) on a 3-prompt, 4-baseline run of all 1066 test examples.

    HARNESS_DATA_DIR=../shared/datasets python bench/html_report.py [--run DIR] [--repeat 5]

Without --run, the 1066-example run folder is SYNTHESISED: the real rotten_tomatoes test texts
and gold labels, three LLM rows (json_schema, json_object, bare_label) whose answers mimic the
recorded SmolLM2 ones (mostly "negative", 13% truncated in json_object, pretty-printed raw text,
latencies and tokens), and four baseline rows with label probabilities; then scored by the real
pipeline (harness.metrics.assemble.build_rows) and written by write_run_files. The fixture
holds answers for 300 examples only, so a replay cannot fill 1066; the figures measure the page
builder, not any model. With --run DIR, that run folder is measured as it is (e.g. the main spec's
replay).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def synthesise(out: Path) -> Path:
    from harness.data import load_split
    from harness.metrics.assemble import build_rows
    from harness.records import Prediction
    from harness.report import write_run_files
    from harness.runner import environment_info
    from harness.spec import load_spec

    spec = load_spec(ROOT / "specs" / "rotten_tomatoes.yaml")
    split = load_split(spec, "test")
    rng = random.Random(0)
    preds: list[Prediction] = []
    for prompt, truncated in (("json_schema", 0.0), ("json_object", 0.13), ("bare_label", 0.0)):
        for e in split.examples:
            if rng.random() < truncated:
                raw = '{\n  "label": {\n    "type": "string",\n    "enum": ["negative", "positive"]'
                preds.append(Prediction(e.id, "llamacpp:smollm2", prompt, e.gold, None, "truncated", raw=raw,
                                        finish_reason="length", latency_s=rng.uniform(0.5, 3), prompt_tokens=160,
                                        completion_tokens=32, text=e.text))
                continue
            label = "negative" if rng.random() < 0.97 else "positive"
            raw = label if prompt == "bare_label" else '{\n  "label": "%s"\n}' % label
            preds.append(Prediction(e.id, "llamacpp:smollm2", prompt, e.gold, label, "valid",
                                    parsed_from="label" if prompt == "bare_label" else "whole", raw=raw,
                                    finish_reason="stop", latency_s=rng.uniform(0.4, 2), prompt_tokens=160,
                                    completion_tokens=8, text=e.text))
    for name, skill in (("tfidf_logreg", 0.82), ("embedding_logreg", 0.8), ("embedding_centroid", 0.75), ("embedding_zero_shot", 0.58)):
        for e in split.examples:
            right = rng.random() < skill
            label = e.gold if right else ("positive" if e.gold == "negative" else "negative")
            p = rng.uniform(0.5, 0.95)
            probs = {label: round(p, 4), ("positive" if label == "negative" else "negative"): round(1 - p, 4)}
            preds.append(Prediction(e.id, f"baseline:{name}", "-", e.gold, label, "valid", parsed_from="baseline",
                                    raw=json.dumps(dict(sorted(probs.items()))), confidence=round(p, 6),
                                    latency_s=0.0001, text=e.text))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in preds:
            f.write(p.to_json() + "\n")
    metrics = build_rows(preds, spec.label_names, spec.task)
    resolved = spec.model_dump(mode="json")
    (out / "spec.resolved.json").write_text(json.dumps(resolved, indent=2))
    (out / "dataset.json").write_text(json.dumps(split.fingerprint, indent=2))
    run = {"spec": spec.name, "started_at": "synthetic", "wall_s": None, "command": "bench/html_report.py (synthetic)",
           "dataset": split.fingerprint, "models": ["llamacpp:smollm2"], "prompts": ["json_schema", "json_object", "bare_label"],
           "skipped": [], "baselines": {}, "stopped": [], "requests": {}, "environment": environment_info()}
    write_run_files(out, run, metrics)
    return out


def time_report(run: Path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def time_render(page_path: Path, repeat: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        for _ in range(repeat):
            profile = tempfile.mkdtemp(prefix="bench-chromium-")
            context = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                           args=ARGS, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_selector("#browser-body tr")
            wall = time.perf_counter() - t0
            timing = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                const paint = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
                return {load_ms: n.loadEventEnd, dom_ms: n.domContentLoadedEventEnd, fcp_ms: paint ? paint.startTime : null}; }""")
            t1 = time.perf_counter()
            page.select_option("#f-kind", "wrong")
            filter_ms = (time.perf_counter() - t1) * 1000
            out.append({**timing, "goto_to_rows_ms": wall * 1000, "filter_ms": filter_ms})
            context.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="measure this run folder instead of a synthetic one")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    run = args.run or synthesise(Path(tempfile.mkdtemp(prefix="bench-html-")) / "run")
    times = time_report(run, args.repeat)
    page = run / "report.html"
    renders = time_render(page, args.repeat)
    med = lambda key: statistics.median(r[key] for r in renders if r[key] is not None)  # noqa: E731
    n = sum(1 for _ in open(run / "predictions.jsonl", encoding="utf-8"))
    print(f"run: {run} ({n} predictions)")
    print(f"harness report: median {statistics.median(times):.2f} s, min {min(times):.2f} s over {args.repeat}")
    print(f"report.html: {page.stat().st_size / 1e6:.2f} MB")
    print(f"first render (median of {args.repeat}): first contentful paint {med('fcp_ms'):.0f} ms, DOMContentLoaded "
          f"{med('dom_ms'):.0f} ms, load event {med('load_ms'):.0f} ms, goto→browser rows {med('goto_to_rows_ms'):.0f} ms; "
          f"filter click {med('filter_ms'):.0f} ms")


if __name__ == "__main__":
    main()
