"""Label likelihood: a probability for every label, read from the model instead of generated text.

A prompt with `answer: label_likelihood` asks for ONE answer token with its top logprobs
(`max_tokens: 1`, `logprobs`, `top_logprobs: 20`; OpenAI, vLLM and llama-server all answer in the
OpenAI chat shape). Each listed alternative token is matched against the start of every label,
ignoring leading whitespace and case, so "negative", " negative" and "Negative" all count for
`negative`; the probabilities of the tokens that begin a label are added up.

* A token that begins several labels (labels sharing a first token: "pos" for "positive" and
  "possible", "s" for "sadness" and "surprise") is resolved by a second request: the same messages
  with the token text appended as an assistant *prefill*, whose first-token distribution splits the
  token's probability among those labels (chain rule). llama-server continues a final assistant
  message by itself; vLLM gets `continue_final_message` (providers.vllm). Providers that cannot
  prefill (api.openai.com) leave such a token's mass out of every label (it shows in `label_mass`).
  Follow-ups go at most `MAX_DEPTH` tokens deep and only for tokens of probability >= `MIN_FOLLOW`.
* A token that spells a whole label and then more letters ("negatively") is another word, not the
  label. When the prefix already spells a label completely, that label gets the probability of the
  tokens that end the word (whitespace, punctuation, end-of-turn markers).
* A label no listed token begins is counted at the smallest probability seen (the smallest listed
  one, times the prefix's probability in a follow-up: an upper bound of its true mass), so its
  probability is never 0 and log loss stays finite.
* The `transformers` provider scores each label exactly instead: the sum of the label tokens'
  log-probabilities given the prompt (providers.transformers, body field `score`), for the label as
  written, lower-case and capitalised.

The result for one example: `probs` renormalised over the labels, `mass` (what the labels got
before renormalising: a low mass means the model wanted to say something else) and the argmax.
Every request is built by the provider's `build_body` and goes through the response cache, so a
replay sees exactly the same bodies.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

DEFAULT_TOP_LOGPROBS = 20
MAX_DEPTH = 3  # follow-up requests for labels that share their first tokens
MIN_FOLLOW = 1e-3  # probability below which a shared token is not worth a follow-up request
LOW_MASS = 0.2  # below this the prediction carries a warning in report.md


def _fold(text: str) -> str:
    return text.casefold()


@dataclass
class TokenMatch:
    """How one step's listed tokens fall on the labels still in play."""

    mass: dict[str, float]  # label -> probability of the tokens that begin only this label
    shared: list[tuple[str, float, list[str]]]  # (token text, probability, labels it begins)
    floor: float | None  # the smallest listed probability


def match_tokens(top: list[dict[str, Any]], remainders: dict[str, str], at_start: bool) -> TokenMatch:
    """Match listed alternatives against what is left of each label.

    `remainders`: label -> the characters of the label not yet spelled by the prefix (case-folded
    compare). `at_start`: the first answer token, where leading whitespace is ignored."""
    mass = {label: 0.0 for label in remainders}
    shared: list[tuple[str, float, list[str]]] = []
    folded = tuple((label, _fold(rest)) for label, rest in remainders.items())  # once, not once per token
    lowest: float | None = None  # the floor is exp(min logprob): one exp, not one per alternative
    for alt in top:
        logprob = float(alt["logprob"])
        if lowest is None or logprob < lowest:
            lowest = logprob
        token = alt.get("token") or ""
        begun = _labels_begun(token, folded, at_start)
        if len(begun) == 1:
            mass[begun[0]] += math.exp(logprob)
        elif len(begun) > 1:
            # every label that this token spells completely *and* continues another one is shared
            shared.append((token, math.exp(logprob), list(begun)))
    return TokenMatch(mass, shared, math.exp(lowest) if lowest is not None else None)


@functools.lru_cache(maxsize=1 << 16)
def _labels_begun(token: str, folded: tuple[tuple[str, str], ...], at_start: bool) -> tuple[str, ...]:
    """The labels whose rest (`folded`: label, case-folded rest) this token begins or completes.
    Memoized: the same few alternatives come back in the top logprobs of almost every answer."""
    norm = _fold(token.lstrip() if at_start else token)
    if not norm and at_start:
        return ()  # a whitespace-only first token begins every label and tells nothing
    begun = []
    for label, r in folded:
        if not r:  # the prefix spells the label: it ends here if the word does
            if not norm or not (norm[0].isalnum()):
                begun.append(label)
        elif norm and norm[0] == r[0] and (r.startswith(norm) or (norm.startswith(r) and not norm[len(r):][:1].isalnum())):
            begun.append(label)
    return tuple(begun)


@dataclass
class LabelScores:
    probs: dict[str, float]  # renormalised over the labels
    mass: float  # what the labels received before renormalising (0..1)
    prediction: str
    raw: str | None  # the most probable answer token, as the model would have written it
    requests: int = 1
    floored: list[str] = field(default_factory=list)  # labels counted at the top-k floor
    unresolved: float = 0.0  # mass on shared tokens that could not be followed up


def finish(mass: dict[str, float], labels: list[str], floor: float | None, raw: str | None,
           requests: int = 1, unresolved: float = 0.0) -> LabelScores | None:
    """Renormalise; labels with no mass get the floor. None when nothing at all was observed."""
    observed = sum(mass.values())
    filled = dict(mass)
    floored = []
    for label in labels:
        if filled.get(label, 0.0) <= 0.0:
            if floor is None or floor <= 0:
                filled[label] = 0.0
            else:
                filled[label] = floor
                floored.append(label)
    total = sum(filled.values())
    if total <= 0:
        return None
    probs = {label: filled.get(label, 0.0) / total for label in labels}
    prediction = max(labels, key=lambda label: (probs[label], -labels.index(label)))
    return LabelScores(
        {k: round(v, 6) for k, v in probs.items()}, round(min(1.0, observed), 6), prediction, raw,
        requests, floored, round(unresolved, 6),
    )


Send = Callable[[list[dict[str, str]]], Awaitable[Any]]  # messages (maybe with a prefill) -> ChatResponse


async def score_first_tokens(
    messages: list[dict[str, str]], labels: list[str], send: Send, *, can_prefill: bool,
) -> tuple[LabelScores | None, Any]:
    """Label probabilities from first-token logprobs, with prefill follow-ups for shared tokens.
    Returns (scores or None, the first response) — the response tells the caller about errors."""
    first = await send(messages)
    if getattr(first, "error", None) or not first.logprobs:
        return None, first
    requests = 1
    entry = first.logprobs[0]
    top = entry.get("top_logprobs") or [{"token": entry.get("token"), "logprob": entry.get("logprob")}]
    match = match_tokens(top, {label: label for label in labels}, at_start=True)
    mass = dict(match.mass)
    unresolved = 0.0
    floors = [match.floor] if match.floor is not None else []

    async def follow(prefix: str, p: float, candidates: list[str], depth: int) -> None:
        nonlocal requests, unresolved
        if not can_prefill or depth > MAX_DEPTH or p < MIN_FOLLOW:
            unresolved += p
            return
        spelled = _fold(prefix.lstrip())
        remainders = {c: c[len(spelled):] if _fold(c).startswith(spelled) else c for c in candidates}
        reply = await send(messages + [{"role": "assistant", "content": prefix}])
        requests += 1
        if getattr(reply, "error", None) or not reply.logprobs:
            unresolved += p
            return
        e = reply.logprobs[0]
        alts = e.get("top_logprobs") or [{"token": e.get("token"), "logprob": e.get("logprob")}]
        sub = match_tokens(alts, remainders, at_start=False)
        if sub.floor is not None:
            floors.append(p * sub.floor)  # a label lost after this prefix had at most this much
        for label, q in sub.mass.items():
            mass[label] += p * q
        for token, q, begun in sub.shared:
            await follow(prefix + token, p * q, begun, depth + 1)

    for token, p, begun in match.shared:
        await follow(token, p, begun, 1)
    return finish(mass, labels, min(floors) if floors else None, first.text, requests, unresolved), first


def label_variants(label: str) -> list[str]:
    """The spellings scored exactly for one label (as written, lower-case, capitalised)."""
    out: list[str] = []
    for v in (label, label.lower(), label[:1].upper() + label[1:]):
        if v not in out:
            out.append(v)
    return out


def scores_from_sequences(logprobs: list[dict[str, Any]], labels: list[str]) -> LabelScores | None:
    """Exact sequence log-probabilities ([{token: spelling, logprob}]) -> label probabilities."""
    by_text = {e["token"]: float(e["logprob"]) for e in logprobs}
    mass = {label: sum(math.exp(by_text[v]) for v in label_variants(label) if v in by_text) for label in labels}
    best = max(by_text, key=by_text.get) if by_text else None
    return finish(mass, labels, None, best)


def probs_json(probs: dict[str, float]) -> str:
    return json.dumps(probs, ensure_ascii=False)
