"""Atomic writes: a file is written to a temporary sibling and renamed into place, so readers (and
a run resumed after kill -9) never see half a file. A write that fails (a full disk, a folder
that is not writable) leaves no debris and raises `WriteError` naming the file.

Also here: `ensure_writable` (fail early, before hours of work, when an output folder cannot be
written) and `file_sha256` (checkpoints are verified against the hash stored beside them).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["WriteError", "atomic_write", "atomic_write_text", "atomic_save", "ensure_writable", "file_sha256"]


class WriteError(OSError):
    """A file or folder that could not be written; the message names it, the cause and the remedy."""

    def __str__(self) -> str:
        return str(self.strerror)


_REMEDIES = {
    errno.ENOSPC: "expected free space on its disk: free some, or write elsewhere, and run again (finished "
                  "files are kept; the file being written is not left half-written)",
    errno.EDQUOT: "expected room in your disk quota: free some, or write elsewhere, and run again",
    errno.EACCES: "expected a folder you may write to",
    errno.EPERM: "expected a folder you may write to",
    errno.EROFS: "expected a folder on a writable file system",
}


def _write_error(path: Path, err: OSError, what: str = "cannot write") -> WriteError:
    remedy = _REMEDIES.get(err.errno, "expected a folder you may write to")
    return WriteError(err.errno, f"{path}: {what} ({err.strerror or err}); {remedy}")


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb") -> None:
    """Call write(fh) on a temporary file next to `path`, flush it to disk, then rename it to `path`.

    Raises:
        WriteError: the folder cannot be created or written, or the disk is full; `path` is then
            unchanged and no temporary file is left.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as err:
        raise _write_error(path, err) from err
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError) and exc.errno is not None:
            raise _write_error(path, exc) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save, atomically."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def ensure_writable(folder: str | os.PathLike, what: str = "folder") -> Path:
    """Create `folder` if needed and check that a file can be written in it.

    Args:
        folder: the folder.
        what: how error messages name it (e.g. "runs folder (THESISLIB_RUNS)").

    Returns:
        The folder as a Path.

    Raises:
        WriteError: it cannot be created or written, naming it and the cause.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise _write_error(folder, err, f"{what} is not writable") from err
    return folder


_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, memoised per process on its path, size and modification time."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]
