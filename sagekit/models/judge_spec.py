"""A judge spec, parsed once into a small tree: ``ensemble[(rule)]:A[*w]+B+...``,
``edge[(method)]:A``, a registered name (``catalog.JUDGES``) or ``<kind>:<argument>`` of
a registered kind (``catalog.JUDGE_KINDS``: ``timm``, ``hf``, ``open_clip``). Every use of a
judge name (its files, the loaded judge, its labels, the plain judges it consults) walks
this tree; nothing else parses the text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..markup import short
from . import catalog
from .judges import EdgeJudge, Ensemble, Judge
from .weights import UnknownModelError, fingerprint_of

ENSEMBLE_SPEC = re.compile(r"^ensemble(?:\((?P<rule>[a-z]+)\))?:(?P<members>.+)$")
EDGE_SPEC = re.compile(r"^edge(?:\((?P<method>[a-z]+)\))?:(?P<inner>.+)$")


@dataclass(frozen=True)
class JudgeSpec:
    """``kind``: ``"ensemble"`` (``members``: ``(spec, weight)`` pairs, ``rule``),
    ``"edge"`` (``inner``, ``method``), ``"named"`` (a registered judge) or a registered
    kind's prefix (``argument``: the text after it)."""

    text: str
    kind: str
    argument: str = ""
    rule: str = "all"
    members: tuple[tuple["JudgeSpec", float], ...] = ()
    method: str = ""
    inner: "JudgeSpec | None" = None

    # -------------------------------------------------------------- the tree
    def children(self) -> list["JudgeSpec"]:
        if self.kind == "ensemble":
            return [m for m, _ in self.members]
        if self.kind == "edge":
            return [self.inner]
        if self.kind == "named":
            return [parse_judge(m) for m in catalog.JUDGES[self.text].members]
        return []

    def leaves(self) -> set[str]:
        """The plain judges (weights on disk) this judge consults, through ensembles and
        edge maps: two judges that share a leaf are not independent."""
        kids = self.children()
        return set().union(*(k.leaves() for k in kids)) if kids else {self.text}

    # -------------------------------------------------------------- what it needs
    def resolve(self, download: bool = False) -> list[Path]:
        """The checked weight folders (or files) it reads; nothing is loaded."""
        if self.kind in ("ensemble", "edge"):
            paths = [p for kid in self.children() for p in kid.resolve(download)]
            known = {m.text: m.labels() for m, _ in self.members}
            if len({labels for labels in known.values() if labels is not None}) > 1:
                raise UnknownModelError(f"{self.text!r}: its judges see different label sets "
                                        f"({', '.join(f'{m}: {len(l)} labels' for m, l in known.items() if l)})")
            return paths
        return catalog.JUDGE_KINDS[self.kind].resolve(self.argument, download)

    def load(self, download: bool = False) -> Judge:
        """The judge, built from its checked files (every file is checked first), its
        ``revision`` the fingerprint of every one of them."""
        paths = self.resolve(download)
        judge = self._build(paths, download)
        judge.revision = fingerprint_of(paths)
        return judge

    def _build(self, paths: list[Path], download: bool) -> Judge:
        if self.kind == "ensemble":
            judges = [m.load(download) for m, _ in self.members]
            try:
                return Ensemble(self.text, judges, [w for _, w in self.members], self.rule)
            except ValueError as e:  # e.g. members with different label sets
                raise UnknownModelError(f"{self.text!r}: {e}") from None
        if self.kind == "edge":
            return EdgeJudge(self.text, self.inner.load(download), self.method)
        return catalog.JUDGE_KINDS[self.kind].load(self.text, self.argument, paths, download)

    def labels(self) -> tuple[str, ...] | None:
        """The labels it predicts, from config files; None where only loading would tell."""
        if self.kind in ("ensemble", "edge"):
            return self.children()[0].labels()
        return catalog.JUDGE_KINDS[self.kind].labels(self.argument)


def known_judges() -> list[str]:
    return list(catalog.JUDGES) + [kind.usage for kind in catalog.JUDGE_KINDS.values() if kind.usage] + [
        "edge[(sobel)]:<judge>", "ensemble[(all|majority|mean)]:<judge>[*weight]+..."]


@lru_cache(maxsize=512)
def parse_judge(text: str) -> JudgeSpec:
    """The tree of judge spec ``text``; UnknownModelError says what is wrong with it.

    An ensemble's rule (default ``all``: a label counts as absent only when every judge's
    top-1 is another label) is one of ``Ensemble.RULES``; a member's weight follows its
    name after ``*`` (default 1). Members may be any judge but another ensemble."""
    if not isinstance(text, str) or not text:
        raise UnknownModelError(f"a judge is named by a non-empty string, got {short(text)}")
    if (m := ENSEMBLE_SPEC.match(text)) is not None:
        return _ensemble(text, m)
    if (m := EDGE_SPEC.match(text)) is not None:
        method = m["method"] or "canny"
        if method not in EdgeJudge.METHODS:
            raise UnknownModelError(f"{short(text)}: unknown edge method {method!r}; choose one of "
                                    f"{', '.join(EdgeJudge.METHODS)}")
        return JudgeSpec(text, "edge", method=method, inner=parse_judge(m["inner"]))
    if text in catalog.JUDGES:
        return JudgeSpec(text, "named", argument=text)
    prefix, colon, argument = text.partition(":")
    if colon and prefix in catalog.JUDGE_KINDS and prefix != "named":
        return JudgeSpec(text, prefix, argument=argument)
    raise UnknownModelError(f"unknown judge {short(text)}; known: {', '.join(known_judges())}")


def _ensemble(text: str, m) -> JudgeSpec:
    rule = m["rule"] or "all"
    if rule not in Ensemble.RULES:
        raise UnknownModelError(f"{short(text)}: unknown agreement rule {rule!r}; choose one of {', '.join(Ensemble.RULES)}")
    members = []
    for part in m["members"].split("+"):
        member, weight = part, "1"
        if "*" in part:
            member, weight = part.rsplit("*", 1)
        try:
            w = float(weight)
        except ValueError:
            w = -1.0
        if not member or not math.isfinite(w) or w < 0:
            raise UnknownModelError(f"{short(text)}: {short(part)} is not '<judge>' or '<judge>*<non-negative weight>'")
        spec = parse_judge(member)
        if spec.kind == "ensemble" or (spec.kind == "named" and catalog.JUDGES[member].members):
            raise UnknownModelError(f"{short(text)}: an ensemble cannot hold another ensemble ({short(member)})")
        members.append((spec, w))
    if not any(w > 0 for _, w in members):
        raise UnknownModelError(f"{short(text)}: every weight is zero")
    return JudgeSpec(text, "ensemble", rule=rule, members=tuple(members))
