"""The report's data files: every notebook's tidy results and per-image metrics as two CSV files.

Each notebook's `record` writes <name>.results.csv (one row per run and method, the summary
metrics) and <name>.per_image.csv (one row per scored image, run and method) beside its executed
notebook; `write_data` stacks them, with a `notebook` column first, into data/results.csv and
data/per_image.csv beside the report, so every number of a table can be recomputed from a file.
"""

from __future__ import annotations

from pathlib import Path

from thesislib.atomic import atomic_write_text
from thesislib.report.records import PER_IMAGE_SUFFIX, TIDY_SUFFIX

__all__ = ["DATA_FOLDER", "DATA_FILES", "write_data"]

DATA_FOLDER = "data"
DATA_FILES = {"results": (TIDY_SUFFIX, "results.csv"), "per_image": (PER_IMAGE_SUFFIX, "per_image.csv")}


def write_data(executed: str | Path, report_folder: str | Path, notebooks: list[str]) -> dict[str, Path]:
    """Stack the notebooks' CSV files of `executed` into <report_folder>/data/.

    Args:
        executed: the folder of the executed notebooks and their records.
        report_folder: the folder of the report's HTML file.
        notebooks: the report's notebooks, in its order.

    Returns:
        {"results": path, "per_image": path} of the files written (a kind no notebook wrote is left out).
    """
    import pandas as pd

    out = {}
    for kind, (suffix, filename) in DATA_FILES.items():
        frames = [pd.read_csv(Path(executed) / f"{name}{suffix}", low_memory=False).assign(notebook=name)
                  for name in notebooks if (Path(executed) / f"{name}{suffix}").is_file()]
        frames = [f for f in frames if not f.empty]
        if not frames:
            continue
        table = pd.concat(frames, ignore_index=True)
        table = table[["notebook"] + [c for c in table.columns if c != "notebook"]]
        path = Path(report_folder) / DATA_FOLDER / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, table.to_csv(index=False))
        out[kind] = path
    return out
