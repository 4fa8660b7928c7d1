"""Decoded arrays and their cache: `load_arrays` decodes each pair once per input size (`Arrays`).

The decoded set is kept in memory and in a disk cache keyed by the data's content hash and the
size, so epochs and later runs do not re-decode.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from thesislib.atomic import atomic_save
from thesislib.data.folder import DataError, Record, fingerprint, scan
from thesislib.data.reading import UnreadableFile, map_geometry, read

__all__ = ["Arrays", "load_arrays", "decode", "MEMORY"]


@dataclass
class Arrays:
    """A decoded data set at one input size.

    images: uint8 [N, 3, S, S]; maps: uint8 [N, S, S]; labels: int64 [N]; names: N strings.
    skipped: pairs left out because a file was unreadable (only with skip_corrupt);
    map_other_size / map_other_aspect: pairs whose map has another size / aspect ratio than its
    image (the PROTOCOL: both are resized to the input size, and counted).
    """

    images: torch.Tensor
    maps: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    fingerprint: str
    skipped: list[str] = field(default_factory=list)
    map_other_size: list[str] = field(default_factory=list)
    map_other_aspect: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def blank_maps(self) -> torch.Tensor:
        """bool [N]: the attention map is constant (no expert attention to score against)."""
        flat = self.maps.flatten(1)
        return flat.amax(1) == flat.amin(1)


def decode(path: Path, mode: str, size: int) -> torch.Tensor:
    """Decode with Pillow (`read`; torchvision's decoders are deprecated), resize with torchvision
    (antialiased): "RGB" -> uint8 [3, size, size], "L" -> uint8 [1, size, size]."""
    arr = read(path, "image" if mode == "RGB" else "map")
    img = torch.from_numpy(arr.copy())
    img = img.permute(2, 0, 1) if img.dim() == 3 else img[None]
    return TF.resize(img, [size, size], antialias=True)


MEMORY: dict[tuple[str, int], Arrays] = {}  # (fingerprint, size) -> the decoded set, per process


def load_arrays(root: str | os.PathLike, size: int, cache_dir: str | os.PathLike | None = None, *,
                skip_corrupt: bool = False) -> Arrays:
    """Decode a LAG-layout folder at `size` x `size`, once per process and once per disk cache.

    Args:
        root: data folder in the LAG layout.
        size: input side in pixels.
        cache_dir: folder for the decoded-tensor cache; None keeps it in memory only.
        skip_corrupt: leave out pairs with an unreadable file, with a warning (they are listed in
            `Arrays.skipped`); default: an unreadable file is an error.

    Raises:
        DataError: see `scan` and `read` (an unreadable file, a photo that is not RGB, a map that
            is not grayscale).
    """
    records = scan(root)
    fp = fingerprint(records)
    key = (fp, size)
    arrays = MEMORY.get(key)
    path = Path(cache_dir) / f"lag-{fp}-{size}.pt" if cache_dir is not None else None
    if arrays is None and path is not None and path.is_file():
        blob = torch.load(path, weights_only=True)
        arrays = Arrays(blob["images"], blob["maps"], blob["labels"], list(blob["names"]), fp,
                        skipped=list(blob.get("skipped", [])))
        if "map_other_size" in blob:
            arrays.map_other_size, arrays.map_other_aspect = list(blob["map_other_size"]), list(blob["map_other_aspect"])
        else:  # a cache written before these were recorded
            kept = set(arrays.names)
            geometry = {r.name: map_geometry(r) for r in records if r.name in kept}
            arrays.map_other_size = [n for n, g in geometry.items() if g[0]]
            arrays.map_other_aspect = [n for n, g in geometry.items() if g[1]]
    # a set decoded with unreadable pairs left out serves only callers that leave them out
    if arrays is None or (arrays.skipped and not skip_corrupt):
        arrays = _decode_records(records, size, fp, skip_corrupt, Path(root))
        if path is not None:
            atomic_save(dict(images=arrays.images, maps=arrays.maps, labels=arrays.labels, names=arrays.names,
                             skipped=arrays.skipped, map_other_size=arrays.map_other_size,
                             map_other_aspect=arrays.map_other_aspect), path)
    MEMORY[key] = arrays
    return arrays


def _decode_records(records: list[Record], size: int, fp: str, skip_corrupt: bool, root: Path) -> Arrays:
    """Decode every pair at `size` (see `load_arrays`)."""
    images, maps, kept, skipped = [], [], [], []
    for r in records:
        try:
            pair = decode(r.image, "RGB", size), decode(r.map, "L", size)[0]
        except UnreadableFile:
            if not skip_corrupt:
                raise
            skipped.append(r.name)
            continue
        images.append(pair[0])
        maps.append(pair[1])
        kept.append(r)
    if skipped:
        warnings.warn(f"{root}: left out {len(skipped)} image/map pairs with an unreadable file (skip_corrupt): "
                      + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""), stacklevel=3)
    if not kept:
        raise DataError(f"{root}: no readable image/map pairs ({len(skipped)} unreadable left out); "
                        "expected readable JPEG or PNG files")
    geometry = [map_geometry(r) for r in kept]
    return Arrays(torch.stack(images), torch.stack(maps), torch.tensor([r.label for r in kept], dtype=torch.int64),
                  [r.name for r in kept], fp, skipped=skipped,
                  map_other_size=[r.name for r, g in zip(kept, geometry) if g[0]],
                  map_other_aspect=[r.name for r, g in zip(kept, geometry) if g[1]])
