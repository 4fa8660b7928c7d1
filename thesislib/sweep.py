"""Sweep: train and evaluate the grids of notebooks' params files, without the notebooks.

    thesislib sweep params/thesis/01_depth.yaml params/thesis/04_regularisation.yaml --executor slurm
    thesislib sweep params/default --dry-run     # every notebook of a scale: what is missing, and its cost

Each params file is read as its notebook reads it (the study design and its scale's shared.yaml
merged under it, see `thesislib.study.params.load_params`), so a sweep computes exactly the runs
the notebooks will then find in the cache. Where they compute comes from the params' `executor` key, overridden by the
flags (see `thesislib.study.executors`). This module imports nothing heavy until it runs, so
`thesislib sweep --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from thesislib.design import NOTEBOOKS

if TYPE_CHECKING:
    import pandas as pd

    from thesislib.study.executors import ExecutorSpec
    from thesislib.study.grids import Grid
    from thesislib.study.runs import Outcome, Run

__all__ = ["Sweep", "load_sweep", "estimate", "add_parser", "main"]



def __getattr__(name: str) -> Any:
    """`estimate` and `machine_speed` (of `thesislib.study.costs`), imported when first asked for."""
    if name in ("estimate", "machine_speed"):
        from thesislib.study import costs

        return getattr(costs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NOTEBOOKS_HELP = "files like params/default/01_depth.yaml, or a params folder for all its notebooks"

EPILOG = """\
executor (the params' `executor` key, overridden by the flags above):
  inline   one run after another in this process (the default on a GPU or a single core)
  local    a process pool on this machine, one process per core (the default on a multi-core CPU)
  slurm    one Slurm job per missing run, all submitted as one job array through submitit; needs
           sbatch and srun on PATH (a cluster's login node) and a runs folder the nodes share.
           A rerun submits only what is still missing; a job cancelled or killed mid-run
           resumes from its last finished epoch in the next sweep.

  In a params file (usually params/<scale>/shared.yaml):
    executor: {kind: slurm, partition: gpu, gpus_per_task: 1, cpus_per_task: 8, mem_gb: 32,
               time_min: 720, array_parallelism: 16, sbatch: {account: myproject}}

environment variables:
  THESISLIB_RUNS     the runs folder (default <project>/runs), unless --runs or the params' `runs`
  THESISLIB_DATA     the data folder for configs whose data is null (default: the embedded synthetic set)
  THESISLIB_WORKERS  processes of the local executor (default: one per core)
  THESISLIB_THREADS  torch threads per run on a CPU (default 1; slurm: --cpus-per-task)
  SLURM_CONF, SBATCH_*  read by Slurm's own commands (which cluster, default sbatch options)

exit status: 0 when every run is complete, 1 when some failed (each named with its error and
log), 2 for bad params or arguments.
"""


@dataclass
class Sweep:
    """The grids of some params files stacked into one Grid (its table, runs folder and executor
    spec), and the files it came from."""

    grid: "Grid"
    sources: list[Path]

    @property
    def runs_dir(self) -> Path:
        return Path(self.grid.runs_dir)

    @property
    def executor(self) -> "ExecutorSpec":
        return self.grid.executor

    def runs(self) -> list["Run"]:
        """The planned runs, one per distinct config, in grid order."""
        from thesislib.study.runs import plan

        configs = list({c: None for c in self.grid.table["config"]})
        return plan(configs, self.runs_dir)

    def parts(self, runs: list["Run"] | None = None) -> list[list[str]]:
        """The run ids of each params file, in file order, each run in the first file that has it:
        what each notebook of a report computes in turn (`plan` schedules each part on its own).
        `runs`: what `runs()` returned, if at hand (planning resolves every config's data again)."""
        table = self.grid.table
        sources = table["source"] if "source" in table else [""] * len(table)
        configs: dict = {}
        for config, source in zip(table["config"], sources):
            configs.setdefault(config, source)  # each config's first file, in the order of runs()
        first: dict[str, str] = {}
        for run, source in zip(self.runs() if runs is None else runs, configs.values()):
            first.setdefault(run.run_id, source)  # a run that two files evaluate differently: the first
        return [[i for i, s in first.items() if s == source] for source in dict.fromkeys(sources)]


def _files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Params files, with folders expanded to their notebooks' files in report order."""
    from thesislib.study.config import ConfigError

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / f"{n}.yaml" for n in NOTEBOOKS if (p / f"{n}.yaml").is_file()]
            if not found:
                raise ConfigError(f"{p}: no notebook params found (expected files like 01_depth.yaml)")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"{p}: params file not found (expected e.g. params/default/01_depth.yaml)")
    return out


def _grids(path: Path, params: dict[str, Any], data: str | None, runs: str | None) -> list["Grid"]:
    """The grids a notebook with these params computes (its experiments and RQ5's long run)."""
    from thesislib.study.grids import grid, long_run_experiments

    if "experiments" not in params:
        return []
    data = data if data is not None else params.get("data")
    out = [grid(params.get("base", {}), params["experiments"], params.get("seeds"), data=data, runs=runs,
                source=str(path))]
    if "long_run" in params:
        out.append(grid(params.get("base", {}), long_run_experiments(params["long_run"]), params.get("seeds"),
                        data=data, runs=runs, source=f"{path}: long_run"))
    return out


def _one(values: dict[Path, Any], key: str) -> Any:
    """The value every file gives `key`, or an error naming two files that disagree."""
    from thesislib.study.config import ConfigError

    def shown(value: Any) -> Any:
        return value.to_dict() or None if hasattr(value, "to_dict") else value

    items = list(values.items())
    for path, value in items[1:]:
        if value != items[0][1]:
            raise ConfigError(f"{key}: {items[0][0]} has {shown(items[0][1])!r} but {path} has {shown(value)!r}; a sweep "
                              f"has one {key} (sweep them separately, or give --{key.replace('_', '-')})")
    return items[0][1] if items else None


def load_sweep(paths: Sequence[str | os.PathLike], *, data: str | None = None, runs: str | os.PathLike | None = None,
               executor: "ExecutorSpec | dict | str | None" = None) -> Sweep:
    """Read params files (or folders) into one sweep.

    Args:
        paths: notebook params files, or params folders (all their notebooks).
        data: a data folder for every run (default: each file's `data`, else its base's).
        runs: the runs folder (default: the files' `runs`, else $THESISLIB_RUNS, else <project>/runs).
        executor: fields that override the files' `executor` (an ExecutorSpec, a mapping, a kind).

    Raises:
        ConfigError: a missing or bad file, or files that disagree on `runs` or `executor`.
    """
    import pandas as pd

    from thesislib.paths import runs_dir as default_runs_dir
    from thesislib.study.config import ConfigError
    from thesislib.study.executors import ExecutorSpec
    from thesislib.study.grids import Grid
    from thesislib.study.params import load_params

    files = _files(paths)
    params = {f: load_params(f) for f in files}
    runs = runs if runs is not None else _one({f: p.get("runs") for f, p in params.items()}, "runs")
    spec = _one({f: ExecutorSpec.from_params(p.get("executor"), source=f"{f}: executor") for f, p in params.items()},
                "executor")
    if executor is not None:
        if isinstance(executor, ExecutorSpec):
            executor = executor.to_dict()
        elif isinstance(executor, str):
            executor = {"kind": executor}
        spec = ExecutorSpec.from_params({**spec.to_dict(), **executor}, source="executor (params and flags)")
    frames = [g.table.assign(source=str(f)) for f, p in params.items()
              for g in _grids(f, p, data, None if runs is None else str(runs))]
    if not frames:
        raise ConfigError(f"{', '.join(map(str, files))}: no experiments to run (notebooks like 00_data and "
                          "06_correlation train nothing of their own)")
    return Sweep(Grid(pd.concat(frames, ignore_index=True), default_runs_dir(runs), spec), files)


# a notebook's own cost (kernel, imports, its extras, tables, figures): in the quiet default report of
# 2026-12-03, each notebook's time less its runs' wall time came to 252 s over 10 notebooks (03's
# sanity checks 75 s, 09's test sets 40 s, the others 13-26 s)
NOTEBOOK_SECONDS = 25.0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"


def workers_of(spec: "ExecutorSpec") -> int:
    """How many runs compute at once under `spec` on this machine (slurm: its array parallelism, or 0
    for as many as the cluster gives)."""
    from thesislib.study.executors import _default_workers

    if spec.kind == "slurm":
        return spec.array_parallelism or 0
    if spec.kind == "inline":
        return 1
    return _default_workers(spec.workers)


def plan(sweep: Sweep, *, notebooks: int = 0, speed: float | None = None) -> tuple[str, "pd.DataFrame"]:
    """The plan of a sweep before it starts, in one paragraph: runs to compute, and the time they
    are projected to take here (each params file's runs, CPU seconds from `estimate`, scheduled in
    turn on the runs computing at once, `makespan`; plus NOTEBOOK_SECONDS per notebook when
    `notebooks`, both at this machine's `speed`, measured when None); also `estimate`'s table."""
    from thesislib.study.costs import estimate, machine_speed, makespan
    from thesislib.study.runs import distinct as distinct_runs

    runs = sweep.runs()
    if speed is None and notebooks:
        speed = machine_speed()  # the notebooks' own work slows with the machine too
    est = estimate(runs, speed=speed)
    n_all = len(distinct_runs(runs))
    n_train = int((est["todo"] == "train + evaluate").sum())
    text = (f"plan: {n_all} runs, {n_all - len(est)} in the cache, {len(est)} to compute ({n_train} to train, "
            f"{len(est) - n_train} only to evaluate) on {sweep.executor.describe()}")
    workers = workers_of(sweep.executor)
    timed = est["seconds"].notna()
    if timed.any() and workers:
        seconds = est.groupby("run_id", sort=False)["seconds"].sum(min_count=1).dropna()
        wall = sum(makespan([seconds[i] for i in part if i in seconds.index], workers) for part in sweep.parts(runs))
        wall += notebooks * NOTEBOOK_SECONDS * (speed or 1.0)
        sources = " and ".join(sorted(set(est.loc[timed, "timed_by"])))
        own = (f", plus {NOTEBOOK_SECONDS * (speed or 1.0):.0f} s for each of {notebooks} notebooks' own work"
               if notebooks else "")
        text += (f"; projected {_minutes(wall)} here: {_minutes(est['seconds'].sum())} of compute over {workers} "
                 f"at once{own}, timed by {sources}")
        if not timed.all():
            text += f"; {int((~timed).sum())} runs have no cost to project by"
    elif not est.empty:
        text += "; no projection (no finished run of these models here, and no measured cost for them)"
    return text, est


QUICK_LOOK = ("make report PARAMS=params/smoke", "about 5 minutes on 2 cores")  # its report, as `make test` makes it


def print_plan(sweep: Sweep, out, *, notebooks: int = 0) -> "pd.DataFrame":
    """Print the plan (`plan`) and the command for a quicker look; return `estimate`'s table."""
    text, est = plan(sweep, notebooks=notebooks)
    print(text, file=out)
    if not est.empty and not any("smoke" in Path(f).parts for f in sweep.sources):
        print(f"a quicker look: {QUICK_LOOK[0]} ({QUICK_LOOK[1]})", file=out)
    return est


def _dry_run(sweep: Sweep, out) -> int:
    from thesislib.study.runs import _clock

    print(f"runs folder: {sweep.runs_dir}", file=out)
    print(f"params: {', '.join(map(str, sweep.sources))}", file=out)
    est = print_plan(sweep, out)
    if est.empty:
        return 0
    shown = est.assign(seconds=[_clock(s) if s == s else "?" for s in est["seconds"]])
    print(shown.to_string(index=False, justify="left",
                          formatters={"run": f"{{:<{shown['run'].str.len().max()}}}".format,
                                      "todo": f"{{:<{shown['todo'].str.len().max()}}}".format}), file=out)
    print(f"total: {est['train_images'].sum():,} training images, {est['maps'].sum():,} maps, "
          f"{est['scorecam_forwards'].sum():,} Score-CAM forwards; seconds are CPU seconds of one thread "
          "(runs folder: finished runs of the same model and data, on the machines that made them; measured "
          "costs: thesislib/study/costs.json scaled by this machine's speed now)", file=out)
    return 0


# -- command line ----------------------------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand to an argparse subparsers object."""
    p = sub.add_parser("sweep", help="train and evaluate the runs of params files (locally or on Slurm)",
                       description=__doc__.splitlines()[0], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("params", nargs="+", type=Path, metavar="PARAMS", help=_NOTEBOOKS_HELP)
    p.add_argument("--executor", choices=("inline", "local", "slurm"), default=None,
                   help="where runs compute (default: the params' executor, else inline on a GPU, local on a CPU)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs missing from the cache and estimate their cost; compute nothing")
    p.add_argument("--data", default=None, metavar="DIR", help="data folder for every run (default: the params' data)")
    p.add_argument("--runs", type=Path, default=None, metavar="DIR", help="runs folder (default: the params' runs, else "
                   "$THESISLIB_RUNS, else <project>/runs)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads per run on a CPU")
    g = p.add_argument_group("local")
    g.add_argument("--workers", type=int, default=None, metavar="N", help="processes (default $THESISLIB_WORKERS, else one per core)")
    g = p.add_argument_group("slurm (each also an option of the params' executor, named with underscores)")
    g.add_argument("--partition", default=None, metavar="NAME", help="sbatch --partition (default: the cluster's default)")
    g.add_argument("--gpus-per-task", type=int, default=None, metavar="N", help="sbatch --gpus-per-task")
    g.add_argument("--cpus-per-task", type=int, default=None, metavar="N", help="sbatch --cpus-per-task (also the torch threads)")
    g.add_argument("--mem-gb", type=float, default=None, metavar="GB", help="sbatch --mem, in GB")
    g.add_argument("--time-min", type=int, default=None, metavar="MIN",
                   help="sbatch --time per run in minutes, at least 3 (default 240)")
    g.add_argument("--array-parallelism", type=int, default=None, metavar="N", help="at most this many runs at once")
    g.add_argument("--sbatch", action="append", default=None, metavar="KEY=VALUE",
                   help="a further sbatch option, e.g. --sbatch account=myproject --sbatch qos=normal "
                        "(--sbatch exclusive=true for a bare flag)")
    g.add_argument("--setup", action="append", default=None, metavar="LINE",
                   help="a shell line each job runs first, e.g. --setup 'module load cuda'")
    g.add_argument("--log-dir", default=None, metavar="DIR", help="log folder (default <runs>/slurm/<date>-<time>-<pid>)")
    p.set_defaults(func=main)
    return p


def _sbatch_options(items: list[str] | None) -> dict[str, Any] | None:
    from thesislib.study.config import ConfigError

    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--sbatch: expected KEY=VALUE (e.g. account=myproject), found {item!r}")
        out[key.strip().lstrip("-")] = True if value.lower() == "true" else value
    return out


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The executor fields the flags set."""
    flags = dict(kind=args.executor, threads=args.threads, workers=args.workers, partition=args.partition,
                 gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                 time_min=args.time_min, array_parallelism=args.array_parallelism,
                 sbatch=_sbatch_options(args.sbatch), setup=args.setup, log_dir=args.log_dir)
    return {k: v for k, v in flags.items() if v is not None}


def run_sweep(sweep: Sweep, *, progress: bool = True) -> "Outcome":
    """Compute what is missing of a sweep; failures are in the Outcome, the others complete."""
    from thesislib.study.runs import compute

    return compute(sweep.runs(), executor=sweep.executor, progress=progress)


def main(args: argparse.Namespace, out=None) -> int:
    """`thesislib sweep`: 0 when every run is complete, 1 when some failed."""
    out = out or sys.stdout
    sweep = load_sweep(args.params, data=args.data, runs=args.runs, executor=spec_overrides(args) or None)
    if args.dry_run:
        return _dry_run(sweep, out)
    print_plan(sweep, out)
    outcome = run_sweep(sweep)
    if outcome.failures:
        print(f"thesislib: {len(outcome.failures)} of {len(outcome.submitted)} runs failed "
              "(the others are complete; a rerun computes only what is missing):", file=sys.stderr)
        for line in outcome.failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
