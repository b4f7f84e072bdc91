"""Small real-data fixtures for the baseline, curve and coverage tests: seeded, label-stratified
slices of the shared rotten_tomatoes and go_emotions files written to a temporary folder, and
specs pointing at them (so each test embeds a few hundred texts, not thousands)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "datasets")


def _rows(name: str, split: str) -> list[dict]:
    path = DATA_DIR / name / f"{split}.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _slice(rows: list[dict], n: int, key, seed: int) -> list[dict]:
    """n rows, the same share of each stratum as in `rows`, seeded."""
    rng = random.Random(seed)
    groups: dict = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    out = []
    for stratum in sorted(groups, key=str):
        members = groups[stratum]
        take = max(1, round(n * len(members) / len(rows)))
        out.extend(rng.sample(members, min(take, len(members))))
    rng.shuffle(out)
    return out[:n]


def write_subset(folder: Path, name: str, sizes: dict[str, int], key, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = _slice(_rows(name, split), n, key, seed)
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder


def rotten_tomatoes_spec(tmp: Path, *, train: int = 400, test: int = 120, baselines: str = "", extra: str = "") -> Path:
    data = write_subset(tmp / "rt", "rotten_tomatoes", {"train": train, "test": test}, key=lambda r: r["label"])
    shutil.copy(ROOT / "prompts" / "sentiment_label.j2", tmp / "sentiment_label.j2")
    spec = tmp / "rt.yaml"
    spec.write_text(f"""name: rt_small
dataset:
  source: {data}
  split: test
  train_split: train
  label_map: {{0: negative, 1: positive}}
labels:
  - {{name: negative, description: The reviewer dislikes the movie.}}
  - {{name: positive, description: The reviewer likes the movie.}}
prompts:
  - {{name: bare_label, template: sentiment_label.j2, mode: text}}
output: {{shape: label}}
{extra}
baselines:
{baselines}
""", encoding="utf-8")
    return spec


GO_LABELS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
]


def go_emotions_spec(tmp: Path, *, train: int = 400, validation: int = 150, test: int = 80, baselines: str = "") -> Path:
    data = write_subset(
        tmp / "go", "go_emotions", {"train": train, "validation": validation, "test": test},
        key=lambda r: r["labels"][0],
    )
    (tmp / "labels.j2").write_text("{% block user %}{{ text }}{% endblock %}", encoding="utf-8")
    labels = "\n".join(f"  - {{name: {name}}}" for name in GO_LABELS)
    spec = tmp / "go.yaml"
    spec.write_text(f"""name: go_small
task: multi_label
dataset:
  source: {data}
  split: test
  train_split: train
  validation_split: validation
  label_field: labels
labels:
{labels}
prompts:
  - {{name: label_list, template: labels.j2, mode: text}}
output: {{shape: labels}}
baselines:
{baselines}
""", encoding="utf-8")
    return spec
