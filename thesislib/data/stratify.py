"""Seeded stratified splits: `stratified_split` (train/val/test), `stratified_fraction` (a share).

Both are seeded with the split seed, independent of the training seed, so every training seed
shares one split and one training subset.
"""

from __future__ import annotations

import torch

from thesislib.data.folder import SPLITS, DataError
from thesislib.layout import CLASSES

__all__ = ["stratified_split", "stratified_fraction", "THESIS_FRACTIONS"]

# The thesis's Table 4.1: 4,793 train, 159 validation, 1,415 test images.
THESIS_FRACTIONS = (4793 / 6367, 159 / 6367, 1415 / 6367)


def stratified_split(labels: torch.Tensor, fractions: tuple[float, float, float], seed: int) -> dict[str, torch.Tensor]:
    """Seeded stratified split into train/val/test indices.

    Args:
        labels: int64 [N].
        fractions: (train, val, test), each > 0, summing to 1.
        seed: split seed (independent of the training seed, so all seeds share one split).

    Returns:
        {"train": LongTensor, "val": ..., "test": ...}, each sorted, disjoint, covering all N.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions: expected three positive numbers (train, val, test) summing to 1, found {fractions!r}")
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = max(1, round(fractions[1] * len(idx)))
        n_test = max(1, round(fractions[2] * len(idx)))
        n_train = len(idx) - n_val - n_test
        if n_train < 1:
            name = CLASSES[cls] if 0 <= cls < len(CLASSES) else cls
            raise DataError(f"split: class {name} has {len(idx)} images, which leaves the training split empty "
                            f"with fractions {tuple(round(f, 4) for f in fractions)}; expected at least "
                            f"{n_val + n_test + 1} images of each class")
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {s: torch.sort(torch.cat(p)).values for s, p in parts.items()}


def stratified_fraction(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A seeded, stratified share of a split: positions of round(fraction * n_c) items of each class c
    (at least one).

    The items of each class are drawn in one seeded order and the first ones kept, so for one seed
    a smaller fraction's subset lies inside every larger fraction's.

    Args:
        labels: int64 [N], the split's labels.
        fraction: in (0, 1]; 1 keeps every position.
        seed: the draw's seed (the split seed: every training seed shares the subset).

    Returns:
        Sorted int64 positions into `labels`.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"train_fraction: expected a number in (0, 1], found {fraction!r}")
    if fraction == 1:
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    kept = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        kept.append(members[:max(1, round(fraction * len(members)))])
    return torch.sort(torch.cat(kept)).values
