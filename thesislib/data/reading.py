"""Reading one file with Pillow: `read` a photo (8-bit RGB) or map (8-bit grayscale), `map_geometry`.

A file that does not decode, or decodes to another mode, is an error naming the file, what it is
and what was expected.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from thesislib.data.folder import DataError, Record

__all__ = ["UnreadableFile", "read", "map_geometry", "GRAY_RGB_TOLERANCE", "ASPECT_TOLERANCE"]


class UnreadableFile(DataError):
    """An image or attention map that Pillow cannot decode (corrupt, truncated, not an image)."""


# Pillow modes: what a photo or map in another mode is, for the error message
_MODES = {"1": "1-bit black and white", "L": "grayscale", "LA": "grayscale with an alpha channel",
          "P": "a palette image", "PA": "a palette image with an alpha channel", "RGB": "in colour (RGB)",
          "RGBA": "RGB with an alpha channel", "RGBa": "RGB with an alpha channel", "CMYK": "CMYK",
          "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV", "I": "32-bit integer", "F": "32-bit floating point",
          "I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit"}
GRAY_RGB_TOLERANCE = 8  # an RGB map whose channels differ by at most this is a grayscale map saved as RGB
ASPECT_TOLERANCE = 0.02  # image and map aspect ratios that differ by more than this are counted


def read(path: Path, kind: str, *, draft: bool = False) -> np.ndarray:
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


def map_geometry(record: Record) -> tuple[bool, bool]:
    """(the map has another size than its image, another aspect ratio beyond ASPECT_TOLERANCE)."""
    (wi, hi), (wm, hm) = _size(record.image), _size(record.map)
    return (wi, hi) != (wm, hm), abs(math.log((wi / hi) / (wm / hm))) > math.log1p(ASPECT_TOLERANCE)
