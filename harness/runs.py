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
from harness.metrics.row import SCHEMA_VERSION
from harness.records import Prediction, read_predictions

RUNS_ROOT = Path("runs")


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def finished_runs(folder: Path) -> list[Path]:
    """Run folders under a spec's runs folder that have metrics.json, oldest first."""
    runs = [p for p in Path(folder).iterdir() if p.is_dir() and not p.is_symlink() and (p / "metrics.json").is_file()]
    return sorted(runs, key=lambda p: _natural(p.name))


def resolve_run_dir(argument: str | Path, runs_root: Path = RUNS_ROOT) -> Path:
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
    runs = finished_runs(path)
    if not runs:
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
            self._predictions = read_predictions(path)
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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read it: {exc}") from None


def load_run(argument: str | Path, runs_root: Path = RUNS_ROOT) -> RunData:
    run_dir = resolve_run_dir(argument, runs_root)
    payload = _read_json(run_dir / "metrics.json")
    if not isinstance(payload, dict) or "results" not in payload:
        raise HarnessError(f"{run_dir / 'metrics.json'}: not a run's metrics file (no `results`)")
    # Version 1 (no schema_version) has the same rows minus `calibration`: read as is.
    version = payload.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise HarnessError(
            f"{run_dir / 'metrics.json'}: schema_version {version!r} is newer than this harness reads "
            f"({SCHEMA_VERSION}); upgrade the harness to compare or check this run"
        )
    resolved_path = run_dir / "spec.resolved.json"
    resolved = _read_json(resolved_path) if resolved_path.is_file() else None
    return RunData(run_dir, payload.get("run") or {}, payload["results"], resolved)


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
