"""`build_report`: check every params file, execute the notebooks in order, write the page and its data."""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from thesislib.atomic import atomic_write_text, ensure_writable
from thesislib.paths import project_root, runs_dir
from thesislib.report.execute import _kernel_dir, _quiet_papermill, _say, execute
from thesislib.report.data import write_data
from thesislib.report.methods import methods_section, scope_box
from thesislib.report.page import _link, stitch
from thesislib.report.params import (_check_set_keys, _sets_for, _study_params, notebook_defaults, notebook_parameters,
                                     params_with_sets)
from thesislib.report.records import PER_IMAGE_SUFFIX, RESULTS_ENV, TIDY_SUFFIX
from thesislib.study.config import ConfigError
from thesislib.design import NOTEBOOKS
from thesislib.study.grids import load_params


def build_report(params: str | os.PathLike = "params/default", *, data: str | None = None,
                 out: str | os.PathLike = "reports/index.html", notebooks: list[str] | None = None,
                 workdir: str | os.PathLike | None = None, sets: list[str] | None = None,
                 command: str | None = None) -> bool:
    """Execute the notebooks with the params of `params` and write the HTML report to `out`.

    Args:
        params: folder with one <notebook>.yaml per notebook.
        data: a data folder (or a synthetic set, "synthetic-n400-s96") for every notebook, overriding the params.
        out: the HTML file.
        notebooks: a subset of notebook names; default all that have params.
        workdir: where executed notebooks go (default <runs>/notebooks/<params folder name>).
        sets: KEY=VALUE changes applied over each notebook's merged params (`apply_sets`), to
            every notebook whose parameters include KEY's first part.
        command: the command line named in the report's header (default: this process's).

    Returns:
        True if every notebook ran; False if some failed (the report still names them).
    """
    root = project_root()
    params_dir = Path(params) if Path(params).is_absolute() else (Path.cwd() / params)
    if not params_dir.is_dir():
        raise ConfigError(f"{params}: params folder not found (expected e.g. params/default)")
    names = notebooks or [n for n in NOTEBOOKS if (params_dir / f"{n}.yaml").is_file()]
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ConfigError(f"notebooks: unknown {', '.join(unknown)}; expected some of {', '.join(NOTEBOOKS)}")
    missing = [n for n in names if not (params_dir / f"{n}.yaml").is_file()]
    if missing:
        raise ConfigError(f"{params_dir}: no params for {', '.join(missing)} (expected {', '.join(f'{m}.yaml' for m in missing)})")
    if not names:
        raise ConfigError(f"{params_dir}: no notebook params found (expected files like 01_depth.yaml)")
    keys = {n: notebook_parameters(root / "notebooks" / f"{n}.ipynb") for n in names}
    sets = list(sets or [])
    _check_set_keys(sets, keys)
    if data is not None and not str(data).startswith("synthetic"):
        from thesislib.data import resolve_root, scan

        data = str(resolve_root(data))
        scan(data)  # a bad folder fails here, in one line, before any notebook starts
    all_params = {}
    for n in names:  # so does a bad params file or a bad --set
        mine = _sets_for(sets, keys[n])
        defaults = notebook_defaults(root / "notebooks" / f"{n}.ipynb") if mine else None
        all_params[n] = params_with_sets(params_dir / f"{n}.yaml", mine, keys=keys[n], defaults=defaults, data=data)
    work = ensure_writable(Path(workdir) if workdir else runs_dir() / "notebooks" / params_dir.name,
                           "folder for executed notebooks (under THESISLIB_RUNS unless --workdir)")
    out = Path(out)
    ensure_writable(out.parent, "report folder")

    kernels = _kernel_dir()
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernels), os.environ.get("JUPYTER_PATH")]))
    os.environ[RESULTS_ENV] = str(Path(work).resolve())  # each notebook's record() writes beside it
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("papermill").setLevel(logging.INFO)
    logging.getLogger("papermill").addFilter(_quiet_papermill)
    for noisy in ("traitlets", "asyncio", "blib2to3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    tree = git_tree(root)  # the code that runs, before anything is written
    # the plan reads params files: with --set, the merged copies 06 reads too
    _print_plan(_study_params(params_dir, sets, work / "params-with-set") if sets else params_dir, names,
                all_params, data)
    t_start = time.time()
    outcomes = []
    for i, name in enumerate(names, 1):
        p = dict(all_params[name])
        if data is not None and "data" in keys[name]:  # 09_shortcut takes no data: it draws its own sets
            p["data"] = data
        if name == "06_correlation":
            study_params = _study_params(params_dir, sets, work / "params-with-set") if sets else params_dir.resolve()
            p["params_dir"] = str(study_params)  # 06 reads every notebook's params itself
        _say(f"({i}/{len(names)}) {name} ...")
        t0 = time.time()
        for stale in (f"{name}.results.json", f"{name}{TIDY_SUFFIX}", f"{name}{PER_IMAGE_SUFFIX}"):
            (work / stale).unlink(missing_ok=True)  # what a failed notebook did not write is not shown
        ok, failure = execute(root / "notebooks" / f"{name}.ipynb", work / f"{name}.ipynb", p, cwd=root)
        seconds = time.time() - t0
        _say(f"({i}/{len(names)}) {name} {'done' if ok else 'FAILED: ' + str(failure)} in {seconds:.0f}s")
        outcomes.append(dict(name=name, ok=ok, failure=failure, seconds=seconds, path=work / f"{name}.ipynb",
                             params=work / "params" / f"{name}.yaml", ran=p))
    wall = time.time() - t_start
    shutil.rmtree(kernels, ignore_errors=True)
    shown = params_dir.resolve()
    shown = str(shown.relative_to(root)) if shown.is_relative_to(root) else str(params)
    header = dict(params=shown + "".join(f", --set {arg}" for arg in sets),
                  data=data or _data_summary(all_params), commit=tree["commit"], dirty=tree["dirty"],
                  command=command if command is not None else shlex.join(sys.argv), packages=package_versions(),
                  date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine=_machine(), wall=wall)
    from thesislib import summary

    records = summary.read_records(work)
    header["data_hash"] = (records.get("00_data") or {}).get("fingerprint")
    facts = summary.facts(records, header, outcomes)
    written = write_data(work, out.parent, names)
    links = {kind: _link(path, out.parent) for kind, path in written.items()}
    methods = methods_section(header, {**facts, **_data_facts(records)}, data=links,
                              protocol=_link(root / "docs" / "PROTOCOL.md", out.parent))
    html = stitch(outcomes, header, links_from=out.parent, glance=summary.at_a_glance(facts), methods=methods,
                  scope=scope_box(header))
    atomic_write_text(out, html)
    atomic_write_text(out.parent / summary.SUMMARY_FILE, json.dumps(facts, indent=1, sort_keys=True) + "\n")
    for o in outcomes:  # the merged params each section links (after the page: a full disk names the page first)
        ran_params(o["params"].parent, params_dir / f"{o['name']}.yaml", o["ran"], _sets_for(sets, keys[o["name"]]),
                   root=root)
    _say(f"wrote {out} ({len(html) / 1e6:.1f} MB) in {wall / 60:.1f} min; executed notebooks in {work}")
    return all(o["ok"] for o in outcomes)


def ran_params(folder: Path, path: Path, params: dict, sets: list[str], *, root: Path | None = None) -> Path:
    """Write the params a notebook ran with (its layers merged, the --set changes applied) to
    folder/<notebook>.yaml, headed by the files and changes they came from (relative to `root`
    where they lie in it); return that file (the report links it: a scale's own file holds only
    what differs from the study design)."""
    from thesislib.study.params import params_layers

    def shown(layer: Path) -> str:
        layer = Path(layer).resolve()
        return str(layer.relative_to(root.resolve())) if root is not None and layer.is_relative_to(root.resolve()) \
            else str(layer)

    made = " < ".join(shown(p) for p in params_layers(path)) + "".join(f", --set {arg}" for arg in sets)
    out = folder / path.name
    atomic_write_text(out, f"# as it ran: {made}\n" + yaml.safe_dump(params, sort_keys=False))
    return out


def _data_facts(records: dict) -> dict:
    """What 00_data recorded of the data the methods section names: input size and split counts."""
    data = records.get("00_data") or {}
    return {k: data[k] for k in ("input_size", "split") if k in data}


def _print_plan(params_dir: Path, names: list[str], all_params: dict, data: str | None) -> None:
    """Before any notebook starts: the runs the notebooks' grids will compute and the time projected
    here (`thesislib.sweep.plan`; a notebook's extras beyond its grid, such as 03's sanity checks,
    are in its per-notebook share), and the command for a quicker look."""
    import io

    from thesislib.sweep import load_sweep, print_plan

    # 06_correlation (params_dir) computes every notebook's grid of its scale
    study = any("params_dir" in all_params[n] for n in names)
    candidates = NOTEBOOKS if study else names
    trains = [params_dir / f"{n}.yaml" for n in candidates if (params_dir / f"{n}.yaml").is_file()
              and "experiments" in (all_params[n] if n in all_params else load_params(params_dir / f"{n}.yaml"))]
    if not trains:
        _say(f"plan: {len(names)} notebook{'s' * (len(names) != 1)}, no runs to train")
        return
    out = io.StringIO()
    print_plan(load_sweep(trains, data=data), out, notebooks=len(names))
    for line in out.getvalue().splitlines():
        _say(line)


def _data_summary(all_params: dict) -> str:
    values = sorted({str((p.get("base") or {}).get("data", p.get("data"))) for p in all_params.values()})
    values = [v for v in values if v not in ("None",)] or ["default ($THESISLIB_DATA or the embedded synthetic set)"]
    return ", ".join(values)


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores ({cpu}), {gpu}, " \
           f"Python {platform.python_version()}, torch {torch.__version__}"


PACKAGES = ("torch", "torchvision", "grad-cam", "numpy")  # distribution names, as pip knows them


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Each distribution's installed version (importlib.metadata), or "not installed", by name."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_tree(root: Path) -> dict:
    """The commit checked out at `root` and whether the tree differs from it.

    Returns:
        {"commit": the HEAD sha, or "unknown" outside git; "dirty": True if `git status
        --porcelain` lists anything (changed, staged or untracked files; .gitignore still applies),
        False if nothing, None outside git}.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return dict(commit="unknown", dirty=None)
    if sha.returncode != 0 or status.returncode != 0:
        return dict(commit="unknown", dirty=None)
    return dict(commit=sha.stdout.strip(), dirty=bool(status.stdout.strip()))
