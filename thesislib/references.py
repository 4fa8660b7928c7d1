"""Reference maps: what a trivial answer and the best possible CAM-resolution answer score.

Scored exactly like explainers (same binarisation, metrics and faithfulness passes), so every
method table can show how far an explainer is above a prior and below the resolution ceiling:

- "prior": the training split's mean expert map, the same for every image (a data prior);
- "gaussian": a centred isotropic Gaussian, sigma = GAUSSIAN_SIGMA x the image side;
- "random": uniform pixel noise, seeded per image by its name, so an image gets the same map in any
  batch; shown as "Pixel noise (uniform)": no CAM can be this fine-grained, so it is an easy floor;
- "noise": uniform noise on the CAM grid (the explained layer's grid, as for "ceiling"), upsampled
  bilinearly like a CAM and seeded per image by its name: what a map of CAM resolution that knows
  nothing scores, the floor to compare explainers with;
- "sobel": the Sobel edge magnitude of the grayscale photo (scikit-image's `filters.sobel`);
- "ceiling": the expert map area-downsampled to the model's layer4 grid and upsampled bilinearly
  like a CAM: the best a map at CAM resolution can do.

Each is one record (`Reference`, in `REGISTRY`, added by a decorator on its draw function), from
which REFERENCES, LABELS and AT_GRID derive. Like an explainer's map, every reference map is min-max scaled per image to [0, 1]
(`thesislib.explain.normalize_maps`; a constant map is all zeros).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from thesislib.data import denormalize
from thesislib.explain import grid_at, normalize_maps

__all__ = ["Reference", "REGISTRY", "REFERENCES", "LABELS", "AT_GRID", "GAUSSIAN_SIGMA", "reference_maps",
           "mean_expert_map", "cam_grid_of", "upsample_like_cam"]

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


def upsample_like_cam(small: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, h, w] -> float32 [N, H, W], bilinear with align_corners=False, as `thesislib.explain`
    (and pytorch-grad-cam's resize) upsample a layer's map; not min-max scaled."""
    return F.interpolate(small[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def ceiling_map(expert: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """The expert maps at CAM resolution: area-downsampled to `grid`, upsampled like a CAM.

    The upsampling is bilinear with align_corners=False, as `thesislib.explain` (and
    pytorch-grad-cam's resize) upsample a layer4 map; the result is not yet min-max scaled.

    Args:
        expert: float [N, H, W]; grid: the layer4 side (or (h, w)).
    Returns:
        float32 [N, H, W].
    """
    small = F.adaptive_avg_pool2d(expert[:, None].float(), grid)[:, 0]
    return upsample_like_cam(small, expert.shape[-2:])


@dataclass(frozen=True)
class Reference:
    """One reference map: key (its name in configs and tables), label, and how it is drawn.

    draw(images, expert, prior, grid, keys, seed) -> float [N, H, W], before min-max scaling;
    `reference_maps` checks the inputs a record says it needs: prior (the training split's mean
    expert map), grid (the explained layer's side: drawn at the CAM grid), keys (one per image,
    so its noise does not depend on the batch).
    """

    key: str
    label: str
    draw: Callable[..., torch.Tensor]
    prior: bool = False
    grid: bool = False
    keys: bool = False


REGISTRY: dict[str, Reference] = {}


def _register(key: str, label: str, **needs: bool):
    """Decorator: record a draw function as the reference `key`."""
    def add(draw):
        REGISTRY[key] = Reference(key, label, draw, **needs)
        return draw
    return add


@_register("prior", "Prior (mean expert map)", prior=True)
def _draw_prior(images, expert, prior, grid, keys, seed):
    n, _, h, w = images.shape
    return prior.float().cpu().expand(n, h, w)


@_register("gaussian", "Centred Gaussian")
def _draw_gaussian(images, expert, prior, grid, keys, seed):
    n, _, h, w = images.shape
    return gaussian_map((h, w)).expand(n, h, w)


@_register("random", "Pixel noise (uniform)", keys=True)
def _draw_random(images, expert, prior, grid, keys, seed):
    h, w = images.shape[-2:]
    return torch.stack([torch.rand(h, w, generator=torch.Generator().manual_seed(_seed_of(k, seed))) for k in keys])


@_register("noise", "Noise at CAM grid (uniform)", grid=True, keys=True)
def _draw_noise(images, expert, prior, grid, keys, seed):
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    small = torch.stack([torch.rand(gh, gw, generator=torch.Generator().manual_seed(_seed_of(f"noise:{k}", seed)))
                         for k in keys])
    return upsample_like_cam(small, images.shape[-2:])


@_register("sobel", "Sobel edges")
def _draw_sobel(images, expert, prior, grid, keys, seed):
    rgb = denormalize(images.detach().float().cpu())
    gray = torch.einsum("c,nchw->nhw", torch.tensor(_GRAY), rgb)
    return sobel_magnitude(gray)


@_register("ceiling", "Ceiling (expert map at CAM grid)", grid=True)
def _draw_ceiling(images, expert, prior, grid, keys, seed):
    return ceiling_map(expert.float().cpu(), grid)


REFERENCES = tuple(REGISTRY)
LABELS = {k: r.label for k, r in REGISTRY.items()}
AT_GRID = frozenset(k for k, r in REGISTRY.items() if r.grid)
"""The references drawn at the explained layer's grid."""


def reference_maps(name: str, images: torch.Tensor, expert: torch.Tensor, *, prior: torch.Tensor | None = None,
                   grid: int | tuple[int, int] | None = None, seed: int = 0,
                   index: Sequence | torch.Tensor | None = None) -> torch.Tensor:
    """The reference maps `name` for a batch, scaled per image to [0, 1] like an explainer's maps.

    Args:
        name: one of REFERENCES.
        images: float [N, 3, H, W], normalised as `thesislib.data.normalize` makes them.
        expert: float [N, H, W] in [0, 1], the images' expert maps (used by "ceiling" only).
        prior: float [H, W], the training split's mean expert map (`mean_expert_map`); "prior" only.
        grid: the explained layer's side (`cam_grid_of` for layer4); "ceiling" and "noise" only.
        seed: "random" and "noise" only; with the image's key it seeds that image's noise.
        index: "random" and "noise" only: one key per image (its file name or its position in the
            data set), so the same image gets the same noise whatever batch it is in.
    Returns:
        float32 [N, H, W] in [0, 1] on the CPU.
    """
    _check(name, images, expert)
    ref = REGISTRY[name]
    n, _, h, w = images.shape
    if ref.prior:
        if prior is None:
            raise ValueError(f"prior: the {name!r} reference needs the training split's mean expert map [H, W] "
                             "(thesislib.references.mean_expert_map(split.train)), found None")
        if tuple(prior.shape) != (h, w):
            raise ValueError(f"prior: expected a map [H, W] = {(h, w)} like the images, "
                             f"found shape {tuple(prior.shape)}")
    keys = None
    if ref.keys:
        if index is None or len(index) != n:
            found = None if index is None else f"{len(index)} keys"
            raise ValueError(f"index: the {name!r} reference needs one key per image ({n}), e.g. the image "
                             f"names, so each image's noise does not depend on its batch; found {found}")
        keys = index.tolist() if isinstance(index, torch.Tensor) else list(index)
    if ref.grid and grid is None:
        raise ValueError(f"grid: the {name!r} reference needs the explained layer's side "
                         "(thesislib.references.cam_grid_of(model, input_size)), found None")
    return normalize_maps(ref.draw(images, expert, prior, grid, keys, seed).contiguous())


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
