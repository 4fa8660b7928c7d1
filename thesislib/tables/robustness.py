"""Robustness: does a conclusion survive another metric (`ranking_agreement`), another threshold
(`threshold_curve`) or a slice of the images (`slice_conclusions`)?
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
from scipy import stats as sps

from thesislib.labels import CLASS_NAMES
from thesislib.metrics import REGISTRY, curve_columns
from thesislib.references import LABELS as REF
from thesislib.tables.formatting import Table
from thesislib.tables.methods import same_as
from thesislib.tables.summaries import interval, with_defaults
from thesislib.tables.verdicts import against_references

__all__ = ["ranking_agreement", "threshold_curve", "slice_conclusions"]

def _explainer_means(results: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per explainer (label): the mean over runs of each column, over the runs that learned (all
    runs where none did); explainers whose maps equal an earlier one's are left out (a duplicate
    would count as a tie it did not earn)."""
    results = with_defaults(results)
    learned = results["learned"].astype(bool)
    part = results[learned] if learned.any() else results
    part = part[part["kind"] == "explainer"]
    present = [c for c in columns if c in part.columns]
    if "run_id" in part.columns and present:  # the evaluation's word, else equal metrics on every run
        twins = same_as(part, list(dict.fromkeys(part["method_label"])), present)
        part = part[~part["method_label"].isin(list(twins))]
    return part.groupby("method_label", sort=False)[present].mean()


def _direction(column: str) -> bool:
    """True if higher is better: the registry's word, and for the IoU curve's columns (IoUs) True."""
    return REGISTRY[column].higher if column in REGISTRY else True


def _column_label(column: str) -> str:
    if column in REGISTRY:
        return f"{REGISTRY[column].arrow} {REGISTRY[column].label}"
    rule, level = curve_columns().get(column, (None, None))
    if rule == "fixed":
        return f"IoU, map > {level:g}"
    if rule == "top":
        return f"IoU, top {100 * level:g} % of pixels"
    return column


def ranking_agreement(results: pd.DataFrame, metrics: Sequence[str], *, reference: str = "iou_area") -> Table:
    """Does ranking the explainers by another metric (or IoU at another threshold) give the order
    that `reference` gives? Kendall's tau-b between the two orders of the explainers' means over runs.

    Args:
        results: `Grid.results` rows (explainers and references; only explainers are ranked,
            each distinct map once).
        metrics: registry names or IoU-curve columns (`thesislib.metrics.curve_columns`).
        reference: the metric whose order the others are compared with.

    Returns:
        A `Table`, one row per metric: τ (Kendall's tau-b, +1 same order, -1 reversed), its
        two-sided p-value, the number of explainers ranked, the first explainer by it and by the
        reference, and a verdict: "agrees" (τ > 0, p < 0.05), "reversed" (τ < 0, p < 0.05),
        "not significantly" otherwise.
    """
    means = _explainer_means(results, [reference, *metrics])
    if reference not in means.columns or means.empty:
        return Table(pd.DataFrame(), [f"No explainer has {reference!r} in these results."])
    ref = means[reference] if _direction(reference) else -means[reference]
    rows = []
    for m in metrics:
        if m not in means.columns or m == reference:
            continue
        v = (means[m] if _direction(m) else -means[m]).dropna()
        both = ref.loc[v.index].dropna()
        v = v.loc[both.index]
        tau, p = (sps.kendalltau(both, v) if len(v) > 2 else (math.nan, math.nan))
        verdict = ("agrees" if tau > 0 and p < 0.05 else "reversed" if tau < 0 and p < 0.05 else "not significantly")
        rows.append({"metric": _column_label(m), "Kendall τ": round(float(tau), 2) if not pd.isna(tau) else math.nan,
                     "p": round(float(p), 3) if not pd.isna(p) else math.nan, "explainers": len(v),
                     "first by it": v.idxmax() if len(v) else "—",
                     f"first by {REGISTRY[reference].label}": both.idxmax() if len(both) else "—",
                     f"order agrees with {REGISTRY[reference].label}": verdict if len(v) > 2 else "n/a"})
    frame = pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()
    return Table(frame, [], decimals={"Kendall τ": 2, "p": 3}, explanations=[f"Explainers ranked by their mean over runs (learned runs only, where any learned); methods "
                         f"with another's maps counted once. τ compares each order with {REGISTRY[reference].label}'s."])


def threshold_curve(results: pd.DataFrame, *, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """IoU (A) against the binarisation of the heatmap: Otsu, fixed thresholds, top shares of pixels.

    Args:
        results: `Grid.results` rows with the IoU curve's columns.
        methods: method labels to keep (default: every explainer with its own maps, the prior and
            the ceiling).

    Returns:
        Tidy: method (label), kind, rule ("otsu" | "fixed" | "top"), level (threshold or share;
        NaN for Otsu), mean, std, n (runs), lo, hi (95 % t-interval over runs), in %.
    """
    results = with_defaults(results)
    if "run_id" in results.columns:
        results = results.drop_duplicates(["run_id", "method"])
    if methods is None:
        same = results["same_as"].astype(object).fillna("").astype(str) if "same_as" in results else ""
        keep = ((results["kind"] == "explainer") & (same == "")) | results["method_label"].isin(
            [REF["prior"], REF["ceiling"]])
        results = results[keep]
    else:
        results = results[results["method_label"].isin(list(methods))]
    columns = {"iou_area": ("otsu", math.nan), **curve_columns()}
    rows = []
    for label, g in results.groupby("method_label", sort=False):
        for col, (rule, level) in columns.items():
            if col not in g.columns:
                continue
            v = g[col].dropna()
            rows.append(dict(method=label, kind=g["kind"].iloc[0], rule=rule, level=level, mean=v.mean(),
                             std=v.std(), n=len(v)))
    out = pd.DataFrame(rows, columns=["method", "kind", "rule", "level", "mean", "std", "n"])
    out["lo"], out["hi"] = interval(out["mean"], out["std"], out["n"])
    return out


def slice_conclusions(results: pd.DataFrame, sliced: pd.DataFrame, *, by: str = "correct",
                      metrics: Sequence[str] = ("iou_area", "pointing_game")) -> Table:
    """Where reading only some images changes a conclusion: per metric, the first explainer (mean
    over runs) and whether some explainer beats the prior (`against_references`' verdict), on all
    scored images and on each slice.

    Args:
        results: `grid.results()` rows; sliced: `grid.results(by=by)` rows.
        by: the slicing column ("correct": correctly vs wrongly classified; "pred"; "label").
        metrics: localisation metrics of the registry.

    Returns:
        A `Table` indexed by (metric, conclusion), one column per slice beside "all images", and
        "changes" ("yes" where a slice's conclusion differs from all images').
    """
    names = {"correct": {True: "correctly classified", False: "misclassified"}}.get(by, CLASS_NAMES)
    learned = with_defaults(results)["learned"].astype(bool)
    learned_s = with_defaults(sliced)["learned"].astype(bool)
    base = results[learned.to_numpy()] if learned.any() else results
    part = sliced[learned_s.to_numpy()] if learned_s.any() else sliced
    slices = [("all images", base)] + [(names.get(v, str(v)), g) for v, g in part.groupby(by, sort=True)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for m in metrics:
        label = f"{REGISTRY[m].arrow} {REGISTRY[m].label}"
        for name, df in slices:
            means = _explainer_means(df.assign(learned=True), [m])
            first = "—"
            if m in means.columns and means[m].notna().any():
                first = (means[m].idxmax() if REGISTRY[m].higher else means[m].idxmin())
            rows.setdefault((label, "first explainer"), {})[name] = first
            verdict = against_references(df, m).frame
            rows.setdefault((label, "an explainer beats the strongest reference (95 %)"), {})[name] = (
                ", ".join(dict.fromkeys(verdict["an explainer beats it (95 %)"])) if not verdict.empty else "n/a")
            n = int(df.drop_duplicates(["run_id", "method"])["n_images"].sum()) if "n_images" in df.columns else 0
            rows.setdefault((label, "images scored (all runs, per method)"), {})[name] = str(
                n // max(1, df["method"].nunique()))
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["metric", "conclusion"])
    conclusions = frame.index.get_level_values("conclusion") != "images scored (all runs, per method)"
    frame["changes"] = ""
    for key in frame.index[conclusions]:
        values = frame.loc[key].drop("changes").dropna()
        frame.loc[key, "changes"] = "yes" if (values != values.get("all images")).any() else "no"
    note = (f"Runs that learned (all runs where none did). A slice with few images per run is noisy: read its "
            f"column with the images it holds.")
    return Table(frame, [], [note])
