"""Report: execute the notebooks with papermill and stitch them into one self-contained HTML file.

`build_report(params="params/default")` runs every notebook of `notebooks/` that has a params
file in the folder (in the order of `NOTEBOOKS`, 00..09), with the current Python environment as
kernel and the project root as working directory, saving each executed notebook under the runs
folder. It then writes one HTML page: a header (params set, data, git commit, date, machine, wall
time), a table of contents, and every notebook's text, tables and figures, without code. A
notebook that fails is named in the report with the failing cell and error; its executed notebook
is kept.
Each notebook's last cell records its key numbers (`record`, `key_numbers`) as
<notebook>.results.json beside its executed notebook, for the tests to check.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from thesislib.atomic import atomic_write_text, ensure_writable
from thesislib.paths import project_root, runs_dir
from thesislib.study.config import ConfigError
from thesislib.study.grids import NOTEBOOKS, load_params
from thesislib.study.runs import git_commit

__all__ = ["build_report", "execute", "check_params", "stitch", "KERNEL_NAME", "record", "key_numbers", "RESULTS_ENV"]

KERNEL_NAME = "thesislib-current-env"
TITLES = {
    "00_data": "00 · Data", "01_depth": "01 · Depth (RQ1)", "02_optimisation": "02 · Optimisation (RQ2)",
    "03_cam_methods": "03 · CAM methods (RQ3)", "04_regularisation": "04 · Regularisation (RQ4)",
    "05_precode": "05 · PRECODE (RQ5)", "06_correlation": "06 · Accuracy and explainability (RQ6)",
    "07_optimizers": "07 · Optimisers", "08_dataset_size": "08 · Training-set size",
    "09_shortcut": "09 · A shortcut: what accuracy hides",
}


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
        ConfigError: an unknown key; or a `base`, `experiments` or `seeds` that does not make valid
            run configs (an unknown run setting, a value of the wrong type or out of range).
    """
    from thesislib.study.config import RunConfig
    from thesislib.study.grids import grid

    unknown = sorted(set(params) - set(notebook_keys))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: "
                          f"{', '.join(notebook_keys)}")
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


def build_report(params: str | os.PathLike = "params/default", *, data: str | None = None,
                 out: str | os.PathLike = "reports/index.html", notebooks: list[str] | None = None,
                 workdir: str | os.PathLike | None = None) -> bool:
    """Execute the notebooks with the params of `params` and write the HTML report to `out`.

    Args:
        params: folder with one <notebook>.yaml per notebook.
        data: a data folder (or a synthetic set, "synthetic-n400-s96") for every notebook, overriding the params.
        out: the HTML file.
        notebooks: a subset of notebook names; default all that have params.
        workdir: where executed notebooks go (default <runs>/notebooks/<params folder name>).

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
    all_params = {n: load_params(params_dir / f"{n}.yaml", keys=keys[n]) for n in names}
    if data is not None and not str(data).startswith("synthetic"):
        from thesislib.data import resolve_root, scan

        data = str(resolve_root(data))
        scan(data)  # a bad folder fails here, in one line, before any notebook starts
    for n in names:  # so does a bad params file
        check_params(all_params[n], keys[n], source=str(params_dir / f"{n}.yaml"), data=data)
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

    _print_plan(params_dir, names, all_params, data)
    t_start = time.time()
    outcomes = []
    for i, name in enumerate(names, 1):
        p = dict(all_params[name])
        if data is not None and "data" in keys[name]:  # 09_shortcut takes no data: it draws its own sets
            p["data"] = data
        if name == "06_correlation":
            p["params_dir"] = str(params_dir.resolve())
        _say(f"({i}/{len(names)}) {name} ...")
        t0 = time.time()
        ok, failure = execute(root / "notebooks" / f"{name}.ipynb", work / f"{name}.ipynb", p, cwd=root)
        seconds = time.time() - t0
        _say(f"({i}/{len(names)}) {name} {'done' if ok else 'FAILED: ' + str(failure)} in {seconds:.0f}s")
        outcomes.append(dict(name=name, ok=ok, failure=failure, seconds=seconds, path=work / f"{name}.ipynb"))
    wall = time.time() - t_start
    shutil.rmtree(kernels, ignore_errors=True)
    shown = params_dir.resolve()
    header = dict(params=str(shown.relative_to(root)) if shown.is_relative_to(root) else str(params),
                  data=data or _data_summary(all_params), commit=git_commit(root) or "unknown",
                  date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine=_machine(), wall=wall)
    html = stitch(outcomes, header)
    atomic_write_text(out, html)
    _say(f"wrote {out} ({len(html) / 1e6:.1f} MB) in {wall / 60:.1f} min; executed notebooks in {work}")
    return all(o["ok"] for o in outcomes)


def _print_plan(params_dir: Path, names: list[str], all_params: dict, data: str | None) -> None:
    """Before any notebook starts: the runs the notebooks' grids will compute and the time projected
    here (`thesislib.sweep.plan`; a notebook's extras beyond its grid, such as 03's sanity checks,
    are in its per-notebook share), and the command for a quicker look."""
    import io

    from thesislib.sweep import load_sweep, print_plan

    from thesislib.study.grids import load_params

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


def stitch(outcomes: list[dict], header: dict) -> str:
    """One HTML page from executed notebooks: header, contents, sections; no code, no logs."""
    from nbconvert import HTMLExporter

    book = nbformat.v4.new_notebook()
    book.metadata["title"] = "thesislib report"
    per_nb = "".join(f"<tr><td><a href='#{_anchor(o['name'])}'>{TITLES.get(o['name'], o['name'])}</a></td>"
                     f"<td>{'ok' if o['ok'] else '<b>failed</b>'}</td><td>{o['seconds']:.0f} s</td></tr>"
                     for o in outcomes)
    book.cells.append(nbformat.v4.new_markdown_cell(
        "# Influences on class-activation explainability: the report\n\n"
        "Which training choices change how well CAM explanations of a glaucoma classifier agree with "
        "where experts look, and does a more accurate model explain itself better? Each section answers one "
        "research question of the thesis, with the thesis's published numbers beside ours.\n\n"
        f"<table><tr><th>params</th><td>{_esc(header['params'])}</td></tr>"
        f"<tr><th>data</th><td>{_esc(header['data'])}</td></tr>"
        f"<tr><th>git commit</th><td>{_esc(header['commit'])}</td></tr>"
        f"<tr><th>date</th><td>{_esc(header['date'])}</td></tr>"
        f"<tr><th>machine</th><td>{_esc(header['machine'])}</td></tr>"
        f"<tr><th>wall time</th><td>{header['wall'] / 60:.1f} min</td></tr></table>\n\n"
        f"## Contents\n\n<table><tr><th>section</th><th>status</th><th>time</th></tr>{per_nb}</table>"))
    for o in outcomes:
        book.cells.append(nbformat.v4.new_markdown_cell(f"<a id='{_anchor(o['name'])}'></a>"))
        if not o["ok"]:
            book.cells.append(nbformat.v4.new_markdown_cell(
                f"# {TITLES.get(o['name'], o['name'])}\n\n"
                f"<div style='border:2px solid #c00;padding:8px'><b>This notebook failed</b>: {_esc(o['failure'])}. "
                f"The executed notebook, with the error, is kept at <code>{_esc(str(o['path']))}</code>.</div>"))
        if not Path(o["path"]).is_file():
            continue
        nb = nbformat.read(o["path"], as_version=4)
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                continue
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                # progress and warnings go to stderr: logs, not results
                cell.outputs = [x for x in cell.get("outputs", []) if not (x.get("output_type") == "stream"
                                                                           and x.get("name") == "stderr")]
                if not cell.outputs:
                    continue
            book.cells.append(cell)
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(book)
    # offline: drop scripts and stylesheets fetched from the network (require.js, MathJax)
    body = re.sub(r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>", "", body)
    body = re.sub(r"<link[^>]*\shref=[\"']https?://[^>]*>", "", body)
    # wide tables scroll instead of breaking "12.3 ± 0.4" over two lines
    return body.replace("</head>", "<style>.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th "
                                   "{white-space: nowrap;} .jp-OutputArea-output {overflow-x: auto;}</style>\n</head>", 1)


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
