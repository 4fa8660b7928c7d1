"""Extras: the smaller tables a notebook shows beside its main ones (expert regions, best settings,
the generalisation gap, model points and their correlations).
"""

from __future__ import annotations

import pandas as pd

from thesislib.labels import family_label
from thesislib.metrics import REGISTRY, binarize, is_empty
from thesislib.stats import MIN_MODELS
from thesislib.tables.summaries import with_defaults

__all__ = ["expert_regions", "best_settings", "generalisation_gap", "model_points", "correlation_table"]

def expert_regions(data) -> pd.DataFrame:
    """How large the Otsu foreground of the expert maps of a split is (% of the image)."""
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


def best_settings(ours: pd.DataFrame, *, method: str = "Score-CAM", metric: str = "iou_area",
                  learned_only: bool = False) -> list[tuple[str, str]]:
    """(family, setting) of the baseline and of each family's best non-baseline setting by `metric`.

    Args:
        ours: `aggregate` output; reference rows never count.
        learned_only: skip settings whose seeds include a run that never learned.
    """
    part = ours[(ours["method"] == method) & (ours["metric"] == metric)]
    if "kind" in part.columns:
        part = part[part["kind"] != "reference"]
    if learned_only and "n_flagged" in part.columns:
        part = part[part["n_flagged"] == 0]
    picks: list[tuple[str, str]] = []
    if (part["setting"] == "baseline").any():
        picks.append((part[part["setting"] == "baseline"]["family"].iloc[0], "baseline"))
    for fam, g in part[part["setting"] != "baseline"].groupby("family", sort=False):
        best = g.loc[g["mean"].idxmax() if REGISTRY[metric].higher else g["mean"].idxmin()]
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


def model_points(results: pd.DataFrame, method: str, *, learned_only: bool = False) -> pd.DataFrame:
    """One row per trained model and family: classification, `learned` and the `method`'s metrics (%).

    A run shared by several families (the baseline) appears once per family; `stats.correlations`
    counts it once in the pooled correlation (unique="run_id").

    Args:
        method: method key ("scorecam"), as in results["method"]; never a reference map.
        learned_only: leave out runs that never learned.
    """
    results = with_defaults(results)
    part = results[results["method"] == method]
    if (part["kind"] == "reference").any():
        raise ValueError(f"method: {method!r} is a reference map, expected an explainer")
    metric_cols = [m.name for m in REGISTRY.values() if m.name in part.columns]
    cols = ["family", "setting", "seed", "run_id", "learned", *metric_cols]
    out = part[cols].drop_duplicates(["family", "run_id"]).reset_index(drop=True)
    return out[out["learned"].astype(bool)].reset_index(drop=True) if learned_only else out


def _ci(r, lo, hi, n=None) -> str:
    if n is not None and n < MIN_MODELS:
        return f"cannot be judged ({n} models)"
    return "—" if pd.isna(r) else f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _corr_frame(corr: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "group": corr["group"].map(family_label), "explainability": corr["y"].map(lambda m: REGISTRY[m].label if m in REGISTRY else m),
        "models": corr["n"],
        "Pearson r [95% CI]": [_ci(*v) for v in corr[["pearson", "pearson_lo", "pearson_hi", "n"]].itertuples(index=False)],
        "Spearman ρ [95% CI]": [_ci(*v) for v in corr[["spearman", "spearman_lo", "spearman_hi", "n"]].itertuples(index=False)],
    })
    return out.set_index(["group", "explainability"])


def correlation_table(corr: pd.DataFrame, learned: pd.DataFrame | None = None) -> pd.DataFrame:
    """`stats.correlations` output as a readable table: r [95 % CI] per group and metric.

    Args:
        corr: `stats.correlations(points, ...)` over all models.
        learned: the same with `learned_only=True`; if given, both side by side under
            "all models" and "learned only".
    """
    if learned is None:
        return _corr_frame(corr)
    both = pd.concat({"all models": _corr_frame(corr), "learned only": _corr_frame(learned)}, axis=1)
    models = [c for c in both.columns if c[1] == "models"]
    return both.astype({c: "Int64" for c in models})  # a count, where a group has none on one side
