"""A notebook's params as they run: its scale's files merged, the `--set KEY=VALUE` changes applied, checked."""

from __future__ import annotations

import ast
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from thesislib.atomic import atomic_write_text
from thesislib.paths import project_root
from thesislib.study.config import ConfigError
from thesislib.design import NOTEBOOKS
from thesislib.study.grids import load_params


def check_params(params: dict, notebook_keys: list[str], *, source: str, data: str | None = None) -> None:
    """Fail before any notebook starts on a params file that the notebook would reject.

    Args:
        params: a notebook's merged params (`thesislib.study.load_params`).
        notebook_keys: the names its `parameters` cell defines.
        source: the params file, named in errors.
        data: the report's data override, if any.

    Raises:
        ConfigError: an unknown key; a `base`, `experiments` or `seeds` that does not make valid
            run configs (an unknown run setting, a value of the wrong type or out of range); or an
            `executor` that `ExecutorSpec.from_params` rejects (an unknown kind or option).
    """
    from thesislib.study.config import RunConfig
    from thesislib.study.executors import ExecutorSpec
    from thesislib.study.grids import grid

    unknown = sorted(set(params) - set(notebook_keys))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: "
                          f"{', '.join(notebook_keys)}")
    if "executor" in params:  # otherwise read only when a notebook's grid first computes
        ExecutorSpec.from_params(params["executor"], source=f"{source}: executor")
    base = params.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{source}: base: expected a mapping of run settings, found {base!r}")
    data = data if data is not None else params.get("data")
    if "experiments" in params:
        grid(base, params["experiments"], params.get("seeds"), data=data, source=source)
    elif "base" in params:
        RunConfig.from_dict({**base, **({"data": str(data)} if data is not None else {})}, source=f"{source}: base")


def notebook_parameters(notebook: Path) -> list[str]:
    """The names a notebook's `parameters` cell defines (what papermill may inject)."""
    import papermill as pm

    return list(pm.inspect_notebook(str(notebook)))


def notebook_defaults(notebook: Path) -> dict[str, Any]:
    """The values a notebook's `parameters` cell assigns (plain literals), by name.

    A name whose value is not a literal is left out.
    """
    import papermill as pm

    defaults = {}
    for name, spec in pm.inspect_notebook(str(notebook)).items():
        try:
            defaults[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError, TypeError):
            continue
    return defaults


def parse_set(arg: str) -> tuple[list[str], Any]:
    """A `--set KEY=VALUE` argument as (the key's dotted parts, VALUE read by yaml.safe_load).

    Raises:
        ConfigError: no "=", an empty key or key part, or a VALUE that is not valid YAML.
    """
    key, sep, text = str(arg).partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        raise ConfigError(f"--set {arg}: expected KEY=VALUE with KEY a name or a dotted path into a mapping, "
                          f"such as seeds=[0,1,2] or base.epochs=12")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--set {arg}: VALUE {text!r} is not valid YAML ({reason})") from None
    return [part.strip() for part in parts], value


def apply_sets(params: dict, sets: list[str], *, keys: list[str], defaults: dict | None = None,
               source: str = "params") -> dict:
    """A copy of `params` with each `--set KEY=VALUE` applied in order.

    A plain KEY replaces that parameter; a dotted one (base.epochs) sets inside the mapping it
    names, keeping its other keys. A parameter the params leave out starts from the notebook's own
    value (`defaults`), as papermill would leave it.

    Args:
        params: a notebook's merged params (`load_params`).
        sets: the KEY=VALUE arguments.
        keys: the notebook's parameter names.
        defaults: the notebook's parameter values (`notebook_defaults`).
        source: the params file, named in errors.

    Returns:
        The params with the changes; `params` itself is not modified.

    Raises:
        ConfigError: a malformed argument, a KEY that is not one of `keys`, or a dotted KEY that
            goes through something other than a mapping.
    """
    params = copy.deepcopy(params)
    for arg in sets:
        parts, value = parse_set(arg)
        if parts[0] not in keys:
            raise ConfigError(f"--set {arg}: unknown key {parts[0]!r} for {source}; allowed keys: {', '.join(keys)}")
        node = params
        for depth, part in enumerate(parts[:-1]):
            if part not in node:
                node[part] = copy.deepcopy((defaults or {}).get(part)) if depth == 0 else {}
            if node[part] is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                where = ".".join(parts[:depth + 1])
                found = f"{node[part]!r} ({type(node[part]).__name__})"
                raise ConfigError(f"--set {arg}: {where} is {found} in {source}; expected a mapping to set "
                                  f"{parts[depth + 1]!r} in (or set it whole: --set {where}=VALUE)")
            node = node[part]
        node[parts[-1]] = value
    return params


def params_with_sets(path: Path, sets: list[str] | None = None, *, keys: list[str], defaults: dict | None = None,
                     data: str | None = None) -> dict:
    """A notebook's params as it will run: `load_params(path)` with the --set changes, checked.

    Args:
        path: the notebook's params file (its scale's shared.yaml beside it is merged under it).
        sets: KEY=VALUE arguments applied after the merge (`apply_sets`).
        keys: the notebook's parameter names.
        defaults: the notebook's parameter values, for a dotted KEY into a parameter the file leaves out.
        data: the report's data override, if any.

    Returns:
        The merged params with the changes.

    Raises:
        ConfigError: as `check_params`, naming the params file if it fails by itself, else the
            first --set argument after which the params fail.
    """
    sets = list(sets or [])
    merged = load_params(path, keys=keys)
    final = apply_sets(merged, sets, keys=keys, defaults=defaults, source=str(path))
    try:
        check_params(final, keys, source=str(path), data=data)
    except ConfigError:
        if not sets:
            raise
        check_params(merged, keys, source=str(path), data=data)  # the file alone fails: it is named
        for i, arg in enumerate(sets, 1):
            changed = apply_sets(merged, sets[:i], keys=keys, defaults=defaults, source=str(path))
            check_params(changed, keys, source=f"--set {arg} (over {path})", data=data)
        raise
    return final


def params_for(path: str | os.PathLike, sets: list[str] | None = None) -> dict:
    """The params a notebook runs with from one params file: `params_with_sets` for the notebook it names.

    Args:
        path: a notebook's params file, e.g. params/default/01_depth.yaml (the notebook is
            notebooks/01_depth.ipynb of the project).
        sets: KEY=VALUE changes (`apply_sets`).

    Returns:
        The merged, changed and checked params: what `thesislib report` passes to papermill.

    Raises:
        ConfigError: no such file, a file named after no notebook, or params that fail `check_params`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (expected e.g. params/default/01_depth.yaml)")
    if path.stem not in NOTEBOOKS:
        raise ConfigError(f"{path}: not a notebook's params file; expected one named after a notebook: "
                          f"{', '.join(f'{n}.yaml' for n in NOTEBOOKS)}")
    notebook = project_root() / "notebooks" / f"{path.stem}.ipynb"
    keys = notebook_parameters(notebook)
    return params_with_sets(path, sets, keys=keys, defaults=notebook_defaults(notebook) if sets else None)


def _sets_for(sets: list[str], keys: list[str]) -> list[str]:
    """The --set arguments whose key starts with one of a notebook's parameters `keys`."""
    return [arg for arg in sets if str(arg).partition("=")[0].strip().split(".")[0] in keys]


def _check_set_keys(sets: list[str], keys: dict[str, list[str]]) -> None:
    """Fail on a --set argument that is malformed or that no notebook of the report takes."""
    for arg in sets:
        top = parse_set(arg)[0][0]
        if not any(top in k for k in keys.values()):
            allowed = sorted({key for k in keys.values() for key in k})
            raise ConfigError(f"--set {arg}: unknown key {top!r}: no notebook of this report ({', '.join(keys)}) "
                              f"takes it; allowed keys: {', '.join(allowed)}")


def _study_params(params_dir: Path, sets: list[str], folder: Path) -> Path:
    """A params folder for 06_correlation: every notebook's params of `params_dir` with the --set changes.

    06 reads the other notebooks' params files itself (`study.study_grid`), so it sees the
    changes only through files: one merged file per notebook, written to `folder` and returned.
    """
    root = project_root()
    folder.mkdir(parents=True, exist_ok=True)
    for name in NOTEBOOKS:
        path = params_dir / f"{name}.yaml"
        if not path.is_file():
            continue
        notebook = root / "notebooks" / f"{name}.ipynb"
        keys = notebook_parameters(notebook)
        mine = _sets_for(sets, keys)
        merged = apply_sets(load_params(path, keys=keys), mine, keys=keys, source=str(path),
                            defaults=notebook_defaults(notebook) if mine else None)
        atomic_write_text(folder / f"{name}.yaml", yaml.safe_dump(merged, sort_keys=False))
    return folder.resolve()
