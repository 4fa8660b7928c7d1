"""The LAG folder: `scan` lists its image/map pairs, `fingerprint` hashes them; `DataError`.

`check_counts` asks each class for enough pairs to fill the three `SPLITS`. `DataError` is what
every data problem raises, naming the file, what was found and what was expected.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from thesislib.layout import CLASSES, IMAGE_DIR, IMAGE_SUFFIXES, MAP_DIR

__all__ = ["DataError", "Record", "scan", "fingerprint", "SPLITS", "check_counts"]

SPLITS = ("train", "val", "test")  # every class needs a pair in each


class DataError(ValueError):
    """A data folder that cannot be read as the LAG layout; the message says what and where."""


@dataclass(frozen=True)
class Record:
    """One image/map pair of a folder: "class/file" name, label (the class's index in CLASSES), files."""

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


def check_counts(counts: dict[str, int], where: str, skipped: int = 0) -> None:
    """Fail unless every class has a pair for each of train, val and test.

    Args:
        counts: readable image/map pairs per class name.
        where: the data folder, for the message.
        skipped: unreadable pairs left out, for the message.

    Raises:
        DataError: a class with fewer pairs than SPLITS.
    """
    for cls, n in counts.items():
        if n < len(SPLITS):
            left_out = f" ({skipped} unreadable pairs left out)" if skipped else ""
            raise DataError(f"{where}: class {cls} has {n} readable image/map pairs{left_out}; expected at least "
                            f"{len(SPLITS)}, one each for {', '.join(SPLITS)} (an empty split cannot be scored)")
