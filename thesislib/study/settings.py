"""Settings: one setting of a family (its overrides of the base config) as a reader names it.

`setting_label` gives the short, stable name a grid's table, the thesis's numbers and a scale's
`not_trained` entries share ("50", "L1 1e-04", "Adam, lr 0.001"); where a setting leaves a value
at `RunConfig`'s default, the name shows that default.
"""

from __future__ import annotations

from typing import Any

from thesislib.data import DataError, synth_spec
from thesislib.study.config import RunConfig

__all__ = ["setting_label", "SCALE_ONLY"]

SCALE_ONLY = ("stem_channels",)
"""Overrides that adapt a setting's network to a scale without making it another setting (the
default scale's ResNet-50 stem, as wide as its first stage's output): names and claims leave them out."""


def setting_label(family: str, overrides: dict[str, Any]) -> str:
    """A short, stable name for one setting of a family ("baseline" for no overrides)."""
    o = {k: v for k, v in overrides.items() if k not in SCALE_ONLY}  # the architecture at a scale, not a setting
    if not o:
        return "baseline"
    if family == "depth" and set(o) == {"depth"}:
        return str(o["depth"])
    if family == "batch_size" and "batch_size" in o and set(o) <= {"batch_size", "epochs"}:
        return str(o["batch_size"])  # the epochs that give equal optimiser steps are a schedule, not a setting
    if family == "epochs" and set(o) == {"batch_size"}:
        return f"batch {o['batch_size']}"
    if family == "weight_decay" and set(o) == {"penalty", "penalty_lambda"}:
        return f"{o['penalty'].upper()} {o['penalty_lambda']:.0e}"
    if family == "dropout" and set(o) == {"dropout"}:
        return f"{o['dropout']:g}"
    if family == "batch_norm" and o == {"norm": "batch"}:
        return "BatchNorm"
    if family == "group_norm" and set(o) == {"norm", "groups"}:
        return str(o["groups"])
    if family == "precode_long":
        o = {k: v for k, v in o.items() if k != "epochs"}
        if not o:
            return "baseline"
    if family in ("precode", "precode_long") and set(o) <= {"precode_k", "precode_beta"} and "precode_k" in o:
        return f"β={o.get('precode_beta', RunConfig.precode_beta):.0e}, k={o['precode_k']}"
    if family == "optimizer" and "optimizer" in o and set(o) <= {"optimizer", "lr"}:
        name = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}.get(o["optimizer"], str(o["optimizer"]))
        return f"{name}, lr {o.get('lr', RunConfig.lr):g}"
    if family == "train_fraction" and "train_fraction" in o and set(o) <= {"train_fraction", "epochs"}:
        return f"{100 * o['train_fraction']:g} %"  # epochs that keep the optimiser steps equal are a schedule
    if family == "shuffled_labels" and o.get("shuffle_labels") and set(o) <= {"shuffle_labels", "depth"}:
        return str(o.get("depth", "baseline"))  # the setting of the model trained on the true labels
    if family == "shortcut" and set(o) == {"data"}:
        return _cue_label(o["data"])
    return ", ".join(f"{k}={v}" for k, v in sorted(o.items()))


def _cue_label(data: str | None) -> str:
    """"cue 0.95" for a synthetic set with the spurious marker, "no cue" for one without, else the data as given."""
    if not isinstance(data, str) or not data.startswith("synthetic"):
        return f"data={data}"
    try:
        spurious = synth_spec(data).spurious
    except DataError:
        return f"data={data}"  # the config's own check names the problem
    return "no cue" if spurious is None else f"cue {spurious:g}"
