"""A corpus of malformed inputs: specs, templates, datasets, fixtures, run folders and flags.

Each case builds its files in tmp_path and runs the real command line. It must end with its
documented exit code (2 for bad input unless said otherwise), no traceback, a message that names
the file (or flag) at fault, and a bounded length. The cases are data, so a new failure mode found
later is one more row here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from harness.cache import KEY_VERSION, cache_key
from harness.cli import main

MAX_MESSAGE = 4000  # characters of stderr a bad input may print

GOOD_TEMPLATE = "{% block system %}Answer positive or negative.{% endblock %}\n{% block user %}{{ text }}{% endblock %}\n"
ROWS = [("great fun", 1), ("dull and slow", 0), ("a triumph", 1), ("a mess", 0)]


def spec_text(*, models: str | None = None, extra: str = "", dataset: str = "{source: data.jsonl, split: test, "
              "train_split: null, label_map: {0: negative, 1: positive}}", prompts: str | None = None,
              output: str = "") -> str:
    models = models if models is not None else (
        "models:\n  - provider: openai\n    model: served-name\n    base_url: http://127.0.0.1:9/v1\n"
        "    params: {temperature: 0, max_tokens: 4, seed: 0}\n"
    )
    prompts = prompts or "prompts:\n  - {name: a, template: a.j2, mode: text}\n"
    return (f"name: tiny\ndataset: {dataset}\nlabels: [{{name: negative}}, {{name: positive}}]\n"
            f"{prompts}{output}{models}{extra}")


def base(tmp: Path, *, spec: str | None = None, template: str = GOOD_TEMPLATE, rows=ROWS) -> Path:
    (tmp / "data.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    (tmp / "a.j2").write_text(template)
    (tmp / "spec.yaml").write_text(spec if spec is not None else spec_text())
    return tmp / "spec.yaml"


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def run_folder(tmp: Path, name: str, *, metrics=None, predictions: str | None = None, status="complete",
               resolved=None) -> Path:
    """A run folder as `harness eval` writes it, with any part replaced."""
    folder = tmp / "runs" / "tiny" / name
    folder.mkdir(parents=True)
    if metrics is None:
        metrics = {"run": {"spec": "tiny", "status": status, "status_reasons": [] if status == "complete" else ["model m stopped"]},
                   "results": [{"model": "m", "prompt": "a", "accuracy": 0.5, "macro_f1": 0.5, "n": 2}]}
    (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if predictions is None:
        predictions = "".join(json.dumps({"example_id": f"test:{i}", "model": "m", "prompt": "a", "gold": "positive",
                                          "prediction": "positive" if i else "negative", "outcome": "valid"}) + "\n"
                              for i in range(2))
    (folder / "predictions.jsonl").write_text(predictions)
    resolved = resolved if resolved is not None else {
        "name": "tiny", "task": "single_label", "labels": [{"name": "negative"}, {"name": "positive"}], "checks": [],
    }
    (folder / "spec.resolved.json").write_text(json.dumps(resolved))
    return folder


def fixture_line(**override) -> str:
    material = {"provider": "openai", "endpoint": "http://127.0.0.1:9/v1", "body": {"model": "x"}}
    entry = {"key": cache_key(material), "material": material, "response": {"text": "positive"}, "v": KEY_VERSION}
    entry.update(override)
    return json.dumps(entry) + "\n"


@dataclass
class Case:
    id: str
    build: Callable[[Path], list[str]]  # makes the files, returns the argv
    names: str  # what the message must mention (a file name or a flag)
    code: int = 2


def spec_case(id: str, spec: str, names: str = "spec.yaml", **kw) -> Case:
    return Case(id, lambda t: ["validate", str(base(t, spec=spec, **kw))], names)


def template_case(id: str, template: str, names: str = "a.j2", command: str = "validate") -> Case:
    return Case(id, lambda t: [command, str(base(t, template=template))], names)


def data_case(id: str, content: bytes | str, names: str = "data.jsonl", filename: str = "data.jsonl",
              dataset: str | None = None) -> Case:
    def build(t: Path) -> list[str]:
        spec = base(t, spec=spec_text(dataset=dataset) if dataset else None)
        target = t / filename
        if target.is_file():
            target.unlink()
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return ["validate", str(spec)]
    return Case(id, build, names)


def fixture_case(id: str, content: bytes | str, command: str = "replay") -> Case:
    def build(t: Path) -> list[str]:
        spec = base(t)
        fixture = t / "fix.jsonl"
        fixture.write_bytes(content if isinstance(content, bytes) else content.encode())
        if command == "import":
            return ["cache", "import", str(fixture), "--cache-dir", str(t / "cache")]
        return ["eval", str(spec), "--cache", "replay", "--fixture", str(fixture), "--quiet", "--no-baselines",
                "--out", str(t / "out")]
    return Case(id, build, "fix.jsonl")


def run_case(id: str, names: str = "metrics.json", command: str = "compare", code: int = 2, **kw) -> Case:
    def build(t: Path) -> list[str]:
        good = run_folder(t, "20260101-000000")
        bad = run_folder(t, "20260102-000000", **kw)
        if command == "check":
            return ["check", str(bad)]
        return ["compare", str(good), str(bad)]
    return Case(id, build, names, code)


def nested(depth: int) -> str:
    return "name: tiny\nx: " + "[" * depth + "]" * depth + "\n"


JSON_PROMPT = "prompts:\n  - {name: a, template: a.j2, mode: json_schema}\n"
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)
UNKNOWN_400 = spec_text() + "".join(f"field_{i}: 1\n" for i in range(400))


CASES = [
    # -- spec files -----------------------------------------------------------------------------
    spec_case("yaml-syntax", "name: [\n"),
    spec_case("empty-spec", ""),
    spec_case("spec-is-a-list", "- a\n- b\n"),
    spec_case("unknown-top-field", spec_text(extra="promts: []\n")),
    spec_case("400-unknown-fields", UNKNOWN_400),
    spec_case("missing-dataset", "name: tiny\nlabels: [{name: a}, {name: b}]\nprompts: [{name: a, template: a.j2}]\n"),
    spec_case("one-label", spec_text().replace("[{name: negative}, {name: positive}]", "[{name: negative}]")),
    spec_case("duplicate-key", spec_text(extra="name: again\n")),
    spec_case("bad-name", spec_text().replace("name: tiny", "name: 'has space/slash'")),
    spec_case("exponential-aliases", BOMB),
    spec_case("recursive-anchor", "name: tiny\na: &a [*a]\n"),
    spec_case("deep-nesting", nested(200)),
    Case("spec-not-utf8", lambda t: ["validate", str(write_bytes(t / "spec.yaml", b"name: caf\xe9\n"))], "spec.yaml"),
    Case("spec-is-a-folder", lambda t: ["validate", str(t)], "is a folder"),
    Case("spec-missing", lambda t: ["validate", str(t / "nope.yaml")], "nope.yaml"),
    Case("spec-too-big", lambda t: ["validate", str(write_bytes(t / "spec.yaml", b"# " + b"x" * 1_100_000 + b"\n"))], "spec.yaml"),
    spec_case("complex-key", "? [a, b]\n: 1\nname: tiny\n"),
    spec_case("python-tag", spec_text().replace("name: tiny", "name: !!python/object:os.system x")),
    spec_case("unknown-provider", spec_text(models="models:\n  - {provider: opneai, model: m}\n")),
    spec_case("unknown-model-option", spec_text(models="models:\n  - provider: openai\n    model: m\n    base_url: http://127.0.0.1:9/v1\n    options: {bacth: true}\n")),
    spec_case("ftp-base-url", spec_text(models="models:\n  - {provider: openai, model: m, base_url: 'ftp://x/v1'}\n")),
    spec_case("hostless-base-url", spec_text(models="models:\n  - {provider: openai, model: m, base_url: 'http://'}\n")),
    spec_case("concurrency-zero", spec_text(models="models:\n  - {provider: openai, model: m, concurrency: 0}\n")),
    spec_case("temperature-5", spec_text(models="models:\n  - {provider: openai, model: m, params: {temperature: 5}}\n")),
    spec_case("check-no-threshold", spec_text(extra="checks: [{metric: accuracy}]\n")),
    spec_case("check-min-above-max", spec_text(extra="checks: [{metric: accuracy, min: 0.9, max: 0.1}]\n")),
    spec_case("label-map-unknown", spec_text(dataset="{source: data.jsonl, split: test, train_split: null, label_map: {0: neg, 1: positive}}")),
    spec_case("shape-unknown", spec_text(output="output: {shape: colour}\n")),
    spec_case("shape-missing-module", spec_text(output="output: {shape: 'no_such_module_xyz:Answer'}\n", prompts=JSON_PROMPT)),
    Case("shape-module-raises", lambda t: (
        (t / "raising_mod_q.py").write_text("x = 1 / 0\n"),
        ["validate", str(base(t, spec=spec_text(output="output: {shape: 'raising_mod_q:Answer'}\n", prompts=JSON_PROMPT)))])[1], "ZeroDivisionError"),
    Case("shape-not-a-model", lambda t: (
        (t / "plain_mod_q.py").write_text("class Answer:\n    pass\n"),
        ["validate", str(base(t, spec=spec_text(output="output: {shape: 'plain_mod_q:Answer'}\n", prompts=JSON_PROMPT)))])[1], "not a Pydantic model"),
    spec_case("text-mode-with-confidence", spec_text(output="output: {shape: label_confidence}\n")),
    spec_case("few-shot-without-train", spec_text(prompts="prompts:\n  - {name: a, template: a.j2, mode: text, few_shot: {k: 2}}\n")),
    spec_case("duplicate-prompts", spec_text(prompts="prompts:\n  - {name: a, template: a.j2, mode: text}\n  - {name: a, template: a.j2, mode: text}\n")),
    spec_case("max-error-share-above-1", spec_text(extra="run: {max_error_share: 3}\n")),
    Case("fixture-named-but-missing", lambda t: ["eval", str(base(t, spec=spec_text(extra="cache: {fixture: gone.jsonl}\n"))),
                                                 "--cache", "replay", "--quiet", "--no-baselines"], "gone.jsonl"),
    # -- templates -------------------------------------------------------------------------------
    template_case("template-syntax", "{% block user %}{{ text {% endblock %}"),
    Case("template-missing", lambda t: ["validate", str(base(t, spec=spec_text(prompts="prompts:\n  - {name: a, template: nothere.j2}\n")))], "nothere.j2"),
    template_case("undefined-variable", "{% block user %}{{ txet }}{% endblock %}"),
    template_case("zero-division", "{% block user %}{{ text }} {{ 1 / 0 }}{% endblock %}"),
    template_case("percent-format", "{% block user %}{{ '%d' % text }}{% endblock %}"),
    template_case("str-format", "{% block user %}{{ '{:d}'.format(text) }}{% endblock %}"),
    template_case("huge-range", "{% block user %}{% for i in range(10**9) %}x{% endfor %}{% endblock %}"),
    template_case("runaway-nested-range", "{% block user %}{% for i in range(90000) %}{% for j in range(90000) %}xxxxxxxx{% endfor %}{% endfor %}{% endblock %}"),
    template_case("self-include", "{% block user %}{% include 'a.j2' %}{% endblock %}"),
    Case("template-not-utf8", lambda t: (base(t), write_bytes(t / "a.j2", b"{% block user %}caf\xe9 {{ text }}{% endblock %}"),
                                         ["validate", str(t / "spec.yaml")])[2], "a.j2"),
    template_case("empty-user-message", "{% block system %}hi{% endblock %}{% block user %}{{ '' }}  {% endblock %}"),
    template_case("no-user-block", "{% block system %}hi{% endblock %}"),
    template_case("unknown-block", "{% block user %}{{ text }}{% endblock %}{% block assistant %}x{% endblock %}"),
    Case("include-not-utf8", lambda t: (base(t, template="{% block user %}{% include 'inc.j2' %}{{ text }}{% endblock %}"),
                                        write_bytes(t / "inc.j2", b"caf\xe9"), ["validate", str(t / "spec.yaml")])[2], "a.j2"),
    template_case("render-zero-division", "{% block user %}{{ text }}{{ 1 // 0 }}{% endblock %}", command="render"),
    template_case("sandbox-attribute", "{% block user %}{{ text.__class__.__mro__[1].__subclasses__() }}{% endblock %}"),
    # -- datasets --------------------------------------------------------------------------------
    data_case("data-missing", b"", filename="other.jsonl", names="data.jsonl") if False else
    Case("data-missing", lambda t: (base(t), (t / "data.jsonl").unlink(), ["validate", str(t / "spec.yaml")])[2], "data.jsonl"),
    data_case("data-not-utf8", b'{"text": "caf\xe9", "label": 1}\n'),
    data_case("data-bad-json", '{"text": "a", "label": 1}\n{"text": oops}\n'),
    data_case("data-row-is-list", '[1, 2]\n'),
    data_case("data-empty", ""),
    data_case("data-unknown-label", '{"text": "a", "label": 7}\n'),
    data_case("data-missing-text", '{"body": "a", "label": 1}\n'),
    data_case("data-null-text", '{"text": null, "label": 1}\n'),
    data_case("data-deep-json", '{"text": "a", "label": 1, "x": ' + "[" * 100000 + "]" * 100000 + '}\n'),
    data_case("data-csv-empty", "", filename="data.csv", names="data.csv",
              dataset="{source: data.csv, split: test, train_split: null, label_map: {0: negative, 1: positive}}"),
    data_case("data-unsupported-suffix", "hello\n", filename="data.txt", names="data.txt",
              dataset="{source: data.txt, split: test, train_split: null}"),
    Case("data-folder-without-split", lambda t: ((t / "d").mkdir(), base(t, spec=spec_text(dataset="{source: d, split: test, train_split: null}")),
                                                 ["validate", str(t / "spec.yaml")])[2], "d"),
    # -- fixtures --------------------------------------------------------------------------------
    fixture_case("fixture-not-json", "not json\n"),
    fixture_case("fixture-not-utf8", b'{"key": "caf\xe9"}\n'),
    fixture_case("fixture-missing-fields", '{"key": "k"}\n'),
    fixture_case("fixture-old-version", fixture_line(v=0)),
    fixture_case("fixture-response-not-object", fixture_line(response=[1])),
    fixture_case("fixture-key-edited", fixture_line(key="0" * 64), command="import"),
    fixture_case("fixture-unknown-response-field", fixture_line(response={"text": "x", "colour": 1}), command="import"),
    Case("fixture-missing", lambda t: ["cache", "import", str(t / "absent.jsonl"), "--cache-dir", str(t / "c")], "absent.jsonl"),
    # -- run folders -----------------------------------------------------------------------------
    Case("run-missing", lambda t: ["compare", str(t / "runs/tiny/a"), str(t / "runs/tiny/b")], "runs/tiny/a"),
    run_case("metrics-not-json", metrics="{not json"),
    run_case("metrics-is-a-list", metrics="[1, 2]"),
    run_case("results-not-a-list", metrics=json.dumps({"run": {}, "results": {"a": 1}})),
    run_case("row-model-not-text", metrics=json.dumps({"run": {}, "results": [{"model": 3, "prompt": "a"}]})),
    run_case("row-accuracy-text", metrics=json.dumps({"run": {}, "results": [{"model": "m", "prompt": "a", "accuracy": "high"}]})),
    run_case("row-not-object", metrics=json.dumps({"run": {}, "results": ["m"]})),
    run_case("run-part-not-object", metrics=json.dumps({"run": [1], "results": []})),
    run_case("predictions-bad-outcome", names="predictions.jsonl",
             predictions=json.dumps({"example_id": "t:0", "model": "m", "prompt": "a", "gold": "x", "outcome": "great"}) + "\n{}\n"),
    run_case("predictions-line-is-list", names="predictions.jsonl", predictions="[1]\n[2]\n"),
    run_case("predictions-bad-json-mid-file", names="predictions.jsonl", predictions="{oops\n{}\n"),
    run_case("predictions-gold-number", names="predictions.jsonl",
             predictions=json.dumps({"example_id": "t:0", "model": "m", "prompt": "a", "gold": 1, "outcome": "valid"}) + "\n"),
    Case("metrics-not-utf8", lambda t: (run_folder(t, "r1"), write_bytes(t / "runs/tiny/r1/metrics.json", b'{"results": "caf\xe9"}'),
                                        ["check", str(t / "runs/tiny/r1")])[2], "metrics.json"),
    run_case("resolved-spec-is-a-list", names="spec.resolved.json", resolved=[1]),
    run_case("incomplete-run-to-check", names="incomplete", command="check", status="incomplete"),
    run_case("incomplete-run-to-compare", names="incomplete", status="incomplete"),
    Case("run-is-a-file", lambda t: (write_bytes(t / "afile", b"x"), ["check", str(t / "afile")])[1], "afile"),
    Case("compare-same-run", lambda t: (run_folder(t, "r1"), ["compare", str(t / "runs/tiny/r1"), str(t / "runs/tiny/r1")])[1], "same run"),
    Case("compare-one-complete-run", lambda t: (run_folder(t, "r1"), run_folder(t, "r2", status="incomplete"),
                                                ["compare", str(t / "runs/tiny")])[2], "complete"),
    # -- flags -----------------------------------------------------------------------------------
    Case("limit-zero", lambda t: ["eval", str(base(t)), "--limit", "0"], "--limit"),
    Case("concurrency-zero-flag", lambda t: ["eval", str(base(t)), "--concurrency", "0"], "--concurrency"),
    Case("out-is-a-file", lambda t: ["eval", str(base(t)), "--out", str(write_bytes(t / "out.txt", b"x")), "--quiet"], "out.txt"),
    Case("out-under-a-file", lambda t: ["eval", str(base(t)), "--out", str(write_bytes(t / "f", b"x")) + "/run", "--quiet"], "--out"),
    Case("fixture-without-replay", lambda t: ["eval", str(base(t)), "--fixture", "x.jsonl"], "--fixture"),
    Case("max-error-share-flag", lambda t: ["eval", str(base(t)), "--max-error-share", "2"], "--max-error-share"),
    Case("render-index-out-of-range", lambda t: ["render", str(base(t)), "--index", "99"], "--index"),
    Case("unknown-prompt", lambda t: ["eval", str(base(t)), "--prompt", "zzz", "--quiet"], "zzz"),
    Case("model-flag-no-colon", lambda t: ["eval", str(base(t)), "--model", "gpt4", "--quiet"], "--model"),
    Case("model-flag-unknown-provider", lambda t: ["eval", str(base(t)), "--model", "nope:x", "--quiet"], "nope"),
    Case("export-to-a-folder", lambda t: ["cache", "export", str(t), "--cache-dir", str(t / "c")], "folder"),
    Case("export-without-file", lambda t: ["cache", "export"], "FILE"),
    Case("schema-out-folder", lambda t: ["schema", "--out", str(t)], "--out"),
    Case("no-models-and-model", lambda t: ["eval", str(base(t)), "--no-models", "--model", "openai:x"], "--no-models"),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit 2 with usage on stderr
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_the_corpus_is_large_and_ids_are_unique():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    argv = case.build(tmp_path)
    code, output = _run(argv, capsys)
    assert code == case.code, output
    assert "Traceback" not in output
    assert len(output) <= MAX_MESSAGE, f"{len(output)} characters:\n{output[:2000]}"
    assert case.names in output, output


def test_400_unknown_fields_print_the_allowed_list_once(tmp_path, capsys):
    spec = base(tmp_path, spec=UNKNOWN_400)
    code, output = _run(["validate", str(spec)], capsys)
    assert code == 2
    assert output.count("Allowed:") == 1
    assert "and 380 more problem(s)" in output


def test_spec_error_keeps_file_and_line_for_provider_option_and_url(tmp_path, capsys):
    spec = base(tmp_path, spec=spec_text(models="models:\n  - provider: openai\n    model: m\n    base_url: http://127.0.0.1:9/v1\n    options:\n      bacth: true\n"))
    code, output = _run(["validate", str(spec)], capsys)
    assert code == 2 and f"{spec}:11: models[0].options.bacth:" in output, output
    spec = base(tmp_path, spec=spec_text(models="models:\n  - provider: opneai\n    model: m\n"))
    code, output = _run(["validate", str(spec)], capsys)
    assert code == 2 and f"{spec}:7: models[0].provider:" in output, output
    spec = base(tmp_path, spec=spec_text(models="models:\n  - provider: openai\n    model: m\n    base_url: ftp://x\n"))
    code, output = _run(["validate", str(spec)], capsys)
    assert code == 2 and f"{spec}:9: models[0].base_url:" in output, output


def test_template_errors_name_the_template_line(tmp_path, capsys):
    spec = base(tmp_path, template="{% block system %}x{% endblock %}\n{% block user %}\n{{ text }}\n{{ 1 / 0 }}\n{% endblock %}\n")
    code, output = _run(["validate", str(spec)], capsys)
    assert code == 2 and "a.j2:4: ZeroDivisionError" in output, output


def test_output_class_next_to_the_spec_imports_without_pythonpath(tmp_path, capsys, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # neither the spec's folder nor on sys.path
    (tmp_path / "answer_model_q7.py").write_text(
        "from typing import Literal\nfrom pydantic import BaseModel\n"
        "class Answer(BaseModel):\n    label: Literal['negative', 'positive']\n")
    spec = base(tmp_path, spec=spec_text(output="output: {shape: 'answer_model_q7:Answer'}\n",
                                         prompts="prompts:\n  - {name: a, template: a.j2, mode: json_schema}\n"))
    code, output = _run(["validate", str(spec)], capsys)
    assert code == 0, output


def test_a_subprocess_never_prints_a_traceback(tmp_path):
    """The same corpus rows through the installed script: what a user's shell sees."""
    script = Path(sys.executable).with_name("harness")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    picked = ["exponential-aliases", "self-include", "data-not-utf8", "metrics-is-a-list", "out-is-a-file"]
    for case in (c for c in CASES if c.id in picked):
        folder = tmp_path / case.id
        folder.mkdir()
        argv = case.build(folder)
        result = subprocess.run([*command, *argv], cwd=folder, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "HARNESS_CACHE_DIR": str(folder / "cache")})
        assert result.returncode == case.code, (case.id, result.stderr)
        assert "Traceback" not in result.stderr, (case.id, result.stderr)
        assert case.names in result.stderr, (case.id, result.stderr)


def test_failed_export_leaves_no_fixture(tmp_path, capsys):
    spec = base(tmp_path)
    out = tmp_path / "fixture.jsonl"
    code, output = _run(["cache", "export", str(out), "--cache-dir", str(tmp_path / "c"), "--spec", str(spec)], capsys)
    assert code == 3 and "nothing was written" in output, output
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
