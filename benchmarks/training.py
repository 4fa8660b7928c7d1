"""Figure d: one epoch of `LagDataset.batches` against a loader that decodes and augments each JPEG."""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmarks.common import Bench, Figure, seconds
from thesislib.data import CROP_RATIO, CROP_SCALE, MEAN, ROTATION, STD, scan

BATCH = 32


class JpegFolder(Dataset):
    """What a typical project writes: open each JPEG with PIL and augment it on its own."""

    def __init__(self, records, size: int):
        self.records = records
        self.transform = v2.Compose([
            v2.ToImage(), v2.Resize(size, antialias=True),
            v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
            v2.RandomRotation(ROTATION), v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD),
        ])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        with Image.open(r.image) as im:
            x = self.transform(im.convert("RGB"))
        return x, r.label


def _epoch(batches) -> int:
    n = 0
    for batch in batches:  # (x, y) or loader()'s (x, y, index)
        n += len(batch[1])
    return n


def run(bench: Bench) -> Figure:
    train = bench.split.train
    size = train.arrays.images.shape[-1]
    names = set(train.names)
    records = [r for r in scan(bench.root) if r.name in names]
    baseline = DataLoader(JpegFolder(records, size), batch_size=BATCH, shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    tensors = train.loader(BATCH, shuffle=True, seed=0)
    gen = torch.Generator().manual_seed(0)
    repeats = 2 if bench.quick else 3
    t_jpeg, n = seconds(lambda: _epoch(baseline), repeats)
    t_tensor, _ = seconds(lambda: _epoch(tensors), repeats)
    t_ours, _ = seconds(lambda: _epoch(train.batches(BATCH, generator=gen, device=bench.device)), repeats,
                        warmup=True)
    return Figure("training input", t_jpeg / t_ours, f"one epoch of {n} images {size} px, batch {BATCH}: "
                  f"PIL decode + per-sample augmentation {t_jpeg * 1e3:.0f} ms, cached uint8 + per-sample "
                  f"augmentation (loader()) {t_tensor * 1e3:.0f} ms, batches() on {bench.device.type} "
                  f"{t_ours * 1e3:.0f} ms")
