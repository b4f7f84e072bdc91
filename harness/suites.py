"""Edge-case suites: hand-written cases with expected labels, run like the dataset's examples.

A spec's `suites: [{name, file}|{name, cases: [{text, label}]}]` becomes extra examples with ids
`suite:NAME:I`. The runner sends them through the same prompts, models and baselines as the
evaluated split; their predictions are tagged with `suite` in predictions.jsonl, so the main
metrics leave them out, and `score_suites` reports a pass rate and the failures per suite and row.
This is a behavioural test list (does the prompt handle negation?), not a sample of the data:
a pass rate over 8 cases says which cases fail, not how good the model is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.records import Example, Prediction


def suite_examples(spec) -> list[Example]:
    """Every suite's cases as Examples (ids `suite:NAME:I`), checked against the spec's labels."""
    out: list[Example] = []
    names = set(spec.label_names)
    for suite in spec.suites:
        if suite.cases is not None:
            cases = [(f"suites[{suite.name}].cases[{i}]", c.text, c.label) for i, c in enumerate(suite.cases)]
        else:
            cases = _read_cases(spec, suite)
        for i, (where, text, label) in enumerate(cases):
            labels = [label] if isinstance(label, str) else list(label)
            unknown = [v for v in labels if v not in names]
            if unknown:
                raise HarnessError(f"{where}: label {unknown[0]!r} is not a label of the spec ({', '.join(spec.label_names)})")
            if spec.task == "single_label" and not isinstance(label, str):
                raise HarnessError(f"{where}: a single_label task expects one label name, got {label!r}")
            gold = label if spec.task == "single_label" else tuple(labels)
            out.append(Example(id=f"suite:{suite.name}:{i}", index=i, text=text, gold=gold, fields={"text": text}))
    return out


def suite_of(example_id: str) -> str | None:
    """The suite name in an id `suite:NAME:I`, else None."""
    if not example_id.startswith("suite:"):
        return None
    return example_id.split(":")[1]


def _read_cases(spec, suite) -> list[tuple[str, str, Any]]:
    base = spec.path.parent if spec.path else Path.cwd()
    path = Path(suite.file).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise HarnessError(f"{spec.path or '<spec>'}: suites[{suite.name}].file: {suite.file!r} not found (looked for {path})")
    rows: list[tuple[str, dict]] = []
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    rows.append((f"{path}:{n}", json.loads(line)))
        elif suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                for n, row in enumerate(csv.DictReader(f), 2):
                    rows.append((f"{path}:{n}", row))
        elif suffix in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data.get("cases")
            if not isinstance(data, list):
                raise HarnessError(f"{path}: expected a list of cases ({{text, label}}) or {{cases: [...]}}")
            rows = [(f"{path}: case {i}", row) for i, row in enumerate(data)]
        else:
            raise HarnessError(f"{path}: suite files are .jsonl, .csv or .yaml, not {suffix or 'no suffix'}")
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise HarnessError(f"{path}: cannot read the suite file: {exc}") from None
    except Exception as exc:  # yaml errors
        if isinstance(exc, HarnessError):
            raise
        raise HarnessError(f"{path}: cannot read the suite file: {exc}") from None
    out = []
    for where, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or row.get("label") in (None, ""):
            raise HarnessError(f"{where}: a suite case needs a `text` string and a `label` (a label name)")
        label = row["label"]
        if isinstance(label, str) and spec.task == "multi_label":
            label = [part.strip() for part in label.split(",") if part.strip()]
        out.append((where, row["text"], label))
    if not out:
        raise HarnessError(f"{path}: the suite file has no cases")
    return out


def _right(p: Prediction) -> bool:
    if p.outcome != "valid" or p.prediction is None:
        return False
    if isinstance(p.gold, (list, tuple)):
        pred = {p.prediction} if isinstance(p.prediction, str) else set(p.prediction)
        return set(p.gold) == pred
    return str(p.prediction) == str(p.gold)


def score_suites(preds: Sequence[Prediction]) -> list[dict]:
    """Per suite and model × prompt: n, passed, pass_rate and the failed cases."""
    from harness.metrics.repeats import split_repeats  # repeats: repeat 0 and the vote, like the rows

    groups: dict[tuple[str, str, str], list[Prediction]] = {}
    for p in split_repeats([p for p in preds if p.suite is not None])[0]:
        if p.suite is not None:
            groups.setdefault((p.suite, p.model, p.prompt), []).append(p)
    out = []
    for (suite, model, prompt), members in groups.items():
        members = sorted(members, key=lambda p: int(p.example_id.rsplit(":", 1)[-1]) if p.example_id.rsplit(":", 1)[-1].isdigit() else 0)
        failures = [
            {"example_id": p.example_id, "text": p.text, "gold": p.gold,
             "prediction": p.prediction if p.outcome == "valid" else None, "outcome": p.outcome, "raw": p.raw}
            for p in members if not _right(p)
        ]
        passed = len(members) - len(failures)
        out.append({
            "suite": suite, "model": model, "prompt": prompt, "n": len(members), "passed": passed,
            "pass_rate": round(passed / len(members), 6) if members else None, "failures": failures,
        })
    return out


def suites_markdown(suites: list[dict]) -> list[str]:
    """The report.md section: a pass-rate table, then the failed cases per suite and row."""
    if not suites:
        return []

    def md(value: Any) -> str:
        return str(value).replace("\n", " ").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

    lines = ["## Edge-case suites", "", "| suite | model | prompt | passed | pass rate |", "|---|---|---|---:|---:|"]
    for s in suites:
        lines.append(f"| {md(s['suite'])} | {md(s['model'])} | {md(s['prompt'])} | {s['passed']}/{s['n']} | "
                     f"{(s['pass_rate'] or 0) * 100:.1f}% |")
    lines.append("")
    for s in suites:
        if not s["failures"]:
            continue
        lines += [f"Failures of `{md(s['suite'])}` for `{md(s['model'])}` / `{md(s['prompt'])}`:", ""]
        for f in s["failures"]:
            answer = f["prediction"] if f["outcome"] == "valid" else f"<{f['outcome']}>"
            lines.append(f"- {md(f['example_id'])}: expected `{md(f['gold'])}`, got `{md(answer)}`: {md(f['text'] or '')}")
        lines.append("")
    return lines
