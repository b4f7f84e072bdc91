"""`harness compare RUN_A RUN_B`: what changed between two runs, per model × prompt.

Rows are paired by (model, prompt) and examples by `example_id`. For each pair of rows:

* the headline figures of both runs (as recorded in metrics.json) and their deltas (B − A);
* an exact McNemar test on the paired examples: under "no difference in accuracy", the discordant
  examples (right in one run, wrong in the other) split 50/50, so the two-sided p-value is the
  binomial tail `2·P(X ≤ min(b, c))`, X ~ Bin(b + c, ½), capped at 1;
* paired bootstrap 95% confidence intervals for the strict accuracy and macro-F1 deltas: the same
  resampled example indices are scored in both runs (seeded, so the output is reproducible);
* the flipped examples — right→wrong and wrong→right — with their text, read from the dataset
  through the run's spec.resolved.json (ids only when the dataset cannot be read).

"Right" is the kernel's `correct` (`harness.metrics.kernel`), the one used by `accuracy`: a valid
answer equal to the gold label (the gold label set, for multi-label tasks); an unreadable answer is
wrong. Macro-F1 is the kernel's too, so the paired figures and the rows' own figures cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.metrics import kernel
from harness.metrics.repeats import split_repeats
from harness.metrics.kernel import Encoding, encode, mcnemar_exact
from harness.metrics.row import HEADLINE
from harness.records import Prediction
from harness.runs import RunData, spec_of_run

__all__ = ["HEADLINE", "mcnemar_exact", "p_text", "paired_bootstrap", "compare_runs", "print_comparison"]


# ---------------------------------------------------------------------------------------------
# Statistics (the kernel's figures on both runs' encodings, over the same resample weights)


def p_text(p: float) -> str:
    """`p = 0.0312`, `p = 1.4e-45`, or `p < 1e-300` when the value underflows a float."""
    if p <= 0:
        return "p < 1e-300"
    if p < 1e-4:
        return f"p = {p:.2g}"
    return f"p = {p:.4g}"


def paired_bootstrap(a: Encoding, b: Encoding, *, resamples: int = 2000, seed: int = 0) -> dict:
    """Deltas (b − a) of strict accuracy and macro-F1 with percentile 95% CIs from a paired
    bootstrap over examples. Row i of `a` and of `b` is the same example."""
    if a.n == 0:
        return {"accuracy_delta": None, "accuracy_ci": None, "macro_f1_delta": None, "macro_f1_ci": None}
    import numpy as np

    accuracy, macro_f1 = [], []
    for w in kernel.resample_weight_blocks(a.n, resamples, seed):  # flat memory for large n
        accuracy.append(kernel.accuracy(b, w) - kernel.accuracy(a, w))
        macro_f1.append(kernel.macro_f1(b, w) - kernel.macro_f1(a, w))
    point = kernel.ones(a)
    f1_a, f1_b = kernel.macro_f1(a, point), kernel.macro_f1(b, point)
    return {
        "accuracy_delta": kernel.rounded(kernel.accuracy(b, point) - kernel.accuracy(a, point)),
        "accuracy_ci": kernel.percentile_interval(np.concatenate(accuracy)),
        "macro_f1_a": kernel.rounded(f1_a),
        "macro_f1_b": kernel.rounded(f1_b),
        "macro_f1_delta": kernel.rounded(f1_b - f1_a),
        "macro_f1_ci": kernel.percentile_interval(np.concatenate(macro_f1)),
        "resamples": resamples,
        "seed": seed,
    }


# ---------------------------------------------------------------------------------------------
# Comparing two runs


@dataclass
class PairComparison:
    model: str
    prompt: str
    figures: dict[str, dict[str, Any]]  # metric -> {"a", "b", "delta"}
    n_a: int
    n_b: int
    n_paired: int
    both_right: int
    both_wrong: int
    right_to_wrong: list[dict] = field(default_factory=list)  # A right, B wrong
    wrong_to_right: list[dict] = field(default_factory=list)  # A wrong, B right
    mcnemar_p: float = 1.0
    bootstrap: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "prompt": self.prompt, "figures": self.figures,
            "n_a": self.n_a, "n_b": self.n_b, "n_paired": self.n_paired,
            "both_right": self.both_right, "both_wrong": self.both_wrong,
            "right_to_wrong_count": len(self.right_to_wrong), "wrong_to_right_count": len(self.wrong_to_right),
            "mcnemar_p": self.mcnemar_p, "bootstrap": self.bootstrap,
            "right_to_wrong": self.right_to_wrong, "wrong_to_right": self.wrong_to_right,
        }


@dataclass
class Comparison:
    a: str
    b: str
    pairs: list[PairComparison]
    only_in_a: list[str]  # "model / prompt" rows with no partner
    only_in_b: list[str]
    notes: list[str]

    def to_dict(self) -> dict:
        return {
            "a": self.a, "b": self.b, "pairs": [p.to_dict() for p in self.pairs],
            "only_in_a": self.only_in_a, "only_in_b": self.only_in_b, "notes": self.notes,
        }


def example_texts(*runs: RunData) -> tuple[dict[str, str] | None, str | None]:
    """example_id -> text from the first run whose dataset can be read; (None, why) otherwise."""
    from harness.errors import HarnessError

    reasons = []
    for data in runs:
        try:
            spec = spec_of_run(data)
            if spec is None:
                reasons.append(f"{data.name} has no spec.resolved.json")
                continue
            from harness.data import load_split

            split = (data.run.get("dataset") or {}).get("split") or spec.dataset.split
            return {e.id: e.text for e in load_split(spec, split).examples}, None
        except (HarnessError, OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            reasons.append(f"{data.name}: {str(exc).splitlines()[0]}")
    return None, "; ".join(reasons)


def _flip(example_id: str, pa: Prediction, pb: Prediction, texts: dict[str, str] | None) -> dict:
    def shown(p: Prediction):
        return p.prediction if p.outcome == "valid" else f"<{p.outcome}>"

    return {
        "example_id": example_id,
        "gold": pa.gold,
        "a": shown(pa),
        "b": shown(pb),
        "text": texts.get(example_id) if texts else None,
    }


def compare_runs(a: RunData, b: RunData, *, resamples: int = 2000, seed: int = 0) -> Comparison:
    notes = []
    task = b.task
    labels = b.labels or a.labels
    if a.task != b.task or (a.labels and b.labels and a.labels != b.labels):
        notes.append("the runs have different tasks or label sets; paired figures use run B's")
    fp_a, fp_b = a.run.get("dataset") or {}, b.run.get("dataset") or {}
    if fp_a.get("sha256") and fp_b.get("sha256") and fp_a["sha256"] != fp_b["sha256"]:
        notes.append(
            f"the runs used different rows (dataset sha256 {str(fp_a['sha256'])[:12]} vs {str(fp_b['sha256'])[:12]}, "
            f"{fp_a.get('rows_used')} vs {fp_b.get('rows_used')} rows): recorded figures cover different "
            "examples; the paired statistics use the shared ones"
        )

    rows_a = {(m["model"], m["prompt"]): m for m in a.metrics}
    rows_b = {(m["model"], m["prompt"]): m for m in b.metrics}
    shared = [key for key in rows_b if key in rows_a]
    only_a = [f"{m} / {p}" for (m, p) in rows_a if (m, p) not in rows_b]
    only_b = [f"{m} / {p}" for (m, p) in rows_b if (m, p) not in rows_a]

    def by_example(preds: list[Prediction]) -> dict[tuple[str, str], dict[str, Prediction]]:
        out: dict[tuple[str, str], dict[str, Prediction]] = {}
        for p in preds:
            out.setdefault((p.model, p.prompt), {})[p.example_id] = p
        return out

    # A repeated prompt pairs on its repeat 0 and its `@vote` row, one answer per example each
    # (harness.metrics.repeats); the spread over repeats is set side by side in the notes.
    preds_a, preds_b = by_example(split_repeats(a.predictions)[0]), by_example(split_repeats(b.predictions)[0])
    notes += _repeat_notes(rows_a, rows_b, shared)
    texts = None
    if shared:
        texts, why = example_texts(b, a)
        if texts is None:
            notes.append(f"example texts unavailable ({why}); flips show ids only")

    pairs = []
    for key in shared:
        ma, mb = rows_a[key], rows_b[key]
        figures = {}
        for metric in HEADLINE:
            va, vb = ma.get(metric), mb.get(metric)
            delta = round(vb - va, 6) if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            figures[metric] = {"a": va, "b": vb, "delta": delta}
        ex_a, ex_b = preds_a.get(key, {}), preds_b.get(key, {})
        # sorted: file order is completion order, and the bootstrap must not depend on it
        ids = sorted(i for i in ex_b if i in ex_a)
        paired_a = [ex_a[i] for i in ids]
        paired_b = [ex_b[i] for i in ids]
        comparison = PairComparison(
            model=key[0], prompt=key[1], figures=figures, n_a=len(ex_a), n_b=len(ex_b), n_paired=len(ids),
            both_right=0, both_wrong=0,
        )
        enc_a, enc_b = encode(paired_a, labels, task), encode(paired_b, labels, task)
        for i, pa, pb, ra, rb in zip(ids, paired_a, paired_b, enc_a.correct, enc_b.correct):
            if ra and rb:
                comparison.both_right += 1
            elif not ra and not rb:
                comparison.both_wrong += 1
            elif ra:
                comparison.right_to_wrong.append(_flip(i, pa, pb, texts))
            else:
                comparison.wrong_to_right.append(_flip(i, pa, pb, texts))
        # six significant digits, not six decimals: 150 vs 0 flips is p ≈ 1.4e-45, not 0
        comparison.mcnemar_p = float(f"{mcnemar_exact(len(comparison.right_to_wrong), len(comparison.wrong_to_right)):.6g}")
        comparison.bootstrap = paired_bootstrap(enc_a, enc_b, resamples=resamples, seed=seed)
        pairs.append(comparison)
    if not shared:
        notes.append("no model × prompt row appears in both runs: nothing to pair")
    return Comparison(a.name, b.name, pairs, only_a, only_b, notes)


def _repeat_notes(rows_a: dict, rows_b: dict, shared: list) -> list[str]:
    """One note per shared row of a repeated prompt: its figures are repeat 0's, and the mean ±
    std of accuracy and the all-agree share over the repeats, in A and in B."""
    from harness.report import spread_text

    notes = []
    for key in shared:
        ra, rb = (rows_a[key].get("repeats") or {}), (rows_b[key].get("repeats") or {})
        if "repeat_0" not in (ra.get("row"), rb.get("row")):
            continue

        def said(rep: dict) -> str:
            if rep.get("row") != "repeat_0":
                return "no repeats"
            accuracy = spread_text((rep.get("figures") or {}).get("accuracy"), "pct")
            agree = rep.get("all_agree")
            return (f"{rep.get('repeats')} repeats, accuracy {accuracy}, all agree "
                    + ("–" if agree is None else f"{agree:.1%}"))

        notes.append(f"{key[0]} / {key[1]}: the figures are repeat 0's; A: {said(ra)}; B: {said(rb)}")
    return notes


# ---------------------------------------------------------------------------------------------
# Console output


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _signed_pts(value) -> str:
    return "–" if value is None else f"{value * 100:+.1f} pts"


def _f1(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _signed_f1(value) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _short(text: str | None, width: int) -> str:
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_comparison(comparison: Comparison, console, *, show: int = 10, width: int = 100) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(f"A: {comparison.a}\nB: {comparison.b}")
    for note in comparison.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    if comparison.pairs:
        table = Table(title="B − A per model × prompt")
        for header in ("model", "prompt", "figure", "A", "B", "Δ (B − A)"):
            table.add_column(header, justify="left" if header in ("model", "prompt", "figure") else "right")
        for pair in comparison.pairs:
            for i, (metric, f) in enumerate(pair.figures.items()):
                is_f1 = metric.startswith("macro_f1")
                table.add_row(
                    pair.model if i == 0 else "", pair.prompt if i == 0 else "", metric,
                    _f1(f["a"]) if is_f1 else _pct(f["a"]), _f1(f["b"]) if is_f1 else _pct(f["b"]),
                    _signed_f1(f["delta"]) if is_f1 else _signed_pts(f["delta"]),
                )
            table.add_section()
        console.print(table)
    for pair in comparison.pairs:
        boot = pair.bootstrap
        console.rule(f"{pair.model} / {pair.prompt}")
        console.print(
            f"paired examples {pair.n_paired} (A {pair.n_a}, B {pair.n_b}): both right {pair.both_right}, "
            f"both wrong {pair.both_wrong}, right→wrong {len(pair.right_to_wrong)}, wrong→right {len(pair.wrong_to_right)}"
        )
        if boot.get("accuracy_delta") is not None:
            console.print(
                f"accuracy Δ {_signed_pts(boot['accuracy_delta'])}, 95% CI [{_signed_pts(boot['accuracy_ci'][0])}, "
                f"{_signed_pts(boot['accuracy_ci'][1])}]; exact McNemar {p_text(pair.mcnemar_p)}"
            )
            console.print(
                f"macro F1 Δ {_signed_f1(boot['macro_f1_delta'])}, 95% CI [{_signed_f1(boot['macro_f1_ci'][0])}, "
                f"{_signed_f1(boot['macro_f1_ci'][1])}] (paired bootstrap, {boot['resamples']} resamples, seed {boot['seed']})"
            )
        for title, flips in (("right → wrong", pair.right_to_wrong), ("wrong → right", pair.wrong_to_right)):
            if not flips:
                continue
            table = Table(title=f"{title}: {len(flips)}" + (f" (first {show})" if len(flips) > show else ""), title_justify="left")
            for header in ("example", "gold", "A", "B", "text"):
                table.add_column(header)
            for flip in flips[:show]:
                table.add_row(
                    flip["example_id"], str(flip["gold"]), str(flip["a"]), str(flip["b"]),
                    Text(_short(flip["text"], width)),
                )
            console.print(table)
    for row in comparison.only_in_a:
        console.print(f"only in A: {row}")
    for row in comparison.only_in_b:
        console.print(f"only in B: {row}")


# ---------------------------------------------------------------------------------------------
# Template diff, flip texts, Markdown (the --html page is harness.html_pages.compare_page)


def _templates(data: RunData) -> dict | None:
    import json

    path = data.dir / "templates.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def template_diffs(a: RunData, b: RunData) -> list[dict]:
    """Per prompt name in either run: {"prompt", "status": same|changed|only in A|only in B|not
    recorded, "sha_a", "sha_b", "diff"} with a unified diff of the template sources when changed."""
    import difflib

    ta, tb = _templates(a), _templates(b)
    if ta is None and tb is None:
        return []
    out = []
    for name in dict.fromkeys(list(ta or {}) + list(tb or {})):
        ea, eb = (ta or {}).get(name), (tb or {}).get(name)
        entry = {"prompt": name, "sha_a": (ea or {}).get("sha256") or "", "sha_b": (eb or {}).get("sha256") or "", "diff": ""}
        if ea is None or eb is None:
            missing = "A" if ea is None else "B"
            recorded = (ta if missing == "A" else tb) is not None
            entry["status"] = f"only in {'B' if missing == 'A' else 'A'}" if recorded else f"not recorded in run {missing}"
        elif ea.get("sha256") == eb.get("sha256") and ea.get("mode") == eb.get("mode"):
            entry["status"] = "same"
        else:
            entry["status"] = "changed"
            src_a = (ea.get("source") or "").splitlines(keepends=True)
            src_b = (eb.get("source") or "").splitlines(keepends=True)
            diff = "".join(difflib.unified_diff(src_a, src_b, f"A/{ea.get('template')}", f"B/{eb.get('template')}"))
            if ea.get("mode") != eb.get("mode"):
                diff = f"mode: {ea.get('mode')} -> {eb.get('mode')}\n" + diff
            entry["diff"] = diff
        out.append(entry)
    return out


def fill_flip_texts(comparison: Comparison, a: RunData, b: RunData) -> None:
    """Flips with no text (the dataset could not be read) take it from predictions.jsonl, which
    records each example's text since runs store it."""
    if all(f.get("text") for pair in comparison.pairs for f in pair.right_to_wrong + pair.wrong_to_right):
        return
    texts: dict[str, str] = {}
    for data in (b, a):
        try:
            for p in data.predictions:
                if p.text is not None:
                    texts.setdefault(p.example_id, p.text)
        except Exception:  # a missing predictions file leaves the ids alone
            continue
    for pair in comparison.pairs:
        for f in pair.right_to_wrong + pair.wrong_to_right:
            if not f.get("text"):
                f["text"] = texts.get(f["example_id"])


def comparison_markdown(comparison: Comparison, diffs: list[dict] | None = None, *, show: int = 5) -> str:
    """A short GitHub Markdown summary for CI (e.g. $GITHUB_STEP_SUMMARY)."""

    def md(value) -> str:
        return str(value).replace("\n", " ").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

    lines = [f"## compare: {md(comparison.a)} → {md(comparison.b)}", ""]
    lines += [f"> note: {md(n)}" for n in comparison.notes]
    if comparison.notes:
        lines.append("")
    if comparison.pairs:
        lines += ["| model | prompt | accuracy A | accuracy B | Δ | 95% CI | McNemar p | macro F1 Δ | flips (→✗ / →✓) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for pair in comparison.pairs:
            f = pair.figures.get("accuracy") or {}
            boot = pair.bootstrap or {}
            ci = boot.get("accuracy_ci")
            lines.append(
                f"| {md(pair.model)} | {md(pair.prompt)} | {_pct(f.get('a'))} | {_pct(f.get('b'))} | {_signed_pts(f.get('delta'))} | "
                f"{'–' if not ci else f'{ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}'} | {pair.mcnemar_p:.3g} | "
                f"{_signed_f1(boot.get('macro_f1_delta'))} | {len(pair.right_to_wrong)} / {len(pair.wrong_to_right)} |")
        lines.append("")
    for d in diffs or []:
        if d["status"] == "changed":
            lines += [f"<details><summary>template {md(d['prompt'])} changed</summary>", "", "```diff", d["diff"].rstrip("\n"), "```", "", "</details>", ""]
        elif d["status"] != "same":
            lines += [f"- template {md(d['prompt'])}: {md(d['status'])}"]
    for pair in comparison.pairs:
        if pair.right_to_wrong:
            lines += ["", f"{md(pair.model)} / {md(pair.prompt)}: right → wrong (first {min(show, len(pair.right_to_wrong))} of {len(pair.right_to_wrong)}):", ""]
            for f in pair.right_to_wrong[:show]:
                lines.append(f"- `{md(f['example_id'])}` gold {md(f['gold'])}, B {md(f['b'])}: {md(_short(f.get('text'), 120))}")
    for row in comparison.only_in_a:
        lines.append(f"- only in A: {md(row)}")
    for row in comparison.only_in_b:
        lines.append(f"- only in B: {md(row)}")
    return "\n".join(lines).rstrip("\n") + "\n"


def print_template_diffs(diffs: list[dict], console) -> None:
    """The templates that changed between the runs, as unified diffs (nothing when all match)."""
    from rich.text import Text

    for d in diffs:
        if d["status"] == "changed":
            console.rule(f"template {d['prompt']} changed")
            for line in d["diff"].splitlines():
                style = "green" if line.startswith("+") and not line.startswith("+++") else (
                    "red" if line.startswith("-") and not line.startswith("---") else "")
                console.print(Text(line, style=style))
        elif d["status"] != "same":
            console.print(f"template {d['prompt']}: {d['status']}", markup=False)
