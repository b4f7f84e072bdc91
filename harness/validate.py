"""Output validation: the spec's output becomes one Pydantic model that drives both what is asked of
the provider and how its answer is read. Every response ends in exactly one outcome.

Order of judgement: a transport error is `api_error`; a refusal (or content filter) is `refusal`;
then the text is parsed. In the JSON modes an answer cut by the token limit is `truncated` whatever
its text; in `text` mode it is `truncated` only if no label can be read from what arrived (a prompt
engineer may cap a bare-label answer at a few tokens on purpose).

JSON modes read, in order, the whole text, a fenced block, then the first decodable object anywhere
(the first candidate that validates wins). Nothing decodes -> `invalid_json`; something decodes but
does not validate -> `schema_error`. A bare label in prose is not valid in the JSON modes. In `text`
mode the answer must be a label: exactly, or after normalising case, punctuation and surrounding
words (exactly one label named); anything else is `schema_error` (an answer outside the label set).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.shapes import ShapeError, shape_for
from harness.spec import Output, OutputMode, Spec

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_DECODER = json.JSONDecoder()
_NON_WORD = re.compile(r"[^\w]+")


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str
    prediction: Any = None  # label name, or list of names (multi-label), when valid
    parsed_from: str | None = None
    error: str | None = None
    confidence: float | None = None  # a confidence the model stated (e.g. label_confidence shape)
    label_probs: dict[str, float] | None = None  # a distribution the answer states (score shape)


def _normalise(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


class AnswerContract:
    """What a model must answer for a spec, and how its raw text becomes a verdict. The form of a
    JSON answer is the spec's output shape (harness.shapes); this class adds the parsing, the
    outcomes and the bare-label `text` mode, which are the same for every shape."""

    def __init__(self, spec: Spec, output: Output | None = None, *, threshold: float | None = None):
        """The contract of `output` (a prompt's own; default the spec's). `threshold`: a score
        shape's fitted decision threshold in place of output.threshold (it changes how answers
        are read, never what is asked)."""
        self.spec = spec
        self.output = output if output is not None else spec.output
        self.labels = spec.label_names
        self.shape = shape_for(spec, self.output)
        if threshold is not None:
            self.shape.threshold = threshold
        self.multi = spec.task == "multi_label"
        self.model = self.shape.answer_model()
        # Labels made only of punctuation normalise to "": they match exactly or not at all.
        self._normalised = {
            _normalise(label): label for label in self.labels if _normalise(label)
        }
        # Longest first, so "very positive" wins over "positive" inside the same answer.
        self._label_patterns = [
            (label, re.compile(rf"(?<!\w){re.escape(norm)}(?!\w)"))
            for norm, label in sorted(self._normalised.items(), key=lambda kv: -len(kv[0]))
        ]

    # -- the model and schema ------------------------------------------------------------------

    def json_schema(self) -> dict:
        """The schema made strict-compatible: every property required, no extra properties."""
        return _strictify(self.model.model_json_schema())

    def response_format(self, mode: OutputMode) -> dict | None:
        if mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": self.json_schema(),
                    "strict": self.output.strict,
                },
            }
        if mode == "json_object":
            return {"type": "json_object"}
        return None

    def gold_answer(self, gold: Any, mode: OutputMode) -> str:
        """The answer a perfect model gives for `gold`, used for few-shot assistant turns."""
        names = list(gold) if isinstance(gold, (tuple, list)) else gold
        if mode == "text":
            return ", ".join(names) if isinstance(names, list) else names
        return json.dumps(self.shape.gold(names), ensure_ascii=False)

    # -- reading an answer -----------------------------------------------------------------------

    def judge(
        self,
        text: str | None,
        mode: OutputMode,
        *,
        finish_reason: str | None = None,
        refusal: str | None = None,
        error: str | None = None,
    ) -> Verdict:
        if error is not None:
            return Verdict("api_error", error=error)
        if refusal or finish_reason == "content_filter":
            return Verdict("refusal", error=refusal or "content filter")
        text = _THINK.sub("", text or "").strip()
        verdict = self.read_text(text) if mode == "text" else self.read_json(text)
        if finish_reason == "length" and (mode != "text" or verdict.outcome != "valid"):
            return Verdict("truncated", error="stopped at the token limit (finish_reason=length)")
        return verdict

    def read_json(self, text: str) -> Verdict:
        errors: list[str] = []
        decoded_any = False
        for how, obj in _json_candidates(text):
            decoded_any = True
            try:
                answer = self.model.model_validate(obj)
            except ValidationError as exc:
                errors.append(_short_error(exc))
                continue
            return self._valid(answer, how)
        if not decoded_any:
            return Verdict("invalid_json", error="no JSON object found in the answer")
        return Verdict("schema_error", error=errors[0])

    def _valid(self, answer: BaseModel, how: str) -> Verdict:
        try:
            prediction, confidence = self.shape.read(answer)
        except ShapeError as exc:
            return Verdict("schema_error", error=str(exc))
        return Verdict("valid", prediction, how, confidence=confidence, label_probs=self.shape.label_probs(answer))

    def read_text(self, text: str) -> Verdict:
        if self.multi:
            return self._read_label_list(text)
        if text in self.labels:
            return Verdict("valid", text, "label")
        normalised = _normalise(text)
        if normalised in self._normalised:
            return Verdict("valid", self._normalised[normalised], "normalized")
        found = self._labels_named(normalised)
        if len(found) == 1:
            return Verdict("valid", found[0], "normalized")
        if found:
            return Verdict("schema_error", error=f"the answer names several labels: {', '.join(found)}")
        return Verdict("schema_error", error="the answer is not one of the labels")

    def _labels_named(self, normalised: str) -> list[str]:
        found = []
        for label, pattern in self._label_patterns:
            if pattern.search(normalised):
                normalised = pattern.sub(" ", normalised)
                found.append(label)
        return found

    def _read_label_list(self, text: str) -> Verdict:
        pieces = [p for p in re.split(r"[,;\n]+", text) if p.strip()]
        chosen: set[str] = set()
        exact = True
        for piece in pieces:
            piece = piece.strip()
            if piece in self.labels:
                chosen.add(piece)
                continue
            exact = False
            label = self._normalised.get(_normalise(piece))
            if label is None:
                return Verdict("schema_error", error=f"{piece[:60]!r} is not one of the labels")
            chosen.add(label)
        if not chosen:
            return Verdict("schema_error", error="the answer names no label")
        ordered = [label for label in self.labels if label in chosen]
        return Verdict("valid", ordered, "label" if exact else "normalized")


def _json_candidates(text: str):
    """Top-level JSON values only: an answer that is JSON as a whole is judged as a whole, and
    the scan resumes after each decoded value, so an object nested inside a wrong answer (e.g.
    `{"label": "neutral", "x": {"label": "positive"}}`) is never taken for the answer."""
    try:
        yield "whole", json.loads(text)
        return
    except ValueError:
        pass
    for match in _FENCE.finditer(text):
        try:
            yield "fence", json.loads(match.group(1))
        except ValueError:
            pass
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            yield "scan", value
            i = end
        else:
            i += 1


def _short_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _strictify(schema: dict) -> dict:
    """OpenAI strict mode: every object lists all properties as required and forbids others."""
    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: visit(v) for k, v in node.items() if k != "default"}
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node

    return visit(schema)
