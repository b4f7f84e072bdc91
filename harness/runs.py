"""Finding and reading finished run folders (`runs/SPEC/TIMESTAMP/`), for `compare` and `check`.

A run argument may be a run folder, `runs/SPEC/latest` (the symlink the runner keeps), a spec's
runs folder (`runs/SPEC`: its newest finished run) or a bare spec name (`rotten_tomatoes` ->
`runs/rotten_tomatoes`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import read_text
from harness.metrics.row import SCHEMA_VERSION
from harness.records import OUTCOMES, Prediction

RUNS_ROOT = Path("runs")


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def finished_runs(folder: Path, complete_only: bool = False) -> list[Path]:
    """Run folders under a spec's runs folder that have metrics.json, oldest first (with
    `complete_only`, only those whose status is complete)."""
    runs = [p for p in Path(folder).iterdir() if p.is_dir() and not p.is_symlink() and (p / "metrics.json").is_file()]
    if complete_only:
        runs = [p for p in runs if run_status(p)[0] == "complete"]
    return sorted(runs, key=lambda p: _natural(p.name))


def run_status(run_dir: Path) -> tuple[str, list[str]]:
    """(status, reasons) recorded in a run's metrics.json. Runs written before statuses existed
    count as complete; an unreadable file counts as incomplete."""
    try:
        run = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8")).get("run") or {}
    except (OSError, ValueError, AttributeError):
        return "incomplete", ["metrics.json cannot be read"]
    if not isinstance(run, dict):
        return "incomplete", ["metrics.json has no run part"]
    return str(run.get("status", "complete")), [str(r) for r in run.get("status_reasons") or []]


def _refuse_incomplete(run_dir: Path, argument: str | Path) -> None:
    status, reasons = run_status(run_dir)
    if status != "complete":
        raise HarnessError(
            f"{argument}: the run {run_dir} is {status} ({'; '.join(reasons[:3]) or 'no reason recorded'}); "
            f"its figures are not a real result. Rerun it, or pass --allow-incomplete to use it anyway"
        )


def resolve_run_dir(argument: str | Path, runs_root: Path = RUNS_ROOT, allow_incomplete: bool = True) -> Path:
    """The run folder an argument names. A spec's runs folder means its `latest` (always a complete
    run), else its newest complete run (any finished run with `allow_incomplete`). A run named
    directly is refused when incomplete unless `allow_incomplete`."""
    run_dir = _resolve(argument, runs_root, allow_incomplete)
    if not allow_incomplete:
        _refuse_incomplete(run_dir, argument)
    return run_dir


def _resolve(argument: str | Path, runs_root: Path, allow_incomplete: bool) -> Path:
    path = Path(argument)
    if not path.exists() and not path.is_absolute() and (runs_root / path).exists():
        path = runs_root / path
    if not path.exists():
        raise HarnessError(
            f"{argument}: no such run; pass a run folder (runs/SPEC/TIMESTAMP), runs/SPEC/latest, "
            f"runs/SPEC or a spec name"
        )
    if not path.is_dir():
        raise HarnessError(f"{argument}: not a folder; pass a run folder such as runs/SPEC/latest")
    if (path / "metrics.json").is_file():
        return path.resolve()
    if (path / "predictions.jsonl").is_file():
        raise HarnessError(f"{argument}: the run has no metrics.json: it did not finish (rerun it; the cache makes that cheap)")
    latest = path / "latest"
    if (latest / "metrics.json").is_file():
        return latest.resolve()
    runs = finished_runs(path, complete_only=not allow_incomplete)
    if not runs:
        if not allow_incomplete and finished_runs(path):
            raise HarnessError(f"{argument}: holds no complete run (every run is incomplete); "
                               f"pass --allow-incomplete to use the newest anyway")
        raise HarnessError(f"{argument}: holds no finished run (no */metrics.json)")
    return runs[-1].resolve()


@dataclass
class RunData:
    dir: Path
    run: dict
    metrics: list[dict]
    resolved_spec: dict | None
    _predictions: list[Prediction] | None = None

    @property
    def predictions(self) -> list[Prediction]:
        if self._predictions is None:
            path = self.dir / "predictions.jsonl"
            if not path.is_file():
                raise HarnessError(f"{self.dir}: predictions.jsonl is missing")
            self._predictions = read_run_predictions(path)
        return self._predictions

    @property
    def name(self) -> str:
        return f"{self.dir.parent.name}/{self.dir.name}"

    @property
    def task(self) -> str:
        return (self.resolved_spec or {}).get("task", "single_label")

    @property
    def labels(self) -> list[str]:
        return [label["name"] for label in (self.resolved_spec or {}).get("labels", [])]


def _read_json(path: Path) -> Any:
    text = read_text(path, "run file")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc}); the run folder is damaged: rerun it") from None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


# Structural checks of a run folder's files. Kept as plain checks in one place so they can become
# the typed result models (metrics rows) without changing any caller.
_ROW_TEXT = ("model", "prompt")
_ROW_NUMBERS = ("accuracy", "macro_f1", "n")


def validate_metrics(payload: Any, path: Path) -> tuple[dict, list[dict]]:
    """(run, results) of a metrics.json, or HarnessError naming the file and the first wrong shape."""
    def bad(where: str, what: str):
        return HarnessError(f"{path}: {where}: {what}; this is not a metrics.json written by `harness eval` "
                            f"(rerun the run, or pass another run folder)")

    if not isinstance(payload, dict):
        raise bad("top level", f"expected an object with `run` and `results`, got {_type_name(payload)}")
    if "results" not in payload:
        raise bad("top level", "no `results`")
    # Version 1 (no schema_version) has the same rows, without the figures added since: read as is.
    version = payload.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version > SCHEMA_VERSION:
        raise HarnessError(
            f"{path}: schema_version {version!r} is newer than this harness reads ({SCHEMA_VERSION}); "
            f"upgrade the harness to compare or check this run"
        )
    run, results = payload.get("run") or {}, payload["results"]
    if not isinstance(run, dict):
        raise bad("run", f"expected an object, got {_type_name(run)}")
    if not isinstance(results, list):
        raise bad("results", f"expected a list of rows, got {_type_name(results)}")
    for i, row in enumerate(results):
        if not isinstance(row, dict):
            raise bad(f"results[{i}]", f"expected an object, got {_type_name(row)}")
        for key in _ROW_TEXT:
            if not isinstance(row.get(key), str):
                raise bad(f"results[{i}].{key}", f"expected a string, got {_type_name(row.get(key))}")
        for key in _ROW_NUMBERS:
            value = row.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise bad(f"results[{i}].{key}", f"expected a number, got {_type_name(value)}")
        for key in ("per_class", "confusion", "outcomes"):
            if row.get(key) is not None and not isinstance(row[key], dict):
                raise bad(f"results[{i}].{key}", f"expected an object, got {_type_name(row[key])}")
    return run, results


def read_run_predictions(path: Path) -> list[Prediction]:
    """A run's predictions.jsonl, each line checked: an object with string example_id, model,
    prompt and a known outcome. A torn last line (a kill mid-write) is skipped, as the runner does."""
    text = read_text(path, "predictions file")
    lines = text.splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # torn by a kill mid-write
            raise HarnessError(f"{path}:{number}: not valid JSON; predictions.jsonl holds one JSON object per line") from None
        if not isinstance(record, dict):
            raise HarnessError(f"{path}:{number}: expected a JSON object, got {_type_name(record)}")
        for key in ("example_id", "model", "prompt"):
            if not isinstance(record.get(key), str):
                raise HarnessError(f"{path}:{number}: {key}: expected a string, got {_type_name(record.get(key))}")
        if record.get("outcome") not in OUTCOMES:
            raise HarnessError(f"{path}:{number}: outcome: {str(record.get('outcome'))[:40]!r} is not one of {', '.join(OUTCOMES)}")
        gold = record.get("gold")
        if not (isinstance(gold, str) or (isinstance(gold, list) and all(isinstance(g, str) for g in gold))):
            raise HarnessError(f"{path}:{number}: gold: expected a label or a list of labels, got {_type_name(gold)}")
        out.append(Prediction.from_dict(record))
    return out


def load_run(argument: str | Path, runs_root: Path = RUNS_ROOT, allow_incomplete: bool = True) -> RunData:
    # Resolved first without the status check: a damaged metrics.json is named as such below,
    # not reported as an "incomplete" run.
    run_dir = _resolve(argument, runs_root, allow_incomplete)
    path = run_dir / "metrics.json"
    run, results = validate_metrics(_read_json(path), path)
    if not allow_incomplete:
        _refuse_incomplete(run_dir, argument)
    resolved_path = run_dir / "spec.resolved.json"
    resolved = _read_json(resolved_path) if resolved_path.is_file() else None
    if resolved is not None and not isinstance(resolved, dict):
        raise HarnessError(f"{resolved_path}: expected an object (the run's spec), got {_type_name(resolved)}")
    return RunData(run_dir, run, results, resolved)


def runs_to_compare(run_a: str, run_b: str | None, allow_incomplete: bool = False) -> tuple[RunData, RunData]:
    """The two runs `harness compare` reads: two named runs, or with one argument a spec's two
    newest finished (complete, unless `allow_incomplete`) runs. Both are checked before any figure."""
    if run_b is None:
        folder = Path(run_a)
        if not folder.is_dir() and (RUNS_ROOT / run_a).is_dir():
            folder = RUNS_ROOT / run_a
        if not folder.is_dir() or (folder / "metrics.json").exists():
            raise HarnessError(f"{run_a}: with one argument, pass a spec's runs folder (runs/SPEC) or spec name")
        runs = finished_runs(folder, complete_only=not allow_incomplete)
        if len(runs) < 2:
            kind = "finished" if allow_incomplete else "complete"
            raise HarnessError(f"{folder}: needs two {kind} runs to compare, found {len(runs)}"
                               + ("" if allow_incomplete else " (--allow-incomplete counts incomplete ones)"))
        a, b = load_run(runs[-2]), load_run(runs[-1])
    else:
        a = load_run(run_a, allow_incomplete=allow_incomplete)
        b = load_run(run_b, allow_incomplete=allow_incomplete)
    if a.dir == b.dir:
        raise HarnessError(f"both arguments are the same run ({a.dir})")
    _ = (a.predictions, b.predictions)  # read and checked now, so a damaged file is an error before any figure
    return a, b


def spec_of_run(data: RunData):
    """The run's spec (from spec.resolved.json), with its original path so relative dataset paths
    resolve as they did during the run. None when there is no resolved spec."""
    if data.resolved_spec is None:
        return None
    from harness.spec import Spec

    spec = Spec.model_validate(data.resolved_spec)
    spec_path = data.run.get("spec_path")
    if spec_path:
        spec._path = Path(spec_path)
    return spec


# ---------------------------------------------------------------------------------------------
# What a run's `run` part says about itself (console, report.md, step summary)


def throttle_notes(run: dict) -> list[str]:
    """One line per model the provider throttled (429s), from run.requests[*].scheduling."""
    notes = []
    for model, counts in (run.get("requests") or {}).items():
        sched = (counts or {}).get("scheduling") if isinstance(counts, dict) else None
        if not isinstance(sched, dict) or not sched.get("throttled"):
            continue
        notes.append(
            f"{model} was throttled: {sched['throttled']} response(s) 429, {float(sched.get('waited_s') or 0):.0f} s "
            f"waited, concurrency lowered to {sched.get('lowest_limit')} of {sched.get('maximum')}"
        )
    return notes


def status_markdown(run: dict) -> list[str]:
    """The status section of report.md and of the GitHub step summary."""
    status = run.get("status")
    if status is None:
        return []
    lines = [f"**Status:** {status}", ""]
    for reason in run.get("status_reasons") or []:
        lines.append(f"- {reason}")
    for warning in run.get("status_warnings") or []:
        lines.append(f"- warning: {warning}")
    for note in throttle_notes(run):
        lines.append(f"- {note}")
    if len(lines) > 2:
        lines.append("")
    if status != "complete":
        lines += ["The figures below do not describe the planned run: they are not a result to compare "
                  "with (`compare`, `check` and `curve` refuse this run unless `--allow-incomplete`).", ""]
    return lines
