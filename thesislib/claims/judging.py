"""Judging: one claim on one side's evidence (`judge_claim`), and on both sides over the settings
both hold (`judge_pair`), at level ALPHA with the rules of the package's docstring.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from thesislib import inference as I
from thesislib.claims.evidence import Cell, Evidence, SeedValues, Summary
from thesislib.claims.statements import All, Any, Claim, Leaf, Most, Trend, Unjudged
from thesislib.explain import LABELS
from thesislib.metrics import REGISTRY

__all__ = ["ALPHA", "OUTCOMES", "VERDICTS", "COLUMNS", "Judged", "NotLearned", "learned_values", "seed_summary",
           "judge_claim", "judge_pair", "verdict_row"]

ALPHA = I.ALPHA
OUTCOMES = ("yes", "no", "equivalent", "inconclusive", "did not learn", "untestable")
# what our runs' outcome says of the thesis's claim
VERDICTS = {"yes": "agrees", "no": "disagrees", "equivalent": "equivalent", "inconclusive": "inconclusive",
            "did not learn": "did not learn", "untestable": "untestable", None: "n/a"}


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


class NotLearned(Exception):
    def __init__(self, settings):
        self.settings = settings


def learned_values(ev: Evidence, cell: Cell):
    data = ev.cells[cell]
    if isinstance(data, SeedValues):
        learned = data.learned()
        if len(learned) < 2:
            raise NotLearned([(cell[0], len(learned), data.runs)])
    return data


def _compare(ev: Evidence, leaf: Leaf) -> I.Test | None:
    a, b = learned_values(ev, leaf.a), learned_values(ev, leaf.b)
    margin = REGISTRY[leaf.a[1]].margin
    if isinstance(a, SeedValues) and isinstance(b, SeedValues):
        la, lb = a.learned(), b.learned()
        common = sorted(set(la) & set(lb))
        pa, pb = a.values, b.values
        if len(common) >= 2 and all(pa[s][2] is not None and pa[s][2] == pb[s][2] for s in common):
            return I.paired([la[s] for s in common], [lb[s] for s in common], margin)
        return I.welch_from_values(list(la.values()), list(lb.values()), margin)
    sa, sb = (seed_summary(a), seed_summary(b))
    if sa.n < 2 or sb.n < 2 or not (math.isfinite(sa.std) and math.isfinite(sb.std)):
        return None
    return I.welch(sa.mean, sa.std, sa.n, sb.mean, sb.std, sb.n, margin)


def seed_summary(data) -> Summary:
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
        acc = [seed_summary(learned_values(ev, (s, "accuracy", ""))).mean for s in node.settings]
        val = [seed_summary(learned_values(ev, (s, node.metric, node.method))).mean for s in node.settings]
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
    except NotLearned:
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
                learned_values(ev, c)
            except NotLearned as err:
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


def judge_pair(claim: Claim, thesis: Evidence, ours: Evidence | None, alpha: float) -> dict:
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
            return verdict_row(claim, judge_claim(claim, thesis.restrict(common), alpha=alpha), o, alpha)
        if design:
            o = Judged("untestable", note=f"other design: {design}; the thesis's claim is about its own design")
        return verdict_row(claim, judge_claim(claim, thesis, alpha=alpha), o, alpha)
    return verdict_row(claim, judge_claim(claim, thesis, alpha=alpha), judge_claim(claim, ours, alpha=alpha), alpha)


def verdict_row(claim: Claim, t: Judged, o: Judged, alpha: float) -> dict:
    notes = [o.note if o.outcome is not None else "",
             t.note if t.outcome == "untestable" and o.outcome != "untestable" else ""]
    return dict(family=claim.family, claim=claim.text, thesis=t.outcome, ours=o.outcome, verdict=VERDICTS[o.outcome],
                rule=o.rule or t.rule, comparisons=o.comparisons or t.comparisons, design=o.design,
                seeds=o.seeds, seeds_needed=o.needed, thesis_seeds_needed=t.needed,
                note="; ".join(dict.fromkeys(n for n in notes if n)), details=o.details, level=1 - alpha)


def _details(tests: list, labels: dict[str, str]) -> str:
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
