"""Prompt templates: Jinja blocks -> chat messages, few-shot turns, template errors with file and line,
the sandbox, and `harness render` printing exactly what PromptRenderer produces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.records import Example
from harness.runner import Prepared
from harness.spec import load_spec
from harness.validate import AnswerContract
from harness.prompt import PromptRenderer

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")

LONG_TEXT = (
    "An unhurried, generous film that takes its time with every character and every silence, and "
    "rewards the patience it asks for with a final half hour so moving that the whole theatre went "
    "quiet :smile: [bold]not markup[/bold]\tafter a tab, and then some more words to be sure that "
    "nothing on the way to the terminal folds this line at eighty, one hundred or two hundred columns."
)
TRAIN = [
    {"text": f"train {label} {i}", "label": label} for label in (0, 1) for i in range(6)
]
TEST = [
    {"text": LONG_TEXT, "label": 1},
    {"text": "dull and far too long", "label": 0},
    {"text": "a small gem", "label": 1},
]

JSON_TEMPLATE = """\
{#- a comment line -#}
{% block system %}Classify the review as {{ label_names | join(" or ") }}.
{% for label in labels %}- {{ label.name }}: {{ label.description }}
{% endfor %}Answer with JSON matching:
{{ schema }}{% endblock %}

{% block shot_user %}Review: {{ shot.text }}{% endblock %}
{% block shot_assistant %}{{ shot.answer }}{% endblock %}

{% block user %}Review: {{ text }}{% endblock %}
"""

LABEL_TEMPLATE = """\
{% block user %}Review: {{ item.text }}
Mode {{ mode }}, task {{ task }}. Answer {{ label_names | join(" or ") }}.{% endblock %}
"""


def write_project(tmp_path: Path, spec_extra: str = "", prompts: str | None = None) -> Path:
    """A spec with a local dataset folder (train + test) and two templates; returns the spec path."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST))
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts" / "json.j2").write_text(JSON_TEMPLATE)
    (tmp_path / "prompts" / "label.j2").write_text(LABEL_TEMPLATE)
    if prompts is None:
        prompts = (
            "  - {name: json, template: prompts/json.j2}\n"
            "  - {name: bare, template: prompts/label.j2, mode: text}\n"
        )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: reviews\n"
        "dataset:\n"
        "  source: data\n"
        "  label_map: {0: negative, 1: positive}\n"
        "labels:\n"
        "  - {name: negative, description: The reviewer dislikes it.}\n"
        "  - {name: positive, description: The reviewer likes it.}\n"
        f"prompts:\n{prompts}" + spec_extra
    )
    return spec


def renderer_for(tmp_path: Path, template: str, **few_shot) -> tuple[PromptRenderer, Path]:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "test.jsonl").write_text(json.dumps(TEST[1]) + "\n")
    path = tmp_path / "t.j2"
    path.write_text(template)
    shots = f", few_shot: {{k: {few_shot['k']}}}" if few_shot else ""
    (tmp_path / "s.yaml").write_text(
        "name: t\n"
        "dataset: {source: data, label_map: {0: negative, 1: positive}}\n"
        "labels: [{name: negative}, {name: positive}]\n"
        f"prompts: [{{name: p, template: t.j2{shots}}}]\n"
    )
    spec = load_spec(tmp_path / "s.yaml")
    contract = AnswerContract(spec)
    return PromptRenderer(spec, spec.prompts[0], contract.json_schema(), contract.gold_answer), path


EXAMPLE = Example(id="test:7", index=7, text="a small gem", gold="positive", fields={"text": "a small gem", "label": 1})


# ---------------------------------------------------------------------------------------------
# Rendering


def test_system_and_user_blocks_become_messages(tmp_path):
    prepared = Prepared(load_spec(write_project(tmp_path)))
    json_prompt, bare_prompt = prepared.prompts
    example = prepared.eval.examples[2]
    messages = prepared.messages(json_prompt, example)
    schema = json.dumps(prepared.contract.json_schema(), indent=2)
    assert messages == [
        {
            "role": "system",
            "content": "Classify the review as negative or positive.\n"
            "- negative: The reviewer dislikes it.\n"
            "- positive: The reviewer likes it.\n"
            f"Answer with JSON matching:\n{schema}",
        },
        {"role": "user", "content": "Review: a small gem"},
    ]


@pytest.mark.parametrize("block, static", [
    ("{% for l in labels %}- {{ l.name }}: {{ l.description }}\n{% endfor %}{{ schema }}", True),
    ("{% set names = label_names | join(' or ') %}Pick {{ names }} ({{ mode }}, {{ task }})", True),
    ("Review: {{ text }}", False),
    ("{{ item.label }}", False),
    ("{% for l in labels %}{{ loop.index }}. {{ l.name }}{% endfor %}", False),  # `loop`: not proven static
    ("{{ label_names | random }}", False),
    ("{{ range(2) | list }}", False),  # calls are never proven static
    ("{% for s in examples %}{{ s.text }}{% endfor %}", False),
])
def test_a_block_is_rendered_once_only_when_it_cannot_depend_on_the_example(tmp_path, block, static):
    from harness.prompt import static_blocks

    template = "{% block system %}" + block + "{% endblock %}{% block user %}{{ text }}{% endblock %}"
    renderer, _ = renderer_for(tmp_path, template)
    assert static_blocks(template, renderer.template.environment) == ({"system"} if static else set())
    other = Example(id="test:8", index=8, text="a dull slog", gold="negative", fields={"text": "a dull slog", "label": 0})
    if "random" in block:
        return  # rendered per example: its text may differ each time
    # rendered once or per example, each example's messages are what a fresh renderer gives it
    twice = [renderer.render(EXAMPLE), renderer.render(other)]
    fresh = [renderer_for(tmp_path, template)[0].render(e) for e in (EXAMPLE, other)]
    assert twice == fresh
    assert static_blocks(template + "{% include 'x.j2' %}", renderer.template.environment) == set()


def test_a_template_without_system_block_sends_only_the_user_message(tmp_path):
    prepared = Prepared(load_spec(write_project(tmp_path)))
    messages = prepared.messages(prepared.prompts[1], prepared.eval.examples[1])
    assert messages == [
        {
            "role": "user",
            "content": "Review: dull and far too long\nMode text, task single_label. Answer negative or positive.",
        }
    ]


def test_few_shot_turns_are_stratified_pairs_before_the_question(tmp_path):
    prompts = "  - {name: json, template: prompts/json.j2, few_shot: {k: 4, seed: 3}}\n"
    prepared = Prepared(load_spec(write_project(tmp_path, prompts=prompts)))
    pp = prepared.prompts[0]
    example = prepared.eval.examples[1]
    messages = prepared.messages(pp, example)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 4 + ["user"]
    assert messages[-1] == {"role": "user", "content": "Review: dull and far too long"}
    shots = list(zip(messages[1:-1:2], messages[2:-1:2]))
    golds = []
    for user, assistant in shots:
        text = user["content"].removeprefix("Review: ")
        row = next(r for r in TRAIN if r["text"] == text)
        gold = ["negative", "positive"][row["label"]]
        assert json.loads(assistant["content"]) == {"label": gold}  # the answer a perfect model gives
        golds.append(gold)
    assert Counter(golds) == {"negative": 2, "positive": 2}
    assert len({u["content"] for u, _ in shots}) == 4
    # Deterministic: the same example gets the same shots.
    assert prepared.messages(pp, example) == messages


def test_few_shot_in_text_mode_answers_bare_labels(tmp_path):
    prompts = "  - {name: bare, template: prompts/label.j2, mode: text, few_shot: {k: 2}}\n"
    (tmp_path / "prompts").mkdir()
    spec_path = write_project(tmp_path, prompts=prompts)
    (tmp_path / "prompts" / "label.j2").write_text(
        "{% block shot_user %}{{ shot.text }}{% endblock %}"
        "{% block shot_assistant %}{{ shot.answer }}{% endblock %}"
        "{% block user %}{{ text }}{% endblock %}"
    )
    prepared = Prepared(load_spec(spec_path))
    messages = prepared.messages(prepared.prompts[0], prepared.eval.examples[0])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert sorted(m["content"] for m in messages[1:4:2]) == ["negative", "positive"]


def test_few_shot_never_shows_the_evaluated_example(tmp_path):
    # Shots drawn from the evaluated split itself, as many as there are other examples.
    prompts = (
        "  - {name: json, template: prompts/json.j2, few_shot: {k: 5, split: test}}\n"
    )
    prepared = Prepared(load_spec(write_project(tmp_path, prompts=prompts)))
    pp = prepared.prompts[0]
    for example in prepared.eval.examples:
        messages = prepared.messages(pp, example)
        shown = [m["content"].removeprefix("Review: ") for m in messages[1:-1:2]]
        assert len(shown) == len(TEST) - 1
        assert example.text not in shown


def test_examples_variable_without_shot_blocks(tmp_path):
    renderer, _ = renderer_for(
        tmp_path,
        "{% block user %}{% for e in examples %}{{ e.text }} => {{ e.label }}\n{% endfor %}"
        "{{ text }} =>{% endblock %}",
        k=2,
    )
    shots = [
        Example("train:0", 0, "awful", "negative", {"text": "awful"}),
        Example("train:1", 1, "superb", "positive", {"text": "superb"}),
    ]
    assert renderer.render(EXAMPLE, shots) == [
        {"role": "user", "content": "awful => negative\nsuperb => positive\na small gem =>"}
    ]


# ---------------------------------------------------------------------------------------------
# Template errors name the file and the line


def test_undefined_variable_names_template_file_and_line(tmp_path):
    renderer, path = renderer_for(
        tmp_path, "{% block system %}ok{% endblock %}\n{% block user %}Review:\n{{ text }}\n{{ txet }}{% endblock %}\n"
    )
    with pytest.raises(HarnessError) as info:
        renderer.render(EXAMPLE)
    assert str(info.value).startswith(f"{path}:4: UndefinedError: 'txet' is undefined (while rendering example test:7;")


def test_undefined_attribute_in_a_shot_block_names_its_line(tmp_path):
    renderer, path = renderer_for(
        tmp_path,
        "{% block shot_user %}{{ shot.text }}{% endblock %}\n"
        "{% block shot_assistant %}\n{{ shot.anwser }}{% endblock %}\n"
        "{% block user %}{{ text }}{% endblock %}\n",
        k=1,
    )
    with pytest.raises(HarnessError) as info:
        renderer.render(EXAMPLE, [Example("train:0", 0, "awful", "negative", {})])
    assert str(info.value).startswith(f"{path}:3: UndefinedError:")
    assert "anwser" in str(info.value)


def test_syntax_error_names_its_line(tmp_path):
    with pytest.raises(HarnessError) as info:
        renderer_for(tmp_path, "{% block user %}\nline two\n{% if %}\n{% endblock %}\n")
    assert str(info.value) == (
        f"{tmp_path / 't.j2'}:3: template syntax error: Expected an expression, got 'end of statement block'"
    )


def test_missing_user_block(tmp_path):
    with pytest.raises(HarnessError) as info:
        renderer_for(tmp_path, "{% block system %}hi{% endblock %}\nReview: {{ text }}\n")
    assert str(info.value) == (
        f"{tmp_path / 't.j2'}: a prompt template needs a `{{% block user %}}...{{% endblock %}}` "
        "(blocks found: system; allowed: system, user, shot_user, shot_assistant)"
    )


def test_unknown_block(tmp_path):
    with pytest.raises(HarnessError) as info:
        renderer_for(tmp_path, "{% block user %}{{ text }}{% endblock %}{% block assistant %}x{% endblock %}")
    assert str(info.value) == (
        f"{tmp_path / 't.j2'}: unknown block(s) assistant; allowed: system, user, shot_user, shot_assistant"
    )


def test_few_shot_needs_shot_blocks_or_examples(tmp_path):
    with pytest.raises(HarnessError) as info:
        renderer_for(tmp_path, "{% block user %}{{ text }}{% endblock %}", k=2)
    assert "asks for few_shot.k=2 but the template neither defines the blocks shot_user" in str(info.value)


def test_missing_template_file(tmp_path):
    renderer_for(tmp_path, "{% block user %}{{ text }}{% endblock %}")
    (tmp_path / "t.j2").unlink()
    spec = load_spec(tmp_path / "s.yaml")
    with pytest.raises(HarnessError) as info:
        Prepared(spec)
    assert "prompts[p].template: 't.j2' not found" in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [
        "item.__class__",
        "text.__class__.__mro__",
        "labels.__class__.__subclasses__()",
        "''.__class__.__base__.__subclasses__()",
    ],
)
def test_sandbox_refuses_dunder_access(tmp_path, expression):
    renderer, path = renderer_for(tmp_path, "{% block user %}\n{{ " + expression + " }}{% endblock %}\n")
    with pytest.raises(HarnessError) as info:
        renderer.render(EXAMPLE)
    assert str(info.value).startswith(f"{path}:2: SecurityError: access to attribute '__class__' of ")
    assert "is unsafe" in str(info.value)


def test_sandbox_is_immutable(tmp_path):
    renderer, path = renderer_for(
        tmp_path, "{% block user %}{{ label_names.append('x') }}{{ text }}{% endblock %}"
    )
    with pytest.raises(HarnessError) as info:
        renderer.render(EXAMPLE)
    assert "SecurityError" in str(info.value)
    assert renderer.spec.label_names == ["negative", "positive"]


# ---------------------------------------------------------------------------------------------
# `harness render`


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120,
    )


def test_render_json_prints_exactly_the_renderer_messages(tmp_path):
    spec_path = write_project(tmp_path)
    prepared = Prepared(load_spec(spec_path))
    result = run_cli("render", str(spec_path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    example = prepared.eval.examples[0]
    assert printed == [
        {"prompt": pp.prompt.name, "example_id": example.id, "messages": prepared.messages(pp, example)}
        for pp in prepared.prompts
    ]


def test_render_prints_each_message_verbatim_without_wrapping(tmp_path):
    spec_path = write_project(tmp_path)
    prepared = Prepared(load_spec(spec_path))
    result = run_cli("render", str(spec_path), "--prompt", "json", "--index", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    example = prepared.eval.examples[0]
    assert example.text == LONG_TEXT
    messages = prepared.messages(prepared.prompts[0], example)
    lines = result.stdout.splitlines()
    assert "prompt json" in lines[0] and "example test:0" in lines[0]
    body = "\n".join(lines[1:])
    for message in messages:
        assert f"{message['role']}\n{message['content']}\n" in body + "\n"
    # The long line arrives whole: no wrapping, no tab expansion, no emoji or markup processing.
    assert f"Review: {LONG_TEXT}" in lines
    assert "bare" not in result.stdout.split("\n", 1)[0]


def test_render_selects_prompt_and_index(tmp_path):
    spec_path = write_project(tmp_path)
    result = run_cli("render", str(spec_path), "--prompt", "bare", "--index", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [printed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed["prompt"] == "bare" and printed["example_id"] == "test:1"
    assert printed["messages"][0]["content"].startswith("Review: dull and far too long\n")


def test_render_body_is_the_request_sent(tmp_path):
    spec_path = write_project(tmp_path, spec_extra="models:\n  - {provider: openai, model: gpt-4o-mini}\n")
    prepared = Prepared(load_spec(spec_path))
    result = run_cli("render", str(spec_path), "--prompt", "json", "--body", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == prepared.messages(prepared.prompts[0], prepared.eval.examples[0])
    assert body["response_format"] == prepared.contract.response_format("json_schema")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--index", "3"], "error: --index 3: the evaluated split has 3 examples (0-2)\n"),
        (["--prompt", "nope"], "error: --prompt nope: no such prompt; the spec has json, bare\n"),
    ],
)
def test_render_bad_flags_exit_2(tmp_path, args, message):
    spec_path = write_project(tmp_path)
    result = run_cli("render", str(spec_path), *args, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, message)


def test_render_template_error_exits_2_with_the_line(tmp_path):
    spec_path = write_project(tmp_path)
    (tmp_path / "prompts" / "label.j2").write_text("{% block user %}\n\n{{ item.txt }}{% endblock %}\n")
    result = run_cli("render", str(spec_path), "--prompt", "bare", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'prompts' / 'label.j2'}:3: UndefinedError:")


def test_render_shipped_spec():
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared datasets not found at {DATA_DIR}")
    result = run_cli("render", "specs/rotten_tomatoes.yaml", "--json", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["prompt"] for p in printed] == [p.name for p in load_spec(ROOT / "specs/rotten_tomatoes.yaml").prompts]
    for p in printed:
        assert [m["role"] for m in p["messages"]] == ["system", "user"]
        assert p["messages"][1]["content"].startswith("Review: ")
