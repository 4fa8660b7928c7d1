"""Statements: a claim and the comparisons it is built from ("a beats b on a metric" as `Leaf`,
combined by `All`, `Any`, `Most`, or a `Trend`), and the builders the claim lists use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from thesislib import inference as I
from thesislib.claims.evidence import Cell, Evidence
from thesislib.metrics import REGISTRY

__all__ = ["THESIS_METHOD_KEYS", "Leaf", "Combination", "All", "Any", "Most", "Trend", "Unjudged", "Claim", "beats",
           "better", "best_setting_is", "lowest_setting_is", "best_method_is", "better_than", "lower_than",
           "all_others_worse", "some_setting_better", "trend"]

THESIS_METHOD_KEYS = ("cam", "gradcam", "gradcam++", "scorecam")


@dataclass(frozen=True)
class Leaf:
    """One comparison: the value of cell a is larger than that of cell b (the metric's margin applies)."""

    a: Cell
    b: Cell


@dataclass(frozen=True)
class Combination:
    """Parts (comparisons, or combinations of them) that a claim combines by one rule."""

    parts: tuple


class All(Combination):
    """Every part holds ("at every depth", "best of k": k - 1 comparisons)."""


class Any(Combination):
    """Some part holds ("some setting beats the baseline")."""


class Most(Combination):
    """More than half of the parts hold ("in most settings")."""


@dataclass(frozen=True)
class Trend:
    """Accuracy and a metric go together (sign +1) or trade off (-1) across settings: Spearman's rho
    of the settings' mean accuracy and mean metric."""

    settings: tuple
    metric: str
    method: str
    sign: int


@dataclass(frozen=True)
class Unjudged:
    """Why a claim gets no test: outcome None (the cells are missing) or "untestable", and a note."""

    outcome: str | None
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """A statement of the thesis about one family; check(evidence) gives its comparisons, or Unjudged."""

    text: str
    family: str
    check: Callable[[Evidence], object]
    settings: Callable[[Evidence], list[str]] | None = None  # the settings it names (for the scope)


def beats(ev: Evidence, a: Cell, b: Cell) -> Leaf | None:
    """Cell a beats cell b (one metric) in the metric's direction; None where a cell is missing."""
    if a not in ev.cells or b not in ev.cells:
        return None
    return Leaf(a, b) if REGISTRY[a[1]].higher else Leaf(b, a)


def better(ev: Evidence, a: str, b: str, metric: str, method: str = "") -> Leaf | None:
    """Setting a beats setting b on `metric` (of `method`), in the metric's direction."""
    return beats(ev, (a, metric, method), (b, metric, method))


def _node(kind, parts):
    parts = tuple(p for p in parts if p is not None)
    return kind(parts) if parts else None


def _need(ev: Evidence, *cells: Cell) -> Unjudged | None:
    missing = [c for c in cells if c not in ev.cells]
    if not missing:
        return None
    return Unjudged(None, "no cells for " + ", ".join(ev.labels.get(c[0], c[0]) for c in missing))


def best_setting_is(setting: str, metric: str, method: str = "", among: Sequence[str] | None = None):
    """`setting` beats each other setting (of `among`) on `metric`: k - 1 comparisons, all needed."""
    def check(ev: Evidence):
        others = [s for s in (among or ev.settings) if s != setting and ev.has(s, metric, method)]
        return _need(ev, (setting, metric, method)) or _node(All, [better(ev, setting, s, metric, method)
                                                                  for s in others])
    return check


def lowest_setting_is(setting: str, metric: str, method: str = "", among: Sequence[str] | None = None):
    """`setting` has the numerically lowest `metric` of the family's settings."""
    def check(ev: Evidence):
        others = [s for s in (among or ev.settings) if s != setting and ev.has(s, metric, method)]
        return _need(ev, (setting, metric, method)) or _node(
            All, [Leaf((s, metric, method), (setting, metric, method)) for s in others])
    return check


def best_method_is(method: str, metric: str, every_setting: bool = True, methods: Sequence[str] = THESIS_METHOD_KEYS,
                   lowest: bool = False):
    """`method` has the best (with `lowest`: the numerically lowest) `metric` at every setting, or in
    most settings; at a setting it must beat each other method there."""
    def at(ev: Evidence, s: str):
        me = (s, metric, method)
        if me not in ev.cells:
            return None
        others = [(s, metric, m) for m in methods if m != method and (s, metric, m) in ev.cells]
        if lowest or not REGISTRY[metric].higher:
            return _node(All, [Leaf(o, me) for o in others])
        return _node(All, [Leaf(me, o) for o in others])

    def check(ev: Evidence):
        parts = [at(ev, s) for s in ev.settings]
        if every_setting:  # every comparison at every setting: one intersection-union
            return _node(All, [leaf for p in parts if p is not None for leaf in p.parts])
        return _node(Most, parts)
    return check


def better_than(a: str, b: str, metric: str, method: str = ""):
    """Setting a beats setting b on `metric`."""
    def check(ev: Evidence):
        return _need(ev, (a, metric, method), (b, metric, method)) or better(ev, a, b, metric, method)
    return check


def lower_than(a: str, b: str, metric: str, method: str = ""):
    """Setting a has a numerically lower `metric` than setting b."""
    def check(ev: Evidence):
        return _need(ev, (a, metric, method), (b, metric, method)) or Leaf((b, metric, method), (a, metric, method))
    return check


def all_others_worse(baseline: str, metric: str, method: str = ""):
    """Every non-baseline setting of the family is worse than the baseline."""
    def check(ev: Evidence):
        return _need(ev, (baseline, metric, method)) or _node(
            All, [better(ev, baseline, s, metric, method) for s in ev.settings if s != baseline])
    return check


def some_setting_better(baseline: str, metric: str, method: str = ""):
    """At least one non-baseline setting beats the baseline (Holm over the k comparisons)."""
    def check(ev: Evidence):
        return _need(ev, (baseline, metric, method)) or _node(
            Any, [better(ev, s, baseline, metric, method) for s in ev.settings if s != baseline])
    return check


def trend(sign: int, metric: str = "iou_area", method: str = "scorecam"):
    """Accuracy and `metric` of `method` rise together (+1) or trade off (-1) across the settings."""
    def check(ev: Evidence):
        settings = tuple(s for s in ev.settings if ev.has(s, "accuracy") and ev.has(s, metric, method))
        if len(settings) < I.MIN_TREND_POINTS:
            return Unjudged("untestable", f"{len(settings)} settings: an exact test of a rank correlation needs "
                                          f"{I.MIN_TREND_POINTS} to reach {I.ALPHA:g}")
        return Trend(settings, metric, method, sign)
    return check
