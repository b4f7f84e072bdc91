"""The other two pages: `harness compare A B --html` (side by side, flips, template diff) and
`harness history SPEC` (every figure over time per model × prompt, links to each run's report).

Both are self-contained like report.html (harness.html_report.page): inline CSS, SVG and script.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.html_report import FIGURES, PALETTE, esc, fmt, line_chart, page, pct


# ---------------------------------------------------------------------------------------------
# compare --html


def compare_page(comparison, a, b, diffs: list[dict]) -> str:
    """comparison: harness.compare.Comparison; a, b: RunData; diffs: harness.compare.template_diffs."""
    from harness.compare import fill_flip_texts

    fill_flip_texts(comparison, a, b)
    rows = []
    for pair in comparison.pairs:
        boot = pair.bootstrap or {}
        cells = []
        for key, _, kind in FIGURES:
            f = pair.figures.get(key) or {}
            d = f.get("delta")
            delta = "–" if d is None else (f"{d * 100:+.1f} pts" if kind == "pct" else f"{d:+.3f}")
            cls = "" if d is None or d == 0 else (" up" if d > 0 else " down")
            cells.append(f'<td class="num">{fmt(f.get("a"), kind)}</td><td class="num">{fmt(f.get("b"), kind)}</td>'
                         f'<td class="num{cls}">{delta}</td>')
        ci = boot.get("accuracy_ci") or [None, None]
        rows.append(
            f'<tr data-row="{esc(pair.model)}|{esc(pair.prompt)}"><td>{esc(pair.model)}</td><td>{esc(pair.prompt)}</td>{"".join(cells)}'
            f'<td class="num">{pair.n_paired}</td><td class="num">{len(pair.right_to_wrong)} / {len(pair.wrong_to_right)}</td>'
            f'<td class="num">{"–" if ci[0] is None else f"{ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}"}</td>'
            f'<td class="num">{pair.mcnemar_p:.2g}</td></tr>')
    head = "".join(f'<th colspan="3">{esc(label)}<br><small>A · B · Δ</small></th>' for _, label, _ in FIGURES)
    flips = []
    for pair in comparison.pairs:
        for title, items in (("right → wrong", pair.right_to_wrong), ("wrong → right", pair.wrong_to_right)):
            if not items:
                continue
            body = "".join(
                f'<tr><td class="eid">{esc(f["example_id"])}</td><td>{esc(f["gold"])}</td><td>{esc(f["a"])}</td>'
                f'<td>{esc(f["b"])}</td><td class="text">{esc(f.get("text") or "")}</td></tr>' for f in items)
            flips.append(f'<details class="samples" open><summary>{esc(pair.model)} / {esc(pair.prompt)}: {title}: {len(items)}</summary>'
                         f'<table class="data"><thead><tr><th>example</th><th>gold</th><th>A</th><th>B</th><th>text</th></tr></thead>'
                         f'<tbody>{body}</tbody></table></details>')
    diff_html = []
    for d in diffs:
        if d["status"] == "same":
            diff_html.append(f'<p>{esc(d["prompt"])}: same template (sha256 <code>{esc(d["sha_a"][:12])}</code>).</p>')
        elif d["status"] == "changed":
            lines = "".join(
                f'<span class="{"add" if line.startswith("+") and not line.startswith("+++") else "del" if line.startswith("-") and not line.startswith("---") else ""}">'
                f'{esc(line)}</span>\n' for line in d["diff"].splitlines())
            diff_html.append(f'<h3>{esc(d["prompt"])}: template changed</h3><pre class="src diff">{lines}</pre>')
        else:
            diff_html.append(f'<p>{esc(d["prompt"])}: {esc(d["status"])}.</p>')
    notes = "".join(f"<li>{esc(n)}</li>" for n in comparison.notes)
    only = "".join(f"<li>only in A: {esc(r)}</li>" for r in comparison.only_in_a) + "".join(
        f"<li>only in B: {esc(r)}</li>" for r in comparison.only_in_b)
    link = lambda run: (f'<a href="{esc(Path(run.dir, "report.html").as_uri())}">{esc(run.name)}</a>'
                        if (Path(run.dir) / "report.html").is_file() else esc(run.name))
    body = f"""
<p class="lead">A: {link(a)} ({esc(a.run.get("started_at", ""))}) → B: {link(b)} ({esc(b.run.get("started_at", ""))})</p>
{f'<ul class="note">{notes}{only}</ul>' if notes or only else ''}
<section id="pairs"><h2>B − A per model × prompt</h2><table class="data" id="compare-table"><thead><tr><th>model</th><th>prompt</th>{head}
<th>paired</th><th>right→wrong / wrong→right</th><th>Δ accuracy 95% CI</th><th>McNemar p</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
<p class="note">Paired by example id; exact McNemar test and paired bootstrap CI (harness.compare).</p></section>
<section id="templates"><h2>Templates</h2>{"".join(diff_html) or '<p class="note">No template records in these runs.</p>'}</section>
<section id="flips"><h2>Flipped examples</h2>{"".join(flips) or '<p class="note">No example changed between right and wrong.</p>'}</section>"""
    return page(f"compare · {a.name} → {b.name}", body, None, nav=[("pairs", "pairs"), ("templates", "templates"), ("flips", "flips")])


# ---------------------------------------------------------------------------------------------
# history


def _row_label(m: dict) -> str:
    return str(m.get("model")) if m.get("prompt") in (None, "-") else f"{m.get('model')} / {m.get('prompt')}"


def history_page(spec_name: str, runs: list[tuple[Path, dict]], out_path: Path) -> str:
    """runs: (run folder, metrics.json payload), oldest first."""
    series_keys: list[str] = []
    values: dict[str, dict[int, dict]] = {}
    for i, (_, payload) in enumerate(runs):
        for m in payload.get("results") or []:
            label = _row_label(m)
            if label not in values:
                series_keys.append(label)
                values[label] = {}
            values[label][i] = m
    names = [p.name for p, _ in runs]
    charts = []
    for n_fig, (key, label, kind) in enumerate(FIGURES):
        series = []
        for j, s in enumerate(series_keys):
            pts = [(i, m.get(key), f"{s} · {names[i]}: {fmt(m.get(key), kind)}") for i, m in sorted(values[s].items())
                   if m.get(key) is not None]
            series.append({"name": s, "color": PALETTE[j % len(PALETTE)], "points": pts})
        step = max(1, len(runs) // 8)
        chart = line_chart(series, x_label="run", y_label=label, x_range=(-0.3, max(len(runs) - 0.7, 0.7)),
                           x_ticks=list(range(0, len(runs), step)), x_fmt=lambda v: names[int(v)][:15] if 0 <= int(v) < len(names) else "",
                           width=760, height=340, y_fmt=(None if kind == "pct" else (lambda v: f"{v:.2f}")), title=f"{label} over time")
        charts.append(f'<div class="fig fig-{key}" data-figure="{key}">{chart}</div>')
    buttons = "".join(f'<button type="button" class="fig-btn{" on" if i == 0 else ""}" data-figure="{k}">{esc(l)}</button>'
                      for i, (k, l, _) in enumerate(FIGURES))
    table = []
    for i, (run_dir, payload) in enumerate(reversed(runs)):
        run = payload.get("run") or {}
        results = payload.get("results") or []
        best = max((m for m in results if m.get("accuracy") is not None), key=lambda m: m["accuracy"], default=None)
        report = run_dir / "report.html"
        rel = os.path.relpath(report, out_path.parent)
        link = (f'<a href="{esc(Path(rel).as_posix())}">{esc(run_dir.name)}</a>' if report.is_file()
                else f'{esc(run_dir.name)} <span class="muted">(no report.html: harness report {esc(run_dir)})</span>')
        ds = run.get("dataset") or {}
        table.append(f'<tr><td>{link}</td><td>{esc(run.get("status", "–"))}</td><td>{esc(run.get("started_at", ""))}</td><td class="num">{len(results)}</td>'
                     f'<td class="num">{esc(ds.get("rows_used", "–"))}</td><td><code>{esc(str(ds.get("sha256") or "")[:12])}</code></td>'
                     f'<td>{esc(_row_label(best) if best else "–")}</td><td class="num">{pct(best["accuracy"] if best else None)}</td></tr>')
    body = f"""
<p class="lead">{len(runs)} finished runs of <b>{esc(spec_name)}</b>, oldest {esc(names[0] if names else "–")}, newest {esc(names[-1] if names else "–")}.</p>
<section id="trends"><h2>Figures over time</h2><div class="toolbar">Figure: {buttons}</div>
<div class="figset show-accuracy">{"".join(charts)}</div>
<p class="note">One line per model × prompt; a gap is a run without that row. Runs on different dataset rows (see the sha256 column) are not
strictly comparable.</p></section>
<section id="runs"><h2>Runs (newest first)</h2><table class="data" id="runs-table"><thead><tr><th>run</th><th>status</th><th>started</th><th>rows</th><th>examples</th>
<th>dataset sha256</th><th>best row</th><th>its accuracy</th></tr></thead><tbody>{"".join(table)}</tbody></table></section>"""
    return page(f"history · {spec_name}", body, None, nav=[("trends", "trends"), ("runs", "runs")])


def read_runs(folder: Path) -> list[tuple[Path, dict]]:
    from harness.runs import finished_runs

    out = []
    for run_dir in finished_runs(folder):
        try:
            payload = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(payload, dict) and isinstance(payload.get("results"), list):
            out.append((run_dir, payload))
    out.sort(key=lambda item: ((item[1].get("run") or {}).get("started_at") or "", item[0].name))
    return out


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

