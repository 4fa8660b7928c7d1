"""Faithfulness: Average Drop, Increase in Confidence, deletion/insertion AUC and ROAD (a model needed).

PROTOCOL for Average Drop and Increase in Confidence: the relative drop of the softmax probability
of the explained class when the input is multiplied by the map, under two masking conventions
(`CONVENTIONS`): the normalised tensor x map, or the [0, 1] image x map, black outside.
Deletion/insertion as Petsiuk et al. 2018; ROAD (`road`) removes and imputes pixels as
pytorch-grad-cam's ROAD metrics do.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thesislib.data import MEAN, STD

__all__ = ["CONVENTIONS", "masked_inputs", "target_confidence", "masked_confidence", "confidences", "average_drop",
           "drop_in_confidence", "increase_in_confidence", "deletion_insertion", "ROAD_NOISE", "road_impute", "road"]


CONVENTIONS = ("tensor", "black")


def masked_inputs(images: torch.Tensor, maps: torch.Tensor, convention: str = "tensor") -> torch.Tensor:
    """The input x map that Average Drop and Increase in Confidence feed the model.

    "tensor": the normalised tensor times the map, as pytorch-grad-cam does (masked pixels become
    0, the data mean). "black": the image in [0, 1] times the map, then normalised (masked pixels
    black), one reading of the thesis's "only the explanation map region as input".

    Args:
        images: float [N, 3, H, W] normalised with `thesislib.data.MEAN` / `STD`; maps: float [N, H, W].
    Returns:
        float [N, 3, H, W], normalised like `images`.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {', '.join(CONVENTIONS)}, found {convention!r}")
    m = maps.to(images.device, images.dtype)[:, None]
    if convention == "tensor":
        return images * m
    mean = torch.tensor(MEAN, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return ((images * std + mean) * m - mean) / std


def _target_probability(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.softmax(model(x).float(), 1).gather(1, t[:, None])[:, 0].cpu()


@torch.no_grad()
def target_confidence(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                      batch_size: int = 256) -> torch.Tensor:
    """Y: softmax probability of each target class for the unmasked input.

    Args:
        model: classifier in eval mode.
        images: float [N, 3, H, W] normalised; targets: int64 [N].
    Returns:
        float32 [N] on the CPU.
    """
    device = next(model.parameters()).device
    return torch.cat([_target_probability(model, images[s:s + batch_size].to(device),
                                          targets[s:s + batch_size].to(device))
                      for s in range(0, len(images), batch_size)])


@torch.no_grad()
def masked_confidence(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                      convention: str = "tensor", batch_size: int = 256) -> torch.Tensor:
    """O: softmax probability of each target class for the input x map (see `masked_inputs`).

    Args:
        model: classifier in eval mode.
        images: float [N, 3, H, W] normalised; maps: float [N, H, W] in [0, 1]; targets: int64 [N].
        convention: "tensor" or "black" (CONVENTIONS).
    Returns:
        float32 [N] on the CPU.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {', '.join(CONVENTIONS)}, found {convention!r}")
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"maps: expected [N, H, W] = {(images.shape[0], *images.shape[2:])} like images, "
                         f"found shape {tuple(maps.shape)}")
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        x = masked_inputs(images[s:s + batch_size].to(device), maps[s:s + batch_size].to(device), convention)
        out.append(_target_probability(model, x, targets[s:s + batch_size].to(device)))
    return torch.cat(out)


def confidences(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                batch_size: int = 256, *, convention: str = "tensor") -> tuple[torch.Tensor, torch.Tensor]:
    """Y (`target_confidence`) and O (`masked_confidence`) in one call.

    Evaluating several maps of the same images, compute Y once and O per map instead.

    Returns:
        (Y, O), float32 [N] each, on the CPU.
    """
    o = masked_confidence(model, images, maps, targets, convention=convention, batch_size=batch_size)
    return target_confidence(model, images, targets, batch_size), o


def average_drop(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Relative drop max(0, Y - O) / Y per image (Chattopadhyay et al. 2018); x100 for %."""
    return (y - o).clamp_min(0) / y.clamp_min(1e-12)


def drop_in_confidence(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Absolute drop max(0, Y - O): pytorch-grad-cam's DropInConfidence with a softmax target."""
    return (y - o).clamp_min(0)


def increase_in_confidence(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """1 where O > Y, else 0 (float [N]); its mean x100 is the Increase in Confidence in %."""
    return (o > y).float()


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: torch.Tensor, heatmaps: torch.Tensor, targets: torch.Tensor,
                       steps: int = 16, blur_sigma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion AUC (Petsiuk et al. 2018), batched over images, `steps` + 1 points.

    Deletion replaces the most salient pixels first with 0 (the mean colour after
    normalisation); insertion starts from a blurred copy and restores the most salient pixels
    first. Each curve is the target's softmax probability against the fraction of pixels
    changed, integrated with the trapezoid rule. Ties in the heatmap keep row-major order.

    Args:
        model: classifier in eval mode.
        images: float [N, 3, H, W] normalised; heatmaps: float [N, H, W]; targets: int64 [N].
        steps: number of equal fractions between 0 and 1.
        blur_sigma: insertion baseline blur, default size / 10.
    Returns:
        (deletion_auc, insertion_auc), float32 [N] in [0, 1]; lower deletion and higher insertion
        are better.
    """
    from torchvision.transforms.v2.functional import gaussian_blur  # imported on use: torchvision is slow to import

    device = next(model.parameters()).device
    x = images.to(device)
    n, _, h, w = x.shape
    sigma = blur_sigma or max(1.0, h / 10)
    k = int(2 * round(3 * sigma) + 1)
    blurred = gaussian_blur(x, [k, k], [sigma, sigma])
    order = torch.argsort(heatmaps.flatten(1).to(device), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=device).expand(n, -1))
    t = targets.to(device)[:, None]
    dele, ins = [], []
    for i in range(steps + 1):
        top = (rank < round(i / steps * h * w)).view(n, 1, h, w)
        dele.append(F.softmax(model(torch.where(top, 0.0, x)).float(), 1).gather(1, t)[:, 0])
        ins.append(F.softmax(model(torch.where(top, x, blurred)).float(), 1).gather(1, t)[:, 0])
    auc = lambda c: torch.trapezoid(torch.stack(c, 1), dx=1.0 / steps, dim=1).cpu()  # noqa: E731
    return auc(dele), auc(ins)


# -- ROAD: remove and debias (Rong et al. 2022), as pytorch-grad-cam computes it ------------------

ROAD_NOISE = 0.01
"""Standard deviation of the noise added to imputed values (pytorch-grad-cam's NoisyLinearImputer)."""
# the library's neighbour weights: (row offset, column offset) -> weight, summing to 1
_ROAD_WEIGHTS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
                 ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def _road_fill(img: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The removed pixels' values that solve the library's linear system (noise not added).

    The same system as pytorch-grad-cam's `NoisyLinearImputer.setup_sparse_system` (each removed
    pixel equals the weighted mean of its neighbours inside the image), built in one go instead of
    entry by entry, and solved with the same scipy spsolve.

    Args:
        img: float32 [C, H, W]; keep: bool [H, W].
    Returns:
        float32 [C, removed pixels], in row-major order.
    """
    # imported on use: scipy is slow to import and only ROAD needs it
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w = keep.shape
    flat = img.reshape(img.shape[0], -1)
    kept = keep.ravel()
    missing = np.flatnonzero(~kept)
    n = len(missing)
    var = np.zeros(h * w, dtype=int)
    var[missing] = np.arange(n)
    rows, cols = np.divmod(missing, w)
    b = np.zeros((n, img.shape[0]))
    diag = np.ones(n)
    a_rows, a_cols, a_vals = [np.arange(n)], [np.arange(n)], []
    for (dr, dc), weight in _ROAD_WEIGHTS:
        valid = (rows + dr >= 0) & (rows + dr < h) & (cols + dc >= 0) & (cols + dc < w)
        ids = np.flatnonzero(valid)
        coords = missing[ids] + dr * w + dc
        known = kept[coords]
        b[ids[known], :] -= weight * flat[:, coords[known]].T
        a_rows.append(ids[~known])
        a_cols.append(var[coords[~known]])
        a_vals.append(np.full(int((~known).sum()), weight))
        diag[~valid] -= weight
    a_vals.insert(0, -diag)
    a = coo_matrix((np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))), shape=(n, n)).tocsc()
    return np.asarray(spsolve(a, b), dtype=np.float32).reshape(n, -1).T


def road_impute(images: torch.Tensor, keep: torch.Tensor, *, noise: float = ROAD_NOISE,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """ROAD's noisy linear imputation, as pytorch-grad-cam's NoisyLinearImputer: every removed
    pixel becomes the weighted mean of its 8 neighbours (1/6 direct, 1/12 diagonal), solved jointly
    for all removed pixels of an image, plus Gaussian noise.

    The noise is drawn per image, one [C, removed pixels] draw in row-major order, as the library
    draws it, so the same generator state gives the library's values. An image that keeps no
    pixel (the library's system is singular there) becomes 0, the mean colour, plus noise.

    Args:
        images: float [N, C, H, W] (normalised); keep: bool [N, H, W], True where the pixel stays.
        noise: standard deviation of the noise on imputed values.
        generator: for the noise (default: torch's global generator, as the library).
    Returns:
        float32 [N, C, H, W] on the CPU.
    """
    if images.dim() != 4 or keep.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"keep: expected [N, H, W] = {(images.shape[0], *images.shape[2:])} like images, "
                         f"found shape {tuple(keep.shape)}")
    x = images.detach().cpu().float()
    n, c, h, w = x.shape
    out = x.clone().view(n, c, h * w)
    keep = keep.detach().cpu().bool()
    for i in range(n):
        k = keep[i]
        idx = (~k).flatten().nonzero()[:, 0]
        if not len(idx):
            continue
        fill = torch.zeros(c, len(idx)) if not k.any() else torch.from_numpy(_road_fill(x[i].numpy(), k.numpy()))
        out[i][:, idx] = fill + noise * torch.randn(c, len(idx), generator=generator)
    return out.view(n, c, h, w)


def _road_keep(maps: torch.Tensor, percentile: float, order: str) -> torch.Tensor:
    """pytorch-grad-cam's ROAD masks: "morf" keeps the pixels below the map's `percentile`-th
    percentile (numpy's), "lerf" those below it of 1 - map (the most relevant). bool [N, H, W]."""
    out = []
    for m in maps.detach().cpu().float():
        v = m if order == "morf" else 1 - m
        out.append(v < np.percentile(v.numpy(), percentile))
    return torch.stack(out)


@torch.no_grad()
def road(model: nn.Module, images: torch.Tensor, heatmaps: torch.Tensor, targets: torch.Tensor,
         percentiles=(20, 80), *, noise: float = ROAD_NOISE, generator: torch.Generator | None = None,
         batch_size: int = 256) -> dict[str, torch.Tensor]:
    """ROAD (Rong et al. 2022) as pytorch-grad-cam's ROADMostRelevantFirstAverage,
    ROADLeastRelevantFirstAverage and ROADCombined compute it, with the softmax probability of the
    target class as the score (ClassifierOutputSoftmaxTarget).

    For each percentile p: MoRF removes every pixel at or above the map's p-th percentile (keeps
    the p % least relevant), LeRF every pixel at or below the (100 - p)-th (keeps the p % most
    relevant); removed pixels are imputed (`road_impute`) and the score change O - Y is recorded.
    The noise is drawn percentile by percentile, LeRF before MoRF, image by image, from one
    generator, as ROADCombined draws it.

    Args:
        model: classifier in eval mode.
        images: float [N, 3, H, W] normalised; heatmaps: float [N, H, W]; targets: int64 [N].
        percentiles: the p values (the library's default is 10, 20, ..., 90).
        noise, generator: of the imputation.
    Returns:
        "road_morf" (mean change over percentiles; more negative is better), "road_lerf" (closer
        to 0 or above is better), "road" = (lerf - morf) / 2 (higher is better): float32 [N] each.

    Cost: one sparse solve per image, percentile and order; a solve grows with the pixels removed
    (at 112 px about 15 ms for 20 %, 130 ms for 80 %), so p = 80 (20 % removed each way) is cheap.
    """
    percentiles = list(percentiles)
    if not percentiles or any(isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 100
                              for p in percentiles):
        raise ValueError(f"percentiles: expected numbers in (0, 100), found {percentiles!r}")
    if heatmaps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"heatmaps: expected [N, H, W] = {(images.shape[0], *images.shape[2:])} like images, "
                         f"found shape {tuple(heatmaps.shape)}")
    y = target_confidence(model, images, targets, batch_size)
    change = {}
    for order in ("lerf", "morf"):
        diffs = []
        for p in percentiles:
            filled = road_impute(images, _road_keep(heatmaps, p, order), noise=noise, generator=generator)
            diffs.append(target_confidence(model, filled.to(images.dtype), targets, batch_size) - y)
        change[order] = torch.stack(diffs).mean(0)
    return {"road_morf": change["morf"], "road_lerf": change["lerf"],
            "road": (change["lerf"] - change["morf"]) / 2}
