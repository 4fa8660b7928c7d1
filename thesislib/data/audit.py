"""The data check: `check` reads every file of a folder without torch and counts (`DataCheck`).

It counts what the PROTOCOL counts (readable pairs per class, unreadable pairs left out, blank
maps, maps of another size or aspect ratio than their photo), so `thesislib check-data` answers
at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from thesislib.data.folder import check_counts, scan
from thesislib.data.reading import UnreadableFile, map_geometry, read
from thesislib.layout import CLASSES

__all__ = ["DataCheck", "check"]


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
            read(r.image, "image", draft=True)
            m = read(r.map, "map")
        except UnreadableFile:
            if not skip_corrupt:
                raise
            skipped.append(r.name)
            continue
        counts[CLASSES[r.label]] += 1
        if m.size and m.max() == m.min():
            blank.append(r.name)
        size, aspect = map_geometry(r)
        other_size += [r.name] if size else []
        other_aspect += [r.name] if aspect else []
    check_counts(counts, str(root), len(skipped))
    return DataCheck(root, counts, skipped, blank, other_size, other_aspect)
