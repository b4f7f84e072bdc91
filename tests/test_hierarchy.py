"""Hierarchical labels (harness.hierarchy): the spec's levels and their errors, the ancestor
mapping, the figures at every level through the metric kernel (hand-computed), top-down prompts
whose chained requests are all cached, and the shipped go_emotions / Ekman spec replayed from its
recorded fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import SpecError
from harness.hierarchy import LEAF, Hierarchy, Level
from harness.metrics import kernel
from harness.metrics.assemble import score_run
from harness.records import Prediction
from harness.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")
EKMAN_SPEC = ROOT / "specs" / "go_emotions_ekman.yaml"

LABELS = ["a1", "a2", "b1", "c1", "c2"]
LEVELS = [
    Level(name="coarse", groups={"A": ["a1", "a2"], "B": ["b1"], "C": ["c1", "c2"]}),
    Level(name="top", groups={"X": ["A", "B"], "Y": ["C"]}),
]


def record(i: int, gold, prediction, outcome: str = "valid", **extra) -> Prediction:
    return Prediction(example_id=f"test:{i}", model="m", prompt="p", gold=gold,
                      prediction=prediction if outcome == "valid" else None, outcome=outcome, **extra)


# gold -> answer: right; right group wrong label; wrong group same top; right; right group; invalid
HAND = [record(1, "a1", "a1"), record(2, "a1", "a2"), record(3, "a2", "b1"), record(4, "b1", "b1"),
        record(5, "c1", "c2"), record(6, "c2", None, "invalid_json")]


def test_ancestors_walk_up_every_level():
    h = Hierarchy(LEVELS, LABELS)
    assert h.levels == [LEAF, "coarse", "top"]
    assert h.ancestors("coarse") == {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C"}
    assert h.ancestors("top") == {"a1": "X", "a2": "X", "b1": "X", "c1": "Y", "c2": "Y"}
    assert h.ancestors(LEAF) == {label: label for label in LABELS}
    assert h.children("top", "X") == ["A", "B"] and h.children("coarse", "C") == ["c1", "c2"]
    assert h.below("top") == "coarse" and h.below("coarse") == LEAF
    assert h.descriptions("top") == {"X": "a1, a2, b1", "Y": "c1, c2"}


def test_figures_at_every_level_by_hand():
    row = score_run(HAND, LABELS, "single_label", hierarchy=Hierarchy(LEVELS, LABELS))[0]
    levels = {lv["level"]: lv for lv in row["levels"]}
    assert list(levels) == ["label", "coarse", "top"]
    leaf, coarse, top = levels["label"], levels["coarse"], levels["top"]
    # the label level is the row itself
    assert (leaf["accuracy"], leaf["macro_f1"]) == (row["accuracy"], row["macro_f1"])
    assert leaf["accuracy"] == pytest.approx(2 / 6, abs=1e-6) and leaf["accuracy_valid"] == pytest.approx(0.4)
    # F1: a1 2/3, a2 0, b1 2/3, c1 0, c2 0
    assert leaf["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 5, abs=1e-6)
    assert leaf["right_here_wrong_at_leaf"] == 0
    # coarse: gold A A A B C C, answers A A B B C <invalid>: examples 1, 2, 4, 5 right
    assert coarse["n_labels"] == 3 and coarse["n_correct"] == 4
    assert coarse["accuracy"] == pytest.approx(4 / 6, abs=1e-6) and coarse["accuracy_valid"] == pytest.approx(0.8)
    assert coarse["per_class"]["A"] == {"precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-6),
                                        "f1": 0.8, "support": 3}
    assert coarse["per_class"]["B"]["f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert coarse["per_class"]["C"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3, abs=1e-6), "support": 2}
    assert coarse["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 2 / 3) / 3, abs=1e-6)
    assert coarse["right_here_wrong_at_leaf"] == 2  # examples 2 and 5: the right group, the wrong label
    assert coarse["confusion"]["matrix"] == [[2, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]]
    # top: gold X X X X Y Y, answers X X X X Y <invalid>
    assert top["accuracy"] == pytest.approx(5 / 6, abs=1e-6)
    assert top["macro_f1"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    assert top["right_here_wrong_at_leaf"] == 3


def test_coarsened_encoding_equals_encoding_the_mapped_records():
    """Mapping the label matrices (kernel.coarsen) is the same as writing every gold and answer
    as its ancestor and encoding that: one definition of a right answer at every level."""
    h = Hierarchy(LEVELS, LABELS)
    up = h.ancestors("coarse")
    enc = kernel.encode(HAND, LABELS, "single_label")
    mapped = [record(i + 1, up[p.gold], up.get(p.prediction), p.outcome) for i, p in enumerate(HAND)]
    direct = kernel.encode(mapped, h.names("coarse"), "single_label")
    coarse = kernel.coarsen(enc, h.names("coarse"), up)
    for name in ("gold", "pred", "valid", "correct"):
        assert np.array_equal(getattr(coarse, name), getattr(direct, name)), name
    w = kernel.resample_weights(enc.n, 50, seed=1)  # the same figures over bootstrap weights too
    assert np.allclose(kernel.macro_f1(coarse, w), kernel.macro_f1(direct, w))


def test_multi_label_sets_map_to_their_groups():
    preds = [record(1, ["a1", "c1"], ["a2", "c1"]), record(2, ["b1"], ["a1", "b1"])]
    row = score_run(preds, LABELS, "multi_label", hierarchy=Hierarchy(LEVELS[:1], LABELS))[0]
    leaf, coarse = row["levels"]
    assert leaf["accuracy"] == 0.0
    assert coarse["accuracy"] == 0.5 and coarse["right_here_wrong_at_leaf"] == 1  # {A, C} = {A, C}
    assert "confusion" not in coarse


# ---------------------------------------------------------------------------------------------
# The spec: levels, and every mistake located

BASE = """\
name: t
dataset:
  source: data.jsonl
labels:
  - name: a1
  - name: a2
  - name: b1
prompts:
  - name: p
    template: t.j2
hierarchy:
  - name: coarse
    groups:
      A: [a1, a2]
      B: [b1]
"""


def error_line(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_valid_levels_load():
    spec = parse_spec(BASE, "s.yaml")
    assert spec.label_hierarchy().ancestors("coarse") == {"a1": "A", "a2": "A", "b1": "B"}
    assert parse_spec(BASE.split("hierarchy:")[0], "s.yaml").label_hierarchy() is None


@pytest.mark.parametrize("edit, expected", [
    (("B: [b1]", "B: [b11]"), "s.yaml:15: hierarchy[0].groups.B[0]: 'b11' is not a label; did you mean 'b1'? "
                              "Allowed: a1, a2, b1"),
    (("B: [b1]", "B: [b1, a2]"), "s.yaml:15: hierarchy[0].groups.B[1]: label 'a2' is in groups 'A' and 'B'; "
                                 "each label has one parent"),
    (("B: [b1]", "B: [b1, b1]"), "s.yaml:15: hierarchy[0].groups.B[1]: label 'b1' is twice in this group"),
    (("A: [a1, a2]", "A: [a1]"), "s.yaml:13: hierarchy[0].groups: level 'coarse' leaves 1 label(s) without "
                                 "a group: a2; every label needs one"),
    (("B: [b1]", "B: []"), "s.yaml:15: hierarchy[0].groups.B: group 'B' is empty"),
    (("name: coarse", "name: label"), "s.yaml:12: hierarchy[0].name: 'label' names the labels' own level"),
    (("    groups:", "    groupz:"), "s.yaml:13: hierarchy[0].groupz: unknown field; did you mean 'groups'?"),
    (("      B: [b1]\n", "      B: [b1]\n  - name: top\n    groups: {X: [A, b1], Y: [B]}\n"),
     "s.yaml:17: hierarchy[1].groups.X[1]: 'b1' is not a group of level 'coarse'"),
    (("      B: [b1]\n", "      B: [b1]\n  - name: top\n    groups: {X: [A, B]}\n"),
     "s.yaml:17: hierarchy[1].groups: level 'top' has 1 group(s); a level needs at least two"),
    (("      B: [b1]\n", "      B: [b1]\n  - name: coarse\n    groups: {X: [A], Y: [B]}\n"),
     "s.yaml:16: hierarchy[1].name: level 'coarse' is named twice"),
])
def test_hierarchy_mistakes_name_the_line_and_field(edit, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(BASE.replace(*edit), "s.yaml")
    assert any(line.startswith(expected) for line in str(info.value).splitlines()), str(info.value)


def test_top_down_needs_a_hierarchy_single_label_and_no_shots():
    flat = BASE.split("hierarchy:")[0]
    with_strategy = "    template: t.j2\n    strategy: top_down\n"
    assert error_line(flat.replace("    template: t.j2\n", with_strategy)).startswith(
        "s.yaml:11: prompts[0].strategy: prompt 'p': strategy top_down needs a `hierarchy:`")
    assert error_line(BASE.replace("    template: t.j2\n", with_strategy + "    few_shot: {k: 2}\n")).startswith(
        "s.yaml:11: prompts[0].strategy: prompt 'p': strategy top_down takes no few_shot examples yet")
    assert error_line(BASE.replace("    template: t.j2\n", with_strategy + "    answer: label_likelihood\n")).startswith(
        "s.yaml:11: prompts[0].strategy: prompt 'p': strategy top_down asks for a generated label")
    assert error_line(BASE.replace("    strategy", "x").replace("    template: t.j2\n", with_strategy)
                      .replace("name: t\n", "name: t\ntask: multi_label\noutput: {shape: labels}\n")).startswith(
        "s.yaml:13: prompts[0].strategy: prompt 'p': strategy top_down picks one group per level")
    assert error_line(BASE.replace("  source: data.jsonl\n", "  source: data.jsonl\n  keep_single_labels: true\n")
                      .replace("name: t\n", "name: t\ntask: multi_label\noutput: {shape: labels}\n")).startswith(
        "s.yaml:6: dataset.keep_single_labels: keeps the rows with one label for a single_label task")


# ---------------------------------------------------------------------------------------------
# The shipped spec: GoEmotions' 28 labels under the authors' Ekman grouping


def test_ekman_spec_groups_are_the_authors_mapping():
    spec = load_spec(EKMAN_SPEC)
    mapping = json.loads((DATA_DIR / "go_emotions" / "ekman_mapping.json").read_text())
    groups = spec.hierarchy[0].groups
    assert {g: sorted(m) for g, m in groups.items()} == {**{g: sorted(m) for g, m in mapping.items()}, "neutral": ["neutral"]}
    assert len(spec.label_names) == 28 and len(groups) == 7


def test_keep_single_labels_uses_the_rows_with_exactly_one_label():
    from harness.data import load_split

    spec = load_spec(EKMAN_SPEC)
    split = load_split(spec, "test")
    rows = [json.loads(line) for line in (DATA_DIR / "go_emotions" / "test.jsonl").read_text().splitlines()]
    assert len(split.examples) == 4590 == sum(1 for r in rows if len(r["labels"]) == 1)  # README's count
    first = split.examples[0]
    assert first.gold == rows[first.index]["labels"][0] and first.id == f"test:{first.index}"


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("ekman") / "run"
    done = harness("eval", str(EKMAN_SPEC), "--cache", "replay", "--no-baselines", "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


def test_fixture_replay_has_consistent_figures_at_both_levels(replayed):
    metrics = json.loads((replayed / "metrics.json").read_text())
    records = [json.loads(line) for line in (replayed / "predictions.jsonl").read_text().splitlines()]
    spec = load_spec(EKMAN_SPEC)
    up = spec.label_hierarchy().ancestors("ekman")
    requests = metrics["run"]["requests"]["llamacpp:smollm2"]
    assert (requests["sent"], requests["cache_misses"]) == (0, 0)
    for row in metrics["results"]:
        mine = [r for r in records if r["prompt"] == row["prompt"]]
        assert len(mine) == row["n"] == 60 and all(r["cached"] for r in mine)
        leaf, ekman = row["levels"]
        assert (leaf["level"], ekman["level"], ekman["n_labels"]) == ("label", "ekman", 7)
        # recount from the records: an answer is right at the Ekman level when its group is the gold's
        right = [r["outcome"] == "valid" and r["prediction"] == r["gold"] for r in mine]
        right_up = [r["outcome"] == "valid" and up[r["prediction"]] == up[r["gold"]] for r in mine]
        assert leaf["n_correct"] == sum(right) and ekman["n_correct"] == sum(right_up)
        assert ekman["accuracy"] == pytest.approx(sum(right_up) / 60, abs=1e-6)
        assert ekman["right_here_wrong_at_leaf"] == sum(u and not r for r, u in zip(right, right_up))
        assert ekman["n_correct"] == leaf["n_correct"] + ekman["right_here_wrong_at_leaf"]  # right at the leaf: right above
        assert sum(c["support"] for c in ekman["per_class"].values()) == 60
        assert row["accuracy"] == leaf["accuracy"] and row["macro_f1"] == leaf["macro_f1"]
    report = (replayed / "report.md").read_text()
    assert "## Per level" in report and "| llamacpp:smollm2 | top_down | ekman |" in report
    assert "Per level" in (replayed / "report.html").read_text()


def test_top_down_walks_the_groups_and_every_step_is_in_the_fixture(replayed):
    """The coarse request and the fine request among the chosen group's children are both in the
    recorded fixture (the replay above sent nothing), built by the runner's own step code."""
    from harness.keys import cache_key, cache_material
    from harness.runner import Prepared, step_body
    from providers import get_provider_class

    spec = load_spec(EKMAN_SPEC)
    h = spec.label_hierarchy()
    fixture = {json.loads(line)["key"] for line in (EKMAN_SPEC.parent / spec.cache.fixture).read_text().splitlines()}
    prepared = Prepared(spec, prompt_names=["top_down"])
    pp = prepared.prompts[0]
    model = spec.models[0]
    provider = get_provider_class(model.provider)(model)
    examples = {e.id: e for e in prepared.eval.examples}
    records = [json.loads(line) for line in (replayed / "predictions.jsonl").read_text().splitlines()]
    walked = 0
    for r in (r for r in records if r["prompt"] == "top_down"):
        example = examples[r["example_id"]]
        coarse = prepared.step(pp, "ekman", None)
        assert coarse.names == h.names("ekman")
        assert cache_key(cache_material(provider, step_body(coarse, example, model, provider))) in fixture
        if r["outcome"] != "valid" and not r.get("levels"):
            continue  # the coarse answer was unreadable: no second request
        group = r["levels"]["ekman"]
        fine = prepared.step(pp, LEAF, group)
        assert fine.names == h.children("ekman", group)
        if r["outcome"] == "valid":
            assert r["prediction"] in fine.names  # the fine label is one of the chosen group's
        if len(fine.names) > 1:
            body = step_body(fine, example, model, provider)
            assert cache_key(cache_material(provider, body)) in fixture
            assert f"(a kind of {group})" in json.dumps(body)
            walked += 1
    assert walked > 0
