"""Baselines on transformers sequence-classification models (no training here):

* hf_classifier — a task-specific classifier, e.g. `cardiffnlp/twitter-roberta-base-sentiment-latest`
  (negative / neutral / positive). `label_map` maps the model's labels to the spec's: fold several
  into one (their probabilities add up; multi-label: the largest counts) or drop one with null
  (its probability is removed and the rest renormalised), e.g. {negative: negative, positive:
  positive, neutral: null} for a 2-class task.
* nli_zero_shot — an NLI model, e.g. `facebook/bart-large-mnli`: each (text, hypothesis) pair with
  hypothesis = `hypothesis_template` filled with a label's name (or description) is scored by the
  entailment logit. Single-label: softmax of the entailment logits over the labels; multi-label:
  per label, softmax over (contradiction, entailment). The same arithmetic as transformers'
  zero-shot-classification pipeline.

Models load with `AutoModelForSequenceClassification.from_pretrained(model)`: a hub id (needs hub
access; HF_HUB_OFFLINE=1 uses the local hub cache only) or a local folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, Sequence, Union

from pydantic import Field, field_validator, model_validator

from harness.baselines.base import Baseline, EncoderOptions, softmax
from harness.errors import FieldProblem, HarnessError

if TYPE_CHECKING:
    import numpy as np


class _TransformersBaseline(EncoderOptions, Baseline):
    trainable = False
    requires = ("torch", "transformers")
    install_hint = "pip install torch==2.13.0 'harness[baselines]'"
    example_model: ClassVar[str] = ""  # shown when `model:` is missing

    model: Optional[str] = Field(
        None,
        description="Required: a transformers sequence-classification model id or folder.",
    )
    max_length: Optional[int] = Field(None, ge=8, description="Truncate inputs to this many tokens.")

    _loaded: bool = False
    _tokenizer: Any = None
    _net: Any = None
    _device: Any = None
    _max_tokens: Any = None
    _id2label: Any = None

    @model_validator(mode="after")
    def _has_model(self) -> "_TransformersBaseline":
        if not self.model:
            raise FieldProblem(
                ("kind",), f"{self.kind} needs `model:` (a hub id or local folder, e.g. {self.example_model})"
            )
        return self

    def _load(self) -> None:
        if self._loaded:
            return
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        name = self.model
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(name)
            self._net = AutoModelForSequenceClassification.from_pretrained(name)
        except Exception as exc:  # OSError, ValueError, hub errors...
            raise HarnessError(
                f"baseline {self.id}: cannot load {name!r} as a transformers sequence "
                f"classifier: {type(exc).__name__}: {exc}. Give a local folder, or a hub id with "
                f"hub access (e.g. cardiffnlp/twitter-roberta-base-sentiment-latest, "
                f"facebook/bart-large-mnli)."
            ) from exc
        self._device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._net.to(self._device).eval()
        limit = getattr(self._tokenizer, "model_max_length", 512) or 512
        self._max_tokens = self.max_length or min(int(limit), 512)
        self._id2label = {int(i): str(n) for i, n in self._net.config.id2label.items()}
        self._loaded = True
        self._after_load()

    def _after_load(self) -> None:
        pass

    def _logits(self, first: Sequence[str], second: Sequence[str] | None = None) -> "np.ndarray":
        """Logits for each text (or text pair), in batches of similar length (less padding)."""
        import numpy as np
        import torch

        n = len(first)
        order = sorted(range(n), key=lambda i: len(first[i]) + (len(second[i]) if second else 0))
        out = np.zeros((n, self._net.config.num_labels), dtype=np.float64)
        size = self.batch_size
        for start in range(0, n, size):
            rows = order[start:start + size]
            args = [[first[i] for i in rows]]
            if second is not None:
                args.append([second[i] for i in rows])
            batch = self._tokenizer(
                *args, padding=True, truncation="only_first" if second is not None else True,
                max_length=self._max_tokens, return_tensors="pt",
            ).to(self._device)
            with torch.inference_mode():
                logits = self._net(**batch).logits
            out[rows] = logits.float().cpu().numpy()
        return out


class HFClassifier(_TransformersBaseline):
    """A task-specific transformers classifier (no training here); `label_map` maps its labels to
    the spec's."""

    kind: Literal["hf_classifier"]
    example_model = "cardiffnlp/twitter-roberta-base-sentiment-latest"
    label_map: Optional[dict[Union[int, str], Optional[str]]] = Field(
        None,
        description="The model's label (name from its config, or index) -> a label of this spec, or "
        "null to drop it (its probability is removed and the rest renormalised). Several model "
        "labels may fold into one. Default: the model's labels must be the spec's.",
    )

    _targets: Any = None
    _unreached: Any = None

    def spec_problems(self, spec: Any) -> list[tuple[tuple, str]]:
        names = set(spec.label_names)
        problems = [
            (("label_map", key),
             f"maps the model's label {key!r} to {value!r}, which is not in labels "
             f"({', '.join(spec.label_names)}); use null to drop it")
            for key, value in (self.label_map or {}).items()
            if value is not None and value not in names
        ]
        return problems + super().spec_problems(spec)

    def _after_load(self) -> None:
        """Build the model-label -> spec-label table (None = dropped)."""
        spec_labels = {name.lower(): name for name in self.labels}
        label_map = self.label_map
        model_labels = [self._id2label[i] for i in sorted(self._id2label)]
        self._targets: list[str | None] = []
        if label_map is None:
            for name in model_labels:
                target = spec_labels.get(name.lower())
                if target is None:
                    raise HarnessError(
                        f"baseline {self.id}: model {self.model!r} has labels "
                        f"{', '.join(model_labels)}, which are not all labels of the spec "
                        f"({', '.join(self.labels)}); add `label_map:` mapping each model label to a "
                        f"spec label or to null to drop it"
                    )
                self._targets.append(target)
        else:
            keys = {str(k).lower(): v for k, v in label_map.items()}
            for index, name in enumerate(model_labels):
                if name.lower() in keys:
                    self._targets.append(keys.pop(name.lower()))
                elif str(index) in keys:
                    self._targets.append(keys.pop(str(index)))
                else:
                    raise HarnessError(
                        f"baseline {self.id}: label_map has no entry for the model's label "
                        f"{name!r} (index {index}); the model's labels are {', '.join(model_labels)}. "
                        f"Map it to a spec label, or to null to drop it."
                    )
            if keys:
                raise HarnessError(
                    f"baseline {self.id}: label_map names {', '.join(map(repr, keys))}, which "
                    f"the model {self.model!r} does not have; its labels are {', '.join(model_labels)}"
                )
        if all(t is None for t in self._targets):
            raise HarnessError(f"baseline {self.id}: label_map drops every model label")
        self._unreached = [name for name in self.labels if name not in self._targets]

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        import numpy as np

        self._load()
        logits = self._logits(list(texts))
        index = {name: j for j, name in enumerate(self.labels)}
        out = np.zeros((len(texts), len(self.labels)))
        if self.multi:
            model_proba = 1.0 / (1.0 + np.exp(-logits))
            for k, target in enumerate(self._targets):
                if target is not None:
                    out[:, index[target]] = np.maximum(out[:, index[target]], model_proba[:, k])
            return out
        model_proba = softmax(logits, axis=1)
        for k, target in enumerate(self._targets):
            if target is not None:
                out[:, index[target]] += model_proba[:, k]
        total = out.sum(axis=1, keepdims=True)
        return out / np.where(total > 0, total, 1.0)

    def stats(self) -> dict[str, Any]:
        if not self._loaded:
            return {"model": self.model}
        return {
            "model": self.model,
            "label_map": {self._id2label[k]: t for k, t in enumerate(self._targets)},
            **({"labels_never_predicted": self._unreached} if self._unreached else {}),
        }


class NLIZeroShot(_TransformersBaseline):
    """An NLI model scores "`hypothesis_template`" filled with each label as entailment (no
    training here); the arithmetic of transformers' zero-shot-classification pipeline."""

    kind: Literal["nli_zero_shot"]
    example_model = "facebook/bart-large-mnli"
    hypothesis_template: str = Field(
        "This example is {}.", description="The hypothesis; `{}` is replaced by the label text."
    )
    label_text: Optional[Literal["name", "description"]] = Field(
        None, description="What stands for a label: its name (the default) or its description."
    )

    _entailment: Any = None
    _contradiction: Any = None

    @field_validator("hypothesis_template")
    @classmethod
    def _has_slot(cls, value: str) -> str:
        if "{}" not in value:
            raise ValueError("must contain `{}`, where the label text goes")
        return value

    def _after_load(self) -> None:
        label2id = {name.lower(): i for i, name in self._id2label.items()}
        entail = [i for name, i in label2id.items() if name.startswith("entail")]
        if not entail:
            raise HarnessError(
                f"baseline {self.id}: model {self.model!r} has no `entailment` label "
                f"(its labels: {', '.join(self._id2label.values())}); nli_zero_shot needs an NLI model "
                f"such as facebook/bart-large-mnli"
            )
        self._entailment = entail[0]
        contra = [i for name, i in label2id.items() if name.startswith("contradict")]
        # The pipeline's rule when the config does not name it: index 0, or -1 if 0 is entailment.
        self._contradiction = contra[0] if contra else (-1 if self._entailment == 0 else 0)

    def hypotheses(self) -> list[str]:
        use = self.label_text or "name"
        texts = [(l.description or l.name) if use == "description" else l.name for l in self.spec.labels]
        return [self.hypothesis_template.format(t) for t in texts]

    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        self._load()
        hypotheses = self.hypotheses()
        n, k = len(texts), len(hypotheses)
        premises = [t for t in texts for _ in range(k)]
        logits = self._logits(premises, hypotheses * n).reshape(n, k, -1)
        if self.multi:
            pair = logits[..., [self._contradiction, self._entailment]]
            return softmax(pair, axis=-1)[..., 1]
        return softmax(logits[..., self._entailment], axis=1)

    def stats(self) -> dict[str, Any]:
        return {"model": self.model, "hypotheses": self.hypotheses()}
