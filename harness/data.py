"""Dataset loading: a spec's `dataset` section -> a list of `Example`s with a fingerprint.

`spec.dataset.source` resolves, for each split, in this order:

1. A local path (absolute, or relative to the spec file's folder; to the current directory when the
   spec has no path). A file (`.jsonl`, `.json`, `.csv`, `.parquet`) is the evaluated split
   (`dataset.split`) and nothing else; a folder holds `{split}.jsonl` / `{split}.json` /
   `{split}.parquet` / `{split}.csv` (tried in that order).
2. A hub id (`owner/name` or a bare `name`). With `HARNESS_DATA_DIR=D` set, the split file is looked
   up in a local mirror: `D/name/config/`, `D/owner/name/config/` (when `dataset.config` is set), then
   `D/name/`, `D/owner/name/`. Nothing is downloaded.
3. Otherwise the Hugging Face hub, through `datasets.load_dataset` (the optional `harness[hub]` extra).

Rows become `Example(id="<split>:<row index>", ...)` with the gold label(s) mapped to label names.
Every problem with a file or a row raises a `HarnessError` that names the file, the line (JSONL, CSV)
or row (parquet, hub), the field and what is allowed.

The module imports only the standard library; pyarrow and datasets are imported when first needed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from harness.errors import HarnessError
from harness.records import Example, Gold

if TYPE_CHECKING:  # keep `import harness.data` free of pydantic and yaml
    from harness.spec import Spec

__all__ = ["Split", "load_split", "load_eval_split", "draw_shots", "DATA_DIR_ENV"]

DATA_DIR_ENV = "HARNESS_DATA_DIR"
# Order in which a folder's split files are tried: JSONL first, since it needs no pyarrow import.
SPLIT_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_INT_TEXT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Split:
    examples: list[Example]
    # source, resolved (file path or "hub:owner/name@revision"), config, split, rows_total, rows_used,
    # limit, seed, sha256 (of the canonical JSON of the rows used: id, text, gold)
    fingerprint: dict


# ---------------------------------------------------------------------------------------------
# Public API


def load_split(spec: "Spec", split: str, *, limit: int | None = None, seed: int = 0) -> Split:
    """Load one split of the spec's dataset; with `limit`, a seeded label-stratified sample of it."""
    if limit is not None and limit < 1:
        raise HarnessError(f"limit must be at least 1, got {limit}")
    ds = spec.dataset
    location = _resolve(spec, split)
    # CSV cells are always text, so there "1" may stand for the integer 1.
    mapper = _GoldMapper(spec, csv_text=isinstance(location, Path) and location.suffix.lower() == ".csv")
    if isinstance(location, Path):
        resolved = str(location)
        rows = _read_file(location)
    else:
        resolved = f"hub:{ds.source}@{ds.revision or 'main'}"
        rows = _read_hub(spec, split, resolved)

    examples: list[Example] = []
    for index, (where, row) in enumerate(rows):
        text = _text_of(spec, row, where)
        gold = mapper(row, where)
        if gold is None:  # dataset.keep_single_labels: a row with several labels (or none) is left out
            continue
        examples.append(Example(id=f"{split}:{index}", index=index, text=text, gold=gold, fields=row))

    total = len(examples)
    if limit is not None and limit < total:
        examples = stratified_sample(examples, limit, seed, spec.label_names)
    fingerprint = {
        "source": ds.source,
        "resolved": resolved,
        "config": ds.config,
        "split": split,
        "rows_total": total,
        "rows_used": len(examples),
        "limit": limit,
        "seed": seed,
        "sha256": _rows_sha256(examples),
    }
    return Split(examples=examples, fingerprint=fingerprint)


def load_eval_split(spec: "Spec", limit: int | None = None) -> Split:
    """The evaluated split (`dataset.split`), sampled to `limit` (else `dataset.limit`) rows."""
    ds = spec.dataset
    split = load_split(spec, ds.split, limit=limit if limit is not None else ds.limit, seed=ds.seed)
    if not split.examples:  # an empty split would "pass" every check with nothing evaluated
        where = f"{spec.path}: dataset.split" if spec.path else "dataset.split"
        raise HarnessError(
            f"{where}: the evaluated split {ds.split!r} ({split.fingerprint['resolved']}) has no rows; "
            f"point dataset.source/split at a file with examples"
        )
    return split


def draw_shots(pool: list[Example], k: int, seed: int, for_example: Example) -> list[Example]:
    """`k` few-shot examples from `pool` for `for_example`, label-stratified and deterministic.

    Labels (multi-label: each example's first label) are visited round-robin in an order shuffled
    by (seed, for_example.id); each label yields its examples in a random order from the same
    generator. Examples with the same id as `for_example`, or the same text (ignoring case and
    whitespace), are never drawn. Fewer than `k` come back only when the pool has fewer eligible
    examples. The per-label grouping of `pool` is computed once per pool object and cached.
    """
    if k < 0:
        raise HarnessError(f"few-shot k must be >= 0, got {k}")
    if k == 0 or not pool:
        return []
    index = _pool_index(pool)
    rng = random.Random(_int_seed("shots", seed, for_example.id))
    own_id = for_example.id
    own_text = _text_key(for_example.text)

    labels = list(index.labels)
    rng.shuffle(labels)
    streams = [(index.groups[label], _lazy_permutation(len(index.groups[label]), rng)) for label in labels]
    chosen: list[Example] = []
    while streams and len(chosen) < k:
        alive = []
        for members, order in streams:
            if len(chosen) >= k:
                break
            for position in order:  # this label's next eligible example, if any is left
                if pool[members[position]].id == own_id or index.text_keys[members[position]] == own_text:
                    continue
                chosen.append(pool[members[position]])
                alive.append((members, order))
                break
        streams = alive
    return chosen


# ---------------------------------------------------------------------------------------------
# Resolving the source


def _resolve(spec: "Spec", split: str) -> Path | None:
    """The file holding `split`, or None for the Hugging Face hub."""
    ds = spec.dataset
    source = ds.source
    base = spec.path.parent if spec.path is not None else Path.cwd()
    local = Path(source).expanduser()
    if not local.is_absolute():
        local = base / local

    if local.is_file():
        if split != ds.split:
            raise HarnessError(
                f"dataset.source {source!r} is a single file ({local}), which holds only the evaluated "
                f"split {ds.split!r}; split {split!r} was asked for (few-shot examples, baselines or "
                f"thresholds). Make the source a folder with {split}.jsonl / {split}.csv / "
                f"{split}.parquet next to {ds.split}.*, or set dataset.train_split (and few_shot.split, "
                f"dataset.validation_split) to null."
            )
        return local
    if local.is_dir():
        found = _split_file(local, split)
        if found is None:
            raise HarnessError(
                f"{local}: no file for split {split!r} (tried {_tried_names(split)}). "
                f"{_splits_message([local])}"
            )
        return found

    if not _looks_like_hub_id(source):
        raise HarnessError(
            f"dataset.source {source!r}: no such file or folder ({local}). Give an existing "
            f"JSONL/CSV/parquet file or folder (relative paths resolve against "
            f"{'the spec folder' if spec.path is not None else 'the current directory'}), or a hub "
            f"id `owner/name`."
        )

    data_dir = os.environ.get(DATA_DIR_ENV, "").strip()
    if not data_dir:
        return None
    # Absolute now, against the working directory the user ran from: a found file must stay found.
    root = Path(data_dir).expanduser().absolute()
    parts = source.split("/")
    bases = [root / parts[-1]] + ([root / parts[0] / parts[1]] if len(parts) == 2 else [])
    folders = ([b / ds.config for b in bases] if ds.config else []) + bases
    for folder in folders:
        found = _split_file(folder, split)
        if found is not None:
            return found
    suffixes = ",".join(suffix.lstrip(".") for suffix in SPLIT_SUFFIXES)
    tried = [f"{folder}/{split}.{{{suffixes}}}" for folder in folders]
    existing = [folder for folder in folders if folder.is_dir()]
    found_note = _splits_message(existing) if existing else "None of these folders exists."
    config_note = f" (config {ds.config!r})" if ds.config else ""
    raise HarnessError(
        f"dataset {source!r}{config_note}: no file for split {split!r} under {DATA_DIR_ENV}={data_dir}. "
        f"{found_note} Tried:\n  " + "\n  ".join(tried) + "\n"
        f"Put the split file in one of those folders (e.g. {folders[0]}/{split}.jsonl), point "
        f"dataset.source at a local file or folder, or unset {DATA_DIR_ENV} to load from the Hugging "
        f"Face hub (needs `pip install 'harness[hub]'`)."
    )


def _looks_like_hub_id(source: str) -> bool:
    if not _HUB_ID.match(source):
        return False
    return not source.lower().endswith(SPLIT_SUFFIXES)


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in SPLIT_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _tried_names(split: str) -> str:
    return ", ".join(f"{split}{suffix}" for suffix in SPLIT_SUFFIXES)


def _splits_message(folders: list[Path]) -> str:
    parts = []
    for folder in folders:
        entries = sorted(folder.iterdir())
        names = sorted({p.stem for p in entries if p.is_file() and p.suffix.lower() in SPLIT_SUFFIXES})
        note = f"Splits in {folder}: {', '.join(names) if names else 'none'}"
        subfolders = [p.name for p in entries if p.is_dir() and not p.name.startswith(".")]
        if subfolders:
            note += f" (subfolders, e.g. configs: {', '.join(subfolders)})"
        parts.append(note + ".")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Reading rows. Each reader yields (where, row): `where` locates the row in error messages.


def _read_file(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) for each row of a data file, as they are read: a JSONL file streams line by
    line, so a 100k-row split never holds the file's text, its lines and its rows at once."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            yield from _read_parquet(path)
            return
        if suffix == ".csv":
            yield from _read_csv(path)
            return
        if suffix in (".jsonl", ".json", ".ndjson"):
            yield from _read_jsonl(path)
            return
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
    except RecursionError:
        raise HarnessError(f"{path}: JSON nested too deeply to be a dataset row") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a folder, expected a data file") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the file: {exc}") from None
    raise HarnessError(
        f"{path}: unsupported file type {path.suffix!r}; use .jsonl (one JSON object a line), "
        f".csv (with a header row) or .parquet"
    )


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as f:
        lead = ""  # the whitespace before the first character, kept: JSON errors name a line
        first = f.read(1)
        while first and first.isspace():
            lead, first = lead + first, f.read(1)
        text = lead + first + f.read() if first == "[" else None
    if text is not None:  # a .json file holding one array of objects
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        rows = []
        for number, row in enumerate(data, 1):
            where = f"{path}: item {number}"
            if not isinstance(row, dict):
                raise HarnessError(f"{where}: expected a JSON object of fields, got {_kind(row)}")
            rows.append((where, row))
        yield from rows
        return

    loads = json.loads
    with open(path, encoding="utf-8") as f:
        yield from _jsonl_rows(path, f, loads)


def _jsonl_rows(path: Path, f, loads) -> Iterator[tuple[str, dict]]:
    for lineno, line in enumerate(f, 1):  # universal newlines, like the text's split on "\n"
        if not line.strip():
            continue
        try:
            row = loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(
                f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); every line of a "
                f"JSONL file must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise HarnessError(
                f"{path}:{lineno}: expected a JSON object of fields on each line, got {_kind(row)}"
            )
        yield f"{path}:{lineno}", row


def _read_csv(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            if not reader.fieldnames:
                raise HarnessError(f"{path}: empty CSV; the first line must be a header of field names")
            width = len(reader.fieldnames)
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    raise HarnessError(
                        f"{where}: the row has {width + len(row[None])} values but the header has "
                        f"{width} columns"
                    )
                rows.append((where, row))
        except csv.Error as exc:
            raise HarnessError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from None
    return rows


def _read_parquet(path: Path) -> list[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise HarnessError(f"{path}: reading parquet needs pyarrow (`pip install pyarrow`)") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for unreadable files
        raise HarnessError(f"{path}: cannot read parquet: {exc}") from None
    return [(f"{path}: row {number}", row) for number, row in enumerate(table.to_pylist(), 1)]


def _read_hub(spec: "Spec", split: str, resolved: str) -> list[tuple[str, dict]]:
    ds = spec.dataset
    try:
        import datasets
    except ImportError:
        raise HarnessError(
            f"dataset {ds.source!r} is a Hugging Face hub id and {DATA_DIR_ENV} is not set, but the "
            f"`datasets` package is not installed. Run `pip install 'harness[hub]'`, or set "
            f"{DATA_DIR_ENV} to a local mirror folder holding {ds.source.split('/')[-1]}/{split}.jsonl, "
            f"or point dataset.source at a local file or folder."
        ) from None
    try:
        loaded = datasets.load_dataset(ds.source, ds.config, split=split, revision=ds.revision)
    except Exception as exc:  # the hub raises many kinds (not found, unknown split, network)
        raise HarnessError(
            f"cannot load {resolved}"
            + (f" (config {ds.config!r})" if ds.config else "")
            + f" split {split!r} from the Hugging Face hub: {type(exc).__name__}: {exc}. Check "
            f"dataset.source/config/revision and the split name, or set {DATA_DIR_ENV} to a local mirror."
        ) from exc
    where = f"{resolved}" + (f" ({ds.config})" if ds.config else "") + f" split {split}"
    return [(f"{where}: row {number}", dict(row)) for number, row in enumerate(loaded, 1)]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (list, tuple)):
        return f"a list ({_short(value)})"
    if isinstance(value, dict):
        return "an object"
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Rows -> text and gold


def _text_of(spec: "Spec", row: dict, where: str) -> str:
    ds = spec.dataset
    parts = []
    for name in ds.text_fields:
        if name not in row:
            raise HarnessError(
                f"{where}: field {name!r} (dataset.text_field) is missing; the row has fields: "
                f"{', '.join(map(str, row)) or 'none'}"
            )
        value = row[name]
        if value is None:
            raise HarnessError(f"{where}: field {name!r} (dataset.text_field) is null; it must be text")
        if isinstance(value, (dict, list, tuple, bool)):
            raise HarnessError(
                f"{where}: field {name!r} (dataset.text_field) is {_kind(value)}; it must be text"
            )
        parts.append(value if isinstance(value, str) else str(value))
    return parts[0] if len(parts) == 1 else ds.text_separator.join(parts)


class _GoldMapper:
    """Stored label values -> label names, following `dataset.label_map` or the labels list."""

    def __init__(self, spec: "Spec", csv_text: bool = False):
        self.csv_text = csv_text
        self.field = spec.dataset.label_field
        self.names = spec.label_names
        self.order = {name: i for i, name in enumerate(self.names)}
        self.multi = spec.task == "multi_label"
        self.keep_single = spec.dataset.keep_single_labels
        label_map = spec.dataset.label_map
        self.table: dict[Any, str] = {}
        if label_map is not None:
            for key, name in label_map.items():
                self.table[key] = name
                if isinstance(key, int) and not isinstance(key, bool):
                    self.table.setdefault(str(key), name)
                elif isinstance(key, str) and _INT_TEXT.match(key.strip()):
                    self.table.setdefault(int(key), name)
            keys = ", ".join(repr(k) for k in label_map)
            self.allowed = f"the dataset.label_map keys: {keys}"
            self.mapped = True
        else:
            for i, name in enumerate(self.names):
                self.table[i] = name
                self.table[name] = name
            self.allowed = (
                f"an integer 0..{len(self.names) - 1} indexing the labels, or a label name: "
                f"{', '.join(self.names)}"
            )
            self.mapped = False

    def one(self, value: Any, where: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise HarnessError(
                f"{where}: field {self.field!r} has {_kind(value)}, which is not a label; allowed: "
                f"{self.allowed}"
            )
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        name = self.table.get(value)
        if name is None and isinstance(value, str):
            stripped = value.strip()
            name = self.table.get(stripped)
            if name is None and (self.csv_text or self.mapped) and _INT_TEXT.match(stripped):
                name = self.table.get(int(stripped))
        if name is None:
            raise HarnessError(
                f"{where}: field {self.field!r} has the value {value!r}, which is not a known label; "
                f"allowed: {self.allowed}"
            )
        return name

    def __call__(self, row: dict, where: str) -> Gold | None:
        if self.field not in row:
            raise HarnessError(
                f"{where}: field {self.field!r} (dataset.label_field) is missing; the row has fields: "
                f"{', '.join(map(str, row)) or 'none'}"
            )
        value = row[self.field]
        if not self.multi:
            if value is None:
                raise HarnessError(
                    f"{where}: field {self.field!r} is null; allowed: {self.allowed}"
                )
            if isinstance(value, (list, tuple)) and self.keep_single:
                return self.one(value[0], where) if len(value) == 1 else None
            if isinstance(value, (list, tuple)):
                raise HarnessError(
                    f"{where}: field {self.field!r} is {_kind(value)}, but the task is single_label "
                    f"(one label per row); set `task: multi_label` for lists of labels, or "
                    "`dataset.keep_single_labels: true` to use the rows with exactly one"
                )
            return self.one(value, where)

        if self.csv_text and isinstance(value, str):
            value = _csv_list(value, where, self.field)
        if not isinstance(value, (list, tuple)):
            raise HarnessError(
                f"{where}: field {self.field!r} is {_kind(value)}, but the task is multi_label: it must "
                f"be a list of labels, each {self.allowed}"
            )
        names = {self.one(item, where) for item in value}
        return tuple(sorted(names, key=self.order.__getitem__))


def _csv_list(cell: str, where: str, field: str) -> list:
    """A multi-label CSV cell: a JSON list (`["a", "b"]`, `[0, 3]`) or comma-separated values."""
    cell = cell.strip()
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{where}: field {field!r}: invalid JSON list ({exc.msg})") from None
        return value
    return [part.strip() for part in cell.split(",") if part.strip()]


# ---------------------------------------------------------------------------------------------
# Sampling and fingerprints


def _int_seed(*parts: Any) -> int:
    """A process-independent integer seed (str hash() is salted per process; sha256 is not)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _stratum(gold: Gold) -> str:
    if isinstance(gold, tuple):
        return gold[0] if gold else ""
    return gold


def stratified_sample(examples: list[Example], limit: int, seed: int, names: list[str]) -> list[Example]:
    """Exactly `limit` examples, in row order: the first `limit` of `stratified_order`.

    Being a prefix of one order is what makes samples nested: `--limit 50` is a subset of
    `--limit 300` (same seed), so a quick check replays from a fixture recorded at the larger size."""
    chosen = stratified_order(examples, seed, names, limit)
    chosen.sort(key=lambda e: e.index)
    return chosen


def stratified_order(examples: list[Example], seed: int, names: list[str], limit: int | None = None) -> list[Example]:
    """The first `limit` (default: all) examples of one seeded, label-stratified order.

    Each label's examples are shuffled once (seeded by (seed, label), so the order is the same in
    every process); position n takes the next example of the label that the largest-remainder
    (Hamilton) quotas for a sample of n add. With two labels that is always possible, so every
    prefix has exactly the largest-remainder quotas. With three or more, Hamilton's quotas can take
    a seat back as n grows (the Alabama paradox), which no prefix can follow; then position n goes
    to the label whose lower quota falls due first (earliest deadline) among those still under their
    upper quota, and later prefixes return to Hamilton's quotas as soon as they can. No label ever
    exceeds the ceiling of its exact share; one can fall an example below its floor, rarely (24 of
    443,413 prefixes over 1,500 random mixes of 3-12 labels). Quota ties go to the larger label,
    then the one named first in `names`."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(_stratum(example.gold), []).append(example)
    rank = {name: i for i, name in enumerate(names)}
    labels = sorted(groups, key=lambda g: (rank.get(g, len(rank)), g))
    size = {g: len(groups[g]) for g in labels}
    by_priority = sorted(labels, key=lambda g: (-size[g], rank.get(g, len(rank)), g))  # stable tie order
    total = len(examples)
    queues = {}
    for g in labels:
        queue = list(groups[g])
        random.Random(_int_seed("limit", seed, g)).shuffle(queue)
        queues[g] = queue
    count = {g: 0 for g in labels}
    order: list[Example] = []
    for n in range(1, min(total, total if limit is None else limit) + 1):
        target = largest_remainder(n, size, total, by_priority)
        behind = [g for g in labels if target[g] > count[g]]
        if len(behind) == 1:
            pick = behind[0]
        else:  # Alabama paradox: the earliest lower-quota deadline among labels under their upper quota
            open_ = [g for g in by_priority if count[g] + 1 <= -(-n * size[g] // total)]
            pick = min(open_, key=lambda g: (-(-(count[g] + 1) * total // size[g]),
                                             count[g] * total - n * size[g]))
        order.append(queues[pick][count[pick]])
        count[pick] += 1
    return order


def largest_remainder(n: int, size: dict[str, int], total: int, by_priority: list[str]) -> dict[str, int]:
    """Hamilton's apportionment of `n` among groups of `size` (out of `total`): floors of the exact
    shares, then one more each for the largest remainders (ties in `by_priority` order)."""
    quotas = {g: n * size[g] // total for g in by_priority}
    short = n - sum(quotas.values())
    for g in sorted(by_priority, key=lambda g: -(n * size[g] % total))[:short]:  # sort is stable
        quotas[g] += 1
    return quotas


def per_class_sample(examples: list[Example], k: int, seed: int, names: list[str]) -> list[Example]:
    """Exactly `k` examples of every label in `names` (single-label), seeded picks, row order: the
    few-shot train subsets of `kind: setfit` and of `harness curve --per-class`. A label with fewer
    than `k` examples is an error naming it (and its count), so the caller can say where."""
    groups: dict[str, list[Example]] = {name: [] for name in names}
    for example in examples:
        groups.setdefault(_stratum(example.gold), []).append(example)
    short = [f"{name!r} has {len(groups[name])}" for name in names if len(groups[name]) < k]
    if short:
        raise HarnessError(f"{k} examples per label needed, but label {', label '.join(short)}")
    chosen: list[Example] = []
    for name in names:
        rng = random.Random(_int_seed("per_class", seed, name))
        chosen.extend(rng.sample(groups[name], k))
    chosen.sort(key=lambda e: e.index)
    return chosen


def _rows_sha256(examples: list[Example]) -> str:
    """sha256 of the canonical JSON list of the rows used ({gold, id, text}), hashed one row at a
    time: the same bytes as dumping the whole list, without a copy of every text at once."""
    digest = hashlib.sha256(b"[")
    dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
    for i, e in enumerate(examples):
        row = {"gold": list(e.gold) if isinstance(e.gold, tuple) else e.gold, "id": e.id, "text": e.text}
        digest.update((b"," if i else b"") + dumps(row).encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Few-shot pool index


@dataclass(frozen=True)
class _PoolIndex:
    labels: tuple[str, ...]  # sorted, so the seeded shuffle does not depend on pool order
    groups: dict[str, list[int]]  # label -> positions in the pool
    text_keys: list[str]


_POOL_CACHE: dict[int, tuple[list[Example], int, _PoolIndex]] = {}
_POOL_CACHE_SIZE = 16


def _text_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _pool_index(pool: list[Example]) -> _PoolIndex:
    cached = _POOL_CACHE.get(id(pool))
    # The cache holds a reference to the pool, so its id cannot be reused while the entry lives.
    if cached is not None and cached[0] is pool and cached[1] == len(pool):
        return cached[2]
    groups: dict[str, list[int]] = {}
    for position, example in enumerate(pool):
        groups.setdefault(_stratum(example.gold), []).append(position)
    index = _PoolIndex(
        labels=tuple(sorted(groups)),
        groups=groups,
        text_keys=[_text_key(example.text) for example in pool],
    )
    if len(_POOL_CACHE) >= _POOL_CACHE_SIZE:
        _POOL_CACHE.pop(next(iter(_POOL_CACHE)))
    _POOL_CACHE[id(pool)] = (pool, len(pool), index)
    return index


def _lazy_permutation(n: int, rng: random.Random) -> Iterator[int]:
    """A uniformly random permutation of range(n), drawn lazily (sparse Fisher-Yates)."""
    swapped: dict[int, int] = {}
    for i in range(n):
        j = rng.randrange(i, n)
        value_i = swapped.get(i, i)
        value_j = swapped.get(j, j)
        swapped[j] = value_i
        yield value_j
