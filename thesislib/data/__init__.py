"""Data: reads the LAG layout (real or synthetic), splits it, caches decoded tensors, augments.

Each JPEG is decoded once, resized to the input size and kept as uint8 tensors, in memory and in
a disk cache keyed by the data's content hash and the size, so epochs and later runs do not
re-decode. Training samples get the PROTOCOL's augmentation (random crop, rotation, horizontal
flip, normalisation); evaluation samples only the normalisation. Attention maps are resized to
the input size and scaled to [0, 1].

Bad input fails early with a `DataError` naming the file, what was found and what was expected:
a folder not in the LAG layout, an image without its map, an unreadable file (or, with
`skip_corrupt`, it is left out and counted), a photo that is not 8-bit RGB, a map that is not 8-bit
grayscale, a class too small for three splits.

`LagDataset.batches` is the fast path: the split's uint8 images stay on the device and each batch
is augmented at once, one affine sampling grid per image, with parameters drawn on the CPU from
the caller's generator (same seed, same batches on any device). `__getitem__`/`loader` augment
sample by sample with torchvision and remain for the figures and as the benchmark's baseline.

Rooms: `folder` (`scan`, `fingerprint`, `DataError`), `reading` (one file with Pillow), `audit`
(`check`), `sources` (`resolve_root`, synthetic set names), and, with torch, `decoded`
(`load_arrays`, the cache), `stratify` (splits, training fractions), `transforms` (normalisation,
augmentation), `datasets` (`LagDataset`, `Split`, `load_split`). Every public name is importable
from here; the rooms with torch are imported on first use of one of their names, so `scan` and
`check` need no torch and `thesislib check-data` answers at once.
"""

from __future__ import annotations

import importlib

from thesislib.data.audit import DataCheck, check
from thesislib.data.folder import SPLITS, DataError, Record, fingerprint, scan
from thesislib.data.reading import ASPECT_TOLERANCE, GRAY_RGB_TOLERANCE, UnreadableFile
from thesislib.data.sources import DEFAULT_SYNTH, resolve_root, synth_name, synth_spec

# The names of the rooms that import torch (seconds), each imported on first use (PEP 562).
_LAZY = {
    "decoded": ("Arrays", "load_arrays"),
    "stratify": ("THESIS_FRACTIONS", "stratified_split", "stratified_fraction"),
    "transforms": ("MEAN", "STD", "CROP_SCALE", "CROP_RATIO", "ROTATION", "normalize", "denormalize",
                   "train_transform", "Augmentation", "augment"),
    "datasets": ("LagDataset", "Split", "load_split"),
}
_ROOM = {name: room for room, names in _LAZY.items() for name in names}

__all__ = [
    "DataError", "UnreadableFile", "Record", "Arrays", "Split", "scan", "check", "DataCheck", "fingerprint", "load_arrays",
    "stratified_split", "stratified_fraction", "LagDataset", "load_split", "resolve_root", "SPLITS", "THESIS_FRACTIONS",
    "MEAN", "STD", "normalize", "denormalize", "Augmentation", "augment",
    "train_transform", "CROP_SCALE", "CROP_RATIO", "ROTATION", "synth_spec", "synth_name", "DEFAULT_SYNTH",
    "GRAY_RGB_TOLERANCE", "ASPECT_TOLERANCE",
]


def __getattr__(name: str):
    """A name of a room that imports torch: imported from its room on first use."""
    room = _ROOM.get(name)
    if room is None:
        raise AttributeError(f"module 'thesislib.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"thesislib.data.{room}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The package's names, with those not imported yet."""
    return sorted(set(globals()) | set(_ROOM))
