"""Unthresholded localisation: rank accuracy, top-k intersection, pixel AUROC and the IoU curve.

Without a threshold on the heatmap H [N, H, W] (computed on request: a sort per map): relevance
rank accuracy and top-k intersection (Quantus's definitions), AUROC of H's pixels against the
expert mask M, and IoU at fixed thresholds and at the top share of pixels (`iou_curve`).
`threshold_free` computes them all from one sort of each map.
"""

from __future__ import annotations

import numpy as np
import torch

from thesislib.metrics.maps import check_maps, count_true

__all__ = ["TOP_K", "relevance_rank_accuracy", "top_k_intersection", "average_ranks", "pixel_auroc", "threshold_free",
           "CURVE_FIXED", "CURVE_TOP", "curve_columns", "top_share_mask", "iou_curve"]


TOP_K = 0.02
"""Share of pixels `top_k_intersection` takes: Quantus's default k = 1000 of a 224 x 224 input."""


def _check_pair(name: str, heatmap: torch.Tensor, mask: torch.Tensor) -> None:
    check_maps(f"{name}: heatmap", heatmap)
    if mask.shape != heatmap.shape:
        raise ValueError(f"{name}: mask: expected the heatmap's shape {tuple(heatmap.shape)}, "
                         f"found {tuple(mask.shape)}")


def _expected_hits(heatmap: torch.Tensor, mask: torch.Tensor, k: torch.Tensor,
                   ascending: torch.Tensor | None = None) -> torch.Tensor:
    """Expected number of mask pixels among each map's k highest pixels, ties broken at random.

    Quantus sorts with numpy's unstable argsort, so which of several equal pixels it takes is an
    accident of the sort; here pixels tied at the k-th value share the remaining places in
    proportion (the mean over every order of the ties). Without ties at the k-th value this is
    Quantus's count.

    Args:
        heatmap: float [N, H, W]; mask: bool [N, H, W]; k: int64 [N], 0 <= k <= H * W.
        ascending: the heatmap's rows [N, H * W] sorted ascending, if already at hand.
    Returns:
        float64 [N].
    """
    h = heatmap.flatten(1)
    m = mask.flatten(1).bool()
    kth = _kth_largest(h, k, ascending)[:, None]
    above, tied = h > kth, h == kth
    n_above = count_true(above)
    hits_above = count_true(above & m).double()
    n_tied = count_true(tied).clamp_min(1).double()
    hits_tied = count_true(tied & m).double()
    hits = hits_above + (k.to(n_above.device) - n_above).double() * hits_tied / n_tied
    return torch.where(k.to(hits.device) > 0, hits, torch.zeros_like(hits))


def _ascending(x: torch.Tensor) -> torch.Tensor:
    """Each row of x [N, P] sorted ascending (values only: numpy's sort on the CPU, several times
    torch's sort with indices)."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.detach().numpy(), axis=1))
    return x.sort(dim=1).values


def _kth_largest(x: torch.Tensor, k: torch.Tensor, ascending: torch.Tensor | None = None) -> torch.Tensor:
    """The k-th largest value of each row of x [N, P] (k int64 [N], 1 <= k <= P; k = 0 reads the largest)."""
    p = x.shape[1]
    pos = (p - k.to(x.device)).clamp(0, p - 1)
    return (_ascending(x) if ascending is None else ascending).gather(1, pos[:, None])[:, 0]


def relevance_rank_accuracy(heatmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of the K highest heatmap pixels that lie in the mask, K = the mask's size (Arras et al.
    2022; Quantus's RelevanceRankAccuracy, ties shared in expectation, see `_expected_hits`).

    Args:
        heatmap: float [N, H, W]; mask: bool [N, H, W].
    Returns:
        float32 [N] in [0, 1]; 0 for an empty mask (Quantus: NaN).
    """
    _check_pair("relevance_rank_accuracy", heatmap, mask)
    k = mask.flatten(1).bool().sum(1)
    hits = _expected_hits(heatmap, mask, k)
    return torch.where(k > 0, hits / k.clamp_min(1), torch.zeros_like(hits)).float()


def top_k_intersection(heatmap: torch.Tensor, mask: torch.Tensor, k: int | float = TOP_K) -> torch.Tensor:
    """Share of the k highest heatmap pixels that lie in the mask (Theiner et al. 2022; Quantus's
    TopKIntersection without concept influence, ties shared in expectation).

    Args:
        heatmap: float [N, H, W]; mask: bool [N, H, W].
        k: pixels (int >= 1), or a share of the pixels (float in (0, 1], rounded, at least 1).
    Returns:
        float32 [N] in [0, 1]; 0 for an empty mask (Quantus: NaN).
    """
    _check_pair("top_k_intersection", heatmap, mask)
    size = heatmap.shape[1] * heatmap.shape[2]
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0 or (isinstance(k, float) and k > 1) \
            or (isinstance(k, int) and k > size):
        raise ValueError(f"k: expected pixels in [1, {size}] (int) or a share in (0, 1] (float), found {k!r}")
    pixels = k if isinstance(k, int) else max(1, round(k * size))
    kk = torch.full((len(heatmap),), pixels, dtype=torch.int64, device=heatmap.device)
    hits = _expected_hits(heatmap, mask, kk) / pixels
    return torch.where(mask.flatten(1).any(1), hits, torch.zeros_like(hits)).float()


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row of x [N, P], tied values sharing their mean rank (scipy's rankdata): float64."""
    n, p = x.shape
    vals, order = x.sort(dim=1, stable=True)
    pos = torch.arange(1, p + 1, dtype=torch.float64, device=x.device).expand(n, p)
    start = torch.ones_like(vals, dtype=torch.bool)
    start[:, 1:] = vals[:, 1:] != vals[:, :-1]
    end = torch.ones_like(start)
    end[:, :-1] = start[:, 1:]
    first = torch.where(start, pos, 0.0).cummax(1).values
    last = torch.where(end, pos, p + 1.0).flip(1).cummin(1).values.flip(1)
    return torch.empty_like(first).scatter_(1, order, (first + last) / 2)


def pixel_auroc(heatmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of each map's pixel values for telling mask pixels from the others
    (scikit-learn's roc_auc_score per image, ties counted as half).

    Args:
        heatmap: float [N, H, W]; mask: bool [N, H, W].
    Returns:
        float32 [N] in [0, 1]; 0.5 (chance) where the mask is empty or covers every pixel, where
        the AUC is undefined; a constant heatmap scores 0.5.
    """
    _check_pair("pixel_auroc", heatmap, mask)
    m = mask.flatten(1).bool()
    h = heatmap.flatten(1)
    if h.device.type != "cpu":
        ranks = average_ranks(h.double())
        n_pos = m.sum(1).double()
        n_neg = m.shape[1] - n_pos
        u = (ranks * m).sum(1) - n_pos * (n_pos + 1) / 2
        defined = (n_pos > 0) & (n_neg > 0)
        auc = u / (n_pos * n_neg).clamp_min(1)
        return torch.where(defined, auc, torch.full_like(auc, 0.5)).float()
    out = np.full(len(h), 0.5)
    for i, (row, lab) in enumerate(zip(h.detach().numpy(), m.numpy())):
        pos, neg = np.sort(row[lab]), np.sort(row[~lab])
        if len(pos) and len(neg):  # Mann-Whitney U: negatives below each positive, ties counted half
            below = np.searchsorted(neg, pos, "left").sum() + np.searchsorted(neg, pos, "right").sum()
            out[i] = below / 2 / (len(pos) * len(neg))
    return torch.from_numpy(out).float()


def threshold_free(heatmap: torch.Tensor, expert: torch.Tensor) -> dict[str, torch.Tensor]:
    """`relevance_rank_accuracy`, `top_k_intersection` (TOP_K), `pixel_auroc` and `iou_curve` of one
    batch, sharing one sort of each map (what `thesislib.evaluation.evaluate` scores per map).

    Args:
        heatmap: float [N, H, W] in [0, 1]; expert: bool [N, H, W].
    Returns:
        metric or curve column -> float32 [N], the same values as the functions one by one.
    """
    _check_pair("threshold_free", heatmap, expert)
    flat, m = heatmap.flatten(1), expert.flatten(1).bool()
    ascending = _ascending(flat)
    size = count_true(m)
    rra = _expected_hits(heatmap, expert, size, ascending)
    pixels = max(1, round(TOP_K * flat.shape[1]))
    topk = _expected_hits(heatmap, expert, torch.full_like(size, pixels), ascending) / pixels
    return {"relevance_rank_accuracy": torch.where(size > 0, rra / size.clamp_min(1), torch.zeros_like(rra)).float(),
            "top_k_intersection": torch.where(size > 0, topk, torch.zeros_like(topk)).float(),
            "pixel_auroc": pixel_auroc(heatmap, expert), **iou_curve(heatmap, expert, ascending=ascending)}


CURVE_FIXED = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Fixed thresholds t of `iou_curve`: the heatmap's foreground is H > t (maps are in [0, 1])."""
CURVE_TOP = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Shares of `iou_curve`: the foreground is that share of the pixels with the highest values."""


def curve_columns() -> dict[str, tuple[str, float]]:
    """Column name -> (rule, level) of every point of `iou_curve`: rule "fixed" (threshold) or "top" (share)."""
    out = {f"iou_fixed_{round(t * 100):02d}": ("fixed", t) for t in CURVE_FIXED}
    out.update({f"iou_top_{round(s * 100):02d}": ("top", s) for s in CURVE_TOP})
    return out


def top_share_mask(heatmap: torch.Tensor, share: float) -> torch.Tensor:
    """The pixels at or above each map's k-th highest value, k = round(share * H * W) (at least 1),
    never a pixel of value 0; pixels tied with the k-th value are all kept.

    Args:
        heatmap: float [N, H, W]; share: in (0, 1].
    Returns:
        bool [N, H, W].
    """
    check_maps("top_share_mask: heatmap", heatmap)
    if not 0 < share <= 1:
        raise ValueError(f"share: expected a number in (0, 1], found {share!r}")
    n, h, w = heatmap.shape
    flat = heatmap.flatten(1)
    return (flat >= _top_bound(flat, [share], _ascending(flat))).view(n, h, w)


def _top_bound(flat: torch.Tensor, shares, ascending: torch.Tensor) -> torch.Tensor:
    """[N, len(shares)]: per row the value a pixel must reach to be in each top share (its k-th
    highest value, or the smallest positive value where that is 0)."""
    p = flat.shape[1]
    pos = torch.tensor([p - max(1, round(s * p)) for s in shares], device=flat.device)
    kth = ascending[:, pos]
    tiny = torch.finfo(flat.dtype).tiny
    return torch.where(kth > 0, kth, torch.full_like(kth, tiny))


def _ious_at(levels_below: torch.Tensor, m: torch.Tensor, count: int) -> torch.Tensor:
    """IoU with mask m [N, P] of the foregrounds "level index > j" for j < count, from each pixel's
    number of levels below it (int [N, P]): float32 [N, count]."""
    n = m.shape[0]
    bins = count + 1
    idx = (levels_below + torch.arange(n, device=m.device)[:, None] * bins).flatten()
    hist = torch.bincount(idx, minlength=n * bins).view(n, bins).double()
    hist_in = torch.bincount(idx, weights=m.flatten().double(), minlength=n * bins).view(n, bins)
    fg = hist.flip(1).cumsum(1).flip(1)[:, 1:]  # pixels of each foreground
    inter = hist_in.flip(1).cumsum(1).flip(1)[:, 1:]
    union = fg + count_true(m).double()[:, None] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union)).float()


def iou_curve(heatmap: torch.Tensor, expert: torch.Tensor, *,
              ascending: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """IoU (A) of the heatmap binarised at every point of the curve against the (Otsu) expert mask:
    H > t for the fixed thresholds, `top_share_mask` for the shares.

    Args:
        heatmap: float [N, H, W] in [0, 1]; expert: bool [N, H, W].
        ascending: the heatmap's rows [N, H * W] sorted ascending, if already at hand.
    Returns:
        `curve_columns()` name -> float32 [N].
    """
    _check_pair("iou_curve", heatmap, expert)
    flat, m = heatmap.flatten(1), expert.flatten(1).bool()
    columns = curve_columns()
    fixed = [c for c, (rule, _) in columns.items() if rule == "fixed"]
    top = [c for c, (rule, _) in columns.items() if rule == "top"]
    levels = torch.tensor([columns[c][1] for c in fixed], dtype=flat.dtype, device=flat.device)
    # a pixel is above threshold j if more than j thresholds lie strictly below it
    out = dict(zip(fixed, _ious_at(torch.bucketize(flat, levels), m, len(fixed)).unbind(1)))
    if top:
        ascending = _ascending(flat) if ascending is None else ascending
        # shares descending -> bounds ascending; in top share j if it reaches more than j bounds
        shares = sorted((columns[c][1] for c in top), reverse=True)
        bounds = _top_bound(flat, shares, ascending).contiguous()
        reached = torch.searchsorted(bounds, flat.contiguous(), right=True)
        ious = _ious_at(reached, m, len(shares)).unbind(1)
        by_share = dict(zip(shares, ious))
        out.update({c: by_share[columns[c][1]] for c in top})
    return {c: out[c] for c in columns}
