"""Atomic writes: a file is written to a temporary sibling and renamed into place, so readers (and
a run resumed after kill -9) never see half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

__all__ = ["atomic_write", "atomic_write_text", "atomic_save"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb") -> None:
    """Call write(fh) on a temporary file next to `path`, flush it to disk, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save, atomically."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))
