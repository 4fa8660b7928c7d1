"""Params files: a notebook's params as the study design, its scale's shared.yaml and its own file
merged.

    params/study/<notebook>.yaml   the study design: experiments, settings, methods, written once
    params/<scale>/shared.yaml     what every notebook of a scale shares (data, runs, executor, seeds, base)
    params/<scale>/<notebook>.yaml only what differs from both

`load_params` merges them (a later layer wins; mappings key by key) and checks the executor of
every layer, so a bad one fails before any notebook runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thesislib.study.config import ConfigError
from thesislib.study.executors import executor_of

__all__ = ["SHARED", "STUDY", "load_params", "merge_params", "params_layers"]


SHARED = "shared.yaml"
STUDY = "study"  # params/study/<notebook>.yaml: the study design, under every scale


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters, found {type(params).__name__}")
    return params


def merge_params(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged over `under`: mappings key by key, at every depth; anything else (a list, a
    number, null) from `over` replaces what `under` has."""
    out = dict(under)
    for key, value in over.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = merge_params(out[key], value) if both else value
    return out


def params_layers(path: str | os.PathLike) -> list[Path]:
    """The files a notebook's params merge, in order: the study design (params/study/<notebook>.yaml,
    beside the scale's folder), the scale's shared.yaml, the notebook's own file; those that exist."""
    path = Path(path)
    if path.name == SHARED:
        return [path]
    layers = [path.parent.parent / STUDY / path.name, path.parent / SHARED]
    if path.parent.name == STUDY:
        layers = []
    return [p for p in layers if p.is_file()] + [path]


def load_params(path: str | os.PathLike, *, keys: Any = None) -> dict[str, Any]:
    """A notebook's params: its layers merged (`params_layers`: the study design, then its scale's
    shared.yaml, then its own file; `merge_params`), with files named in errors.

    The study design (params/study/<notebook>.yaml) holds the experiments, settings and methods
    once; per scale, `shared.yaml` holds what every notebook of that scale shares (data, runs,
    executor, seeds, base) and the notebook's file only what differs from both. A later layer
    wins; mappings (`base`, `experiments`, ...) are merged key by key.

    Args:
        path: the notebook's params file of a scale, e.g. params/default/01_depth.yaml.
        keys: the notebook's parameter names; shared keys it does not take are left out (the study
            design's and its own file's keys are always kept, so a misspelt key still fails where
            it is used).

    Raises:
        ConfigError: a layer that is missing, not YAML or not a mapping, or whose `executor`
            `ExecutorSpec.from_params` rejects (so a bad one fails before any notebook runs).
    """
    path = Path(path)
    merged: dict[str, Any] = {}
    for layer in params_layers(path):
        params = _read_yaml(layer)
        if "executor" in params:
            executor_of(params["executor"], source=f"{layer}: executor")
        if layer.name == SHARED and layer != path and keys is not None:
            params = {k: v for k, v in params.items() if k in set(keys)}
        merged = merge_params(merged, params)
    return merged
