"""Report: execute the notebooks with papermill and stitch them into one self-contained HTML file.

`build_report(params="params/default")` runs every notebook of `notebooks/` that has a params
file in the folder (in the order of `NOTEBOOKS`, 00..09), with the current Python environment as
kernel and the project root as working directory, saving each executed notebook under the runs
folder. `sets` (`thesislib report --set KEY=VALUE`) change parameters over each notebook's merged
params (`apply_sets`); `params_for` gives one notebook's params as they run (`thesislib params`).
It then writes one HTML page: a header (params set, data, git commit and whether the tree was
dirty, the command, package versions, date, machine, wall time), a table of contents linking each
section's executed notebook and params file, and every notebook's text, tables and figures,
without code. Figures are numbered through the report, each with its caption (carried in the
figure's display metadata, `thesislib.figures`) beneath it and as its alt text; a heading whose
id repeats across sections gets its section's name as a prefix, so every id is unique. A
notebook that fails is named in the report with the failing cell and error; its executed notebook
is kept.
Each notebook's last cell records its key numbers (`record`, `key_numbers`) as
<notebook>.results.json beside its executed notebook, for the tests to check.
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import yaml

from thesislib.atomic import atomic_write_text, ensure_writable
from thesislib.design import NOTEBOOKS, TITLES
from thesislib.paths import project_root, runs_dir
from thesislib.study.config import ConfigError
from thesislib.study.grids import load_params

__all__ = ["build_report", "execute", "check_params", "params_for", "apply_sets", "parse_set", "stitch", "KERNEL_NAME",
           "record", "key_numbers", "RESULTS_ENV", "unique_heading_ids"]

KERNEL_NAME = "thesislib-current-env"


def _say(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


def _kernel_dir() -> Path:
    """A kernelspec that starts this very interpreter, so notebooks run in the current environment."""
    folder = Path(tempfile.mkdtemp(prefix="thesislib-kernels-"))
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (thesislib)", "language": "python"}))
    return folder


def _kernel_transport(folder: Path):
    """Kernel-manager settings: the kernel talks over local IPC sockets in `folder`, not TCP ports.

    Nothing then listens on the network, and ipykernel (7 and later) does not warn at every start
    that the kernel "is running over TCP without encryption". Windows has no IPC transport and
    keeps TCP on localhost.
    """
    from traitlets.config import Config

    config = Config()
    if os.name != "nt":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(folder / "kernel")
    return config


def execute(notebook: Path, output: Path, parameters: dict, *, cwd: Path) -> tuple[bool, str | None]:
    """Run one notebook with papermill; return (ok, failure description)."""
    import papermill as pm

    sockets = Path(tempfile.mkdtemp(prefix="thesislib-ipc-"))
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                            cwd=str(cwd), progress_bar=sys.stderr.isatty(), log_output=True, report_mode=False,
                            config=_kernel_transport(sockets))
        return True, None
    except pm.PapermillExecutionError as err:
        return False, f"{_failed_cell(output, err.exec_count)}: {err.ename}: {err.evalue}"
    except Exception as err:  # a kernel that dies, a missing file: the report says so and goes on
        return False, f"{type(err).__name__}: {err}"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


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


def _failed_cell(executed: Path, exec_count: int | None) -> str:
    """"code cell 3 (`first line of its source`)", counting the notebook's own code cells."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return f"cell In [{exec_count}]"
    code = [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    for i, cell in enumerate(code, 1):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            return f"code cell {i} (`{first.strip()[:80]}`)"
    return f"cell In [{exec_count}]"


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

    facts = summary.facts(summary.read_records(work), header, outcomes)
    html = stitch(outcomes, header, links_from=out.parent, glance=summary.at_a_glance(facts))
    atomic_write_text(out, html)
    atomic_write_text(out.parent / summary.SUMMARY_FILE, json.dumps(facts, indent=1, sort_keys=True) + "\n")
    for o in outcomes:  # the merged params each section links (after the page: a full disk names the page first)
        ran_params(o["params"].parent, params_dir / f"{o['name']}.yaml", o["ran"], _sets_for(sets, keys[o["name"]]))
    _say(f"wrote {out} ({len(html) / 1e6:.1f} MB) in {wall / 60:.1f} min; executed notebooks in {work}")
    return all(o["ok"] for o in outcomes)


def ran_params(folder: Path, path: Path, params: dict, sets: list[str]) -> Path:
    """Write the params a notebook ran with (its layers merged, the --set changes applied) to
    folder/<notebook>.yaml, headed by the files and changes they came from; return that file (the
    report links it: a scale's own file holds only what differs from the study design)."""
    from thesislib.study.params import params_layers

    made = " < ".join(str(p) for p in params_layers(path)) + "".join(f", --set {arg}" for arg in sets)
    out = folder / path.name
    atomic_write_text(out, f"# as it ran: {made}\n" + yaml.safe_dump(params, sort_keys=False))
    return out


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


_PROGRESS = re.compile(r"^\s*(\[\d+/\d+ |\d+ of \d+ runs cached)")


def _quiet_papermill(record: logging.LogRecord) -> bool:
    """Show the runs' progress lines that notebooks print; drop papermill's chatter and cell outputs."""
    return record.levelno >= logging.WARNING or bool(_PROGRESS.match(record.getMessage()))


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


def _anchor(name: str) -> str:
    return f"sec-{name}"


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


def _link(path: str | os.PathLike, links_from: Path | None) -> str:
    """An href to `path`: relative to the folder `links_from` when given, with forward slashes."""
    from urllib.parse import quote

    path = Path(path)
    if links_from is not None:
        path = Path(os.path.relpath(Path(path).resolve(), Path(links_from).resolve()))
    return quote(path.as_posix())


def _header_rows(header: dict) -> str:
    """The header table's rows: what ran, from which commit and command, with what, where and when."""
    rows = [("params", _esc(header["params"])), ("data", _esc(header["data"]))]
    dirty = header.get("dirty")
    state = {True: " <b>(dirty: uncommitted changes or untracked files)</b>", False: " (clean)"}.get(dirty, "")
    rows.append(("git commit", _esc(header["commit"]) + state))
    if header.get("command"):
        rows.append(("command", f"<code>{_esc(header['command'])}</code>"))
    if header.get("packages"):
        rows.append(("packages", ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in header["packages"].items())))
    rows += [("date", _esc(header["date"])), ("machine", _esc(header["machine"])),
             ("wall time", f"{header['wall'] / 60:.1f} min")]
    return "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)


def _files(o: dict, links_from: Path | None) -> str:
    """Links to a section's executed notebook and params file, as table cells."""
    cells = f"<td><a href='{_link(o['path'], links_from)}'>{_esc(Path(o['path']).name)}</a></td>"
    params = o.get("params")
    cells += f"<td><a href='{_link(params, links_from)}'>{_esc(Path(params).name)}</a></td>" if params else "<td></td>"
    return cells


def stitch(outcomes: list[dict], header: dict, *, links_from: str | os.PathLike | None = None,
           glance: str = "") -> str:
    """One HTML page from executed notebooks: header, contents, sections; no code, no logs.

    Args:
        outcomes: one dict per notebook: name, ok, failure, seconds, path (the executed
            notebook) and optionally params (its params file).
        header: params, data, commit, date, machine, wall (seconds); optionally dirty (bool),
            command (str) and packages ({name: version}).
        links_from: the report's folder: links to executed notebooks and params files are
            relative to it (default: the paths as given).
        glance: Markdown of the summary shown first (`thesislib.summary.at_a_glance`).

    Returns:
        The HTML page, self-contained (figures embedded, nothing fetched).
    """
    from nbconvert import HTMLExporter

    links_from = Path(links_from) if links_from is not None else None
    numbered = 0  # figures so far
    book = nbformat.v4.new_notebook()
    book.metadata["title"] = "thesislib report"
    per_nb = "".join(f"<tr><td><a href='#{_anchor(o['name'])}'>{TITLES.get(o['name'], o['name'])}</a></td>"
                     f"<td>{'ok' if o['ok'] else '<b>failed</b>'}</td><td>{o['seconds']:.0f} s</td>"
                     f"{_files(o, links_from)}</tr>"
                     for o in outcomes)
    book.cells.append(nbformat.v4.new_markdown_cell(
        "# Influences on class-activation explainability: the report\n\n"
        "Which training choices change how well CAM explanations of a glaucoma classifier agree with "
        "where experts look, and does a more accurate model explain itself better? Each section answers one "
        "research question of the thesis, with the thesis's published numbers beside ours.\n\n"
        + (glance + "\n\n" if glance else "")
        + f"<table>{_header_rows(header)}</table>\n\n"
        f"## Contents\n\n<table><tr><th>section</th><th>status</th><th>time</th><th>executed notebook</th>"
        f"<th>params</th></tr>{per_nb}</table>"))
    for o in outcomes:
        book.cells.append(nbformat.v4.new_markdown_cell(
            f"<a id='{_anchor(o['name'])}'></a>\n\n<small>executed notebook: "
            f"<a href='{_link(o['path'], links_from)}'>{_esc(Path(o['path']).name)}</a>"
            + (f" · params: <a href='{_link(o['params'], links_from)}'>{_esc(Path(o['params']).name)}</a>"
               if o.get("params") else "") + "</small>"))
        if not o["ok"]:
            book.cells.append(nbformat.v4.new_markdown_cell(
                f"# {TITLES.get(o['name'], o['name'])}\n\n"
                f"<div style='border:2px solid #c00;padding:8px'><b>This notebook failed</b>: {_esc(o['failure'])}. "
                f"The executed notebook, with the error, is kept at <code>{_esc(str(o['path']))}</code>.</div>"))
        if not Path(o["path"]).is_file():
            continue
        nb = nbformat.read(o["path"], as_version=4)
        said: set[str] = set()  # explanatory notes already shown in this section
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                continue
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                # progress and warnings go to stderr: logs, not results
                cell.outputs = [x for x in cell.get("outputs", []) if not (x.get("output_type") == "stream"
                                                                           and x.get("name") == "stderr")]
                for x in cell.outputs:
                    _drop_repeated_notes(x, said)
                if not cell.outputs:
                    continue
                numbered = _number_figures(cell.outputs, numbered, TITLES.get(o["name"], o["name"]))
            book.cells.append(cell)
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(book)
    # offline: drop scripts and stylesheets fetched from the network (require.js, MathJax)
    body = re.sub(r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>", "", body)
    body = re.sub(r"<link[^>]*\shref=[\"']https?://[^>]*>", "", body)
    body = unique_heading_ids(body)
    return body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)


# A number never breaks over two lines ("12.3 ± 0.4"), text wraps; a table wider than its column
# still scrolls rather than overflow the page. The report's tables are meant to fit 1,200 px.
STYLE = (".jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th {white-space: normal;} "
         ".jp-RenderedHTMLCommon .num {white-space: nowrap;} "
         ".jp-OutputArea-output {overflow-x: auto;} "
         ".jp-RenderedHTMLCommon p.note {margin-top: 0.2em;} "
         "figure.report-figure {margin: 0 0 1em 0;} "
         "figure.report-figure figcaption {max-width: 60em; font-size: 0.9em; color: #333;}")
_NOTE = re.compile(r'<p class="note">.*?</p>\s*', re.S)


def _drop_repeated_notes(output: dict, said: set[str]) -> None:
    """Remove from a cell output's HTML or Markdown the explanatory notes (`<p class="note">`) that
    `said` holds, and add the others to it: a note is read once per section, under its first table."""
    data = output.get("data") or {}
    for mime in ("text/html", "text/markdown"):
        text = data.get(mime)
        if text is None:
            continue
        text = "".join(text) if isinstance(text, list) else text

        def once(m: re.Match) -> str:
            key = " ".join(re.sub(r"<[^>]+>", "", m.group(0)).split())
            if key in said:
                return ""
            said.add(key)
            return m.group(0)

        data[mime] = _NOTE.sub(once, text)


def _number_figures(outputs: list, before: int, section: str) -> int:
    """Turn each PNG output into a numbered figure: the image, its caption beneath, the caption as alt.

    The caption is the one `thesislib.figures` attached to the figure (display metadata
    figures.CAPTION_KEY); a figure without one still gets its number, and an alt text naming it.

    Args:
        outputs: a code cell's outputs, changed in place.
        before: figures numbered before this cell.
        section: the section's title, for the alt text of a figure without a caption.

    Returns:
        The number of figures up to and including this cell's.
    """
    from thesislib.figures import CAPTION_KEY

    n = before
    for out in outputs:
        png = out.get("data", {}).get("image/png") if out.get("output_type") in ("display_data", "execute_result") \
            else None
        if not png:
            continue
        n += 1
        caption = (out.get("metadata", {}).get(CAPTION_KEY) or {}).get("caption") or ""
        alt = f"Figure {n}. {caption}" if caption else f"Figure {n} of section {section}"
        out["data"] = {"text/html": (
            f"<figure class='report-figure' id='figure-{n}'><img src='data:image/png;base64,{''.join(png.split())}' "
            f"alt='{_esc(alt)}'><figcaption><b>Figure {n}.</b> {_esc(caption)}</figcaption></figure>")}
        out["metadata"] = {}
    return n


_HEADING = re.compile(r"<h([1-6])([^>]*?)\sid=\"([^\"]+)\"([^>]*)>")
_ID = re.compile(r"\sid=(?:\"([^\"]*)\"|'([^']*)')")
_SECTION = re.compile(r"\sid=[\"']sec-([^\"']+)[\"']")


def unique_heading_ids(body: str) -> str:
    """`body` with every heading id that occurs more than once renamed "<section>-<id>".

    The section is the one the heading stands in (the latest `sec-<notebook>` anchor before it,
    "report" before any); a number is appended where that still repeats. Each heading's permalink
    follows its id, and an in-page link to a renamed id goes to the heading of its own section
    (the first of them where its section has none).
    """
    import collections

    counts = collections.Counter(a or b for a, b in _ID.findall(body))
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(body)]

    def section_at(pos: int) -> str:
        return next((name for start, name in reversed(sections) if start < pos), "report")

    taken, renamed = set(counts), collections.defaultdict(dict)  # old id -> {section: new id}
    out, last = [], 0
    for m in _HEADING.finditer(body):
        old = m.group(3)
        if counts[old] < 2:
            continue
        section = section_at(m.start())
        new, k = f"{section}-{old}", 2
        while new in taken:
            new, k = f"{section}-{old}-{k}", k + 1
        taken.add(new)
        renamed[old].setdefault(section, new)
        out.append(body[last:m.start()] + f'<h{m.group(1)}{m.group(2)} id="{new}"{m.group(4)}>')
        last = m.end()
    body = "".join(out) + body[last:]

    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(body)]  # where they are now

    def relink(m: re.Match) -> str:
        quote, old = ('"', m.group(1)) if m.group(1) is not None else ("'", m.group(2))
        if old not in renamed:
            return m.group(0)
        targets = renamed[old]
        return f"href={quote}#{targets.get(section_at(m.start()), next(iter(targets.values())))}{quote}"

    return re.sub(r"href=(?:\"#([^\"]+)\"|'#([^']+)')", relink, body) if renamed else body


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))


# -- key results of each notebook, for the tests ------------------------------------------------

RESULTS_ENV = "THESISLIB_RESULTS_DIR"  # set by build_report: the folder of the executed notebooks
KEY_METRICS = ("iou_area", "accuracy")


def record(name: str, results: dict) -> Path | None:
    """Write a notebook's key results to <name>.results.json beside its executed notebook.

    `build_report` points $THESISLIB_RESULTS_DIR at the folder of the executed notebooks; where it
    is unset (a notebook opened in Jupyter, or run by papermill by hand) nothing is written. The
    notebook tests compare these numbers with numbers computed from the runs folder.

    Args:
        name: the notebook's name, e.g. "01_depth".
        results: numbers, strings, booleans, lists and dicts (numpy scalars too; NaN is written
            as null).
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
