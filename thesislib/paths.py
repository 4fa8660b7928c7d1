"""Where things live: the project root, the runs folder, the data folder.

Notebooks run with their own folder as working directory (jupyterlab) or with the project root
(papermill from `thesislib report`); both must find the same runs, so paths resolve against the
project root, found by walking up from the working directory to the folder holding `params/`
and `pyproject.toml`. Environment variables override: THESISLIB_RUNS, THESISLIB_DATA.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "runs_dir", "data_dir"]


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest ancestor of `start` (default: the working directory) that holds the project.

    Falls back to `start` itself when no ancestor looks like the project (an installed package
    used from elsewhere): runs and data then live under the working directory.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
            return folder
    return here


def runs_dir(runs: str | os.PathLike | None = None) -> Path:
    """The runs folder: `runs` if given, else $THESISLIB_RUNS, else <project>/runs."""
    if runs is not None:
        return Path(runs).expanduser().resolve()
    if os.environ.get("THESISLIB_RUNS"):
        return Path(os.environ["THESISLIB_RUNS"]).expanduser().resolve()
    return project_root() / "runs"


def data_dir() -> Path:
    """Where generated data sets go: <project>/data."""
    return project_root() / "data"
