"""Labels: the one map from the package's keys (families, classes, result columns, yes/no) to
the words a reader of the report sees.

Tables and notebooks pass their keys through `family_label`, `class_name`, `value_label` or
`readable` (a whole DataFrame) before they are shown; nothing shown spells a snake_case key, a
Python repr or a bare True/False. Metric labels live with the metrics (`thesislib.metrics.REGISTRY`),
method labels with the methods (`thesislib.explain.LABELS`, `thesislib.references.LABELS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from thesislib.layout import CLASSES
from thesislib.design import FAMILIES

__all__ = ["CLASS_LABELS", "CLASS_NAMES", "COLUMNS", "NORMS", "family_label", "class_name", "yes_no",
           "value_label", "readable", "family_keys"]

# the data's class folders (`thesislib.layout.CLASSES`, label 0 and 1) as a reader names them
CLASS_LABELS = {"non_glaucoma": "non-glaucoma", "suspicious_glaucoma": "glaucoma"}
CLASS_NAMES = {i: CLASS_LABELS[c] for i, c in enumerate(CLASSES)}

# result and config columns, as table headers and index names
COLUMNS = {
    "family": "family", "setting": "setting", "seed": "seed", "method": "method", "metric": "metric",
    "pred": "predicted class", "label": "true class", "correct": "classified", "layer": "layer",
    "norm": "normalisation", "flagged": "never learned", "learned": "learned", "kind": "kind",
    "n_flagged": "runs that never learned", "run_id": "run", "design": "design", "settings": "settings",
    "thesis_rho": "thesis: Spearman ρ over settings", "ours_rho": "ours: Spearman ρ over settings",
    "trained": "trained on", "tested": "tested on", "group": "group", "weight_decay": "weight decay",
    "batch_size": "batch size", "train_fraction": "share of the training split", "precode_k": "k",
    "precode_beta": "β", "penalty_lambda": "λ", "sd": "sd", "n": "n",
}
NORMS = {"none": "none", "batch": "BatchNorm", "group": "GroupNorm"}
_KIND = {"explainer": "explainer", "reference": "reference map"}


def family_keys() -> list[str]:
    """Every experiment family's key (`weight_decay`, ...): what a reader must never see."""
    return list(FAMILIES)


def family_label(family: Any) -> str:
    """"weight_decay" -> "Weight decay"; a label already (or anything unknown) is returned as given."""
    return FAMILIES[family].title if family in FAMILIES else str(family)


def class_name(value: Any) -> str:
    """0 / 1 (or a class folder name) -> "non-glaucoma" / "glaucoma"."""
    if isinstance(value, str):
        return CLASS_LABELS.get(value, value)
    try:
        return CLASS_NAMES[int(value)]
    except (KeyError, TypeError, ValueError):
        return str(value)


def yes_no(value: Any) -> str:
    """True -> "yes", False -> "no" (numpy booleans too); anything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if bool(value) else "no"
    return str(value)


def value_label(column: str, value: Any) -> Any:
    """What a reader sees for `value` of result column `column` (numbers other than classes unchanged)."""
    if column in ("pred", "label"):
        return class_name(value)
    if column == "correct":
        return "correctly classified" if bool(value) else "misclassified"
    if column == "family":
        return family_label(value)
    if column == "norm":
        return NORMS.get(value, value)
    if column == "kind":
        return _KIND.get(value, value)
    if isinstance(value, (bool, np.bool_)):
        return yes_no(value)
    return value


def _name(key: Any) -> Any:
    if isinstance(key, str):
        return COLUMNS.get(key, CLASS_LABELS.get(key, key))
    return key


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` for a reader: known keys in the index, its names and the column names
    replaced by labels (`value_label`, `COLUMNS`, `CLASS_LABELS`), booleans as yes / no."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == bool or col in ("pred", "label", "correct", "family", "norm", "kind"):
            out[col] = [value_label(col, v) for v in out[col]]
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_tuples(
            [tuple(value_label(n, v) for n, v in zip(out.index.names, t)) for t in out.index],
            names=[_name(n) for n in out.index.names])
    else:
        out.index = pd.Index([value_label(out.index.name, v) for v in out.index], name=_name(out.index.name))
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = pd.MultiIndex.from_tuples([tuple(_name(x) for x in t) for t in out.columns],
                                                names=[_name(n) for n in out.columns.names])
    else:
        out.columns = pd.Index([_name(c) for c in out.columns], name=_name(out.columns.name))
    return out
