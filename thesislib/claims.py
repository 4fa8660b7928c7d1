"""Claims and verdicts: the thesis's statements, judged on its own numbers and on ours by one
judge that knows seed noise.

A claim is built from comparisons of cells (setting, metric, method) of a long-format table
(family, setting, method, metric, mean, std, n: `tables.aggregate` for ours, `thesis.reference`
for the thesis's). The judge draws the cells' means by a parametric bootstrap,
mean* = mean + std / sqrt(n) * T with T ~ Student t(n - 1), evaluates each comparison on every
draw and calls it "yes" where it holds in at least 1 - a of the draws, "no" where it holds in at
most a of them, else "inconclusive", with a = alpha / (the number of comparisons the claim makes)
(Bonferroni). Comparisons combine in three-valued logic: "at every setting" / "best of k" need
all of theirs to be "yes"; "some setting beats the baseline" needs one; "in most settings" needs
more than half. So a one-of-six claim is "yes" at most about alpha of the time when nothing
differs. A claim's verdict for a reader: "agrees" where our runs say yes, "disagrees" where they
say no, "inconclusive" inside the seed noise; the thesis's own numbers are judged beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from thesislib.metrics import REGISTRY
from thesislib.stats import spearman_rows
from thesislib.thesis import THESIS_METHODS, reference

__all__ = ["ALPHA", "DRAWS", "Cells", "Leaf", "All", "Any", "Most", "Claim", "CLAIMS", "METHOD_CLAIMS",
           "CORRELATION_FAMILIES", "correlation_claims", "decide", "judge", "judge_methods",
           "judge_correlations", "setting_correlation", "verdicts_markdown", "claims_markdown",
           "verdict_counts", "best_setting_is", "lowest_setting_is", "best_method_is", "better_than",
           "lower_than", "all_others_worse", "some_setting_better"]

ALPHA = 0.05  # the confidence level of every verdict is 1 - ALPHA
DRAWS = 4000
VERDICTS = {"yes": "agrees", "no": "disagrees", "inconclusive": "inconclusive", None: "n/a"}

Cell = tuple  # (setting, metric, method)


# -- statements ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    """One comparison: `holds` maps drawn means [B, len(cells)] to bool [B]; None: undecidable."""

    cells: tuple
    holds: Callable[[np.ndarray], np.ndarray] | None
    text: str = ""


@dataclass(frozen=True)
class All:
    """Holds if every part holds ("at every depth", "best of k": k - 1 comparisons)."""

    parts: tuple


@dataclass(frozen=True)
class Any:
    """Holds if some part holds ("some setting beats the baseline")."""

    parts: tuple


@dataclass(frozen=True)
class Most:
    """Holds if more than half of the parts hold ("in most settings")."""

    parts: tuple


def _leaves(node) -> list[Leaf]:
    return [node] if isinstance(node, Leaf) else [leaf for p in node.parts for leaf in _leaves(p)]


def _greater(a: Cell, b: Cell) -> Leaf:
    return Leaf((a, b), lambda x: x[:, 0] > x[:, 1], f"{a} > {b}")


class Cells:
    """The cells of one long-format table: (setting, metric, method) -> (mean, std, n)."""

    def __init__(self, df: pd.DataFrame):
        missing = {"setting", "metric", "method", "mean", "std", "n"} - set(df.columns)
        if missing:
            raise ValueError(f"df: expected a long-format table, missing columns {sorted(missing)}")
        keys = zip(df["setting"], df["metric"], df["method"])
        values = zip(df["mean"].astype(float), df["std"].astype(float), df["n"].astype(float))
        self.stats = {k: v for k, v in zip(keys, values) if np.isfinite(v[0])}
        self.settings = list(dict.fromkeys(df["setting"]))

    def __len__(self) -> int:
        return len(self.stats)


def _has(df: Cells, setting: str, metric: str, method: str = "") -> bool:
    return (setting, metric, method) in df.stats


def _settings(df: Cells) -> list[str]:
    return df.settings


def _better(df, a: str, b: str, metric: str, method: str = "") -> Leaf | None:
    """Setting a is better than setting b on `metric` (direction from the metric registry)."""
    if not (_has(df, a, metric, method) and _has(df, b, metric, method)):
        return None
    ca, cb = (a, metric, method), (b, metric, method)
    return _greater(ca, cb) if REGISTRY[metric].higher else _greater(cb, ca)


def _node(kind, parts) -> object | None:
    parts = tuple(p for p in parts if p is not None)
    return kind(parts) if parts else None


def best_setting_is(setting: str, metric: str, method: str = "", among: Sequence[str] | None = None):
    """Claim: `setting` has the best `metric` (of `method`): it beats each other setting (k - 1 comparisons)."""
    def check(df: Cells):
        if not _has(df, setting, metric, method):
            return None
        others = [s for s in (among or _settings(df)) if s != setting]
        return _node(All, [_better(df, setting, s, metric, method) for s in others])
    return check


def lowest_setting_is(setting: str, metric: str, method: str = "", among: Sequence[str] | None = None):
    """Claim: `setting` has the numerically lowest `metric` of the family's settings."""
    def check(df: Cells):
        if not _has(df, setting, metric, method):
            return None
        others = [s for s in (among or _settings(df)) if s != setting and _has(df, s, metric, method)]
        return _node(All, [_greater((s, metric, method), (setting, metric, method)) for s in others])
    return check


def best_method_is(method: str, metric: str, every_setting: bool = True, methods: Sequence[str] = THESIS_METHODS,
                   lowest: bool = False):
    """Claim: `method` has the best (or, with `lowest`, the numerically lowest) `metric` at every
    setting, or in most settings; at each setting it must beat every other method present."""
    def at(df, s):
        if not _has(df, s, metric, method):
            return None
        me = (s, metric, method)
        others = [(s, metric, m) for m in methods if m != method and _has(df, s, metric, m)]
        if lowest:
            return _node(All, [_greater(o, me) for o in others])
        return _node(All, [_greater(me, o) if REGISTRY[metric].higher else _greater(o, me) for o in others])

    def check(df: Cells):
        return _node(All if every_setting else Most, [at(df, s) for s in _settings(df)])
    return check


def better_than(a: str, b: str, metric: str, method: str = "", every: Sequence[str] | None = None):
    """Claim: setting `a` beats setting `b` on `metric` (each of the settings `every` in place of a)."""
    def check(df: Cells):
        return _node(All, [_better(df, s, b, metric, method) for s in (every or [a])])
    return check


def lower_than(a: str, b: str, metric: str, method: str = ""):
    """Claim: setting `a` has a numerically lower `metric` than setting `b`."""
    def check(df: Cells):
        if not (_has(df, a, metric, method) and _has(df, b, metric, method)):
            return None
        return All((_greater((b, metric, method), (a, metric, method)),))
    return check


def all_others_worse(baseline: str, metric: str, method: str = ""):
    """Claim: every non-baseline setting of the family is worse than the baseline."""
    def check(df: Cells):
        return _node(All, [_better(df, baseline, s, metric, method) for s in _settings(df) if s != baseline])
    return check


def some_setting_better(baseline: str, metric: str, method: str = ""):
    """Claim: at least one non-baseline setting beats the baseline (one of k: each at alpha / k)."""
    def check(df: Cells):
        return _node(Any, [_better(df, s, baseline, metric, method) for s in _settings(df) if s != baseline])
    return check


@dataclass(frozen=True)
class Claim:
    """A statement of the thesis about one family, checkable on any long-format table.

    check(Cells(df)) returns the statement as comparisons of df's cells (Leaf / All / Any / Most),
    or None where df lacks the cells it needs.
    """

    text: str
    family: str
    check: Callable[[Cells], object | None]


_WD = ["L1 1e-05", "L1 1e-04", "L1 1e-03", "L2 1e-05", "L2 1e-04", "L2 1e-03"]

CLAIMS: list[Claim] = [
    Claim("ResNet-50 has the highest accuracy", "depth", best_setting_is("50", "accuracy")),
    Claim("ResNet-50 has the highest Score-CAM IoU (A)", "depth", best_setting_is("50", "iou_area", "Score-CAM")),
    Claim("Score-CAM has the highest IoU (A) at every depth", "depth", best_method_is("Score-CAM", "iou_area")),
    Claim("Score-CAM has the lowest Average Drop at every depth", "depth", best_method_is("Score-CAM", "average_drop")),
    Claim("Score-CAM has the highest IoU (A) after long training", "epochs", best_method_is("Score-CAM", "iou_area")),
    Claim("Batch size 256 has the highest accuracy", "batch_size", best_setting_is("256", "accuracy")),
    Claim("Batch size 256 has the highest Score-CAM IoU (A)", "batch_size", best_setting_is("256", "iou_area", "Score-CAM")),
    Claim("Score-CAM has the highest IoU (A) at every batch size", "batch_size", best_method_is("Score-CAM", "iou_area")),
    Claim("Every weight-decay setting lowers Score-CAM IoU (A) below the baseline", "weight_decay",
          all_others_worse("baseline", "iou_area", "Score-CAM")),
    Claim("L1 with λ = 1e-4 has the best Score-CAM IoU (A) of the weight-decay settings", "weight_decay",
          best_setting_is("L1 1e-04", "iou_area", "Score-CAM", among=_WD)),
    Claim("Every dropout rate lowers Score-CAM IoU (A) below the baseline", "dropout",
          all_others_worse("baseline", "iou_area", "Score-CAM")),
    Claim("Dropout 0.75 has the lowest Score-CAM IoU (A)", "dropout", lowest_setting_is("0.75", "iou_area", "Score-CAM")),
    Claim("BatchNorm raises Score-CAM IoU (A) over the baseline", "batch_norm",
          better_than("BatchNorm", "baseline", "iou_area", "Score-CAM")),
    Claim("BatchNorm lowers accuracy (a trade-off)", "batch_norm", lower_than("BatchNorm", "baseline", "accuracy")),
    Claim("GroupNorm with 64 groups has the best Score-CAM IoU (A) of the group sizes", "group_norm",
          best_setting_is("64", "iou_area", "Score-CAM", among=["16", "32", "64"])),
    Claim("GroupNorm with 64 groups raises Score-CAM IoU (A) over the baseline", "group_norm",
          better_than("64", "baseline", "iou_area", "Score-CAM")),
    Claim("β = 1e-3, k = 512 has the best Score-CAM IoU (A) of the PRECODE settings", "precode",
          lambda df: best_setting_is("β=1e-03, k=512", "iou_area", "Score-CAM",
                                     among=[s for s in _settings(df) if s != "baseline"])(df)),
    Claim("Some PRECODE setting raises Score-CAM IoU (A) over the baseline", "precode",
          some_setting_better("baseline", "iou_area", "Score-CAM")),
]

METHOD_CLAIMS: list[Claim] = [
    Claim("Score-CAM has the highest IoU (A) in most settings", "methods",
          best_method_is("Score-CAM", "iou_area", every_setting=False)),
    Claim("Score-CAM has the highest IoU (BB) in most settings", "methods",
          best_method_is("Score-CAM", "iou_bbox", every_setting=False)),
    Claim("Score-CAM has the lowest Average Drop in most settings", "methods",
          best_method_is("Score-CAM", "average_drop", every_setting=False)),
    Claim("Score-CAM has the highest Increase in Confidence in most settings", "methods",
          best_method_is("Score-CAM", "increase_in_confidence", every_setting=False)),
    Claim("CAM has the lowest IoU (A) in most settings", "methods",
          best_method_is("CAM", "iou_area", every_setting=False, lowest=True)),
]


# -- the judge ----------------------------------------------------------------------------------

def decide(node, df: pd.DataFrame | Cells, *, alpha: float = ALPHA, draws: int = DRAWS, seed: int = 0) -> tuple[str, int]:
    """Judge a statement on one long-format table.

    Args:
        node: a claim's statement (Leaf / All / Any / Most) over cells of `df`.
        df: long format with setting, metric, method, mean, std, n.
        alpha: family-wise error level; each of the m comparisons is judged at alpha / m.
        draws: parametric bootstrap draws of each cell's mean (Student t with n - 1 degrees of freedom).
        seed: the draws' seed (same seed, same verdict).

    Returns:
        ("yes" | "no" | "inconclusive", m). A comparison that touches a cell with n < 2 or a NaN
        std is inconclusive.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a level in (0, 1), found {alpha}")
    leaves = _leaves(node)
    level = alpha / len(leaves)
    stats_ = (df if isinstance(df, Cells) else Cells(df)).stats
    rng = np.random.default_rng(seed)
    drawn: dict = {}

    def sample(cell) -> np.ndarray | None:
        if cell not in drawn:
            mean, std, n = stats_.get(cell, (math.nan, math.nan, 0))
            if n < 2 or not np.isfinite(std) or not np.isfinite(mean):
                drawn[cell] = None
            else:  # every cell's draws come from the one generator, in the order the claim names cells
                drawn[cell] = mean + std / math.sqrt(n) * rng.standard_t(n - 1, size=draws)
        return drawn[cell]

    def leaf_verdict(leaf: Leaf) -> str:
        cols = [sample(c) for c in leaf.cells]
        if leaf.holds is None or any(c is None for c in cols):
            return "inconclusive"
        p = float(np.mean(leaf.holds(np.stack(cols, axis=1))))
        return "yes" if p >= 1 - level else "no" if p <= level else "inconclusive"

    def walk(n) -> str:
        if isinstance(n, Leaf):
            return leaf_verdict(n)
        v = [walk(p) for p in n.parts]
        yes, no, k = v.count("yes"), v.count("no"), len(v)
        if isinstance(n, All):
            return "yes" if yes == k else "no" if no else "inconclusive"
        if isinstance(n, Any):
            return "yes" if yes else "no" if no == k else "inconclusive"
        return "yes" if yes > k / 2 else "no" if k - no <= k / 2 else "inconclusive"

    return walk(node), len(leaves)


def _judge_rows(claims: Sequence[Claim], thesis_df: Callable, ours_df: Callable, **kw) -> list[dict]:
    rows = []
    for c in claims:
        t_df, o_df = thesis_df(c), ours_df(c)
        t_df = Cells(t_df) if t_df is not None and not t_df.empty else None
        o_df = Cells(o_df) if o_df is not None and not o_df.empty else None
        t_node = c.check(t_df) if t_df else None
        o_node = c.check(o_df) if o_df else None
        t, _ = decide(t_node, t_df, **kw) if t_node is not None else (None, 0)
        o, m = decide(o_node, o_df, **kw) if o_node is not None else (None, 0)
        rows.append(dict(family=c.family, claim=c.text, thesis=t, ours=o, verdict=VERDICTS[o], comparisons=m,
                         level=1 - kw.get("alpha", ALPHA)))
    return rows


_COLUMNS = ["family", "claim", "thesis", "ours", "verdict", "comparisons", "level"]


def judge(ours: pd.DataFrame, family: str | None = None, *, alpha: float = ALPHA, draws: int = DRAWS,
          seed: int = 0) -> pd.DataFrame:
    """Each claim (of `family`) judged on the thesis's numbers and on ours.

    Args:
        ours: `tables.aggregate` output (or any long format with mean, std, n).

    Returns:
        Columns family, claim, thesis and ours ("yes" / "no" / "inconclusive"; None where the
        cells are missing), verdict ("agrees" / "disagrees" / "inconclusive"; "n/a" without our
        data), comparisons (m of the Bonferroni correction on our side), level (1 - alpha).
    """
    ref = reference()
    claims = [c for c in CLAIMS if family is None or c.family == family]
    rows = _judge_rows(claims, lambda c: ref[ref["family"] == c.family],
                       lambda c: ours[ours["family"] == c.family] if not ours.empty else None,
                       alpha=alpha, draws=draws, seed=seed)
    return pd.DataFrame(rows, columns=_COLUMNS)


def _methods_view(long: pd.DataFrame, families: Sequence[str] | None = None) -> pd.DataFrame:
    part = long if families is None else long[long["family"].isin(families)]
    return part.assign(setting=part["family"] + ":" + part["setting"])


def judge_methods(ours: pd.DataFrame, *, alpha: float = ALPHA, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """RQ3's claims: thesis over its Tables 5.2-5.4, ours over every family and setting in `ours`."""
    ref = _methods_view(reference(), ["depth", "epochs", "batch_size"])
    mine = _methods_view(ours) if not ours.empty else None
    rows = _judge_rows(METHOD_CLAIMS, lambda c: ref, lambda c: mine, alpha=alpha, draws=draws, seed=seed)
    return pd.DataFrame(rows, columns=_COLUMNS)


# -- RQ6: does accuracy go with explainability? -------------------------------------------------

CORRELATION_FAMILIES = {"depth": +1, "batch_size": -1, "weight_decay": -1, "dropout": -1, "batch_norm": -1,
                        "group_norm": -1, "precode": -1}
_FAMILY_WORDS = {"depth": "depths", "batch_size": "batch sizes", "weight_decay": "weight-decay settings",
                 "dropout": "dropout rates", "batch_norm": "baseline vs BatchNorm",
                 "group_norm": "group sizes", "precode": "PRECODE settings"}
MIN_SETTINGS = 3  # with two settings Spearman's rho is always +-1


def _paired_settings(df: Cells, metric: str, method: str) -> list[str]:
    return [s for s in _settings(df) if _has(df, s, "accuracy") and _has(df, s, metric, method)]


def setting_correlation(long: pd.DataFrame, family: str, metric: str = "iou_area",
                        method: str = "Score-CAM") -> float | None:
    """Spearman correlation, across a family's settings, of mean accuracy and mean `metric` of `method`
    (None with fewer than 2 settings or a constant variable)."""
    from scipy.stats import spearmanr

    cells = Cells(long[long["family"] == family])
    settings = _paired_settings(cells, metric, method)
    acc = np.array([cells.stats[(s, "accuracy", "")][0] for s in settings], float)
    exp = np.array([cells.stats[(s, metric, method)][0] for s in settings], float)
    if len(settings) < 2 or np.ptp(acc) == 0 or np.ptp(exp) == 0:
        return None
    return float(spearmanr(acc, exp).statistic)


def _sign_of_spearman(sign: int, metric: str, method: str):
    def check(df: Cells):
        settings = _paired_settings(df, metric, method)
        if len(settings) < 2:
            return None
        cells = tuple((s, "accuracy", "") for s in settings) + tuple((s, metric, method) for s in settings)
        k = len(settings)
        holds = None if k < MIN_SETTINGS else (lambda x: sign * spearman_rows(x[:, :k], x[:, k:]) > 0)
        return Leaf(cells, holds, f"sign of Spearman over {k} settings")
    return check


def correlation_claims(metric: str = "iou_area", method: str = "Score-CAM") -> list[Claim]:
    """The thesis's RQ6 conclusion per family: accuracy and `method`'s `metric` rise together across
    depths and trade off elsewhere; judged by the sign of Spearman's rho over the family's drawn
    setting means (inconclusive with fewer than MIN_SETTINGS settings)."""
    label = REGISTRY[metric].label
    return [Claim(f"Accuracy and {method} {label} {'rise together' if sign > 0 else 'trade off'} across "
                  f"{_FAMILY_WORDS[fam]}", fam, _sign_of_spearman(sign, metric, method))
            for fam, sign in CORRELATION_FAMILIES.items()]


def judge_correlations(ours: pd.DataFrame, metric: str = "iou_area", method: str = "Score-CAM", *,
                       alpha: float = ALPHA, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """`correlation_claims` judged on the thesis's numbers and on ours, with the point estimates
    thesis_rho and ours_rho (Spearman over settings of the mean values)."""
    ref = reference()
    rows = _judge_rows(correlation_claims(metric, method), lambda c: ref[ref["family"] == c.family],
                       lambda c: ours[ours["family"] == c.family] if not ours.empty else None,
                       alpha=alpha, draws=draws, seed=seed)
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out["thesis_rho"] = [setting_correlation(ref, f, metric, method) for f in out["family"]]
    out["ours_rho"] = [None if ours.empty else setting_correlation(ours, f, metric, method) for f in out["family"]]
    return out


# -- for readers --------------------------------------------------------------------------------

def verdict_counts(judged: pd.DataFrame) -> dict[str, int]:
    """How many claims of a `judge*` table agree, disagree or are inconclusive (plus "n/a": claims
    without our data, only where there are any)."""
    counts = judged["verdict"].value_counts()
    out = {k: int(counts.get(k, 0)) for k in ("agrees", "disagrees", "inconclusive")}
    if counts.get("n/a", 0):
        out["n/a"] = int(counts["n/a"])
    return out


def _word(v: str | None) -> str:
    return v if isinstance(v, str) else "n/a"  # None, or NaN where a column mixes None and text


def verdicts_markdown(judged: pd.DataFrame):
    """Markdown for the report: the confidence level, then per claim the thesis's numbers' answer,
    ours, and the verdict."""
    from IPython.display import Markdown

    if judged.empty:
        return Markdown("_No thesis claims for this table._")
    level = float(judged["level"].iloc[0]) * 100
    head = (f"Verdicts at {level:g} % confidence: a parametric bootstrap of each seed mean "
            f"({DRAWS} draws, Student t), the error level divided by the number of comparisons a claim "
            "makes. *Agrees*: our runs support the claim; *disagrees*: they contradict it; *inconclusive*: "
            "the difference lies inside the seed noise. *Thesis* judges the thesis's own numbers "
            "(mean, std, 3 seeds) the same way.\n")
    lines = []
    for r in judged.itertuples():
        note = " — the thesis's own numbers do not support it" if r.thesis == "no" else ""
        lines.append(f"- {r.claim}: thesis **{_word(r.thesis)}**, ours **{_word(r.ours)}** → "
                     f"**{r.verdict}**{note}")
    return Markdown(head + "\n".join(lines))


def claims_markdown(ours: pd.DataFrame, family: str):
    """The claims of `family` as Markdown for the report (`verdicts_markdown(judge(ours, family))`)."""
    return verdicts_markdown(judge(ours, family))
