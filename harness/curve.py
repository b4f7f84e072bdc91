"""The learning curve: how many labelled examples a cheap encoder needs to match a prompt.

`harness curve SPEC --sizes 50,100,...` trains each trainable baseline of the spec (tfidf_logreg,
embedding_logreg, embedding_centroid, setfit) on seeded, label-stratified subsets of the train
split — `--repeats` subsets per size, repeat r drawn with seed r — scores each on the evaluated
examples, and compares with the LLMs of a finished run (`--run`, default runs/SPEC/latest or the
newest run): for each LLM × prompt, the smallest train size at which a baseline's mean score
reaches the LLM's is "what the prompt is worth in labels".

The evaluated examples are those of the run (same split, limit and seed; their hash is checked),
so the numbers compare like with like. Thresholds of multi-label baselines are tuned on the
validation split, as in `harness eval`. A baseline's `train_limit` (setfit: `per_class`) does
not apply here.

`--per-class 8,16,32,64` sizes the subsets per label instead (single-label tasks): k examples of
every label, the few-shot setting SetFit is meant for; a k above a label's train count is left out
with a note naming the label.

Output folder (runs/SPEC/curve-TIMESTAMP/): curve.json (every point, the summary, the LLM
references and the answer), curve.md (the tables) and curve.png (the plot).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.spec import Spec

DEFAULT_SIZES = (50, 100, 200, 500, 1000, 2000, 5000)


def parse_sizes(text: str, flag: str = "--sizes") -> list[int]:
    example = "8,16,32,64" if flag == "--per-class" else "50,100,200"
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 2:
            raise HarnessError(f"{flag} {text!r}: {part!r} is not a whole number >= 2; e.g. {flag} {example}")
        sizes.append(int(part))
    if not sizes:
        raise HarnessError(f"{flag}: give at least one train size, e.g. {flag} {example}")
    return sorted(set(sizes))


@dataclass
class Reference:
    """An LLM's figure in the run the curve is compared with."""

    model: str
    prompt: str
    value: float


@dataclass
class CurveResult:
    out_dir: Path
    metric: str
    points: list[dict]  # one per baseline × size × repeat
    summary: list[dict]  # one per baseline × size: mean, std, min, max
    references: list[Reference]
    worth: list[dict]  # per reference × baseline: the smallest matching size (or None)
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    per_class: bool = False  # sizes are examples per label (--per-class), not train rows

    @property
    def unit(self) -> str:
        return " per class" if self.per_class else ""


def _reference_run(spec: "Spec", run: str | None, allow_incomplete: bool = False) -> Path | None:
    from harness.runs import RUNS_ROOT, resolve_run_dir

    if run is not None:
        return resolve_run_dir(run, allow_incomplete=allow_incomplete)
    folder = RUNS_ROOT / spec.name
    if not folder.is_dir():
        return None
    try:
        return resolve_run_dir(folder, allow_incomplete=allow_incomplete)
    except HarnessError:  # the spec has no finished run yet: a curve without LLM lines
        return None


def _eval_examples(spec: "Spec", run_dir: Path | None, limit: int | None):
    """The evaluated examples: the run's (checked by hash), else the spec's eval split."""
    from harness.data import load_eval_split, load_split

    if run_dir is None:
        return load_eval_split(spec, limit=limit)
    fingerprint_path = run_dir / "dataset.json"
    try:
        fingerprint = json.loads(fingerprint_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{fingerprint_path}: cannot read the run's dataset fingerprint: {exc}") from None
    if limit is not None and limit != fingerprint.get("limit"):
        raise HarnessError(
            f"--limit {limit}: the run {run_dir} evaluated limit {fingerprint.get('limit')}; the curve "
            f"follows the run's examples (drop --limit, or pass --run of a run with that limit)"
        )
    split = load_split(spec, fingerprint.get("split") or spec.dataset.split,
                      limit=fingerprint.get("limit"), seed=fingerprint.get("seed") or 0)
    if fingerprint.get("sha256") and split.fingerprint["sha256"] != fingerprint["sha256"]:
        raise HarnessError(
            f"the run {run_dir} evaluated different rows than {spec.path or spec.name} gives now "
            f"(dataset sha256 {str(fingerprint['sha256'])[:12]} vs {split.fingerprint['sha256'][:12]}): "
            f"the data or the spec's dataset section changed. Rerun `harness eval`, or pass --run "
            f"of a run on the current data."
        )
    return split


def _references(run_dir: Path | None, metric: str, allow_incomplete: bool = False) -> list[Reference]:
    if run_dir is None:
        return []
    from harness.runs import load_run

    out = []
    for row in load_run(run_dir, allow_incomplete=allow_incomplete).metrics:
        if str(row.get("model", "")).startswith("baseline:") or row.get(metric) is None:
            continue
        out.append(Reference(row["model"], row["prompt"], float(row[metric])))
    return out


def run_curve(
    spec: "Spec",
    *,
    sizes: list[int] = list(DEFAULT_SIZES),
    repeats: int = 3,
    run: str | None = None,
    metric: str = "accuracy",
    baseline_names: list[str] | None = None,
    limit: int | None = None,
    out_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    allow_incomplete: bool = False,
    progress: Any = None,
    per_class: bool = False,
) -> CurveResult:
    from harness.baselines import TRAINABLE, select_baselines
    from harness.baselines.base import BaselineModel
    from harness.baselines.embeddings import EmbedderPool, EmbeddingCache
    from harness.baselines.run import BaselineData, build, fit_baseline, predict_records
    from harness.data import per_class_sample, stratified_sample
    from harness.score import score_group

    if repeats < 1:
        raise HarnessError(f"--repeats {repeats}: need at least 1")
    if per_class and spec.task != "single_label":
        raise HarnessError(f"--per-class: {spec.path or spec.name} is {spec.task}; per-class sizes need a "
                           f"single_label task (use --sizes)")
    if not spec.dataset.train_split:
        raise HarnessError(f"{spec.path or spec.name}: dataset.train_split is null; a learning curve needs a train split")
    configs = [b for b in select_baselines(spec, baseline_names) if b.kind in TRAINABLE]
    if not configs:
        raise HarnessError(
            f"{spec.path or spec.name}: no trainable baseline to draw a curve for; add one of "
            f"{', '.join(sorted(TRAINABLE))} under `baselines:`"
        )
    t_start = time.perf_counter()
    run_dir = _reference_run(spec, run, allow_incomplete)
    notes: list[str] = []
    if run_dir is None:
        notes.append(f"no finished run of {spec.name} found: the curve has no LLM to compare with "
                     f"(run `harness eval` first, or pass --run)")
    references = _references(run_dir, metric, allow_incomplete)
    evaluated = _eval_examples(spec, run_dir, limit).examples
    data = BaselineData(spec)
    train = data.examples(spec.dataset.train_split)
    if per_class:
        counts = {name: 0 for name in spec.label_names}
        for example in train:
            counts[example.gold] = counts.get(example.gold, 0) + 1
        smallest = min(counts, key=lambda name: counts[name])
        usable = [s for s in sizes if s <= counts[smallest]]
        if len(usable) < len(sizes):
            notes.append(f"per-class sizes above label {smallest!r}'s {counts[smallest]} train examples were "
                         f"left out: {', '.join(str(s) for s in sizes if s > counts[smallest])}")
        if not usable:
            raise HarnessError(f"--per-class: every size is above label {smallest!r}'s {counts[smallest]} "
                               f"examples in the train split {spec.dataset.train_split!r}")
    else:
        usable = [s for s in sizes if s <= len(train)]
        if len(usable) < len(sizes):
            notes.append(f"sizes above the train split's {len(train)} rows were left out: "
                         f"{', '.join(str(s) for s in sizes if s > len(train))}")
        if not usable:
            raise HarnessError(f"--sizes: every size is above the train split's {len(train)} rows")

    pool = EmbedderPool(cache=EmbeddingCache(), progress=progress)
    points: list[dict] = []
    try:
        for config in configs:
            model: BaselineModel = build(config, spec, pool)
            reason = model.missing_requirement()
            if reason:
                notes.append(f"{config.id} left out: {reason}")
                log(f"skipping {config.id}: {reason}")
                continue
            if config.embeds:  # embed every text once, up front (cached on disk)
                log(f"{config.id}: embedding {len(train) + len(evaluated)} texts (cached on disk after the first time)")
                model.embedder.encode([e.text for e in train] + [e.text for e in evaluated])
            advance = progress.step(f"curve {config.id}", len(usable) * repeats) if progress is not None else None
            for size in usable:
                for repeat in range(repeats):
                    subset = (per_class_sample(train, size, repeat, spec.label_names) if per_class
                              else stratified_sample(train, size, repeat, spec.label_names))
                    decision, fitted = fit_baseline(model, data, train=subset)
                    records, predict_s = predict_records(model, decision, evaluated)
                    figures = score_group(records, spec.label_names, spec.task)
                    points.append({
                        "baseline": config.id, "size": size, "repeat": repeat, "seed": repeat,
                        "accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"],
                        "fit_s": fitted.fit_s, "predict_s": round(predict_s, 4), "train_rows": len(subset),
                    })
                    if advance is not None:
                        advance(1)
                summary = _summarise([p for p in points if p["baseline"] == config.id and p["size"] == size], metric)
                log(f"{config.id}: {size} labels{' per class' if per_class else ''} -> {metric} "
                    f"{summary['mean']:.3f} ± {summary['std']:.3f} (fit {summary['fit_s']:.1f}s)")
    finally:
        pool.close()
    summary = []
    for config in configs:
        for size in usable:
            group = [p for p in points if p["baseline"] == config.id and p["size"] == size]
            if group:
                summary.append({"baseline": config.id, "size": size, **_summarise(group, metric)})
    worth = _worth(references, summary, per_class)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    from harness.runs import RUNS_ROOT

    out = Path(out_dir) if out_dir else RUNS_ROOT / spec.name / f"curve-{stamp}"
    result = CurveResult(out, metric, points, summary, references, worth, run_dir, notes,
                         round(time.perf_counter() - t_start, 3), per_class)
    write_curve(result, spec, repeats=repeats, n_eval=len(evaluated), n_train=len(train))
    return result


def _summarise(group: list[dict], metric: str) -> dict:
    values = [p[metric] for p in group if p[metric] is not None]
    return {
        "repeats": len(values),
        "mean": round(statistics.fmean(values), 6) if values else math.nan,
        "std": round(statistics.pstdev(values), 6) if len(values) > 1 else 0.0,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "fit_s": round(statistics.fmean(p["fit_s"] for p in group), 4),
    }


def _worth(references: list[Reference], summary: list[dict], per_class: bool = False) -> list[dict]:
    """For each LLM reference and baseline: the smallest size whose mean reaches the LLM."""
    out = []
    baselines = list(dict.fromkeys(row["baseline"] for row in summary))
    for ref in references:
        for baseline in baselines:
            rows = sorted((r for r in summary if r["baseline"] == baseline), key=lambda r: r["size"])
            match = next((r for r in rows if r["mean"] >= ref.value), None)
            out.append({
                "model": ref.model, "prompt": ref.prompt, "llm": ref.value, "baseline": baseline,
                "matched_at": match["size"] if match else None,
                "baseline_at_match": match["mean"] if match else None,
                "smallest_size": rows[0]["size"] if rows else None,
                "largest_size": rows[-1]["size"] if rows else None,
                "best_mean": max((r["mean"] for r in rows), default=None),
                "per_class": per_class,
            })
    return out


def curve_table(result: CurveResult, name: str):
    """The console table: one row per baseline, one column per train size (mean ± std)."""
    from rich.table import Table

    sizes = sorted({row["size"] for row in result.summary})
    table = Table(title=f"{name}: {result.metric} by train size{result.unit} (mean ± std)")
    table.add_column("baseline")
    for size in sizes:
        table.add_column(str(size), justify="right")
    for baseline in dict.fromkeys(row["baseline"] for row in result.summary):
        cells = []
        for size in sizes:
            row = next((r for r in result.summary if r["baseline"] == baseline and r["size"] == size), None)
            cells.append(f"{row['mean']:.3f} ± {row['std']:.3f}" if row else "–")
        table.add_row(baseline, *cells)
    return table


def worth_lines(result: CurveResult) -> list[str]:
    """One line per LLM reference: how many labels each baseline needs to match it."""
    lines = []
    for ref in result.references:
        worth = ", ".join(
            f"{w['baseline'].removeprefix('baseline:')} {worth_phrase(w)}"
            for w in result.worth if w["model"] == ref.model and w["prompt"] == ref.prompt
        )
        lines.append(f"{ref.model} / {ref.prompt} ({result.metric} {ref.value:.3f}) is worth, in labels: {worth}")
    return lines


def worth_phrase(w: dict) -> str:
    unit = " per class" if w.get("per_class") else ""
    if w["matched_at"] is None:
        return f"more than {w['largest_size']}{unit} (best {w['best_mean']:.3f})"
    if w["matched_at"] == w["smallest_size"]:
        return f"≤ {w['matched_at']}{unit}"
    return f"{w['matched_at']}{unit}"


# ---------------------------------------------------------------------------------------------
# Output


def write_curve(result: CurveResult, spec: "Spec", *, repeats: int, n_eval: int, n_train: int) -> None:
    result.out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "spec": spec.name,
        "metric": result.metric,
        "sizing": "per_class" if result.per_class else "total",
        "repeats": repeats,
        "eval_examples": n_eval,
        "train_rows": n_train,
        "run": str(result.run_dir) if result.run_dir else None,
        "wall_s": result.wall_s,
        "notes": result.notes,
        "references": [ref.__dict__ for ref in result.references],
        "worth": result.worth,
        "summary": result.summary,
        "points": result.points,
    }
    (result.out_dir / "curve.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    (result.out_dir / "curve.md").write_text("\n".join(curve_markdown(result, spec.name, repeats, n_eval)) + "\n")
    plot_curve(result, spec.name, result.out_dir / "curve.png")


def curve_markdown(result: CurveResult, name: str, repeats: int, n_eval: int) -> list[str]:
    metric = result.metric
    sizes = sorted({row["size"] for row in result.summary})
    baselines = list(dict.fromkeys(row["baseline"] for row in result.summary))
    lines = [f"# Learning curve: {name}", "",
             f"{metric} on {n_eval} evaluated examples; mean ± std over {repeats} seeded, "
             f"label-stratified train subsets per size"
             + (" (sizes are examples per class)." if result.per_class else "."), ""]
    if result.run_dir:
        lines += [f"LLMs from run `{result.run_dir}`.", ""]
    lines += [f"| baseline{result.unit} | " + " | ".join(str(s) for s in sizes) + " | mean fit (s) |",
              "|---|" + "---:|" * (len(sizes) + 1)]
    for baseline in baselines:
        cells = []
        for size in sizes:
            row = next((r for r in result.summary if r["baseline"] == baseline and r["size"] == size), None)
            cells.append(f"{row['mean']:.3f} ± {row['std']:.3f}" if row else "–")
        fits = "; ".join(f"{r['size']}: {r['fit_s']:.1f}" for r in result.summary if r["baseline"] == baseline)
        lines.append(f"| {baseline} | " + " | ".join(cells) + f" | {fits} |")
    lines.append("")
    if result.references:
        lines += ["## What each prompt is worth in labels", "",
                  f"The smallest train size at which the baseline's mean {metric} reaches the LLM's.", "",
                  "| LLM | prompt | " + metric + " | " + " | ".join(baselines) + " |",
                  "|---|---|---:|" + "---:|" * len(baselines)]
        for ref in result.references:
            cells = []
            for baseline in baselines:
                w = next(w for w in result.worth if w["model"] == ref.model and w["prompt"] == ref.prompt
                         and w["baseline"] == baseline)
                cells.append(worth_phrase(w))
            lines.append(f"| {ref.model} | {ref.prompt} | {ref.value:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    for note in result.notes:
        lines.append(f"- {note}")
    lines.append(f"- wall time {result.wall_s:.1f}s")
    return lines


def plot_curve(result: CurveResult, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    baselines = list(dict.fromkeys(row["baseline"] for row in result.summary))
    for baseline in baselines:
        rows = sorted((r for r in result.summary if r["baseline"] == baseline), key=lambda r: r["size"])
        x = [r["size"] for r in rows]
        mean = [r["mean"] for r in rows]
        std = [r["std"] for r in rows]
        line, = ax.plot(x, mean, marker="o", label=baseline.removeprefix("baseline:"))
        ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.15)
    styles = ["--", ":", "-.", (0, (5, 1))]
    for i, ref in enumerate(result.references):
        ax.axhline(ref.value, color="black", linestyle=styles[i % len(styles)], linewidth=1,
                   label=f"{ref.model} / {ref.prompt}")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples per class" if result.per_class else "labelled training examples")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{name}: learning curve vs LLM prompts")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
