"""report.html: one self-contained page per run folder, built from the run folder's files only.

It reads metrics.json, spec.resolved.json, dataset.json, templates.json and predictions.jsonl (all
optional but metrics.json), so `harness report RUN` rebuilds the page for old runs too. The page
works from file:// with no network: CSS, SVG charts and a small script are inline, the examples
travel as an inline JSON blob that the script pages through, and a Content-Security-Policy forbids
every fetch. Everything from the run (model output above all) is escaped: the Python side writes it
through `html.escape`, the script only ever sets `textContent`.

The paired statistics inside the run (prompt vs prompt, model vs model, LLM vs baseline) reuse
`harness.compare`'s McNemar test and paired bootstrap; nothing here re-derives a metric that
metrics.json already has.
"""

from __future__ import annotations

import heapq
import html
import json
import math
import re
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.metrics.kernel import LOW_MARGIN, uncertainty
from harness.records import OUTCOMES, Prediction

ASSETS = Path(__file__).with_name("report_assets")
INVALID = "<invalid>"
FIGURES = (  # (key, label, kind)
    ("accuracy", "accuracy", "pct"),
    ("accuracy_valid", "accuracy (valid)", "pct"),
    ("validity", "validity", "pct"),
    ("macro_f1", "macro F1", "f1"),
)
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#a16207", "#475569")
OUTCOME_COLORS = {
    "invalid_json": "#f97316", "schema_error": "#eab308", "refusal": "#a855f7",
    "truncated": "#ef4444", "api_error": "#6b7280",
}
VALID_COLORS = ("#16a34a", "#22c55e", "#4ade80", "#86efac", "#15803d", "#bbf7d0")
CONFIDENT = 0.8  # "confident error": a wrong answer with at least this confidence
RESAMPLES = 1000
ALPHA = 0.05


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt(value: Any, kind: str) -> str:
    return pct(value) if kind == "pct" else num(value)


def usd(value: Any) -> str:
    if value is None:
        return "–"
    from harness.report import _usd

    return _usd(value)


def secs(value: Any) -> str:
    if value is None:
        return "–"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    return f"{value:.2f} s"


# ---------------------------------------------------------------------------------------------
# Reading a run folder


class Answer:
    """One prediction as the page reads it: only the fields some section shows or scores. The
    kernel's `encode` reads its attributes (it takes any Prediction-like record); the sections read
    it like the record's dict (`get`, `[]`; an absent field is None). A dict per prediction, and a
    `Prediction` made from it for the paired tests, held ~1.5 KiB per answer: ~300 MiB for the
    view of a 100k-example run with two prompts."""

    __slots__ = ("example_id", "outcome", "prediction", "gold", "parsed_from", "raw", "error",
                 "confidence", "margin", "entropy", "label_probs")

    def __init__(self, record: dict):
        for name in self.__slots__:
            setattr(self, name, record.get(name))

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self, name, None) if name in self.__slots__ else None
        return default if value is None else value

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


@dataclass
class Row:
    """One model × prompt row of the run: its metrics and its predictions by example id."""

    metrics: dict
    preds: dict[str, Answer] = field(default_factory=dict)
    _right: dict[str, bool] = field(default_factory=dict, repr=False)
    _labels: list[str] = field(default_factory=list, repr=False)

    def obj(self, eid: str) -> Answer:
        """The prediction as a record for the kernel's `encode` (harness.compare's paired tests)."""
        return self.preds[eid]

    @property
    def shown(self) -> dict[str, str]:
        """example id -> the answer as shown (`<outcome>` when invalid), computed once."""
        if not hasattr(self, "_shown"):
            self._shown = {eid: shown_answer(p) for eid, p in self.preds.items()}
        return self._shown

    def right(self, eid: str, task: str, labels: list[str] | None = None) -> bool:
        """Whether the row's answer to `eid` is right: the metric kernel's `correct`, encoded once
        for the whole row (labels from the view; the first call fixes them)."""
        if not self._right and self.preds:
            from harness.metrics.kernel import encode

            ids = list(self.preds)
            enc = encode([self.obj(i) for i in ids], labels or self._labels, task)
            self._right.update({i: bool(c) for i, c in zip(ids, enc.correct)})
        return self._right.get(eid, False)

    @property
    def model(self) -> str:
        return str(self.metrics.get("model"))

    @property
    def prompt(self) -> str:
        return str(self.metrics.get("prompt"))

    @property
    def key(self) -> str:
        return f"{self.model}|{self.prompt}"

    @property
    def is_baseline(self) -> bool:
        return self.model.startswith("baseline:")

    @property
    def label(self) -> str:
        return self.model if self.is_baseline or self.prompt == "-" else f"{self.model} / {self.prompt}"


@dataclass
class RunView:
    dir: Path
    run: dict
    rows: list[Row]
    suites: list[dict]
    spec: dict
    dataset: dict
    templates: dict
    example_ids: list[str]
    texts: dict[str, str]
    golds: dict[str, Any]
    slices: dict[str, dict[str, Any]]
    notes: list[str]

    @property
    def labels(self) -> list[str]:
        return [label["name"] for label in self.spec.get("labels", [])] or sorted(
            {str(g) for g in self.golds.values() if isinstance(g, str)})

    @property
    def task(self) -> str:
        return self.spec.get("task", "single_label")

    @property
    def title(self) -> str:
        return str(self.run.get("spec") or self.spec.get("name") or self.dir.name)


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _json_file(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return default


def load_view(run_dir: Path) -> RunView:
    from harness.errors import HarnessError

    run_dir = Path(run_dir)
    payload = _json_file(run_dir / "metrics.json", None)
    if not isinstance(payload, dict) or "results" not in payload:
        raise HarnessError(f"{run_dir / 'metrics.json'}: missing or not a run's metrics file (no `results`)")
    notes = []
    spec = _json_file(run_dir / "spec.resolved.json", {}) or {}
    labels = [label["name"] for label in spec.get("labels", [])]
    rows = [Row(m, _labels=labels) for m in payload["results"]]
    by_key = {r.key: r for r in rows}
    texts: dict[str, str] = {}
    golds: dict[str, Any] = {}
    slices: dict[str, dict] = {}
    path = run_dir / "predictions.jsonl"
    repeated: list[Prediction] = []  # a model's `repeats:`: the vote rows are built from these
    # One string object per distinct value, not per record: an example's id is in every row's
    # record (and keys golds, texts, slices), identical raw answers and errors repeat.
    shared: dict[str, str] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    p = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(p, dict) or p.get("suite"):
                    continue
                row = by_key.get(f"{p.get('model')}|{p.get('prompt')}")
                if row is None:
                    continue
                eid = str(p.get("example_id"))
                eid = p["example_id"] = shared.setdefault(eid, eid)
                if p.get("repeat") is not None:
                    repeated.append(_prediction(p))
                for name in _REPEATED:
                    if isinstance(p.get(name), str):
                        p[name] = sys.intern(p[name])
                for name in ("raw", "error"):
                    if isinstance(p.get(name), str):
                        p[name] = shared.setdefault(p[name], p[name])
                if not p.get("repeat"):  # a repeated prompt's row is its repeat 0
                    row.preds[eid] = Answer(p)
                golds.setdefault(eid, p.get("gold"))
                # the example's text and slices are kept once per example, not once per row (a
                # 100k-example run would hold every text once per model x prompt)
                text, example_slices = p.get("text"), p.get("slices")
                if text is not None:
                    texts.setdefault(eid, text)
                if example_slices:
                    slices.setdefault(eid, example_slices)
        del shared
        _add_votes(by_key, repeated)
    else:
        notes.append("predictions.jsonl is missing: only the recorded figures are shown")
    if golds and not texts:
        notes.append("this run's predictions carry no example text (made before texts were recorded)")
    return RunView(
        dir=run_dir, run=payload.get("run") or {}, rows=rows, suites=payload.get("suites") or [],
        spec=spec,
        dataset=_json_file(run_dir / "dataset.json", {}) or (payload.get("run") or {}).get("dataset") or {},
        templates=_json_file(run_dir / "templates.json", {}) or {},
        example_ids=sorted(golds, key=_natural), texts=texts, golds=golds, slices=slices, notes=notes,
    )


def _add_votes(by_key: dict[str, Row], repeated: list[Prediction]) -> None:
    """The `PROMPT@vote` rows' answers: the majority vote over the repeats, built by the same code
    as their figures (harness.metrics.repeats)."""
    if not repeated:
        return
    from harness.metrics.repeats import split_repeats

    view, _ = split_repeats(repeated)
    for p in view:
        row = by_key.get(f"{p.model}|{p.prompt}")
        if row is not None and p.repeat is None:
            row.preds[p.example_id] = Answer(json.loads(p.to_json()))


_FIELDS: frozenset[str] | None = None
_REPEATED = ("model", "prompt", "gold", "prediction", "outcome", "parsed_from", "finish_reason")


def _prediction(p: dict) -> Prediction:
    global _FIELDS
    if _FIELDS is None:
        import dataclasses

        _FIELDS = frozenset(f.name for f in dataclasses.fields(Prediction))
    return Prediction(**{k: v for k, v in p.items() if k in _FIELDS})


def shown_answer(p: "Answer | dict | None") -> str:
    if p is None:
        return "–"
    if p.get("outcome") != "valid":
        return f"<{p.get('outcome')}>"
    value = p.get("prediction")
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def label_probs(p: "Answer | dict") -> dict[str, float] | None:
    """A prediction's label probabilities: `label_probs` when recorded, else a baseline's answer
    (its raw text is its probability per label)."""
    probs = p.get("label_probs")
    if isinstance(probs, dict) and probs:
        return {str(k): float(v) for k, v in probs.items() if isinstance(v, (int, float))}
    if p.get("parsed_from") == "baseline" and p.get("raw"):
        try:
            parsed = json.loads(p["raw"])
        except (TypeError, json.JSONDecodeError):
            return None
        if isinstance(parsed, dict) and parsed and all(isinstance(v, (int, float)) for v in parsed.values()):
            return {str(k): float(v) for k, v in parsed.items()}
    return None


# ---------------------------------------------------------------------------------------------
# Paired significance inside the run


@dataclass
class Pair:
    kind: str
    a: Row
    b: Row
    n: int
    a_right_b_wrong: int
    a_wrong_b_right: int
    mcnemar_p: float
    boot: dict


def paired(view: RunView, a: Row, b: Row, kind: str, encoded: dict | None = None) -> Pair:
    """McNemar's test and the paired bootstrap of two rows over the examples both answered.
    `encoded` (all_pairs') keeps each row's encoding over a set of ids, so a row paired with
    several others on the same examples is sorted and encoded once."""
    import numpy as np

    from harness.compare import mcnemar_exact, paired_bootstrap

    ids = tuple(sorted((i for i in a.preds if i in b.preds), key=_natural))
    memo = encoded if encoded is not None else {}
    enc_a, enc_b = _encoded(view, a, ids, memo), _encoded(view, b, ids, memo)
    rb = int(np.count_nonzero(enc_a.correct & ~enc_b.correct))
    rc = int(np.count_nonzero(enc_b.correct & ~enc_a.correct))
    boot = paired_bootstrap(enc_a, enc_b, resamples=RESAMPLES, seed=0) if ids else {}
    return Pair(kind, a, b, len(ids), rb, rc, mcnemar_exact(rb, rc), boot)


def _encoded(view: RunView, row: Row, ids: tuple, memo: dict):
    from harness.metrics.kernel import encode

    key = (row.key, ids)
    if key not in memo:
        memo[key] = encode([row.obj(i) for i in ids], view.labels, view.task)
    return memo[key]


def all_pairs(view: RunView) -> list[Pair]:
    """Every pair of rows on the same examples: prompt vs prompt for one model, model vs model
    for one prompt (baselines share the prompt `-`), and each LLM row against each baseline."""
    rows = [r for r in view.rows if r.preds]
    llm = [r for r in rows if not r.is_baseline]
    base = [r for r in rows if r.is_baseline]
    out: list[Pair] = []
    encoded: dict = {}
    for model in dict.fromkeys(r.model for r in llm):
        for a, b in combinations([r for r in llm if r.model == model], 2):
            out.append(paired(view, a, b, "prompt vs prompt", encoded))
    for prompt in dict.fromkeys(r.prompt for r in rows):
        for a, b in combinations([r for r in rows if r.prompt == prompt], 2):
            out.append(paired(view, a, b, "model vs model", encoded))
    for a in llm:
        for b in base:
            out.append(paired(view, a, b, "LLM vs baseline", encoded))
    return out


def _pair_lookup(pairs: list[Pair]) -> dict[tuple[str, str], Pair]:
    out = {}
    for p in pairs:
        out[(p.a.key, p.b.key)] = p
        out[(p.b.key, p.a.key)] = p
    return out


def not_worse(pair: Pair | None, best: Row, figure: str) -> bool | None:
    """Is the other row of `pair` not significantly worse than `best`? None when untested."""
    if pair is None or not pair.n:
        return None
    if figure == "accuracy":
        return pair.mcnemar_p >= ALPHA
    if figure == "macro_f1":
        low, high = pair.boot.get("macro_f1_ci") or (None, None)
        return low is not None and low <= 0 <= high
    return None


# ---------------------------------------------------------------------------------------------
# SVG charts


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / n
    return [low + i * step for i in range(n + 1)]


def line_chart(series: list[dict], *, x_label: str, y_label: str, x_range=(0.0, 1.0), y_range=None,
               width: int = 560, height: int = 320, x_fmt=lambda v: f"{v:.0%}", y_fmt=None,
               x_ticks: list | None = None, points_only: bool = False, log_x: bool = False,
               title: str = "") -> str:
    """series: [{"name", "points": [(x, y, tooltip)], "color"}] -> an inline SVG."""
    left, right, top, bottom = 56, 16, 16, 44
    ys = [p[1] for s in series for p in s["points"] if p[1] is not None]
    if y_range is None:
        lo = min(ys) if ys else 0.0
        hi = max(ys) if ys else 1.0
        pad = max((hi - lo) * 0.1, 0.02)
        y_range = (max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1 else hi + pad)
    x0, x1 = x_range
    y0, y1 = y_range
    if y1 <= y0:
        y1 = y0 + 1
    if x1 <= x0:
        x1 = x0 + 1
    if y_fmt is None:
        digits = 0 if y1 - y0 >= 0.1 else 1
        y_fmt = lambda v: f"{v:.{digits}%}"  # noqa: E731
    tx = (lambda v: math.log10(max(v, 1e-12))) if log_x else (lambda v: v)
    lx0, lx1 = tx(x0), tx(x1)
    if lx1 <= lx0:
        lx1 = lx0 + 1

    def X(v):
        return left + (tx(v) - lx0) / (lx1 - lx0) * (width - left - right)

    def Y(v):
        return top + (1 - (v - y0) / (y1 - y0)) * (height - top - bottom)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{esc(title or y_label)}">']
    for v in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" text-anchor="end" class="tick">{esc(y_fmt(v))}</text>')
    xt = x_ticks if x_ticks is not None else (
        [10 ** e for e in range(math.floor(lx0), math.ceil(lx1) + 1)] if log_x else _ticks(x0, x1))
    for v in xt:
        if log_x and not (x0 <= v <= x1 * 1.0001):
            continue
        parts.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{top}" y2="{height - bottom}" class="grid"/>'
                     f'<text x="{X(v):.1f}" y="{height - bottom + 16}" text-anchor="middle" class="tick">{esc(x_fmt(v))}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle" class="axis">{esc(x_label)}</text>')
    parts.append(f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" class="axis" '
                 f'transform="rotate(-90 14 {(top + height - bottom) / 2})">{esc(y_label)}</text>')
    for s in series:
        pts = [(X(x), Y(y), tip) for x, y, tip in s["points"] if x is not None and y is not None]
        if not pts:
            continue
        if not points_only and len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{s["color"]}" stroke-width="2"/>')
        for x, y, tip in pts:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if points_only else 3}" fill="{s["color"]}">'
                         f'<title>{esc(tip)}</title></circle>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{s["color"]}"></i>{esc(s["name"])}</span>' for s in series)
    return f'<figure class="chartbox">{"".join(parts)}<figcaption class="legend">{legend}</figcaption></figure>'


def outcome_bars(view: RunView) -> str:
    width, bar, gap, left = 520, 18, 8, 0
    kinds: list[tuple[str, str, str]] = []  # (segment key, label, color)
    parsed = sorted({k for r in view.rows for k in (r.metrics.get("parsed_from") or {})})
    for i, k in enumerate(parsed):
        kinds.append((f"valid:{k}", f"valid ({k})", VALID_COLORS[i % len(VALID_COLORS)]))
    for outcome in OUTCOMES[1:]:
        kinds.append((outcome, outcome, OUTCOME_COLORS.get(outcome, "#000")))
    out = ['<table class="bars">']
    for r in view.rows:
        n = r.metrics.get("n") or 0
        counts = {f"valid:{k}": v for k, v in (r.metrics.get("parsed_from") or {}).items()}
        counts.update({o: v for o, v in (r.metrics.get("outcomes") or {}).items() if o != "valid"})
        svg = [f'<svg viewBox="0 0 {width} {bar}" width="{width}" height="{bar}" class="stack">']
        x = 0.0
        for key, label, color in kinds:
            c = counts.get(key, 0)
            if not c or not n:
                continue
            w = c / n * width
            svg.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{bar}" fill="{color}">'
                       f'<title>{esc(label)}: {c} of {n} ({c / n:.1%})</title></rect>')
            x += w
        svg.append("</svg>")
        invalid = n - (r.metrics.get("n_valid") or 0)
        out.append(f'<tr><th>{esc(r.label)}</th><td>{"".join(svg)}</td>'
                   f'<td class="num">{pct(r.metrics.get("validity"))} valid'
                   + (f", {invalid} invalid" if invalid else "") + "</td></tr>")
    out.append("</table>")
    legend = "".join(f'<span class="key"><i style="background:{c}"></i>{esc(label)}</span>' for _, label, c in kinds)
    return "".join(out) + f'<div class="legend">{legend}</div>'


# ---------------------------------------------------------------------------------------------
# Sections


def section_matrix(view: RunView, pairs: list[Pair]) -> str:
    llm = [r for r in view.rows if not r.is_baseline]
    base = [r for r in view.rows if r.is_baseline]
    models = list(dict.fromkeys(r.model for r in llm))
    prompts = list(dict.fromkeys(r.prompt for r in llm)) or ["-"]
    columns = models + [r.model for r in base]
    cell: dict[tuple[str, str], Row] = {(r.model, r.prompt): r for r in llm}
    lookup = _pair_lookup(pairs)
    # best row per column and figure; and whether each other row is not significantly worse
    marks: dict[tuple[str, str], dict[str, str]] = {}
    overall: dict[str, float] = {}
    near: dict[str, set[str]] = {}  # figure -> rows not significantly worse than the run's best
    for key, _, _ in FIGURES:
        values = [r.metrics.get(key) for r in view.rows if r.metrics.get(key) is not None]
        overall[key] = max(values) if values else None
        if values:
            top_row = next(r for r in view.rows if r.metrics.get(key) == overall[key])
            near[key] = {r.key for r in view.rows if r is not top_row and r.metrics.get(key) is not None
                         and r.metrics[key] != overall[key] and not_worse(lookup.get((top_row.key, r.key)), top_row, key)}
    for model in columns:
        members = [r for r in view.rows if r.model == model]
        for key, _, _ in FIGURES:
            scored = [r for r in members if r.metrics.get(key) is not None]
            if not scored:
                continue
            best_value = max(r.metrics[key] for r in scored)
            best = next(r for r in scored if r.metrics[key] == best_value)
            for r in scored:
                if r.metrics[key] == best_value:
                    mark = "best"
                else:
                    nw = not_worse(lookup.get((best.key, r.key)), best, key)
                    mark = "nsw" if nw else ""
                marks.setdefault((r.key, key), {})["mark"] = mark
    buttons = "".join(
        f'<button type="button" class="fig-btn{" on" if i == 0 else ""}" data-figure="{key}">{esc(label)}</button>'
        for i, (key, label, _) in enumerate(FIGURES))

    def cell_html(r: Row, rowspan: int = 1) -> str:
        m = r.metrics
        figs = []
        for key, _, kind in FIGURES:
            value = m.get(key)
            ci = m.get(f"{key}_ci")
            mark = marks.get((r.key, key), {}).get("mark", "")
            badge = {"best": '<span class="mark best" title="best in this column">★</span>',
                     "nsw": '<span class="mark nsw" title="not significantly worse than the column\'s best (p ≥ 0.05)">≈</span>'}.get(mark, "")
            top = ' top' if value is not None and value == overall.get(key) else (
                ' near-top' if r.key in near.get(key, ()) else '')
            sub = (f'<span class="ci">95% CI {fmt(ci[0], kind)}–{fmt(ci[1], kind)}</span>' if ci else
                   (f'<span class="ci">{m.get("n_valid", "–")} of {m.get("n", "–")} valid</span>' if key == "validity" else
                    f'<span class="ci">on {m.get("n_valid", "–")} valid</span>'))
            figs.append(f'<div class="fig fig-{key}{top}" data-figure="{key}" data-value="{"" if value is None else value}">'
                        f'<span class="v">{fmt(value, kind)}</span>{badge}{sub}</div>')
        return (f'<td class="cell" data-row="{esc(r.key)}" data-model="{esc(r.model)}" data-prompt="{esc(r.prompt)}"'
                + (f' rowspan="{rowspan}"' if rowspan > 1 else "") + f'>{"".join(figs)}</td>')

    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in columns)
    body = []
    for i, prompt in enumerate(prompts):
        cells = []
        for model in models:
            r = cell.get((model, prompt))
            cells.append(cell_html(r) if r else '<td class="cell empty">–</td>')
        if i == 0:
            cells += [cell_html(r, rowspan=len(prompts)) for r in base]
        label = prompt if llm else "(no prompt)"
        body.append(f'<tr><th scope="row">{esc(label)}</th>{"".join(cells)}</tr>')
    n = max((r.metrics.get("n") or 0 for r in view.rows), default=0)
    return f"""
<section id="matrix"><h2>Prompts × models</h2>
<div class="toolbar">Figure: {buttons}</div>
<table class="matrix figset show-accuracy" id="matrix-table"><thead><tr><th>prompt \\ model</th>{head}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
<p class="note">{n} examples. Strict figures count an unreadable answer as wrong; <i>(valid)</i> uses only the answers
that were read. ★ best in its column; ≈ not significantly worse than the column's best (accuracy: exact McNemar
p ≥ 0.05; macro F1: the paired-bootstrap 95% CI of the difference contains 0); a framed cell is the best in the
whole run, a dashed frame one not significantly worse than it. Baselines take no prompt, so their column spans every prompt row.</p>
</section>"""


def section_significance(view: RunView, pairs: list[Pair]) -> str:
    if not pairs:
        return '<section id="significance"><h2>Paired differences</h2><p class="note">Fewer than two rows: nothing to pair.</p></section>'
    rows = []
    for p in pairs:
        boot = p.boot or {}
        acc_ci = boot.get("accuracy_ci") or [None, None]
        f1_ci = boot.get("macro_f1_ci") or [None, None]
        sig = p.mcnemar_p < ALPHA
        d = boot.get("accuracy_delta")
        rows.append(
            f'<tr class="{"sig" if sig else ""}" data-a="{esc(p.a.key)}" data-b="{esc(p.b.key)}"><td>{esc(p.kind)}</td>'
            f'<td>{esc(p.a.label)}</td><td>{esc(p.b.label)}</td><td class="num">{p.n}</td>'
            f'<td class="num">{p.a_right_b_wrong} / {p.a_wrong_b_right}</td>'
            f'<td class="num">{"–" if d is None else f"{d * 100:+.1f} pts"}</td>'
            f'<td class="num">{"–" if acc_ci[0] is None else f"{acc_ci[0] * 100:+.1f} to {acc_ci[1] * 100:+.1f}"}</td>'
            f'<td class="num pval" data-p="{p.mcnemar_p!r}">{p.mcnemar_p:.2g}</td>'
            f'<td class="num">{"–" if boot.get("macro_f1_delta") is None else format(boot["macro_f1_delta"], "+.3f")}</td>'
            f'<td class="num">{"–" if f1_ci[0] is None else f"{f1_ci[0]:+.3f} to {f1_ci[1]:+.3f}"}</td></tr>')
    return f"""
<section id="significance"><h2>Paired differences (B − A, same examples)</h2>
<table class="data"><thead><tr><th>pair</th><th>A</th><th>B</th><th>paired</th><th>A✓B✗ / A✗B✓</th>
<th>Δ accuracy</th><th>95% CI</th><th>McNemar p</th><th>Δ macro F1</th><th>95% CI</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class="note">Exact McNemar test on the discordant examples; percentile paired bootstrap ({RESAMPLES} resamples,
seed 0) of the difference; bold rows differ at p &lt; {ALPHA}. Functions: <code>harness.compare</code>.</p></section>"""


def section_outcomes(view: RunView) -> str:
    samples = []
    for r in view.rows:
        by_kind: dict[str, list[dict]] = {}
        for eid in sorted(r.preds, key=_natural):
            p = r.preds[eid]
            if p.get("outcome") != "valid":
                by_kind.setdefault(p.get("outcome"), []).append(p)
        for kind, items in by_kind.items():
            shown = "".join(
                f'<li><span class="eid">{esc(p.get("example_id"))}</span>'
                + (f' <span class="err">{esc(p.get("error"))}</span>' if p.get("error") else "")
                + f'<pre class="raw">{esc(_clip(p.get("raw"), 600) if p.get("raw") is not None else "(no text)")}</pre></li>'
                for p in items[:3])
            samples.append(f'<details class="samples"><summary>{esc(r.label)}: {len(items)} × {esc(kind)}'
                           f'{" (first 3)" if len(items) > 3 else ""}</summary><ul>{shown}</ul></details>')
    return f"""
<section id="outcomes"><h2>Outcomes</h2>{outcome_bars(view)}
{"".join(samples) or '<p class="note">Every answer was read.</p>'}</section>"""


def _clip(text: Any, width: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[:width] + f"… ({len(text)} characters)"


def _confusion_card(title: str, conf: dict | None, per: dict) -> str:
    """A heat-mapped confusion matrix and the per-class table under it."""
    body = []
    if conf:
        head = "".join(f'<th class="{ "inv" if c == INVALID else ""}">{esc(c)}</th>' for c in conf["columns"])
        for label, values in zip(conf["labels"], conf["matrix"]):
            total = sum(values) or 1
            cells = []
            for c, v in zip(conf["columns"], values):
                alpha = v / total
                color = f"rgba(220,38,38,{alpha:.3f})" if c == INVALID else (
                    f"rgba(22,163,74,{alpha:.3f})" if c == label else f"rgba(234,88,12,{alpha:.3f})")
                fg = "#fff" if alpha > 0.55 else "#111"
                cells.append(f'<td class="num heat" style="background:{color};color:{fg}" title="gold {esc(label)}, '
                             f'predicted {esc(c)}: {v}">{v}</td>')
            body.append(f'<tr><th>{esc(label)}</th>{"".join(cells)}</tr>')
        table = (f'<table class="confusion"><thead><tr><th>gold \\ predicted</th>{head}</tr></thead>'
                 f'<tbody>{"".join(body)}</tbody></table>')
    else:
        table = '<p class="note">No confusion matrix (multi-label task).</p>'
    prow = "".join(
        f'<tr><td>{esc(k)}</td><td class="num">{num(v.get("precision"))}</td><td class="num">{num(v.get("recall"))}</td>'
        f'<td class="num">{num(v.get("f1"))}</td><td class="num">{esc(v.get("support"))}</td></tr>' for k, v in per.items())
    return (f'<div class="card"><h3>{esc(title)}</h3>{table}<table class="data small"><thead><tr><th>label</th>'
            f'<th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>{prow}</tbody></table></div>')


def section_confusion(view: RunView) -> str:
    cards = [_confusion_card(r.label, r.metrics.get("confusion"), r.metrics.get("per_class") or {}) for r in view.rows]
    return f'<section id="confusion"><h2>Confusion matrices and per-class figures (strict)</h2><div class="cards">{"".join(cards)}</div></section>'


def section_levels(view: RunView) -> str:
    """A label hierarchy's figures (metrics.json `levels`): every row at every level, and the
    confusion matrices of the coarser levels; empty for flat labels."""
    rows = [r for r in view.rows if r.metrics.get("levels")]
    if not rows:
        return ""
    body, cards = [], []
    for r in rows:
        for level in r.metrics["levels"]:
            body.append(f'<tr><td>{esc(r.label)}</td><td>{esc(level["level"])}</td><td class="num">{esc(level["n_labels"])}</td>'
                        f'<td class="num">{pct(level.get("accuracy"))}</td><td class="num">{pct(level.get("accuracy_valid"))}</td>'
                        f'<td class="num">{num(level.get("macro_f1"))}</td><td class="num">{num(level.get("macro_f1_valid"))}</td>'
                        f'<td class="num">{esc(level.get("right_here_wrong_at_leaf"))}</td></tr>')
        for level in r.metrics["levels"][1:]:
            cards.append(_confusion_card(f'{r.label} · {level["level"]}', level.get("confusion"), level.get("per_class") or {}))
    return (f'<section id="levels"><h2>Per level</h2><p class="note">The answers scored at every level of the label '
            'hierarchy (each label replaced by its group). <em>Right here, wrong label</em>: answers in the gold\'s group '
            'at this level whose label is wrong.</p><table class="data"><thead><tr><th>row</th><th>level</th><th>labels</th>'
            '<th>accuracy</th><th>accuracy (valid)</th><th>macro F1</th><th>macro F1 (valid)</th><th>right here, wrong label</th>'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table><div class="cards">{"".join(cards)}</div></section>')


def section_confidence(view: RunView) -> str:
    series, without = [], []
    for i, r in enumerate(view.rows):
        cov = r.metrics.get("coverage") or {}
        if cov.get("available"):
            pts = [(pt["coverage"], pt["accuracy"], f"{r.label}: confidence ≥ {pt['threshold']:g}: "
                    f"{pt['coverage']:.1%} answered, {pt['accuracy']:.1%} right")
                   for pt in cov.get("points", []) if pt.get("accuracy") is not None]
            series.append({"name": r.label, "points": pts, "color": PALETTE[i % len(PALETTE)]})
        else:
            without.append(f"<li>{esc(r.label)}: {esc(cov.get('reason') or 'no confidences')}</li>")
    chart = line_chart(series, x_label="coverage (share of examples answered)", y_label="accuracy on answered",
                       title="coverage vs accuracy") if series else '<p class="note">No row has confidences.</p>'
    rel = []
    nocal = []
    for i, r in enumerate(view.rows):
        cal = r.metrics.get("calibration")
        if not cal or not cal.get("bins"):
            nocal.append(esc(r.label))
            continue
        rel.append(f'<div class="card reliability" data-row="{esc(r.key)}"><h3>{esc(r.label)}</h3>{reliability_svg(cal)}'
                   f'<p class="figs">ECE <b class="ece">{num(cal.get("ece"))}</b> · equal-mass ECE {num(cal.get("ece_equal_mass"))} · '
                   f'Brier <b class="brier">{num(cal.get("brier"))}</b> · log loss {num(cal.get("log_loss"))} · n {esc(cal.get("n"))}</p></div>')
    rel_html = (f'<div class="cards">{"".join(rel)}</div>' if rel else "")
    if nocal:
        rel_html += f'<p class="note">Reliability: no probabilities for {", ".join(nocal)}.</p>'
    return f"""
<section id="confidence"><h2>Confidence</h2>
<h3>Coverage vs accuracy</h3><p class="note">Abstain below a confidence threshold: how many examples are answered, and how
many of those are right.</p>{chart}{"<ul class='note'>" + "".join(without) + "</ul>" if without else ""}
<h3>Reliability</h3>{rel_html}</section>"""


def section_repeats(view: RunView) -> str:
    """A model's `repeats:`: each headline figure's spread over the repeats, the agreement between
    them and the majority-vote row (empty when no model repeats)."""
    from harness.metrics.row import COLUMNS, HEADLINE
    from harness.report import spread_text

    rows = [r for r in view.rows if (r.metrics.get("repeats") or {}).get("row") == "repeat_0"]
    if not rows:
        return ""
    kinds = {key: (header, kind) for key, header, kind, _ in COLUMNS}
    by_key = {r.key: r for r in view.rows}
    head = "".join(f"<th>{esc(kinds[k][0])}</th>" for k in HEADLINE)
    body = []
    for r in rows:
        rep = r.metrics["repeats"]
        vote = by_key.get(f"{r.key}@vote")
        cells = "".join(f'<td class="num">{esc(spread_text((rep.get("figures") or {}).get(k), kinds[k][1]))}</td>'
                        for k in HEADLINE)
        body.append(f'<tr data-row="{esc(r.key)}"><td>{esc(r.label)}</td><td class="num">{esc(rep.get("repeats"))}</td>{cells}'
                    f'<td class="num">{pct(rep.get("all_agree"))}</td><td class="num">{pct(rep.get("pairwise_agreement"))}</td>'
                    f'<td class="num">{pct(vote.metrics.get("accuracy")) if vote else "–"}</td></tr>')
    return f"""
<section id="repeats"><h2>Repeats</h2>
<p class="note">Every request asked several times (sampling at temperature &gt; 0): each figure as mean ± sample
standard deviation [min–max] over the repeats. The row <code>PROMPT</code> is repeat 0; <code>PROMPT@vote</code> is the
majority vote (a tie goes to the earliest repeat's answer). Agreement is over the examples answered in every repeat.</p>
<table class="data repeats"><thead><tr><th>row</th><th>repeats</th>{head}<th>all agree</th><th>pairwise agreement</th>
<th>vote accuracy</th></tr></thead><tbody>{"".join(body)}</tbody></table></section>"""


def reliability_svg(cal: dict, size: int = 240) -> str:
    pad = 36
    inner = size - pad - 8
    parts = [f'<svg class="chart" viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img" aria-label="reliability diagram">',
             f'<line x1="{pad}" y1="{size - pad}" x2="{size - 8}" y2="8" class="diag"/>']
    for v in (0, 0.5, 1):
        parts.append(f'<text x="{pad - 4}" y="{size - pad - v * inner + 4:.1f}" text-anchor="end" class="tick">{v:g}</text>'
                     f'<text x="{pad + v * inner:.1f}" y="{size - pad + 14}" text-anchor="middle" class="tick">{v:g}</text>')
    for b in cal.get("bins", []):
        if not b.get("n"):
            continue
        lo, hi, acc = float(b["lo"]), float(b["hi"]), float(b.get("accuracy") or 0)
        x, w = pad + lo * inner, (hi - lo) * inner
        h = acc * inner
        parts.append(f'<rect x="{x + 1:.1f}" y="{size - pad - h:.1f}" width="{max(w - 2, 1):.1f}" height="{h:.1f}" class="relbar">'
                     f'<title>confidence {lo:.1f}–{hi:.1f}: {b["n"]} answers, mean confidence {float(b.get("confidence") or 0):.3f}, accuracy {acc:.3f}</title></rect>')
        conf = float(b.get("confidence") or 0)
        parts.append(f'<circle cx="{pad + conf * inner:.1f}" cy="{size - pad - acc * inner:.1f}" r="2.5" class="reldot"/>')
    parts.append(f'<text x="{pad + inner / 2}" y="{size - 4}" text-anchor="middle" class="axis">confidence</text>'
                 f'<text x="10" y="{size / 2}" text-anchor="middle" class="axis" transform="rotate(-90 10 {size / 2})">accuracy</text></svg>')
    return "".join(parts)


def section_cost(view: RunView) -> str:
    rows_html, cost_pts, lat_pts = [], [], []
    for i, r in enumerate(view.rows):
        m = r.metrics
        n = m.get("n") or 0
        correct = round((m.get("accuracy") or 0) * n)
        cost = 0.0 if r.is_baseline else m.get("cost_usd")
        per_correct = (cost / correct if correct else None) if cost is not None else None
        per_valid = 0.0 if r.is_baseline else m.get("cost_per_valid_usd")
        rows_html.append(
            f'<tr><td>{esc(r.label)}</td><td class="num">{n}</td><td class="num">{correct}</td><td class="num">{m.get("n_valid", "–")}</td>'
            f'<td class="num">{esc(m.get("prompt_tokens") if m.get("prompt_tokens") is not None else "–")}</td>'
            f'<td class="num">{esc(m.get("completion_tokens") if m.get("completion_tokens") is not None else "–")}</td>'
            f'<td class="num">{usd(cost)}</td><td class="num">{usd(per_correct)}</td><td class="num">{usd(per_valid)}</td>'
            f'<td class="num">{secs(m.get("latency_p50_s"))}</td><td class="num">{secs(m.get("latency_p95_s"))}</td>'
            f'<td class="num">{secs(m.get("wall_s"))}</td><td class="num">{secs(m.get("fit_s"))}</td><td class="num">{secs(m.get("predict_s"))}</td></tr>')
        color = PALETTE[i % len(PALETTE)]
        if cost is not None and m.get("accuracy") is not None:
            cost_pts.append({"name": r.label, "color": color, "points": [(cost, m["accuracy"], f"{r.label}: {usd(cost)}, accuracy {pct(m['accuracy'])}")]})
        if m.get("latency_p50_s") and m.get("accuracy") is not None:
            lat_pts.append({"name": r.label, "color": color, "points": [(m["latency_p50_s"], m["accuracy"], f"{r.label}: p50 {secs(m['latency_p50_s'])}, accuracy {pct(m['accuracy'])}")]})
    charts = []
    if any(not r.is_baseline and r.metrics.get("cost_usd") is not None for r in view.rows):  # else only $0 baselines
        top = max(p["points"][0][0] for p in cost_pts)
        charts.append(line_chart(cost_pts, x_label="total cost (USD)", y_label="accuracy", points_only=True,
                                 x_range=(0.0, top * 1.1 if top > 0 else 1.0), x_fmt=lambda v: usd(v), title="accuracy vs cost"))
    unpriced = [r.label for r in view.rows if not r.is_baseline and r.metrics.get("cost_usd") is None]
    if lat_pts:
        lows = [p["points"][0][0] for p in lat_pts]
        charts.append(line_chart(lat_pts, x_label="p50 latency per answer (s, log scale)", y_label="accuracy", points_only=True,
                                 log_x=True, x_range=(10 ** math.floor(math.log10(min(lows))), 10 ** math.ceil(math.log10(max(lows)) + 1e-9)),
                                 x_fmt=lambda v: f"{v:g}", title="accuracy vs latency"))
    note = (f'<p class="note">No price known for {esc(", ".join(unpriced))}: not on the cost chart (set <code>price:</code> on the model).</p>'
            if unpriced else "")
    return f"""
<section id="cost"><h2>Cost and speed</h2>
<table class="data"><thead><tr><th>row</th><th>n</th><th>correct</th><th>valid</th><th>prompt tokens</th><th>completion tokens</th>
<th>cost</th><th>cost / correct</th><th>cost / valid</th><th>p50 latency</th><th>p95 latency</th><th>wall</th><th>fit</th><th>predict</th></tr></thead>
<tbody>{"".join(rows_html)}</tbody></table>
<p class="note">Baselines cost no API money; their latency is predict time per example (they predict in batches). Cached answers
cost what they would have cost.</p>{note}<div class="charts">{"".join(charts)}</div></section>"""


def section_failures(view: RunView) -> str:
    parts = []
    # most confident errors
    # the 15 shown, kept as they come (heapq.nsmallest is sorted(...)[:15], ties in the same order):
    # not a list of every confident error of a 100k-example run
    errors = heapq.nsmallest(15, (
        (float(p.get("confidence")), r, eid, p) for r in view.rows for eid, p in r.preds.items()
        if p.get("confidence") is not None and p.get("outcome") == "valid" and not r.right(eid, view.task)
    ), key=lambda e: (-e[0], _natural(e[2])))
    if errors:
        body = "".join(
            f'<tr><td>{esc(r.label)}</td><td class="eid">{esc(eid)}</td><td class="num">{c:.3f}</td><td>{esc(p.get("gold"))}</td>'
            f'<td>{esc(shown_answer(p))}</td><td class="text">{esc(_clip(view.texts.get(eid), 240))}</td></tr>'
            for c, r, eid, p in errors)
        parts.append(f'<h3>Most confident errors</h3><table class="data"><thead><tr><th>row</th><th>example</th><th>confidence</th>'
                     f'<th>gold</th><th>answer</th><th>text</th></tr></thead><tbody>{body}</tbody></table>')
    else:
        parts.append('<h3>Most confident errors</h3><p class="note">No wrong answer carries a confidence.</p>')
    # text length buckets
    if view.texts:
        lengths = sorted(len(t) for t in view.texts.values())
        cuts = [lengths[int(len(lengths) * q)] for q in (0.25, 0.5, 0.75)]
        edges = [0] + cuts + [lengths[-1] + 1]
        buckets = [(edges[i], edges[i + 1]) for i in range(4) if edges[i + 1] > edges[i]]
        names = [f"{lo}–{hi - 1} chars" for lo, hi in buckets]
        parts.append(_breakdown_table(view, "Accuracy by text length (quartiles)", names,
                                      lambda eid: next((names[i] for i, (lo, hi) in enumerate(buckets) if lo <= len(view.texts.get(eid, "")) < hi), None)))
    else:
        parts.append('<h3>Accuracy by text length</h3><p class="note">No example texts in this run.</p>')
    # slices
    for name in view.spec.get("slices") or []:
        counts: dict[str, int] = {}
        for eid in view.example_ids:
            v = str((view.slices.get(eid) or {}).get(name))
            counts[v] = counts.get(v, 0) + 1
        values = sorted(counts, key=lambda v: -counts[v])[:12]
        parts.append(_breakdown_table(view, f"Accuracy by slice {name}" + (" (12 largest values)" if len(counts) > 12 else ""), values,
                                      lambda eid, name=name: str((view.slices.get(eid) or {}).get(name))))
    # margin / entropy
    rows = []
    for r in view.rows:
        stats = {"right": [], "wrong": []}
        for eid, p in r.preds.items():
            if p.get("margin") is not None:  # stamped on the record (harness.metrics.kernel.uncertainty)
                margin, entropy = p["margin"], p["entropy"]
            else:  # a run written before records carried them
                probs = label_probs(p)
                if not probs:
                    continue
                values = list(probs.values())
                total = sum(values) or 1
                m, e = uncertainty([[v / total for v in values]])
                margin, entropy = float(m[0]), float(e[0])
            stats["right" if r.right(eid, view.task) else "wrong"].append((margin, entropy))
        cal = r.metrics.get("calibration") or {}
        if not stats["right"] and not stats["wrong"] and cal.get("margin_mean") is None:
            continue

        def mean(items, k):
            return sum(i[k] for i in items) / len(items) if items else None
        rows.append(f'<tr><td>{esc(r.label)}</td><td class="num">{num(mean(stats["right"], 0))}</td><td class="num">{num(mean(stats["wrong"], 0))}</td>'
                    f'<td class="num">{num(mean(stats["right"], 1))}</td><td class="num">{num(mean(stats["wrong"], 1))}</td>'
                    f'<td class="num">{num(cal.get("margin_mean"))}</td><td class="num">{num(cal.get("entropy_mean"))}</td>'
                    f'<td class="num">{pct(cal.get("low_margin_share"))}</td></tr>')
    if rows:
        parts.append('<h3>Margin and entropy of the label probabilities</h3><table class="data"><thead><tr><th>row</th><th>margin, right</th>'
                     '<th>margin, wrong</th><th>entropy, right</th><th>entropy, wrong</th><th>margin (calibration)</th><th>entropy (calibration)</th><th>low margin</th>'
                     f'</tr></thead><tbody>{"".join(rows)}</tbody></table><p class="note">Margin: top probability minus the second; entropy in nats; low margin: share of valid answers whose top two labels are within {LOW_MARGIN:g}.</p>')
    else:
        parts.append('<h3>Margin and entropy</h3><p class="note">No label probabilities in this run.</p>')
    # disagreements
    rows_with = [r for r in view.rows if r.preds]
    if len(rows_with) > 1:
        head = "".join(f"<th>{esc(r.label)}</th>" for r in rows_with)
        body = []
        for a in rows_with:
            cells = []
            for b in rows_with:
                if a is b:
                    cells.append('<td class="num">–</td>')
                    continue
                shared = [i for i in a.preds if i in b.preds]
                sa, sb = a.shown, b.shown
                d = sum(sa[i] != sb[i] for i in shared)
                cells.append(f'<td class="num" title="{d} of {len(shared)}">{pct(d / len(shared) if shared else None, 0)}</td>')
            body.append(f"<tr><th>{esc(a.label)}</th>{''.join(cells)}</tr>")
        parts.append(f'<h3>Disagreement between rows</h3><table class="data"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
                     '<p class="note">Share of shared examples where two rows give different answers (an invalid answer counts as its outcome). '
                     'The example browser lists them with <i>rows disagree</i>.</p>')
    return f'<section id="failures"><h2>Failure analysis</h2>{"".join(parts)}</section>'


def _breakdown_table(view: RunView, title: str, groups: list[str], group_of) -> str:
    ids_by = {g: [] for g in groups}
    for eid in view.example_ids:
        g = group_of(eid)
        if g in ids_by:
            ids_by[g].append(eid)
    head = "".join(f"<th>{esc(g)}<br><small>n={len(ids_by[g])}</small></th>" for g in groups)
    body = []
    for r in view.rows:
        cells = []
        for g in groups:
            ids = [i for i in ids_by[g] if i in r.preds]
            acc = sum(r.right(i, view.task) for i in ids) / len(ids) if ids else None
            cells.append(f'<td class="num">{pct(acc)}</td>')
        body.append(f"<tr><td>{esc(r.label)}</td>{''.join(cells)}</tr>")
    return f'<h3>{esc(title)}</h3><table class="data"><thead><tr><th>row</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def section_suites(view: RunView) -> str:
    if not view.suites:
        return ""
    rows = "".join(
        f'<tr data-suite="{esc(s["suite"])}" data-row="{esc(s["model"])}|{esc(s["prompt"])}"><td>{esc(s["suite"])}</td><td>{esc(s["model"])}</td>'
        f'<td>{esc(s["prompt"])}</td><td class="num passed">{s["passed"]}/{s["n"]}</td><td class="num">{pct(s.get("pass_rate"))}</td></tr>'
        for s in view.suites)
    fails = []
    for s in view.suites:
        if not s.get("failures"):
            continue
        items = "".join(
            f'<tr><td class="eid">{esc(f["example_id"])}</td><td>{esc(f["gold"])}</td>'
            f'<td>{esc(f["prediction"] if f["outcome"] == "valid" else "<" + str(f["outcome"]) + ">")}</td>'
            f'<td class="text">{esc(f.get("text"))}</td><td><pre class="raw">{esc(_clip(f.get("raw"), 300))}</pre></td></tr>'
            for f in s["failures"])
        fails.append(f'<details class="samples"><summary>{esc(s["suite"])} · {esc(s["model"])} / {esc(s["prompt"])}: '
                     f'{len(s["failures"])} failed</summary><table class="data"><thead><tr><th>case</th><th>expected</th>'
                     f'<th>answer</th><th>text</th><th>raw</th></tr></thead><tbody>{items}</tbody></table></details>')
    return f"""<section id="suites"><h2>Edge-case suites</h2><table class="data" id="suites-table"><thead><tr><th>suite</th><th>model</th>
<th>prompt</th><th>passed</th><th>pass rate</th></tr></thead><tbody>{rows}</tbody></table>{"".join(fails)}
<p class="note">Hand-written cases from the spec's <code>suites:</code>, run with the same prompts and models; not in the figures above.</p></section>"""


def section_meta(view: RunView) -> str:
    run = view.run
    status = run.get("status") or ("finished" if view.rows else "no results")
    facts = [("status", status), ("started", run.get("started_at")), ("wall time", secs(run.get("wall_s"))),
             ("command", run.get("command")), ("models", ", ".join(run.get("models") or [])),
             ("prompts", ", ".join(run.get("prompts") or []))]
    for item in run.get("skipped") or []:
        facts.append(("skipped", f"{item.get('model')}: {item.get('reason')}"))
    for item in run.get("stopped") or []:
        facts.append(("stopped", f"{item.get('model')} ({item.get('not_sent')} not sent): {item.get('reason')}"))
    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts if v)
    ds = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in view.dataset.items())
    env = run.get("environment") or {}
    env_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in env.items() if k != "packages")
    env_rows += "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in (env.get("packages") or {}).items())
    if run.get("cache"):
        env_rows += f"<tr><th>cache</th><td>{esc(json.dumps(run['cache'], ensure_ascii=False))}</td></tr>"
    templates = []
    for name, t in view.templates.items():
        templates.append(
            f'<details class="template"><summary>{esc(name)}: {esc(t.get("template"))} · mode {esc(t.get("mode"))} · '
            f'sha256 <code>{esc(str(t.get("sha256"))[:12])}</code></summary><pre class="src">{esc(t.get("source"))}</pre>'
            + (f'<p>System prompt as rendered for {esc(t.get("first_example_id"))}:</p><pre class="src">{esc(t.get("system"))}</pre>'
               if t.get("system") else "") + "</details>")
    if not templates:
        templates.append('<p class="note">Templates not recorded (the run was made before run folders stored them).</p>')
    spec_text = json.dumps(view.spec, indent=2, ensure_ascii=False) if view.spec else "(no spec.resolved.json)"
    notes = "".join(f"<li>{esc(n)}</li>" for n in view.notes)
    return f"""
<section id="run"><h2>Run</h2>{f'<ul class="note">{notes}</ul>' if notes else ''}
<div class="cards"><div class="card"><h3>Status</h3><table class="kv">{fact_rows}</table></div>
<div class="card"><h3>Dataset</h3><table class="kv">{ds}</table></div>
<div class="card"><h3>Environment</h3><table class="kv">{env_rows}</table></div></div>
<h3>Templates</h3>{"".join(templates)}
<details><summary>Resolved spec</summary><pre class="src">{esc(spec_text)}</pre></details></section>"""


def browser_examples(view: RunView) -> Iterator[dict]:
    """The example browser's entries, one per example in id order, made as they are written."""
    rows = [r for r in view.rows if r.preds]
    for eid in view.example_ids:
        answers = []
        for r in rows:
            p = r.preds.get(eid)
            if p is None:
                answers.append(None)
                continue
            c = p.get("confidence")
            answers.append([shown_answer(p), p.get("outcome"), _clip(p.get("raw"), 2000) if p.get("raw") is not None else None,
                            None if c is None else round(float(c), 4), 1 if r.right(eid, view.task) else 0])
        gold = view.golds.get(eid)
        yield {"id": eid, "t": view.texts.get(eid), "g": ", ".join(gold) if isinstance(gold, list) else gold,
               "s": view.slices.get(eid) or {}, "a": answers}


def browser_data(view: RunView) -> dict:
    """The example browser's data as one object (what `browser_json` writes piece by piece)."""
    rows = [r for r in view.rows if r.preds]
    return {"rows": [{"key": r.key, "label": r.label} for r in rows], "examples": list(browser_examples(view)),
            "slices": list(view.spec.get("slices") or []), "confident": CONFIDENT}


EXAMPLES_PER_PIECE = 1000


def browser_json(view: RunView) -> Iterator[str]:
    """`browser_data(view)` as JSON, in pieces whose concatenation is exactly `_json(browser_data(view))`:
    the examples are encoded a thousand at a time, so a 100k-example page is never one string
    (with its copies: the escaped blob, the page around it, its UTF-8 bytes) nor 100k dicts at once."""
    rows = [r for r in view.rows if r.preds]
    yield '{"rows":' + _json([{"key": r.key, "label": r.label} for r in rows]) + ',"examples":['
    piece: list[str] = []
    first = True
    for example in browser_examples(view):
        piece.append(_json(example))
        if len(piece) == EXAMPLES_PER_PIECE:
            yield ("" if first else ",") + ",".join(piece)
            first, piece = False, []
    if piece:
        yield ("" if first else ",") + ",".join(piece)
    yield '],"slices":' + _json(list(view.spec.get("slices") or [])) + ',"confident":' + _json(CONFIDENT) + "}"


def section_browser(view: RunView) -> str:
    return f"""
<section id="examples"><h2>Examples</h2>
<div class="toolbar" id="browser-controls">
<label>show <select id="f-kind"><option value="all">all</option><option value="wrong">wrong</option><option value="invalid">invalid</option>
<option value="confident">confident errors (≥ {CONFIDENT:g})</option><option value="disagree">rows disagree</option></select></label>
<label>in <select id="f-row"><option value="">any row</option></select></label>
<label id="f-slice-label">slice <select id="f-slice"><option value="">all</option></select></label>
<label>sort <select id="f-sort"><option value="id">example id</option><option value="len-desc">longest text</option>
<option value="len-asc">shortest text</option><option value="conf">most confident error</option></select></label>
<input type="search" id="f-search" placeholder="search text, id or answer" aria-label="search">
<span id="browser-count" class="count"></span>
<button type="button" id="p-prev">‹ prev</button><span id="p-page"></span><button type="button" id="p-next">next ›</button>
</div>
<table class="data browser" id="browser"><thead id="browser-head"></thead><tbody id="browser-body"></tbody></table>
<noscript><p class="note">The example browser needs JavaScript; predictions.jsonl holds every answer.</p></noscript>
</section>"""


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def _script_safe(text: str) -> str:
    """JSON text made safe inside a <script> element (no `</script>`, no JS line terminators);
    character by character, so escaping the pieces of a text equals escaping the whole."""
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def page(title: str, body: str, data: dict | None = None, *, script: bool = True, nav: list[tuple[str, str]] = ()) -> str:
    """A whole self-contained page: inline CSS, the body, an inline JSON blob and the inline script.
    The CSP forbids every network request, so nothing can be fetched even by mistake."""
    return "".join(page_parts(title, body, None if data is None else [_json(data)], script=script, nav=nav))


def page_parts(title: str, body: str, data: Iterable[str] | None = None, *, script: bool = True,
               nav: list[tuple[str, str]] = ()) -> Iterator[str]:
    """`page` in pieces, `data` being the blob's JSON text in pieces (`browser_json`), so that a
    large page can be written to its file as it is made."""
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    yield f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_asset('report.css')}</style></head>
<body><header><h1>{esc(title)}</h1>{f'<nav>{links}</nav>' if links else ''}</header><main>
{body}
</main>"""
    if data is not None:
        yield '<script type="application/json" id="report-data">'
        for piece in data:
            yield _script_safe(piece)
        yield "</script>"
    js = f"<script>{_asset('report.js')}</script>" if script else ""
    yield f"""{js}</body></html>
"""


def _headline(view: RunView) -> str:
    scored = [r for r in view.rows if r.metrics.get("accuracy") is not None]
    if not scored:
        return '<p class="lead">No scored rows.</p>'
    best = max(scored, key=lambda r: r.metrics["accuracy"])
    llm = [r for r in scored if not r.is_baseline]
    bits = [f"<b>{esc(best.label)}</b> has the best strict accuracy, {pct(best.metrics['accuracy'])}"]
    if llm and best.is_baseline:
        top = max(llm, key=lambda r: r.metrics["accuracy"])
        bits.append(f"the best LLM row, {esc(top.label)}, reaches {pct(top.metrics['accuracy'])}")
    worst = min(scored, key=lambda r: r.metrics.get("validity") or 0)
    if (worst.metrics.get("validity") or 1) < 1:
        bits.append(f"lowest validity: {esc(worst.label)} at {pct(worst.metrics.get('validity'))}")
    ds = view.dataset
    where = f"{esc(ds.get('source', '?'))}, split {esc(ds.get('split', '?'))}, {esc(ds.get('rows_used', '?'))} examples"
    return f'<p class="lead">{"; ".join(bits)}. <span class="muted">{where} · {esc(view.run.get("started_at", ""))}</span></p>'


def build_report_html(run_dir: Path) -> str:
    return "".join(report_parts(run_dir))


def report_parts(run_dir: Path) -> Iterator[str]:
    """report.html in pieces: the sections (small), then the example browser's data as it is made."""
    view = load_view(run_dir)
    pairs = all_pairs(view)
    sections = [
        _headline(view), section_matrix(view, pairs), section_significance(view, pairs), section_outcomes(view),
        section_confusion(view), section_levels(view), section_confidence(view), section_repeats(view),
        section_cost(view), section_failures(view),
        section_suites(view), section_browser(view), section_meta(view),
    ]
    nav = [("matrix", "matrix"), ("significance", "pairs"), ("outcomes", "outcomes"), ("confusion", "confusion"),
           ("confidence", "confidence")]
    if any(r.metrics.get("levels") for r in view.rows):
        nav.insert(4, ("levels", "levels"))
    if any(r.metrics.get("repeats") for r in view.rows):
        nav.append(("repeats", "repeats"))
    nav += [("cost", "cost"), ("failures", "failures")]
    if view.suites:
        nav.append(("suites", "suites"))
    nav += [("examples", "examples"), ("run", "run")]
    yield from page_parts(f"{view.title} · {view.dir.name}", "\n".join(sections), browser_json(view), nav=nav)


def write_html_report(run_dir: Path) -> Path:
    """Write report.html into the run folder (atomically) and return its path."""
    import os

    run_dir = Path(run_dir)
    path = run_dir / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for piece in report_parts(run_dir):
            f.write(piece)
    os.replace(tmp, path)
    return path
