"""Tests for harness.data: real dataset files through HARNESS_DATA_DIR, and tiny files in tmp_path."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from harness.data import Split, draw_shots, load_eval_split, load_split, stratified_order
from harness.errors import HarnessError
from harness.records import Example
from harness.spec import parse_spec

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"shared test datasets not found at {DATA_DIR}"
)

RT_LABELS = "[{name: negative}, {name: positive}]"
EMOTIONS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
GO_EMOTIONS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
]


def make_spec(dataset: str, labels: str = RT_LABELS, task: str = "single_label"):
    text = (
        "name: t\n"
        f"task: {task}\n"
        f"dataset: {dataset}\n"
        f"labels: {labels}\n"
        "prompts: [{name: p, template: t.j2}]\n"
    )
    if task == "multi_label":
        text += "output: {shape: labels}\n"
    return parse_spec(text)


def names_yaml(names: list[str]) -> str:
    return "[" + ", ".join("{name: %s}" % n for n in names) + "]"


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(monkeypatch):
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared test datasets not found at {DATA_DIR}")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    return DATA_DIR


# ---------------------------------------------------------------------------------------------
# Real datasets through HARNESS_DATA_DIR


@needs_data
@pytest.mark.parametrize("source", ["rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes"])
def test_rotten_tomatoes_test_split(data_dir, source):
    spec = make_spec(f"{{source: {source}}}")
    split = load_eval_split(spec)
    assert isinstance(split, Split)
    assert len(split.examples) == 1066
    first = split.examples[0]
    assert first.id == "test:0" and first.index == 0
    assert first.text.startswith("lovingly photographed")
    assert first.gold == "positive"
    assert first.fields == {"text": first.text, "label": 1}
    assert split.examples[-1].gold == "negative"
    assert Counter(e.gold for e in split.examples) == {"positive": 533, "negative": 533}
    fp = split.fingerprint
    assert fp["source"] == source
    assert fp["resolved"] == str(data_dir / "rotten_tomatoes" / "test.jsonl")
    assert fp["split"] == "test" and fp["config"] is None
    assert fp["rows_total"] == fp["rows_used"] == 1066
    assert fp["limit"] is None and fp["seed"] == 0
    assert len(fp["sha256"]) == 64


@needs_data
def test_train_split_and_ids(data_dir):
    spec = make_spec("{source: rotten_tomatoes}")
    train = load_split(spec, "train")
    assert len(train.examples) == 8530
    assert train.examples[5].id == "train:5" and train.examples[5].index == 5
    assert train.examples[-1].text.startswith("things really get weird")
    assert train.fingerprint["split"] == "train"


@needs_data
def test_parquet_and_jsonl_identical(data_dir, tmp_path):
    # A folder holding only the parquet file (a symlink, the data stays in the shared folder).
    folder = tmp_path / "rt_parquet"
    folder.mkdir()
    (folder / "test.parquet").symlink_to(data_dir / "rotten_tomatoes" / "test.parquet")
    from_jsonl = load_eval_split(make_spec("{source: rotten_tomatoes}"))
    from_parquet = load_eval_split(make_spec(f"{{source: {folder}}}"))
    direct_file = load_eval_split(make_spec(f"{{source: {data_dir / 'rotten_tomatoes' / 'test.parquet'}}}"))
    assert from_parquet.fingerprint["resolved"].endswith("test.parquet")
    assert from_parquet.examples == from_jsonl.examples
    assert [e.fields for e in from_parquet.examples] == [e.fields for e in from_jsonl.examples]
    assert from_parquet.fingerprint["sha256"] == from_jsonl.fingerprint["sha256"]
    assert direct_file.fingerprint["sha256"] == from_jsonl.fingerprint["sha256"]


@needs_data
def test_go_emotions_multi_label_config_fallback(data_dir):
    spec = make_spec(
        "{source: google-research-datasets/go_emotions, config: simplified, label_field: labels}",
        labels=names_yaml(GO_EMOTIONS),
        task="multi_label",
    )
    split = load_eval_split(spec)
    assert len(split.examples) == 5427
    assert split.fingerprint["resolved"] == str(data_dir / "go_emotions" / "test.jsonl")
    assert split.fingerprint["config"] == "simplified"
    assert split.examples[0].gold == ("sadness",)
    validation = load_split(spec, "validation")
    assert validation.examples[1].gold == ("approval", "neutral")
    assert all(isinstance(e.gold, tuple) and e.gold for e in split.examples)
    # Golds are ordered as in the labels list.
    for e in split.examples:
        assert list(e.gold) == sorted(e.gold, key=GO_EMOTIONS.index)


@needs_data
def test_emotion_ints_to_names(data_dir):
    spec = make_spec("{source: dair-ai/emotion, config: split}", labels=names_yaml(EMOTIONS))
    split = load_eval_split(spec)
    assert len(split.examples) == 2000
    assert split.examples[0].gold == "sadness"
    assert split.examples[3].gold == "joy"
    assert Counter(e.gold for e in split.examples) == {
        "sadness": 581, "joy": 695, "love": 159, "anger": 275, "fear": 224, "surprise": 66,
    }


@needs_data
def test_stratified_limit(data_dir):
    spec = make_spec("{source: dair-ai/emotion}", labels=names_yaml(EMOTIONS))
    full = Counter(e.gold for e in load_eval_split(spec).examples)
    sample = load_split(spec, "test", limit=200, seed=0)
    assert len(sample.examples) == 200
    counts = Counter(e.gold for e in sample.examples)
    for label, n in full.items():
        assert abs(counts[label] - 200 * n / 2000) < 1  # proportional, largest-remainder rounding
    indexes = [e.index for e in sample.examples]
    assert indexes == sorted(indexes)
    assert all(e.id == f"test:{e.index}" for e in sample.examples)
    fp = sample.fingerprint
    assert fp["rows_total"] == 2000 and fp["rows_used"] == 200 and fp["limit"] == 200

    again = load_split(spec, "test", limit=200, seed=0)
    assert again.examples == sample.examples
    assert again.fingerprint == sample.fingerprint
    other = load_split(spec, "test", limit=200, seed=1)
    assert [e.id for e in other.examples] != [e.id for e in sample.examples]
    assert other.fingerprint["sha256"] != sample.fingerprint["sha256"]
    assert Counter(e.gold for e in other.examples) == counts


@needs_data
def test_limit_from_spec_and_override(data_dir):
    spec = make_spec("{source: rotten_tomatoes, limit: 50, seed: 3}")
    split = load_eval_split(spec)
    assert len(split.examples) == 50
    assert Counter(e.gold for e in split.examples) == {"positive": 25, "negative": 25}
    assert split.fingerprint["seed"] == 3 and split.fingerprint["limit"] == 50
    assert len(load_eval_split(spec, limit=11).examples) == 11
    everything = load_split(spec, "test", limit=5000)
    assert everything.fingerprint["rows_used"] == 1066
    assert [e.index for e in everything.examples] == list(range(1066))


@needs_data
def test_limit_odd_total_is_exact(data_dir):
    spec = make_spec("{source: rotten_tomatoes}")
    for limit in (1, 7, 99, 1065):
        assert len(load_split(spec, "test", limit=limit).examples) == limit


@needs_data
def test_hub_id_not_in_mirror(data_dir):
    spec = make_spec("{source: someone/no_such_dataset, config: cfg}")
    with pytest.raises(HarnessError) as err:
        load_eval_split(spec)
    message = str(err.value)
    assert f"{data_dir / 'no_such_dataset' / 'cfg'}/test.{{jsonl," in message
    assert f"{data_dir / 'someone' / 'no_such_dataset'}/test.{{jsonl," in message
    assert "HARNESS_DATA_DIR" in message


@needs_data
def test_missing_split_in_mirror_lists_splits(data_dir):
    spec = make_spec(
        "{source: fancyzhx/ag_news}", labels="[{name: World}, {name: Sports}, {name: Business}, {name: Sci/Tech}]"
    )
    assert len(load_eval_split(spec).examples) == 7600
    with pytest.raises(HarnessError) as err:
        load_split(spec, "train")
    message = str(err.value)
    assert "'train'" in message and "Splits in" in message and ": test" in message


# ---------------------------------------------------------------------------------------------
# Mirror layouts and local files built in tmp_path


def test_owner_name_layout_with_config(tmp_path, monkeypatch):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(6)]
    write_jsonl(tmp_path / "mirror" / "acme" / "reviews" / "cfg" / "test.jsonl", rows)
    write_jsonl(tmp_path / "mirror" / "acme" / "reviews" / "train.jsonl", rows[:4])
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "mirror"))
    spec = make_spec("{source: acme/reviews, config: cfg}")
    test = load_eval_split(spec)
    assert test.fingerprint["resolved"] == str(tmp_path / "mirror" / "acme" / "reviews" / "cfg" / "test.jsonl")
    assert [e.gold for e in test.examples] == ["negative", "positive"] * 3
    train = load_split(spec, "train")  # not in the config folder: falls back to the folder above
    assert len(train.examples) == 4
    assert train.fingerprint["resolved"] == str(tmp_path / "mirror" / "acme" / "reviews" / "train.jsonl")


def test_local_jsonl_file(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    path = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"title": "A", "body": "good", "y": "pos"}, {"title": "B", "body": "bad", "y": "neg"}],
    )
    path.write_text(path.read_text() + "\n   \n", encoding="utf-8")  # blank lines are skipped
    spec = make_spec(
        f"{{source: {path}, text_field: [title, body], text_separator: ': ', label_field: y, "
        f"label_map: {{pos: positive, neg: negative}}}}"
    )
    split = load_eval_split(spec)
    assert [(e.id, e.text, e.gold) for e in split.examples] == [
        ("test:0", "A: good", "positive"), ("test:1", "B: bad", "negative"),
    ]
    assert split.fingerprint["resolved"] == str(path)
    # A single file is only the evaluated split.
    with pytest.raises(HarnessError, match="single file"):
        load_split(spec, "train")


def test_local_csv_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    folder = tmp_path / "csvdata"
    folder.mkdir()
    with open(folder / "test.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([["fine, really", "1"], ["multi\nline", "0"], ["named", "positive"]])
    (folder / "train.csv").write_text("text,label\nx,0\ny,1\n", encoding="utf-8")
    spec = make_spec(f"{{source: {folder}}}")
    split = load_eval_split(spec)
    assert [(e.text, e.gold) for e in split.examples] == [
        ("fine, really", "positive"), ("multi\nline", "negative"), ("named", "positive"),
    ]
    assert split.examples[0].fields == {"text": "fine, really", "label": "1"}
    assert len(load_split(spec, "train").examples) == 2
    with pytest.raises(HarnessError) as err:
        load_split(spec, "validation")
    assert "test" in str(err.value) and "train" in str(err.value) and "validation" in str(err.value)


def test_relative_source_resolves_against_spec_folder_or_cwd(tmp_path, monkeypatch):
    from harness.spec import load_spec

    write_jsonl(tmp_path / "specs" / "data" / "test.jsonl", [{"text": "a", "label": 1}])
    spec_file = tmp_path / "specs" / "task.yaml"
    spec_file.write_text(
        "name: t\ndataset: {source: data}\nlabels: " + RT_LABELS + "\nprompts: [{name: p, template: t.j2}]\n",
        encoding="utf-8",
    )
    split = load_eval_split(load_spec(spec_file))
    assert split.fingerprint["resolved"] == str(tmp_path / "specs" / "data" / "test.jsonl")
    assert split.examples[0].gold == "positive"
    # Without a spec path (parse_spec), relative sources resolve against the current directory.
    monkeypatch.chdir(tmp_path / "specs")
    assert load_eval_split(make_spec("{source: data/test.jsonl}")).examples[0].text == "a"


def test_label_map_int_keys_and_string_values(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": "1"}, {"text": "b", "label": 0}])
    spec = make_spec(f"{{source: {path}, label_map: {{0: negative, 1: positive}}}}")
    assert [e.gold for e in load_eval_split(spec).examples] == ["positive", "negative"]
    spec = make_spec(f"{{source: {path}, label_map: {{'0': negative, '1': positive}}}}")
    assert [e.gold for e in load_eval_split(spec).examples] == ["positive", "negative"]


def test_multi_label_local_ints_dedup_and_order(tmp_path):
    path = write_jsonl(
        tmp_path / "test.jsonl",
        [{"text": "a", "labels": [2, 0, 2]}, {"text": "b", "labels": ["c", "b"]}, {"text": "c", "labels": []}],
    )
    spec = make_spec(
        f"{{source: {path}, label_field: labels}}", labels="[{name: a}, {name: b}, {name: c}]",
        task="multi_label",
    )
    assert [e.gold for e in load_eval_split(spec).examples] == [("a", "c"), ("b", "c"), ()]


def test_sha256_depends_on_rows_not_format(tmp_path):
    rows = [{"text": "x", "label": 0}, {"text": "y", "label": 1}]
    a = load_eval_split(make_spec(f"{{source: {write_jsonl(tmp_path / 'a.jsonl', rows)}}}"))
    (tmp_path / "b.csv").write_text("label,text\n0,x\n1,y\n", encoding="utf-8")
    b = load_eval_split(make_spec(f"{{source: {tmp_path / 'b.csv'}}}"))
    assert a.fingerprint["sha256"] == b.fingerprint["sha256"]
    rows[1]["text"] = "z"
    c = load_eval_split(make_spec(f"{{source: {write_jsonl(tmp_path / 'c.jsonl', rows)}}}"))
    assert c.fingerprint["sha256"] != a.fingerprint["sha256"]


# ---------------------------------------------------------------------------------------------
# Errors


def test_bad_json_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1\n', encoding="utf-8")
    with pytest.raises(HarnessError, match=rf"{path}:2: invalid JSON"):
        load_eval_split(make_spec(f"{{source: {path}}}"))


def test_unknown_label_value(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 7}])
    with pytest.raises(HarnessError) as err:
        load_eval_split(make_spec(f"{{source: {path}}}"))
    message = str(err.value)
    assert f"{path}:2" in message and "'label'" in message and "7" in message
    assert "negative, positive" in message and "0..1" in message

    path = write_jsonl(tmp_path / "t2.jsonl", [{"text": "a", "label": "meh"}])
    with pytest.raises(HarnessError) as err:
        load_eval_split(make_spec(f"{{source: {path}, label_map: {{good: positive, bad: negative}}}}"))
    assert f"{path}:1" in str(err.value) and "'good', 'bad'" in str(err.value)


def test_unknown_label_in_csv_names_line(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("text,label\na,0\nb,neutral\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=rf"{path}:3: field 'label'.*'neutral'"):
        load_eval_split(make_spec(f"{{source: {path}}}"))


def test_missing_fields(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": 0}, {"sentence": "b", "label": 1}])
    with pytest.raises(HarnessError) as err:
        load_eval_split(make_spec(f"{{source: {path}}}"))
    assert f"{path}:2" in str(err.value) and "'text'" in str(err.value) and "sentence" in str(err.value)

    path = write_jsonl(tmp_path / "t2.jsonl", [{"text": "a"}])
    with pytest.raises(HarnessError, match=rf"{path}:1: field 'label' .*missing"):
        load_eval_split(make_spec(f"{{source: {path}}}"))


def test_multi_label_needs_list(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": "a"}])
    spec = make_spec(f"{{source: {path}}}", labels="[{name: a}, {name: b}]", task="multi_label")
    with pytest.raises(HarnessError, match=rf"{path}:1: field 'label' .*multi_label.*list"):
        load_eval_split(spec)
    single = make_spec(f"{{source: {write_jsonl(tmp_path / 'l.jsonl', [{'text': 'a', 'label': [0]}])}}}")
    with pytest.raises(HarnessError, match="single_label"):
        load_eval_split(single)


def test_missing_split_file_lists_splits(tmp_path):
    write_jsonl(tmp_path / "ds" / "test.jsonl", [{"text": "a", "label": 0}])
    write_jsonl(tmp_path / "ds" / "validation.jsonl", [{"text": "a", "label": 0}])
    spec = make_spec(f"{{source: {tmp_path / 'ds'}}}")
    with pytest.raises(HarnessError) as err:
        load_split(spec, "train")
    message = str(err.value)
    assert "'train'" in message and "test, validation" in message


def test_missing_local_path(tmp_path):
    with pytest.raises(HarnessError, match="no such file or folder"):
        load_eval_split(make_spec(f"{{source: {tmp_path / 'nope.jsonl'}}}"))


@pytest.mark.skipif(
    importlib.util.find_spec("datasets") is not None,
    reason="`datasets` is installed; the real hub path needs the network",
)
def test_hub_without_datasets_package(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    with pytest.raises(HarnessError, match=r"harness\[hub\]"):
        load_eval_split(make_spec("{source: someone/some_dataset}"))


# ---------------------------------------------------------------------------------------------
# Few-shot draws


def _pool(n_per_label: int, labels=("a", "b", "c")) -> list[Example]:
    pool = []
    for i in range(n_per_label * len(labels)):
        pool.append(Example(id=f"train:{i}", index=i, text=f"text {i}", gold=labels[i % len(labels)]))
    return pool


def test_draw_shots_stratified_and_deterministic():
    pool = _pool(50)
    target = Example(id="test:0", index=0, text="query", gold="a")
    shots = draw_shots(pool, 6, 0, target)
    assert len(shots) == 6
    assert Counter(s.gold for s in shots) == {"a": 2, "b": 2, "c": 2}
    assert len({s.id for s in shots}) == 6
    assert draw_shots(pool, 6, 0, target) == shots
    assert draw_shots(list(pool), 6, 0, target) == shots  # same content, new list object
    other = Example(id="test:1", index=1, text="query 2", gold="a")
    assert [s.id for s in draw_shots(pool, 6, 0, other)] != [s.id for s in shots]
    assert [s.id for s in draw_shots(pool, 6, 1, target)] != [s.id for s in shots]
    assert draw_shots(pool, 0, 0, target) == []
    # k not a multiple of the label count: labels differ by at most one.
    counts = Counter(s.gold for s in draw_shots(pool, 7, 0, target))
    assert sum(counts.values()) == 7 and max(counts.values()) - min(counts.values()) <= 1


def test_draw_shots_excludes_same_id_and_text():
    pool = _pool(3, labels=("a", "b"))  # 6 examples
    same_text = Example(id="test:9", index=9, text="  TEXT 2 ", gold="a")
    for seed in range(20):
        target = pool[seed % 6]
        shots = draw_shots(pool, 5, seed, target)
        assert len(shots) == 5 and target not in shots
        assert all(s.id != target.id for s in shots)
        assert "train:2" not in {s.id for s in draw_shots(pool, 5, seed, same_text)}
    # A pool too small for k returns every eligible example once.
    assert len(draw_shots(pool, 10, 0, pool[0])) == 5


def test_draw_shots_multi_label_by_first_label():
    pool = [
        Example(id=f"train:{i}", index=i, text=f"t{i}", gold=(("x", "y") if i % 2 else ("y",)))
        for i in range(20)
    ]
    shots = draw_shots(pool, 4, 0, Example(id="test:0", index=0, text="q", gold=("x",)))
    assert Counter(s.gold[0] for s in shots) == {"x": 2, "y": 2}


@needs_data
def test_draw_shots_on_the_real_pool(data_dir):
    # how fast: bench/data_load.py (speed is a benchmark's, not a test's)
    spec = make_spec("{source: rotten_tomatoes}")
    pool = load_split(spec, "train").examples
    evaluated = load_eval_split(spec).examples
    draws = [draw_shots(pool, 8, 0, e) for e in evaluated]
    assert all(len(d) == 8 and Counter(s.gold for s in d) == {"positive": 4, "negative": 4} for d in draws)
    assert len({tuple(s.id for s in d) for d in draws}) > 1000  # different per example


# ---------------------------------------------------------------------------------------------
# Nested samples: every limit is a prefix of one seeded, stratified order


def _toy(labels: str) -> list[Example]:
    """One example per character of `labels` ("AABC" -> golds A, A, B, C), in row order."""
    return [Example(id=f"t:{i}", index=i, text=f"x{i}", gold=g, fields={}) for i, g in enumerate(labels)]


def test_order_two_labels_follows_largest_remainder_at_every_length():
    # 3 negatives and 2 positives. Exact shares at n = 1..5: (0.6, 0.4) (1.2, 0.8) (1.8, 1.2)
    # (2.4, 1.6) (3, 2); largest remainder gives (1,0) (1,1) (2,1) (2,2) (3,2): N P N P N.
    examples = _toy("PNNPN")
    order = stratified_order(examples, 0, ["N", "P"])
    assert [e.gold for e in order] == list("NPNPN")
    assert sorted(e.index for e in order) == [0, 1, 2, 3, 4]
    assert len(stratified_order(examples, 0, ["N", "P"], limit=3)) == 3


def test_order_equal_shares_tie_goes_to_the_label_named_first():
    # 2 and 2: at n = 1 both shares are 0.5 and both groups the same size: the first-named wins.
    assert [e.gold for e in stratified_order(_toy("NNPP"), 0, ["P", "N"])] == list("PNPN")
    assert [e.gold for e in stratified_order(_toy("NNPP"), 0, ["N", "P"])] == list("NPNP")


def test_order_alabama_paradox_three_labels():
    # A, B, C with 6, 6, 2 of 14 (the textbook Alabama paradox). Hamilton's quotas at n = 10 are
    # (4, 4, 2) and at n = 11 (5, 5, 1): C loses a seat, which no prefix can do. Hand-computed:
    # n=1 A (shares .43 .43 .14; A before B: same size, named first), n=2 B, n=3 C (remainder 6/14),
    # n=4 Hamilton says (2, 2, 0) while the prefix holds (1, 1, 1): A and B both fall due at n=5
    # (ceil(2 * 14 / 6)), C is at its upper quota ceil(4 * 2 / 14) = 1, so A; n=5 (2, 2, 1) = Hamilton
    # again with B; n=6 A, n=7 B, n=8 A, n=9 B, n=10 C, n=11 the paradox again: A; n=12 B, n=13 A,
    # n=14 B.
    examples = _toy("ABCABCABABABAB")  # sizes 6, 6, 2
    order = stratified_order(examples, 0, ["A", "B", "C"])
    assert "".join(e.gold for e in order) == "ABCABABABCABAB"
    counts = Counter()
    for n, e in enumerate(order, 1):
        counts[e.gold] += 1
        for label, size in {"A": 6, "B": 6, "C": 2}.items():  # within quota at every length
            assert n * size // 14 <= counts[label] <= -(-n * size // 14), (n, counts)


def test_order_within_a_label_is_one_seeded_shuffle():
    examples = _toy("N" * 20 + "P" * 20)
    a = [e.id for e in stratified_order(examples, 0, ["N", "P"])]
    assert a == [e.id for e in stratified_order(examples, 0, ["N", "P"])]
    assert a != [e.id for e in stratified_order(examples, 1, ["N", "P"])]
    negatives = [i for i in a if int(i[2:]) < 20]
    assert negatives != sorted(negatives, key=lambda i: int(i[2:]))  # shuffled, not row order


@needs_data
def test_limits_are_nested_and_stratified_at_every_prefix(data_dir):
    spec = make_spec("{source: rotten_tomatoes}")
    full = load_split(spec, "test")
    order = stratified_order(full.examples, 0, spec.label_names)
    assert len(order) == 1066 and len({e.id for e in order}) == 1066
    counts = Counter()
    for n, e in enumerate(order, 1):  # 533 / 533: the negatives lead on odd lengths (named first)
        counts[e.gold] += 1
        assert counts["negative"] == (n + 1) // 2 and counts["positive"] == n // 2, n
    previous: set[str] = set()
    for limit in (1, 7, 50, 99, 100, 300, 1065):
        ids = {e.id for e in load_split(spec, "test", limit=limit, seed=0).examples}
        assert len(ids) == limit and previous <= ids, limit
        assert ids == {e.id for e in order[:limit]}
        previous = ids
    emotion = make_spec("{source: dair-ai/emotion}", labels=names_yaml(EMOTIONS))
    small = {e.id for e in load_split(emotion, "test", limit=50, seed=0).examples}
    assert small <= {e.id for e in load_split(emotion, "test", limit=200, seed=0).examples}


@needs_data
def test_sample_is_the_same_in_another_process(data_dir, tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "from harness.data import load_split\n"
        "from harness.spec import parse_spec\n"
        "spec = parse_spec('name: t\\ndataset: {source: rotten_tomatoes}\\n"
        "labels: [{name: negative}, {name: positive}]\\nprompts: [{name: p, template: t.j2}]\\n')\n"
        "print(' '.join(e.id for e in load_split(spec, 'test', limit=40, seed=5).examples))\n"
    )
    here = [e.id for e in load_split(make_spec("{source: rotten_tomatoes}"), "test", limit=40, seed=5).examples]
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HARNESS_DATA_DIR": str(DATA_DIR)}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == here
