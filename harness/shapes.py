"""Output shapes: the form of a model's answer, one small registered class per shape.

A shape knows the three things the rest of the harness asks about an answer, so no caller switches
on `output.shape`:

* `answer_model()` — the Pydantic model of a valid answer; its JSON schema is what `response_format`
  sends (harness.validate makes it strict-compatible) and what JSON answers are validated against;
* `gold(names)` — the JSON answer a perfect model gives, used for few-shot assistant turns;
* `read(answer)` — a validated answer as (prediction, stated confidence or None); an answer the
  schema accepts but the label set does not raises `ShapeError` (it becomes `schema_error`).

Defining a subclass of `OutputShape` with a `name` registers it, and `output.shape: NAME` in a spec
then selects it: adding a shape is one class in this file plus its test. An import path
`module:Class` instead names a user's Pydantic model (`UserModelShape`).

Class-level facts let the spec check a shape before any model is built: `tasks` (which task types it
answers) and `text_mode` (whether `output.mode: text`, a bare label, can express it).

This module imports nothing else of the project but `harness.errors`: `harness.spec` imports it to
accept and check shape names, and `harness.validate` builds answers from it.
"""

from __future__ import annotations

from pathlib import Path
import re
from abc import ABC, abstractmethod
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from harness.errors import HarnessError

# A user-supplied Pydantic model, imported as `package.module:ClassName`.
IMPORT_PATH_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
_IMPORT_PATH = re.compile(IMPORT_PATH_PATTERN)

# name -> shape class, in definition order (the order error messages and the schema list them).
SHAPES: dict[str, type["OutputShape"]] = {}

Reading = tuple[Any, Optional[float]]  # (prediction, stated confidence)


class ShapeError(ValueError):
    """A schema-valid answer whose content is still wrong (e.g. a label outside the label set)."""


class OutputShape(ABC):
    """One answer shape, bound to a spec's labels (see the module docstring)."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""  # shown after the name in the spec schema's description
    tasks: ClassVar[tuple[str, ...]] = ("single_label",)
    text_mode: ClassVar[bool] = False  # answerable as a bare label (output.mode: text)
    # its answer is a score whose decision threshold `calibration: {method: threshold}` can fit
    fits_threshold: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return  # an intermediate class, not a shape of its own
        if name in SHAPES or _IMPORT_PATH.match(name):
            raise TypeError(f"output shape {name!r} is already registered or looks like `module:Class`")
        SHAPES[name] = cls

    def __init__(self, spec: Any, output: Any = None):
        # `spec` is a harness.spec.Spec (not imported: spec imports this module); `output` the
        # Output this shape answers (a prompt's own, else the spec's).
        self.spec = spec
        self.output = output if output is not None else spec.output
        self.labels: list[str] = spec.label_names
        self.multi = spec.task == "multi_label"

    @classmethod
    def spec_problem(cls, task: str, labels: list[str]) -> str | None:
        """Why this shape cannot answer a spec with this task and these labels, or None."""
        if task in cls.tasks:
            return None
        if task == "multi_label":
            fitting = either(repr(n) for n, c in SHAPES.items() if "multi_label" in c.tasks)
            return f"{cls.name!r} is single-label; multi_label tasks use {fitting}"
        return f"{cls.name!r} needs task: {either(cls.tasks)}"

    @abstractmethod
    def answer_model(self) -> type[BaseModel]:
        """The Pydantic model of a valid answer (named `Answer`: the name shows in the schema)."""

    @abstractmethod
    def gold(self, names: Any) -> dict:
        """The JSON object a perfect model answers for gold `names` (a label, or a list of them)."""

    @abstractmethod
    def read(self, answer: BaseModel) -> Reading:
        """A validated answer as (prediction, stated confidence or None); ShapeError if unusable."""

    def label_probs(self, answer: BaseModel) -> dict[str, float] | None:
        """Every label's probability when the answer states a full distribution, else None."""
        return None

    # -- helpers for subclasses ----------------------------------------------------------------

    def _choice(self) -> Any:
        return Literal[tuple(self.labels)]  # type: ignore[valid-type]

    def _model(self, **fields: Any) -> type[BaseModel]:
        return create_model("Answer", __config__=ConfigDict(extra="forbid"), **fields)

    def _one_label(self, value: Any) -> str:
        if value not in self.labels:
            raise ShapeError(f"label {value!r} is not in the label set")
        return value

    def _label_set(self, values: Any) -> list[str]:
        """The labels in label order, each once; ShapeError naming any outside the label set."""
        values = list(values)
        unknown = [v for v in values if v not in self.labels]
        if unknown:
            raise ShapeError(f"labels not in the label set: {unknown}")
        chosen = set(values)
        return [label for label in self.labels if label in chosen]


# ---------------------------------------------------------------------------------------------
# The built-in shapes


class LabelShape(OutputShape):
    """`{"label": L}`: one label of the label set."""

    name = "label"
    text_mode = True

    def answer_model(self) -> type[BaseModel]:
        return self._model(label=(self._choice(), ...))

    def gold(self, names: Any) -> dict:
        return {"label": names}

    def read(self, answer: BaseModel) -> Reading:
        return self._one_label(answer.label), None


class LabelsShape(OutputShape):
    """`{"labels": [L, ...]}`: the set of labels that apply (multi-label tasks)."""

    name = "labels"
    summary = "multi-label"
    tasks = ("multi_label",)
    text_mode = True

    def answer_model(self) -> type[BaseModel]:
        return self._model(labels=(list[self._choice()], ...))

    def gold(self, names: Any) -> dict:
        return {"labels": names}

    def read(self, answer: BaseModel) -> Reading:
        return self._label_set(answer.labels), None


class LabelConfidenceShape(OutputShape):
    """`{"label": L, "confidence": c}`: a label and the model's own confidence in it, 0-1."""

    name = "label_confidence"
    summary = "a label and a stated confidence 0-1"

    def answer_model(self) -> type[BaseModel]:
        return self._model(label=(self._choice(), ...), confidence=(float, Field(ge=0, le=1)))

    def gold(self, names: Any) -> dict:
        return {"label": names, "confidence": 1.0}

    def read(self, answer: BaseModel) -> Reading:
        return self._one_label(answer.label), answer.confidence


class ScoreShape(OutputShape):
    """`{"score": s}`, 0-1, the probability of labels[1]: labels[1] when s >= the threshold
    (output.threshold, or the one fitted on the validation split), else labels[0] (two labels).
    The score is also the answer's distribution, {labels[0]: 1-s, labels[1]: s}, so its confidence
    (the predicted label's probability) feeds the coverage curves and the confidence figures."""

    name = "score"
    summary = "0-1, thresholded"
    fits_threshold = True

    def __init__(self, spec: Any, output: Any = None):
        super().__init__(spec, output)
        self.threshold = self.output.threshold  # AnswerContract sets a fitted one

    @classmethod
    def spec_problem(cls, task: str, labels: list[str]) -> str | None:
        problem = super().spec_problem(task, labels)
        if problem is None and len(labels) != 2:
            problem = "'score' needs exactly two labels (negative, positive)"
        return problem

    def answer_model(self) -> type[BaseModel]:
        return self._model(score=(float, Field(ge=0, le=1)))

    def gold(self, names: Any) -> dict:
        return {"score": 1.0 if names == self.labels[1] else 0.0}

    def read(self, answer: BaseModel) -> Reading:
        positive = answer.score >= self.threshold
        return (self.labels[1], round(answer.score, 6)) if positive else (self.labels[0], round(1 - answer.score, 6))

    def label_probs(self, answer: BaseModel) -> dict[str, float]:
        return {self.labels[0]: round(1 - answer.score, 6), self.labels[1]: round(answer.score, 6)}


# ---------------------------------------------------------------------------------------------
# A user's Pydantic model


class UserModelShape(OutputShape):
    """`module:Class`: a user's Pydantic model with a `label` (or, multi-label, `labels`) field
    holding the answer; its other fields are asked for and ignored. Not registered by name: any
    import path selects it, and the class is imported when the answer model is first needed."""

    tasks = ("single_label", "multi_label")

    def __init__(self, spec: Any, output: Any = None):
        super().__init__(spec, output)
        self.target = self.output.shape
        self.field = "labels" if self.multi else "label"
        self._cls: type[BaseModel] | None = None

    def answer_model(self) -> type[BaseModel]:
        if self._cls is None:
            self._cls = self._import()
        return self._cls

    def _import(self) -> type[BaseModel]:
        from harness.files import import_object  # next to the spec, the working directory, installed

        spec_path = getattr(self.spec, "path", None)
        folders = [p for p in (spec_path.parent if spec_path else None, Path.cwd()) if p is not None]
        cls = import_object(self.target, folders, f"{spec_path}: output.shape" if spec_path else "output.shape")
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise HarnessError(f"output.shape: {self.target!r} is not a Pydantic model class")
        if self.field not in cls.model_fields:
            raise HarnessError(
                f"output.shape: {self.target!r} needs a `{self.field}` field holding the answer"
            )
        return cls

    def gold(self, names: Any) -> dict:
        return {self.field: names}

    def read(self, answer: BaseModel) -> Reading:
        value = getattr(answer, self.field)
        return (self._label_set(value) if self.multi else self._one_label(value)), None


# ---------------------------------------------------------------------------------------------
# Looking shapes up


def shape_class(name: str) -> type[OutputShape]:
    """The class of `output.shape: name` (a registered name or a `module:Class` import path)."""
    if name in SHAPES:
        return SHAPES[name]
    if _IMPORT_PATH.match(name):
        return UserModelShape
    raise HarnessError(f"output.shape: unknown shape {name!r}; {_allowed()}")


def shape_for(spec: Any, output: Any = None) -> OutputShape:
    """The shape object of an output (default the spec's), bound to the spec's labels."""
    output = output if output is not None else spec.output
    return shape_class(output.shape)(spec, output)


def text_mode_shapes() -> list[str]:
    return [name for name, cls in SHAPES.items() if cls.text_mode]


def either(words: Any) -> str:
    """'a', 'a or b', 'a, b or c'."""
    words = list(words)
    return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"


def _allowed() -> str:
    return f"must be {', '.join(SHAPES)} or an import path `module:Class`"


def _check_name(value: str) -> str:
    if value in SHAPES or _IMPORT_PATH.match(value):
        return value
    raise ValueError(_allowed())


class _ShapeNameSchema:
    """The JSON schema of `output.shape`, built when the schema is asked for, so it lists every
    registered shape."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict:
        described = [f"{name} ({cls.summary})" if cls.summary else name for name, cls in SHAPES.items()]
        return {
            "anyOf": [
                {"enum": list(SHAPES), "type": "string"},
                {"pattern": IMPORT_PATH_PATTERN, "type": "string"},
            ],
            "description": " | ".join(described)
            + " | `module:Class` (a Pydantic model with a `label` or `labels` field).",
        }


# The type of `output.shape` in the spec: a registered shape name or an import path.
ShapeName = Annotated[str, AfterValidator(_check_name), _ShapeNameSchema()]
