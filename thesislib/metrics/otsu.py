"""Otsu: each map's threshold and foreground (`otsu_threshold`, `binarize`), as scikit-image computes them.

The threshold has scikit-image's `threshold_otsu` semantics, bit for bit on the CPU; float32 and
float64 CPU maps go through the compiled kernels (`kernels`), other maps through torch.
"""

from __future__ import annotations

import numpy as np
import torch

from thesislib.metrics import kernels
from thesislib.metrics.maps import check_maps

__all__ = ["otsu_threshold", "binarize", "check_otsu_input"]


def _cumsum(x: torch.Tensor) -> torch.Tensor:
    """Sequential cumulative sum along dim 1 in x's own precision, like numpy's cumsum.

    torch's CPU cumsum accumulates float32 in double, which rounds differently from numpy.
    """
    cols = x.t().contiguous()  # each step then reads and writes one contiguous row
    out = torch.empty_like(cols)
    acc = cols[0].clone()
    out[0] = acc
    for i in range(1, cols.shape[0]):
        acc = acc + cols[i]
        out[i] = acc
    return out.t()


def otsu_threshold(x: torch.Tensor, nbins: int = 256) -> torch.Tensor:
    """Otsu's threshold of each map, as scikit-image's `threshold_otsu(x[i])` computes it.

    Same semantics, bit for bit on the CPU: `nbins` equal bins over each map's own [min, max]
    (numpy's histogram edges and bin assignment, in the input's precision), bin centres,
    scikit-image's float32 counts, the first maximum of the between-class variance. A constant
    map returns its value (so no pixel is foreground). Where scikit-image would raise because the
    range is too small for `nbins` distinct bins, this returns the maximum (empty foreground); where
    it would raise because a map holds NaN or an infinite value, NaN (empty foreground too).

    float32 and float64 maps on the CPU go through compiled kernels (numba, see `kernels.USE_NUMBA`),
    other maps through torch; both give the same values.

    Args:
        x: floating [N, H, W].
        nbins: int >= 2.
    Returns:
        [N] thresholds, dtype of x; the foreground is x > threshold.
    """
    check_otsu_input("otsu_threshold: x", x, nbins)
    if not len(x):
        return x.new_empty(0)
    if kernels.compiled(x, nbins):
        return kernels.otsu_compiled(x, nbins, masks=False)[0]
    return _otsu_torch(x, nbins)


def check_otsu_input(name: str, x: torch.Tensor, nbins: int, like: torch.Tensor | None = None) -> None:
    """Raise unless x is floating maps [N, H, W] of at least one pixel (like's shape, if given) and
    nbins an int >= 2; name: the function and argument, e.g. "binarize: x"."""
    check_maps(name, x, like)
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, found {x.dtype} "
                        "(convert integer maps first, e.g. x.float() / 255)")
    if x.shape[1] * x.shape[2] == 0:
        raise ValueError(f"{name}: expected maps of at least one pixel, found shape {tuple(x.shape)}")
    if isinstance(nbins, bool) or not isinstance(nbins, (int, np.integer)) or nbins < 2:
        raise ValueError(f"{name.split(':')[0]}: nbins: expected an int >= 2, found {nbins!r}")


def _otsu_torch(x: torch.Tensor, nbins: int) -> torch.Tensor:
    """`otsu_threshold` in torch operations (any device and floating dtype)."""
    # histograms in chunks of maps that stay in the CPU's cache (the values do not depend on it)
    parts = [_histogram(c, nbins) for c in x.split(_OTSU_CHUNK)]
    counts, edges, degenerate, lo, hi = (torch.cat(p) for p in zip(*parts))
    dt = x.dtype
    centers = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weighted = counts.to(torch.promote_types(torch.float32, dt)) * centers
    # counts are whole numbers below 2**24: torch's cumsum is exact for them; the weighted sums
    # need numpy's sequential float32 rounding
    w1 = torch.cumsum(counts, 1)
    w2 = torch.cumsum(counts.flip(1), 1).flip(1)
    m1 = _cumsum(weighted) / w1
    m2 = (_cumsum(weighted.flip(1)) / w2.flip(1)).flip(1)
    diff = m1[:, :-1] - m2[:, 1:]
    variance = (w1[:, :-1] * w2[:, 1:]) * (diff * diff)
    best = torch.argmax(variance, dim=1)
    threshold = centers.gather(1, best[:, None])[:, 0].to(dt)
    threshold = torch.where(degenerate, hi, threshold)
    nonfinite = (lo != hi) & ~(torch.isfinite(lo) & torch.isfinite(hi))  # amin/amax propagate NaN
    return torch.where(nonfinite, torch.full_like(hi, float("nan")), threshold)


_OTSU_CHUNK = 64


def _histogram(x: torch.Tensor, nbins: int) -> tuple[torch.Tensor, ...]:
    """numpy.histogram(x[i], nbins) of a few maps: (float32 counts [n, nbins], edges [n, nbins + 1],
    degenerate [n] (range too small for distinct bins), min [n], max [n])."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    dt = x.dtype
    lo, hi = flat.amin(1), flat.amax(1)
    constant = lo == hi
    # numpy.linspace(lo, hi, nbins + 1) in the input's precision
    step = torch.where(constant, torch.ones_like(hi), hi - lo) / nbins
    edges = torch.arange(nbins + 1, dtype=dt, device=x.device)[None, :] * step[:, None] + lo[:, None]
    edges[:, -1] = hi
    degenerate = constant | (edges[:, 1:] <= edges[:, :-1]).any(1)
    # numpy.histogram's bin assignment for equal bins, with its +-1 ULP corrections; a bin's edges
    # are recomputed elementwise with the very operations that built `edges` (bit-identical),
    # which is cheaper than gathering them
    denom = torch.where(degenerate, torch.ones_like(hi), hi - lo)
    idx = ((flat - lo[:, None]) / denom[:, None] * nbins).to(torch.int32)
    idx.clamp_(0, nbins - 1)  # the maximum lands in the last bin, as numpy puts it there
    lo_, step_ = lo[:, None], step[:, None]

    def edge(i: torch.Tensor) -> torch.Tensor:  # edge i of each map (i = nbins, the max, is never read);
        return i.to(dt) * step_ + lo_           # multiply, then add: numpy.linspace's two roundings

    idx -= (flat < edge(idx)).to(torch.int32)
    idx += ((flat >= edge(idx + 1)) & (idx != nbins - 1)).to(torch.int32)
    idx.clamp_(0, nbins - 1)
    # one histogram for all maps: offset each map's bins (int32 throughout: mixing int32 and int64
    # takes a slow path on the CPU)
    idx += torch.arange(0, n * nbins, nbins, device=x.device, dtype=torch.int32)[:, None]
    counts = torch.bincount(idx.flatten(), minlength=n * nbins).view(n, nbins)
    counts = counts.to(torch.float32)  # scikit-image casts the histogram to float32
    return counts, edges, degenerate, lo, hi


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Otsu foreground: bool [N, H, W] = x > otsu_threshold(x)."""
    check_otsu_input("binarize: x", x, 256)
    if len(x) and kernels.compiled(x):
        return kernels.otsu_compiled(x, 256, masks=True)[1]
    return x > otsu_threshold(x)[:, None, None]
