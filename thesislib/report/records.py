"""Each notebook's key results, recorded beside its executed copy for the summary and the tests."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from thesislib.atomic import atomic_write_text

RESULTS_ENV = "THESISLIB_RESULTS_DIR"  # set by build_report: the folder of the executed notebooks
KEY_METRICS = ("iou_area", "accuracy")
TIDY_SUFFIX, PER_IMAGE_SUFFIX = ".results.csv", ".per_image.csv"  # a notebook's data, beside its record


def plain_columns(frame):
    """`frame` without its objects (a run's config), its settings' overrides written as JSON text."""
    frame = frame.drop(columns=[c for c in ("config",) if c in frame.columns])
    if "overrides" in frame.columns:
        frame = frame.assign(overrides=[json.dumps(o, sort_keys=True) if isinstance(o, dict) else o
                                        for o in frame["overrides"]])
    return frame


def record(name: str, results: dict, *, tidy=None, grid=None) -> Path | None:
    """Write a notebook's key results to <name>.results.json beside its executed notebook, and
    with `tidy` and `grid` its data as <name>.results.csv and <name>.per_image.csv.

    `build_report` points $THESISLIB_RESULTS_DIR at the folder of the executed notebooks; where it
    is unset (a notebook opened in Jupyter, or run by papermill by hand) nothing is written. The
    notebook tests compare these numbers with numbers computed from the runs folder.

    Args:
        name: the notebook's name, e.g. "01_depth".
        results: numbers, strings, booleans, lists and dicts (numpy scalars too; NaN is written
            as null).
        tidy: `grid.results()`: one row per run and method, the summary metrics.
        grid: the notebook's `study.Grid`: its per-image metrics (`Grid.images`).
    Returns:
        The file written, or None.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[0-9A-Za-z_.-]+", name):
        raise ValueError(f"name: expected a notebook name such as '01_depth', found {name!r}")
    plain = _plain(results, "results")
    folder = os.environ.get(RESULTS_ENV)
    if not folder:
        return None
    path = Path(folder) / f"{name}.results.json"
    atomic_write_text(path, json.dumps(plain, indent=1, allow_nan=False) + "\n")
    if tidy is not None:
        atomic_write_text(Path(folder) / f"{name}{TIDY_SUFFIX}", plain_columns(tidy).to_csv(index=False))
    if grid is not None:
        atomic_write_text(Path(folder) / f"{name}{PER_IMAGE_SUFFIX}", plain_columns(grid.images()).to_csv(index=False))
    return path


def _plain(x, where: str):
    """A JSON-able copy of `x`: numpy and torch scalars as Python numbers, NaN and infinities as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0 and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    raise TypeError(f"{where}: expected numbers, strings, booleans, lists or dicts, found {type(x).__name__}")


def key_numbers(ours, results, metrics=KEY_METRICS) -> dict:
    """The numbers a study notebook's tables rest on, for `record`.

    Args:
        ours: `thesislib.tables.aggregate(results)`: per family, setting, method and metric the
            mean and sample std over seeds.
        results: `grid.results()`: one row per run and method.
        metrics: the metrics of `ours` to keep.
    Returns:
        {"runs": one {family, setting, seed, run_id, eval_id, learned} per run and family,
         "table": one {family, setting, method (label; "" for classification), metric, mean, std,
         n} per row of `ours` with a metric in `metrics`}.
    """
    runs = results.drop_duplicates(["family", "setting", "seed", "run_id"])
    rows = [dict(family=str(r.family), setting=str(r.setting), seed=int(r.seed), run_id=str(r.run_id),
                 eval_id=r.config.eval_id(), learned=bool(r.learned)) for r in runs.itertuples()]
    part = ours[ours["metric"].isin(list(metrics))]
    table = [dict(family=str(r.family), setting=str(r.setting), method=str(r.method), metric=str(r.metric),
                  mean=float(r.mean), std=float(r.std), n=int(r.n)) for r in part.itertuples()]
    return dict(runs=rows, table=table)
