"""Figures of images: samples, augmentations, Otsu examples, galleries of maps, mean maps."""

from __future__ import annotations

from typing import Sequence

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import torch

from thesislib.data import LagDataset, normalize, train_transform
from thesislib.explain import LABELS, Explainer, NotApplicable
from thesislib.layout import CLASSES
from thesislib.metrics import binarize
from thesislib.references import LABELS as REF_LABELS
from thesislib.figures.style import (captioned, axis_off, rgb)



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
            axes[2 * c, j].imshow(rgb(x[j]))
            axes[2 * c + 1, j].imshow(maps[j], cmap="gray", vmin=0, vmax=1)
        axes[2 * c, 0].set_ylabel(CLASSES[c].replace("_", " "), fontsize=9)
        axes[2 * c + 1, 0].set_ylabel("expert map", fontsize=9)
    for ax in axes.flat:
        axis_off(ax)
    fig.tight_layout()
    return captioned(fig, f"Samples: {per_class} photos of each class drawn at random (seed {seed}), each above its "
                           f"expert attention map (grey: 0 black to 1 white); n = {2 * per_class} images.")


def augmentations(data: LagDataset, index: int = 0, n: int = 5, seed: int = 0) -> plt.Figure:
    """One photo and `n` random training augmentations of it (thesis Fig. 4.2)."""
    torch.manual_seed(seed)
    img = data.arrays.images[int(data.indices[index])]
    tf = train_transform(img.shape[-1])
    fig, axes = plt.subplots(1, n + 1, figsize=(1.8 * (n + 1), 2.1))
    axes[0].imshow(rgb(normalize(img)))
    axes[0].set_title("original", fontsize=9)
    for k in range(n):
        axes[k + 1].imshow(rgb(tf(img)))
        axes[k + 1].set_title(f"augmented {k + 1}", fontsize=9)
    for ax in axes:
        axis_off(ax)
    fig.tight_layout()
    return captioned(fig, f"Augmentation: one training photo (left) and {n} random augmentations of it, as training "
                           f"draws them (seed {seed}).")


def otsu_examples(data: LagDataset, heatmaps: torch.Tensor | None = None, n: int = 5) -> plt.Figure:
    """Expert maps (and heatmaps, if given) before and after Otsu binarisation (thesis Fig. 4.1)."""
    x, _, maps = data.batch(slice(0, n))
    rows = [("expert map", maps), ("Otsu mask", binarize(maps).float())]
    if heatmaps is not None:
        rows += [("heatmap", heatmaps[:n]), ("Otsu mask", binarize(heatmaps[:n]).float())]
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.7 * n, 1.7 * (len(rows) + 1)))
    for j in range(n):
        axes[0, j].imshow(rgb(x[j]))
        for r, (_, m) in enumerate(rows):
            axes[r + 1, j].imshow(m[j], cmap="gray" if "mask" in rows[r][0] or "expert" in rows[r][0] else "jet",
                                  vmin=0, vmax=1)
    axes[0, 0].set_ylabel("photo", fontsize=9)
    for r, (name, _) in enumerate(rows):
        axes[r + 1, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        axis_off(ax)
    fig.tight_layout()
    maps_said = " and heatmaps (jet: 0 blue to 1 red)" if heatmaps is not None else ""
    return captioned(fig, f"Otsu's threshold: {n} test photos (columns) with their expert maps (grey: 0 black to "
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
        axes[i, 0].imshow(rgb(x[i]))
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
                axes[i, j].imshow(rgb(x[i]))
                axes[i, j].imshow(heat[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
                axes[i, j].contour(expert[i].numpy(), levels=[0.5], colors="white", linewidths=0.8)
    for ax in axes.flat:
        axis_off(ax)
    right = 1 - 0.7 / fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, right, 1))
    cax = fig.add_axes((right + 0.15 * (1 - right), 0.2, 0.2 * (1 - right), 0.6))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap="jet"), cax=cax)
    bar.set_label("map value (normalised)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    explained = "the class each model predicts" if target == "predicted" else "the true class"
    return captioned(fig, f"Gallery: heatmaps of n = {len(idx)} test images (rows, true class at the left) for "
                           f"{len(models)} model{'s' * (len(models) != 1)} x {len(methods)} method"
                           f"{'s' * (len(methods) != 1)} (columns), drawn over the photo; the maps explain "
                           f"{explained}. "
                           "Colour: the map's value, each map normalised to 0 (blue) to 1 (red), see the colour bar; "
                           "white contour: the expert region (Otsu mask of the expert map); under each panel: the "
                           "model's predicted class and its softmax confidence.")


def _class_name(label: int) -> str:
    return CLASSES[label].replace("_", " ")


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
        axis_off(ax)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="mean map value")
    contour = "; white contour: half the maximum of the mean expert map" if expert is not None else ""
    return captioned(fig, f"Mean maps: each of {len(names)} maps averaged over the same test images of one model, "
                           f"the mean expert map first, on one colour scale (0 to {vmax:.2f}, see the colour bar)"
                           f"{contour}. A method that favours corners, borders or the centre regardless of the "
                           "image shows it here.")
