"""The `harness` command line as a user runs it: a subprocess of the installed console script.
Exit codes: 0 done, 2 bad input (spec, template, dataset, flags)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.spec import json_schema, load_spec

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")
SPEC = "specs/rotten_tomatoes.yaml"
SCRIPT = Path(sys.executable).parent / "harness"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "harness.cli"]

needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"shared datasets not found at {DATA_DIR}")


def harness(*args: str, cwd: Path = ROOT, env: dict | None = None, unset=()) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run(
        [*COMMAND, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def assert_bad_input(result: subprocess.CompletedProcess, starts: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(starts), result.stderr


# ---------------------------------------------------------------------------------------------
# exit code 0


@needs_data
def test_validate_shipped_spec_exits_0():
    result = harness("validate", SPEC)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{SPEC}: ok"
    assert "  model llamacpp:smollm2: ok" in result.stdout.splitlines()


def test_schema_prints_the_spec_schema():
    result = harness("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema == json_schema()
    assert schema["title"] == "harness task spec"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert {"name", "dataset", "labels", "prompts", "output", "models"} <= set(schema["properties"])


def test_schema_out_writes_the_file(tmp_path):
    result = harness("schema", "--out", str(tmp_path / "schema.json"))
    assert (result.returncode, result.stdout) == (0, "")
    assert json.loads((tmp_path / "schema.json").read_text()) == json_schema()


def test_help_lists_the_commands():
    result = harness("--help")
    assert result.returncode == 0
    for command in ("eval", "validate", "render", "schema"):
        assert command in result.stdout


# ---------------------------------------------------------------------------------------------
# exit code 2: bad input of every kind


def test_bad_spec_exits_2(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text((ROOT / SPEC).read_text().replace("task: single_label", "task: single"))
    for command in ("validate", "eval", "render"):
        assert_bad_input(harness(command, str(spec)), f"error: {spec}:")
    result = harness("eval", str(spec))
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if text.startswith("task:"))
    assert result.stderr == (
        f"error: {spec}:{line}: task: Input should be 'single_label' or 'multi_label'\n"
    )


@needs_data
def test_bad_prompt_name_exits_2():
    names = ", ".join(p.name for p in load_spec(ROOT / SPEC).prompts)
    assert_bad_input(
        harness("eval", SPEC, "--prompt", "jsn", "--limit", "2"),
        f"error: --prompt jsn: no such prompt; the spec has {names}\n",
    )


@needs_data
@pytest.mark.parametrize(
    "flag, message",
    [
        ("gpt-4o-mini", "error: --model 'gpt-4o-mini': expected PROVIDER:MODEL, e.g. openai:gpt-4o-mini"),
        ("openai:", "error: --model 'openai:': expected PROVIDER:MODEL"),
        ("nosuch:model", "error: unknown provider 'nosuch'; known providers: "),
    ],
)
def test_bad_model_flag_exits_2(tmp_path, flag, message):
    result = harness("eval", SPEC, "--model", flag, "--limit", "2", "--out", str(tmp_path / "run"))
    assert_bad_input(result, message)
    assert not (tmp_path / "run").exists()  # bad flags are caught before anything is written


def test_missing_dataset_exits_2(tmp_path):
    result = harness("validate", SPEC, env={"HARNESS_DATA_DIR": str(tmp_path)})
    assert_bad_input(
        result,
        f"error: dataset 'cornell-movie-review-data/rotten_tomatoes': no file for split 'test' "
        f"under HARNESS_DATA_DIR={tmp_path}.",
    )
    assert harness("eval", SPEC, env={"HARNESS_DATA_DIR": str(tmp_path)}).returncode == 2


def test_missing_local_dataset_file_exits_2(tmp_path):
    (tmp_path / "t.j2").write_text("{% block user %}{{ text }}{% endblock %}")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: t\ndataset: {source: missing.jsonl}\nlabels: [{name: a}, {name: b}]\n"
        "prompts: [{name: p, template: t.j2}]\n"
    )
    assert_bad_input(harness("validate", str(spec)), "error: dataset.source 'missing.jsonl': no such file or folder")


def test_missing_spec_file_exits_2(tmp_path):
    assert_bad_input(harness("eval", str(tmp_path / "none.yaml")), f"error: {tmp_path / 'none.yaml'}: no such file")


@needs_data
def test_spec_without_models_exits_2(tmp_path):
    spec = tmp_path / "nomodels.yaml"
    data = yaml.safe_load((ROOT / SPEC).read_text())
    data["models"], data["baselines"] = [], []
    for prompt in data["prompts"]:
        prompt["template"] = str(ROOT / prompt["template"])
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_spec(spec).models == []
    assert_bad_input(
        harness("eval", str(spec), "--limit", "2", "--out", str(tmp_path / "run")),
        "error: no models to run: add `models:` to the spec or pass --model PROVIDER:MODEL",
    )


@pytest.mark.parametrize("flags", [["--limit", "0"], ["--concurrency", "0"], ["--limit", "x"]])
def test_bad_numeric_flags_exit_2(flags):
    result = harness("eval", SPEC, *flags)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: harness")


def test_unknown_command_exits_2():
    result = harness("evaluate", SPEC)
    assert result.returncode == 2
    assert "invalid choice: 'evaluate'" in result.stderr


# ---------------------------------------------------------------------------------------------
# --model PROVIDER:MODEL replaces the spec's models


@needs_data
def test_model_flag_replaces_the_spec_models_and_skips_without_a_key(tmp_path):
    run_dir = tmp_path / "run"
    result = harness(
        "eval", SPEC, "--model", "openai:gpt-4o-mini", "--model", "openai:gpt-4.1-nano",
        "--limit", "4", "--out", str(run_dir), "--quiet", "--no-baselines",
        env={"HARNESS_CACHE_DIR": str(tmp_path / "cache")}, unset=("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    )
    # every model skipped: nothing ran, so the run is incomplete (exit 4), not a 0% result
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing ran" in result.stdout
    # One line per skipped model, with the reason.
    assert "skipped openai:gpt-4o-mini: OPENAI_API_KEY is not set\n" in result.stdout
    assert "skipped openai:gpt-4.1-nano: OPENAI_API_KEY is not set\n" in result.stdout
    assert "smollm2" not in result.stdout  # the spec's own model is not run

    assert sorted(p.name for p in run_dir.iterdir()) == [
        "dataset.json", "metrics.json", "predictions.jsonl", "report.html", "report.md", "spec.resolved.json",
        "templates.json",
    ]
    resolved = json.loads((run_dir / "spec.resolved.json").read_text())
    assert [(m["provider"], m["model"]) for m in resolved["models"]] == [
        ("openai", "gpt-4o-mini"), ("openai", "gpt-4.1-nano"),
    ]
    # Decoding params follow the spec's first model.
    spec_params = load_spec(ROOT / SPEC).models[0].params.model_dump(mode="json")
    assert all(m["params"] == spec_params for m in resolved["models"])
    assert resolved["dataset"]["limit"] == 4
    assert json.loads((run_dir / "dataset.json").read_text())["rows_used"] == 4
    run = json.loads((run_dir / "metrics.json").read_text())["run"]
    assert run["status"] == "incomplete" and any("nothing ran" in r for r in run["status_reasons"])
    assert (run_dir / "predictions.jsonl").read_text() == ""
    report = (run_dir / "report.md").read_text()
    assert "- `openai:gpt-4o-mini`: OPENAI_API_KEY is not set" in report


@needs_data
def test_model_flag_with_key_env_set_is_not_skipped_at_validate(tmp_path):
    """validate reports which models would be skipped, without calling any model."""
    result = harness("validate", SPEC, unset=("OPENAI_API_KEY",))
    assert result.returncode == 0
    spec = tmp_path / "two.yaml"
    data = yaml.safe_load((ROOT / SPEC).read_text())
    data["models"].append({"provider": "openai", "model": "gpt-4o-mini"})
    data["baselines"] = []
    for prompt in data["prompts"]:
        prompt["template"] = str(ROOT / prompt["template"])
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    result = harness("validate", str(spec), unset=("OPENAI_API_KEY", "OPENAI_BASE_URL"))
    assert result.returncode == 0, result.stderr
    assert "  model openai:gpt-4o-mini: will be skipped (OPENAI_API_KEY is not set)" in result.stdout.splitlines()
    result = harness("validate", str(spec), env={"OPENAI_API_KEY": "sk-test"}, unset=("OPENAI_BASE_URL",))
    assert "  model openai:gpt-4o-mini: ok" in result.stdout.splitlines()
    assert "sk-test" not in result.stdout + result.stderr
