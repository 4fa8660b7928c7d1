"""Reliability: can a metric tell training settings apart at the seeds the study has, and do the
metrics agree on which explainer is best?

- `icc`: the one-way random-effects intraclass correlation ICC(1) of a metric over runs grouped
  by training setting (Shrout & Fleiss 1979): the share of the metric's spread that comes from
  the setting rather than the seed, with its F-based 95 % interval and the one-way ANOVA F-test
  (scipy's `f_oneway`). A metric whose F-test does not reject at 5 % cannot tell the settings
  apart at these seeds.
- `kendalls_w`: Kendall's coefficient of concordance W of m rankings of n items (ties averaged,
  with the ties correction), and its chi-square test, which is Friedman's (scipy's
  `friedmanchisquare`): 1 when every ranking agrees, 0 when they are unrelated.
- `setting_reliability`, `method_concordance`: the tables of the report's reliability panel.
- `power_by_family`: per family, the smallest difference the judge decides with 80 % power at the
  study's seeds (`thesislib.inference.detectable_difference`), from the seed-to-seed spread of the
  learned runs: what a design buys, and what a change of design would lose.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from thesislib.metrics.registry import in_set

__all__ = ["icc", "kendalls_w", "setting_reliability", "method_concordance", "power_by_family", "power_beside",
           "PANEL_METRICS"]

# the metrics of the reliability panel: the registry's "reliability" set (thesislib.metrics.registry)
PANEL_METRICS = tuple(m.name for m in in_set("reliability"))
LEVEL = 0.95


def icc(values: Sequence[float], groups: Sequence) -> dict:
    """ICC(1) of `values` grouped by `groups` (unequal group sizes allowed, n0 as the group size).

    Returns:
        icc, lo, hi (its LEVEL interval), F and p (the one-way ANOVA), groups, n; NaN where there are
        fewer than two groups, no group with two values, or no spread at all.
    """
    df = pd.DataFrame({"v": np.asarray(values, float), "g": list(groups)}).dropna()
    sizes = df.groupby("g")["v"].size()
    g, n = len(sizes), len(df)
    out = dict(icc=math.nan, lo=math.nan, hi=math.nan, F=math.nan, p=math.nan, groups=g, n=n)
    if g < 2 or n - g < 1:
        return out
    grand = df["v"].mean()
    means = df.groupby("g")["v"].mean()
    msb = float((sizes * (means - grand) ** 2).sum() / (g - 1))
    msw = float(((df["v"] - df["g"].map(means)) ** 2).sum() / (n - g))
    if msw == 0:
        return out
    n0 = (n - float((sizes ** 2).sum()) / n) / (g - 1)
    f = msb / msw
    a = 1 - LEVEL
    f_lo = f / stats.f.ppf(1 - a / 2, g - 1, n - g)
    f_hi = f * stats.f.ppf(1 - a / 2, n - g, g - 1)
    out.update(icc=(msb - msw) / (msb + (n0 - 1) * msw), lo=(f_lo - 1) / (f_lo + n0 - 1),
               hi=(f_hi - 1) / (f_hi + n0 - 1), F=f, p=float(stats.f.sf(f, g - 1, n - g)))
    return out


def kendalls_w(scores: np.ndarray) -> dict:
    """Kendall's W of the rankings in the rows of `scores` [m raters, n items] (higher score, higher
    rank; rows with a NaN are left out).

    Returns:
        w, chi2 = m (n - 1) W, p (chi-square with n - 1 degrees of freedom, Friedman's test), m, n.
    """
    scores = np.asarray(scores, float)
    scores = scores[~np.isnan(scores).any(1)] if scores.ndim == 2 else scores
    m, n = scores.shape if scores.ndim == 2 else (0, 0)
    if m < 2 or n < 2:
        return dict(w=math.nan, chi2=math.nan, p=math.nan, m=m, n=n)
    ranks = np.apply_along_axis(stats.rankdata, 1, scores)
    s = float(((ranks.sum(0) - m * (n + 1) / 2) ** 2).sum())
    ties = sum(float((c ** 3 - c).sum()) for c in (np.unique(r, return_counts=True)[1] for r in ranks))
    den = m * m * (n ** 3 - n) - m * ties
    w = 12 * s / den if den > 0 else math.nan
    chi2 = m * (n - 1) * w
    return dict(w=w, chi2=chi2, p=float(stats.chi2.sf(chi2, n - 1)), m=m, n=n)


def _runs(results: pd.DataFrame) -> pd.DataFrame:
    """Learned runs, each run x method once (a shared baseline counts once)."""
    part = results
    if "learned" in part.columns:
        part = part[part["learned"].astype(object).where(part["learned"].notna(), True).astype(bool)]
    return part.drop_duplicates(["run_id", "method"])


def _setting_of(part: pd.DataFrame) -> pd.Series:
    """A run's training setting: its config without the seed (the same model in several families counts once)."""
    if "config" in part.columns:
        return part["config"].map(lambda c: c.replace(seed=0).run_id("") if hasattr(c, "replace") else str(c))
    return part["family"].astype(str) + ":" + part["setting"].astype(str)


def setting_reliability(results: pd.DataFrame, methods: Sequence[str] = ("scorecam", "gradcam"),
                        metrics: Sequence[str] = PANEL_METRICS, *, classification: bool = True):
    """Per explainer and metric: how much of the metric's spread over the learned runs comes from
    the training setting rather than the seed (ICC(1) with its interval) and whether the settings
    differ at all (F-test at 5 %).

    Returns:
        A `thesislib.tables.Table`: rows (method, metric), columns "ICC [95 %]", "F-test p",
        "settings", "runs", "tells settings apart".
    """
    from thesislib.explain import LABELS
    from thesislib.metrics import REGISTRY
    from thesislib.tables import Table

    part = _runs(results)
    rows = []
    groups = [("", "accuracy")] if classification else []
    groups += [(m, metric) for m in methods for metric in metrics]
    for method, metric in groups:
        sel = part if method == "" else part[part["method"] == method]
        if metric not in sel.columns:
            continue
        if method == "":
            sel = sel.drop_duplicates("run_id")
        r = icc(sel[metric], _setting_of(sel))
        if r["groups"] < 2:
            continue
        verdict = ("no: cannot tell settings apart at these seeds" if not r["p"] <= 0.05 else "yes")
        rows.append({"method": LABELS.get(method, "classification") if method else "classification",
                     "metric": REGISTRY[metric].label,
                     "ICC [95 %]": "—" if math.isnan(r["icc"]) else f"{r['icc']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]",
                     "F-test p": "—" if math.isnan(r["p"]) else f"{r['p']:.3f}", "settings": r["groups"],
                     "runs": r["n"], "tells settings apart": "—" if math.isnan(r["p"]) else verdict})
    frame = pd.DataFrame(rows).set_index(["method", "metric"]) if rows else pd.DataFrame()
    return Table(frame, [], ["ICC(1): the share of a metric's variance over the learned runs that lies between training "
                         "settings rather than between seeds of one setting (1: the setting decides everything, 0: "
                         "the seed does); its 95 % interval from the F distribution. \"Tells settings apart\": the "
                         "one-way ANOVA over settings rejects equal means at 5 %."])


def method_concordance(results: pd.DataFrame, metrics: Sequence[str] = PANEL_METRICS):
    """Do the runs and the metrics agree on the ranking of the explainers?

    Per metric: Kendall's W over the learned runs (each run ranks the explainers by its mean
    metric), and the seed-to-seed stability (the mean Kendall's tau between the rankings of two
    seeds of one setting). Across metrics: Kendall's W of the rankings the metrics give (each
    explainer's mean over runs, in the metric's direction). Explainers whose maps equal another's
    count once.

    Returns:
        A `thesislib.tables.Table`: one row per metric and one "all metrics" row.
    """
    from thesislib.metrics import REGISTRY
    from thesislib.tables import Table

    part = _runs(results)
    part = part[part["kind"] == "explainer"] if "kind" in part.columns else part
    if "same_as" in part.columns:
        same = part["same_as"].astype(object).where(part["same_as"].notna(), "").astype(str)
        part = part[same == ""]
    rows, means = [], {}
    for metric in metrics:
        if metric not in part.columns:
            continue
        sign = 1.0 if REGISTRY[metric].higher else -1.0
        wide = part.pivot_table(index="run_id", columns="method_label", values=metric, aggfunc="first") * sign
        if wide.shape[1] < 2:
            continue
        means[metric] = wide.mean()
        w = kendalls_w(wide.to_numpy())
        taus = []
        setting = part.drop_duplicates("run_id").set_index("run_id")
        setting = _setting_of(setting.reset_index()).set_axis(setting.index)
        for _, ids in setting.groupby(setting):
            runs = [r for r in ids.index if r in wide.index]
            for a, b in itertools.combinations(runs, 2):
                tau = stats.kendalltau(wide.loc[a], wide.loc[b]).statistic
                if not math.isnan(tau):
                    taus.append(tau)
        rows.append({"ranking by": REGISTRY[metric].label, "explainers": w["n"], "raters": f"{w['m']} runs",
                     "Kendall's W": _num(w["w"]), "p": _num(w["p"], 3),
                     "seed-to-seed τ (mean)": _num(float(np.mean(taus)) if taus else math.nan)})
    if len(means) > 1:
        table = pd.DataFrame(means).T.dropna(axis=1)
        w = kendalls_w(table.to_numpy())
        rows.append({"ranking by": "all metrics (each explainer's mean)", "explainers": w["n"],
                     "raters": f"{w['m']} metrics", "Kendall's W": _num(w["w"]), "p": _num(w["p"], 3),
                     "seed-to-seed τ (mean)": "—"})
    frame = pd.DataFrame(rows).set_index("ranking by") if rows else pd.DataFrame()
    return Table(frame, [], ["Kendall's W: 1 when every rater ranks the explainers alike, 0 when the rankings are "
                         "unrelated; p from Friedman's chi-square test. Seed-to-seed τ: how alike two seeds of one "
                         "setting rank the explainers (1 the same order, 0 unrelated, -1 reversed)."])


def _num(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _paired_sd(part: pd.DataFrame, metric: str, settings: list) -> tuple[float, int, bool]:
    """(sd, df, paired): the pooled sd of the per-seed differences of each setting to the first one
    where they share initial weights (`pairing`), else the pooled within-setting sd (Welch's design)."""
    first = part[part["setting"] == settings[0]].set_index("pairing")[metric]
    sums = dfs = 0.0
    paired = "pairing" in part.columns
    for other in settings[1:]:
        diff = (part[part["setting"] == other].set_index("pairing")[metric] - first).dropna()
        if len(diff) < 2:
            paired = False
            break
        sums += float(diff.var(ddof=1)) * (len(diff) - 1)
        dfs += len(diff) - 1
    if paired and dfs:
        return math.sqrt(sums / dfs), int(dfs), True
    sums = dfs = 0.0
    for _, group in part.groupby("setting")[metric]:
        if len(group) >= 2:
            sums += float(group.var(ddof=1)) * (len(group) - 1)
            dfs += len(group) - 1
    return (math.sqrt(sums / dfs) if dfs else math.nan), int(dfs), False


def power_by_family(results: pd.DataFrame, method: str = "scorecam", metric: str = "iou_area",
                    seeds: Sequence[int] | None = None, alpha: float = 0.05, target: float = 0.8) -> pd.DataFrame:
    """Per family: the smallest true difference of `metric` (for `method`) between two of its settings
    that a one-sided test at `alpha` decides with `target` power, at the seeds the grid has and at
    `seeds` more (default 5 and 10): a paired t-test on the differences by seed where the design pairs
    settings (their sd pooled over the settings against the first), Welch's test otherwise (the
    pooled within-setting sd). Learned runs only.

    Returns:
        One row per family: family, design, settings, seeds (per setting, the most any has), sd,
        and one column "detectable at n seeds" per n, in the metric's unit.
    """
    from thesislib.inference import detectable_difference

    part = _runs(results)
    part = part[(part["method"] == method) & part[metric].notna()] if metric in part.columns else part.iloc[:0]
    rows = []
    for family, fam in part.groupby("family", sort=False):
        settings = list(dict.fromkeys(fam["setting"]))
        if len(settings) < 2:
            continue
        n = int(fam.groupby("setting").size().max())
        sd, df, paired = _paired_sd(fam, metric, settings)
        row = {"family": family, "design": "paired by seed" if paired else "unpaired (Welch)",
               "settings": len(settings), "seeds": n, "sd": sd}
        for k in dict.fromkeys([n, *(seeds or (5, 10))]):
            row[f"detectable at {k} seeds"] = detectable_difference(sd, k, alpha, target, paired_design=paired)
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["family", "design", "settings", "seeds", "sd"])



def power_beside(power: pd.DataFrame, before: dict, seeds: int = 3, alpha: float = 0.05,
                 target: float = 0.8) -> pd.DataFrame:
    """Per family of `power` (`power_by_family`), the detectable difference at `seeds` seeds beside
    that of an earlier design, both from their own sd through the same test, so a change of design
    shows whether it lost power.

    Args:
        before: {"design": what it was (e.g. the report it comes from), "sd": family -> its sd,
            "paired": the families whose design paired settings by seed}; a params file's
            `power_before`.

    Raises:
        ValueError: `before` lacks "design" or "sd", naming what it has.
    """
    from thesislib.inference import detectable_difference

    missing = [k for k in ("design", "sd") if k not in before]
    if missing:
        raise ValueError(f"power_before: missing {', '.join(missing)}; expected design, sd (family -> sd) and "
                         f"paired (families), found {', '.join(map(str, before)) or 'nothing'}")
    paired_before = set(before.get("paired") or ())
    now, then = f"detectable at {seeds} seeds", f"{before['design']}: detectable at {seeds} seeds"
    rows = []
    for r in power.itertuples(index=False):
        sd_before = before["sd"].get(r.family)
        d_now = detectable_difference(r.sd, seeds, alpha, target, paired_design=r.design == "paired by seed")
        d_then = (detectable_difference(float(sd_before), seeds, alpha, target,
                                        paired_design=r.family in paired_before)
                  if sd_before is not None else math.nan)
        rows.append({"family": r.family, now: d_now, then: d_then,
                     "no larger": "—" if math.isnan(d_then) or math.isnan(d_now) else
                     "yes" if d_now <= d_then + 1e-9 else "no"})
    return pd.DataFrame(rows, columns=["family", now, then, "no larger"])
