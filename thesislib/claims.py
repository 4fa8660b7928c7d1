"""Claims and verdicts: the thesis's statements, judged on its own numbers and on our runs by one
judge whose error rates are stated and checked by simulation (tests/test_claims.py).

A claim is a statement about one family's settings, written once over setting keys (a setting's
overrides of the base config, `S(depth=50)`) and method keys ("scorecam"); labels appear only
where verdicts are rendered. It is built from comparisons "a beats b on a metric" (`Leaf`),
combined as "every" (`All`), "some" (`Any`) or "most" (`Most`), or is a rank correlation across
a family's settings (`Trend`). The evidence (`Evidence`) is one value per run for our side
(learned runs only; a setting with fewer than two learned seeds did not learn) and mean, std and
n = 3 for the thesis's.

Each comparison is a paired t-test on the per-seed differences where the design pairs the two
cells (same initial weights and batch order, or two maps of one run), else Welch's t-test
(`thesislib.inference`). A claim's outcome, at level ALPHA:

- one comparison: "yes" if a beats b (one-sided p <= ALPHA), "no" if b beats a, "equivalent" if
  the difference lies within the metric's margin (two one-sided tests), else "inconclusive";
- every (All): "yes" by the intersection-union rule (each comparison at ALPHA); "no" if Holm
  finds some comparison reversed; "equivalent" if every comparison is;
- some (Any): "yes" if Holm finds some comparison that holds; "no" if every one is reversed
  (intersection-union); "equivalent" if every one is;
- most (Most): "yes" if the Holm-adjusted count of parts that hold exceeds half; "no" if the
  Holm-adjusted count of reversed parts is at least half; "equivalent" likewise;
- a trend: Spearman's rho over the family's settings, exact permutation test, one-sided.

So each decided outcome is wrong at most ALPHA of the time when the hypothesis that makes it
wrong holds. Before any of this: a claim that names a setting with fewer than two learned seeds
is "did not learn"; one that cannot be decided by construction (a trend over fewer than
MIN_TREND_POINTS settings, runs of another design than the thesis's) is "untestable".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from thesislib import inference as I
from thesislib.metrics import REGISTRY

__all__ = ["ALPHA", "S", "BASELINE", "Evidence", "SeedValues", "Summary", "Leaf", "All", "Any", "Most", "Trend",
           "Claim", "Unjudged", "Judged", "CLAIMS", "METHOD_CLAIMS", "CORRELATION_FAMILIES", "correlation_claims",
           "judge_claim", "judge", "judge_methods", "judge_correlations", "judge_all", "TALLY", "verdict_counts", "verdicts_markdown",
           "claims_markdown", "OUTCOMES", "VERDICTS", "beats", "better", "best_setting_is", "lowest_setting_is",
           "best_method_is", "better_than", "lower_than", "all_others_worse", "some_setting_better", "trend",
           "METHOD_FAMILIES", "THESIS_METHOD_KEYS"]

ALPHA = I.ALPHA
OUTCOMES = ("yes", "no", "equivalent", "inconclusive", "did not learn", "untestable")
# what our runs' outcome says of the thesis's claim
VERDICTS = {"yes": "agrees", "no": "disagrees", "equivalent": "equivalent", "inconclusive": "inconclusive",
            "did not learn": "did not learn", "untestable": "untestable", None: "n/a"}
THESIS_METHOD_KEYS = ("cam", "gradcam", "gradcam++", "scorecam")
METHOD_FAMILIES = ("depth", "epochs", "batch_size")  # the thesis's Tables 5.2-5.4: RQ3's scope


def S(**overrides) -> str:
    """A setting's key: its overrides of the base config as canonical JSON (S() is the baseline)."""
    return json.dumps(overrides, sort_keys=True)


BASELINE = S()
Cell = tuple  # (setting key, metric, method key; "" for classification)


# -- evidence -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeedValues:
    """Our side of a cell: per seed its value, whether the run learned, and its pairing key (runs
    of two settings with the same key for a seed share initial weights and batch order)."""

    values: dict  # seed -> (value, learned, pairing)

    def learned(self) -> dict[int, float]:
        return {s: v for s, (v, ok, _) in self.values.items() if ok and math.isfinite(v)}

    @property
    def runs(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Summary:
    """The thesis's side of a cell: mean, sample std and the number of seeds."""

    mean: float
    std: float
    n: int


class Evidence:
    """The cells of one scope: (setting key, metric, method key) -> SeedValues or Summary, the
    settings' labels (for rendering only) and, for our runs, each setting's run ids."""

    def __init__(self, cells: dict, labels: dict[str, str], runs: dict[str, frozenset] | None = None):
        self.cells, self.labels, self.runs = cells, labels, runs or {}

    @property
    def settings(self) -> list[str]:
        return list(self.labels)

    def has(self, setting: str, metric: str, method: str = "") -> bool:
        return (setting, metric, method) in self.cells

    def restrict(self, settings: Sequence[str]) -> Evidence:
        keep = set(settings)
        return Evidence({k: v for k, v in self.cells.items() if k[0] in keep},
                        {s: lab for s, lab in self.labels.items() if s in keep},
                        {s: r for s, r in self.runs.items() if s in keep})

    @classmethod
    def of_results(cls, results: pd.DataFrame, *, key: Callable[[pd.Series], str] | None = None) -> Evidence:
        """Our runs: `Grid.results()` rows (one per run x method). `key` makes a row's setting key
        (default: its `overrides`)."""
        cells: dict = {}
        labels: dict[str, str] = {}
        runs: dict[str, set] = {}
        if results is None or results.empty:
            return cls(cells, labels)
        if "overrides" not in results.columns:
            raise ValueError(f"results: expected Grid.results() rows with an 'overrides' column, found columns "
                             f"{', '.join(map(str, results.columns))}")
        learned = results["learned"] if "learned" in results.columns else pd.Series(True, index=results.index)
        learned = learned.astype(object).where(learned.notna(), True).astype(bool)
        # without recorded pairing keys, the maps of one run are still paired with each other
        pairing = results["pairing"] if "pairing" in results.columns else (
            results["run_id"] if "run_id" in results.columns else pd.Series(None, index=results.index))
        keys = [key(r) for _, r in results.iterrows()] if key else [_canonical(o) for o in results["overrides"]]
        metrics = [m for m in REGISTRY if m in results.columns]
        seen_runs: set = set()
        for i, (k, (_, row)) in enumerate(zip(keys, results.iterrows())):
            labels.setdefault(k, str(row["setting"]))
            runs.setdefault(k, set()).add(row.get("run_id", i))
            seed, ok, pair = int(row["seed"]), bool(learned.iloc[i]), pairing.iloc[i]
            pair = None if pair is None or (isinstance(pair, float) and math.isnan(pair)) else str(pair)
            first_of_run = (k, seed) not in seen_runs
            seen_runs.add((k, seed))
            for m in metrics:
                value = row[m]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                method = "" if REGISTRY[m].kind == "classification" else str(row["method"])
                if method == "" and not first_of_run:
                    continue
                cells.setdefault((k, m, method), {}).setdefault(seed, (float(value), ok, pair))
        return cls({c: SeedValues(v) for c, v in cells.items()}, labels, {k: frozenset(v) for k, v in runs.items()})

    @classmethod
    def of_summary(cls, long: pd.DataFrame, *, key: Callable[[pd.Series], str] | None = None) -> Evidence:
        """The thesis's numbers (`thesislib.thesis.reference()`: overrides, method_key, metric, mean, std, n)."""
        cells, labels = {}, {}
        for _, r in long.iterrows():
            k = key(r) if key else _canonical(r["overrides"])
            labels.setdefault(k, str(r["setting"]))
            if pd.notna(r["mean"]):
                cells[(k, r["metric"], r["method_key"])] = Summary(float(r["mean"]), float(r["std"]), int(r["n"]))
        return cls(cells, labels)


def _canonical(overrides) -> str:
    return S(**(json.loads(overrides) if isinstance(overrides, str) else dict(overrides)))


# -- statements ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    """One comparison: the value of cell a is larger than that of cell b (the metric's margin applies)."""

    a: Cell
    b: Cell


@dataclass(frozen=True)
class All:
    """Every part holds ("at every depth", "best of k": k - 1 comparisons)."""

    parts: tuple


@dataclass(frozen=True)
class Any:
    """Some part holds ("some setting beats the baseline")."""

    parts: tuple


@dataclass(frozen=True)
class Most:
    """More than half of the parts hold ("in most settings")."""

    parts: tuple


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
                                          f"{I.MIN_TREND_POINTS} to reach {ALPHA:g}")
        return Trend(settings, metric, method, sign)
    return check


_WD = [S(penalty=p, penalty_lambda=v) for p in ("l1", "l2") for v in (1e-05, 1e-04, 1e-03)]
_PRECODE = [S(precode_beta=b, precode_k=k) for b in (0.001, 0.0001) for k in (128, 256, 512)]

CLAIMS: list[Claim] = [
    Claim("ResNet-50 has the highest accuracy", "depth", best_setting_is(S(depth=50), "accuracy")),
    Claim("ResNet-50 has the highest Score-CAM IoU (A)", "depth", best_setting_is(S(depth=50), "iou_area", "scorecam")),
    Claim("Score-CAM has the highest IoU (A) at every depth", "depth", best_method_is("scorecam", "iou_area")),
    Claim("Score-CAM has the lowest Average Drop at every depth", "depth", best_method_is("scorecam", "average_drop")),
    Claim("Score-CAM has the highest IoU (A) after long training", "epochs", best_method_is("scorecam", "iou_area")),
    Claim("Batch size 256 has the highest accuracy", "batch_size", best_setting_is(S(batch_size=256), "accuracy")),
    Claim("Batch size 256 has the highest Score-CAM IoU (A)", "batch_size",
          best_setting_is(S(batch_size=256), "iou_area", "scorecam")),
    Claim("Score-CAM has the highest IoU (A) at every batch size", "batch_size", best_method_is("scorecam", "iou_area")),
    Claim("Every weight-decay setting lowers Score-CAM IoU (A) below the baseline", "weight_decay",
          all_others_worse(BASELINE, "iou_area", "scorecam")),
    Claim("L1 with λ = 1e-4 has the best Score-CAM IoU (A) of the weight-decay settings", "weight_decay",
          best_setting_is(S(penalty="l1", penalty_lambda=1e-04), "iou_area", "scorecam", among=_WD)),
    Claim("Every dropout rate lowers Score-CAM IoU (A) below the baseline", "dropout",
          all_others_worse(BASELINE, "iou_area", "scorecam")),
    Claim("Dropout 0.75 has the lowest Score-CAM IoU (A)", "dropout",
          lowest_setting_is(S(dropout=0.75), "iou_area", "scorecam")),
    Claim("BatchNorm raises Score-CAM IoU (A) over the baseline", "batch_norm",
          better_than(S(norm="batch"), BASELINE, "iou_area", "scorecam")),
    Claim("BatchNorm lowers accuracy (a trade-off)", "batch_norm", lower_than(S(norm="batch"), BASELINE, "accuracy")),
    Claim("GroupNorm with 64 groups has the best Score-CAM IoU (A) of the group sizes", "group_norm",
          best_setting_is(S(groups=64, norm="group"), "iou_area", "scorecam",
                          among=[S(groups=g, norm="group") for g in (16, 32, 64)])),
    Claim("GroupNorm with 64 groups raises Score-CAM IoU (A) over the baseline", "group_norm",
          better_than(S(groups=64, norm="group"), BASELINE, "iou_area", "scorecam")),
    Claim("β = 1e-3, k = 512 has the best Score-CAM IoU (A) of the PRECODE settings", "precode",
          best_setting_is(S(precode_beta=0.001, precode_k=512), "iou_area", "scorecam", among=_PRECODE)),
    Claim("Some PRECODE setting raises Score-CAM IoU (A) over the baseline", "precode",
          some_setting_better(BASELINE, "iou_area", "scorecam")),
]

METHOD_CLAIMS: list[Claim] = [
    Claim("Score-CAM has the highest IoU (A) in most settings", "methods",
          best_method_is("scorecam", "iou_area", every_setting=False)),
    Claim("Score-CAM has the highest IoU (BB) in most settings", "methods",
          best_method_is("scorecam", "iou_bbox", every_setting=False)),
    Claim("Score-CAM has the lowest Average Drop in most settings", "methods",
          best_method_is("scorecam", "average_drop", every_setting=False)),
    Claim("Score-CAM has the highest Increase in Confidence in most settings", "methods",
          best_method_is("scorecam", "increase_in_confidence", every_setting=False)),
    Claim("CAM has the lowest IoU (A) in most settings", "methods",
          best_method_is("cam", "iou_area", every_setting=False, lowest=True)),
]

CORRELATION_FAMILIES = {"depth": +1, "batch_size": -1, "weight_decay": -1, "dropout": -1, "batch_norm": -1,
                        "group_norm": -1, "precode": -1}
_FAMILY_WORDS = {"depth": "depths", "batch_size": "batch sizes", "weight_decay": "weight-decay settings",
                 "dropout": "dropout rates", "batch_norm": "baseline vs BatchNorm",
                 "group_norm": "group sizes", "precode": "PRECODE settings"}


def correlation_claims(metric: str = "iou_area", method: str = "scorecam", label: str = "Score-CAM") -> list[Claim]:
    """The thesis's RQ6 conclusion per family: accuracy and `method`'s `metric` rise together across
    depths and trade off elsewhere (Spearman's rho over the settings' means, exact permutation test)."""
    words = REGISTRY[metric].label
    return [Claim(f"Accuracy and {label} {words} {'rise together' if sign > 0 else 'trade off'} across "
                  f"{_FAMILY_WORDS[fam]}", fam, trend(sign, metric, method))
            for fam, sign in CORRELATION_FAMILIES.items()]


# -- the judge ----------------------------------------------------------------------------------

@dataclass
class Judged:
    """One claim judged on one side: the outcome and how it was reached."""

    outcome: str | None
    rule: str = ""
    comparisons: int = 0
    design: str = ""
    seeds: str = ""
    needed: str = ""
    note: str = ""
    tests: list = field(default_factory=list)  # (Leaf, inference.Test) per comparison
    details: str = ""  # each comparison's difference, standard error, design and p-value


class _NotLearned(Exception):
    def __init__(self, settings):
        self.settings = settings


def _values(ev: Evidence, cell: Cell):
    data = ev.cells[cell]
    if isinstance(data, SeedValues):
        learned = data.learned()
        if len(learned) < 2:
            raise _NotLearned([(cell[0], len(learned), data.runs)])
    return data


def _compare(ev: Evidence, leaf: Leaf) -> I.Test | None:
    a, b = _values(ev, leaf.a), _values(ev, leaf.b)
    margin = REGISTRY[leaf.a[1]].margin
    if isinstance(a, SeedValues) and isinstance(b, SeedValues):
        la, lb = a.learned(), b.learned()
        common = sorted(set(la) & set(lb))
        pa, pb = a.values, b.values
        if len(common) >= 2 and all(pa[s][2] is not None and pa[s][2] == pb[s][2] for s in common):
            return I.paired([la[s] for s in common], [lb[s] for s in common], margin)
        return I.welch_from_values(list(la.values()), list(lb.values()), margin)
    sa, sb = (_summary(a), _summary(b))
    if sa.n < 2 or sb.n < 2 or not (math.isfinite(sa.std) and math.isfinite(sb.std)):
        return None
    return I.welch(sa.mean, sa.std, sa.n, sb.mean, sb.std, sb.n, margin)


def _summary(data) -> Summary:
    if isinstance(data, Summary):
        return data
    v = np.array(list(data.learned().values()), float)
    return Summary(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v))


@dataclass
class _Result:
    p_yes: float
    p_no: float
    p_eq: float
    tests: list


def _evaluate(node, ev: Evidence, alpha: float) -> _Result:
    if isinstance(node, Leaf):
        t = _compare(ev, node)
        if t is None:
            return _Result(1.0, 1.0, 1.0, [(node, None)])
        return _Result(t.p_greater, t.p_less, t.p_equivalent, [(node, t)])
    if isinstance(node, Trend):
        acc = [_summary(_values(ev, (s, "accuracy", ""))).mean for s in node.settings]
        val = [_summary(_values(ev, (s, node.metric, node.method))).mean for s in node.settings]
        rho, p_pos, p_neg = I.spearman_trend(acc, val)
        if math.isnan(rho):
            return _Result(1.0, 1.0, 1.0, [(node, None)])
        p_yes, p_no = (p_pos, p_neg) if node.sign > 0 else (p_neg, p_pos)
        return _Result(p_yes, p_no, 1.0, [(node, rho)])
    parts = [_evaluate(p, ev, alpha) for p in node.parts]
    k = len(parts)
    tests = [t for p in parts for t in p.tests]
    eq = max(p.p_eq for p in parts)
    if isinstance(node, All):
        return _Result(max(p.p_yes for p in parts), min(1.0, k * min(p.p_no for p in parts)), eq, tests)
    if isinstance(node, Any):
        return _Result(min(1.0, k * min(p.p_yes for p in parts)), max(p.p_no for p in parts), eq, tests)
    raise TypeError(f"node: Most decides by Holm counts and must be a claim's top node, found it inside {node!r}")


def _decide(node, ev: Evidence, alpha: float) -> tuple[str, list]:
    if isinstance(node, Most):
        parts = [_evaluate(p, ev, alpha) for p in node.parts]
        k = len(parts)
        tests = [t for p in parts for t in p.tests]
        if I.holm_count([p.p_yes for p in parts], alpha) > k / 2:
            return "yes", tests
        if I.holm_count([p.p_no for p in parts], alpha) >= k / 2:
            return "no", tests
        if I.holm_count([p.p_eq for p in parts], alpha) >= k / 2:
            return "equivalent", tests
        return "inconclusive", tests
    r = _evaluate(node, ev, alpha)
    if r.p_yes <= alpha:
        return "yes", r.tests
    if r.p_no <= alpha:
        return "no", r.tests
    if r.p_eq <= alpha:
        return "equivalent", r.tests
    return "inconclusive", r.tests


def _leaves(node) -> list:
    return [node] if isinstance(node, (Leaf, Trend)) else [x for p in node.parts for x in _leaves(p)]


def _rule(node) -> str:
    if isinstance(node, Leaf):
        return "one comparison"
    if isinstance(node, Trend):
        return f"Spearman's ρ over {len(node.settings)} settings (exact permutation test)"
    k = len(node.parts)
    if isinstance(node, All):
        return f"every one of {k} comparisons (intersection-union)"
    if isinstance(node, Any):
        return f"some of {k} comparisons (Holm)"
    return f"most of {k} settings (Holm-adjusted count)"


def _needed(node, tests: dict, route: str, level: float) -> float:
    """Seeds per setting at which `route` ("yes", "no", "equivalent") would decide with POWER."""
    if isinstance(node, Trend):
        return math.inf
    if isinstance(node, Leaf):
        t = tests.get(node)
        if t is None:
            return math.inf
        if route == "equivalent":
            return I.seeds_needed(t, level, decision="equivalent")
        if (t.diff > 0) != (route == "yes") or t.diff == 0:
            return math.inf
        return I.seeds_needed(t, level)
    k = len(node.parts)
    sub = lambda r, lv: sorted(_needed(p, tests, r, lv) for p in node.parts)  # noqa: E731
    if isinstance(node, All):
        return max(sub(route, level)) if route != "no" else min(sub(route, level / k))
    if isinstance(node, Any):
        return min(sub(route, level / k)) if route == "yes" else max(sub(route, level))
    ranked = sub(route, level / k)
    return ranked[k // 2] if route == "yes" else ranked[math.ceil(k / 2) - 1]


def _seeds_needed(node, tests: list, alpha: float) -> str:
    by_leaf = {leaf: t for leaf, t in tests if isinstance(leaf, Leaf)}
    routes = {r: _needed(node, by_leaf, r, alpha) for r in ("yes", "no", "equivalent")}
    route = min(routes, key=routes.get)
    if not math.isfinite(routes[route]):
        return f"> {I.MAX_SEEDS}" if by_leaf else "—"
    if route == "equivalent":
        return f"no effect to find (equivalent at {int(routes[route])})"
    return str(int(routes[route]))


def _design(tests: list) -> str:
    kinds = {t.design for _, t in tests if isinstance(t, I.Test)}
    return {frozenset({"paired"}): "paired by seed", frozenset({"Welch"}): "Welch",
            frozenset({"paired", "Welch"}): "paired and Welch"}.get(frozenset(kinds), "")


def _seed_counts(ev: Evidence, node) -> str:
    counts = []
    for leaf in _leaves(node):
        cells = [leaf.a, leaf.b] if isinstance(leaf, Leaf) else [(s, leaf.metric, leaf.method) for s in leaf.settings]
        for c in cells:
            data = ev.cells.get(c)
            if isinstance(data, SeedValues):
                counts.append((len(data.learned()), data.runs))
            elif isinstance(data, Summary):
                counts.append((data.n, data.n))
    if not counts:
        return ""
    lo, hi = min(c[0] for c in counts), max(c[0] for c in counts)
    runs = max(c[1] for c in counts)
    return f"{lo} of {runs}" if lo == hi else f"{lo}-{hi} of {runs}"


def judge_claim(claim: Claim, ev: Evidence | None, *, alpha: float = ALPHA) -> Judged:
    """One claim on one side's evidence (None: no data)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a level in (0, 1), found {alpha}")
    if ev is None or not ev.cells:
        return Judged(None, note="no data")
    node = claim.check(ev)
    if node is None:
        return Judged(None, note="no cells")
    if isinstance(node, Unjudged):
        return Judged(node.outcome, note=node.note)
    rule, k = _rule(node), len(_leaves(node))
    try:
        outcome, tests = _decide(node, ev, alpha)
    except _NotLearned:
        bad = _not_learned(ev, node)
        note = "; ".join(f"{ev.labels.get(s, s)}: {k_} of {n} learned" for s, k_, n in bad)
        return Judged("did not learn", rule, k, note=note, seeds=_seed_counts(ev, node))
    needed = _seeds_needed(node, tests, alpha) if outcome == "inconclusive" else ""
    return Judged(outcome, rule, k, _design(tests), _seed_counts(ev, node), needed, tests=tests,
                  details=_details(tests, ev.labels))


def _not_learned(ev: Evidence, node) -> list:
    bad = {}
    for leaf in _leaves(node):
        cells = [leaf.a, leaf.b] if isinstance(leaf, Leaf) else [(s, leaf.metric, leaf.method) for s in leaf.settings]
        for c in cells:
            try:
                _values(ev, c)
            except _NotLearned as err:
                for s, k, n in err.settings:
                    bad[s] = (s, k, n)
    return list(bad.values())


# -- scopes: the same settings on both sides -----------------------------------------------------

def _other_design(ours: Evidence, thesis: Evidence, named: list[str]) -> str:
    """Where our runs hold a thesis setting only with extra overrides (e.g. other epochs), say so."""
    notes = []
    for s in named:
        if s in ours.labels:
            continue
        want = json.loads(s)
        for o in ours.settings:
            have = json.loads(o)
            if all(have.get(k) == v for k, v in want.items()) and set(have) - set(want):
                extra = ", ".join(f"{k} {have[k]}" for k in sorted(set(have) - set(want)))
                notes.append(f"{thesis.labels.get(s, s)} runs with {extra}")
                break
    return "; ".join(notes)


def _judge_pair(claim: Claim, thesis: Evidence, ours: Evidence | None, alpha: float) -> dict:
    """A claim on both sides, over the settings both hold; where our runs cannot be judged on the
    thesis's settings, the thesis's numbers are judged on their own."""
    if ours is not None and ours.cells:
        common = [s for s in thesis.settings if s in ours.labels]
        o = judge_claim(claim, ours.restrict(common), alpha=alpha) if common else Judged(None, note="no cells")
        left_out = [s for s in thesis.settings if s not in ours.labels]
        design = _other_design(ours, thesis, left_out)
        if o.outcome is not None:
            if left_out:
                o.note = "; ".join(x for x in (o.note, f"judged on {len(common)} of the thesis's {len(thesis.settings)} "
                                               "settings" + (f" (other design: {design})" if design else "")) if x)
            return _row(claim, judge_claim(claim, thesis.restrict(common), alpha=alpha), o, alpha)
        if design:
            o = Judged("untestable", note=f"other design: {design}; the thesis's claim is about its own design")
        return _row(claim, judge_claim(claim, thesis, alpha=alpha), o, alpha)
    return _row(claim, judge_claim(claim, thesis, alpha=alpha), judge_claim(claim, ours, alpha=alpha), alpha)


def _row(claim: Claim, t: Judged, o: Judged, alpha: float) -> dict:
    notes = [o.note if o.outcome is not None else "",
             t.note if t.outcome == "untestable" and o.outcome != "untestable" else ""]
    return dict(family=claim.family, claim=claim.text, thesis=t.outcome, ours=o.outcome, verdict=VERDICTS[o.outcome],
                rule=o.rule or t.rule, comparisons=o.comparisons or t.comparisons, design=o.design,
                seeds=o.seeds, seeds_needed=o.needed, thesis_seeds_needed=t.needed,
                note="; ".join(dict.fromkeys(n for n in notes if n)), details=o.details, level=1 - alpha)


def _details(tests: list, labels: dict[str, str]) -> str:
    from thesislib.explain import LABELS

    def name(cell: Cell) -> str:
        return " ".join(x for x in (labels.get(cell[0], cell[0]), LABELS.get(cell[2], cell[2])) if x)

    out = []
    for leaf, t in tests:
        if isinstance(leaf, Leaf) and isinstance(t, I.Test):
            out.append(f"{name(leaf.a)} − {name(leaf.b)}, {REGISTRY[leaf.a[1]].label}: {t.diff:+.2f} "
                       f"(se {t.se:.2f}, {t.design}, p {t.p_greater:.3f})")
        elif isinstance(leaf, Trend) and t is not None:
            out.append(f"ρ = {t:+.2f} over {len(leaf.settings)} settings")
    return "; ".join(out)


COLUMNS = ["family", "claim", "thesis", "ours", "verdict", "rule", "comparisons", "design", "seeds", "seeds_needed",
           "thesis_seeds_needed", "note", "details", "level"]


def _thesis_family(family: str) -> Evidence:
    from thesislib.thesis import reference

    ref = reference()
    return Evidence.of_summary(ref[ref["family"] == family])


def _ours_family(results: pd.DataFrame | None, family: str) -> Evidence | None:
    if results is None or results.empty:
        return None
    return Evidence.of_results(results[results["family"] == family])


def judge(results: pd.DataFrame | None, family: str | None = None, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Each claim (of `family`) judged on the thesis's numbers and on our runs.

    Args:
        results: `Grid.results()` rows (one per run x method; `learned` and `pairing` are read).

    Returns:
        COLUMNS: thesis and ours (OUTCOMES, or None where the cells are missing), verdict (what ours
        says of the claim: agrees, disagrees, equivalent, inconclusive, did not learn, untestable,
        n/a), rule, comparisons, design (paired by seed / Welch), seeds (learned of run), seeds
        needed (ours and the thesis's, for an inconclusive claim), note, details, level.
    """
    claims = [c for c in CLAIMS if family is None or c.family == family]
    rows = [_judge_pair(c, _thesis_family(c.family), _ours_family(results, c.family), alpha) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def _methods_key(row) -> str:
    return f"{row['family']}|{_canonical(row['overrides'])}"


def _methods_scope(results: pd.DataFrame | None) -> tuple[Evidence, Evidence | None]:
    """RQ3's scope: the thesis's settings of Tables 5.2-5.4 that our runs hold with all four of the
    thesis's methods, each distinct set of runs once (a shared run counts once), on both sides."""
    from thesislib.thesis import reference

    ref = reference()
    ref = ref[ref["family"].isin(METHOD_FAMILIES)]
    thesis = Evidence.of_summary(ref, key=_methods_key)
    if results is None or results.empty:
        return thesis, None
    part = results[results["family"].isin(METHOD_FAMILIES) & results["method"].isin(THESIS_METHOD_KEYS)]
    ours = Evidence.of_results(part, key=_methods_key)
    keep, seen = [], set()
    for s in thesis.settings:
        runs = ours.runs.get(s)
        full = all(ours.has(s, "iou_area", meth) for meth in THESIS_METHOD_KEYS)
        if runs is None or not full or runs in seen:
            continue
        seen.add(runs)
        keep.append(s)
    return thesis.restrict(keep), ours.restrict(keep)


def judge_methods(results: pd.DataFrame | None, *, alpha: float = ALPHA) -> pd.DataFrame:
    """RQ3's claims on one scope for both sides (see `_methods_scope`); the thesis alone where
    our runs hold none of its settings."""
    thesis, ours = _methods_scope(results)
    if ours is not None and not ours.cells:
        thesis_all, _ = _methods_scope(None)
        rows = [_row(c, judge_claim(c, thesis_all, alpha=alpha),
                     Judged(None, note="no setting of Tables 5.2-5.4 with the four methods"), alpha)
                for c in METHOD_CLAIMS]
    else:
        rows = [_row(c, judge_claim(c, thesis, alpha=alpha), judge_claim(c, ours, alpha=alpha), alpha)
                for c in METHOD_CLAIMS]
    return pd.DataFrame(rows, columns=COLUMNS)


def judge_correlations(results: pd.DataFrame | None, metric: str = "iou_area", method: str = "scorecam", *,
                       alpha: float = ALPHA) -> pd.DataFrame:
    """`correlation_claims` judged on the thesis's numbers and on our learned runs, with the point
    estimates thesis_rho and ours_rho (Spearman over the settings both sides hold)."""
    from thesislib.explain import LABELS

    claims = correlation_claims(metric, method, LABELS.get(method, method))
    rows, rhos = [], []
    for c in claims:
        row = _judge_pair(c, _thesis_family(c.family), _ours_family(results, c.family), alpha)
        rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    for side, name in (("thesis", "thesis_rho"), ("ours", "ours_rho")):
        out[name] = [_rho(c, results, side, metric, method) for c in claims]
    return out


def _rho(claim: Claim, results, side: str, metric: str, method: str) -> float | None:
    thesis = _thesis_family(claim.family)
    ours = _ours_family(results, claim.family)
    ev = thesis if side == "thesis" else ours
    if ev is None:
        return None
    if ours is not None and ours.cells:
        ev = ev.restrict([s for s in thesis.settings if s in ours.labels] or ev.settings)
    settings = [s for s in ev.settings if ev.has(s, "accuracy") and ev.has(s, metric, method)]
    try:
        acc = [_summary(_values(ev, (s, "accuracy", ""))).mean for s in settings]
        val = [_summary(_values(ev, (s, metric, method))).mean for s in settings]
    except _NotLearned:
        return None
    if len(settings) < 2:
        return None
    rho = I.spearman_trend(acc, val)[0] if len(settings) <= 8 else math.nan
    return None if math.isnan(rho) else rho


def judge_all(results: pd.DataFrame | None, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Every claim of the report: the families' claims, RQ3's method claims and RQ6's correlation claims."""
    return pd.concat([judge(results, alpha=alpha), judge_methods(results, alpha=alpha),
                      judge_correlations(results, alpha=alpha)], ignore_index=True)


# -- for readers --------------------------------------------------------------------------------

TALLY = ("agrees", "disagrees", "equivalent", "inconclusive", "did not learn")


def verdict_counts(judged: pd.DataFrame, side: str = "ours") -> dict[str, int]:
    """How many claims of a `judge*` table have each verdict, for our runs or (side="thesis") for
    the thesis's own numbers ("agrees": they support the claim). "untestable" and "n/a" (claims
    without data) are counted apart, never in the tally."""
    if side not in ("ours", "thesis"):
        raise ValueError(f"side: expected 'ours' or 'thesis', found {side!r}")
    values = judged["verdict"] if side == "ours" else judged["thesis"].map(lambda v: VERDICTS.get(v, "n/a"))
    counts = values.fillna("n/a").value_counts()
    out = {k: int(counts.get(k, 0)) for k in TALLY}
    for extra in ("untestable", "n/a"):
        if counts.get(extra, 0):
            out[extra] = int(counts[extra])
    return out


def _cell(v) -> str:
    return v if isinstance(v, str) and v else "—"


def verdicts_markdown(judged: pd.DataFrame, labels: dict[str, str] | None = None):
    """Markdown for the report: one row per claim with the thesis's numbers' answer, ours, the
    verdict, the rule and design, the seeds used and the seeds that would decide it."""
    from IPython.display import Markdown

    if judged.empty:
        return Markdown("_No thesis claims for this table._")
    level = float(judged["level"].iloc[0]) * 100
    lines = ["| claim | thesis's numbers | our runs | verdict | test | seeds (learned of run) | seeds to decide |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in judged.itertuples():
        test = ", ".join(x for x in (r.rule, r.design) if isinstance(x, str) and x)
        needed = r.seeds_needed if isinstance(r.seeds_needed, str) and r.seeds_needed else ""
        note = f" ({r.note})" if isinstance(r.note, str) and r.note else ""
        verdict = f"**{r.verdict}**" if r.verdict in ("agrees", "disagrees", "equivalent") else r.verdict  # decided
        lines.append(f"| {r.claim} | {_cell(r.thesis)} | {_cell(r.ours)} | {verdict}{note} | {_cell(test)} | "
                     f"{_cell(r.seeds)} | {_cell(needed)} |")
    # an explanation, shown once per section of the report (`thesislib.report`)
    head = (f'<p class="note">Verdicts at {level:g} % (each decided outcome is wrong at most {100 - level:g} % of '
            'the time; see Methods).</p>\n\n')
    return Markdown(head + "\n".join(lines))


def claims_markdown(results: pd.DataFrame, family: str):
    """The claims of `family` as Markdown for the report (`verdicts_markdown(judge(results, family))`)."""
    return verdicts_markdown(judge(results, family))
