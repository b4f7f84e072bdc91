"""Hierarchical labels: coarser levels above the spec's labels, and the figures at every level.

A spec's `hierarchy:` is a list of levels, from the labels upwards. The first level groups the
labels, each next level groups the group names of the level before it:

    hierarchy:
      - name: ekman
        groups: {anger: [anger, annoyance, disapproval], joy: [joy, amusement, ...], ...}

Why levels of groups rather than a `parent:` on each label: each level is its own namespace, so a
coarse group may carry the name of one of its labels (GoEmotions' Ekman group `anger` holds the
fine label `anger`), there is no cycle to detect (a level can only name the level below), and no
name is ever both a predicted label and a parent. The checks (`check_levels`) say what is wrong in
a spec's `file:line: field` terms: an unknown member (with a did-you-mean), a member in two groups,
a name of the level below in no group, an empty group, a repeated or reserved level name.

Predictions are made at the label level (`LEAF`) and scored at every level: the label matrices are
mapped to their ancestors (`harness.metrics.kernel.coarsen`) and the same kernel figures run on
them, so "right at the coarse level, wrong at the leaf" is counted rather than lost
(`level_figures`). A prompt with `strategy: top_down` asks the coarsest level first and then,
level by level, only among the chosen group's children (`harness.runner`).

This module imports pydantic and the errors only, so the spec can depend on it; the kernel
(numpy) is imported when figures are computed.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import FieldProblem

if TYPE_CHECKING:
    from harness.metrics.kernel import Encoding

LEAF = "label"  # the name of the labels' own level in reports and metrics.json


class Level(BaseModel):
    """One level above the labels: every name of the level below belongs to exactly one group."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=80,
                      description="The level's name in reports (e.g. `ekman`); `label` is the labels' own level.")
    groups: dict[str, list[str]] = Field(
        description="Group name -> its members: labels for the first level, the previous level's "
        "group names for the next ones. A group may share a name with one of its members.",
    )


def check_levels(levels: Sequence[Level], labels: Sequence[str]) -> None:
    """Raise a FieldProblem (located under `hierarchy`) for the first thing wrong with `levels`."""
    seen_names: list[str] = []
    below, what = list(labels), "label"
    for i, level in enumerate(levels):
        if level.name == LEAF:
            raise FieldProblem(("hierarchy", i, "name"), f"{LEAF!r} names the labels' own level; "
                               "call this level something else (e.g. `coarse`)")
        if level.name in seen_names:
            raise FieldProblem(("hierarchy", i, "name"), f"level {level.name!r} is named twice; level names must be unique")
        seen_names.append(level.name)
        if len(level.groups) < 2:
            raise FieldProblem(("hierarchy", i, "groups"), f"level {level.name!r} has {len(level.groups)} group(s); "
                               "a level needs at least two (one group tells nothing apart)")
        owner: dict[str, str] = {}
        for group, members in level.groups.items():
            if not members:
                raise FieldProblem(("hierarchy", i, "groups", group), f"group {group!r} is empty; list its {what}s")
            for j, member in enumerate(members):
                if member not in below:
                    hint = difflib.get_close_matches(member, below, n=1)
                    raise FieldProblem(
                        ("hierarchy", i, "groups", group, j),
                        f"{member!r} is not a {what}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                        + f" Allowed: {', '.join(below)}")
                if member in owner:
                    where = "twice in this group" if owner[member] == group else f"in groups {owner[member]!r} and {group!r}"
                    raise FieldProblem(("hierarchy", i, "groups", group, j),
                                       f"{what} {member!r} is {where}; each {what} has one parent")
                owner[member] = group
        orphans = [name for name in below if name not in owner]
        if orphans:
            raise FieldProblem(("hierarchy", i, "groups"), f"level {level.name!r} leaves {len(orphans)} "
                               f"{what}(s) without a group: {', '.join(orphans)}; every {what} needs one")
        below, what = list(level.groups), f"group of level {level.name!r}"


class Hierarchy:
    """The levels of a spec, as lookups. Level names run from the labels upwards: `levels[0]` is
    `LEAF`, `levels[-1]` the coarsest."""

    def __init__(self, levels: Sequence[Level], labels: Sequence[str]):
        self.levels: list[str] = [LEAF] + [level.name for level in levels]
        self._names: dict[str, list[str]] = {LEAF: list(labels)}
        self._parent: dict[str, dict[str, str]] = {}  # level -> name at the level below -> group
        self._children: dict[str, dict[str, list[str]]] = {}
        for level in levels:
            self._names[level.name] = list(level.groups)
            self._children[level.name] = {g: list(m) for g, m in level.groups.items()}
            self._parent[level.name] = {m: g for g, members in level.groups.items() for m in members}

    def names(self, level: str) -> list[str]:
        return self._names[level]

    def children(self, level: str, name: str) -> list[str]:
        """The members (names one level below) of group `name` at `level`."""
        return self._children[level][name]

    def below(self, level: str) -> str:
        return self.levels[self.levels.index(level) - 1]

    def ancestor(self, label: str, level: str) -> str:
        """The group of `label` (a leaf label) at `level`."""
        name = label
        for step in self.levels[1:self.levels.index(level) + 1]:
            name = self._parent[step][name]
        return name

    def ancestors(self, level: str) -> dict[str, str]:
        """Every label -> its group at `level` (the identity at `LEAF`)."""
        return {label: self.ancestor(label, level) for label in self._names[LEAF]}

    def descriptions(self, level: str) -> dict[str, str]:
        """A group's description for prompts: the labels it holds."""
        leaves: dict[str, list[str]] = {}
        for label, group in self.ancestors(level).items():
            leaves.setdefault(group, []).append(label)
        return {group: ", ".join(members) for group, members in leaves.items()}


def level_figures(enc: "Encoding", hierarchy: Hierarchy) -> list[dict[str, Any]]:
    """The figures of a leaf-level encoding at every level, finest first: accuracy and macro-F1
    (strict and valid-only), per-class figures, the confusion matrix (single-label) and how many
    answers are right at this level but wrong at the leaf (an error within the right group)."""
    from harness.metrics import kernel

    out = []
    for level in hierarchy.levels:
        names = hierarchy.names(level)
        at = enc if level == LEAF else kernel.coarsen(enc, names, hierarchy.ancestors(level))
        strict, valid = kernel.ones(at), kernel.valid_weights(at)
        n_valid = int(at.valid.sum())
        figures: dict[str, Any] = {"level": level, "n_labels": len(names)}
        for name in ("accuracy", "macro_f1"):
            figure = kernel.FIGURES[name]
            figures[name] = kernel.rounded(figure(at, strict)) if at.n else None
            figures[f"{name}_valid"] = kernel.rounded(figure(at, valid)) if n_valid else None
        figures["n_correct"] = int(at.correct.sum())
        figures["right_here_wrong_at_leaf"] = int((at.correct & ~enc.correct).sum())
        figures["per_class"] = kernel.per_class(at, strict) if at.n else None
        if at.task == "single_label":
            figures["confusion"] = kernel.confusion(at)
        out.append(figures)
    return out
