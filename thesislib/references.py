"""Reference maps: what a trivial answer and the best possible CAM-resolution answer score.

Scored exactly like explainers (same binarisation, metrics and faithfulness passes), so every
method table can show how far an explainer is above a prior and below the resolution ceiling:

- "prior": the training split's mean expert map, the same for every image (a data prior);
- "gaussian": a centred isotropic Gaussian, sigma = GAUSSIAN_SIGMA x the image side;
- "random": uniform noise, seeded per image by its name, so an image gets the same map in any batch;
- "sobel": the Sobel edge magnitude of the grayscale photo (scikit-image's `filters.sobel`);
- "ceiling": the expert map area-downsampled to the model's layer4 grid and upsampled bilinearly
  like a CAM: the best a map at CAM resolution can do.

Like an explainer's map, every reference map is min-max scaled per image to [0, 1]
(`thesislib.explain.normalize_maps`; a constant map is all zeros).
"""

from __future__ import annotations

import zlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from thesislib.data import denormalize
from thesislib.explain import grid_at, normalize_maps

__all__ = ["REFERENCES", "LABELS", "GAUSSIAN_SIGMA", "reference_maps", "mean_expert_map", "cam_grid_of"]

REFERENCES = ("prior", "gaussian", "random", "sobel", "ceiling")
LABELS = {"prior": "Prior (mean expert map)", "gaussian": "Centred Gaussian", "random": "Uniform random",
          "sobel": "Sobel edges", "ceiling": "Ceiling (expert map at CAM grid)"}
GAUSSIAN_SIGMA = 0.25  # of the image side: the optic disc region of a centred fundus sits well inside
# scikit-image's rgb2gray weights (ITU-R BT.709), so "sobel" matches skimage.filters.sobel(rgb2gray(img))
_GRAY = (0.2125, 0.7154, 0.0721)


def _check(name: str, images: torch.Tensor, expert: torch.Tensor) -> None:
    if name not in REFERENCES:
        raise ValueError(f"name: expected one of {', '.join(REFERENCES)}, found {name!r}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a batch [N, 3, H, W], found shape {tuple(images.shape)}")
    if expert.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"expert: expected maps [N, H, W] = {(images.shape[0], *images.shape[2:])} like images, "
                         f"found shape {tuple(expert.shape)}")


def _seed_of(key, seed: int) -> int:
    # a stable hash (Python's hash() of a str changes per process)
    return zlib.crc32(f"{seed}:{key}".encode())


def gaussian_map(size: tuple[int, int], sigma: float = GAUSSIAN_SIGMA) -> torch.Tensor:
    """A centred isotropic Gaussian, float32 [H, W], peak 1; sigma as a fraction of the shorter side."""
    h, w = size
    s = sigma * min(h, w)
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    return torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * s * s))


def sobel_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """scikit-image's `filters.sobel` of each map: sqrt((Gx^2 + Gy^2) / 2), borders reflected.

    Args:
        gray: float [N, H, W].
    Returns:
        float [N, H, W].
    """
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=gray.dtype, device=gray.device) / 4
    edge = torch.tensor([1.0, 0.0, -1.0], dtype=gray.dtype, device=gray.device)
    # scipy's "reflect" repeats the edge pixel, which for a 1-pixel border is torch's "replicate"
    x = F.pad(gray[:, None], (1, 1, 1, 1), mode="replicate")
    gy = F.conv2d(x, (edge[:, None] * smooth[None, :])[None, None])
    gx = F.conv2d(x, (smooth[:, None] * edge[None, :])[None, None])
    return torch.sqrt((gx * gx + gy * gy) / 2)[:, 0]


def ceiling_map(expert: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """The expert maps at CAM resolution: area-downsampled to `grid`, upsampled like a CAM.

    The upsampling is bilinear with align_corners=False, as `thesislib.explain` (and
    pytorch-grad-cam's resize) upsample a layer4 map; the result is not yet min-max scaled.

    Args:
        expert: float [N, H, W]; grid: the layer4 side (or (h, w)).
    Returns:
        float32 [N, H, W].
    """
    small = F.adaptive_avg_pool2d(expert[:, None].float(), grid)
    return F.interpolate(small, size=expert.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def reference_maps(name: str, images: torch.Tensor, expert: torch.Tensor, *, prior: torch.Tensor | None = None,
                   grid: int | tuple[int, int] | None = None, seed: int = 0,
                   index: Sequence | torch.Tensor | None = None) -> torch.Tensor:
    """The reference maps `name` for a batch, scaled per image to [0, 1] like an explainer's maps.

    Args:
        name: one of REFERENCES.
        images: float [N, 3, H, W], normalised as `thesislib.data.normalize` makes them.
        expert: float [N, H, W] in [0, 1], the images' expert maps (used by "ceiling" only).
        prior: float [H, W], the training split's mean expert map (`mean_expert_map`); "prior" only.
        grid: the model's layer4 side (`cam_grid_of`); "ceiling" only.
        seed: "random" only; with the image's key it seeds that image's noise.
        index: "random" only: one key per image (its file name or its position in the data set),
            so the same image gets the same noise whatever batch it is in.
    Returns:
        float32 [N, H, W] in [0, 1] on the CPU.
    """
    _check(name, images, expert)
    n, _, h, w = images.shape
    if name == "prior":
        if prior is None:
            raise ValueError("prior: the 'prior' reference needs the training split's mean expert map [H, W] "
                             "(thesislib.references.mean_expert_map(split.train)), found None")
        if tuple(prior.shape) != (h, w):
            raise ValueError(f"prior: expected a map [H, W] = {(h, w)} like the images, "
                             f"found shape {tuple(prior.shape)}")
        raw = prior.float().cpu().expand(n, h, w)
    elif name == "gaussian":
        raw = gaussian_map((h, w)).expand(n, h, w)
    elif name == "random":
        if index is None or len(index) != n:
            found = None if index is None else f"{len(index)} keys"
            raise ValueError(f"index: the 'random' reference needs one key per image ({n}), e.g. the image "
                             f"names, so each image's noise does not depend on its batch; found {found}")
        keys = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        raw = torch.stack([torch.rand(h, w, generator=torch.Generator().manual_seed(_seed_of(k, seed)))
                           for k in keys])
    elif name == "sobel":
        rgb = denormalize(images.detach().float().cpu())
        gray = torch.einsum("c,nchw->nhw", torch.tensor(_GRAY), rgb)
        raw = sobel_magnitude(gray)
    else:  # ceiling
        if grid is None:
            raise ValueError("grid: the 'ceiling' reference needs the model's layer4 side "
                             "(thesislib.references.cam_grid_of(model, input_size)), found None")
        raw = ceiling_map(expert.float().cpu(), grid)
    return normalize_maps(raw.contiguous())


def mean_expert_map(dataset, batch_size: int = 512) -> torch.Tensor:
    """The mean expert map of a split (a `thesislib.data.LagDataset`), float32 [H, W] in [0, 1]."""
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one image, found an empty split")
    total = None
    for start in range(0, len(dataset), batch_size):
        _, _, maps = dataset.batch(slice(start, start + batch_size))
        part = maps.double().sum(0)
        total = part if total is None else total + part
    return (total / len(dataset)).float()


def cam_grid_of(model: nn.Module, input_size: int) -> int:
    """The side of the model's layer4 output for a square input of `input_size` px
    (`thesislib.explain.grid_at`: a forward hook and a dummy input, so it holds for any stem)."""
    return grid_at(model, input_size, "layer4")
