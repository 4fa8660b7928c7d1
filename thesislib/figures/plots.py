"""Figures of numbers: curves over epochs, scatter plots, timing, metrics by setting and method,
the randomisation checks, the threshold curve."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from thesislib.metrics import in_set
from thesislib.figures.style import (NOT_LEARNED, NOT_LEARNED_MARKER, REFERENCE_LABELS, REFERENCE_MARKERS,
                                     captioned, learned_mask, legend_outside,
                                     metric_record, count_text, seeds_text, family_palette,
                                     method_palette, setting_palette)



def curves(hist: pd.DataFrame, metrics: dict[str, str], *, hue: str | None = None,
           title: str | None = None) -> plt.Figure:
    """Metrics against epoch, mean and spread over seeds (thesis Fig. 5.1 / 5.2).

    Args:
        hist: `Grid.histories()` rows.
        metrics: column -> axis label; one panel each. Losses are shown as they are, every other
            column (accuracies, tracked metrics: fractions) in %.
        hue: column that tells curves apart (e.g. "setting").
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    colour = dict(hue=hue, palette=setting_palette(hist[hue])) if hue == "setting" else \
        dict(hue=hue) if hue else dict(color="0.2")
    for ax, (col, label) in zip(axes[0], metrics.items()):
        part = hist.dropna(subset=[col])
        values = part[col] if "loss" in col or col.endswith("_ce") else part[col] * 100  # fractions -> %
        sns.lineplot(data=part.assign(value=values), x="epoch", y="value", ax=ax, marker="o",
                     markersize=4, errorbar="sd", legend=ax is axes[0, -1], **colour)
        ax.set_ylabel(label)
    legend_outside(axes[0, -1], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    per = f", one colour per {hue}" if hue else ""
    return captioned(fig, f"{(title or 'training').capitalize()}: {', '.join(metrics.values())} on the validation "
                           f"split against the epoch{per}. Points and lines: the mean over seeds "
                           f"({seeds_text(hist, hue)}); bands: one standard deviation over seeds.")


def loss_curves(hist: pd.DataFrame, hue: str = "setting") -> plt.Figure:
    """Training against validation loss per epoch for each setting, on the same path (thesis Fig. 5.4).

    With a `val_loss_sampled` column (PRECODE's validation objective on sampled z, CE + beta x KL,
    as `train_loss` is computed), train_loss is drawn against it; without it, against `val_loss`
    (the mean path). Histories without `train_loss` fall back to `train_ce`. The y-axis label
    names the pair drawn.
    """
    train_col = "train_loss" if "train_loss" in hist.columns else "train_ce"
    sampled = "val_loss_sampled" in hist.columns and hist["val_loss_sampled"].notna().any()
    val_col = "val_loss_sampled" if sampled else "val_loss"
    long = hist.melt(id_vars=["epoch", hue, "seed"], value_vars=[train_col, val_col], var_name="split",
                     value_name="loss")
    long["split"] = long["split"].map({train_col: "train", val_col: "validation"})
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    sns.lineplot(data=long, x="epoch", y="loss", hue=hue, style="split", errorbar="sd", ax=ax,
                 **(dict(palette=setting_palette(long[hue])) if hue == "setting" else {}))
    if sampled:
        ax.set_ylabel("loss: CE + β·KL, sampled z\n(train and validation)")
    else:
        ax.set_ylabel(f"loss: {train_col} (train) vs\nval_loss (validation, mean path)")
    legend_outside(ax, fontsize=8)
    fig.tight_layout()
    pair = "CE + β·KL on sampled z for both" if sampled else \
        f"{train_col} (train) against val_loss (validation, mean path)"
    return captioned(fig, f"Training against validation loss per epoch ({pair}), one colour per {hue}; solid: "
                           f"training, dashed: validation. Lines: the mean over seeds ({seeds_text(hist, hue)}); "
                           "bands: one standard deviation over seeds.")


def scatter(points: pd.DataFrame, x: str, ys: dict[str, str], *, hue: str = "family") -> plt.Figure:
    """One point per trained model: `x` against each y (RQ6).

    Runs flagged as not learned (`learned` False; absent means learned) get a distinct marker,
    named in the legend; the regression line is drawn over all points.
    """
    learned = learned_mask(points)
    style = {}
    if not learned.all():
        style = dict(style="run", markers={"learned": "o", NOT_LEARNED: NOT_LEARNED_MARKER},
                     style_order=["learned", NOT_LEARNED])
    points = points.assign(run=np.where(learned, "learned", NOT_LEARNED))
    fig, axes = plt.subplots(1, len(ys), figsize=(3.8 * len(ys), 3.6), squeeze=False)
    palette = family_palette(points[hue]) if hue == "family" else None
    for ax, (col, label) in zip(axes[0], ys.items()):
        sns.scatterplot(data=points, x=x, y=col, hue=hue, palette=palette, ax=ax, s=28, legend=ax is axes[0, -1],
                        **style)
        sns.regplot(data=points, x=x, y=col, ax=ax, scatter=False, color="0.3", line_kws=dict(lw=1))
        ax.set_ylabel(label)
    legend_outside(axes[0, -1], fontsize=8)
    fig.tight_layout()
    flagged = f"; crosses: the {int((~learned).sum())} runs flagged as not learned" if not learned.all() else ""
    return captioned(fig, f"{x.replace('_', ' ').capitalize()} against {', '.join(ys.values())}: one point per "
                           f"trained model (n = {len(points)} models), coloured by {hue}{flagged}. Grey line: the "
                           "least-squares fit over all points; band: its 95 % bootstrap confidence interval.")


def timing(images: pd.DataFrame) -> plt.Figure:
    """Explanation time per image by method, in milliseconds (as the method table), log scale."""
    per_run = images.groupby(["method_label", "run_id"], sort=False)["seconds"].mean().reset_index()
    per_run["ms"] = per_run["seconds"] * 1000
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    sns.barplot(data=per_run, y="method_label", x="ms", hue="method_label",
                palette=method_palette(per_run["method_label"]), saturation=1.0, ax=ax, errorbar="sd", legend=False)
    ax.set_xscale("log")
    ax.set_xlabel("ms per image (log scale)")
    ax.set_ylabel("")
    fig.tight_layout()
    runs = per_run.groupby("method_label", sort=False)["run_id"].nunique()
    return captioned(fig, "Explanation time per image by method, in ms (log scale). Bars: the mean over runs of each "
                           f"run's mean time per image ({count_text(runs, 'runs')} per method"
                           + (f", {count_text(images.groupby('run_id')['image'].nunique(), 'images')} per run"
                              if "image" in images.columns else "")
                           + "); whiskers: one standard deviation over runs.")


def by_setting(results: pd.DataFrame, metric: str, *, title: str | None = None) -> plt.Figure:
    """`metric` (%) per setting and method, mean and spread over seeds.

    Runs flagged as not learned (`learned` False) are drawn again as single crosses, named in the
    legend; the means include them.
    """
    m = metric_record(metric)
    labels = list(dict.fromkeys(results["method_label"]))
    order = [lab for lab in labels if lab not in REFERENCE_LABELS] + [lab for lab in labels
                                                                      if lab in REFERENCE_LABELS]
    fig, ax = plt.subplots(figsize=(8.0, 3.4))
    sns.pointplot(data=results, x="setting", y=metric, hue="method_label", hue_order=order,
                  palette=method_palette(order), markers=[REFERENCE_MARKERS.get(lab, "o") for lab in order],
                  linestyles=["--" if lab in REFERENCE_LABELS else "-" for lab in order], errorbar="sd", dodge=0.3,
                  ax=ax, markersize=4, linewidth=1.2)
    flagged = results[~learned_mask(results)]
    if not flagged.empty:
        pos = {s: i for i, s in enumerate(dict.fromkeys(results["setting"]))}
        ax.scatter(flagged["setting"].map(pos), flagged[metric], marker=NOT_LEARNED_MARKER, color="black",
                   s=30, zorder=5, label=NOT_LEARNED)
    ax.set_ylabel(f"{m.arrow} {m.label} ({m.unit})")
    ax.set_xlabel("")
    ax.legend(title=None)
    legend_outside(ax, fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    refs = " (reference maps in grey, dashed)" if any(lab in REFERENCE_LABELS for lab in order) else ""
    crosses = "; black crosses: the single runs flagged as not learned (the means include them)" \
        if not flagged.empty else ""
    return captioned(fig, f"{title or m.label}: {m.label} ({m.unit}, {'higher' if m.higher else 'lower'} is better) "
                           f"per setting, one colour per method{refs}. Points: the mean over seeds "
                           f"({seeds_text(results, 'setting')}); error bars: one standard deviation over seeds"
                           f"{crosses}.")


def method_bars(results: pd.DataFrame, metrics: Sequence[str]) -> plt.Figure:
    """Each method's metrics over all runs (bars: mean, whiskers: sd); reference maps in grey, below."""
    kind = results["kind"] if "kind" in results.columns else pd.Series("explainer", index=results.index)
    explainers = list(dict.fromkeys(results.loc[kind != "reference", "method_label"]))
    refs = list(dict.fromkeys(results.loc[kind == "reference", "method_label"]))
    palette = method_palette(explainers + refs)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 0.9 + 0.3 * len(palette)),
                             squeeze=False, sharey=True)
    for ax, name in zip(axes[0], metrics):
        m = metric_record(name)
        sns.barplot(data=results, y="method_label", x=name, hue="method_label", order=explainers + refs,
                    palette=palette, saturation=1.0, errorbar="sd", ax=ax, legend=False)
        if refs and explainers:
            ax.axhline(len(explainers) - 0.5, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel(f"{m.arrow} {m.label} ({m.unit})")
        ax.set_ylabel("")
    if refs:
        axes[0, 0].annotate("grey: reference maps", xy=(0, 0), xycoords="figure fraction", xytext=(4, 4),
                            textcoords="offset points", fontsize=8, color="0.4")
    fig.tight_layout()
    runs = results.groupby("method_label", sort=False)["run_id"].nunique() if "run_id" in results.columns else \
        results.groupby("method_label", sort=False).size()
    said = ", ".join(f"{metric_record(name).label} ({'higher' if metric_record(name).higher else 'lower'} is better)"
                     for name in metrics)
    return captioned(fig, f"Every method over all runs: {said}. Bars: the mean over runs ({count_text(runs, 'runs')} per "
                           "method); whiskers: one standard deviation over runs"
                           + ("; reference maps in grey, below the dashed line." if refs else "."))


def randomisation(df: pd.DataFrame, *, threshold: float | None = None) -> plt.Figure:
    """The model-randomisation cascade (`thesislib.sanity`): per method, the rank correlation, SSIM
    and HOG similarity between original and randomised maps as the stages go random top-down,
    medians with the interquartile range over images and seeds.

    Args:
        df: `sanity.model_randomisation` / `for_grid` rows.
        threshold: the findings' rank correlation (default `sanity.FLAG_SPEARMAN`), drawn as dashed
            lines at +threshold (insensitive above) and -threshold (inverted below).
    """
    from thesislib import sanity

    threshold = sanity.FLAG_SPEARMAN if threshold is None else threshold
    stages = [s for s in sanity.STAGES if s in set(df["stage"])]
    labels = sanity.stage_labels(stages)
    data = df.assign(randomised=df["stage"].map(labels))
    columns = [m.name for m in in_set("randomisation") if m.name in data.columns]
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 3.6), sharex=True, squeeze=False)
    axes = list(axes[0])
    palette = method_palette(data["method_label"])
    for ax, col in zip(axes, columns):
        m = metric_record(col)
        sns.pointplot(data=data, x="randomised", y=col, hue="method_label", palette=palette,
                      order=[labels[s] for s in stages],
                      estimator="median", errorbar=("pi", 50), dodge=0.4, markersize=3, linewidth=1.0, ax=ax,
                      legend=ax is axes[-1])
        ax.axhline(0, color="0.6", lw=0.8)
        if col == "spearman":
            for t in (threshold, -threshold):
                ax.axhline(t, color="0.4", lw=0.8, ls="--")
        ax.set_ylabel(f"{m.label} with the original map")
        ax.set_xlabel("randomised, top-down (cumulative)")
        ax.tick_params(axis="x", rotation=30)
    axes[-1].legend(fontsize=7, title=None)
    legend_outside(axes[-1], fontsize=7)
    fig.suptitle("Maps after randomising the model: median and interquartile range over images and seeds",
                 fontsize=10)
    fig.tight_layout()
    per = data.groupby(["method_label", "stage"], sort=False).size()
    n_seeds = data["seed"].nunique() if "seed" in data.columns else 0
    seeds = f" from {n_seeds} seed{'s' * (n_seeds != 1)}" if n_seeds else ""
    measures = ", ".join(metric_record(c).label for c in columns)
    return captioned(fig, f"Model randomisation: per method (colour), the similarity ({measures}) between each map of "
                           "the trained model and the map after its stages are randomised top-down, cumulatively. "
                           f"Points: the median over images and seeds ({count_text(per, 'maps')} per method and stage{seeds}); "
                           f"error bars: the interquartile range. Dashed lines: rank correlation +{threshold:g} "
                           f"(insensitive above) and -{threshold:g} "
                           "(inverted below).")


def threshold_curve(curve: pd.DataFrame) -> plt.Figure:
    """IoU (A) against the heatmap's binarisation (`tables.threshold_curve` output): a fixed
    threshold on the map, and the top share of its pixels; each method's Otsu IoU as a dotted line
    in its colour. Points: the mean over runs; bands: the 95 % interval."""
    methods = list(dict.fromkeys(curve["method"]))
    palette = method_palette(methods)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, rule, xlabel in zip(axes, ("fixed", "top"), ("threshold on the map (foreground: map > t)",
                                                          "share of pixels kept (highest first)")):
        part = curve[curve["rule"] == rule]
        for method in methods:
            g = part[part["method"] == method].sort_values("level")
            if g.empty:
                continue
            ls = "--" if (g["kind"] == "reference").all() else "-"
            ax.plot(g["level"], g["mean"], ls, marker="o", markersize=3, color=palette[method], label=method, lw=1.2)
            ax.fill_between(g["level"], g["lo"], g["hi"], color=palette[method], alpha=0.12, lw=0)
            otsu = curve[(curve["method"] == method) & (curve["rule"] == "otsu")]["mean"]
            if len(otsu):
                ax.axhline(float(otsu.iloc[0]), color=palette[method], lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("IoU (A) (%)")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle("IoU (A) at other binarisations (dotted: Otsu; dashed: reference maps)", fontsize=10)
    fig.tight_layout()
    n = count_text(curve["n"], "runs") if "n" in curve.columns else "n unknown"
    return captioned(fig, "IoU (A) (%) at other binarisations of the heatmap, one colour per method: left, a fixed "
                           "threshold on the map; right, the top share of its pixels. Points: the mean over runs "
                           f"({n}); bands: the 95 % interval; dotted lines: each method's IoU (A) at Otsu's "
                           "threshold; dashed: reference maps.")
