"""The task spec: strict Pydantic models loaded from YAML, with errors located by file and line.

A spec names a dataset, its labels, one or more prompt templates, the output shape the model must
answer in, the models to call and the baselines to compare with. `load_spec()` turns any mistake into
a `SpecError` whose lines read `file:line: field: what is wrong, what is allowed`.
"""

from __future__ import annotations

import difflib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from harness.baselines.base import Baseline, spec_entry_type  # noqa: F401  (Baseline: for type hints)
from harness.errors import FieldProblem, SpecError
from harness.hierarchy import Hierarchy, Level, check_levels
from harness.metrics.row import CHECKABLE
from harness.shapes import ShapeName, either, shape_class, text_mode_shapes

TaskType = Literal["single_label", "multi_label"]
OutputMode = Literal["json_schema", "json_object", "text"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=80)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Label(_Strict):
    name: str = Field(min_length=1, description="Label name as the model must answer it.")
    description: str | None = Field(None, description="Shown to templates and zero-shot baselines.")


class Dataset(_Strict):
    source: str = Field(
        description="A hub id (`owner/name`) or a local JSONL/CSV/parquet file or folder. Hub ids "
        "resolve through HARNESS_DATA_DIR when it is set, else through the Hugging Face hub."
    )
    config: str | None = Field(None, description="Hub config name (e.g. `simplified`).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    split: str = Field("test", description="The split that is evaluated.")
    train_split: str | None = Field(
        "train", description="Split for few-shot examples and trained baselines; null for none."
    )
    validation_split: str | None = Field(
        None, description="Split for tuning baseline thresholds (multi-label) and fitting the "
        "calibration of label-likelihood prompts."
    )
    text_field: str | list[str] = Field(
        "text", description="Field holding the input text, or several joined by `text_separator`."
    )
    text_separator: str = " "
    label_field: str = Field("label", description="Field holding the gold label(s).")
    label_map: dict[Union[int, str], str] | None = Field(
        None,
        description="Stored label value -> label name. Without it, integers index the `labels` "
        "list and strings must be label names.",
    )
    limit: int | None = Field(
        None, ge=1, description="Evaluate a seeded, label-stratified sample of this many rows."
    )
    keep_single_labels: bool = Field(
        False, description="single_label task on a label field of lists (e.g. go_emotions): use "
        "only the rows that carry exactly one label (in every split); the others are left out.",
    )
    seed: int = Field(0, description="Seed for the `limit` sample.")

    @property
    def text_fields(self) -> list[str]:
        return [self.text_field] if isinstance(self.text_field, str) else list(self.text_field)


class FewShot(_Strict):
    k: int = Field(0, ge=0, le=64, description="Few-shot examples per prompt, label-stratified.")
    seed: int = 0
    split: str | None = Field(None, description="Split to draw from; default: dataset.train_split.")


AnswerMethod = Literal["generate", "label_likelihood"]
CalibrationMethod = Literal["none", "threshold", "contextual", "temperature", "platt"]
# Providers whose API returns no token logprobs: `answer: label_likelihood` cannot run on them.
# (Kept here, not read from the provider classes, because the spec is validated before providers
# are imported; tests/test_likelihood.py checks it against `Provider.supports_logprobs`.)
NO_LOGPROBS_PROVIDERS: dict[str, str] = {
    "groq": "Groq rejects logprobs/top_logprobs with HTTP 400",
}


class Calibration(_Strict):
    """How a label-likelihood prompt's probabilities are recalibrated (harness.calibration).

    Fitted on `dataset.validation_split` (never on the evaluated split), applied to the evaluated
    split; the fitted parameters go into metrics.json (`calibration_fit`) and report.md."""

    method: CalibrationMethod = Field(
        "none",
        description="none | threshold (per-class log-bias, binary: a decision threshold, maximising "
        "`metric`) | contextual (Zhao et al. 2021: divide out the probabilities of content-free "
        "inputs) | temperature (one temperature, argmax unchanged) | platt (scale + per-class bias, "
        "fitted by NLL).",
    )
    metric: Literal["accuracy", "macro_f1"] = Field(
        "accuracy", description="What `threshold` maximises on the validation split."
    )
    validation_limit: int | None = Field(
        200, ge=2, description="A seeded, label-stratified sample of the validation split (like "
        "dataset.limit); null: the whole split.",
    )
    content_free: list[str] = Field(
        default_factory=lambda: ["N/A", "", "[MASK]"],
        description="`contextual`: the inputs rendered through the prompt's template in place of "
        "the text.",
    )


class Output(_Strict):
    # A registered shape name or `module:Class`; the schema's description lists the shapes.
    shape: ShapeName = "label"
    mode: OutputMode = Field(
        "json_schema",
        description="json_schema: constrained JSON; json_object: any JSON; text: a bare label.",
    )
    strict: bool = Field(True, description="Ask for strict schema adherence where supported.")
    threshold: float = Field(
        0.5, ge=0, le=1, description="For shape `score`: labels[1] when score >= threshold."
    )


class Prompt(_Strict):
    name: Name
    template: str = Field(
        description="Jinja file. Relative paths resolve against the spec's folder, then its parent."
    )
    mode: OutputMode | None = Field(None, description="Overrides output.mode for this prompt.")
    few_shot: FewShot = Field(default_factory=FewShot)
    answer: AnswerMethod = Field(
        "generate",
        description="generate: the model writes its answer, which is validated; label_likelihood: "
        "the probability of every label as the answer's first token(s) (single-label tasks, "
        "providers with logprobs); the prediction is the most probable label.",
    )
    likelihood_max_tokens: int | None = Field(
        1, ge=1, description="label_likelihood: max_tokens of its requests (only the first token "
        "is read). null: the model's max_tokens, which makes the request identical to a generated "
        "answer of the same template in mode text when the model's params ask for logprobs "
        "(top_logprobs 20), so both rows share one request through the cache.",
    )
    calibration: Calibration | None = Field(
        None, description="label_likelihood: recalibrate the label probabilities on "
        "dataset.validation_split; a generated `score` answer: `method: threshold` fits its decision "
        "threshold there instead of output.threshold.",
    )
    strategy: Literal["flat", "top_down"] = Field(
        "flat", description="flat: one request among all labels; top_down (needs `hierarchy`): "
        "the coarsest level first, then level by level among the chosen group's children, one "
        "chained request per level (a group with one child needs none). The template sees "
        "`level` and `parent`.",
    )
    output: Output | None = Field(
        None, description="This prompt's output shape (overrides the spec's `output:` as a whole), "
        "so a label prompt and a 0-1 score prompt share one run and one table.",
    )


class Params(_Strict):
    temperature: float | None = Field(0.0, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(64, ge=1)
    seed: int | None = 0
    stop: list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Server-specific request fields, sent as they are."
    )


class Price(_Strict):
    """USD per million tokens; overrides the built-in table and HARNESS_PRICES (harness.pricing)."""

    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens (reasoning included).")
    cached_input_per_mtok: float | None = Field(
        None, ge=0, description="USD per million cached prompt tokens; default the input price."
    )


class Model(_Strict):
    provider: str = Field(description="openai, groq, vllm, llamacpp, transformers, ...")
    model: str = Field(description="Model id or served name (for llamacpp: a GGUF path or `smollm2`).")
    name: Name | None = Field(None, description="Display name in reports; default provider:model.")
    base_url: str | None = None
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    params: Params = Field(default_factory=Params)
    concurrency: int = Field(
        4, ge=1, le=1024,
        description="Requests in flight for this model: the start and the maximum (HTTP providers halve "
        "it on a 429 and raise it again as requests succeed); --concurrency overrides it.",
    )
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific settings (e.g. server launch args)."
    )
    price: Price | None = Field(
        None, description="Token prices for the cost columns; default: HARNESS_PRICES, then the "
        "built-in table for a few OpenAI/Groq models (may be stale)."
    )
    repeats: int = Field(
        1, ge=1, le=50,
        description="Ask every generated request this many times (self-consistency at temperature > 0): "
        "each repeat is cached on its own (repeat i>0 sends params.seed + i when a seed is set), "
        "scored on its own, and reported as the mean and spread over repeats, per-example "
        "agreement, and a majority-vote row `PROMPT@vote`. Label-likelihood prompts read "
        "probabilities, which sampling does not change: they are asked once.",
    )

    # Where this model was written (the located spec file and its key path), so errors found later
    # (provider options, checked by the provider) still name the file and line; None for --model.
    _origin: tuple[Any, tuple] | None = PrivateAttr(None)

    @property
    def id(self) -> str:
        return self.name or f"{self.provider}:{self.model}"

    @model_validator(mode="after")
    def _url_scheme(self) -> "Model":
        if self.base_url is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.base_url.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _At(("base_url",), f"{self.base_url!r}: expected an http(s) URL such as http://127.0.0.1:8080/v1")
        return self


# A baseline entry is one of the kinds in harness/baselines (each kind's class is its schema),
# chosen by `kind`. `Baseline` is their common base class.
BaselineEntry = spec_entry_type()


# Figures in a run's metrics.json that a check can test: those the row model marks (harness.metrics.row).
CheckMetric = Literal[CHECKABLE]  # type: ignore[valid-type]


class Check(_Strict):
    """A threshold on one figure of every matching model × prompt row (`harness check`)."""

    metric: CheckMetric = Field(description="The figure tested, as named in metrics.json (validity, accuracy, macro_f1, ...).")
    min: float | None = Field(None, description="Fail when the figure is below this.")
    max: float | None = Field(None, description="Fail when the figure is above this.")
    max_drop: float | None = Field(
        None, ge=0,
        description="Fail when the figure fell by more than this from the baseline run "
        "(`--baseline RUN`), in the figure's units: 0.02 is two points of accuracy.",
    )
    model: str | None = Field(None, description="Model id (glob patterns allowed); default every model.")
    prompt: str | None = Field(None, description="Prompt name (glob patterns allowed); default every prompt.")

    @model_validator(mode="after")
    def _has_threshold(self) -> "Check":
        if self.min is None and self.max is None and self.max_drop is None:
            raise ValueError(f"check on {self.metric!r} needs at least one of min, max, max_drop")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"check on {self.metric!r}: min {self.min} is above max {self.max}")
        return self


class CacheSettings(_Strict):
    fixture: str | None = Field(
        None,
        description="JSONL file of recorded responses (`harness cache export`), relative to the "
        "spec's folder. `harness eval --cache replay` answers from it instead of the cache folder, "
        "so CI replays committed responses without any model.",
    )


class SuiteCase(_Strict):
    text: str = Field(min_length=1, description="The input text of the hand-written case.")
    label: Union[str, list[str]] = Field(description="The expected label (a list of labels for multi-label tasks).")


class Suite(_Strict):
    """Hand-written edge cases with expected labels (a behavioural test list), run with the same
    prompts and models as the dataset and reported per suite, outside the main metrics."""

    name: Name
    file: str | None = Field(
        None, description="A .jsonl, .csv or .yaml file of cases with `text` and `label` fields, "
        "relative to the spec's folder."
    )
    cases: list[SuiteCase] | None = Field(None, description="Inline cases: [{text, label}, ...].")

    @model_validator(mode="after")
    def _one_source(self) -> "Suite":
        if (self.file is None) == (self.cases is None):
            raise ValueError(f"suite {self.name!r}: give exactly one of `file` or `cases`")
        if self.cases is not None and not self.cases:
            raise _At(("cases",), f"suite {self.name!r}: `cases` is empty")
        return self


class RunSettings(_Strict):
    max_error_share: float = Field(
        0.05, ge=0, le=1,
        description="A model whose share of api_error answers is above this makes the run incomplete "
        "(exit 4). `harness eval --max-error-share` overrides it.",
    )
    strict: bool = Field(False, description="A model skipped for a missing key makes the run incomplete (exit 4).")


class Execution(_Strict):
    """Where the model requests run (harness.ray_executor): here, or fanned out by Ray Data's LLM
    batch API. Either way the harness renders every request and reads every answer through the
    response cache; `harness eval --executor ray|local` overrides `engine`."""

    engine: Literal["local", "ray"] = Field("local", description="local: this process; ray: a Ray Data pipeline first.")
    backend: Literal["http", "vllm"] = Field(
        "http", description="http: OpenAI-compatible endpoints (HttpRequestProcessorConfig); "
        "vllm: vLLM engines inside Ray (vLLMEngineProcessorConfig; models with provider vllm).",
    )
    address: str | None = Field(
        None, description="ray.init address (`auto`, `ray://head:10001`); default: start a local Ray instance.",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray instance (default: all).")
    replicas: int = Field(1, ge=1, description="http: Ray actors sending requests; vllm: engine replicas.")
    batch_size: int | None = Field(
        None, ge=1, description="Rows per Ray batch; http: also the requests in flight per actor "
        "(default: the model's concurrency, so one replica loads a server as a local run does).",
    )
    base_urls: list[str] = Field(
        default_factory=list,
        description="http: OpenAI-compatible replicas of the model's server to spread requests over "
        "(default: the model's own server; a launched llama-server is started for the pass).",
    )
    qps: int | None = Field(None, ge=1, description="http: at most this many requests per second per actor.")
    gpus_per_replica: float | None = Field(
        None, gt=0, description="vllm: GPUs per engine replica (default tensor x pipeline parallel size; "
        "a fraction packs small models).",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: tensor parallel size per replica.")
    pipeline_parallel_size: int = Field(1, ge=1, description="vllm: pipeline parallel size per replica.")
    accelerator_type: str | None = Field(None, description="vllm: Ray accelerator type (e.g. A100, H100).")
    max_model_len: int | None = Field(None, ge=1, description="vllm: engine max_model_len.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="vllm: more vLLM engine arguments.")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env for the workers (pip, env_vars, ...).")

    @model_validator(mode="after")
    def _per_backend(self) -> "Execution":
        if self.backend != "http":
            for name in ("base_urls", "qps"):
                if getattr(self, name):
                    raise _At((name,), f"is for backend: http, not {self.backend!r}")
        if self.backend != "vllm":
            for name in ("gpus_per_replica", "accelerator_type", "max_model_len", "engine_kwargs"):
                if getattr(self, name):
                    raise _At((name,), f"is for backend: vllm, not {self.backend!r}")
            for name in ("tensor_parallel_size", "pipeline_parallel_size"):
                if getattr(self, name) != 1:
                    raise _At((name,), f"is for backend: vllm, not {self.backend!r}")
        if self.address is not None and self.num_cpus is not None:
            raise _At(("num_cpus",), "sizes a local Ray instance; with `address` the cluster has its own")
        return self


class Spec(_Strict):
    name: Name
    description: str = ""
    task: TaskType = "single_label"
    dataset: Dataset
    labels: list[Label] = Field(min_length=2)
    prompts: list[Prompt] = Field(min_length=1)
    output: Output = Field(default_factory=Output)
    models: list[Model] = Field(default_factory=list)
    baselines: list[BaselineEntry] = Field(default_factory=list)  # type: ignore[valid-type]
    checks: list[Check] = Field(default_factory=list)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    slices: list[str] = Field(
        default_factory=list,
        description="Dataset columns to break accuracy down by in report.html (e.g. a domain or source field).",
    )
    suites: list[Suite] = Field(
        default_factory=list,
        description="Edge-case suites: hand-written cases with expected labels, evaluated with the same "
        "prompts and models and reported per suite (pass rate, failures), outside the main metrics.",
    )
    run: RunSettings = Field(default_factory=RunSettings)
    execution: Execution = Field(default_factory=Execution)
    hierarchy: list[Level] = Field(
        default_factory=list,
        description="Coarser levels above the labels (harness.hierarchy), from the labels upwards: "
        "the first level groups the labels, each next one groups the previous level's groups. "
        "Predictions are scored at every level.",
    )

    _path: Path | None = PrivateAttr(None)
    _lines: dict = PrivateAttr(default_factory=dict)  # key path -> line in the spec file

    @property
    def path(self) -> Path | None:
        return self._path

    def error_at(self, loc: tuple, message: str) -> SpecError:
        """A SpecError at the line of `loc` (its deepest part present in the file), for checks made
        after loading (provider names and options are known only to the providers)."""
        known: tuple = ()
        for part in loc:
            if known + (part,) in self._lines:
                known = known + (part,)
        return SpecError(str(self._path or "<spec>"), [(self._lines.get(known), _dotted(loc), message)])

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def label_hierarchy(self) -> Hierarchy | None:
        """The `hierarchy:` levels as lookups; None for flat labels."""
        return Hierarchy(self.hierarchy, self.label_names) if self.hierarchy else None

    def output_of(self, prompt: Prompt) -> Output:
        """The output a prompt answers in: its own `output:`, else the spec's."""
        return prompt.output or self.output

    def mode_of(self, prompt: Prompt) -> OutputMode:
        # A label-likelihood prompt asks for a bare label (its few-shot answers too).
        if prompt.mode is None and prompt.answer == "label_likelihood":
            return "text"
        return prompt.mode or self.output_of(prompt).mode

    def prompt(self, name: str) -> Prompt:
        for p in self.prompts:
            if p.name == name:
                return p
        raise KeyError(name)

    def resolve_template(self, prompt: Prompt) -> Path:
        """Template paths resolve against the spec's folder, then its parent (the project root)."""
        candidate = Path(prompt.template)
        if candidate.is_absolute():
            return candidate
        base = self._path.parent if self._path else Path.cwd()
        for root in (base, base.parent):
            if (root / candidate).is_file():
                return root / candidate
        return base / candidate

    def resolve_fixture(self) -> Path | None:
        """`cache.fixture` as a path: absolute, or relative to the spec's folder."""
        if not self.cache.fixture:
            return None
        candidate = Path(self.cache.fixture).expanduser()
        if candidate.is_absolute():
            return candidate
        return (self._path.parent if self._path else Path.cwd()) / candidate

    @model_validator(mode="after")
    def _cross_checks(self) -> "Spec":
        _unique([label.name for label in self.labels], "labels", "name", "label names must be unique")
        _unique([p.name for p in self.prompts], "prompts", "name", "prompt names must be unique")
        _unique([m.id for m in self.models], "models", "name", "model ids must be unique (set `name`)")
        shape = self.output.shape
        problem = shape_class(shape).spec_problem(self.task, self.label_names)
        if problem:
            raise _At(("output", "shape"), problem)
        names = set(self.label_names)
        for key, value in (self.dataset.label_map or {}).items():
            if value not in names:
                raise _At(
                    ("dataset", "label_map", key),
                    f"maps {key!r} to {value!r}, which is not in labels ({', '.join(self.label_names)})",
                )
        for i, p in enumerate(self.prompts):
            own = ("prompts", i, "output") if p.output is not None else ("output",)
            shape = self.output_of(p).shape
            if p.output is not None:
                problem = shape_class(shape).spec_problem(self.task, self.label_names)
                if problem:
                    raise _At(own + ("shape",), f"prompt {p.name!r}: {problem}")
            if self.mode_of(p) == "text" and not shape_class(shape).text_mode and p.answer == "generate":
                raise _At(
                    ("prompts", i, "mode") if p.mode else own + ("mode",),
                    f"prompt {p.name!r}: mode 'text' answers a bare label, which fits output.shape "
                    f"{either(map(repr, text_mode_shapes()))}, not {shape!r}",
                )
            _check_answer_method(self, i, p)
            _check_strategy(self, i, p)
            if p.few_shot.k and not (p.few_shot.split or self.dataset.train_split):
                raise _At(("prompts", i, "few_shot"), f"prompt {p.name!r}: few_shot needs dataset.train_split")
        _check_baselines(self)
        check_levels(self.hierarchy, self.label_names)
        if self.dataset.keep_single_labels and self.task != "single_label":
            raise _At(("dataset", "keep_single_labels"), "keeps the rows with one label for a "
                      "single_label task; a multi_label task reads every row's list as it is")
        _unique([s.name for s in self.suites], "suites", "name", "suite names must be unique")
        for i, suite in enumerate(self.suites):
            for j, case in enumerate(suite.cases or []):
                given = [case.label] if isinstance(case.label, str) else case.label
                for value in given:
                    if value not in names:
                        raise _At(("suites", i, "cases", j, "label"),
                                  f"{value!r} is not a label ({', '.join(self.label_names)})")
                if self.task == "single_label" and not isinstance(case.label, str):
                    raise _At(("suites", i, "cases", j, "label"), "single_label tasks expect one label name")
        return self


def _check_answer_method(spec: "Spec", i: int, p: Prompt) -> None:
    """`answer: label_likelihood` needs one label per example, logprobs from every model and, to
    calibrate, a validation split."""
    if p.answer != "label_likelihood":
        if p.calibration is None:
            return
        if not shape_class(spec.output_of(p).shape).fits_threshold:
            raise _At(("prompts", i, "calibration"), f"prompt {p.name!r}: calibration needs "
                      "`answer: label_likelihood` or a generated `score` answer (output.shape: score); "
                      "other generated answers have no label probabilities")
        if p.calibration.method not in ("none", "threshold"):
            raise _At(("prompts", i, "calibration", "method"), f"prompt {p.name!r}: a score answer "
                      f"fits its decision threshold (method: threshold), not {p.calibration.method!r}")
        _check_calibration_split(spec, i, p)
        return
    if spec.task != "single_label":
        raise _At(("prompts", i, "answer"), f"prompt {p.name!r}: label_likelihood scores one label "
                  "per example; it needs task: single_label")
    for j, m in enumerate(spec.models):
        why = NO_LOGPROBS_PROVIDERS.get(m.provider)
        if why:
            raise _At(("models", j, "provider"), f"model {m.id}: prompt {p.name!r} uses "
                      f"answer: label_likelihood, which needs token logprobs; {why}. Use a provider "
                      "with logprobs (openai, vllm, llamacpp, transformers) or answer: generate")
    _check_calibration_split(spec, i, p)


def _check_calibration_split(spec: "Spec", i: int, p: Prompt) -> None:
    """A fitted calibration needs a validation split that is not the evaluated one."""
    method = p.calibration.method if p.calibration is not None else "none"
    if method not in ("none", "contextual") and not spec.dataset.validation_split:
        raise _At(("prompts", i, "calibration", "method"), f"prompt {p.name!r}: calibration "
                  f"{method!r} is fitted on dataset.validation_split, which is not set; add "
                  "`validation_split: validation` (never the evaluated split)")
    if method != "none" and spec.dataset.validation_split == spec.dataset.split:
        raise _At(("dataset", "validation_split"), "calibration must not be fitted on the evaluated "
                  f"split ({spec.dataset.split!r}); name another split")


def _check_strategy(spec: "Spec", i: int, p: Prompt) -> None:
    """`strategy: top_down` walks the hierarchy with one generated label per level."""
    if p.strategy != "top_down":
        return
    why = None
    if not spec.hierarchy:
        why = "needs a `hierarchy:` (the levels to walk down)"
    elif spec.task != "single_label":
        why = "picks one group per level; it needs task: single_label"
    elif p.answer != "generate":
        why = "asks for a generated label at each level; use answer: generate"
    elif p.few_shot.k:
        why = "takes no few_shot examples yet (their answers would have to follow each level)"
    if why:
        raise _At(("prompts", i, "strategy"), f"prompt {p.name!r}: strategy top_down {why}")


def _check_baselines(spec: "Spec") -> None:
    """Baseline fields that depend on the rest of the spec (labels, splits): each kind says."""
    _unique([b.name or b.kind for b in spec.baselines], "baselines", "name",
            "baseline ids must be unique (set `name` on repeated kinds)")
    for i, b in enumerate(spec.baselines):
        for loc, message in b.spec_problems(spec):
            raise _At(("baselines", i) + loc, message)


# A cross-field problem located at a key path, so the error names that field and its line.
_At = FieldProblem


def _unique(values: list[str], field: str, key: str, message: str) -> None:
    seen = {v for v in values if values.count(v) > 1}
    if seen:
        # Point at the first entry that repeats an earlier one.
        first_repeat = next(i for i, v in enumerate(values) if v in values[:i])
        raise _At((field, first_repeat, key), f"{message}; repeated: {', '.join(sorted(seen))}")


# ---------------------------------------------------------------------------------------------
# Loading YAML with line numbers


# Bounds on a spec's YAML, checked while walking the node graph (before anything is expanded):
# aliases share nodes, so a 500-byte file can otherwise stand for billions of values.
MAX_SPEC_BYTES = 1_000_000
MAX_NODES = 50_000
MAX_DEPTH = 40


class _Located:
    """The parsed YAML plus the line of every key path, for pointing errors at lines."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines: dict[tuple, int] = {}
        self.problems: list[tuple[int | None, str, str]] = []
        self._nodes = 0
        self._open: set[int] = set()  # nodes being walked: an alias to one of them is a cycle
        if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
            raise SpecError(path, [(None, "", f"the file is over {MAX_SPEC_BYTES // 1_000_000} MB; a spec is a short YAML file")])
        try:
            # libyaml's parser when PyYAML has it (ten times faster); a file it rejects is parsed
            # again by the pure-Python one, whose messages name what it found ("but got ':'")
            node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            node = None
        try:
            if node is None:
                node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError(path, [(line, "", f"YAML syntax error: {problem}")]) from None
        if node is None:
            raise SpecError(path, [(None, "", "the file is empty; a spec is a YAML mapping")])
        self.data = self._walk(node, ())

    def _bound(self, node: yaml.Node, path: tuple) -> None:
        self._nodes += 1
        line = node.start_mark.line + 1
        if self._nodes > MAX_NODES:
            raise SpecError(self.path, [(line, _dotted(path), f"the spec expands to over {MAX_NODES:,} values "
                                         f"(YAML aliases repeating aliases?); write the values out")])
        if len(path) > MAX_DEPTH:
            raise SpecError(self.path, [(line, _dotted(path[:MAX_DEPTH]), f"nested over {MAX_DEPTH} levels deep")])
        if id(node) in self._open:
            raise SpecError(self.path, [(line, _dotted(path), "a YAML alias refers to a value that contains "
                                         "it (a recursive anchor); write the value out")])

    def _walk(self, node: yaml.Node, path: tuple) -> Any:
        self._bound(node, path)
        # A key keeps its own line: `dataset:` rather than the first line of its block below.
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self._open.add(id(node))
            out: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SpecError(self.path, [(key_node.start_mark.line + 1, _dotted(path),
                                                 "a key must be plain text, not a list or mapping")])
                key = _scalar(key_node)
                if key in out:
                    self.problems.append(
                        (key_node.start_mark.line + 1, _dotted(path + (key,)), "duplicate key")
                    )
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self._walk(value_node, path + (key,))
            self._open.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            self._open.add(id(node))
            items = [self._walk(item, path + (i,)) for i, item in enumerate(node.value)]
            self._open.discard(id(node))
            return items
        try:
            return _scalar(node)
        except yaml.YAMLError as exc:  # e.g. a malformed !!timestamp or an unknown tag
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError(self.path, [(node.start_mark.line + 1, _dotted(path), f"YAML: {problem}")]) from None

    def line_of(self, loc: tuple) -> tuple[int | None, tuple]:
        """Line of the deepest key path in `loc` that exists in the file, and that path."""
        known: tuple = ()
        for part in loc:
            if known + (part,) in self.lines:
                known = known + (part,)
        return self.lines.get(known), known


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Walk(typing.NamedTuple):
    clean: tuple  # the key path in the file (pydantic's union-member tags left out)
    owner: type[BaseModel] | None  # the model whose field the last key is (or would be)
    tagged: tuple | None  # (discriminator, tag, {tag: member}) when the path went through one


def _walk(loc: tuple) -> _Walk:
    """Follow an error's loc through the spec models: for listing a model's allowed fields, and
    dropping the tags pydantic adds for union members ("literal['label',...]", or the `kind` of a
    discriminated union such as a baseline entry)."""
    clean: tuple = ()
    current: Any = Spec
    owner = tagged = None
    for part in loc:
        if isinstance(part, str) and re.search(r"[\[\-]", part):
            continue
        members = _tagged_members(current)
        if isinstance(part, str) and members and part in members[1]:
            tagged = (members[0], part, members[1])
            current = members[1][part]
            continue
        clean += (part,)
        model = _unwrap(current)
        owner = model if isinstance(model, type) and issubclass(model, BaseModel) else None
        if isinstance(part, int):
            origin = typing.get_origin(current)
            current = typing.get_args(current)[0] if origin in (list, tuple) else current
        elif owner is not None:
            field = owner.model_fields.get(part)
            current = field.annotation if field else None
        else:
            current = None
    return _Walk(clean, owner, tagged)


def _tagged_members(annotation: Any) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """(discriminator, {tag: model}) of `Annotated[Union[...], Field(discriminator=...)]`."""
    if typing.get_origin(annotation) is not Annotated:
        return None
    base, *metadata = typing.get_args(annotation)
    key = next((m.discriminator for m in metadata if isinstance(getattr(m, "discriminator", None), str)), None)
    if key is None:
        return None
    members = {}
    for model in typing.get_args(base):
        for tag in typing.get_args(model.model_fields[key].annotation):
            members[tag] = model
    return key, members


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X (so paths walk into containers)."""
    for _ in range(4):
        origin = typing.get_origin(annotation)
        if origin in (list, tuple):
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            models = [
                a for a in typing.get_args(annotation)
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            if len(models) != 1:
                return annotation
            annotation = models[0]
        else:
            return annotation
    return annotation


def _explain(error: dict, located: _Located) -> tuple[int | None, str, str]:
    loc = tuple(p for p in error["loc"] if isinstance(p, (int, str)))
    walk = _walk(loc)
    clean = walk.clean
    kind = error["type"]
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if kind == "value_error" and isinstance(cause, _At):  # a cross-field check names its field
        clean += cause.loc
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # e.g. a baseline's `kind`
        clean += (str(ctx.get("discriminator", "")).strip("'"),)
    line, _ = located.line_of(clean)
    field = _dotted(clean)
    message = error["msg"]
    if kind == "extra_forbidden":
        allowed = sorted(walk.owner.model_fields) if walk.owner else []
        hint = difflib.get_close_matches(str(clean[-1]), allowed, n=1)
        message = "unknown field"
        key, tag, members = walk.tagged or (None, None, {})
        # A field of another member, e.g. another baseline kind's option, says which reads it.
        users = sorted(t for t, model in members.items() if clean[-1] in model.model_fields)
        if users:
            message += f"; it does not apply to {key} {tag!r}, it is read by: {', '.join(users)}."
        elif hint:
            message += f"; did you mean {hint[0]!r}?"
        if allowed:
            message += f" Allowed: {', '.join(allowed)}"
    elif kind == "union_tag_invalid":
        expected = sorted(t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(","))
        hint = difflib.get_close_matches(str(ctx.get("tag")), expected, n=1)
        message = f"unknown {clean[-1]} {ctx.get('tag')!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        message += f" Allowed: {', '.join(expected)}"
    elif kind in ("missing", "union_tag_not_found"):
        message = "required field is missing"
    elif kind == "string_pattern_mismatch":
        message = "must be letters, digits, `_`, `.` or `-` (it names files and report rows)"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    return line, field, message


def parse_spec(text: str, path: str = "<spec>") -> Spec:
    located = _Located(path, text)
    if located.problems:
        raise SpecError(path, located.problems)
    if not isinstance(located.data, dict):
        raise SpecError(path, [(1, "", "a spec is a YAML mapping of fields (name, dataset, ...)")])
    try:
        spec = Spec.model_validate(located.data)
    except ValidationError as exc:
        problems = [_explain(e, located) for e in exc.errors(include_url=False)]
        # A union of literal-or-pattern reports one error per member; keep one per field.
        seen: dict[str, tuple] = {}
        for problem in problems:
            seen.setdefault(problem[1], problem)
        raise SpecError(path, sorted(seen.values(), key=lambda p: (p[0] or 0, p[1]))) from None
    spec._lines = located.lines
    for i, model in enumerate(spec.models):
        model._origin = (located, ("models", i))
    return spec


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(str(path), [(None, "", f"the file is over {MAX_SPEC_BYTES // 1_000_000} MB; a spec is a short YAML file")])
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(str(path), [(None, "", "no such file; pass the path to a spec YAML")]) from None
    except IsADirectoryError:
        raise SpecError(str(path), [(None, "", "is a folder; pass the path to a spec YAML file")]) from None
    except OSError as exc:
        raise SpecError(str(path), [(None, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    from harness.files import decode_utf8

    text = decode_utf8(data, path, "spec")
    spec = parse_spec(text, str(path))
    spec._path = path.resolve()
    return spec


def json_schema() -> dict:
    """The JSON schema of a spec, for `# yaml-language-server: $schema=...` editor completion."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "harness task spec"
    return schema


def options_error(model: Model, exc: ValidationError, options: type[BaseModel]) -> SpecError:
    """A provider's options model rejected `model.options`: `file:line: field: message` lines like
    every other spec mistake (unknown names get a did-you-mean and the allowed list). The one
    formatter for every provider's options."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = ("options",) + tuple(p for p in error["loc"] if isinstance(p, (int, str)))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = sorted(options.model_fields)
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            message = (f"unknown option for provider {model.provider!r}"
                       + (f"; did you mean {hint[0]!r}?" if hint else "") + f" Allowed: {', '.join(allowed)}")
        elif error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append((loc, message))
    return _model_problems(model, problems)


def model_error(model: Model, loc: tuple, message: str) -> SpecError:
    """One problem with a model's field at `loc` (e.g. ("options", "batch")), located like above."""
    return _model_problems(model, [(loc, message)])


def _model_problems(model: Model, problems: list[tuple[tuple, str]]) -> SpecError:
    if model._origin is None:  # a --model flag: no file, name the model instead
        return SpecError(f"model {model.id}", [(None, _dotted(loc), message) for loc, message in problems])
    located, prefix = model._origin
    return SpecError(located.path, [
        (located.line_of(prefix + loc)[0], _dotted(prefix + loc), message) for loc, message in problems
    ])
