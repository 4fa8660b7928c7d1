"""Figure c: batched Otsu, IoU (A) and IoU (BB) against a per-image scikit-image and numpy loop."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import Bench, Figure, seconds
from thesislib import metrics as M
from thesislib.metrics import kernels


def maps(n: int, size: int = 112, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CAM-like heatmaps (7x7 noise, upsampled) and expert-like maps (a blurred blob): float32 [n, size, size]."""
    gen = torch.Generator().manual_seed(seed)
    heat = F.interpolate(torch.rand(n, 1, 7, 7, generator=gen), size=size, mode="bilinear", align_corners=False)[:, 0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centre = torch.rand(n, 2, generator=gen) - 0.5
    width = 0.1 + 0.3 * torch.rand(n, 1, 1, generator=gen)
    expert = torch.exp(-((xx - centre[:, :1, None]) ** 2 + (yy - centre[:, 1:, None]) ** 2) / width ** 2)
    return heat, expert


def ours(heat: torch.Tensor, expert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU (A) and IoU (BB) as thesislib.evaluation computes them (`otsu_ious`)."""
    scores = M.otsu_ious(heat, expert)
    return scores["iou_area"], scores["iou_bbox"]


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def reference(heat: np.ndarray, expert: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a typical project writes: scikit-image's Otsu and numpy, image by image."""
    from skimage.filters import threshold_otsu

    area, bbox = np.zeros(len(heat), np.float32), np.zeros(len(heat), np.float32)
    for i, (h, m) in enumerate(zip(heat, expert)):
        h, m = h > threshold_otsu(h), m > threshold_otsu(m)
        union = np.logical_or(h, m).sum()
        area[i] = np.logical_and(h, m).sum() / union if union else 0.0
        a, b = _box(h), _box(m)
        if a is None or b is None:
            continue
        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        bbox[i] = inter / union if union else 0.0
    return area, bbox


def run(bench: Bench) -> Figure:
    n = 1000
    heat, expert = maps(n)
    # best of several calls on both sides: the machine may be shared (the first reference call also
    # imports scikit-image's filters)
    t_ref, (ref_area, ref_bbox) = seconds(lambda: reference(heat.numpy(), expert.numpy()), repeats=3)
    dev_heat, dev_expert = heat.to(bench.device), expert.to(bench.device)
    # the warm-up call compiles the CPU kernels (or loads them from numba's cache) before timing
    t_ours, (area, bbox) = seconds(lambda: ours(dev_heat, dev_expert), repeats=7, warmup=True)
    diff = max(float(np.abs(area.cpu().numpy() - ref_area).max()), float(np.abs(bbox.cpu().numpy() - ref_bbox).max()))
    return Figure("metrics", t_ref / t_ours, f"Otsu + IoU (A) + IoU (BB) on {n} maps of 112x112 (heatmap and expert "
                  f"map each), per-image loop {t_ref * 1e3:.0f} ms, batched {t_ours * 1e3:.0f} ms "
                  f"({_path(dev_heat)}), best of 3 and 7 calls, max |diff| {diff:.1e}", target=10)


def _path(x: torch.Tensor) -> str:
    """Which code computed the batched figure."""
    if x.device.type != "cpu":
        return f"torch on {x.device.type}"
    if kernels.compiled(x):
        return "numba kernels, compiled in a warm-up call before timing"
    return "torch on the CPU: numba is not installed"
