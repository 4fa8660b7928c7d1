"""Metrics: pure, batched torch functions (batch first); no I/O, no state.

Localisation (heatmap H vs expert map M, both [N, H, W]): Otsu binarisation with scikit-image's
`threshold_otsu` semantics, IoU by area and by bounding box, pointing game, relevance mass.
Faithfulness (model needed): Average Drop, Increase in Confidence (PROTOCOL: relative drop of the
softmax probability of the explained class when the input is multiplied by the map, under two
masking conventions: the normalised tensor x map, or the [0, 1] image x map, black outside),
deletion/insertion AUC. Classification: accuracy, ROC AUC, F1, confusion matrix.

Per-image metrics are fractions in [0, 1]; tables multiply by 100. Empty foregrounds give 0,
never NaN; callers flag them with `is_empty`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Metric", "REGISTRY", "registered", "KINDS",
    "otsu_threshold", "binarize", "is_empty", "iou_area", "boxes", "box_iou", "iou_bbox",
    "pointing_game", "relevance_mass", "CONVENTIONS", "masked_inputs", "target_confidence",
    "masked_confidence", "confidences", "average_drop", "drop_in_confidence",
    "increase_in_confidence", "deletion_insertion", "accuracy", "roc_auc", "f1_score",
    "confusion_matrix",
]


KINDS = ("localisation", "faithfulness", "classification")


@dataclass(frozen=True)
class Metric:
    """What a metric is, beside what computes it: the one place tables, figures and claims read.

    name: the column in evaluation tables (per-image values are fractions; tables show x100).
    label: how tables and figures name it. higher: True if higher is better. kind: one of KINDS.
    unit: of the table value ("%" for fractions x100).
    """

    name: str
    label: str
    higher: bool
    kind: str
    unit: str = "%"

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
    Metric("deletion_auc", "Deletion AUC", False, "faithfulness"),
    Metric("insertion_auc", "Insertion AUC", True, "faithfulness"),
    Metric("accuracy", "Acc", True, "classification"),
    Metric("roc_auc", "ROC AUC", True, "classification"),
    Metric("f1", "F1 score", True, "classification"),
)}


def registered(kind: str | None = None) -> list[Metric]:
    """The registered metrics of one kind (all if None), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    return [m for m in REGISTRY.values() if kind is None or m.kind == kind]


def _check_maps(name: str, x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"{name}: expected a batch of maps [N, H, W], found shape {tuple(x.shape)}")


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
    range is too small for `nbins` distinct bins, this returns the maximum (empty foreground).

    Args:
        x: floating [N, H, W].
    Returns:
        [N] thresholds, dtype of x; the foreground is x > threshold.
    """
    _check_maps("otsu_threshold: x", x)
    if not x.is_floating_point():
        raise TypeError(f"otsu_threshold: x: expected a floating-point tensor, found {x.dtype} "
                        "(convert integer maps first, e.g. x.float() / 255)")
    if not len(x):
        return x.new_empty(0)
    # histograms in chunks of maps that stay in the CPU's cache (the values do not depend on it)
    parts = [_histogram(c, nbins) for c in x.split(_OTSU_CHUNK)]
    counts, edges, degenerate, hi = (torch.cat(p) for p in zip(*parts))
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
    return torch.where(degenerate, hi, threshold)


_OTSU_CHUNK = 64


def _histogram(x: torch.Tensor, nbins: int) -> tuple[torch.Tensor, ...]:
    """numpy.histogram(x[i], nbins) of a few maps: (float32 counts [n, nbins], edges [n, nbins + 1],
    degenerate [n] (range too small for distinct bins), max [n])."""
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

    def edge(i: torch.Tensor) -> torch.Tensor:
        e = i.to(dt) * step[:, None] + lo[:, None]
        return torch.where(i == nbins, hi[:, None], e)

    idx -= (flat < edge(idx)).to(torch.int32)
    idx += ((flat >= edge(idx + 1)) & (idx != nbins - 1)).to(torch.int32)
    idx.clamp_(0, nbins - 1)
    rows = torch.arange(n, device=x.device, dtype=torch.int64)[:, None] * nbins
    counts = torch.bincount((idx + rows).flatten(), minlength=n * nbins).view(n, nbins)
    counts = counts.to(torch.float32)  # scikit-image casts the histogram to float32
    return counts, edges, degenerate, hi


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Otsu foreground: bool [N, H, W] = x > otsu_threshold(x)."""
    return x > otsu_threshold(x)[:, None, None]


def is_empty(mask: torch.Tensor) -> torch.Tensor:
    """bool [N]: the mask [N, H, W] has no foreground pixel."""
    return ~mask.flatten(1).any(1)


def iou_area(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a and b| / |a or b| per image; 0 where both are empty.

    Args:
        a, b: bool [N, H, W].
    Returns:
        float32 [N].
    """
    _check_maps("iou_area: a", a)
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    inter = torch.count_nonzero(a & b, dim=1).float()
    union = torch.count_nonzero(a | b, dim=1).float()
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
    rows, cols = mask.any(2), mask.any(1)  # [N, H], [N, W]
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
    ba, bb = boxes(a), boxes(b)
    iou = box_iou(ba, bb)
    empty = (ba[:, 2] == 0) | (bb[:, 2] == 0)  # an empty mask has the box (0, 0, 0, 0), any other x1 >= 1
    return torch.where(empty, torch.zeros_like(iou), iou)


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
    h = heatmap.flatten(1).float()
    total = h.sum(1)
    inside = (h * mask.flatten(1).float()).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


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
