"""Where a cached replay's per-request time goes, stage by stage, in one process.

    HARNESS_DATA_DIR=../shared/datasets python bench/replay_breakdown.py FIXTURE.jsonl

FIXTURE must hold every request of specs/rotten_tomatoes.yaml: the committed fixture, or the
synthetic one `python bench/replay.py --keep-fixture FILE` writes. Each stage runs over all requests
with the harness's own functions; the per-request stages add up to (roughly) the per-example slope
bench/replay.py measures end to end, divided by the number of prompts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    fixture = Path(sys.argv[1])
    t0 = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from harness.cache import cache_key, load_fixture
    from harness.metrics.assemble import build_rows
    from harness.records import Prediction, read_predictions
    from harness.runner import Prepared, cache_material, request_body
    from harness.spec import load_spec
    from providers import get_provider_class
    from providers.base import ChatResponse
    import numpy  # noqa: F401 - imported here so that its one-off cost is not charged to scoring

    t_imports = time.perf_counter()
    spec = load_spec(ROOT / "specs" / "rotten_tomatoes.yaml")
    prepared = Prepared(spec)
    model = spec.models[0]
    provider = get_provider_class(model.provider)(model)
    t_prepare = time.perf_counter()
    work = [(pp, ex) for pp in prepared.prompts for ex in prepared.eval.examples]
    bodies = [request_body(prepared, pp, ex, model, provider) for pp, ex in work]
    t_render = time.perf_counter()
    materials = [cache_material(provider, b) for b in bodies]
    keys = [cache_key(m) for m in materials]
    t_key = time.perf_counter()
    entries = load_fixture(fixture)
    t_load = time.perf_counter()
    responses = []
    for key, material in zip(keys, materials):
        entry = entries[key]
        assert entry["material"] == material
        responses.append(ChatResponse.from_cache(entry["response"]))
    t_lookup = time.perf_counter()
    verdicts = [
        prepared.contract.judge(r.text, pp.mode, finish_reason=r.finish_reason, refusal=r.refusal, error=r.error)
        for (pp, _), r in zip(work, responses)
    ]
    t_judge = time.perf_counter()
    out = Path("/tmp") / f"replay-breakdown-{id(work)}.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for (pp, ex), v, r in zip(work, verdicts, responses):
            f.write(Prediction(
                example_id=ex.id, model=model.id, prompt=pp.prompt.name, gold=ex.gold, prediction=v.prediction,
                outcome=v.outcome, parsed_from=v.parsed_from, raw=r.text, finish_reason=r.finish_reason,
                latency_s=r.latency_s, cached=True,
            ).to_json() + "\n")
            f.flush()
    t_write = time.perf_counter()
    predictions = read_predictions(out)
    build_rows(predictions, spec.label_names, spec.task, coverage=False, intervals=False)
    t_score = time.perf_counter()
    build_rows(predictions, spec.label_names, spec.task)  # the same plus coverage and intervals
    t_intervals = time.perf_counter() - (t_score - t_write)
    out.unlink()

    n = len(work)
    print(f"{n} requests ({len(prepared.eval.examples)} examples x {len(prepared.prompts)} prompts)\n")
    print("| stage | total | per request |")
    print("|---|---:|---:|")
    for name, a, b in [
        ("imports (once)", t0, t_imports), ("load spec, dataset, templates (once)", t_imports, t_prepare),
        ("render messages + build body", t_prepare, t_render), ("cache key (canonical JSON + sha256)", t_render, t_key),
        ("load fixture (JSON per line)", t_key, t_load), ("lookup + material check + ChatResponse", t_load, t_lookup),
        ("validate answer (judge)", t_lookup, t_judge), ("write prediction line (+flush)", t_judge, t_write),
        ("read predictions back + score", t_write, t_score), ("coverage + bootstrap intervals (build_rows minus scoring)", t_score, t_intervals),
    ]:
        print(f"| {name} | {1000 * (b - a):.1f} ms | {1e6 * (b - a) / n:.1f} µs |")


if __name__ == "__main__":
    main()
