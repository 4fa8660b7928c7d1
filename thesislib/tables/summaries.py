"""Summaries: our results over seeds in long format (`aggregate`: mean, sample std, t-interval, runs
that never learned), the one source of every number a table shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from thesislib.labels import CLASS_NAMES, family_label
from thesislib.metrics import REGISTRY, registered
from thesislib.tables.formatting import method_kind

__all__ = ["LEVEL", "with_defaults", "interval", "split_families", "aggregate"]

LEVEL = 0.95  # of the t-interval in every cell
_LONG = ["family", "setting", "method", "metric", "mean", "std", "n", "lo", "hi", "n_flagged", "kind"]


def with_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with `learned` and `kind` filled in where the run records predate them."""
    out = results
    if "learned" not in out.columns:
        out = out.assign(learned=True)
    elif out["learned"].isna().any():  # not recorded: no evidence that the run failed
        out = out.assign(learned=out["learned"].astype(object).where(out["learned"].notna(), True).astype(bool))
    if "kind" not in out.columns:
        out = out.assign(kind=[method_kind(m) for m in out["method"]])
    return out


def interval(mean: pd.Series, std: pd.Series, n: pd.Series, metric=None) -> tuple[pd.Series, pd.Series]:
    """The LEVEL Student-t interval of a mean, kept inside the metric's range (`Metric.bounds`: a
    true mean lies inside it, so the clipped interval covers it as often); NaN where n < 2.

    Args:
        metric: a registry name, or a Series of them aligned with `mean` (None: no clipping).
    """
    n = n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = sps.t.ppf(0.5 + LEVEL / 2, np.where(n > 1, n - 1, np.nan)) * std / np.sqrt(n)
    lo, hi = mean - half, mean + half
    if metric is not None:
        names = metric if isinstance(metric, pd.Series) else pd.Series(metric, index=mean.index)
        bounds = names.map(lambda m: REGISTRY[m].bounds if m in REGISTRY else (-np.inf, np.inf))
        lo = np.maximum(lo, bounds.map(lambda b: b[0]).astype(float))
        hi = np.minimum(hi, bounds.map(lambda b: b[1]).astype(float))
    return lo, hi


def split_families(results: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """`grid.results(by=...)` rows with each family split per class ("<family>, predicted
    glaucoma"; by="correct": "<family>, correctly classified" / "misclassified"); None: unchanged."""
    if by is None:
        return results
    if by == "correct":
        return results.assign(family=[f"{family_label(f)}, "
                                      f"{'correctly classified' if bool(c) else 'misclassified'}"
                                      for f, c in zip(results["family"], results[by])])
    word = {"pred": "predicted", "label": "labelled"}.get(by, by)
    return results.assign(family=[f"{family_label(f)}, {word} {CLASS_NAMES.get(c, c)}"
                                  for f, c in zip(results["family"], results[by])])


def aggregate(results: pd.DataFrame, *, learned_only: bool = False, by: str | None = None) -> pd.DataFrame:
    """Mean, sample std and 95 % t-interval over seeds, in long format.

    Args:
        results: `Grid.results()` rows (one row per run x method, metrics in %, optional
            `learned` and `kind` columns).
        learned_only: leave out runs flagged as never learning.
        by: "pred" or "label" for `grid.results(by=...)` rows: each family is split per
            class, as "<family>, predicted glaucoma" etc.; "correct": "<family>, correctly
            classified" and "<family>, misclassified".

    Returns:
        Columns family, setting, method (label; "" for classification), metric, mean, std (NaN for
        one seed), n, lo, hi (95 % t-interval of the mean), n_flagged (runs that never learned among
        the n), kind ("explainer" | "reference"; "" for classification).
    """
    if results.empty:
        return pd.DataFrame(columns=_LONG)
    results = with_defaults(results)
    if learned_only:
        results = results[results["learned"].astype(bool)]
    results = split_families(results, by)
    per_image = [m.name for m in REGISTRY.values() if m.kind != "classification" and m.name in results.columns]
    classification = [m.name for m in registered("classification") if m.name in results.columns]
    keys = ["family", "setting", "seed"]
    expl = results.melt(id_vars=keys + ["method_label", "kind", "learned"], value_vars=per_image,
                        var_name="metric", value_name="value").rename(columns={"method_label": "method"})
    runs = results.drop_duplicates(keys)
    cls = runs.melt(id_vars=keys + ["learned"], value_vars=classification, var_name="metric",
                    value_name="value").assign(method="", kind="")
    long = pd.concat([cls, expl], ignore_index=True).dropna(subset=["value"])
    long["flagged"] = ~long["learned"].astype(bool)
    g = long.groupby(["family", "setting", "method", "metric"], sort=False)
    out = g["value"].agg(mean="mean", std="std", n="count")
    out["n_flagged"] = g["flagged"].sum().astype(int)
    out["kind"] = g["kind"].first()
    out = out.reset_index()
    out["lo"], out["hi"] = interval(out["mean"], out["std"], out["n"], out["metric"])
    return out[_LONG]
