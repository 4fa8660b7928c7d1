"""CAM against Grad-CAM, measured: can the thesis's CAM column be CAM?

The thesis's CAM column lies far below its Grad-CAM column (Table 5.2: IoU (A) 3.5 % against
11.6 % for ResNet-18). On a ResNet with global average pooling and one linear layer, Grad-CAM's
channel weights are the class's fc weights divided by the grid size, so ReLU(CAM) is Grad-CAM up
to a positive factor. CAM itself (the thesis's Eq. 3.3, torchcam's CAM and `thesislib.explain`'s)
has no ReLU: where the class's map goes negative, min-max scaling and Otsu's threshold see
another map than Grad-CAM's. How far apart the two are is a question of the model, so it is
measured here, per image of a trained run's scored subset:

- CAM of the explained class, Grad-CAM, and CAM computed with the OTHER class's fc weights (a
  mix-up of the class index, which a two-class model allows);
- IoU (A) of each against the expert map (`thesislib.metrics`: Otsu foregrounds of both);
- "overlap": the IoU (A) of CAM's and Grad-CAM's Otsu foregrounds;
- "max_abs_diff": the largest |CAM - Grad-CAM| over the pixels, both min-max scaled;
- "negative_share": the share of the CAM grid's cells where CAM (before any scaling) is negative.

`for_grid` runs this over every learned run of a grid and averages per setting;
`thesislib.thesis.thesis_notes(family, measured=...)` sets it beside the thesis's numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import nn

from thesislib import explain as X
from thesislib import metrics as M

if TYPE_CHECKING:
    from thesislib.study.grids import Grid
    from thesislib.study.runs import Run

__all__ = ["MAPS", "COLUMNS", "maps", "compare", "for_run", "for_grid"]

MAPS = ("cam", "gradcam", "cam_other")
"""The maps compared: CAM of the explained class, Grad-CAM, CAM with the other class's weights."""
COLUMNS = ("iou_cam", "iou_gradcam", "iou_cam_other", "overlap", "max_abs_diff", "negative_share")
"""Per-image measurements (fractions); `for_grid` reports the IoUs, overlap and share in %."""


def _other(targets: torch.Tensor, model: nn.Module) -> torch.Tensor:
    classes = X.linear_head(model).shape[0]
    if classes != 2:
        raise ValueError(f"model: expected a two-class head (the other class is then defined), found {classes} "
                         "classes")
    return 1 - targets


def maps(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The three maps of MAPS for a batch, at input resolution, min-max scaled as every explainer's.

    Args:
        model: a two-class ResNet with a linear head on globally average-pooled layer4 features.
        images: float [N, 3, H, W], normalised.
        targets: int [N] explained classes; default the predicted classes.
    Returns:
        "cam", "gradcam", "cam_other" -> float32 [N, H, W] in [0, 1]; "targets" -> int64 [N].
    """
    model.eval()
    if targets is None:
        with torch.no_grad():
            targets = model(images).argmax(1)
    targets = torch.as_tensor(targets).long().cpu()
    out = X.explain_all(model, images, ["cam", "gradcam"], targets=targets)
    if "cam" not in out:
        raise ValueError("model: expected a linear head on globally average-pooled layer4 features (CAM is "
                         "defined there only), found another head")
    out["cam_other"] = X.explain_all(model, images, ["cam"], targets=_other(targets, model))["cam"]
    out["targets"] = targets
    return out


def compare(model: nn.Module, images: torch.Tensor, expert: torch.Tensor, targets: torch.Tensor | None = None,
            *, batch_size: int = 32) -> pd.DataFrame:
    """CAM, Grad-CAM and CAM of the other class against each other and against the expert maps.

    Args:
        model: see `maps`.
        images: float [N, 3, H, W], normalised; expert: float [N, H, W] in [0, 1].
        targets: int [N] explained classes; default the predicted classes.
        batch_size: images per explainer call.
    Returns:
        One row per image: image (its position), target, and COLUMNS (fractions; see the module
        docstring). A constant map has no Otsu foreground and scores 0, as in `evaluate`.
    """
    if expert.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"expert: expected maps [N, H, W] = {(images.shape[0], *images.shape[2:])} like images, "
                         f"found shape {tuple(expert.shape)}")
    frames = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        t = None if targets is None else torch.as_tensor(targets)[start:start + batch_size]
        got = maps(model, x, t)
        truth = M.binarize(expert[start:start + batch_size].float())
        fg = {k: M.binarize(got[k]) for k in MAPS}
        with torch.no_grad():
            raw = X.cam_raw(model, x.to(next(model.parameters()).device), got["targets"])
        frames.append(pd.DataFrame({
            "image": range(start, start + len(x)), "target": got["targets"].tolist(),
            "iou_cam": M.iou_area(fg["cam"], truth).tolist(),
            "iou_gradcam": M.iou_area(fg["gradcam"], truth).tolist(),
            "iou_cam_other": M.iou_area(fg["cam_other"], truth).tolist(),
            "overlap": M.iou_area(fg["cam"], fg["gradcam"]).tolist(),
            "max_abs_diff": (got["cam"] - got["gradcam"]).abs().flatten(1).amax(1).tolist(),
            "negative_share": (raw < 0).flatten(1).float().mean(1).cpu().tolist()}))
    columns = ["image", "target", *COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def for_run(run: "Run", *, batch_size: int = 32) -> pd.DataFrame:
    """`compare` on a trained run's scored images: the same seeded stratified subset of its
    evaluation split as its evaluation (`eval_images`), the classes it explains (`target`).

    Returns:
        `compare`'s rows with image the image's name, label and pred.
    """
    from thesislib.evaluation import stratified_subset

    if not run.trained:
        raise ValueError(f"run: {run.run_id} is not trained yet (compute the grid first)")
    cfg = run.config
    data = run.eval_data()
    rows = stratified_subset(data.labels, cfg.eval_images)
    x, labels, expert = data.batch(rows)
    model = run.load_model()
    with torch.no_grad():
        pred = torch.cat([model(x[s:s + batch_size]).argmax(1).cpu() for s in range(0, len(x), batch_size)])
    targets = pred if cfg.target == "predicted" else labels
    out = compare(model, x, expert, targets, batch_size=batch_size)
    out.insert(1, "pred", pred.tolist())
    out.insert(1, "label", labels.tolist())
    out["image"] = [data.names[int(i)] for i in rows]
    return out


def for_grid(grid: "Grid", *, family: str | None = None) -> pd.DataFrame:
    """`for_run` over every learned run of a grid (done.json's `learned`, as the results'
    `learned` column), averaged per setting over runs and images.

    Args:
        grid: a `thesislib.study.Grid`; family: only this family's rows (None: all).
    Returns:
        One row per family x setting with a learned run, in the grid's order: family, setting,
        runs, images, iou_cam, iou_gradcam, iou_cam_other, overlap, negative_share (means in %),
        max_abs_diff (mean over images of the per-image maximum), max_abs_diff_max (the largest
        over every image). Settings without a learned run are left out.
    """
    part = grid if family is None else grid.where(family=family)
    frames, seen = [], set()
    for row, run in zip(part.table.itertuples(index=False), part.runs()):
        key = (row.family, row.setting, run.run_id)
        if key in seen or not run.trained or not run.summary().get("learned"):
            continue
        seen.add(key)
        frames.append(for_run(run).assign(family=row.family, setting=row.setting, run_id=run.run_id))
    columns = ["family", "setting", "runs", "images", "iou_cam", "iou_gradcam", "iou_cam_other", "overlap",
               "negative_share", "max_abs_diff", "max_abs_diff_max"]
    if not frames:
        return pd.DataFrame(columns=columns)
    df = pd.concat(frames, ignore_index=True)
    g = df.groupby(["family", "setting"], sort=False)
    out = (g[["iou_cam", "iou_gradcam", "iou_cam_other", "overlap", "negative_share"]].mean() * 100)
    out["runs"] = g["run_id"].nunique()
    out["images"] = g.size()
    out["max_abs_diff"] = g["max_abs_diff"].mean()
    out["max_abs_diff_max"] = g["max_abs_diff"].max()
    return out.reset_index()[columns]
