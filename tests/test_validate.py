"""Output validation: every way an answer is judged (harness/validate.py), shape by shape and mode by
mode. Each example ends in exactly one outcome from records.OUTCOMES."""

from __future__ import annotations

import json
import textwrap

import pytest

from harness.errors import HarnessError
from harness.records import OUTCOMES
from harness.spec import parse_spec
from harness.validate import AnswerContract, Verdict


def contract(
    labels=("negative", "positive"), shape="label", task="single_label", mode="json_schema", **output
) -> AnswerContract:
    extra = "".join(f"  {k}: {v}\n" for k, v in output.items())
    text = (
        "name: t\n"
        f"task: {task}\n"
        "dataset: {source: data.jsonl}\n"
        "labels: [" + ", ".join("{name: %s}" % json.dumps(n) for n in labels) + "]\n"
        "prompts: [{name: p, template: t.j2}]\n"
        f"output:\n  shape: {shape}\n  mode: {mode}\n{extra}"
    )
    return AnswerContract(parse_spec(text))


@pytest.fixture
def single() -> AnswerContract:
    return contract()


def check(verdict: Verdict, outcome: str, prediction=None, parsed_from=None) -> Verdict:
    assert verdict.outcome in OUTCOMES
    assert (verdict.outcome, verdict.prediction, verdict.parsed_from) == (outcome, prediction, parsed_from), verdict
    if outcome == "valid":
        assert verdict.error is None
    else:
        assert verdict.error  # every failure says why
    return verdict


# ---------------------------------------------------------------------------------------------
# JSON modes: valid, and how it was read


@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
def test_whole_json(single, mode):
    check(single.judge('{"label": "positive"}', mode), "valid", "positive", "whole")
    check(single.judge('  {\n    "label": "negative"\n}\n', mode), "valid", "negative", "whole")


def test_fenced_json(single):
    text = 'Here is my answer:\n```json\n{"label": "negative"}\n```\nThanks.'
    check(single.judge(text, "json_object"), "valid", "negative", "fence")
    check(single.judge('```\n{"label": "positive"}\n```', "json_object"), "valid", "positive", "fence")


def test_first_decodable_object_in_prose(single):
    text = 'Sure! The answer is {"label": "positive"} and I am confident.'
    check(single.judge(text, "json_object"), "valid", "positive", "scan")


def test_scan_skips_objects_that_do_not_validate(single):
    text = 'Thinking {"mood": "good"} ... final: {"label": "negative"}'
    check(single.judge(text, "json_object"), "valid", "negative", "scan")


def test_an_object_nested_in_a_wrong_answer_is_not_the_answer(single):
    # The whole text is JSON, so it is judged as a whole; the scan never looks inside it.
    text = '{"label": "neutral", "x": {"label": "positive"}}'
    check(single.judge(text, "json_object"), "schema_error")
    # Nor inside a top-level object found in prose.
    text = 'Answer: {"verdict": {"label": "positive"}} (see above)'
    check(single.judge(text, "json_object"), "schema_error")


def test_punctuation_labels_do_not_match_an_empty_answer():
    signs = contract(labels=("+", "-"))
    check(signs.judge("", "text"), "schema_error")
    check(signs.judge("...", "text"), "schema_error")
    check(signs.judge("+", "text"), "valid", "+", "label")


def test_think_block_is_stripped_before_parsing(single):
    text = '<think>maybe {"label": "negative"}? no.</think>\n{"label": "positive"}'
    check(single.judge(text, "json_schema"), "valid", "positive", "whole")
    check(single.judge("<think>\nhmm, negative?\n</think>positive", "text"), "valid", "positive", "label")


# ---------------------------------------------------------------------------------------------
# JSON modes: invalid_json and schema_error


@pytest.mark.parametrize(
    "text",
    [
        "positive",
        "The sentiment of this review is positive.",
        "Label: positive",
        '{"label": "positive"',  # cut before the closing brace
        "",
        None,
    ],
)
def test_no_json_is_invalid_json_even_with_a_bare_label(single, text):
    check(single.judge(text, "json_schema"), "invalid_json")
    check(single.judge(text, "json_object"), "invalid_json")


def test_label_outside_the_set_is_schema_error(single):
    verdict = check(single.judge('{"label": "neutral"}', "json_schema"), "schema_error")
    assert verdict.error.startswith("label: Input should be 'negative' or 'positive'")


def test_extra_field_is_schema_error(single):
    verdict = check(single.judge('{"label": "positive", "reason": "good"}', "json_schema"), "schema_error")
    assert "reason: Extra inputs are not permitted" in verdict.error


def test_wrong_type_is_schema_error(single):
    check(single.judge('{"label": 1}', "json_schema"), "schema_error")
    check(single.judge('{"label": ["positive"]}', "json_schema"), "schema_error")
    check(single.judge('"positive"', "json_schema"), "schema_error")  # JSON, but not an object


def test_missing_field_is_schema_error(single):
    verdict = check(single.judge('{"answer": "positive"}', "json_object"), "schema_error")
    assert "label: Field required" in verdict.error


def test_labels_are_case_sensitive_in_json(single):
    check(single.judge('{"label": "Positive"}', "json_schema"), "schema_error")


# ---------------------------------------------------------------------------------------------
# refusal, truncated, api_error


def test_refusal_field_wins_over_the_text(single):
    verdict = check(
        single.judge('{"label": "positive"}', "json_schema", refusal="I can't help with that."),
        "refusal",
    )
    assert verdict.error == "I can't help with that."


def test_content_filter_is_a_refusal(single):
    verdict = check(single.judge(None, "json_schema", finish_reason="content_filter"), "refusal")
    assert verdict.error == "content filter"
    check(single.judge("positive", "text", finish_reason="content_filter"), "refusal")


def test_length_in_json_mode_is_truncated_even_when_the_text_parses(single):
    check(single.judge('{"label": "pos', "json_schema", finish_reason="length"), "truncated")
    verdict = check(single.judge('{"label": "positive"}', "json_schema", finish_reason="length"), "truncated")
    assert "finish_reason=length" in verdict.error
    check(single.judge('{"label": "positive"}', "json_object", finish_reason="length"), "truncated")


def test_length_in_text_mode_keeps_a_readable_label(single):
    check(single.judge("positive", "text", finish_reason="length"), "valid", "positive", "label")
    check(single.judge("Positive. The acting", "text", finish_reason="length"), "valid", "positive", "normalized")
    check(single.judge("The review is about", "text", finish_reason="length"), "truncated")


def test_api_error_wins_over_everything(single):
    verdict = check(
        single.judge(None, "json_schema", error="APIConnectionError: Connection refused", refusal="no"),
        "api_error",
    )
    assert verdict.error == "APIConnectionError: Connection refused"


def test_stop_is_not_truncated(single):
    check(single.judge('{"label": "positive"}', "json_schema", finish_reason="stop"), "valid", "positive", "whole")


# ---------------------------------------------------------------------------------------------
# text mode


@pytest.mark.parametrize(
    "text, prediction, how",
    [
        ("positive", "positive", "label"),
        ("  negative\n", "negative", "label"),  # surrounding whitespace is not an answer
        ("Positive", "positive", "normalized"),
        ("NEGATIVE.", "negative", "normalized"),
        ("**positive**", "positive", "normalized"),
        ("Sentiment: negative", "negative", "normalized"),
        ("I think the review is positive!", "positive", "normalized"),
    ],
)
def test_text_mode_reads_a_label(single, text, prediction, how):
    check(single.judge(text, "text"), "valid", prediction, how)


@pytest.mark.parametrize(
    "text, error",
    [
        ("neutral", "the answer is not one of the labels"),
        ("positively charming", "the answer is not one of the labels"),  # words, not substrings
        ("", "the answer is not one of the labels"),
        ("positive or negative", "the answer names several labels: negative, positive"),
    ],
)
def test_text_mode_outside_the_label_set_is_schema_error(single, text, error):
    verdict = check(single.judge(text, "text"), "schema_error")
    assert verdict.error == error


def test_text_mode_prefers_the_longest_label():
    c = contract(labels=("positive", "very positive", "negative"))
    check(c.judge("very positive", "text"), "valid", "very positive", "label")
    check(c.judge("I'd say: Very Positive.", "text"), "valid", "very positive", "normalized")
    check(c.judge("I'd say positive.", "text"), "valid", "positive", "normalized")


# ---------------------------------------------------------------------------------------------
# multi-label


@pytest.fixture
def multi() -> AnswerContract:
    return contract(labels=("joy", "anger", "fear"), shape="labels", task="multi_label")


def test_multi_label_json(multi):
    # Returned in label-set order, without repeats.
    check(multi.judge('{"labels": ["fear", "joy", "fear"]}', "json_schema"), "valid", ["joy", "fear"], "whole")
    check(multi.judge('{"labels": []}', "json_schema"), "valid", [], "whole")
    check(multi.judge('{"labels": ["joy", "love"]}', "json_schema"), "schema_error")
    check(multi.judge('{"labels": "joy"}', "json_schema"), "schema_error")
    check(multi.judge('{"label": "joy"}', "json_schema"), "schema_error")
    check(multi.judge("joy, fear", "json_schema"), "invalid_json")


def test_multi_label_text(multi):
    check(multi.judge("anger, joy", "text"), "valid", ["joy", "anger"], "label")
    check(multi.judge("Fear;\nJoy.", "text"), "valid", ["joy", "fear"], "normalized")
    check(multi.judge("joy, love", "text"), "schema_error")
    check(multi.judge("", "text"), "schema_error")


def test_multi_label_gold_answer(multi):
    assert json.loads(multi.gold_answer(("joy", "fear"), "json_schema")) == {"labels": ["joy", "fear"]}
    assert multi.gold_answer(("joy", "fear"), "text") == "joy, fear"


# ---------------------------------------------------------------------------------------------
# label + confidence, and a thresholded score


def test_label_confidence():
    c = contract(shape="label_confidence")
    verdict = check(c.judge('{"label": "positive", "confidence": 0.8}', "json_schema"), "valid", "positive", "whole")
    assert verdict.confidence == 0.8
    check(c.judge('{"label": "positive", "confidence": 1.5}', "json_schema"), "schema_error")
    check(c.judge('{"label": "positive"}', "json_schema"), "schema_error")
    check(c.judge('{"label": "meh", "confidence": 0.5}', "json_schema"), "schema_error")


def test_plain_label_shape_records_no_confidence(single):
    assert single.judge('{"label": "positive"}', "json_schema").confidence is None


@pytest.mark.parametrize(
    "score, prediction", [(0.0, "negative"), (0.69, "negative"), (0.7, "positive"), (1, "positive")]
)
def test_score_with_threshold(score, prediction):
    c = contract(shape="score", threshold=0.7)
    check(c.judge(json.dumps({"score": score}), "json_schema"), "valid", prediction, "whole")


def test_score_out_of_range_or_missing_is_schema_error():
    c = contract(shape="score")
    check(c.judge('{"score": 1.2}', "json_schema"), "schema_error")
    check(c.judge('{"score": -0.1}', "json_schema"), "schema_error")
    check(c.judge('{"label": "positive"}', "json_schema"), "schema_error")


def test_score_default_threshold_is_one_half():
    c = contract(shape="score")
    check(c.judge('{"score": 0.5}', "json_schema"), "valid", "positive", "whole")
    check(c.judge('{"score": 0.49}', "json_schema"), "valid", "negative", "whole")


# ---------------------------------------------------------------------------------------------
# a user model `module:Class`


USER_MODULE = textwrap.dedent(
    """
    from typing import Literal
    from pydantic import BaseModel, ConfigDict, Field

    class Evidence(BaseModel):
        quote: str
        weight: float = 1.0

    class Answer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        reasoning: str = Field("", max_length=200)
        evidence: list[Evidence] = []
        label: Literal["negative", "positive"]

    class Loose(BaseModel):
        label: str

    class Tags(BaseModel):
        labels: list[str]

    class NoLabel(BaseModel):
        verdict: str

    NOT_A_MODEL = 3
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"user_answers_{tmp_path.name.replace('-', '_')}"  # fresh module for each test
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_user_model_validates_answers(user_module):
    c = contract(shape=f"{user_module}:Answer")
    text = '{"reasoning": "loved it", "evidence": [{"quote": "great", "weight": 0.5}], "label": "positive"}'
    check(c.judge(text, "json_schema"), "valid", "positive", "whole")
    check(c.judge('Answer: {"label": "negative"}', "json_object"), "valid", "negative", "scan")
    check(c.judge('{"label": "negative", "mood": "x"}', "json_schema"), "schema_error")
    check(c.judge('{"label": "negative", "reasoning": "' + "x" * 300 + '"}', "json_schema"), "schema_error")


def test_user_model_schema_is_made_strict(user_module):
    schema = contract(shape=f"{user_module}:Answer").json_schema()
    assert schema["required"] == ["reasoning", "evidence", "label"]
    assert schema["additionalProperties"] is False
    nested = schema["$defs"]["Evidence"]
    assert nested["required"] == ["quote", "weight"] and nested["additionalProperties"] is False
    assert "default" not in json.dumps(schema)


def test_user_model_label_outside_the_set_is_schema_error(user_module):
    c = contract(shape=f"{user_module}:Loose")
    check(c.judge('{"label": "positive"}', "json_schema"), "valid", "positive", "whole")
    verdict = check(c.judge('{"label": "great"}', "json_schema"), "schema_error")
    assert verdict.error == "label 'great' is not in the label set"


def test_user_multi_label_model(user_module):
    c = contract(labels=("joy", "anger"), shape=f"{user_module}:Tags", task="multi_label")
    check(c.judge('{"labels": ["anger", "joy"]}', "json_schema"), "valid", ["joy", "anger"], "whole")
    check(c.judge('{"labels": ["joy", "bliss"]}', "json_schema"), "schema_error")


@pytest.mark.parametrize(
    "target, message",
    [
        ("{mod}:NoLabel", "needs a `label` field holding the answer"),
        ("{mod}:NOT_A_MODEL", "is not a Pydantic model class"),
        ("{mod}:Missing", "cannot import"),
        ("no_such_module_xyz:Answer", "cannot import 'no_such_module_xyz:Answer'"),
    ],
)
def test_bad_user_model_is_a_harness_error(user_module, target, message):
    with pytest.raises(HarnessError) as info:
        contract(shape=target.format(mod=user_module))
    assert str(info.value).startswith("output.shape: ")
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------
# The schema sent to providers


@pytest.mark.parametrize("shape", ["label", "label_confidence", "score"])
def test_builtin_schemas_are_strict_compatible(shape):
    schema = contract(shape=shape).json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(schema["properties"])
    assert "default" not in json.dumps(schema)


def test_label_schema_enumerates_the_labels(single):
    assert single.json_schema()["properties"]["label"]["enum"] == ["negative", "positive"]


def test_multi_label_schema(multi):
    schema = multi.json_schema()
    assert schema["required"] == ["labels"] and schema["additionalProperties"] is False
    assert schema["properties"]["labels"]["items"]["enum"] == ["joy", "anger", "fear"]


def test_response_format_per_mode(single):
    assert single.response_format("json_schema") == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": single.json_schema(), "strict": True},
    }
    assert single.response_format("json_object") == {"type": "json_object"}
    assert single.response_format("text") is None
    relaxed = contract(strict="false")
    assert relaxed.response_format("json_schema")["json_schema"]["strict"] is False


def test_schema_validates_what_judge_accepts(single):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(single.json_schema())
    assert validator.is_valid({"label": "positive"})
    assert not validator.is_valid({"label": "neutral"})
    assert not validator.is_valid({"label": "positive", "x": 1})
    assert not validator.is_valid({})


# ---------------------------------------------------------------------------------------------
# gold answers (the few-shot assistant turns) are valid answers


@pytest.mark.parametrize(
    "shape, mode",
    [
        ("label", "json_schema"), ("label", "json_object"), ("label", "text"),
        ("label_confidence", "json_schema"), ("label_confidence", "json_object"),
        ("score", "json_schema"), ("score", "json_object"),
    ],  # text mode answers a bare label only: the spec refuses it with the other shapes
)
def test_gold_answer_round_trips_as_valid(shape, mode):
    c = contract(shape=shape, mode=mode)
    for gold in ("negative", "positive"):
        verdict = c.judge(c.gold_answer(gold, mode), mode, finish_reason="stop")
        assert (verdict.outcome, verdict.prediction) == ("valid", gold)
        assert verdict.parsed_from == ("label" if mode == "text" else "whole")


@pytest.mark.parametrize("mode", ["json_schema", "text"])
def test_multi_label_gold_answer_round_trips(multi, mode):
    for gold in (("joy",), ("anger", "fear"), ("joy", "anger", "fear")):
        verdict = multi.judge(multi.gold_answer(gold, mode), mode)
        assert (verdict.outcome, verdict.prediction) == ("valid", list(gold))


def test_gold_answer_round_trips_through_a_user_model(user_module):
    c = contract(shape=f"{user_module}:Answer")
    verdict = c.judge(c.gold_answer("negative", "json_schema"), "json_schema")
    assert (verdict.outcome, verdict.prediction) == ("valid", "negative")


def test_labels_with_spaces_and_unicode_round_trip():
    c = contract(labels=("très bien", "not good"))
    for mode in ("json_schema", "text"):
        verdict = c.judge(c.gold_answer("très bien", mode), mode)
        assert (verdict.outcome, verdict.prediction) == ("valid", "très bien")
    check(c.judge("Très bien!", "text"), "valid", "très bien", "normalized")
