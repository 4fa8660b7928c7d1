"""Statistics: correlation of classification and explainability across models, with bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["correlation", "correlations", "spearman_rows", "MIN_MODELS"]

MIN_MODELS = 6  # fewer points: a bootstrap interval of a correlation means nothing (3 points give [-1, +1])


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair; NaN where a row is constant."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / den, np.nan)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair (average ranks for ties); NaN where a row is constant.

    Args:
        a, b: [B, K] arrays, K paired values per row.

    Returns:
        [B] rho per row.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a, b: expected two arrays of one shape [B, K], found {a.shape} and {b.shape}")
    return _row_pearson(stats.rankdata(a, axis=1), stats.rankdata(b, axis=1))


def correlation(x, y, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Pearson and Spearman correlation of paired samples, each with a percentile bootstrap CI.

    Point estimates and p-values are scipy.stats.pearsonr / spearmanr. The CIs resample pairs
    (percentile bootstrap, `n_boot` resamples, vectorised); a resample whose x or y is constant
    has no correlation and is dropped.

    Returns:
        n, pearson, pearson_lo, pearson_hi, pearson_p, spearman, spearman_lo, spearman_hi,
        spearman_p (NaN where fewer than 3 pairs or a constant variable; with fewer than MIN_MODELS
        pairs the point estimates only: intervals and p-values NaN, such a correlation cannot be judged).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = dict(n=len(x))
    keys = ("pearson", "pearson_lo", "pearson_hi", "pearson_p", "spearman", "spearman_lo", "spearman_hi", "spearman_p")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**out, **{k: float("nan") for k in keys}}
    if len(x) < MIN_MODELS:  # a point estimate to show, nothing to judge it by
        nan = float("nan")
        return {**out, "pearson": float(stats.pearsonr(x, y).statistic), "spearman": float(stats.spearmanr(x, y).statistic),
                **{k: nan for k in keys if k not in ("pearson", "spearman")}}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    xs, ys = x[idx], y[idx]
    for name, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        res = fn(x, y)
        out[name], out[f"{name}_p"] = float(res.statistic), float(res.pvalue)
        if name == "spearman":
            xs, ys = stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1)
        boots = _row_pearson(xs, ys)
        boots = boots[np.isfinite(boots)]
        alpha = (1 - level) / 2
        out[f"{name}_lo"], out[f"{name}_hi"] = (np.quantile(boots, [alpha, 1 - alpha]).tolist()
                                                if len(boots) else (float("nan"), float("nan")))
    return out


def correlations(df: pd.DataFrame, x: str, ys: list[str], *, by: str | None = None, unique: str | None = "run_id",
                 learned_only: bool = False, **kwargs) -> pd.DataFrame:
    """`correlation(df[x], df[y])` for each y, overall and (if `by`) per group.

    Args:
        unique: a column whose duplicates count once in the pooled ("all") rows, e.g. a run that
            belongs to several families.
        learned_only: leave out runs flagged as never learning (df["learned"] False); a run
            stuck at the majority class sits at one corner of every plot and can make a
            correlation on its own.

    Returns:
        One row per (group, y): group ("all" for the pooled rows), x, y and `correlation`'s fields.
    """
    if learned_only:
        if "learned" not in df.columns:
            raise ValueError(f"learned_only: df has no 'learned' column (columns: {', '.join(map(str, df.columns))})")
        df = df[df["learned"].astype(bool)]
    rows = []
    pooled = df.drop_duplicates(unique) if unique and unique in df.columns else df
    groups = [("all", pooled)] + (list(df.groupby(by, sort=False)) if by else [])
    for name, part in groups:
        for y in ys:
            rows.append(dict(group=name, x=x, y=y, **correlation(part[x], part[y], **kwargs)))
    return pd.DataFrame(rows)
