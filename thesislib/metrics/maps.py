"""Maps: the shape checks and boolean counts that the metrics on batches of maps [N, H, W] share."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_maps", "is_empty", "count_true"]


def check_maps(name: str, x: torch.Tensor, like: torch.Tensor | None = None) -> None:
    """Raise ValueError naming `name` unless x is [N, H, W] (and of like's shape, if given)."""
    if x.dim() != 3:
        raise ValueError(f"{name}: expected a batch of maps [N, H, W], found shape {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:  # maps of another size are resized before scoring
        raise ValueError(f"{name}: expected the shape of the map it is compared with, {tuple(like.shape)} (resize "
                         f"it first, as thesislib.data resizes expert maps to the input size), found {tuple(x.shape)}")


def is_empty(mask: torch.Tensor) -> torch.Tensor:
    """bool [N]: the mask [N, H, W] has no foreground pixel."""
    return ~mask.flatten(1).any(1)


# Boolean reductions: numpy's are about 10x torch's on the CPU (torch takes a generic path for bool).
def count_true(mask: torch.Tensor) -> torch.Tensor:
    """int64 [N]: foreground pixels of each row of bool [N, P]."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(mask.numpy(), axis=1).astype(np.int64))
    return torch.count_nonzero(mask, dim=1)
