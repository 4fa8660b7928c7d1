"""Executing one notebook: papermill with a kernel of this very environment, over local IPC sockets."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat


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


_PROGRESS = re.compile(r"^\s*(\[\d+/\d+ |\d+ of \d+ runs cached)")


def _quiet_papermill(record: logging.LogRecord) -> bool:
    """Show the runs' progress lines that notebooks print; drop papermill's chatter and cell outputs."""
    return record.levelno >= logging.WARNING or bool(_PROGRESS.match(record.getMessage()))
