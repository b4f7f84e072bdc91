"""Confidence from logprobs: unit cases, SmolLM2 responses recorded from a real llama-server
(tests/wire/llamacpp/smollm2_logprobs.json; the `bytes` arrays were dropped to keep the file small),
and a live llama-server run through the harness."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from openai.types.chat import ChatCompletion

from harness.confidence import label_confidence, label_span
from providers.openai import read_completion

LABELS = ["negative", "positive"]
RECORDED = json.loads((Path(__file__).parent / "wire" / "llamacpp" / "smollm2_logprobs.json").read_text())


def tok(token, logprob, *alternatives):
    return {"token": token, "logprob": logprob,
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives]}


def test_label_span_in_json_and_text():
    assert label_span('{"label": "positive"}', "positive", "json_schema") == (11, 19)
    assert label_span("I think Positive.", "positive", "text") == (8, 16)
    assert label_span('{"label": "neutral"}', "positive", "json_schema") is None


def test_share_among_labels_at_the_distinguishing_token():
    logprobs = [tok('{"label":"', 0.0), tok("pos", math.log(0.6), ("pos", math.log(0.6)), ("neg", math.log(0.3)),
                                            ("x", math.log(0.1))), tok('itive"}', 0.0)]
    text = '{"label":"positive"}'
    assert label_confidence(logprobs, text, "positive", LABELS, "json_schema") == pytest.approx(0.6 / 0.9)


def test_shared_prefixes_move_to_the_first_token_that_differs():
    labels = ["very positive", "very negative", "positive"]
    logprobs = [tok("very", math.log(0.9), ("very", math.log(0.9)), ("pos", math.log(0.1))),
                tok(" negative", math.log(0.5), (" negative", math.log(0.5)), (" positive", math.log(0.25)))]
    assert label_confidence(logprobs, "very negative", "very negative", labels, "text") == pytest.approx(0.5 / 0.75)


def test_a_rival_outside_the_top_list_counts_at_the_smallest_listed_probability():
    logprobs = [tok("positive", math.log(0.5), ("positive", math.log(0.5)), ("The", math.log(0.2)))]
    assert label_confidence(logprobs, "positive", "positive", LABELS, "text") == pytest.approx(0.5 / 0.7)


def test_without_top_logprobs_the_label_tokens_probability():
    logprobs = [{"token": "pos", "logprob": math.log(0.5), "top_logprobs": []},
                {"token": "itive", "logprob": math.log(0.8), "top_logprobs": []}]
    assert label_confidence(logprobs, "positive", "positive", LABELS, "text") == pytest.approx(0.4)


def test_none_when_it_cannot_be_worked_out():
    logprobs = [tok("positive", -0.1, ("positive", -0.1))]
    assert label_confidence(None, "positive", "positive", LABELS, "text") is None
    assert label_confidence(logprobs, "positive!", "positive", LABELS, "text") is None  # tokens do not spell it
    assert label_confidence(logprobs, "positive", ["positive"], LABELS, "text") is None  # multi-label
    assert label_confidence(logprobs, "positive", "neutral", LABELS, "text") is None


@pytest.mark.parametrize("record", RECORDED, ids=lambda r: f"{r['prompt']}-{r['index']}")
def test_recorded_llama_server_responses(record):
    response = read_completion(ChatCompletion.construct(**record["response"]), 0.1)
    mode = "text" if record["prompt"] == "bare_label" else "json_schema"
    label = "negative"
    confidence = label_confidence(response.logprobs, response.text, label, LABELS, mode)
    # recompute by hand at the token that holds the label
    [token] = [t for t in response.logprobs if t["token"].strip().lower() == label]
    fold = str.lower if mode == "text" else str

    prefix = token["token"][: len(token["token"]) - len(token["token"].lstrip())]  # " negative": " "

    def begins(alternative: str, lab: str) -> bool:  # "neg", "negative", 'negative"' all begin "negative"
        t = fold(alternative[len(prefix):]) if alternative.startswith(prefix) else ""
        return bool(t) and (lab.startswith(t) or t.startswith(lab))

    mass = {lab: sum(math.exp(a["logprob"]) for a in token["top_logprobs"] if begins(a["token"], lab))
            for lab in LABELS}
    if mass["positive"] == 0:
        mass["positive"] = min(math.exp(a["logprob"]) for a in token["top_logprobs"])
    assert confidence == pytest.approx(mass[label] / (mass["negative"] + mass["positive"]), abs=1e-6)
    assert 0.5 < confidence < 1


@pytest.mark.server
@pytest.mark.slow
def test_live_llama_server_as_an_openai_compatible_server(tmp_path, monkeypatch):
    """The `openai` provider pointed at a real llama-server by a bare base URL (no /v1, no key):
    requests get max_tokens and logprobs, and valid predictions carry a logprob confidence."""
    from harness.records import read_predictions
    from harness.runner import run_eval
    from harness.spec import Model, Params, load_spec
    from providers.launcher import ManagedServer, free_port
    from providers.llamacpp import bundled_gguf, llama_server_binary

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    port = free_port()
    server = ManagedServer(
        [llama_server_binary(), "-m", str(bundled_gguf("smollm2")), "--host", "127.0.0.1", "--port", str(port),
         "-t", "2", "-np", "2", "-c", "4096", "--alias", "smollm2", "--no-webui", "--no-repack"],
        port=port, name="llama-server (test)",
    )
    asyncio.run(server.start())
    try:
        spec = load_spec(Path(__file__).parent.parent / "specs" / "rotten_tomatoes.yaml")
        spec = spec.model_copy(update={"suites": []})  # the examples only, not the edge-case suites
        model = Model(provider="openai", model="smollm2", base_url=f"http://127.0.0.1:{port}", concurrency=2,
                      params=Params(temperature=0, max_tokens=32, seed=0, logprobs=True, top_logprobs=5))
        outcome = asyncio.run(run_eval(spec, out_dir=tmp_path / "run", limit=3, models=[model], baselines=[],
                                       prompt_names=["json_schema", "bare_label"]))
    finally:
        server.stop()
    predictions = read_predictions(outcome.run_dir / "predictions.jsonl")
    assert len(predictions) == 6  # 3 examples × 2 prompts
    valid = [p for p in predictions if p.outcome == "valid"]
    assert len(valid) >= 4
    assert all(p.confidence is not None and 0 < p.confidence <= 1 for p in valid)
    assert len({p.confidence for p in valid}) > 1
    assert all(m["mean_confidence"] is not None for m in outcome.metrics)
    assert all(p.prompt_tokens and p.completion_tokens for p in predictions)
    assert "cost_usd" not in outcome.metrics[0]  # a local model has no price unless one is given
