"""Tables: our results in the thesis's shape, the thesis's published numbers beside them, and
computed claims ("Score-CAM has the highest IoU (A): thesis yes, ours no").

The thesis's tables ship with the package (reference/reference_tables.csv, one row per table
cell, percentages as printed). Both the thesis's numbers and ours are brought to one long format
(family, setting, method, metric, mean, std, n) so the same claim functions judge both.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Sequence

import pandas as pd

from thesislib.evaluation import CLASSIFICATION, METRICS
from thesislib.study.grid import FAMILIES, setting_label

__all__ = ["reference", "aggregate", "thesis_table", "Claim", "CLAIMS", "judge", "claims_markdown",
           "THESIS_METHODS", "TABLE_METRICS", "method_table", "judge_methods", "judge_correlations",
           "setting_correlation", "verdicts_markdown", "method_label", "expert_regions", "best_settings",
           "generalisation_gap", "model_points", "correlation_table"]

THESIS_METHODS = ("CAM", "Grad-CAM", "Grad-CAM++", "Score-CAM")
TABLE_METRICS = ("iou_area", "iou_bbox", "average_drop", "increase_in_confidence")
_LABELS = {**{k: v for k, (v, _) in CLASSIFICATION.items()}, **{k: v for k, (v, _) in METRICS.items()}}
_HIGHER = {**{k: h for k, (_, h) in CLASSIFICATION.items()}, **{k: h for k, (_, h) in METRICS.items()}}


def _reference_overrides(row: pd.Series) -> dict:
    fam, reg, param, value = row["experiment"], row["regularizer"], row["param"], row["value"]
    if fam == "depth":
        return {"depth": int(row["depth"])}
    if fam in ("epochs", "batch_size"):
        return {"batch_size": int(row["batch_size"])}
    if reg == "none":
        return {}
    if fam == "weight_decay":
        return {"penalty": str(param).lower(), "penalty_lambda": float(value)}
    if fam == "dropout":
        return {"dropout": float(value)}
    if fam == "batch_norm":
        return {"norm": "batch"}
    if fam == "group_norm":
        return {"norm": "group", "groups": int(float(value))}
    if fam == "precode":
        return {"precode_k": int(float(value)), "precode_beta": float(str(param).split("=")[1])}
    raise ValueError(f"reference_tables.csv: unknown experiment {fam!r}")


def reference() -> pd.DataFrame:
    """The thesis's numbers in long format: table, family, setting, method ('' for classification),
    metric, mean, std (percent)."""
    return _reference().copy()


@functools.lru_cache(maxsize=1)
def _reference() -> pd.DataFrame:
    with resources.files("thesislib").joinpath("reference/reference_tables.csv").open() as fh:
        raw = pd.read_csv(fh)
    out = pd.DataFrame(dict(
        table=raw["table"].astype(str), family=raw["experiment"],
        setting=[setting_label(f, _reference_overrides(r)) for f, (_, r) in zip(raw["experiment"], raw.iterrows())],
        method=raw["method"].fillna(""), metric=raw["metric"], mean=raw["mean"], std=raw["std"]))
    out["n"] = 3
    return out


def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds, long format: family, setting, method, metric, mean, std, n.

    Args:
        results: `thesislib.study.run` output (one row per run x method, metrics in %).
    """
    if results.empty:
        return pd.DataFrame(columns=["family", "setting", "method", "metric", "mean", "std", "n"])
    present = [m for m in METRICS if m in results.columns]
    expl = results.melt(id_vars=["family", "setting", "seed", "method_label"], value_vars=present,
                        var_name="metric", value_name="value").rename(columns={"method_label": "method"})
    runs = results.drop_duplicates(["family", "setting", "seed"])
    cls = runs.melt(id_vars=["family", "setting", "seed"], value_vars=list(CLASSIFICATION),
                    var_name="metric", value_name="value").assign(method="")
    long = pd.concat([cls, expl], ignore_index=True).dropna(subset=["value"])
    g = long.groupby(["family", "setting", "method", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _fmt(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.1f} ± {std:.1f}"


def thesis_table(ours: pd.DataFrame, family: str | Sequence[str], *, settings: Sequence[str] | None = None,
                 methods: Sequence[str] = THESIS_METHODS, metrics: Sequence[str] = TABLE_METRICS,
                 with_thesis: bool = True) -> pd.DataFrame:
    """A table shaped like the thesis's: rows metric (with ↑/↓) x method, columns setting x (ours, thesis).

    Args:
        ours: `aggregate` output.
        family: experiment family (or several, e.g. a family and its baseline share columns).
        settings: column order (default: the order in `ours`).
        methods: explainers to show (labels as in the thesis).
        metrics: explainability metrics; classification metrics always come first.
        with_thesis: add the thesis's value beside ours.

    Returns:
        A DataFrame of "mean ± std" strings (percent); "—" where a value does not exist.
    """
    fams = [family] if isinstance(family, str) else list(family)
    ref = reference()
    ref = ref[ref["family"].isin(fams)]
    mine = ours[ours["family"].isin(fams)]
    if settings is None:
        settings = list(dict.fromkeys(mine["setting"])) or list(dict.fromkeys(ref["setting"]))
    row_keys = [(m, "") for m in CLASSIFICATION] + [(m, meth) for m in metrics for meth in methods]

    def cell(df: pd.DataFrame, metric: str, method: str, setting: str) -> str:
        hit = df[(df["metric"] == metric) & (df["method"] == method) & (df["setting"] == setting)]
        return _fmt(hit["mean"].iloc[0], hit["std"].iloc[0]) if len(hit) else "—"

    cols = {}
    for s in settings:
        cols[(s, "ours")] = [cell(mine, m, meth, s) for m, meth in row_keys]
        if with_thesis:
            cols[(s, "thesis")] = [cell(ref, m, meth, s) for m, meth in row_keys]
    index = pd.MultiIndex.from_tuples(
        [(("↑ " if _HIGHER[m] else "↓ ") + _LABELS[m], meth) for m, meth in row_keys], names=["metric", "method"])
    table = pd.DataFrame(cols, index=index)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=[FAMILIES[fams[0]][1], ""])
    return table


# -- claims -------------------------------------------------------------------------------------

def _value(df: pd.DataFrame, setting: str, metric: str, method: str = "") -> float | None:
    hit = df[(df["setting"] == setting) & (df["metric"] == metric) & (df["method"] == method)]
    return float(hit["mean"].iloc[0]) if len(hit) else None


TIE = "(tie)"


def _best(values: dict[str, float | None], higher: bool) -> str | None:
    """The key with the best value; TIE if several share it; None if there are no values."""
    vals = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if not vals:
        return None
    top = (max if higher else min)(vals.values())
    winners = [k for k, v in vals.items() if v == top]
    return winners[0] if len(winners) == 1 else TIE


def best_setting_is(setting: str, metric: str, method: str = "", among: Sequence[str] | None = None):
    """Claim: `setting` has the best `metric` (of `method`) among the family's settings."""
    def check(df: pd.DataFrame) -> bool | None:
        settings = among or list(dict.fromkeys(df["setting"]))
        winner = _best({s: _value(df, s, metric, method) for s in settings}, _HIGHER[metric])
        return None if winner is None or _value(df, setting, metric, method) is None else winner == setting
    return check


def best_method_is(method: str, metric: str, every_setting: bool = True, methods: Sequence[str] = THESIS_METHODS):
    """Claim: `method` has the best `metric` (at every setting, or on average over settings)."""
    def check(df: pd.DataFrame) -> bool | None:
        settings = list(dict.fromkeys(df["setting"]))
        per = []
        for s in settings:
            w = _best({m: _value(df, s, metric, m) for m in methods}, _HIGHER[metric])
            if w is not None:
                per.append(w == method)
        if not per:
            return None
        return all(per) if every_setting else sum(per) > len(per) / 2
    return check


def better_than(a: str, b: str, metric: str, method: str = "", every: Sequence[str] | None = None):
    """Claim: setting `a` beats setting `b` on `metric` (for each of the settings `every` in place of a)."""
    def check(df: pd.DataFrame) -> bool | None:
        higher = _HIGHER[metric]
        vb = _value(df, b, metric, method)
        results = []
        for s in (every or [a]):
            va = _value(df, s, metric, method)
            if va is None or vb is None:
                continue
            results.append(va > vb if higher else va < vb)
        return all(results) if results else None
    return check


def all_others_worse(baseline: str, metric: str, method: str = ""):
    """Claim: every non-baseline setting of the family is worse than the baseline."""
    def check(df: pd.DataFrame) -> bool | None:
        vb = _value(df, baseline, metric, method)
        others = [s for s in dict.fromkeys(df["setting"]) if s != baseline]
        vals = [_value(df, s, metric, method) for s in others]
        vals = [v for v in vals if v is not None]
        if vb is None or not vals:
            return None
        return all((v < vb) if _HIGHER[metric] else (v > vb) for v in vals)
    return check


@dataclass(frozen=True)
class Claim:
    """A statement of the thesis about one family, checkable on any long-format table."""

    text: str
    family: str
    check: Callable[[pd.DataFrame], bool | None]


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
          best_setting_is("L1 1e-04", "iou_area", "Score-CAM",
                          among=["L1 1e-05", "L1 1e-04", "L1 1e-03", "L2 1e-05", "L2 1e-04", "L2 1e-03"])),
    Claim("Every dropout rate lowers Score-CAM IoU (A) below the baseline", "dropout",
          all_others_worse("baseline", "iou_area", "Score-CAM")),
    Claim("Dropout 0.75 has the lowest Score-CAM IoU (A)", "dropout",
          lambda df: (lambda w: None if w is None else w == "0.75")(
              _best({s: _value(df, s, "iou_area", "Score-CAM") for s in dict.fromkeys(df["setting"])}, False))),
    Claim("BatchNorm raises Score-CAM IoU (A) over the baseline", "batch_norm",
          better_than("BatchNorm", "baseline", "iou_area", "Score-CAM")),
    Claim("BatchNorm lowers accuracy (a trade-off)", "batch_norm",
          lambda df: (lambda a, b: None if a is None or b is None else a < b)(
              _value(df, "BatchNorm", "accuracy"), _value(df, "baseline", "accuracy"))),
    Claim("GroupNorm with 64 groups has the best Score-CAM IoU (A) of the group sizes", "group_norm",
          best_setting_is("64", "iou_area", "Score-CAM", among=["16", "32", "64"])),
    Claim("GroupNorm with 64 groups raises Score-CAM IoU (A) over the baseline", "group_norm",
          better_than("64", "baseline", "iou_area", "Score-CAM")),
    Claim("β = 1e-3, k = 512 has the best Score-CAM IoU (A) of the PRECODE settings", "precode",
          lambda df: best_setting_is("β=1e-03, k=512", "iou_area", "Score-CAM",
                                     among=[s for s in dict.fromkeys(df["setting"]) if s != "baseline"])(df)),
    Claim("Some PRECODE setting raises Score-CAM IoU (A) over the baseline", "precode",
          lambda df: (lambda vb, vals: None if vb is None or not vals else any(v > vb for v in vals))(
              _value(df, "baseline", "iou_area", "Score-CAM"),
              [v for s in dict.fromkeys(df["setting"]) if s != "baseline"
               for v in [_value(df, s, "iou_area", "Score-CAM")] if v is not None])),
]


def judge(ours: pd.DataFrame, family: str | None = None) -> pd.DataFrame:
    """Each claim (of `family`) judged on the thesis's numbers and on ours.

    Returns:
        Columns family, claim, thesis, ours (True / False / None where the data is missing), agree.
    """
    ref = reference()
    rows = []
    for c in CLAIMS:
        if family is not None and c.family != family:
            continue
        t = c.check(ref[ref["family"] == c.family])
        o = c.check(ours[ours["family"] == c.family]) if not ours.empty else None
        rows.append(dict(family=c.family, claim=c.text, thesis=t, ours=o,
                         agree=None if t is None or o is None else t == o))
    return pd.DataFrame(rows)


def _yes(v: bool | None) -> str:
    return "n/a" if v is None else "yes" if v else "no"


def claims_markdown(ours: pd.DataFrame, family: str):
    """The claims of `family` as Markdown lines for the report: "claim: thesis yes, ours no"."""
    return verdicts_markdown(judge(ours, family))


# -- RQ3: methods across settings ---------------------------------------------------------------

def method_table(results: pd.DataFrame, metrics: Sequence[str] = ("iou_area", "iou_bbox", "average_drop",
                                                                   "increase_in_confidence", "pointing_game",
                                                                   "relevance_mass")) -> pd.DataFrame:
    """Every method's metrics over all runs of `results` (mean ± std over runs, %) and its time per image."""
    present = [m for m in metrics if m in results.columns]
    g = results.groupby("method_label", sort=False)
    out = pd.DataFrame({("↑ " if _HIGHER[m] else "↓ ") + _LABELS[m]:
                        [_fmt(a, b) for a, b in zip(g[m].mean(), g[m].std().fillna(0))] for m in present},
                       index=g.size().index)
    out["ms per image"] = (g["seconds_per_image"].mean() * 1000).round(1).astype(str)
    out["constant maps"] = g["constant_heatmaps"].sum().astype(int)
    out.index.name = "method"
    return out


def _methods_view(long: pd.DataFrame, families: Sequence[str]) -> pd.DataFrame:
    part = long[long["family"].isin(families)].copy()
    part["setting"] = part["family"] + ":" + part["setting"]
    return part


METHOD_CLAIMS = [
    Claim("Score-CAM has the highest IoU (A) in most settings", "methods",
          best_method_is("Score-CAM", "iou_area", every_setting=False)),
    Claim("Score-CAM has the highest IoU (BB) in most settings", "methods",
          best_method_is("Score-CAM", "iou_bbox", every_setting=False)),
    Claim("Score-CAM has the lowest Average Drop in most settings", "methods",
          best_method_is("Score-CAM", "average_drop", every_setting=False)),
    Claim("Score-CAM has the highest Increase in Confidence in most settings", "methods",
          best_method_is("Score-CAM", "increase_in_confidence", every_setting=False)),
    Claim("CAM has the lowest IoU (A) in most settings", "methods",
          lambda df: best_method_is("CAM", "iou_area", every_setting=False)(
              df.assign(mean=-df["mean"]) if not df.empty else df)),
]


def judge_methods(ours: pd.DataFrame) -> pd.DataFrame:
    """RQ3's claims: thesis over its Tables 5.2-5.4, ours over all settings in `ours`."""
    ref = _methods_view(reference(), ["depth", "epochs", "batch_size"])
    mine = ours.assign(setting=ours["family"] + ":" + ours["setting"]) if not ours.empty else ours
    rows = []
    for c in METHOD_CLAIMS:
        t, o = c.check(ref), c.check(mine) if not mine.empty else None
        rows.append(dict(family=c.family, claim=c.text, thesis=t, ours=o, agree=None if t is None or o is None else t == o))
    return pd.DataFrame(rows)


# -- RQ6: does accuracy go with explainability? -------------------------------------------------

CORRELATION_FAMILIES = {"depth": +1, "batch_size": -1, "weight_decay": -1, "dropout": -1, "batch_norm": -1,
                        "group_norm": -1, "precode": -1}
_FAMILY_WORDS = {"depth": "depths", "batch_size": "batch sizes", "weight_decay": "weight-decay settings",
                 "dropout": "dropout rates", "batch_norm": "baseline vs BatchNorm",
                 "group_norm": "group sizes", "precode": "PRECODE settings"}


def setting_correlation(long: pd.DataFrame, family: str, metric: str = "iou_area", method: str = "Score-CAM") -> float | None:
    """Spearman correlation, across a family's settings, of mean accuracy and mean `metric` of `method`."""
    from scipy.stats import spearmanr

    part = long[long["family"] == family]
    acc = part[(part["metric"] == "accuracy")].set_index("setting")["mean"]
    exp = part[(part["metric"] == metric) & (part["method"] == method)].set_index("setting")["mean"]
    both = pd.concat([acc, exp], axis=1, join="inner").dropna()
    if len(both) < 2 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return None
    return float(spearmanr(both.iloc[:, 0], both.iloc[:, 1]).statistic)


def judge_correlations(ours: pd.DataFrame, metric: str = "iou_area", method: str = "Score-CAM") -> pd.DataFrame:
    """The thesis's RQ6 conclusion per family (accuracy and explainability rise together across
    depths; they trade off elsewhere), judged by the sign of the across-settings Spearman correlation."""
    ref = reference()
    rows = []
    for fam, sign in CORRELATION_FAMILIES.items():
        words = "rise together" if sign > 0 else "trade off"
        text = f"Accuracy and {method} {_LABELS[metric]} {words} across {_FAMILY_WORDS[fam]}"
        rt, ro = setting_correlation(ref, fam, metric, method), setting_correlation(ours, fam, metric, method)
        t = None if rt is None else (rt > 0) == (sign > 0)
        o = None if ro is None else (ro > 0) == (sign > 0)
        rows.append(dict(family=fam, claim=text, thesis=t, ours=o, thesis_rho=rt, ours_rho=ro,
                         agree=None if t is None or o is None else t == o))
    return pd.DataFrame(rows)


def verdicts_markdown(judged: pd.DataFrame):
    """Markdown lines "claim: thesis yes, ours no" for a `judge*` table."""
    from IPython.display import Markdown

    lines = [f"- {r.claim}: thesis **{_yes(r.thesis)}**, ours **{_yes(r.ours)}**" for r in judged.itertuples()]
    return Markdown("\n".join(lines) if lines else "_No thesis claims for this table._")


# -- helpers the notebooks call -----------------------------------------------------------------

def method_label(method: str) -> str:
    """"scorecam" -> "Score-CAM"."""
    from thesislib.explain import LABELS

    return LABELS[method]


def expert_regions(data) -> pd.DataFrame:
    """How large the Otsu foreground of the expert maps of a split is (% of the image)."""
    from thesislib.metrics import binarize, is_empty

    _, labels, maps = data.batch()
    masks = binarize(maps)
    share = masks.flatten(1).float().mean(1) * 100
    rows = []
    for sel in (slice(None), labels == 0, labels == 1):
        s = share[sel]
        rows.append(dict(images=len(s), mean=float(s.mean()), min=float(s.min()), max=float(s.max()),
                         empty=int(is_empty(masks[sel]).sum())))
    out = pd.DataFrame(rows, index=["all", "non-glaucoma", "glaucoma"]).round(1)
    out.index.name = "expert region (% of image)"
    return out


def best_settings(ours: pd.DataFrame, *, method: str = "Score-CAM", metric: str = "iou_area") -> list[tuple[str, str]]:
    """(family, setting) of the baseline and of each family's best non-baseline setting by `metric`."""
    part = ours[(ours["method"] == method) & (ours["metric"] == metric)]
    picks: list[tuple[str, str]] = []
    if (part["setting"] == "baseline").any():
        picks.append((part[part["setting"] == "baseline"]["family"].iloc[0], "baseline"))
    for fam, g in part[part["setting"] != "baseline"].groupby("family", sort=False):
        best = g.loc[g["mean"].idxmax() if _HIGHER[metric] else g["mean"].idxmin()]
        picks.append((fam, best["setting"]))
    return picks


def generalisation_gap(hist: pd.DataFrame) -> pd.DataFrame:
    """Per setting (mean over seeds): best epoch, and train / validation loss and their gap at the last epoch."""
    last = hist.sort_values("epoch").groupby(["setting", "seed"]).tail(1)
    best = hist.loc[hist.groupby(["setting", "seed"])["val_loss"].idxmin()]
    out = pd.DataFrame({
        "best epoch": best.groupby("setting")["epoch"].mean(),
        "final train CE": last.groupby("setting")["train_ce"].mean(),
        "final val loss": last.groupby("setting")["val_loss"].mean(),
    })
    out["gap (val - train)"] = out["final val loss"] - out["final train CE"]
    return out.round(3)


def model_points(results: pd.DataFrame, method: str) -> pd.DataFrame:
    """One row per trained model and family: classification and the `method`'s metrics (%).

    A run shared by several families (the baseline) appears once per family; `stats.correlations`
    counts it once in the pooled correlation (unique="run_id").
    """
    part = results[results["method"] == method]
    cols = ["family", "setting", "seed", "run_id", *CLASSIFICATION, *[m for m in METRICS if m in part.columns]]
    return part[cols].drop_duplicates(["family", "run_id"]).reset_index(drop=True)


def correlation_table(corr: pd.DataFrame) -> pd.DataFrame:
    """`stats.correlations` output as a readable table: r [95 % CI] per group and metric."""
    def ci(r, lo, hi):
        return "—" if pd.isna(r) else f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    out = pd.DataFrame({
        "group": corr["group"], "explainability": corr["y"].map(lambda m: _LABELS.get(m, m)), "models": corr["n"],
        "Pearson r [95% CI]": [ci(*v) for v in corr[["pearson", "pearson_lo", "pearson_hi"]].itertuples(index=False)],
        "Spearman ρ [95% CI]": [ci(*v) for v in corr[["spearman", "spearman_lo", "spearman_hi"]].itertuples(index=False)],
    })
    return out.set_index(["group", "explainability"])
