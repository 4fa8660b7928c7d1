"""Figures: the report's plots (samples, augmentation, Otsu, galleries, curves, scatter plots).

Each function draws one figure with matplotlib/seaborn and returns it; notebooks only call them.
Every figure carries its caption (`caption_of`): what a point, bar or line is, how many seeds or
images it rests on and what its error bars are. The report numbers the captions and uses them as
the images' alt text. Colours are fixed per method (`method_palette`) and per family
(`family_palette`), so a method has one colour in every figure; settings take a sequential
palette (`setting_palette`) that no method uses. Legends sit outside the data area.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from thesislib.data import LagDataset, denormalize, normalize, train_transform
from thesislib.explain import LABELS, METHODS, Explainer, NotApplicable
from thesislib.layout import CLASSES
from thesislib.metrics import REGISTRY, binarize, in_set
from thesislib.references import LABELS as REF_LABELS
from thesislib.references import REFERENCES

__all__ = ["samples", "augmentations", "otsu_examples", "gallery", "curves", "loss_curves", "scatter", "timing",
           "pick_rows", "by_setting", "method_bars", "mean_maps", "randomisation", "threshold_curve",
           "METHOD_COLOURS", "method_palette", "family_palette", "setting_palette", "caption_of", "CAPTION_KEY"]

NOT_LEARNED = "not learned (flagged run)"
_NOT_LEARNED_MARKER = "X"
CAPTION_KEY = "thesislib"  # a figure's display metadata: {CAPTION_KEY: {"caption": text}}

sns.set_theme(context="notebook", style="whitegrid")

# Explainers: tab10 without its grey (then Dark2), one colour each in the order of explain.METHODS.
# Reference maps: greys, the most telling (prior, ceiling) darkest, each with its own marker.
_EXPLAINER_COLOURS = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7] + sns.color_palette("Dark2")
_REFERENCE_ORDER = ["prior", "ceiling"] + [r for r in REFERENCES if r not in ("prior", "ceiling")]
METHOD_COLOURS: dict[str, tuple[float, float, float]] = {
    **{LABELS[m]: tuple(c) for m, c in zip(METHODS, _EXPLAINER_COLOURS)},
    **{REF_LABELS[r]: (g, g, g) for r, g in zip(_REFERENCE_ORDER, np.linspace(0.15, 0.75, len(_REFERENCE_ORDER)))},
}
"""Method label (explainer or reference map) -> its colour in every figure."""
_REFERENCE_LABELS = frozenset(REF_LABELS[r] for r in REFERENCES)
_REFERENCE_MARKERS = {REF_LABELS[r]: mk for r, mk in zip(_REFERENCE_ORDER, "sD^vPph*")}  # X marks flagged runs


def method_palette(labels) -> dict[str, tuple[float, float, float]]:
    """Each method label's fixed colour (`METHOD_COLOURS`), in the order given.

    Raises:
        ValueError: a label that is neither an explainer's nor a reference map's.
    """
    unknown = [lab for lab in dict.fromkeys(labels) if lab not in METHOD_COLOURS]
    if unknown:
        raise ValueError(f"method labels: unknown {', '.join(map(repr, unknown))}; expected some of "
                         f"{', '.join(METHOD_COLOURS)}")
    return {lab: METHOD_COLOURS[lab] for lab in dict.fromkeys(labels)}


def family_palette(families) -> dict[str, tuple[float, float, float]]:
    """Each family's fixed colour (by its place in `study.FAMILIES`), in the order given; an unknown
    family gets black."""
    from thesislib.design import FAMILIES

    colours = sns.color_palette("tab10") + sns.color_palette("Dark2")
    fixed = dict(zip(FAMILIES, colours))
    return {f: fixed.get(f, (0.0, 0.0, 0.0)) for f in dict.fromkeys(families)}


def setting_palette(settings) -> dict[str, tuple[float, float, float]]:
    """The settings of one family, in the grid's order, along one sequential palette (light to dark).

    A family's settings come in the same order in every figure, so a setting keeps its colour; the
    palette (crest) is none of the methods' colours.
    """
    names = list(dict.fromkeys(settings))
    return dict(zip(names, sns.color_palette("crest", max(len(names), 2))[:len(names)] if len(names) > 1
                    else [sns.color_palette("crest", 3)[1]]))


def _captioned(fig: plt.Figure, text: str) -> plt.Figure:
    """Attach `text` as `fig`'s caption: IPython shows it in the figure's display metadata."""
    text = " ".join(text.split())
    fig._thesislib_caption = text
    # IPython merges the metadata of _repr_mimebundle_ with the PNG the inline backend draws
    fig._repr_mimebundle_ = lambda include=None, exclude=None: ({}, {CAPTION_KEY: {"caption": text}})
    return fig


def caption_of(fig: plt.Figure) -> str | None:
    """The caption a figure function attached to `fig`, or None."""
    return getattr(fig, "_thesislib_caption", None)


def _n(values, what: str) -> str:
    """"n = 3 seeds" or "n = 2 to 3 seeds" from a sequence of counts."""
    counts = sorted({int(v) for v in values})
    if not counts:
        return f"n = 0 {what}"
    return f"n = {counts[0]} {what}" if len(counts) == 1 else f"n = {counts[0]} to {counts[-1]} {what}"


def _seeds_per(df: pd.DataFrame, by: str | None) -> str:
    """How many seeds each value of `by` rests on (all rows together where `by` is None)."""
    if "seed" not in df.columns:
        return "n unknown"
    if by is None or by not in df.columns:
        return _n([df["seed"].nunique()], "seeds")
    return _n(df.groupby(by, sort=False)["seed"].nunique(), "seeds") + f" per {by}"


def _legend_outside(ax, **kwargs) -> None:
    """Move `ax`'s legend to the right of the axes, out of the data area."""
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, **kwargs)


def _rgb(x: torch.Tensor) -> np.ndarray:
    return denormalize(x).permute(1, 2, 0).cpu().numpy()


def _metric(name: str):
    if name not in REGISTRY:
        raise ValueError(f"metric: expected one of {', '.join(REGISTRY)}, found {name!r}")
    return REGISTRY[name]


def _learned(df: pd.DataFrame) -> pd.Series:
    """The `learned` flag of each row (True where the column is absent or empty)."""
    if "learned" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["learned"].fillna(True).astype(bool)


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def samples(data: LagDataset, per_class: int = 6, seed: int = 0) -> plt.Figure:
    """Photos and expert maps, `per_class` of each class (thesis Fig. 4.1's inputs)."""
    gen = torch.Generator().manual_seed(seed)
    labels = data.labels
    fig, axes = plt.subplots(4, per_class, figsize=(1.6 * per_class, 6.6))
    for c in range(2):
        members = torch.nonzero(labels == c).flatten()
        pick = members[torch.randperm(len(members), generator=gen)[:per_class]]
        x, _, maps = data.batch(pick)
        for j in range(len(pick)):
            axes[2 * c, j].imshow(_rgb(x[j]))
            axes[2 * c + 1, j].imshow(maps[j], cmap="gray", vmin=0, vmax=1)
        axes[2 * c, 0].set_ylabel(CLASSES[c].replace("_", " "), fontsize=9)
        axes[2 * c + 1, 0].set_ylabel("expert map", fontsize=9)
    for ax in axes.flat:
        _off(ax)
    fig.tight_layout()
    return _captioned(fig, f"Samples: {per_class} photos of each class drawn at random (seed {seed}), each above its "
                           f"expert attention map (grey: 0 black to 1 white); n = {2 * per_class} images.")


def augmentations(data: LagDataset, index: int = 0, n: int = 5, seed: int = 0) -> plt.Figure:
    """One photo and `n` random training augmentations of it (thesis Fig. 4.2)."""
    torch.manual_seed(seed)
    img = data.arrays.images[int(data.indices[index])]
    tf = train_transform(img.shape[-1])
    fig, axes = plt.subplots(1, n + 1, figsize=(1.8 * (n + 1), 2.1))
    axes[0].imshow(_rgb(normalize(img)))
    axes[0].set_title("original", fontsize=9)
    for k in range(n):
        axes[k + 1].imshow(_rgb(tf(img)))
        axes[k + 1].set_title(f"augmented {k + 1}", fontsize=9)
    for ax in axes:
        _off(ax)
    fig.tight_layout()
    return _captioned(fig, f"Augmentation: one training photo (left) and {n} random augmentations of it, as training "
                           f"draws them (seed {seed}).")


def otsu_examples(data: LagDataset, heatmaps: torch.Tensor | None = None, n: int = 5) -> plt.Figure:
    """Expert maps (and heatmaps, if given) before and after Otsu binarisation (thesis Fig. 4.1)."""
    x, _, maps = data.batch(slice(0, n))
    rows = [("expert map", maps), ("Otsu mask", binarize(maps).float())]
    if heatmaps is not None:
        rows += [("heatmap", heatmaps[:n]), ("Otsu mask", binarize(heatmaps[:n]).float())]
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.7 * n, 1.7 * (len(rows) + 1)))
    for j in range(n):
        axes[0, j].imshow(_rgb(x[j]))
        for r, (_, m) in enumerate(rows):
            axes[r + 1, j].imshow(m[j], cmap="gray" if "mask" in rows[r][0] or "expert" in rows[r][0] else "jet",
                                  vmin=0, vmax=1)
    axes[0, 0].set_ylabel("photo", fontsize=9)
    for r, (name, _) in enumerate(rows):
        axes[r + 1, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        _off(ax)
    fig.tight_layout()
    maps_said = " and heatmaps (jet: 0 blue to 1 red)" if heatmaps is not None else ""
    return _captioned(fig, f"Otsu's threshold: {n} test photos (columns) with their expert maps (grey: 0 black to "
                           f"1 white){maps_said}, each above its Otsu mask (white: foreground).")


def gallery(models: dict[str, torch.nn.Module], data: LagDataset, methods: Sequence[str], rows: Sequence[int],
            *, target: str = "predicted") -> plt.Figure:
    """Heatmaps of the same images for every model x method, the expert region outlined.

    Each panel names the model's predicted class and its softmax confidence; one colour bar gives
    the maps' scale (each map is normalised to [0, 1]).

    Args:
        models: column-group label -> model.
        data: evaluation split; rows: positions in it.
        methods: explainers (columns within each model).
        target: "predicted" (explain the model's predicted class) or "label" (the true class).
    """
    idx = torch.as_tensor(list(rows))
    x, y, maps = data.batch(idx)
    expert = binarize(maps)
    cols = [(name, m) for name in models for m in methods]
    fig, axes = plt.subplots(len(idx), len(cols) + 1, figsize=(1.55 * (len(cols) + 1) + 0.7, 1.85 * len(idx) + 0.5),
                             squeeze=False)
    for i in range(len(idx)):
        axes[i, 0].imshow(_rgb(x[i]))
        axes[i, 0].contour(expert[i].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        axes[i, 0].set_ylabel(_class_name(int(y[i])), fontsize=7)
    axes[0, 0].set_title("photo +\nexpert region", fontsize=8)
    for name, model in models.items():
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
        conf, pred = probs.max(1)
        targets = pred if target == "predicted" else y
        for method in methods:
            j = cols.index((name, method)) + 1
            try:
                heat = Explainer(model, method)(x, targets)
            except NotApplicable:
                heat = None
            axes[0, j].set_title(f"{name}\n{LABELS[method]}", fontsize=8)
            for i in range(len(idx)):
                axes[i, j].set_xlabel(f"pred. {_class_name(int(pred[i]))} {100 * float(conf[i]):.0f} %", fontsize=6,
                                      labelpad=2)
                if heat is None:
                    axes[i, j].text(0.5, 0.5, "n/a", ha="center", va="center", transform=axes[i, j].transAxes)
                    continue
                axes[i, j].imshow(_rgb(x[i]))
                axes[i, j].imshow(heat[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
                axes[i, j].contour(expert[i].numpy(), levels=[0.5], colors="white", linewidths=0.8)
    for ax in axes.flat:
        _off(ax)
    right = 1 - 0.7 / fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, right, 1))
    cax = fig.add_axes((right + 0.15 * (1 - right), 0.2, 0.2 * (1 - right), 0.6))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap="jet"), cax=cax)
    bar.set_label("map value (normalised)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    explained = "the class each model predicts" if target == "predicted" else "the true class"
    return _captioned(fig, f"Gallery: heatmaps of n = {len(idx)} test images (rows, true class at the left) for "
                           f"{len(models)} model{'s' * (len(models) != 1)} x {len(methods)} method"
                           f"{'s' * (len(methods) != 1)} (columns), drawn over the photo; the maps explain "
                           f"{explained}. "
                           "Colour: the map's value, each map normalised to 0 (blue) to 1 (red), see the colour bar; "
                           "white contour: the expert region (Otsu mask of the expert map); under each panel: the "
                           "model's predicted class and its softmax confidence.")


def _class_name(label: int) -> str:
    return CLASSES[label].replace("_", " ")


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
    _legend_outside(axes[0, -1], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    per = f", one colour per {hue}" if hue else ""
    return _captioned(fig, f"{(title or 'training').capitalize()}: {', '.join(metrics.values())} on the validation "
                           f"split against the epoch{per}. Points and lines: the mean over seeds "
                           f"({_seeds_per(hist, hue)}); bands: one standard deviation over seeds.")


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
    _legend_outside(ax, fontsize=8)
    fig.tight_layout()
    pair = "CE + β·KL on sampled z for both" if sampled else \
        f"{train_col} (train) against val_loss (validation, mean path)"
    return _captioned(fig, f"Training against validation loss per epoch ({pair}), one colour per {hue}; solid: "
                           f"training, dashed: validation. Lines: the mean over seeds ({_seeds_per(hist, hue)}); "
                           "bands: one standard deviation over seeds.")


def scatter(points: pd.DataFrame, x: str, ys: dict[str, str], *, hue: str = "family") -> plt.Figure:
    """One point per trained model: `x` against each y (RQ6).

    Runs flagged as not learned (`learned` False; absent means learned) get a distinct marker,
    named in the legend; the regression line is drawn over all points.
    """
    learned = _learned(points)
    style = {}
    if not learned.all():
        style = dict(style="run", markers={"learned": "o", NOT_LEARNED: _NOT_LEARNED_MARKER},
                     style_order=["learned", NOT_LEARNED])
    points = points.assign(run=np.where(learned, "learned", NOT_LEARNED))
    fig, axes = plt.subplots(1, len(ys), figsize=(3.8 * len(ys), 3.6), squeeze=False)
    palette = family_palette(points[hue]) if hue == "family" else None
    for ax, (col, label) in zip(axes[0], ys.items()):
        sns.scatterplot(data=points, x=x, y=col, hue=hue, palette=palette, ax=ax, s=28, legend=ax is axes[0, -1],
                        **style)
        sns.regplot(data=points, x=x, y=col, ax=ax, scatter=False, color="0.3", line_kws=dict(lw=1))
        ax.set_ylabel(label)
    _legend_outside(axes[0, -1], fontsize=8)
    fig.tight_layout()
    flagged = f"; crosses: the {int((~learned).sum())} runs flagged as not learned" if not learned.all() else ""
    return _captioned(fig, f"{x.replace('_', ' ').capitalize()} against {', '.join(ys.values())}: one point per "
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
    return _captioned(fig, "Explanation time per image by method, in ms (log scale). Bars: the mean over runs of each "
                           f"run's mean time per image ({_n(runs, 'runs')} per method"
                           + (f", {_n(images.groupby('run_id')['image'].nunique(), 'images')} per run"
                              if "image" in images.columns else "")
                           + "); whiskers: one standard deviation over runs.")


def pick_rows(data: LagDataset, n: int, seed: int = 0) -> list[int]:
    """`n` positions of a split, alternating classes, in a seeded order (for galleries)."""
    gen = torch.Generator().manual_seed(seed)
    labels = data.labels
    per = [torch.nonzero(labels == c).flatten() for c in (1, 0)]
    per = [p[torch.randperm(len(p), generator=gen)] for p in per]
    out = []
    for k in range(n):
        pool = per[k % 2] if len(per[k % 2]) > k // 2 else per[1 - k % 2]
        out.append(int(pool[min(k // 2, len(pool) - 1)]))
    return list(dict.fromkeys(out))


def by_setting(results: pd.DataFrame, metric: str, *, title: str | None = None) -> plt.Figure:
    """`metric` (%) per setting and method, mean and spread over seeds.

    Runs flagged as not learned (`learned` False) are drawn again as single crosses, named in the
    legend; the means include them.
    """
    m = _metric(metric)
    labels = list(dict.fromkeys(results["method_label"]))
    order = [lab for lab in labels if lab not in _REFERENCE_LABELS] + [lab for lab in labels
                                                                      if lab in _REFERENCE_LABELS]
    fig, ax = plt.subplots(figsize=(8.0, 3.4))
    sns.pointplot(data=results, x="setting", y=metric, hue="method_label", hue_order=order,
                  palette=method_palette(order), markers=[_REFERENCE_MARKERS.get(lab, "o") for lab in order],
                  linestyles=["--" if lab in _REFERENCE_LABELS else "-" for lab in order], errorbar="sd", dodge=0.3,
                  ax=ax, markersize=4, linewidth=1.2)
    flagged = results[~_learned(results)]
    if not flagged.empty:
        pos = {s: i for i, s in enumerate(dict.fromkeys(results["setting"]))}
        ax.scatter(flagged["setting"].map(pos), flagged[metric], marker=_NOT_LEARNED_MARKER, color="black",
                   s=30, zorder=5, label=NOT_LEARNED)
    ax.set_ylabel(f"{m.arrow} {m.label} ({m.unit})")
    ax.set_xlabel("")
    ax.legend(title=None)
    _legend_outside(ax, fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    refs = " (reference maps in grey, dashed)" if any(lab in _REFERENCE_LABELS for lab in order) else ""
    crosses = "; black crosses: the single runs flagged as not learned (the means include them)" \
        if not flagged.empty else ""
    return _captioned(fig, f"{title or m.label}: {m.label} ({m.unit}, {'higher' if m.higher else 'lower'} is better) "
                           f"per setting, one colour per method{refs}. Points: the mean over seeds "
                           f"({_seeds_per(results, 'setting')}); error bars: one standard deviation over seeds"
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
        m = _metric(name)
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
    said = ", ".join(f"{_metric(name).label} ({'higher' if _metric(name).higher else 'lower'} is better)"
                     for name in metrics)
    return _captioned(fig, f"Every method over all runs: {said}. Bars: the mean over runs ({_n(runs, 'runs')} per "
                           "method); whiskers: one standard deviation over runs"
                           + ("; reference maps in grey, below the dashed line." if refs else "."))


def mean_maps(maps: dict[str, torch.Tensor], labels: dict[str, str] | None = None) -> plt.Figure:
    """Each method's mean map over a split beside the mean expert map (`evaluation.mean_maps` output).

    Every panel uses the same colour scale (0 to the largest mean value of any panel), and the
    mean expert map's half-maximum contour is drawn on each, so a method that favours corners,
    borders or the centre regardless of the image stands out.

    Args:
        maps: name -> float [H, W]; the key "expert" is the mean expert map, drawn first.
        labels: name -> panel title (default: explainer and reference labels, else the name).
    """
    import textwrap

    names = (["expert"] if "expert" in maps else []) + [k for k in maps if k != "expert"]
    if not names:
        raise ValueError("maps: expected at least one mean map, found none")
    titles = {**LABELS, **REF_LABELS, "expert": "Expert (mean)", **(labels or {})}
    vmax = max(float(maps[k].max()) for k in names) or 1.0
    cols = min(len(names), 5)
    rows = -(-len(names) // cols)
    # long labels ("Ceiling (expert map at CAM grid)") wrap, and the layout makes room for them
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols + 0.6, 2.5 * rows), squeeze=False, layout="constrained")
    expert = maps.get("expert")
    for ax, name in zip(axes.flat, names):
        im = ax.imshow(maps[name].cpu().numpy(), cmap="viridis", vmin=0, vmax=vmax)
        if expert is not None and float(expert.max()) > 0:
            ax.contour(expert.cpu().numpy(), levels=[float(expert.max()) / 2], colors="white", linewidths=0.8)
        ax.set_title(textwrap.fill(titles.get(name, name), 20), fontsize=8)
    for ax in axes.flat:
        _off(ax)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="mean map value")
    contour = "; white contour: half the maximum of the mean expert map" if expert is not None else ""
    return _captioned(fig, f"Mean maps: each of {len(names)} maps averaged over the same test images of one model, "
                           f"the mean expert map first, on one colour scale (0 to {vmax:.2f}, see the colour bar)"
                           f"{contour}. A method that favours corners, borders or the centre regardless of the "
                           "image shows it here.")


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
        m = _metric(col)
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
    _legend_outside(axes[-1], fontsize=7)
    fig.suptitle("Maps after randomising the model: median and interquartile range over images and seeds",
                 fontsize=10)
    fig.tight_layout()
    per = data.groupby(["method_label", "stage"], sort=False).size()
    n_seeds = data["seed"].nunique() if "seed" in data.columns else 0
    seeds = f" from {n_seeds} seed{'s' * (n_seeds != 1)}" if n_seeds else ""
    measures = ", ".join(_metric(c).label for c in columns)
    return _captioned(fig, f"Model randomisation: per method (colour), the similarity ({measures}) between each map of "
                           "the trained model and the map after its stages are randomised top-down, cumulatively. "
                           f"Points: the median over images and seeds ({_n(per, 'maps')} per method and stage{seeds}); "
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
    n = _n(curve["n"], "runs") if "n" in curve.columns else "n unknown"
    return _captioned(fig, "IoU (A) (%) at other binarisations of the heatmap, one colour per method: left, a fixed "
                           "threshold on the map; right, the top share of its pixels. Points: the mean over runs "
                           f"({n}); bands: the 95 % interval; dotted lines: each method's IoU (A) at Otsu's "
                           "threshold; dashed: reference maps.")
