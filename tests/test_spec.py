"""Spec loading: every mistake is reported as `file:line: field: message`, and the CLI turns it into
exit code 2 with one paragraph and no traceback. The published JSON schema matches the models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError, SpecError
from harness.spec import json_schema, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")

# Line numbers in the tests below refer to this text (line 1 is `name: t`).
BASE = """\
name: t
dataset:
  source: data.jsonl
labels:
  - name: neg
  - name: pos
prompts:
  - name: p
    template: t.j2
"""


def spec_error(text: str, path: str = "s.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, path)
    return info.value


def only_line(error: SpecError) -> str:
    lines = str(error).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_base_spec_is_valid_and_fills_defaults():
    spec = parse_spec(BASE, "s.yaml")
    assert spec.name == "t"
    assert spec.task == "single_label"
    assert spec.label_names == ["neg", "pos"]
    assert spec.output.shape == "label" and spec.output.mode == "json_schema"
    assert spec.dataset.split == "test" and spec.dataset.train_split == "train"
    assert spec.mode_of(spec.prompts[0]) == "json_schema"


# ---------------------------------------------------------------------------------------------
# Field errors


def test_unknown_field_names_line_suggests_a_fix_and_lists_allowed_fields():
    text = BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  lable_field: y\n")
    assert only_line(spec_error(text)) == (
        "s.yaml:4: dataset.lable_field: unknown field; did you mean 'label_field'? Allowed: "
        "config, keep_single_labels, label_field, label_map, limit, revision, seed, source, split, text_field, "
        "text_separator, train_split, validation_split"
    )


def test_unknown_field_deep_inside_a_list_item():
    text = BASE + "models:\n  - provider: openai\n    model: x\n    params:\n      temprature: 0\n"
    line = only_line(spec_error(text))
    assert line.startswith(
        "s.yaml:14: models[0].params.temprature: unknown field; did you mean 'temperature'? Allowed: "
    )
    assert "max_tokens" in line and "top_p" in line


def test_unknown_field_without_a_close_match_lists_allowed_fields_only():
    text = BASE.replace("    template: t.j2\n", "    template: t.j2\n    zzz: 1\n")
    line = only_line(spec_error(text))
    assert line.startswith("s.yaml:10: prompts[0].zzz: unknown field Allowed: ")
    assert "did you mean" not in line
    assert "answer, calibration, few_shot, likelihood_max_tokens, mode, name, output, strategy, template" in line


def test_unknown_top_level_field():
    line = only_line(spec_error(BASE + "promts: []\n"))
    assert line.startswith("s.yaml:10: promts: unknown field; did you mean 'prompts'? Allowed: ")


def test_wrong_literal_names_the_allowed_values():
    assert only_line(spec_error(BASE + "task: multiclass\n")) == (
        "s.yaml:10: task: Input should be 'single_label' or 'multi_label'"
    )


def test_wrong_mode_literal_inside_a_prompt():
    text = BASE.replace("    template: t.j2\n", "    template: t.j2\n    mode: xml\n")
    assert only_line(spec_error(text)) == (
        "s.yaml:10: prompts[0].mode: Input should be 'json_schema', 'json_object' or 'text'"
    )


def test_wrong_type_is_reported_once_at_its_line():
    text = BASE + "models:\n  - provider: openai\n    model: x\n    concurrency: lots\n"
    assert only_line(spec_error(text)) == (
        "s.yaml:13: models[0].concurrency: Input should be a valid integer, unable to parse string "
        "as an integer"
    )


def test_bad_output_shape_lists_the_shapes():
    from harness.shapes import SHAPES  # the registered shapes (tests/test_shapes.py pins them)

    assert {"label", "labels", "label_confidence", "score"} <= set(SHAPES)
    assert only_line(spec_error(BASE + "output:\n  shape: foo\n")) == (
        f"s.yaml:11: output.shape: must be {', '.join(SHAPES)} or an import path `module:Class`"
    )


def test_bad_name_says_what_is_allowed():
    assert only_line(spec_error(BASE.replace("name: t\n", "name: 'a b'\n", 1))) == (
        "s.yaml:1: name: must be letters, digits, `_`, `.` or `-` (it names files and report rows)"
    )


def test_missing_field_points_at_the_parent_mapping():
    text = BASE.replace("  source: data.jsonl\n", "  split: test\n")
    assert only_line(spec_error(text)) == "s.yaml:2: dataset.source: required field is missing"


def test_missing_field_in_a_list_item_points_at_the_item():
    text = BASE.replace("    template: t.j2\n", "    mode: text\n")
    assert only_line(spec_error(text)) == "s.yaml:8: prompts[0].template: required field is missing"


def test_missing_top_level_field_points_at_line_one():
    text = "name: t\nlabels: [{name: a}, {name: b}]\nprompts: [{name: p, template: t.j2}]\n"
    assert only_line(spec_error(text)) == "s.yaml:1: dataset: required field is missing"


def test_several_mistakes_are_all_reported_in_line_order():
    text = BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  lable_field: y\n")
    text += "task: multiclass\n"
    lines = str(spec_error(text)).splitlines()
    assert [line.split(": ")[0] for line in lines] == ["s.yaml:4", "s.yaml:11"]
    assert lines[1].startswith("s.yaml:11: task:")


def test_too_few_labels():
    text = BASE.replace("  - name: pos\n", "")
    assert only_line(spec_error(text)).startswith("s.yaml:4: labels: List should have at least 2 items")


# ---------------------------------------------------------------------------------------------
# YAML-level errors


def test_duplicate_key_is_an_error_at_the_second_occurrence():
    assert only_line(spec_error(BASE + "name: u\n")) == "s.yaml:10: name: duplicate key"


def test_duplicate_nested_key():
    text = BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  source: other.jsonl\n")
    assert only_line(spec_error(text)) == "s.yaml:4: dataset.source: duplicate key"


def test_yaml_syntax_error_names_its_line():
    line = only_line(spec_error(BASE + "description: a: b\n"))
    assert line == "s.yaml:10: YAML syntax error: mapping values are not allowed here"


def test_unclosed_flow_mapping_is_a_syntax_error():
    line = only_line(spec_error(BASE + "output: {shape: label\n"))
    assert line.startswith("s.yaml:11: YAML syntax error: expected ',' or '}'")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text):
    assert only_line(spec_error(text)) == "s.yaml: the file is empty; a spec is a YAML mapping"


def test_a_list_is_not_a_spec():
    assert only_line(spec_error("- a\n- b\n")) == (
        "s.yaml:1: a spec is a YAML mapping of fields (name, dataset, ...)"
    )


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file; pass the path to a spec YAML"


def test_spec_error_is_a_harness_error_with_exit_code_2():
    error = spec_error(BASE + "task: x\n")
    assert isinstance(error, HarnessError)
    assert error.exit_code == 2
    assert error.problems == [(10, "task", "Input should be 'single_label' or 'multi_label'")]


# ---------------------------------------------------------------------------------------------
# Cross-field checks


def test_text_mode_with_score_shape_points_at_the_prompt_mode():
    text = BASE.replace("    template: t.j2\n", "    template: t.j2\n    mode: text\n")
    text += "output:\n  shape: score\n"
    assert only_line(spec_error(text)) == (
        "s.yaml:10: prompts[0].mode: prompt 'p': mode 'text' answers a bare label, which fits "
        "output.shape 'label' or 'labels', not 'score'"
    )


def test_text_mode_from_output_section_points_at_output():
    text = BASE + "output:\n  shape: label_confidence\n  mode: text\n"
    assert only_line(spec_error(text)) == (
        "s.yaml:12: output.mode: prompt 'p': mode 'text' answers a bare label, which fits "
        "output.shape 'label' or 'labels', not 'label_confidence'"
    )


def test_labels_shape_needs_multi_label():
    assert only_line(spec_error(BASE + "output:\n  shape: labels\n")) == (
        "s.yaml:11: output.shape: 'labels' needs task: multi_label"
    )


def test_multi_label_needs_labels_shape():
    assert only_line(spec_error(BASE + "task: multi_label\n")) == (
        "s.yaml:1: output.shape: 'label' is single-label; multi_label tasks use 'labels'"
    )


def test_score_needs_two_labels():
    text = BASE.replace("  - name: pos\n", "  - name: pos\n  - name: neu\n")
    text += "output:\n  shape: score\n"
    assert only_line(spec_error(text)) == (
        "s.yaml:12: output.shape: 'score' needs exactly two labels (negative, positive)"
    )


def test_label_map_value_outside_the_labels_points_at_its_entry():
    text = BASE.replace(
        "  source: data.jsonl\n", "  source: data.jsonl\n  label_map:\n    0: neg\n    1: positive\n"
    )
    assert only_line(spec_error(text)) == (
        "s.yaml:6: dataset.label_map[1]: maps 1 to 'positive', which is not in labels (neg, pos)"
    )


def test_duplicate_prompt_names_point_at_the_repeat():
    text = BASE + "  - name: q\n    template: q.j2\n  - name: p\n    template: u.j2\n"
    assert only_line(spec_error(text)) == (
        "s.yaml:12: prompts[2].name: prompt names must be unique; repeated: p"
    )


def test_duplicate_label_names():
    text = BASE.replace("  - name: pos\n", "  - name: neg\n")
    assert only_line(spec_error(text)) == (
        "s.yaml:6: labels[1].name: label names must be unique; repeated: neg"
    )


def test_duplicate_model_ids_ask_for_a_name():
    text = BASE + "models:\n  - {provider: openai, model: x}\n  - {provider: openai, model: x}\n"
    assert only_line(spec_error(text)) == (
        "s.yaml:12: models[1].name: model ids must be unique (set `name`); repeated: openai:x"
    )
    # With distinct names the same model twice is fine.
    parse_spec(
        BASE + "models:\n  - {provider: openai, model: x, name: a}\n"
        "  - {provider: openai, model: x, name: b}\n"
    )


def test_few_shot_without_a_train_split():
    text = BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  train_split: null\n")
    text = text.replace("    template: t.j2\n", "    template: t.j2\n    few_shot: {k: 2}\n")
    assert only_line(spec_error(text)) == (
        "s.yaml:11: prompts[0].few_shot: prompt 'p': few_shot needs dataset.train_split"
    )


@pytest.mark.parametrize("shape", ["mypkg.answers:Answer", "answers:Answer_2", "a.b.c:C"])
def test_module_class_shape_is_accepted(shape):
    spec = parse_spec(BASE + f"output:\n  shape: {shape}\n")
    assert spec.output.shape == shape


def test_module_class_shape_is_allowed_for_multi_label():
    spec = parse_spec(BASE + "task: multi_label\noutput:\n  shape: mine:Tags\n")
    assert spec.task == "multi_label" and spec.output.shape == "mine:Tags"


def test_module_class_shape_needs_a_class_name():
    line = only_line(spec_error(BASE + "output:\n  shape: 'mypkg:'\n"))
    assert line.startswith("s.yaml:11: output.shape: must be label, labels")


# ---------------------------------------------------------------------------------------------
# The CLI: exit 2, one paragraph, no traceback


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120,
    )


def test_validate_broken_spec_exits_2_with_a_located_error_and_no_traceback(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  lable_field: y\n"))
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    paragraph = result.stderr.strip()
    assert "\n\n" not in paragraph  # one paragraph
    assert paragraph.startswith(f"error: {path}:4: dataset.lable_field: unknown field; did you mean 'label_field'?")


def test_validate_yaml_syntax_error_exits_2(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BASE + "output: {shape: label\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {path}:11: YAML syntax error:")


def test_validate_cross_field_error_exits_2(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BASE + "output:\n  shape: labels\n")
    result = run_cli("validate", str(path))
    assert (result.returncode, result.stderr) == (
        2, f"error: {path}:11: output.shape: 'labels' needs task: multi_label\n"
    )


def test_validate_missing_spec_file_exits_2(tmp_path):
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no such file" in result.stderr


def test_validate_template_typo_exits_2_naming_template_line(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "fine film", "label": 1}\n')
    (tmp_path / "t.j2").write_text("{% block user %}Review: {{ text }}\n{{ lables }}{% endblock %}\n")
    (tmp_path / "s.yaml").write_text(BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  train_split: null\n"))
    result = run_cli("validate", str(tmp_path / "s.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 't.j2'}:2: UndefinedError: 'lables' is undefined")


def test_validate_shipped_spec_exits_0():
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared datasets not found at {DATA_DIR}")
    result = run_cli("validate", "specs/rotten_tomatoes.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("specs/rotten_tomatoes.yaml: ok\n")
    used = load_spec(ROOT / "specs/rotten_tomatoes.yaml").dataset.limit or 1066
    assert f"split test: {used} of 1066 rows" in result.stdout
    for prompt in load_spec(ROOT / "specs/rotten_tomatoes.yaml").prompts:
        assert f"  prompt {prompt.name}: " in result.stdout


# ---------------------------------------------------------------------------------------------
# The published JSON schema


SHIPPED_SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def test_committed_schema_file_is_up_to_date():
    committed = json.loads((ROOT / "harness" / "spec.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema(), (
        "harness/spec.schema.json is stale: run `harness schema --out harness/spec.schema.json`"
    )


def test_schema_command_prints_the_schema():
    result = run_cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json_schema()


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_schema_rejects_what_the_models_reject():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    good = yaml.safe_load(BASE)
    assert list(validator.iter_errors(good)) == []
    bad = yaml.safe_load(BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  lable_field: y\n"))
    assert [e.message for e in validator.iter_errors(bad)] == [
        "Additional properties are not allowed ('lable_field' was unexpected)"
    ]


def test_there_are_shipped_specs():
    assert SHIPPED_SPECS, "specs/ holds no *.yaml"


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.name)
def test_shipped_spec_loads_and_matches_the_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    spec = load_spec(path)
    assert spec.path == path.resolve()
    # An editor sees the YAML as JSON: mapping keys become strings (label_map: {0: negative}).
    document = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8"))))
    jsonschema.Draft202012Validator(json_schema()).validate(document)
    # The editor hint in the file points at the committed schema.
    first = path.read_text(encoding="utf-8").splitlines()[0]
    if first.startswith("# yaml-language-server: $schema="):
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target == (ROOT / "harness" / "spec.schema.json").resolve()
