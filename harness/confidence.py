"""A prediction's confidence from token logprobs: how likely the model found the label it chose.

The generated tokens are laid end to end to find the characters of the chosen label in the answer
(the `"label": "..."` value in the JSON modes, the label itself in text mode). Then:

* with `top_logprobs` (the usual case): at the first token that tells the labels apart, the
  probability mass of the alternatives that begin each label is added up, and the chosen label's
  share is the confidence — P(chosen) / sum over labels of P(label). This is the quantity a
  coverage-vs-accuracy curve needs, and it is unaffected by constrained decoding (llama.cpp and
  OpenAI report the model's unconstrained distribution, where much of the mass sits on tokens the
  grammar would never allow). A label absent from the top-k list is counted at the smallest listed
  probability (an upper bound of its mass), so the figure is then a lower bound;
* with plain `logprobs` only: exp(sum of the label tokens' logprobs), the probability of the label's
  tokens given the text before them.

None when there are no logprobs, the tokens do not spell the answer (some servers drop or merge
bytes), the label cannot be located, or the task is multi-label.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any


def label_span(text: str, label: str, mode: str, field: str = "label") -> tuple[int, int] | None:
    """Character span of the chosen label's value in the raw answer."""
    if mode == "text":
        match = re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, flags=re.IGNORECASE)
    else:
        match = re.search(rf'"{re.escape(field)}"\s*:\s*"({re.escape(label)})"', text)
        if match is not None:
            return match.span(1)
    return match.span() if match is not None else None


def label_confidence(
    logprobs: list[dict[str, Any]] | None,
    text: str | None,
    label: Any,
    labels: list[str],
    mode: str,
    field: str = "label",
) -> float | None:
    if not logprobs or not text or not isinstance(label, str) or label not in labels:
        return None
    tokens = [t.get("token") or "" for t in logprobs]
    if "".join(tokens) != text:
        return None
    span = label_span(text, label, mode, field)
    if span is None:
        return None
    start, end = span
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok)
    inside = [i for i, tok in enumerate(tokens) if tok and starts[i] < end and starts[i] + len(tok) > start]
    if not inside:
        return None
    fold = (lambda s: s.lower()) if mode == "text" else (lambda s: s)
    chosen = fold(label)
    others = [fold(x) for x in labels if x != label]
    if any(t.get("top_logprobs") for t in (logprobs[i] for i in inside)):
        share = _distinguishing_share(logprobs, tokens, starts, inside, start, chosen, others, mode == "text")
        if share is not None:
            return share
    total = sum(float(logprobs[i]["logprob"]) for i in inside)
    return _round(math.exp(total))


def _distinguishing_share(logprobs, tokens, starts, inside, start, chosen, others, lower: bool) -> float | None:
    """The chosen label's share of the label mass at the first token that tells it from its rivals
    (`lower`: text mode, where labels compare case-insensitively)."""
    for i in inside:
        offset = max(0, starts[i] - start)  # characters of the label before this token
        prefix = tokens[i][: max(0, start - starts[i])]  # token text before the label
        prefix = prefix.lower() if lower else prefix
        rivals = [o for o in others if o[:offset] == chosen[:offset]]
        if not rivals:
            return None  # already decided by an earlier token that had no alternatives listed
        candidates = [chosen, *rivals]
        tails = tuple((c, c[offset:]) for c in candidates)  # what each label still has to spell

        def labels_begun(token: str) -> tuple[str, ...]:
            return _labels_begun(token, prefix, tails, lower)

        if labels_begun(tokens[i]) != (chosen,):
            continue  # this token does not yet tell the chosen label from a rival
        top = logprobs[i].get("top_logprobs") or []
        mass = {c: 0.0 for c in candidates}
        seen_own = False
        for alt in top:
            begun = labels_begun(alt.get("token") or "")
            if len(begun) == 1:
                mass[begun[0]] += math.exp(float(alt["logprob"]))
                seen_own |= begun[0] == chosen and (alt.get("token") or "") == tokens[i]
        if not seen_own:
            mass[chosen] += math.exp(float(logprobs[i]["logprob"]))
        if top:
            floor = math.exp(min(float(alt["logprob"]) for alt in top))  # exp is monotonic: one call
            for c in rivals:
                if mass[c] == 0.0:
                    mass[c] = floor
        total = sum(mass.values())
        return _round(mass[chosen] / total) if total > 0 else None
    return None


@functools.lru_cache(maxsize=1 << 16)
def _labels_begun(token: str, prefix: str, tails: tuple[tuple[str, str], ...], lower: bool) -> tuple[str, ...]:
    """The labels a token (after `prefix`, the token text before the label) goes on spelling,
    given what each label still has to spell. Memoized: the same few alternatives (" positive",
    "pos", "Negative", ...) come back in the top logprobs of almost every answer."""
    token = token.lower() if lower else token
    if not token.startswith(prefix):
        return ()
    rest = token[len(prefix):]
    if not rest:
        return ()
    return tuple(c for c, tail in tails
                 if (not tail or tail[0] == rest[0]) and (tail.startswith(rest) or rest.startswith(tail)))


def _round(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 6)
