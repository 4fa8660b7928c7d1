"""Data: reads the LAG layout (real or synthetic), splits it, caches decoded tensors, augments.

Each JPEG is decoded once, resized to the input size and kept as uint8 tensors, in memory and in
a disk cache keyed by the data's content hash and the size, so epochs and later runs do not
re-decode. Training samples get the PROTOCOL's augmentation (random crop, rotation, horizontal
flip, normalisation); evaluation samples only the normalisation. Attention maps are resized to
the input size and scaled to [0, 1].

Bad input fails early with a `DataError` naming the file, what was found and what was expected:
a folder not in the LAG layout, an image without its map, an unreadable file (or, with
`skip_corrupt`, it is left out and counted), a photo that is not 8-bit RGB, a map that is not 8-bit
grayscale, a class too small for three splits. `scan` and `check` need no torch: torch is imported
on first use, so `thesislib check-data` answers at once.

`LagDataset.batches` is the fast path: the split's uint8 images stay on the device and each batch
is augmented at once, one affine sampling grid per image, with parameters drawn on the CPU from
the caller's generator (same seed, same batches on any device). `__getitem__`/`loader` augment
sample by sample with torchvision and remain for the figures and as the benchmark's baseline.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from thesislib.atomic import atomic_save
from thesislib.layout import CLASSES, IMAGE_DIR, IMAGE_SUFFIXES, MAP_DIR


class _LazyModule:
    """A module imported on its first attribute access, which then takes the proxy's place here.

    Scanning and checking a data folder needs no torch (`thesislib check-data` answers in a
    fraction of a second); decoding, splitting and augmenting import it when they first use it.
    """

    def __init__(self, name: str, alias: str):
        self._name, self._alias = name, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        globals()[self._alias] = module
        return getattr(module, attr)


if TYPE_CHECKING:
    import pandas as pd
    import torch
    import torch.nn.functional as F
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    from thesislib.synth import SynthSpec
else:
    torch = _LazyModule("torch", "torch")
    F = _LazyModule("torch.nn.functional", "F")
    v2 = _LazyModule("torchvision.transforms.v2", "v2")
    TF = _LazyModule("torchvision.transforms.v2.functional", "TF")

__all__ = [
    "DataError", "UnreadableFile", "Record", "Arrays", "Split", "scan", "check", "DataCheck", "fingerprint", "load_arrays",
    "stratified_split", "stratified_fraction", "LagDataset", "load_split", "resolve_root", "SPLITS", "THESIS_FRACTIONS",
    "MEAN", "STD", "normalize", "denormalize", "Augmentation", "augment",
]

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as torchvision's models expect
STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")
# The PROTOCOL's training augmentation, shared by train_transform and Augmentation.
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1.1)
ROTATION = 15.0
# The thesis's Table 4.1: 4,793 train, 159 validation, 1,415 test images.
THESIS_FRACTIONS = (4793 / 6367, 159 / 6367, 1415 / 6367)
DEFAULT_SYNTH = dict(n=1000, size=128, seed=0)  # the embedded default data set


class DataError(ValueError):
    """A data folder that cannot be read as the LAG layout; the message says what and where."""


class UnreadableFile(DataError):
    """An image or attention map that Pillow cannot decode (corrupt, truncated, not an image)."""


@dataclass(frozen=True)
class Record:
    name: str
    label: int
    image: Path
    map: Path


def scan(root: str | os.PathLike) -> list[Record]:
    """List the image/map pairs of a LAG-layout folder, sorted by class then file name.

    Raises:
        DataError: the folder is missing, a class or sub-folder is missing, a class holds no
            images, or an image has no attention map (or a map no image).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found (expected a folder in the LAG layout "
                        f"{{{','.join(CLASSES)}}}/{{{IMAGE_DIR},{MAP_DIR}}}/NNNN.jpg)")
    expected = [f"{c}/{d}" for c in CLASSES for d in (IMAGE_DIR, MAP_DIR)]
    missing = [e for e in expected if not (root / e).is_dir()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise DataError(f"{root}: not in the LAG layout; missing folders {', '.join(missing)} "
                        f"(expected {', '.join(expected)}; found folders: {', '.join(found) or 'none'})")
    records = []
    for label, cls in enumerate(CLASSES):
        images = {p.name: p for p in (root / cls / IMAGE_DIR).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        maps = {p.name: p for p in (root / cls / MAP_DIR).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        if not images:
            others = sum(1 for p in (root / cls / IMAGE_DIR).iterdir() if not p.name.startswith("."))
            raise DataError(f"{root / cls / IMAGE_DIR}: no images in class {cls} (expected "
                            f"{', '.join(IMAGE_SUFFIXES)} files; found {others or 'no'} other files)")
        lonely = sorted(set(images) - set(maps))
        if lonely:
            more = f" and {len(lonely) - 1} more" if len(lonely) > 1 else ""
            raise DataError(f"{root / cls / IMAGE_DIR / lonely[0]}: image without its attention map "
                            f"(expected {root / cls / MAP_DIR / lonely[0]}){more}")
        orphans = sorted(set(maps) - set(images))
        if orphans:
            more = f" and {len(orphans) - 1} more" if len(orphans) > 1 else ""
            raise DataError(f"{root / cls / MAP_DIR / orphans[0]}: attention map without its image "
                            f"(expected {root / cls / IMAGE_DIR / orphans[0]}){more}")
        records += [Record(f"{cls}/{n}", label, images[n], maps[n]) for n in sorted(images)]
    return records


_FINGERPRINTS: dict[tuple, str] = {}


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def fingerprint(records: list[Record]) -> str:
    """Content hash of a data set: names, labels and the bytes of every image and map.

    Memoised per process on the files' sizes and modification times.
    """
    stats = tuple((r.name, r.label) + _stat(r.image) + _stat(r.map) for r in records)
    if stats in _FINGERPRINTS:
        return _FINGERPRINTS[stats]
    h = hashlib.blake2b(digest_size=16)
    for r in records:
        h.update(f"{r.name}\0{r.label}\0".encode())
        h.update(r.image.read_bytes())
        h.update(r.map.read_bytes())
    _FINGERPRINTS[stats] = h.hexdigest()
    return _FINGERPRINTS[stats]


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


# Pillow modes: what a photo or map in another mode is, for the error message
_MODES = {"1": "1-bit black and white", "L": "grayscale", "LA": "grayscale with an alpha channel",
          "P": "a palette image", "PA": "a palette image with an alpha channel", "RGB": "in colour (RGB)",
          "RGBA": "RGB with an alpha channel", "RGBa": "RGB with an alpha channel", "CMYK": "CMYK",
          "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV", "I": "32-bit integer", "F": "32-bit floating point",
          "I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit"}
GRAY_RGB_TOLERANCE = 8  # an RGB map whose channels differ by at most this is a grayscale map saved as RGB
ASPECT_TOLERANCE = 0.02  # image and map aspect ratios that differ by more than this are counted


def _read(path: Path, kind: str, *, draft: bool = False) -> np.ndarray:
    """Decode one file with Pillow: a photo to uint8 [H, W, 3], an attention map to uint8 [H, W].

    Args:
        path: the file.
        kind: "image" (8-bit RGB only) or "map" (8-bit grayscale; an RGB file whose channels agree
            within GRAY_RGB_TOLERANCE is read as grayscale).
        draft: let a JPEG decode at 1/8 scale (checks that the file reads, faster; the pixels are
            then not the file's full resolution).

    Raises:
        UnreadableFile: Pillow cannot decode the file (corrupt, truncated, not an image).
        DataError: the file decodes, but it is not 8-bit RGB (a photo) or 8-bit grayscale (a map).
    """
    what = "image" if kind == "image" else "attention map"
    allowed = ("RGB",) if kind == "image" else ("L", "RGB")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in allowed:
                if draft:
                    im.draft(mode, (max(1, im.width // 8), max(1, im.height // 8)))
                arr = np.asarray(im)
                if arr.ndim == 3 and kind == "map":
                    spread = int((arr.max(2).astype(np.int16) - arr.min(2)).max()) if arr.size else 0
                    if spread > GRAY_RGB_TOLERANCE:
                        raise DataError(f"{path}: attention map is in colour (its RGB channels differ by up to "
                                        f"{spread} grey levels); expected an 8-bit grayscale map (Pillow mode L)")
                    arr = np.asarray(im.convert("L"))
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise UnreadableFile(f"{path}: cannot decode the {what} ({err}); expected a readable JPEG or PNG "
                             "(re-export it, or set skip_corrupt to leave unreadable pairs out)") from None
    if mode not in allowed:
        found = _MODES.get(mode, f"in Pillow mode {mode}")
        expected = "an 8-bit RGB photo" if kind == "image" else "an 8-bit grayscale map"
        raise DataError(f"{path}: {what} is {found} (Pillow mode {mode}); expected {expected}")
    return arr


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it."""
    with Image.open(path) as im:
        return im.size


def _map_geometry(record: Record) -> tuple[bool, bool]:
    """(the map has another size than its image, another aspect ratio beyond ASPECT_TOLERANCE)."""
    (wi, hi), (wm, hm) = _size(record.image), _size(record.map)
    return (wi, hi) != (wm, hm), abs(math.log((wi / hi) / (wm / hm))) > math.log1p(ASPECT_TOLERANCE)


def _decode(path: Path, mode: str, size: int) -> torch.Tensor:
    """Decode with Pillow (`_read`; torchvision's decoders are deprecated), resize with torchvision
    (antialiased): "RGB" -> uint8 [3, size, size], "L" -> uint8 [1, size, size]."""
    arr = _read(path, "image" if mode == "RGB" else "map")
    img = torch.from_numpy(arr.copy())
    img = img.permute(2, 0, 1) if img.dim() == 3 else img[None]
    return TF.resize(img, [size, size], antialias=True)


def _check_counts(counts: dict[str, int], where: str, skipped: int = 0) -> None:
    """Every class needs one pair for each of train, val and test."""
    for cls, n in counts.items():
        if n < len(SPLITS):
            left_out = f" ({skipped} unreadable pairs left out)" if skipped else ""
            raise DataError(f"{where}: class {cls} has {n} readable image/map pairs{left_out}; expected at least "
                            f"{len(SPLITS)}, one each for {', '.join(SPLITS)} (an empty split cannot be scored)")


_MEMORY: dict[tuple[str, int], Arrays] = {}


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
        DataError: see `scan` and `_read` (an unreadable file, a photo that is not RGB, a map that
            is not grayscale).
    """
    records = scan(root)
    fp = fingerprint(records)
    key = (fp, size)
    arrays = _MEMORY.get(key)
    path = Path(cache_dir) / f"lag-{fp}-{size}.pt" if cache_dir is not None else None
    if arrays is None and path is not None and path.is_file():
        blob = torch.load(path, weights_only=True)
        arrays = Arrays(blob["images"], blob["maps"], blob["labels"], list(blob["names"]), fp,
                        skipped=list(blob.get("skipped", [])))
        if "map_other_size" in blob:
            arrays.map_other_size, arrays.map_other_aspect = list(blob["map_other_size"]), list(blob["map_other_aspect"])
        else:  # a cache written before these were recorded
            kept = set(arrays.names)
            geometry = {r.name: _map_geometry(r) for r in records if r.name in kept}
            arrays.map_other_size = [n for n, g in geometry.items() if g[0]]
            arrays.map_other_aspect = [n for n, g in geometry.items() if g[1]]
    # a set decoded with unreadable pairs left out serves only callers that leave them out
    if arrays is None or (arrays.skipped and not skip_corrupt):
        arrays = _decode_records(records, size, fp, skip_corrupt, Path(root))
        if path is not None:
            atomic_save(dict(images=arrays.images, maps=arrays.maps, labels=arrays.labels, names=arrays.names,
                             skipped=arrays.skipped, map_other_size=arrays.map_other_size,
                             map_other_aspect=arrays.map_other_aspect), path)
    _MEMORY[key] = arrays
    return arrays


def _decode_records(records: list[Record], size: int, fp: str, skip_corrupt: bool, root: Path) -> Arrays:
    """Decode every pair at `size` (see `load_arrays`)."""
    images, maps, kept, skipped = [], [], [], []
    for r in records:
        try:
            pair = _decode(r.image, "RGB", size), _decode(r.map, "L", size)[0]
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
    geometry = [_map_geometry(r) for r in kept]
    return Arrays(torch.stack(images), torch.stack(maps), torch.tensor([r.label for r in kept], dtype=torch.int64),
                  [r.name for r in kept], fp, skipped=skipped,
                  map_other_size=[r.name for r, g in zip(kept, geometry) if g[0]],
                  map_other_aspect=[r.name for r, g in zip(kept, geometry) if g[1]])


@dataclass
class DataCheck:
    """What `check` found in a data folder: readable pairs per class and what the PROTOCOL counts."""

    root: Path
    counts: dict[str, int]
    skipped: list[str]
    blank_maps: list[str]
    map_other_size: list[str]
    map_other_aspect: list[str]

    def __str__(self) -> str:
        total = sum(self.counts.values())
        lines = [f"{self.root}: LAG layout, {total} image/map pairs ("
                 + ", ".join(f"{c}: {n}" for c, n in self.counts.items()) + ")"]
        if self.skipped:
            lines.append(f"  left out {len(self.skipped)} pairs with an unreadable file: {_some(self.skipped)}")
        lines.append(f"  blank (constant) attention maps: {len(self.blank_maps)}"
                     + (f" ({_some(self.blank_maps)}; scored 0 on every localisation metric)" if self.blank_maps else ""))
        lines.append(f"  maps of another size than their image: {len(self.map_other_size)} (resized with it to "
                     f"the input size); of another aspect ratio: {len(self.map_other_aspect)}"
                     + (f" ({_some(self.map_other_aspect)})" if self.map_other_aspect else ""))
        return "\n".join(lines)


def _some(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def check(root: str | os.PathLike, *, skip_corrupt: bool = False) -> DataCheck:
    """Read every file of a LAG-layout folder as `load_arrays` would (without torch), and count.

    Photos are decoded at reduced scale where the format allows it (a check, not a decode for
    training), maps in full.

    Args:
        root: data folder.
        skip_corrupt: count unreadable pairs instead of failing on the first one.

    Raises:
        DataError: as `load_arrays`, and a class with fewer readable pairs than splits.
    """
    root = Path(root)
    records = scan(root)
    counts = {c: 0 for c in CLASSES}
    skipped, blank, other_size, other_aspect = [], [], [], []
    for r in records:
        try:
            _read(r.image, "image", draft=True)
            m = _read(r.map, "map")
        except UnreadableFile:
            if not skip_corrupt:
                raise
            skipped.append(r.name)
            continue
        counts[CLASSES[r.label]] += 1
        if m.size and m.max() == m.min():
            blank.append(r.name)
        size, aspect = _map_geometry(r)
        other_size += [r.name] if size else []
        other_aspect += [r.name] if aspect else []
    _check_counts(counts, str(root), len(skipped))
    return DataCheck(root, counts, skipped, blank, other_size, other_aspect)


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


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] (or [3, H, W]) -> float32 normalised with MEAN and STD."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), MEAN, STD)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize`, to float [0, 1] for display."""
    mean = torch.tensor(MEAN, device=x.device).view(-1, 1, 1)
    std = torch.tensor(STD, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def train_transform(size: int) -> v2.Compose:
    """The PROTOCOL's training augmentation on uint8 tensors."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.RandomRotation(ROTATION),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])


@dataclass(frozen=True)
class Augmentation:
    """Per-image parameters of the PROTOCOL's training augmentation, float32 / bool [B] on the CPU.

    In grid_sample's normalised coordinates ([-1, 1] across the image): the crop spans
    `crop_w` x `crop_h` of the side (fractions in (0, 1]) centred at (`cx`, `cy`); the crop is then
    rotated by `angle` degrees counter-clockwise (corners filled black, as torchvision's
    RandomRotation does) and mirrored left-right where `flip`.
    """

    crop_w: torch.Tensor
    crop_h: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    angle: torch.Tensor
    flip: torch.Tensor

    def __len__(self) -> int:
        return len(self.angle)

    @classmethod
    def draw(cls, n: int, generator: torch.Generator) -> "Augmentation":
        """Draw `n` parameter sets from `generator` (a CPU generator), with torchvision's ranges.

        Crop area fraction ~ U(CROP_SCALE), log aspect ratio ~ U(log CROP_RATIO), redrawn (as
        RandomResizedCrop does) where a side would exceed the image; centre uniform over the
        positions that keep the crop inside; angle ~ U(-ROTATION, ROTATION); flip ~ Bernoulli(0.5).
        """
        if generator.device.type != "cpu":
            raise ValueError(f"generator: expected a CPU torch.Generator (parameters are drawn on the CPU so "
                             f"that batches do not depend on the device), found one on {generator.device}")

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        w = torch.ones(n)
        h = torch.ones(n)
        todo = torch.ones(n, dtype=torch.bool)
        for _ in range(10):  # RandomResizedCrop's attempts; the rest keep the full image, as its fallback does
            area = uniform(*CROP_SCALE)
            ratio = torch.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
            cw, ch = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
            ok = todo & (cw <= 1) & (ch <= 1)
            w, h = torch.where(ok, cw, w), torch.where(ok, ch, h)
            todo &= ~ok
            if not todo.any():
                break
        cx = (1 - w) * uniform(-1.0, 1.0)
        cy = (1 - h) * uniform(-1.0, 1.0)
        angle = uniform(-ROTATION, ROTATION)
        flip = torch.rand(n, generator=generator) < 0.5
        return cls(w, h, cx, cy, angle, flip)

    @classmethod
    def identity(cls, n: int) -> "Augmentation":
        """Parameters that leave `n` images unchanged."""
        zeros = torch.zeros(n)
        return cls(torch.ones(n), torch.ones(n), zeros, zeros.clone(), zeros.clone(), torch.zeros(n, dtype=torch.bool))


def augment(images: torch.Tensor, params: Augmentation) -> torch.Tensor:
    """Augment a batch at once: one affine sampling grid per image, bilinear, on the images' device.

    Args:
        images: uint8 [B, 3, S, S], on any device.
        params: B parameter sets (`Augmentation.draw`).

    Returns:
        float32 [B, 3, S, S] normalised with MEAN and STD, on the images' device.
    """
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images: expected uint8 [B, 3, S, S], found {images.dtype} {tuple(images.shape)}")
    if len(params) != len(images):
        raise ValueError(f"params: expected {len(images)} parameter sets (one per image), found {len(params)}")
    dev = images.device
    b, _, hgt, wid = images.shape
    p = {k: getattr(params, k).to(dev) for k in ("crop_w", "crop_h", "cx", "cy", "angle")}
    sign = 1.0 - 2.0 * params.flip.to(dev, torch.float32)
    rad = torch.deg2rad(p["angle"])
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Output pixel o -> (flip) -> inverse rotation -> crop coordinates c in [-1, 1] where the
    # rotated crop has content; torchvision rotates counter-clockwise on screen (y points down).
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos * sign, -sin, zeros], 1),
                         torch.stack([sin * sign, cos, zeros], 1)], 1)
    crop = F.affine_grid(theta, [b, 1, hgt, wid], align_corners=False)  # [B, S, S, 2]
    inside = (crop.abs() <= 1).all(-1)[:, None]  # RandomRotation fills the corners with black
    centre = torch.stack([p["cx"], p["cy"]], 1)[:, None, None, :]
    half = torch.stack([p["crop_w"], p["crop_h"]], 1)[:, None, None, :]
    grid = centre + half * crop
    x = F.grid_sample(images.to(torch.float32) / 255.0, grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False)
    x = x * inside
    mean = torch.tensor(MEAN, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, -1, 1, 1)
    return (x - mean) / std


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
               workers: int = 0) -> "torch.utils.data.DataLoader":
        """A DataLoader whose order depends only on `seed`."""
        gen = torch.Generator().manual_seed(seed)
        from torch.utils.data import DataLoader

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
        import pandas as pd

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
    _check_counts({c: int((arrays.labels == i).sum()) for i, c in enumerate(CLASSES)}, str(root), len(arrays.skipped))
    parts = stratified_split(arrays.labels, tuple(fractions), split_seed)
    train = parts["train"]
    if train_fraction != 1:
        train = train[stratified_fraction(arrays.labels[train], train_fraction, split_seed)]
    return Split(LagDataset(arrays, train, train=True), LagDataset(arrays, parts["val"]),
                 LagDataset(arrays, parts["test"]))


def resolve_root(data: str | os.PathLike | None = None) -> Path:
    """The data folder to use.

    Args:
        data: a LAG-layout folder; or a synthetic set named "synthetic" or
            "synthetic-n400-s96-seed1[-label_noise0.1][-spurious0.9]..." (n images, s pixels, and
            any other SynthSpec field by name), generated under <project>/data on first use; or
            None: $THESISLIB_DATA if set, else the embedded synthetic set (1,000 images, 128 px).
    """
    if data is None or str(data) == "":
        data = os.environ.get("THESISLIB_DATA") or "synthetic"
    text = os.path.expandvars(str(data))
    if "$" in text:
        raise DataError(f"data: {str(data)!r} names an environment variable that is not set; "
                        "pass --data DIR or set it (e.g. THESISLIB_DATA=/path/to/LAG)")
    if not text.startswith("synthetic"):
        return Path(text).expanduser().resolve()
    from thesislib.paths import data_dir
    from thesislib.synth import synthesize

    spec = synth_spec(text)
    root = data_dir() / synth_name(spec)
    if not root.is_dir():
        synthesize(root, spec)
    return root


_SHORT = {"n": "n", "s": "size"}


def synth_spec(text: str) -> "SynthSpec":
    """"synthetic-n240-s64-label_noise0.2" -> SynthSpec(n=240, size=64, label_noise=0.2, ...)."""
    import re
    from dataclasses import fields as dc_fields

    from thesislib.synth import SynthSpec

    names = {f.name for f in dc_fields(SynthSpec)}
    parts = text.split("-")
    if parts[0] != "synthetic":
        raise DataError(f"data: expected a folder or 'synthetic[-n<images>-s<pixels>-seed<k>...]', found {text!r}")
    values: dict = dict(DEFAULT_SYNTH)
    given: set[str] = set()
    for token in parts[1:]:
        m = re.fullmatch(r"([a-z_]+)([0-9][0-9.e+]*)", token)
        key = _SHORT.get(m.group(1), m.group(1)) if m else None
        if key not in names:
            raise DataError(f"data: {text!r}: cannot read {token!r}; expected n<images>, s<pixels> or a SynthSpec "
                            f"field followed by its value ({', '.join(sorted(names))}), e.g. spurious0.95")
        if key in given:
            raise DataError(f"data: {text!r}: {key} is given twice; expected each field once")
        given.add(key)
        whole = key in ("n", "size", "seed", "map_size", "quality")
        try:
            values[key] = int(m.group(2)) if whole else float(m.group(2))
        except ValueError:
            raise DataError(f"data: {text!r}: cannot read {m.group(2)!r} as the value of {key}; expected "
                            f"{'a whole number' if whole else 'a number'} after {m.group(1)!r}") from None
    try:
        return SynthSpec(**values)
    except ValueError as err:
        raise DataError(f"data: {text!r}: {err}") from None


def synth_name(spec: "SynthSpec") -> str:
    """The canonical name of a synthetic set (also its folder name under <project>/data)."""
    from thesislib.synth import SynthSpec

    defaults = SynthSpec()
    extra = "".join(f"-{k}{v}" for k, v in sorted(vars(spec).items())
                    if k not in ("n", "size", "seed") and v != getattr(defaults, k))
    return f"synthetic-n{spec.n}-s{spec.size}-seed{spec.seed}{extra}"
