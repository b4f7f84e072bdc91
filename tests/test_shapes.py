"""Output shapes are registered classes (harness.shapes): a spec names one, and the spec checks,
the answer schema, the few-shot gold answer and the reading of an answer all come from it. A shape
defined here, in the test, works end to end without touching any other module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from harness import shapes
from harness.errors import HarnessError, SpecError
from harness.shapes import SHAPES, OutputShape, ShapeError, shape_class
from harness.spec import json_schema, parse_spec
from harness.validate import AnswerContract

SPEC = """name: t
task: {task}
dataset: {{source: d.jsonl}}
labels: [{{name: negative}}, {{name: positive}}, {{name: neutral}}]
prompts: [{{name: p, template: t.j2}}]
output: {{shape: {shape}, mode: {mode}}}
"""


def spec(shape: str, mode: str = "json_schema", task: str = "single_label"):
    return parse_spec(SPEC.format(shape=shape, mode=mode, task=task), "s.yaml")


def spec_error(shape: str, mode: str = "json_schema", task: str = "single_label") -> str:
    with pytest.raises(SpecError) as info:
        spec(shape, mode, task)
    return str(info.value)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry: shapes defined in a test vanish with it."""
    monkeypatch.setattr(shapes, "SHAPES", dict(SHAPES))
    return shapes.SHAPES


@pytest.fixture
def toy_rationale(registry):
    """A toy shape: the model explains itself before answering, `{"rationale": ..., "label": L}`."""

    class ToyRationale(OutputShape):
        name = "toy_rationale"
        summary = "a rationale, then a label"

        def answer_model(self) -> type[BaseModel]:
            return self._model(rationale=(str, ...), label=(self._choice(), ...))

        def gold(self, names: Any) -> dict:
            return {"rationale": "", "label": names}

        def read(self, answer: BaseModel):
            if not answer.rationale.strip():
                raise ShapeError("the rationale is empty")
            return self._one_label(answer.label), None

    return ToyRationale


# ---------------------------------------------------------------------------------------------
# Unknown shapes


def test_unknown_shape_is_a_spec_error_listing_the_registered_shapes():
    assert spec_error("labl") == (
        "s.yaml:6: output.shape: must be label, labels, label_confidence, score or an import path "
        "`module:Class`"
    )


def test_unknown_shape_name_outside_a_spec_is_a_harness_error():
    with pytest.raises(HarnessError, match="unknown shape 'labl'; must be label, labels"):
        shape_class("labl")


def test_a_shape_name_cannot_be_registered_twice(registry):
    with pytest.raises(TypeError, match="'label' is already registered"):
        class Again(OutputShape):  # noqa: F841
            name = "label"


def test_registered_shape_classes_are_looked_up_by_name():
    assert [SHAPES[n].name for n in ("label", "labels", "label_confidence", "score")] == [
        "label", "labels", "label_confidence", "score"]
    assert shape_class("pkg.mod:Answer") is shapes.UserModelShape


# ---------------------------------------------------------------------------------------------
# A new shape, registered in the test


def test_a_new_shape_is_accepted_by_the_spec_and_listed_in_errors_and_schema(toy_rationale):
    assert spec("toy_rationale").output.shape == "toy_rationale"
    assert ", toy_rationale or an import path `module:Class`" in spec_error("nope")
    schema = json_schema()["$defs"]["Output"]["properties"]["shape"]
    assert "toy_rationale" in schema["anyOf"][0]["enum"]
    assert "toy_rationale (a rationale, then a label)" in schema["description"]


def test_a_new_shape_drives_the_request_schema_gold_answer_and_reading(toy_rationale):
    contract = AnswerContract(spec("toy_rationale"))
    fmt = contract.response_format("json_schema")
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["rationale", "label"] and schema["additionalProperties"] is False
    assert schema["properties"]["label"]["enum"] == ["negative", "positive", "neutral"]
    assert json.loads(contract.gold_answer("neutral", "json_schema")) == {"rationale": "", "label": "neutral"}

    verdict = contract.judge('{"rationale": "it says great", "label": "positive"}', "json_schema")
    assert (verdict.outcome, verdict.prediction, verdict.confidence) == ("valid", "positive", None)
    assert contract.judge('{"rationale": " ", "label": "positive"}', "json_schema").error == "the rationale is empty"
    assert contract.judge('{"label": "positive"}', "json_schema").outcome == "schema_error"


def test_a_new_shape_gets_the_spec_checks_its_class_declares(toy_rationale):
    # Single-label only (the default `tasks`), and not answerable as a bare label.
    assert "output.shape: 'toy_rationale' is single-label; multi_label tasks use 'labels'" in spec_error(
        "toy_rationale", task="multi_label")
    assert ("output.mode: prompt 'p': mode 'text' answers a bare label, which fits output.shape "
            "'label' or 'labels', not 'toy_rationale'") in spec_error("toy_rationale", mode="text")


def test_a_text_mode_shape_joins_the_text_mode_message(registry):
    class Plain(OutputShape):
        name = "plain"
        text_mode = True

        def answer_model(self):
            return self._model(label=(self._choice(), ...))

        def gold(self, names):
            return {"label": names}

        def read(self, answer):
            return answer.label, None

    assert spec("plain", mode="text").output.shape == "plain"
    assert ("fits output.shape 'label', 'labels' or 'plain', not 'label_confidence'"
            in spec_error("label_confidence", mode="text"))


# ---------------------------------------------------------------------------------------------
# Built-in shapes keep their behaviour


@pytest.mark.parametrize("shape, task", [
    ("label", "single_label"), ("label_confidence", "single_label"), ("labels", "multi_label"),
])
def test_every_built_in_gold_answer_reads_back_as_the_gold(shape, task):
    contract = AnswerContract(spec(shape, task=task))
    gold = ["negative", "neutral"] if task == "multi_label" else "neutral"
    verdict = contract.judge(contract.gold_answer(gold, "json_schema"), "json_schema")
    assert (verdict.outcome, verdict.prediction) == ("valid", gold)


def test_score_needs_two_labels_from_its_own_class():
    assert "output.shape: 'score' needs exactly two labels (negative, positive)" in spec_error("score")


def test_labels_needs_a_multi_label_task():
    assert "output.shape: 'labels' needs task: multi_label" in spec_error("labels")
