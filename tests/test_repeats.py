"""Per-prompt output shapes (a label prompt and a 0-1 score prompt in one run, the score's threshold
fitted on validation) and a model's `repeats:` (cache key per repeat, spread over repeats, agreement,
majority vote). Expectations are computed by hand in the comments."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from harness.cache import export_fixture, make_entry, open_disk_cache
from harness.calibration import fit_score_threshold
from harness.cli import main
from harness.errors import SpecError
from harness.keys import cache_key, cache_material
from harness.metrics.assemble import build_rows
from harness.metrics.kernel import all_agree, encode, ones, pairwise_agreement
from harness.metrics.repeats import majority_vote, spread, split_repeats
from harness.records import Prediction
from harness.runner import planned_requests
from harness.spec import parse_spec
from harness.validate import AnswerContract
from providers import ChatResponse

LABELS = ["negative", "positive"]


def pred(eid: str, repeat: int | None, answer: str | None, gold: str = "positive", prompt: str = "p", **kw) -> Prediction:
    return Prediction(example_id=eid, model="m", prompt=prompt, gold=gold, prediction=answer,
                      outcome="valid" if answer is not None else "schema_error", repeat=repeat, **kw)


# ---------------------------------------------------------------------------------------------
# Spread, agreement, majority vote


def test_spread_is_mean_sample_std_min_max():
    # mean 0.6; squared deviations 0.01, 0, 0.01 over n - 1 = 2: std 0.1
    assert spread([0.5, 0.6, 0.7]) == {"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7, "values": [0.5, 0.6, 0.7]}
    assert spread([0.4, None]) == {"mean": 0.4, "std": None, "min": 0.4, "max": 0.4, "values": [0.4, None]}
    assert spread([None, None])["mean"] is None


# Three repeats of five examples (None: an unreadable answer).
ANSWERS = {
    "e1": ["positive", "positive", "positive"],  # all agree; pairs agreeing 3/3
    "e2": ["positive", "negative", "positive"],  # pairs (0,2) only: 1/3; vote positive 2/3
    "e3": [None, None, None],                    # all unreadable: they agree; vote: repeat 0's outcome
    "e4": ["negative", None, "negative"],        # 1/3; vote negative 2/3
    "e5": [None, "negative", "positive"],        # 0/3; tie 1-1: repeat 1 is the earliest, vote negative 1/3
}


def by_repeat() -> dict[int, list[Prediction]]:
    return {r: [pred(e, r, answers[r]) for e, answers in ANSWERS.items()] for r in range(3)}


def test_agreement_across_repeats():
    encs = [encode(sorted(ps, key=lambda p: p.example_id), LABELS, "single_label") for ps in by_repeat().values()]
    w = ones(encs[0])
    assert float(all_agree(encs, w)) == pytest.approx(2 / 5)  # e1, e3
    # (1 + 1/3 + 1 + 1/3 + 0) / 5 = 8/15
    assert float(pairwise_agreement(encs, w)) == pytest.approx(8 / 15, abs=1e-6)
    # weights: only e2 and e5 -> (1/3 + 0) / 2
    assert float(pairwise_agreement(encs, w * [0, 1, 0, 0, 1])) == pytest.approx(1 / 6, abs=1e-6)


def test_majority_vote_and_its_tie_rule():
    votes = {p.example_id: p for p in majority_vote(by_repeat())}
    assert {e: (v.prediction, v.outcome, v.confidence) for e, v in votes.items()} == {
        "e1": ("positive", "valid", 1.0),
        "e2": ("positive", "valid", 0.666667),
        "e3": (None, "schema_error", None),
        "e4": ("negative", "valid", 0.666667),
        "e5": ("negative", "valid", 0.333333),  # the tie goes to the earliest repeat's answer
    }
    assert {v.prompt for v in votes.values()} == {"p@vote"} and all(v.repeat is None for v in votes.values())
    # with two repeats that disagree, the vote is repeat 0's answer
    two = {0: [pred("x", 0, "negative")], 1: [pred("x", 1, "positive")]}
    assert majority_vote(two)[0].prediction == "negative"


def test_vote_sums_the_repeats_tokens():
    reps = {r: [pred("x", r, "positive", prompt_tokens=10, completion_tokens=r + 1)] for r in range(3)}
    (vote,) = majority_vote(reps)
    assert (vote.prompt_tokens, vote.completion_tokens) == (30, 6)


def test_rows_of_a_repeated_prompt():
    # gold positive everywhere: repeat accuracies 0: e1 e2 = 2/5; 1: e1 = 1/5; 2: e1 e2 = 2/5 (e5 is
    # positive in repeat 2: 3/5). Validity: 4/5, 4/5, 4/5... by hand: repeat 0 reads e1 e2 e4 (3/5),
    # repeat 1 e1 e2 e4?(None) e5 -> e1 e2 e5 = 3/5, repeat 2 e1 e2 e4 e5 = 4/5.
    preds = [p for ps in by_repeat().values() for p in ps] + [pred("e1", None, "negative", prompt="q")]
    rows = {r.prompt: r for r in build_rows(preds, LABELS, "single_label", intervals=False)}
    assert list(rows) == ["p", "p@vote", "q"]
    first, vote = rows["p"], rows["p@vote"]
    assert first.n == 5 and first.accuracy == 0.4 and first.validity == 0.6  # repeat 0's own figures
    rep = first.repeats
    assert (rep.repeats, rep.row, rep.n_common) == (3, "repeat_0", 5)
    assert rep.figures["accuracy"].values == [0.4, 0.2, 0.6]
    assert rep.figures["accuracy"].mean == 0.4 and rep.figures["accuracy"].std == 0.2  # sqrt((.04+.04)/2)
    assert rep.figures["validity"].values == [0.6, 0.6, 0.8]
    assert (rep.figures["validity"].min, rep.figures["validity"].max) == (0.6, 0.8)
    assert rep.all_agree == 0.4 and rep.pairwise_agreement == pytest.approx(8 / 15, abs=1e-6)
    # the vote: e1 e2 right, e3 unreadable, e4 e5 negative -> 2/5
    assert vote.accuracy == 0.4 and vote.validity == 0.8 and vote.repeats.row == "vote"
    assert vote.coverage.available  # the vote share is its confidence
    assert rows["q"].repeats is None


def test_view_keeps_unrepeated_predictions_as_they_are():
    plain = [pred("a", None, "positive"), pred("b", None, "negative")]
    view, repeated = split_repeats(plain)
    assert view == plain and repeated == {}


# ---------------------------------------------------------------------------------------------
# Score answers: thresholding, confidence, a fitted threshold


SPEC = textwrap.dedent("""\
    name: mixed
    dataset: {source: data, split: test, validation_split: validation, train_split: null,
              label_map: {0: negative, 1: positive}}
    labels: [{name: negative}, {name: positive}]
    prompts:
      - {name: label, template: p.j2, mode: text}
      - name: score
        template: p.j2
        output: {shape: score, mode: json_object}
        calibration: {method: threshold, validation_limit: null}
    models:
      - {provider: openai, model: gpt-4o-mini, repeats: REPEATS}
    cache: {fixture: fixture.jsonl}
""")


def test_score_answer_is_a_prediction_a_confidence_and_a_distribution():
    spec = parse_spec(SPEC.replace("REPEATS", "1"))
    contract = AnswerContract(spec, spec.prompt("score").output)
    v = contract.judge('{"score": 0.5}', "json_object")
    assert (v.prediction, v.confidence, v.label_probs) == ("positive", 0.5, {"negative": 0.5, "positive": 0.5})
    v = contract.judge('{"score": 0.2}', "json_object")  # below 0.5: negative, with P(negative) 0.8
    assert (v.prediction, v.confidence) == ("negative", 0.8)
    fitted = AnswerContract(spec, spec.prompt("score").output, threshold=0.15)
    assert fitted.judge('{"score": 0.2}', "json_object").prediction == "positive"
    assert fitted.judge('{"score": 0.2}', "json_object").confidence == 0.2
    assert contract.judge('{"score": 1.5}', "json_object").outcome == "schema_error"
    # the label prompt of the same spec still reads labels
    assert AnswerContract(spec).judge("positive", "text").prediction == "positive"


def test_fitted_threshold_on_a_synthetic_validation_set():
    # validation scores 0.1 0.2 (negative) 0.3 0.4 0.6 0.7 (positive): every cut between 0.2 and 0.3
    # is perfect; the cut is the midpoint of their log-odds: sigmoid((logit .2 + logit .3) / 2)
    # = 1 / (1 + sqrt(28/3)) = 0.246606. At the fixed 0.5, 0.3 and 0.4 are wrong: 4/6.
    fit = fit_score_threshold([0.1, 0.2, 0.3, 0.4, 0.6, 0.7], [0, 0, 1, 1, 1, 1], LABELS)
    assert fit["params"]["threshold"] == pytest.approx(1 / (1 + math.sqrt(28 / 3)), abs=1e-6)
    assert fit["params"]["threshold_on"] == "positive"
    assert fit["validation"]["accuracy_before"] == pytest.approx(4 / 6, abs=1e-6)
    assert fit["validation"]["accuracy_after"] == 1.0
    with pytest.raises(ValueError):
        fit_score_threshold([0.4], [1], LABELS)


VALIDATION = [("v0", 0, 0.1), ("v1", 0, 0.2), ("v2", 1, 0.3), ("v3", 1, 0.4)]  # threshold 0.246606
TEST = [("t0", 1, 0.25), ("t1", 0, 0.1), ("t2", 1, 0.9), ("t3", 0, 0.24)]  # 0.25 >= t; 0.24 < t


def project(tmp_path: Path, repeats: int, answer) -> Path:
    """A spec over local test/validation rows and a replay fixture whose answers `answer(prompt,
    text, repeat)` chooses."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    for split, rows in (("validation", VALIDATION), ("test", TEST)):
        (folder / "data" / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y, _ in rows))
    (folder / "p.j2").write_text("{% block user %}Review: {{ text }}{% endblock %}")
    (folder / "spec.yaml").write_text(SPEC.replace("REPEATS", str(repeats)))
    spec = parse_spec((folder / "spec.yaml").read_text(), str(folder / "spec.yaml"))
    spec._path = (folder / "spec.yaml").resolve()
    disk = open_disk_cache(tmp_path / "cache")
    text_of = {f"{split}:{i}": t for split, rows in (("validation", VALIDATION), ("test", TEST)) for i, (t, _, _) in enumerate(rows)}
    for r in planned_requests(spec):
        text = answer(r["prompt"], text_of[r["example_id"]], r["material"].get("repeat", 0))
        disk.set(r["key"], make_entry(r["material"], ChatResponse(text=text, finish_reason="stop")))
    disk.close()
    export_fixture(tmp_path / "cache", folder / "fixture.jsonl")
    return folder / "spec.yaml"


SCORES = {t: s for t, _, s in VALIDATION + TEST}


def test_one_run_holds_a_label_prompt_and_a_score_prompt_with_a_fitted_threshold(tmp_path):
    spec = project(tmp_path, 1, lambda prompt, text, r: json.dumps({"score": SCORES[text]}) if prompt == "score" else "positive")
    assert main(["eval", str(spec), "--cache", "replay", "--quiet", "--out", str(tmp_path / "run")]) == 0
    rows = {m["prompt"]: m for m in json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]}
    assert set(rows) == {"label", "score"}
    assert rows["label"]["accuracy"] == 0.5  # always positive, 2 of 4
    # with the fitted threshold 0.246606 every test answer is right (0.25 -> positive, 0.24 -> negative);
    # at the fixed 0.5, t0 (0.25, positive) would be wrong
    assert rows["score"]["accuracy"] == 1.0
    fit = rows["score"]["calibration_fit"]
    assert fit["method"] == "threshold" and fit["params"]["threshold"] == pytest.approx(0.246606, abs=1e-6)
    assert fit["validation"]["n"] == 4 and fit["validation"]["accuracy_before"] == 0.5
    # the score's confidence (the predicted label's probability) gives a curve and calibration figures
    assert rows["score"]["coverage"]["available"] and rows["score"]["calibration"]["n"] == 4
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    t0 = next(p for p in preds if p["prompt"] == "score" and p["example_id"] == "test:0")
    assert (t0["prediction"], t0["confidence"], t0["label_probs"]) == ("positive", 0.25, {"negative": 0.75, "positive": 0.25})
    assert "Calibration fitted on the validation split" in (tmp_path / "run" / "report.md").read_text()


def test_repeats_are_cached_apart_and_replay_into_spread_and_vote_rows(tmp_path):
    # label prompt: repeat 0 always "positive", repeats 1 and 2 always "negative" (vote: negative).
    # score prompt: 0.9 in every repeat (positive).
    def answer(prompt, text, r):
        if prompt == "score":
            return json.dumps({"score": 0.9})
        return "positive" if r == 0 else "negative"

    spec = project(tmp_path, 3, answer)
    fixture = [json.loads(line) for line in (spec.parent / "fixture.jsonl").read_text().splitlines()]
    # label: 4 test x 3; score: 4 validation (once) + 4 test x 3
    assert len(fixture) == 12 + 16
    assert main(["eval", str(spec), "--cache", "replay", "--quiet", "--out", str(tmp_path / "run")]) == 0
    rows = {m["prompt"]: m for m in json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]}
    assert list(rows) == ["label", "label@vote", "score", "score@vote"]
    label = rows["label"]
    assert label["accuracy"] == 0.5 and label["repeats"]["figures"]["accuracy"]["values"] == [0.5, 0.5, 0.5]
    # every example: answers (pos, neg, neg): not all agree, 1 of 3 pairs agrees
    assert label["repeats"]["all_agree"] == 0.0 and label["repeats"]["pairwise_agreement"] == pytest.approx(1 / 3, abs=1e-6)
    assert rows["label@vote"]["confusion"]["matrix"] == [[2, 0, 0], [2, 0, 0]]  # all negative
    assert rows["score"]["repeats"]["all_agree"] == 1.0
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert sorted({p["repeat"] for p in preds}) == [0, 1, 2] and len(preds) == 24
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Repeats" in report and "| openai:gpt-4o-mini | label | 3 | 100.0% ± 0.0 pts [100.0%–100.0%] |" in report
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="repeats"' in html and "label@vote" in html
    # compare pairs repeat 0 and the vote rows (one answer per example) and notes the spread
    from harness.compare import compare_runs
    from harness.runs import load_run

    run = load_run(tmp_path / "run")
    comparison = compare_runs(run, run)
    assert {(p.prompt, p.n_paired) for p in comparison.pairs} == {("label", 4), ("label@vote", 4), ("score", 4), ("score@vote", 4)}
    assert any("label: the figures are repeat 0's; A: 3 repeats, accuracy 50.0%" in n for n in comparison.notes)


def test_repeat_index_is_in_the_key_and_repeat_0_is_the_unrepeated_request():
    spec = parse_spec(SPEC.replace("REPEATS", "1").replace("validation_split: validation", "validation_split: validation"))

    class P:
        name = "openai"

        def endpoint(self):
            return "https://api.openai.com/v1"

    body = {"model": "x", "seed": 0}
    assert cache_material(P(), body) == cache_material(P(), body, 0)
    assert cache_key(cache_material(P(), body, 1)) != cache_key(cache_material(P(), body))
    assert spec.models[0].repeats == 1


def test_seeded_repeats_send_seed_plus_repeat(tmp_path):
    spec = project(tmp_path, 2, lambda prompt, text, r: "positive" if prompt == "label" else '{"score": 0.5}')
    from harness.spec import load_spec

    planned = [r for r in planned_requests(load_spec(spec)) if r["prompt"] == "label" and r["example_id"] == "test:0"]
    assert [(r["material"].get("repeat", 0), r["material"]["body"]["seed"]) for r in planned] == [(0, 0), (1, 1)]


# ---------------------------------------------------------------------------------------------
# Spec errors


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.yaml")
    return str(info.value)


def test_a_score_prompt_on_a_multi_class_task_is_an_error_at_its_line():
    text = SPEC.replace("REPEATS", "1").replace("labels: [{name: negative}, {name: positive}]",
                                                "labels: [{name: negative}, {name: positive}, {name: neutral}]")
    assert "s.yaml:9: prompts[1].output.shape: prompt 'score': 'score' needs exactly two labels" in spec_error(text)


def test_calibration_on_generated_prompts_needs_a_score_and_the_threshold_method():
    text = SPEC.replace("REPEATS", "1")
    assert "prompts[1].calibration.method: prompt 'score': a score answer fits its decision threshold" in \
        spec_error(text.replace("method: threshold", "method: platt"))
    assert "prompts[0].calibration: prompt 'label': calibration needs" in spec_error(
        text.replace("{name: label, template: p.j2, mode: text}", "{name: label, template: p.j2, mode: text, calibration: {method: threshold}}"))
    assert "validation_split" in spec_error(text.replace("validation_split: validation,", ""))


def test_repeats_must_be_at_least_one():
    assert "models[0].repeats" in spec_error(SPEC.replace("REPEATS", "0"))


# ---------------------------------------------------------------------------------------------
# The recorded run: SmolLM2 at temperature 0.8, three repeats, a label and a score prompt


ROOT = Path(__file__).resolve().parent.parent
SCORE_SPEC = ROOT / "specs" / "rotten_tomatoes_score.yaml"
RECORDED = ROOT / "specs" / "fixtures" / "rotten_tomatoes_score.metrics.json"


def figures(rows: list[dict]) -> list[dict]:
    """A run's rows without what depends on where the answers came from (cache hits, wall time)."""
    return [{k: v for k, v in m.items() if k not in ("cached", "wall_s")} for m in rows]


def test_the_recorded_repeats_run_replays_to_identical_figures(tmp_path):
    from html_runs import DATA_DIR, harness

    if not (DATA_DIR / "rotten_tomatoes").is_dir():
        pytest.skip(f"shared datasets not found at {DATA_DIR}")
    harness("eval", str(SCORE_SPEC), "--cache", "replay", "--quiet", "--out", str(tmp_path / "run"))
    replayed = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))["results"]
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    assert [m["prompt"] for m in replayed] == ["bare_label", "bare_label@vote", "score", "score@vote"]
    assert figures(replayed) == recorded["results"]
    assert all(m["cached"] == m["n"] for m in replayed if m["prompt"] in ("bare_label", "score"))
