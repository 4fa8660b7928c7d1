"""Maps: CAM from a linear head, upsampling, per-image min-max scaling, duplicate groups, and
the grid of a layer; plain torch, no pytorch-grad-cam.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from thesislib.explain.methods import NotApplicable, check_layer

__all__ = ["normalize_maps", "duplicate_groups", "cam_raw", "grid_at", "linear_head", "cam_from", "upsample"]


def normalize_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image min-max to [0, 1]; maps whose range is below `eps` become all zeros.

    Args:
        maps: float [N, H, W].
    Returns:
        float32 [N, H, W] in [0, 1].
    """
    flat = maps.flatten(1).float()
    lo, hi = flat.min(1).values, flat.max(1).values
    span = hi - lo
    ok = span > eps
    out = (flat - lo[:, None]) / torch.where(ok, span, torch.ones_like(span))[:, None]
    return torch.where(ok[:, None], out, torch.zeros_like(out)).view_as(maps)


def duplicate_groups(maps: dict[str, torch.Tensor], atol: float = 1e-4) -> list[list[str]]:
    """Methods whose maps agree within `atol` on every image, grouped.

    Each method joins the first group whose first member's maps it matches (max |diff| <= atol),
    so groups are compared against one representative and never chain. Only groups of two or
    more methods are returned; within a group, and across groups by their first member, the
    order is that of `maps`.

    Args:
        maps: method -> float [N, H, W], all of one shape.
        atol: largest absolute difference at any pixel of any image.
    Returns:
        lists of method names, e.g. [["cam", "gradcam", "xgradcam", "hirescam"]].
    """
    groups: list[list[str]] = []
    shape = None
    for name, m in maps.items():
        if m.dim() != 3:
            raise ValueError(f"maps[{name!r}]: expected [N, H, W], found shape {tuple(m.shape)}")
        if shape is not None and m.shape != shape:
            raise ValueError(f"maps[{name!r}]: expected shape {tuple(shape)} like the others, found {tuple(m.shape)}")
        shape = m.shape
        for group in groups:
            ref = maps[group[0]]
            if m.numel() == 0 or (ref.float() - m.float()).abs().amax() <= atol:
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def linear_head(model: nn.Module) -> torch.Tensor:
    """The class weights [classes, C] of a head linear in the pooled layer4 features."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        found = type(fc).__name__ if fc is not None else "none"
        raise NotApplicable(f"cam: expected a linear `fc` head, found {found}")
    pool = getattr(model, "avgpool", None)
    size = getattr(pool, "output_size", None)
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or size not in (1, (1, 1)):
        raise NotApplicable(f"cam: expected global average pooling `avgpool` (AdaptiveAvgPool2d(1)), found {pool!r}")
    precode = getattr(model, "precode", None)
    if precode is None:
        return fc.weight
    enc, dec = getattr(precode, "encoder", None), getattr(precode, "decoder", None)
    if not (isinstance(enc, nn.Linear) and isinstance(dec, nn.Linear) and isinstance(getattr(precode, "k", None), int)):
        raise NotApplicable("cam: expected a PRECODE head with Linear `encoder`, `decoder` and an int `k`")
    # z = mu at evaluation, and mu is the encoder's first k outputs: the head is linear
    return fc.weight @ dec.weight @ enc.weight[:precode.k]


def _layer4(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """layer4's output [N, C, h, w]: `model.features` where there is one, else a forward hook."""
    if callable(getattr(model, "features", None)):
        return model.features(images)
    seen = []
    handle = model.layer4.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        model(images)
    finally:
        handle.remove()
    return seen[-1]


def cam_from(weights: torch.Tensor, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum_k weights[target, k] * A_k: class weights [K, C], features [N, C, h, w] -> [N, h, w]."""
    w = weights[targets.to(weights.device)]
    return torch.einsum("nc,nchw->nhw", w.float(), feats.float())


@torch.no_grad()
def cam_raw(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CAM at layer4 resolution, before any ReLU or scaling: sum_k w[target, k] * A_k.

    `w` is the fc weight, or for a PRECODE head the mean path's effective weight
    fc.W @ decoder.W @ encoder.W[:k]; biases are left out (a per-class constant of the logit).

    Args:
        images: float [N, 3, H, W]; targets: int64 [N].
    Returns:
        float [N, h, w].
    Raises:
        NotApplicable: the head is not linear in the globally average-pooled layer4 features.
    """
    weights = linear_head(model)
    return cam_from(weights, _layer4(model, images), targets)


def upsample(raw: torch.Tensor, size) -> torch.Tensor:
    """[N, h, w] -> [N, H, W], bilinear, align_corners=False (as the library's cv2.resize)."""
    return F.interpolate(raw[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def grid_at(model: nn.Module, input_size: int, layer: str = "layer4") -> int:
    """The side of `layer`'s output for a square input of `input_size` px (a hook and a dummy input)."""
    check_layer(layer)
    module = getattr(model, layer, None)
    if module is None:
        raise TypeError(f"model: expected a ResNet with a `{layer}` stage, found {type(model).__name__}")
    shapes = []
    handle = module.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[-2:])))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype))
    finally:
        handle.remove()
        model.train(was_training)
    h, w = shapes[0]
    if h != w:
        raise ValueError(f"model: expected a square {layer} grid for a {input_size} px input, found {h}x{w}")
    return h
