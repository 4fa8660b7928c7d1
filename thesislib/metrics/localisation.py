"""Localisation: heatmap against expert mask by IoU of area and of boxes, pointing game, relevance mass.

Each heatmap H and expert map M is [N, H, W]; the IoUs compare Otsu foregrounds (`otsu`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from thesislib.metrics import kernels
from thesislib.metrics.maps import check_maps, count_true, is_empty
from thesislib.metrics.otsu import binarize, check_otsu_input

__all__ = ["iou_area", "boxes", "box_iou", "iou_bbox", "otsu_ious", "pointing_game", "relevance_mass",
           "centroid_distance", "energy_in_box"]


def _any(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """mask.any(dim) for a bool tensor (numpy's on the CPU: about 10x torch's for bool)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(mask.numpy().any(dim))
    return mask.any(dim)


def iou_area(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a and b| / |a or b| per image; 0 where both are empty.

    Args:
        a, b: bool [N, H, W].
    Returns:
        float32 [N].
    """
    check_maps("iou_area: a", a)
    check_maps("iou_area: b", b, like=a)
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    if kernels.compiled(a) and b.device.type == "cpu":
        inter, union = kernels.mask_counts_compiled(a, b)
    else:
        inter, union = count_true(a & b), count_true(a | b)
    return _area_ratio(inter, union)


def _area_ratio(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """float32 [N]: inter / union of pixel counts (int64 [N]), 0 where union is 0."""
    inter, union = inter.float(), union.float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


def boxes(mask: torch.Tensor) -> torch.Tensor:
    """The box enclosing all foreground pixels, half-open pixel coordinates (x0, y0, x1, y1).

    A pixel (row r, column c) spans [c, c + 1) x [r, r + 1), so the box of a single pixel has area
    1 and boxes compare with torchvision.ops.box_iou. An empty mask gives (0, 0, 0, 0).

    Args:
        mask: bool [N, H, W].
    Returns:
        int64 [N, 4].
    """
    check_maps("boxes: mask", mask)
    mask = mask.bool()
    if kernels.compiled(mask):
        return kernels.mask_boxes_compiled(mask)
    rows, cols = _any(mask, 2), _any(mask, 1)  # [N, H], [N, W]
    h, w = mask.shape[1:]

    def span(any_: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(size, device=mask.device)
        first = torch.where(any_, pos, size).min(1).values
        last = torch.where(any_, pos, -1).max(1).values + 1
        return first, last

    x0, x1 = span(cols, w)
    y0, y1 = span(rows, h)
    out = torch.stack([x0, y0, x1, y1], 1)
    return torch.where(~rows.any(1)[:, None], torch.zeros_like(out), out)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of paired boxes a[i], b[i] (x0, y0, x1, y1); 0 where the union has no area.

    Args:
        a, b: [N, 4].
    Returns:
        float32 [N].
    """
    a, b = a.float(), b.float()
    area = lambda t: (t[:, 2] - t[:, 0]).clamp_min(0) * (t[:, 3] - t[:, 1]).clamp_min(0)  # noqa: E731
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0)
    inter = iw * ih
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def iou_bbox(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of the boxes enclosing all foreground of a and of b; 0 if either is empty.

    Args:
        a, b: bool [N, H, W].
    Returns:
        float32 [N].
    """
    check_maps("iou_bbox: b", b, like=a)
    return _box_ratio(boxes(a), boxes(b))


def _box_ratio(ba: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    """float32 [N]: box_iou of the masks' boxes (int64 [N, 4]), 0 where either mask is empty."""
    iou = box_iou(ba, bb)
    empty = (ba[:, 2] == 0) | (bb[:, 2] == 0)  # an empty mask has the box (0, 0, 0, 0), any other x1 >= 1
    return torch.where(empty, torch.zeros_like(iou), iou)


def otsu_ious(heatmap: torch.Tensor, expert: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU (A) and IoU (BB) of Otsu foregrounds in one call: with H = binarize(heatmap) and
    M = binarize(expert), iou_area(H, M), iou_bbox(H, M), is_empty(H) and is_empty(M), bit for bit.

    On the CPU (compiled kernels, maps of one dtype) each pair of maps is read from memory once:
    both thresholds, the intersection, the union and both boxes come from passes over the pair
    while it is in the CPU's cache, and no mask is stored.

    Args:
        heatmap, expert: floating [N, H, W], the same shape.
    Returns:
        "iou_area", "iou_bbox": float32 [N]; "heatmap_empty", "map_empty": bool [N], no Otsu foreground.
    """
    check_otsu_input("otsu_ious: heatmap", heatmap, 256)
    check_otsu_input("otsu_ious: expert", expert, 256, like=heatmap)
    if not (len(heatmap) and heatmap.dtype == expert.dtype and kernels.compiled(heatmap)
            and kernels.compiled(expert)):
        h, m = binarize(heatmap), binarize(expert)
        return {"iou_area": iou_area(h, m), "iou_bbox": iou_bbox(h, m), "heatmap_empty": is_empty(h),
                "map_empty": is_empty(m)}
    stats = kernels.otsu_pairs_compiled(heatmap, expert)
    box_h, box_m = stats[:, 2:6], stats[:, 6:10]
    return {"iou_area": _area_ratio(stats[:, 0], stats[:, 1]), "iou_bbox": _box_ratio(box_h, box_m),
            "heatmap_empty": box_h[:, 2] == 0, "map_empty": box_m[:, 2] == 0}


def pointing_game(heatmap: torch.Tensor, mask: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Hit if the heatmap's maximum (first one in row-major order) lies in the mask.

    Args:
        heatmap: float [N, H, W]; mask: bool [N, H, W].
        tolerance: pixels; the mask is dilated by a square of this radius (Zhang et al. use 15
            px at 224 px).
    Returns:
        bool [N]; an all-zero heatmap never hits.
    """
    check_maps("pointing_game: heatmap", heatmap)
    check_maps("pointing_game: mask", mask, like=heatmap)
    m = mask.float()
    if tolerance > 0:
        m = F.max_pool2d(m[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    flat = heatmap.flatten(1)
    top = flat.argmax(1)
    hit = m.flatten(1).gather(1, top[:, None])[:, 0] > 0
    return hit & (flat.amax(1) > 0)


def relevance_mass(heatmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of the heatmap's mass inside the mask (energy-based pointing game); 0 for an all-zero map.

    Args:
        heatmap: float [N, H, W], non-negative; mask: bool [N, H, W].
    Returns:
        float32 [N] in [0, 1].
    """
    check_maps("relevance_mass: heatmap", heatmap)
    check_maps("relevance_mass: mask", mask, like=heatmap)
    h = heatmap.flatten(1).float()
    total = h.sum(1)
    inside = (h * mask.flatten(1).float()).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


def centroid_distance(heatmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Distance between the centre of mass of each heatmap and that of its expert mask, as a
    fraction of the image diagonal (sqrt(H^2 + W^2)); 1 where either has no mass (no centre).

    Args:
        heatmap: float [N, H, W], non-negative (its values weigh the pixels).
        mask: bool [N, H, W], the expert map's Otsu foreground (its pixels weigh alike).
    Returns:
        float32 [N] in [0, 1]; tables show it in % of the diagonal.
    """
    check_maps("centroid_distance: heatmap", heatmap)
    check_maps("centroid_distance: mask", mask, like=heatmap)
    _, h, w = heatmap.shape
    rows = torch.arange(h, dtype=torch.float64, device=heatmap.device)
    cols = torch.arange(w, dtype=torch.float64, device=heatmap.device)
    centres, masses = [], []
    for m in (heatmap.double(), mask.double()):
        mass = m.sum((1, 2))
        safe = mass.clamp_min(1e-300)
        centres.append(((m.sum(2) * rows).sum(1) / safe, (m.sum(1) * cols).sum(1) / safe))
        masses.append(mass)
    (hy, hx), (my, mx) = centres
    distance = torch.hypot(hy - my, hx - mx) / (h * h + w * w) ** 0.5
    return torch.where((masses[0] > 0) & (masses[1] > 0), distance, torch.ones_like(distance)).float()


def energy_in_box(heatmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The energy-based pointing game (Wang et al. 2020, Score-CAM, section 4.2): the share of each
    heatmap's sum inside the box that encloses its expert mask (`boxes`); 0 where either is empty.

    Args:
        heatmap: float [N, H, W], non-negative.
        mask: bool [N, H, W], the expert map's Otsu foreground.
    Returns:
        float32 [N] in [0, 1]; tables show it in %.
    """
    check_maps("energy_in_box: heatmap", heatmap)
    check_maps("energy_in_box: mask", mask, like=heatmap)
    _, h, w = heatmap.shape
    x0, y0, x1, y1 = boxes(mask).to(heatmap.device).unbind(1)
    cols = torch.arange(w, device=heatmap.device)
    rows = torch.arange(h, device=heatmap.device)
    inside = ((rows[None, :, None] >= y0[:, None, None]) & (rows[None, :, None] < y1[:, None, None])
              & (cols[None, None, :] >= x0[:, None, None]) & (cols[None, None, :] < x1[:, None, None]))
    heat = heatmap.double()
    total = heat.sum((1, 2))
    share = (heat * inside).sum((1, 2)) / total.clamp_min(1e-300)
    return torch.where(total > 0, share, torch.zeros_like(share)).float()
