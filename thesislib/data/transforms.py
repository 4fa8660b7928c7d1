"""Normalisation and the PROTOCOL's training augmentation: `normalize`, `train_transform`, `augment`.

Per sample with torchvision (`train_transform`), or a whole batch at once from parameters drawn
on the CPU (`Augmentation`, `augment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = ["MEAN", "STD", "CROP_SCALE", "CROP_RATIO", "ROTATION", "normalize", "denormalize", "train_transform",
           "Augmentation", "augment"]

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as torchvision's models expect
STD = (0.229, 0.224, 0.225)
# The PROTOCOL's training augmentation, shared by train_transform and Augmentation.
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1.1)
ROTATION = 15.0


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] (or [3, H, W]) -> float32 normalised with MEAN and STD."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), MEAN, STD)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize`, to float [0, 1] for display."""
    mean = torch.tensor(MEAN, device=x.device).view(-1, 1, 1)
    std = torch.tensor(STD, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def train_transform(size: int) -> v2.Compose:
    """The PROTOCOL's training augmentation on uint8 tensors."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.RandomRotation(ROTATION),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])


@dataclass(frozen=True)
class Augmentation:
    """Per-image parameters of the PROTOCOL's training augmentation, float32 / bool [B] on the CPU.

    In grid_sample's normalised coordinates ([-1, 1] across the image): the crop spans
    `crop_w` x `crop_h` of the side (fractions in (0, 1]) centred at (`cx`, `cy`); the crop is then
    rotated by `angle` degrees counter-clockwise (corners filled black, as torchvision's
    RandomRotation does) and mirrored left-right where `flip`.
    """

    crop_w: torch.Tensor
    crop_h: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    angle: torch.Tensor
    flip: torch.Tensor

    def __len__(self) -> int:
        return len(self.angle)

    @classmethod
    def draw(cls, n: int, generator: torch.Generator) -> "Augmentation":
        """Draw `n` parameter sets from `generator` (a CPU generator), with torchvision's ranges.

        Crop area fraction ~ U(CROP_SCALE), log aspect ratio ~ U(log CROP_RATIO), redrawn (as
        RandomResizedCrop does) where a side would exceed the image; centre uniform over the
        positions that keep the crop inside; angle ~ U(-ROTATION, ROTATION); flip ~ Bernoulli(0.5).
        """
        if generator.device.type != "cpu":
            raise ValueError(f"generator: expected a CPU torch.Generator (parameters are drawn on the CPU so "
                             f"that batches do not depend on the device), found one on {generator.device}")

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        w = torch.ones(n)
        h = torch.ones(n)
        todo = torch.ones(n, dtype=torch.bool)
        for _ in range(10):  # RandomResizedCrop's attempts; the rest keep the full image, as its fallback does
            area = uniform(*CROP_SCALE)
            ratio = torch.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
            cw, ch = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
            ok = todo & (cw <= 1) & (ch <= 1)
            w, h = torch.where(ok, cw, w), torch.where(ok, ch, h)
            todo &= ~ok
            if not todo.any():
                break
        cx = (1 - w) * uniform(-1.0, 1.0)
        cy = (1 - h) * uniform(-1.0, 1.0)
        angle = uniform(-ROTATION, ROTATION)
        flip = torch.rand(n, generator=generator) < 0.5
        return cls(w, h, cx, cy, angle, flip)

    @classmethod
    def identity(cls, n: int) -> "Augmentation":
        """Parameters that leave `n` images unchanged."""
        zeros = torch.zeros(n)
        return cls(torch.ones(n), torch.ones(n), zeros, zeros.clone(), zeros.clone(), torch.zeros(n, dtype=torch.bool))


def augment(images: torch.Tensor, params: Augmentation) -> torch.Tensor:
    """Augment a batch at once: one affine sampling grid per image, bilinear, on the images' device.

    Args:
        images: uint8 [B, 3, S, S], on any device.
        params: B parameter sets (`Augmentation.draw`).

    Returns:
        float32 [B, 3, S, S] normalised with MEAN and STD, on the images' device.
    """
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images: expected uint8 [B, 3, S, S], found {images.dtype} {tuple(images.shape)}")
    if len(params) != len(images):
        raise ValueError(f"params: expected {len(images)} parameter sets (one per image), found {len(params)}")
    dev = images.device
    b, _, hgt, wid = images.shape
    p = {k: getattr(params, k).to(dev) for k in ("crop_w", "crop_h", "cx", "cy", "angle")}
    sign = 1.0 - 2.0 * params.flip.to(dev, torch.float32)
    rad = torch.deg2rad(p["angle"])
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Output pixel o -> (flip) -> inverse rotation -> crop coordinates c in [-1, 1] where the
    # rotated crop has content; torchvision rotates counter-clockwise on screen (y points down).
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos * sign, -sin, zeros], 1),
                         torch.stack([sin * sign, cos, zeros], 1)], 1)
    crop = F.affine_grid(theta, [b, 1, hgt, wid], align_corners=False)  # [B, S, S, 2]
    inside = (crop.abs() <= 1).all(-1)[:, None]  # RandomRotation fills the corners with black
    centre = torch.stack([p["cx"], p["cy"]], 1)[:, None, None, :]
    half = torch.stack([p["crop_w"], p["crop_h"]], 1)[:, None, None, :]
    grid = centre + half * crop
    x = F.grid_sample(images.to(torch.float32) / 255.0, grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False)
    x = x * inside
    mean = torch.tensor(MEAN, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, -1, 1, 1)
    return (x - mean) / std
