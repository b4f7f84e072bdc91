"""Label likelihood: label probabilities from logprob shapes of llama.cpp, OpenAI and vLLM; the
spec rules for `answer: label_likelihood`; and the request bodies that go through the cache."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from harness import likelihood as lk
from harness.errors import SpecError
from harness.spec import NO_LOGPROBS_PROVIDERS, Model, Params, parse_spec
from providers import ChatRequest, ChatResponse, get_provider_class

WIRE = Path(__file__).parent / "wire"
LABELS = ["negative", "positive"]


def top(*pairs):
    return [{"token": t, "logprob": math.log(p)} for t, p in pairs]


def response(top_list, text=None):
    return ChatResponse(text=text or top_list[0]["token"], logprobs=[{"token": top_list[0]["token"],
                        "logprob": top_list[0]["logprob"], "top_logprobs": top_list}])


def run_scores(messages, labels, replies, can_prefill=True):
    """`replies`: the prefill text ('' for none) -> the top list the server answers with."""
    sent = []

    async def send(msgs):
        prefill = msgs[-1]["content"] if msgs[-1]["role"] == "assistant" else ""
        sent.append(prefill)
        return response(replies[prefill])

    scores, _ = asyncio.run(lk.score_first_tokens(messages, labels, send, can_prefill=can_prefill))
    return scores, sent


MSGS = [{"role": "user", "content": "Review: fine.\nSentiment?"}]


# -- llama.cpp: a real llama-server response ----------------------------------------------------


def test_recorded_llama_server_first_token():
    shapes = json.loads((WIRE / "llamacpp" / "likelihood_shapes.json").read_text())
    content = shapes["first_token"]["logprobs"]["content"]
    listed = {a["token"]: math.exp(a["logprob"]) for a in content[0]["top_logprobs"]}
    scores, sent = run_scores(MSGS, LABELS, {"": content[0]["top_logprobs"]})
    # "negative" + "Negative" vs "positive" + "Positive": case folded, nothing else begins a label
    neg = listed["negative"] + listed["Negative"]
    pos = listed["positive"] + listed["Positive"]
    assert sent == [""]  # no label shares a first token: one request
    assert scores.probs["negative"] == pytest.approx(neg / (neg + pos), abs=1e-6)
    assert scores.probs["positive"] == pytest.approx(pos / (neg + pos), abs=1e-6)
    assert scores.mass == pytest.approx(neg + pos, abs=1e-6)
    assert scores.prediction == "negative" and scores.floored == []


def test_recorded_llama_server_prefill_continues_the_shared_prefix():
    """The real reply to a 'pos' prefill: 'itive' (and its prefixes 'it', 'i') continue positive;
    'itively', 'itives' are other words; nothing listed continues 'possessive' ('sessive')."""
    shapes = json.loads((WIRE / "llamacpp" / "likelihood_shapes.json").read_text())
    after_pos = shapes["prefill_pos"]["logprobs"]["content"][0]["top_logprobs"]
    assert shapes["prefill_pos"]["message"]["content"].startswith("pos")  # llama-server continued it
    labels = ["positive", "possessive"]
    scores, sent = run_scores(MSGS, labels, {"": top(("pos", 0.5), ("The", 0.3)), "pos": after_pos})
    listed = {a["token"]: math.exp(a["logprob"]) for a in after_pos}
    assert sent == ["", "pos"]
    # chain rule: P(pos) * P(continuation | pos)
    positive = 0.5 * (listed["itive"] + listed["it"] + listed["i"])
    assert scores.mass == pytest.approx(positive, abs=1e-5)
    assert scores.floored == ["possessive"] and scores.prediction == "positive"


# -- OpenAI and vLLM shapes (leading spaces, case, multi-token labels, missing labels) ----------


def test_openai_leading_space_and_case_variants():
    scores, _ = run_scores(MSGS, LABELS, {"": top((" Positive", 0.4), ("positive", 0.2), (" neg", 0.1),
                                                  ("Sure", 0.2), ("\n", 0.05))})
    assert scores.probs == {"negative": pytest.approx(0.1 / 0.7, abs=1e-6), "positive": pytest.approx(0.6 / 0.7, abs=1e-6)}
    assert scores.mass == pytest.approx(0.7)


def test_recorded_openai_wire_shape_through_read_completion():
    """A recorded OpenAI logprobs response, read by the provider's own reader: the entry where the
    label starts lists both labels (api.openai.com cannot prefill, so that is all there is)."""
    from openai.types.chat import ChatCompletion

    from providers.openai import read_completion

    body = json.loads((WIRE / "openai" / "chat_logprobs.json").read_text())["body"]
    parsed = read_completion(ChatCompletion.model_validate(body), 0.1)
    entry = next(e for e in parsed.logprobs if e["token"] == "positive")
    listed = {a["token"]: math.exp(a["logprob"]) for a in entry["top_logprobs"]}
    scores, sent = run_scores(MSGS, LABELS, {"": entry["top_logprobs"]}, can_prefill=False)
    total = listed["positive"] + listed["negative"]
    assert scores.probs["positive"] == pytest.approx(listed["positive"] / total, abs=1e-6)
    assert scores.mass == pytest.approx(min(1.0, total), abs=1e-6) and sent == [""]


def test_vllm_multi_token_labels_and_shared_first_token():
    """vLLM answers in the OpenAI shape; 'very' begins two labels and needs the next token."""
    labels = ["very negative", "very positive", "neutral"]
    replies = {
        "": top(("very", 0.6), ("Neutral", 0.2), ("Very", 0.1), ("I", 0.1)),
        "very": top((" positive", 0.75), (" negative", 0.25)),
        "Very": top((" negative", 1.0)),
    }
    scores, sent = run_scores(MSGS, labels, replies)
    assert sorted(sent) == ["", "Very", "very"]
    raw = {"very positive": 0.6 * 0.75, "very negative": 0.6 * 0.25 + 0.1, "neutral": 0.2}
    total = sum(raw.values())
    for label, value in raw.items():
        assert scores.probs[label] == pytest.approx(value / total, abs=1e-6)
    assert scores.mass == pytest.approx(total)


def test_shared_tokens_without_prefill_are_left_out():
    labels = ["very negative", "very positive"]
    scores, sent = run_scores(MSGS, labels, {"": top(("very", 0.6), ("ok", 0.4))}, can_prefill=False)
    assert sent == [""] and scores.unresolved == pytest.approx(0.6)
    assert scores.mass == 0 and scores.floored == labels  # both at the floor: 50/50, and flagged


def test_label_missing_from_top_k_gets_the_floor():
    scores, _ = run_scores(MSGS, LABELS, {"": top(("negative", 0.5), ("The", 0.2), ("I", 0.01))})
    assert scores.floored == ["positive"]
    assert scores.probs["positive"] == pytest.approx(0.01 / 0.51, abs=1e-6)
    assert scores.mass == pytest.approx(0.5)


def test_a_longer_word_is_not_the_label_and_a_complete_label_ends_the_word():
    scores, _ = run_scores(MSGS, ["sad", "sadness"], {
        "": top(("sad", 0.5), ("sadly", 0.3), ("Sadness", 0.1)),
        "sad": top(("ness", 0.4), (".", 0.3), ("ly", 0.2), ("<|im_end|>", 0.1)),
    })
    # sadly: neither; 'sad' then 'ness' -> sadness, then '.' / end-of-turn -> sad, 'ly' -> neither
    raw = {"sad": 0.5 * 0.4, "sadness": 0.1 + 0.5 * 0.4}
    assert scores.probs["sad"] == pytest.approx(raw["sad"] / sum(raw.values()), abs=1e-6)


def test_exact_sequence_scores():
    logprobs = [{"token": "negative", "logprob": math.log(0.3)}, {"token": "Negative", "logprob": math.log(0.1)},
                {"token": "positive", "logprob": math.log(0.2)}, {"token": "Positive", "logprob": math.log(0.05)}]
    scores = lk.scores_from_sequences(logprobs, LABELS)
    assert scores.probs["negative"] == pytest.approx(0.4 / 0.65, abs=1e-6)
    assert scores.mass == pytest.approx(0.65)
    assert lk.label_variants("positive") == ["positive", "Positive"]


# -- spec rules and bodies ------------------------------------------------------------------


SPEC = """\
name: t
dataset: {{source: x.jsonl{extra}}}
labels: [{{name: negative}}, {{name: positive}}]
prompts:
  - name: lk
    template: t.j2
    answer: label_likelihood
{cal}models:
  - provider: {provider}
    model: m
"""


def test_groq_with_label_likelihood_is_a_spec_error_at_its_line():
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC.format(extra="", cal="", provider="groq"), "s.yaml")
    text = str(info.value)
    assert "s.yaml:9" in text and "logprobs" in text and "groq" in text.lower()


def test_calibration_needs_a_validation_split_that_is_not_the_evaluated_one():
    cal = "    calibration: {method: threshold}\n"
    with pytest.raises(SpecError, match="validation_split"):
        parse_spec(SPEC.format(extra="", cal=cal, provider="llamacpp"), "s.yaml")
    with pytest.raises(SpecError, match="evaluated"):
        parse_spec(SPEC.format(extra=", split: test, validation_split: test", cal=cal, provider="llamacpp"), "s.yaml")
    spec = parse_spec(SPEC.format(extra=", validation_split: validation", cal=cal, provider="llamacpp"), "s.yaml")
    assert spec.prompts[0].calibration.method == "threshold" and spec.mode_of(spec.prompts[0]) == "text"
    # contextual needs no labels, so no validation split
    parse_spec(SPEC.format(extra="", cal="    calibration: {method: contextual}\n", provider="llamacpp"), "s.yaml")


def test_no_logprobs_table_matches_the_provider_classes():
    for name in ("openai", "groq", "vllm", "llamacpp", "transformers"):
        assert get_provider_class(name).supports_logprobs == (name not in NO_LOGPROBS_PROVIDERS), name


def test_vllm_prefill_body_continues_the_final_message_and_has_no_choice_constraint():
    provider = get_provider_class("vllm")(Model(provider="vllm", model="m", base_url="http://127.0.0.1:1",
                                                options={"constrain": "choice", "server_version": "0.33.0"}))
    msgs = MSGS + [{"role": "assistant", "content": "very"}]
    body = provider.build_body(ChatRequest(messages=msgs, params=Params(max_tokens=1, logprobs=True, top_logprobs=20),
                                           continue_final=True, likelihood=True))
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert "structured_outputs" not in body and "guided_choice" not in body
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
