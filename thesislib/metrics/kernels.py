"""Kernels: the numba-compiled CPU code for Otsu's threshold and masks' counts and boxes, and its switch.

`USE_NUMBA` switches the kernels on or off and `compiled` says whether a tensor goes through them.

The functions from `_workspace` to `_mask_boxes` are written in the subset of Python numba
compiles; `numba_ready` compiles them on first use (the machine code is cached on disk beside this
file). They compute what the torch code of `otsu` and `localisation` computes, bit for bit, where
torch needs about twenty passes over each map: one pass for the map's range, one for its bins, one
over the bins for the histogram, and one for its mask (or, in `otsu_ious`, for both masks' counts
and boxes), while the map is in the CPU's cache. No fastmath: each float operation rounds as
numpy's does, in the map's own dtype (float32 arithmetic stays float32), and no multiply-add is
fused.

Other modules call the kernels only through the wrappers below (`otsu_compiled`, ...):
`numba_ready` swaps the compiled versions into this module's globals, so a kernel imported by name
elsewhere would stay the slow Python function.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch

__all__ = ["USE_NUMBA", "numba_ready", "compiled", "otsu_compiled", "mask_counts_compiled", "mask_boxes_compiled",
           "otsu_pairs_compiled"]

USE_NUMBA = True
"""Use the compiled kernels for CPU maps where numba imports; False: torch and numpy only (the
same values; tests run both paths). Set it here (`thesislib.metrics.kernels.USE_NUMBA`): every
metric reads it from this module when called."""

_KERNELS = ("_workspace", "_key_range", "_bin_indices", "_bin_counts", "_map_threshold", "_otsu_rows",
            "_box_of", "_pair_stats", "_otsu_pairs", "_mask_counts", "_mask_boxes")
_MAX_COMPILED_BINS = 2 ** 24  # bin indices pass through float32 in the kernels, exact up to here
_NUMBA_LOCK = threading.Lock()


@functools.cache
def numba_ready() -> bool:
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


def compiled(x: torch.Tensor, nbins: int = 256) -> bool:
    """Whether x (float32/float64 maps or bool masks on the CPU) goes through the compiled kernels."""
    return (USE_NUMBA and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64, torch.bool)
            and nbins <= _MAX_COMPILED_BINS and numba_ready())


def _rows(x: torch.Tensor) -> np.ndarray:
    """CPU maps [N, H, W] as a C-contiguous array [N, H * W] (no copy if already contiguous)."""
    return x.detach().reshape(len(x), -1).contiguous().numpy()


def otsu_compiled(x: torch.Tensor, nbins: int, masks: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def mask_counts_compiled(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|a and b|, |a or b|), int64 [N] each, of CPU bool masks [N, P]."""
    inter, union = np.empty(len(a), np.int64), np.empty(len(a), np.int64)
    _mask_counts(_as_uint8(a), _as_uint8(b), inter, union)
    return torch.from_numpy(inter), torch.from_numpy(union)


def mask_boxes_compiled(mask: torch.Tensor) -> torch.Tensor:
    """`localisation.boxes` of CPU bool masks [N, H, W]: int64 [N, 4]."""
    out = np.empty((len(mask), 4), np.int64)
    _mask_boxes(_as_uint8(mask), out)
    return torch.from_numpy(out)


def otsu_pairs_compiled(heatmap: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    """int64 [N, 10] of CPU maps [N, H, W] of one float dtype: |H and M|, |H or M|, the box of H, the
    box of M (x0, y0, x1, y1), with H, M the maps' Otsu foregrounds (256 bins); see `_pair_stats`."""
    a, b = _rows(heatmap), _rows(expert)
    bits = a.view(np.int32 if a.itemsize == 4 else np.int64)
    thresholds, stats = np.empty((len(a), 2), a.dtype), np.empty((len(a), 10), np.int64)
    _otsu_pairs(a, bits, b, b.view(bits.dtype), 8 * a.itemsize - 1, 256, a.dtype.type(256), heatmap.shape[2],
                thresholds, stats)
    return torch.from_numpy(stats)



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

