"""Spec `checks:` against a run's metrics: thresholds for CI (`harness check`, `harness eval --check`).

Each check applies to every model × prompt row it matches (`model` / `prompt` are glob patterns;
unset = all). A check fails when the figure is below `min`, above `max`, or fell by more than
`max_drop` from the same row of a baseline run. It also fails when it matches no row (a typo in a
model id must not pass silently) or when the figure is undefined (e.g. accuracy over valid answers
when there were none). A `max_drop` check with no baseline run, or whose row the baseline lacks
(a new prompt), is reported as skipped, not passed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable

from harness.metrics.row import COUNTS

_EPS = 1e-9  # metrics are rounded to 6 decimals; a threshold equal to the figure passes


@dataclass
class CheckResult:
    check: int  # index in the spec's checks list
    metric: str
    model: str
    prompt: str
    rule: str  # "min 0.9", "max 2", "max_drop 0.02"
    value: float | None
    baseline: float | None
    status: str  # pass | fail | skip
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _field(check: Any, name: str) -> Any:
    return check.get(name) if isinstance(check, dict) else getattr(check, name)


def evaluate_checks(
    checks: Iterable[Any], metrics: list[dict], baseline: list[dict] | None = None,
) -> list[CheckResult]:
    """Results for every (check, matching row, rule). `checks` are spec Check models or dicts."""
    base_rows = {(m["model"], m["prompt"]): m for m in baseline or []}
    results: list[CheckResult] = []
    for number, check in enumerate(checks):
        metric = _field(check, "metric")
        model_pattern = _field(check, "model") or "*"
        prompt_pattern = _field(check, "prompt") or "*"
        rules = [(name, _field(check, name)) for name in ("min", "max", "max_drop") if _field(check, name) is not None]
        rows = [m for m in metrics if fnmatchcase(str(m["model"]), model_pattern) and fnmatchcase(str(m["prompt"]), prompt_pattern)]
        if not rows:
            for name, limit in rules:
                results.append(CheckResult(
                    number, metric, model_pattern, prompt_pattern, f"{name} {limit:g}", None, None, "fail",
                    "no model × prompt row in the run matches",
                ))
            continue
        for row in rows:
            value = row.get(metric)
            for name, limit in rules:
                result = CheckResult(number, metric, row["model"], row["prompt"], f"{name} {limit:g}", value, None, "pass")
                if name == "max_drop":
                    base = base_rows.get((row["model"], row["prompt"]))
                    if baseline is None:
                        result.status, result.reason = "skip", "no baseline run given (--baseline RUN)"
                    elif base is None:
                        result.status, result.reason = "skip", "the baseline run has no such row"
                    else:
                        result.baseline = base.get(metric)
                        if not isinstance(value, (int, float)) or not isinstance(result.baseline, (int, float)):
                            result.status, result.reason = "fail", "figure undefined in this run or the baseline"
                        elif result.baseline - value > limit + _EPS:
                            result.status = "fail"
                            result.reason = f"fell by {result.baseline - value:.6g} (allowed {limit:g})"
                elif not isinstance(value, (int, float)):
                    result.status, result.reason = "fail", "figure is undefined in this run"
                elif name == "min" and value < limit - _EPS:
                    result.status, result.reason = "fail", f"below {limit:g}"
                elif name == "max" and value > limit + _EPS:
                    result.status, result.reason = "fail", f"above {limit:g}"
                results.append(result)
    return results


def failed(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == "fail"]


def _value(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    if metric in COUNTS:
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != 0 else "0"


def checks_table(results: list[CheckResult], title: str = "checks"):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for header in ("status", "metric", "model", "prompt", "rule", "value", "baseline", "why"):
        table.add_column(header, justify="right" if header in ("value", "baseline") else "left")
    styles = {"pass": "green", "fail": "bold red", "skip": "yellow"}
    for r in results:
        table.add_row(
            Text(r.status.upper(), style=styles[r.status]), r.metric, r.model, r.prompt, r.rule,
            _value(r.value, r.metric), _value(r.baseline, r.metric), r.reason,
        )
    return table


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def checks_markdown(results: list[CheckResult], title: str) -> str:
    n_fail = len(failed(results))
    n_skip = sum(r.status == "skip" for r in results)
    verdict = "❌ failed" if n_fail else "✅ passed"
    lines = [f"### {_md(title)}: {verdict}", ""]
    lines.append(f"{len(results)} checks: {len(results) - n_fail - n_skip} passed, {n_fail} failed, {n_skip} skipped.")
    lines.append("")
    lines.append("| status | metric | model | prompt | rule | value | baseline | why |")
    lines.append("|---|---|---|---|---|---:|---:|---|")
    icon = {"pass": "✅ pass", "fail": "❌ **fail**", "skip": "⏭️ skip"}
    for r in results:
        lines.append(
            f"| {icon[r.status]} | {_md(r.metric)} | `{_md(r.model)}` | `{_md(r.prompt)}` | {_md(r.rule)} | "
            f"{_value(r.value, r.metric)} | {_value(r.baseline, r.metric)} | {_md(r.reason)} |"
        )
    return "\n".join(lines) + "\n"


def write_step_summary(markdown: str) -> bool:
    """Append to $GITHUB_STEP_SUMMARY when it is set (GitHub Actions renders it on the run page)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown + "\n")
    return True
