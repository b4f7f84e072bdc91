"""Reports for a scored run: a rich console table, a Markdown report and the metrics JSON.

Everything here reads rows as `metrics.json` holds them (`MetricsRow.to_wire()`, or a file of an
older run); nothing is recomputed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metrics.row import COLUMNS, SCHEMA_VERSION, MetricsRow
from harness.records import OUTCOMES

if TYPE_CHECKING:  # rich is imported lazily: the table is only built when it is printed
    from rich.table import Table

DASH = "–"
INVALID = "<invalid>"

# (key, header, kind) in display order, and the columns shown only when some row has the figure
# (wall time from the runner, cost when priced): both declared on the row model.
_COLUMNS: list[tuple[str, str, str]] = [(key, header, kind) for key, header, kind, _ in COLUMNS]
_OPTIONAL = frozenset(key for key, _, _, optional in COLUMNS if optional)


# ---------------------------------------------------------------------------------------------
# Summary rows and formatting


def summary_rows(metrics: list[dict]) -> list[dict]:
    """One row per model×prompt with the headline figures (raw values, not formatted).

    `wall_s` is included when any metrics dict has it (None in rows that lack it).
    """
    columns = _columns(metrics)
    return [{key: m.get(key) for key, _, _ in columns} for m in metrics]


def _columns(metrics: list[dict]) -> list[tuple[str, str, str]]:
    present = {key for key in _OPTIONAL if any(key in m for m in metrics)}
    return [c for c in _COLUMNS if c[0] not in _OPTIONAL or c[0] in present]


def _usd(value: float) -> str:
    """Dollars with three significant figures, never in exponent notation ($0.0000203)."""
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    digits = min(10, max(2, 2 - math.floor(math.log10(abs(value)))))
    return f"${value:.{digits}f}"


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return DASH
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "f1":
        return f"{value:.3f}"
    if kind == "latency":
        return f"{value:.2f}s"
    if kind == "wall":
        return f"{value:.1f}s"
    if kind == "usd":
        return _usd(value)
    if kind == "int":
        return str(int(value))
    return str(value)


def _best_accuracy(metrics: list[dict]) -> float | None:
    values = [m["accuracy"] for m in metrics if m.get("accuracy") is not None]
    return max(values) if values else None


def _is_best(row: dict, best: float | None) -> bool:
    return best is not None and row.get("accuracy") == best


def console_table(metrics: list[dict], title: str | None = None) -> "Table":
    """The summary as a rich Table; the best strict accuracy is bold (all of them on a tie)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    columns = _columns(metrics)
    for key, header, kind in columns:
        table.add_column(header, justify="left" if kind == "text" else "right")
    best = _best_accuracy(metrics)
    for row in summary_rows(metrics):
        bold = _is_best(row, best)
        cells = []
        for key, _, kind in columns:
            text = _fmt(row[key], kind)
            cells.append(Text(text, style="bold") if key == "accuracy" and bold else Text(text))
        table.add_row(*cells)
    return table


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(value: Any) -> str:
    """A table cell: pipes escaped, angle brackets as entities (so `<x>` is not eaten as HTML)."""
    text = str(value).replace("\n", " ")
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(headers: list[str], rows: list[list[str]], right: list[bool] | None = None) -> list[str]:
    right = right or [False] * len(headers)
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _summary_markdown(metrics: list[dict]) -> list[str]:
    columns = _columns(metrics)
    best = _best_accuracy(metrics)
    rows = []
    for row in summary_rows(metrics):
        bold = _is_best(row, best)
        cells = []
        for key, _, kind in columns:
            text = _md(_fmt(row[key], kind))
            cells.append(f"**{text}**" if key == "accuracy" and bold and row[key] is not None else text)
        rows.append(cells)
    return _md_table(
        [header for _, header, _ in columns], rows, [kind != "text" for _, _, kind in columns]
    )


def _outcomes_markdown(metrics: list[dict]) -> list[str]:
    outcomes = list(OUTCOMES)
    for m in metrics:  # an outcome the scorer saw but OUTCOMES lacks still gets a column
        for name in m.get("outcomes") or {}:
            if name not in outcomes:
                outcomes.append(name)
    rows = []
    for m in metrics:
        counts = m.get("outcomes") or {}
        parsed = ", ".join(f"{k} {v}" for k, v in (m.get("parsed_from") or {}).items()) or DASH
        rows.append(
            [_md(m.get("model")), _md(m.get("prompt"))]
            + [str(counts.get(o, 0)) for o in outcomes]
            + [_md(parsed)]
        )
    headers = ["model", "prompt"] + outcomes + ["parsed from"]
    return _md_table(headers, rows, [False, False] + [True] * len(outcomes) + [False])


def _per_class_markdown(per_class: dict | None) -> list[str]:
    if not per_class:
        return ["_No per-class figures._"]
    rows = [
        [
            _md(label),
            _fmt(f.get("precision"), "f1"),
            _fmt(f.get("recall"), "f1"),
            _fmt(f.get("f1"), "f1"),
            str(f.get("support", DASH)),
        ]
        for label, f in per_class.items()
    ]
    return _md_table(
        ["label", "precision", "recall", "F1", "support"], rows, [False, True, True, True, True]
    )


def _confusion_markdown(confusion: dict) -> list[str]:
    headers = ["gold \\ predicted"] + [
        f"`{INVALID}`" if c == INVALID else _md(c) for c in confusion["columns"]
    ]
    rows = [
        [_md(label)] + [str(v) for v in values]
        for label, values in zip(confusion["labels"], confusion["matrix"])
    ]
    return _md_table(headers, rows, [False] + [True] * len(confusion["columns"]))


def _levels_markdown(metrics: list[dict]) -> list[str]:
    """A label hierarchy's figures: every row at every level (harness.hierarchy)."""
    with_levels = [m for m in metrics if m.get("levels")]
    if not with_levels:
        return []
    rows = []
    for m in with_levels:
        for level in m["levels"]:
            rows.append([_md(m.get("model")), _md(m.get("prompt")), _md(level["level"]), str(level["n_labels"]),
                         _fmt(level.get("accuracy"), "pct"), _fmt(level.get("accuracy_valid"), "pct"),
                         _fmt(level.get("macro_f1"), "f1"), _fmt(level.get("macro_f1_valid"), "f1"),
                         str(level.get("right_here_wrong_at_leaf", DASH))])
    lines = ["## Per level", "",
             "The answers scored at every level of the label hierarchy (each label replaced by its group). "
             "*Right here, wrong label*: answers in the gold's group at this level whose label is wrong.", ""]
    lines += _md_table(["model", "prompt", "level", "labels", "accuracy", "accuracy (valid)", "macro F1",
                        "macro F1 (valid)", "right here, wrong label"], rows,
                       [False, False, False, True, True, True, True, True, True])
    return lines + [""]


def _figures_line(m: dict) -> str:
    """The figures the summary table has no room for, as one line."""
    parts = []
    if "subset_accuracy" in m:  # multi-label
        parts.append(f"subset accuracy {_fmt(m.get('subset_accuracy'), 'pct')} "
                     f"(valid {_fmt(m.get('subset_accuracy_valid'), 'pct')})")
        parts.append(f"hamming loss {_fmt(m.get('hamming_loss'), 'f1')} "
                     f"(valid {_fmt(m.get('hamming_loss_valid'), 'f1')})")
        parts.append(f"micro F1 {_fmt(m.get('micro_f1'), 'f1')} "
                     f"(valid {_fmt(m.get('micro_f1_valid'), 'f1')})")
        parts.append(f"macro F1 {_fmt(m.get('macro_f1'), 'f1')} "
                     f"(valid {_fmt(m.get('macro_f1_valid'), 'f1')})")
    else:
        parts.append(f"weighted F1 {_fmt(m.get('weighted_f1'), 'f1')} "
                     f"(valid {_fmt(m.get('weighted_f1_valid'), 'f1')})")
    parts.append(f"latency p50 {_fmt(m.get('latency_p50_s'), 'latency')}, "
                 f"p95 {_fmt(m.get('latency_p95_s'), 'latency')}")
    tokens_in, tokens_out = m.get("prompt_tokens"), m.get("completion_tokens")
    if tokens_in is not None or tokens_out is not None:
        parts.append(f"tokens {_fmt(tokens_in, 'int')} in / {_fmt(tokens_out, 'int')} out")
    parts.append(f"cached {m.get('cached', 0)}")
    if m.get("cost_usd") is not None:
        source = (m.get("price") or {}).get("source")
        parts.append(f"cost {_usd(m['cost_usd'])} (spent this run {_usd(m.get('cost_spent_usd') or 0)}"
                     + (f"; prices: {source}" if source else "") + ")")
    if m.get("mean_confidence") is not None:
        parts.append(f"mean confidence {_fmt(m['mean_confidence'], 'f1')}")
    return "; ".join(parts) + "."


def _dataset_line(dataset: dict | None) -> str | None:
    if not dataset:
        return None
    parts = [f"source `{dataset.get('source', '?')}`"]
    for key in ("config", "revision"):
        if dataset.get(key):
            parts.append(f"{key} `{dataset[key]}`")
    parts.append(f"split `{dataset.get('split', '?')}`")
    parts.append(f"rows_used {dataset.get('rows_used', '?')}")
    sha = dataset.get("sha256")
    parts.append(f"sha256 `{str(sha)[:12]}`" if sha else "sha256 ?")
    return "**Dataset:** " + " · ".join(parts)


def _names(items: list | None) -> str:
    names = []
    for item in items or []:
        if isinstance(item, dict):
            item = item.get("id") or item.get("name") or json.dumps(item, ensure_ascii=False)
        names.append(f"`{item}`")
    return ", ".join(names) or DASH


def markdown_report(run: dict, metrics: list[dict], suites: list[dict] | None = None) -> str:
    """The run report as GitHub Markdown."""
    lines = [f"# {run.get('spec', 'run')}", ""]
    if run.get("description"):
        lines += [str(run["description"]).strip(), ""]
    facts = []
    if run.get("started_at"):
        facts.append(f"**Started:** {run['started_at']}")
    if run.get("wall_s") is not None:
        facts.append(f"**Wall time:** {_fmt(run['wall_s'], 'wall')}")
    dataset = _dataset_line(run.get("dataset"))
    if dataset:
        facts.append(dataset)
    if "models" in run:
        facts.append(f"**Models:** {_names(run.get('models'))}")
    if "prompts" in run:
        facts.append(f"**Prompts:** {_names(run.get('prompts'))}")
    lines += [f"- {fact}" for fact in facts]
    if run.get("command"):
        lines += ["", "```", str(run["command"]), "```"]
    lines.append("")
    from harness.runs import status_markdown  # complete / incomplete and why, throttling

    lines += status_markdown(run)

    lines += ["## Summary", ""]
    if metrics:
        lines += _summary_markdown(metrics)
        lines += [
            "",
            "Strict figures count an unreadable output as wrong; *(valid)* figures use only the "
            "outputs that were read. The best strict accuracy is in bold.",
            "",
            "## Outcomes",
            "",
        ]
        lines += _outcomes_markdown(metrics)
        lines.append("")
        from harness.coverage import coverage_markdown  # rows carry `coverage` from the runner
        from harness.intervals import intervals_markdown  # and `accuracy_ci`, `macro_f1_ci`

        from harness.confidence_metrics import confidence_markdown  # and `calibration`

        lines += intervals_markdown(metrics)
        lines += _levels_markdown(metrics)
        lines += confidence_markdown(metrics)
        lines += coverage_markdown(metrics)
        lines += repeats_markdown(metrics)
    else:
        lines += ["_No results._", ""]

    for m in metrics:
        lines += [f"## {_md(m.get('model'))} / {_md(m.get('prompt'))}", "", _figures_line(m), ""]
        lines += ["Per class (strict):", ""]
        lines += _per_class_markdown(m.get("per_class"))
        lines.append("")
        if m.get("confusion"):
            lines += ["Confusion matrix (rows: gold, columns: predicted):", ""]
            lines += _confusion_markdown(m["confusion"])
            lines.append("")
        for level in (m.get("levels") or [])[1:]:  # the label level is the tables above
            lines += [f"Per class at level `{_md(level['level'])}` (strict):", ""]
            lines += _per_class_markdown(level.get("per_class"))
            lines.append("")
            if level.get("confusion"):
                lines += [f"Confusion matrix at level `{_md(level['level'])}`:", ""]
                lines += _confusion_markdown(level["confusion"])
                lines.append("")

    if suites:
        from harness.suites import suites_markdown

        lines += suites_markdown(suites)

    if run.get("baselines"):
        from harness.baselines.report import baselines_markdown

        lines += baselines_markdown(run["baselines"])

    skipped = run.get("skipped") or []
    if skipped:
        lines += ["## Skipped", ""]
        for item in skipped:
            lines.append(f"- `{item.get('model', '?')}`: {item.get('reason', 'no reason given')}")
        lines.append("")
    stopped = run.get("stopped") or []
    if stopped:
        lines += ["## Stopped", ""]
        for item in stopped:
            lines.append(f"- `{item.get('model', '?')}` ({item.get('not_sent', 0)} requests not sent): "
                         f"{_md(item.get('reason', 'no reason given'))}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def spread_text(spread: dict | None, kind: str) -> str:
    """`mean ± std [min–max]` of a figure over repeats, in the figure's units."""
    if not spread or spread.get("mean") is None:
        return DASH
    scale, unit = (100, " pts") if kind == "pct" else (1, "")
    std = spread.get("std")
    text = _fmt(spread["mean"], kind)
    if std is not None:
        text += f" ± {std * scale:.{1 if kind == 'pct' else 3}f}{unit}"
    return text + f" [{_fmt(spread['min'], kind)}–{_fmt(spread['max'], kind)}]"


def repeats_markdown(metrics: list[dict]) -> list[str]:
    """report.md section for a model's `repeats:`: the spread of every headline figure over the
    repeats, the agreement between repeats, and the majority-vote row's accuracy."""
    from harness.metrics.row import HEADLINE

    rows = [m for m in metrics if (m.get("repeats") or {}).get("row") == "repeat_0"]
    if not rows:
        return []
    by_key = {(m.get("model"), m.get("prompt")): m for m in metrics}
    kinds = {key: (header, kind) for key, header, kind in _COLUMNS}
    headers = ["model", "prompt", "repeats"] + [kinds[k][0] for k in HEADLINE] + ["all agree", "pairwise agreement", "vote accuracy"]
    table = []
    for m in rows:
        rep = m["repeats"]
        vote = by_key.get((m.get("model"), f"{m.get('prompt')}@vote")) or {}
        table.append([_md(m.get("model")), _md(m.get("prompt")), str(rep.get("repeats"))]
                     + [spread_text((rep.get("figures") or {}).get(k), kinds[k][1]) for k in HEADLINE]
                     + [_fmt(rep.get("all_agree"), "pct"), _fmt(rep.get("pairwise_agreement"), "pct"),
                        _fmt(vote.get("accuracy"), "pct")])
    return ["## Repeats", "",
            "Every request asked several times (sampling at temperature > 0). Each figure over the "
            "repeats: mean ± sample standard deviation [min–max]. The row `PROMPT` above is repeat 0 "
            "(the requests a run without repeats sends); `PROMPT@vote` is the majority vote over the "
            "repeats (a tie goes to the earliest repeat's answer; its confidence is the winner's share "
            "of the votes). Agreement is over the examples answered in every repeat.", ""] + \
        _md_table(headers, table, [False, False] + [True] * (len(headers) - 2)) + [""]


# ---------------------------------------------------------------------------------------------
# Files


def write_run_files(
    run_dir: Path, run: dict, rows: "list[MetricsRow] | list[dict]", suites: list[dict] | None = None,
) -> list[dict]:
    """Write `metrics.json` ({"schema_version", "run", "results"}, plus "suites" when the spec has
    edge-case suites: harness.suites.score_suites) and `report.md` into `run_dir`; returns the rows
    as written. Rows are `MetricsRow`s (dicts are read as rows first, so what is written always
    fits the published schema)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = [(row if isinstance(row, MetricsRow) else MetricsRow.from_wire(row)).to_wire() for row in rows]
    body = {"schema_version": SCHEMA_VERSION, "run": run, "results": metrics}
    if suites:
        body["suites"] = suites
    payload = json.dumps(body, indent=2, sort_keys=False, ensure_ascii=False)
    _write_atomic(run_dir / "metrics.json", payload + "\n")
    _write_atomic(run_dir / "report.md", markdown_report(run, metrics, suites))
    return metrics


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
