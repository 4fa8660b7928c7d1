"""Metrics: pure, batched torch functions (batch first); no I/O, no state.

Localisation (heatmap H vs expert map M, both [N, H, W]): Otsu binarisation with scikit-image's
`threshold_otsu` semantics, IoU by area and by bounding box, pointing game, relevance mass; without
a threshold on H (on request: a sort per map): relevance rank accuracy and top-k intersection
(Quantus's definitions), AUROC of H's pixels against M, IoU at fixed thresholds and at the top share
of pixels (`iou_curve`).
Faithfulness (model needed): Average Drop, Increase in Confidence (PROTOCOL: relative drop of the
softmax probability of the explained class when the input is multiplied by the map, under two
masking conventions: the normalised tensor x map, or the [0, 1] image x map, black outside),
deletion/insertion AUC, ROAD (`road`, remove and
impute as pytorch-grad-cam's ROAD metrics do). Classification: accuracy, ROC AUC, F1, confusion matrix.

Per-image metrics are fractions in [0, 1]; tables multiply by 100. Empty foregrounds give 0,
never NaN; callers flag them with `is_empty`.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Metric", "REGISTRY", "registered", "KINDS",
    "otsu_threshold", "binarize", "is_empty", "iou_area", "boxes", "box_iou", "iou_bbox", "otsu_ious",
    "pointing_game", "relevance_mass", "CONVENTIONS", "masked_inputs", "target_confidence",
    "masked_confidence", "confidences", "average_drop", "drop_in_confidence",
    "increase_in_confidence", "deletion_insertion", "accuracy", "roc_auc", "f1_score",
    "confusion_matrix", "TOP_K", "relevance_rank_accuracy", "top_k_intersection", "pixel_auroc",
    "CURVE_FIXED", "CURVE_TOP", "curve_columns", "threshold_free", "top_share_mask", "iou_curve", "ROAD_NOISE",
    "road_impute", "road",
]


KINDS = ("localisation", "faithfulness", "classification", "randomisation")


@dataclass(frozen=True)
class Metric:
    """What a metric is, beside what computes it: the one place tables, figures and claims read.

    name: the column in evaluation tables (per-image values are fractions; tables show x100).
    label: how tables and figures name it. higher: True if higher is better. kind: one of KINDS.
    unit: of the table value ("%" for fractions x100). on_request: computed only when an
    evaluation asks for it (it costs extra forward passes or a sort per map), never while
    tracking training. bounds: the range of the table value (intervals are kept inside it).
    margin: the smallest difference, in the table's unit, that counts as an effect worth the name;
    a verdict says "equivalent" where a difference is shown to lie within +-margin
    (`thesislib.inference`).
    """

    name: str
    label: str
    higher: bool
    kind: str
    unit: str = "%"
    on_request: bool = False
    bounds: tuple[float, float] = (0.0, 100.0)
    margin: float = 2.0

    @property
    def arrow(self) -> str:
        return "↑" if self.higher else "↓"

    def better(self, a: float, b: float) -> bool:
        """True if value a is strictly better than value b."""
        return a > b if self.higher else a < b


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("iou_area", "IoU (A)", True, "localisation"),
    Metric("iou_bbox", "IoU (BB)", True, "localisation"),
    Metric("pointing_game", "Pointing game", True, "localisation"),
    Metric("relevance_mass", "Relevance mass", True, "localisation"),
    # input x map on the normalised tensor (masked pixels become the data mean), as pytorch-grad-cam
    Metric("average_drop", "AD", False, "faithfulness"),
    Metric("increase_in_confidence", "IiC", True, "faithfulness"),
    # the image x map before normalisation (black outside the map)
    Metric("average_drop_black", "AD (black)", False, "faithfulness"),
    Metric("increase_in_confidence_black", "IiC (black)", True, "faithfulness"),
    # threshold-free: Quantus's definitions, ties shared in expectation (see `_expected_hits`);
    # a sort of every map, so computed on request (`threshold_free`)
    Metric("relevance_rank_accuracy", "Rank accuracy", True, "localisation", on_request=True),
    Metric("top_k_intersection", "Top-2 % ∩", True, "localisation", on_request=True),
    Metric("pixel_auroc", "AUROC (pixels)", True, "localisation", on_request=True),
    Metric("deletion_auc", "Deletion AUC", False, "faithfulness", on_request=True),
    Metric("insertion_auc", "Insertion AUC", True, "faithfulness", on_request=True),
    # (LeRF - MoRF) / 2 of the explained class's probability, as pytorch-grad-cam's ROADCombined
    Metric("road", "ROAD", True, "faithfulness", on_request=True, bounds=(-50.0, 50.0)),
    # model-randomisation sanity check (thesislib.sanity): original vs randomised maps; lower is
    # better, as a map that depends on the model changes when the model does
    Metric("spearman", "Rank correlation", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1),
    Metric("ssim", "SSIM", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1),
    Metric("hog", "HOG similarity", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1),
    Metric("accuracy", "Acc", True, "classification"),
    Metric("roc_auc", "ROC AUC", True, "classification"),
    Metric("f1", "F1 score", True, "classification"),
)}


def registered(kind: str | None = None) -> list[Metric]:
    """The registered metrics of one kind (all if None), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    return [m for m in REGISTRY.values() if kind is None or m.kind == kind]


def _check_maps(name: str, x: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if x.dim() != 3:
        raise ValueError(f"{name}: expected a batch of maps [N, H, W], found shape {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:  # maps of another size are resized before scoring
        raise ValueError(f"{name}: expected the shape of the map it is compared with, {tuple(like.shape)} (resize "
                         f"it first, as thesislib.data resizes expert maps to the input size), found {tuple(x.shape)}")


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

    float32 and float64 maps on the CPU go through compiled kernels (numba, see `USE_NUMBA`),
    other maps through torch; both give the same values.

    Args:
        x: floating [N, H, W].
        nbins: int >= 2.
    Returns:
        [N] thresholds, dtype of x; the foreground is x > threshold.
    """
    _check_otsu_input("otsu_threshold: x", x, nbins)
    if not len(x):
        return x.new_empty(0)
    if _compiled(x, nbins):
        return _otsu_compiled(x, nbins, masks=False)[0]
    return _otsu_torch(x, nbins)


def _check_otsu_input(name: str, x: torch.Tensor, nbins: int, like: torch.Tensor | None = None) -> None:
    """name: the function and argument, e.g. "binarize: x"."""
    _check_maps(name, x, like)
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
    _check_otsu_input("binarize: x", x, 256)
    if len(x) and _compiled(x):
        return _otsu_compiled(x, 256, masks=True)[1]
    return x > otsu_threshold(x)[:, None, None]


def is_empty(mask: torch.Tensor) -> torch.Tensor:
    """bool [N]: the mask [N, H, W] has no foreground pixel."""
    return ~mask.flatten(1).any(1)


# Boolean reductions: numpy's are about 10x torch's on the CPU (torch takes a generic path for bool).
def _count(mask: torch.Tensor) -> torch.Tensor:
    """int64 [N]: foreground pixels of each row of bool [N, P]."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(mask.numpy(), axis=1).astype(np.int64))
    return torch.count_nonzero(mask, dim=1)


def _any(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """mask.any(dim) for a bool tensor."""
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
    _check_maps("iou_area: a", a)
    _check_maps("iou_area: b", b, like=a)
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    if _compiled(a) and b.device.type == "cpu":
        inter, union = _mask_counts_compiled(a, b)
    else:
        inter, union = _count(a & b), _count(a | b)
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
    _check_maps("boxes: mask", mask)
    mask = mask.bool()
    if _compiled(mask):
        out = np.empty((len(mask), 4), np.int64)
        _mask_boxes(_as_uint8(mask), out)
        return torch.from_numpy(out)
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
    _check_maps("iou_bbox: b", b, like=a)
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
    _check_otsu_input("otsu_ious: heatmap", heatmap, 256)
    _check_otsu_input("otsu_ious: expert", expert, 256, like=heatmap)
    if not (len(heatmap) and heatmap.dtype == expert.dtype and _compiled(heatmap) and _compiled(expert)):
        h, m = binarize(heatmap), binarize(expert)
        return {"iou_area": iou_area(h, m), "iou_bbox": iou_bbox(h, m), "heatmap_empty": is_empty(h),
                "map_empty": is_empty(m)}
    a, b = _rows(heatmap), _rows(expert)
    bits = a.view(np.int32 if a.itemsize == 4 else np.int64)
    thresholds, stats = np.empty((len(a), 2), a.dtype), np.empty((len(a), 10), np.int64)
    _otsu_pairs(a, bits, b, b.view(bits.dtype), 8 * a.itemsize - 1, 256, a.dtype.type(256), heatmap.shape[2],
                thresholds, stats)
    stats = torch.from_numpy(stats)
    box_h, box_m = stats[:, 2:6], stats[:, 6:10]
    return {"iou_area": _area_ratio(stats[:, 0], stats[:, 1]), "iou_bbox": _box_ratio(box_h, box_m),
            "heatmap_empty": box_h[:, 2] == 0, "map_empty": box_m[:, 2] == 0}


# -- compiled CPU kernels (numba) -----------------------------------------------------------------
# The functions from `_workspace` to `_mask_boxes` are written in the subset of Python numba
# compiles; `_numba_ready` compiles them on first use (the machine code is cached on disk beside
# this file). They compute what the torch code above computes, bit for bit, where torch needs about
# twenty passes over each map: one pass for the map's range, one for its bins, one over the bins
# for the histogram, and one for its mask (or, in `otsu_ious`, for both masks' counts and boxes),
# while the map is in the CPU's cache. No fastmath: each float operation rounds as numpy's does, in
# the map's own dtype (float32 arithmetic stays float32), and no multiply-add is fused.

USE_NUMBA = True
"""Use the compiled kernels for CPU maps where numba imports; False: torch and numpy only (the
same values; tests run both paths)."""

_KERNELS = ("_workspace", "_key_range", "_bin_indices", "_bin_counts", "_map_threshold", "_otsu_rows",
            "_box_of", "_pair_stats", "_otsu_pairs", "_mask_counts", "_mask_boxes")
_MAX_COMPILED_BINS = 2 ** 24  # bin indices pass through float32 in the kernels, exact up to here
_NUMBA_LOCK = threading.Lock()


@functools.cache
def _numba_ready() -> bool:
    """Replace the kernels by numba's compiled versions (once); False where numba does not import
    (e.g. a GPU image without it: the torch code then runs)."""
    try:
        import numba
    except ImportError:
        return False
    # error_model="numpy": IEEE division, no ZeroDivisionError checks (which would stop vectorisation)
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    with _NUMBA_LOCK:  # functools.cache alone may run this in two threads at once
        scope = globals()
        for name in _KERNELS:
            if not hasattr(scope[name], "py_func"):  # not compiled yet
                scope[name] = jit(scope[name])
    return True


def _compiled(x: torch.Tensor, nbins: int = 256) -> bool:
    """Whether x (float32/float64 maps or bool masks on the CPU) goes through the compiled kernels."""
    return (USE_NUMBA and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64, torch.bool)
            and nbins <= _MAX_COMPILED_BINS and _numba_ready())


def _rows(x: torch.Tensor) -> np.ndarray:
    """CPU maps [N, H, W] as a C-contiguous array [N, H * W] (no copy if already contiguous)."""
    return x.detach().reshape(len(x), -1).contiguous().numpy()


def _otsu_compiled(x: torch.Tensor, nbins: int, masks: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(thresholds [N], x > thresholds as bool [N, H, W] if masks else None) of CPU float32/float64 maps."""
    flat = _rows(x)
    thresholds = np.empty(len(flat), flat.dtype)
    out = np.empty(flat.shape if masks else (0, 0), np.bool_)
    _otsu_rows(flat, flat.view(np.int32 if flat.itemsize == 4 else np.int64), 8 * flat.itemsize - 1, nbins,
               flat.dtype.type(nbins), thresholds, out.view(np.uint8))
    return torch.from_numpy(thresholds), torch.from_numpy(out).view(x.shape) if masks else None


def _as_uint8(mask: torch.Tensor) -> np.ndarray:
    """A CPU bool tensor's bytes as a C-contiguous uint8 array (no copy if already contiguous)."""
    return mask.detach().contiguous().numpy().view(np.uint8)


def _mask_counts_compiled(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|a and b|, |a or b|), int64 [N] each, of CPU bool masks [N, P]."""
    inter, union = np.empty(len(a), np.int64), np.empty(len(a), np.int64)
    _mask_counts(_as_uint8(a), _as_uint8(b), inter, union)
    return torch.from_numpy(inter), torch.from_numpy(union)


def _workspace(x, bits, nb):
    """Scratch arrays of `_map_threshold` for maps like the rows of x [N, P] (bits: x viewed as
    integers) and nb bins: the range's two values (as floats, and the same memory as integers),
    bin indices, four partial histograms, edges, counts, centres, upper weights and means."""
    pair = np.empty(2, x.dtype)
    return (pair, pair.view(bits.dtype), np.empty(x.shape[1], np.int32), np.empty((4, nb), np.int32),
            np.empty(nb + 1, x.dtype), np.empty(nb, np.float32), np.empty(nb, x.dtype), np.empty(nb, np.float32),
            np.empty(nb, x.dtype))


def _key_range(bits, shift):
    """The bit patterns of the smallest and largest value of a map, given as integers `bits` (its
    floats' bit patterns; shift: their width - 1). Each pattern maps to a key that orders like the
    floats (NaN beyond -inf and +inf): integer min and max vectorise, float ones do not."""
    low = (1 << shift) - 1
    lo = hi = bits[0] ^ ((bits[0] >> shift) & low)
    for i in range(bits.shape[0]):
        key = bits[i] ^ ((bits[i] >> shift) & low)
        lo = min(lo, key)
        hi = max(hi, key)
    return lo ^ ((lo >> shift) & low), hi ^ ((hi >> shift) & low)  # the mapping is its own inverse


def _bin_indices(v, lo, denom, step, nbf, idx):
    """numpy.histogram's bin of each value of v (finite, in [lo, lo + denom]) into idx (int32):
    (v - lo) / denom * nbins truncated, then its +-1 corrections against the edges i * step + lo (two
    roundings, as numpy.linspace), all in v's dtype (nbf: nbins in it). Never below 0: edge 0 is lo."""
    one = nbf / nbf
    last = nbf - one
    for i in range(v.shape[0]):
        x = v[i]
        j = min(np.float32(np.int32((x - lo) / denom * nbf)), last)  # the maximum lands in the last bin
        j = j - one if x < j * step + lo else (j + one if x >= (j + one) * step + lo else j)
        idx[i] = np.int32(min(j, last))


def _bin_counts(idx, sub, counts):
    """counts (float32, as scikit-image casts them) of the bin indices idx; sub: int32 [4, nbins],
    four partial histograms so that consecutive increments of one bin do not wait on each other."""
    sub[:] = 0
    n = idx.shape[0]
    m = n - n % 4
    for i in range(0, m, 4):
        sub[0, idx[i]] += 1
        sub[1, idx[i + 1]] += 1
        sub[2, idx[i + 2]] += 1
        sub[3, idx[i + 3]] += 1
    for i in range(m, n):
        sub[0, idx[i]] += 1
    for b in range(counts.shape[0]):
        counts[b] = np.float32(sub[0, b] + sub[1, b] + sub[2, b] + sub[3, b])


def _map_threshold(v, bits, shift, nbf, work):
    """scikit-image's threshold_otsu of one map v (bits: v viewed as integers; work: `_workspace`);
    NaN where the map holds NaN or an infinite value and more than one value."""
    pair, pair_bits, idx, sub, edges, counts, centers, w2, m2 = work
    pair_bits[0], pair_bits[1] = _key_range(bits, shift)
    lo, hi = pair[0], pair[1]
    if lo == hi:
        return hi
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.nan
    nb = counts.shape[0]
    denom = hi - lo
    step = denom / nbf
    for i in range(nb):  # numpy.linspace(lo, hi, nbins + 1)
        edges[i] = np.float32(i) * step + lo
    edges[nb] = hi
    for i in range(nb):
        if edges[i + 1] <= edges[i]:  # numpy.histogram: "Too many bins for data range"
            return hi
    _bin_indices(v, lo, denom, step, nbf, idx)
    _bin_counts(idx, sub, counts)
    two = (nbf / nbf) * 2
    for i in range(nb):
        centers[i] = (edges[i] + edges[i + 1]) / two
    # numpy's sequential cumulative sums from the top: weight and mean of the bins i and above
    w = counts[nb - 1]
    s = counts[nb - 1] * centers[nb - 1]
    w2[nb - 1], m2[nb - 1] = w, s / w
    for i in range(nb - 2, -1, -1):
        w += counts[i]
        s += counts[i] * centers[i]
        w2[i], m2[i] = w, s / w
    # ... and from the bottom, with the between-class variance of each split and its first maximum
    w = counts[0]
    s = counts[0] * centers[0]
    best, arg = -np.inf, 0
    for i in range(nb - 1):
        if i:
            w += counts[i]
            s += counts[i] * centers[i]
        d = s / w - m2[i + 1]
        variance = (w * w2[i + 1]) * (d * d)
        if variance > best:
            best, arg = variance, i
    return centers[arg]


def _otsu_rows(x, bits, shift, nb, nbf, thresholds, masks):
    """Otsu's threshold of each row of x [N, P] (float32/float64; bits: x viewed as integers) into
    thresholds [N]; where masks is uint8 [N, P] (not [0, 0]), also x > threshold into it."""
    work = _workspace(x, bits, nb)
    for r in range(x.shape[0]):
        thresholds[r] = _map_threshold(x[r], bits[r], shift, nbf, work)
        if masks.shape[0]:
            t, v, m = thresholds[r], x[r], masks[r]
            for i in range(v.shape[0]):
                m[i] = v[i] > t


def _box_of(cols, y0, y1, out):
    """The box (x0, y0, x1, y1) into out [4] of a mask whose columns hold foreground where cols
    (uint8 [W]) is set and whose rows do in [y0, y1); (0, 0, 0, 0) if y1 is 0 (empty)."""
    out[:] = 0
    if y1:
        x0, x1 = 0, cols.shape[0]
        while not cols[x0]:
            x0 += 1
        while not cols[x1 - 1]:
            x1 -= 1
        out[0], out[1], out[2], out[3] = x0, y0, x1, y1


def _pair_stats(a, b, ta, tb, width, cols_a, cols_b, out):
    """For maps a, b (rows of `width` pixels, flat) and thresholds ta, tb: out [10] = |A and B|,
    |A or B|, the box of A, the box of B, with A = a > ta and B = b > tb; one pass, nothing stored."""
    cols_a[:] = 0
    cols_b[:] = 0
    inter = union = 0
    h = a.shape[0] // width
    ya0, ya1, yb0, yb1 = h, 0, h, 0
    for y in range(h):
        row_a = row_b = 0
        for c in range(width):
            ma = np.uint8(a[y * width + c] > ta)
            mb = np.uint8(b[y * width + c] > tb)
            inter += ma & mb
            union += ma | mb
            cols_a[c] |= ma
            cols_b[c] |= mb
            row_a |= ma
            row_b |= mb
        if row_a:
            ya0, ya1 = min(ya0, y), y + 1
        if row_b:
            yb0, yb1 = min(yb0, y), y + 1
    out[0], out[1] = inter, union
    _box_of(cols_a, ya0, ya1, out[2:6])
    _box_of(cols_b, yb0, yb1, out[6:10])


def _otsu_pairs(a, a_bits, b, b_bits, shift, nb, nbf, width, thresholds, stats):
    """`otsu_ious` of the rows of a and b [N, P] (maps of `width` columns, one float dtype; *_bits:
    viewed as integers): both thresholds into thresholds [N, 2], `_pair_stats` into stats [N, 10]."""
    work = _workspace(a, a_bits, nb)
    cols_a, cols_b = np.empty(width, np.uint8), np.empty(width, np.uint8)
    for r in range(a.shape[0]):
        thresholds[r, 0] = _map_threshold(a[r], a_bits[r], shift, nbf, work)
        thresholds[r, 1] = _map_threshold(b[r], b_bits[r], shift, nbf, work)
        _pair_stats(a[r], b[r], thresholds[r, 0], thresholds[r, 1], width, cols_a, cols_b, stats[r])


def _mask_counts(a, b, inter, union):
    """|a and b| and |a or b| of each row of the masks a, b (uint8 [N, P]) into inter, union [N]."""
    for r in range(a.shape[0]):
        both = either = 0
        for i in range(a.shape[1]):
            both += a[r, i] & b[r, i]
            either += a[r, i] | b[r, i]
        inter[r] = both
        union[r] = either


def _mask_boxes(mask, out):
    """`boxes` of masks uint8 [N, H, W] into out int64 [N, 4]."""
    n, h, w = mask.shape
    cols = np.empty(w, np.uint8)
    for r in range(n):
        cols[:] = 0
        y0, y1 = h, 0
        for y in range(h):
            row = 0
            for c in range(w):
                cols[c] |= mask[r, y, c]
                row |= mask[r, y, c]
            if row:
                y0, y1 = min(y0, y), y + 1
        _box_of(cols, y0, y1, out[r])


def pointing_game(heatmap: torch.Tensor, mask: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Hit if the heatmap's maximum (first one in row-major order) lies in the mask.

    Args:
        heatmap: float [N, H, W]; mask: bool [N, H, W].
        tolerance: pixels; the mask is dilated by a square of this radius (Zhang et al. use 15
            px at 224 px).
    Returns:
        bool [N]; an all-zero heatmap never hits.
    """
    _check_maps("pointing_game: heatmap", heatmap)
    _check_maps("pointing_game: mask", mask, like=heatmap)
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
    _check_maps("relevance_mass: heatmap", heatmap)
    _check_maps("relevance_mass: mask", mask, like=heatmap)
    h = heatmap.flatten(1).float()
    total = h.sum(1)
    inside = (h * mask.flatten(1).float()).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


# -- without a threshold on the heatmap ---------------------------------------------------------

TOP_K = 0.02
"""Share of pixels `top_k_intersection` takes: Quantus's default k = 1000 of a 224 x 224 input."""


def _check_pair(name: str, heatmap: torch.Tensor, mask: torch.Tensor) -> None:
    _check_maps(f"{name}: heatmap", heatmap)
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
    n_above = _count(above)
    hits_above = _count(above & m).double()
    n_tied = _count(tied).clamp_min(1).double()
    hits_tied = _count(tied & m).double()
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


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
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
        ranks = _average_ranks(h.double())
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
    size = _count(m)
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
    _check_maps("top_share_mask: heatmap", heatmap)
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
    union = fg + _count(m).double()[:, None] - inter
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
    from thesislib.data import MEAN, STD

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
    from torchvision.transforms.v2.functional import gaussian_blur

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


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of correct predictions."""
    return (pred == labels).double().mean().item()


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` for labels == 1 (Mann-Whitney U with average ranks).

    Raises:
        ValueError: labels hold a single class (the AUC is undefined).
    """
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc: labels: expected both classes, found {n_pos} positive and {n_neg} negative")
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    counts = counts.double()
    ranks = (counts.cumsum(0) - counts + (counts + 1) / 2)[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return (u / (n_pos * n_neg)).item()


def f1_score(pred: torch.Tensor, labels: torch.Tensor, positive: int = 1) -> float:
    """F1 of the positive class (glaucoma); 0 when there are no positives predicted or present."""
    p, l = pred == positive, labels == positive  # noqa: E741
    tp = (p & l).sum().item()
    denom = 2 * tp + (p & ~l).sum().item() + (~p & l).sum().item()
    return 2 * tp / denom if denom else 0.0


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, classes: int = 2) -> torch.Tensor:
    """int64 [classes, classes]: rows are true classes, columns predicted (scikit-learn's layout)."""
    return torch.bincount(labels.long() * classes + pred.long(), minlength=classes * classes).view(classes, classes)
