"""The dataset classes: `LagDataset` (one split), `Split` (the three), and `load_split`.

`load_split` decodes a folder (`load_arrays`) and splits it (`stratified_split`, and
`stratified_fraction` for a share of the training split).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from thesislib.data.decoded import Arrays, load_arrays
from thesislib.data.folder import SPLITS, check_counts
from thesislib.data.stratify import THESIS_FRACTIONS, stratified_fraction, stratified_split
from thesislib.data.transforms import Augmentation, augment, normalize, train_transform
from thesislib.layout import CLASSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LagDataset", "Split", "load_split"]


class LagDataset:
    """One split of a decoded data set. Items are (image float [3, S, S], label, index); a map-style
    dataset for torch's DataLoader."""

    def __init__(self, arrays: Arrays, indices: torch.Tensor, train: bool = False):
        self.arrays = arrays
        self.indices = indices
        self.train = train
        self.transform = train_transform(arrays.images.shape[-1]) if train else None
        self._resident: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        img = self.arrays.images[j]
        x = self.transform(img) if self.train else normalize(img)
        return x, self.arrays.labels[j], i

    @property
    def labels(self) -> torch.Tensor:
        return self.arrays.labels[self.indices]

    @property
    def names(self) -> list[str]:
        return [self.arrays.names[int(j)] for j in self.indices]

    def batch(self, rows: torch.Tensor | slice | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Evaluation tensors for `rows` of this split, without augmentation.

        Returns:
            (images float [B, 3, S, S] normalised, labels int64 [B], maps float [B, S, S] in [0, 1]).
        """
        idx = self.indices if rows is None else self.indices[rows]
        maps = self.arrays.maps[idx].to(torch.float32) / 255.0
        return normalize(self.arrays.images[idx]), self.arrays.labels[idx], maps

    def resident(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """This split's (uint8 images [N, 3, S, S], int64 labels [N]) on `device`, copied there once."""
        dev = torch.device("cpu" if device is None else device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev not in self._resident:
            self._resident[dev] = (self.arrays.images[self.indices].to(dev), self.arrays.labels[self.indices].to(dev))
        return self._resident[dev]

    def batches(self, batch_size: int, *, generator: torch.Generator, device=None,
                shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of batches built on `device` from the device-resident uint8 images.

        A training split (train=True) is augmented a whole batch at a time (`augment`); any other
        split gives exactly `batch()`'s images. The order and the augmentation parameters come
        from `generator` (on the CPU), so one seed gives the same batches on every device. The
        last batch may be smaller.

        Args:
            batch_size: images per batch, >= 1.
            generator: CPU torch.Generator, advanced by the epoch.
            device: where the batches live (None: the CPU).
            shuffle: random order from `generator`; False keeps the split's order.

        Yields:
            (x float32 [B, 3, S, S] normalised, y int64 [B]), both on `device`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, found {batch_size!r}")
        images, labels = self.resident(device)
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            idx = rows.to(images.device)
            raw = images[idx]
            x = augment(raw, Augmentation.draw(len(rows), generator)) if self.train else normalize(raw)
            yield x, labels[idx]

    def loader(self, batch_size: int, *, shuffle: bool, seed: int = 0,
               workers: int = 0) -> DataLoader:
        """A DataLoader whose order depends only on `seed`."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, generator=gen,
                          num_workers=workers, drop_last=False, persistent_workers=workers > 0)


@dataclass
class Split:
    """The three datasets of one split of one data set."""

    train: LagDataset
    val: LagDataset
    test: LagDataset

    def __getitem__(self, name: str) -> LagDataset:
        if name not in SPLITS:
            raise KeyError(f"split: expected one of {', '.join(SPLITS)}, found {name!r}")
        return getattr(self, name)

    def describe(self) -> "pd.DataFrame":
        """Images per split and class, and per split what the PROTOCOL counts: blank (constant)
        attention maps, and maps of another aspect ratio than their image; a last row counts
        the pairs left out as unreadable (skip_corrupt), where there are any."""
        import pandas as pd  # here, not at the top: pandas is slow to import and only this table needs it

        arrays = self.train.arrays
        blank, aspect = arrays.blank_maps(), set(arrays.map_other_aspect)
        rows = {}
        for s in SPLITS:
            idx = self[s].indices
            rows[s] = {c: int((self[s].labels == i).sum()) for i, c in enumerate(CLASSES)}
            rows[s]["blank maps"] = int(blank[idx].sum())
            rows[s]["maps of another aspect"] = sum(arrays.names[int(j)] in aspect for j in idx)
        df = pd.DataFrame(rows).T
        df.insert(len(CLASSES), "total", df[list(CLASSES)].sum(axis=1))
        if arrays.skipped:
            left_out = {c: sum(n.split("/")[0] == c for n in arrays.skipped) for c in CLASSES}
            df.loc["left out (unreadable)"] = {**left_out, "total": len(arrays.skipped), "blank maps": 0,
                                               "maps of another aspect": 0}
        return df


def load_split(root: str | os.PathLike, size: int, *, fractions=(0.6, 0.2, 0.2), split_seed: int = 0,
               cache_dir: str | os.PathLike | None = None, train_fraction: float = 1.0,
               skip_corrupt: bool = False) -> Split:
    """Decode `root` at `size` and split it (see `stratified_split`); `fractions="thesis"` mimics Table 4.1.

    With `skip_corrupt`, pairs with an unreadable file are left out (see `load_arrays`).

    With `train_fraction` < 1 the training split keeps only that share of its images
    (`stratified_fraction`, seeded with `split_seed`); validation and test are unchanged.
    """
    if fractions == "thesis":
        fractions = THESIS_FRACTIONS
    arrays = load_arrays(root, size, cache_dir, skip_corrupt=skip_corrupt)
    check_counts({c: int((arrays.labels == i).sum()) for i, c in enumerate(CLASSES)}, str(root), len(arrays.skipped))
    parts = stratified_split(arrays.labels, tuple(fractions), split_seed)
    train = parts["train"]
    if train_fraction != 1:
        train = train[stratified_fraction(arrays.labels[train], train_fraction, split_seed)]
    return Split(LagDataset(arrays, train, train=True), LagDataset(arrays, parts["val"]),
                 LagDataset(arrays, parts["test"]))
