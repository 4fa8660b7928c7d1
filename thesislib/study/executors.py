"""Executors: where runs are computed - in this process, a local process pool, or a Slurm cluster.

A params file (usually its scale's shared.yaml) names one with an `executor` key, and
`thesislib sweep` flags override its fields:

    executor: null      # inline on a GPU or a single core, else a local pool (one process per core)
    executor: local     # or inline, or slurm with the defaults below
    executor: {kind: slurm, partition: gpu, gpus_per_task: 1, cpus_per_task: 8, mem_gb: 32,
               time_min: 720, array_parallelism: 16, sbatch: {account: myproject}, setup: [module load cuda]}

`ExecutorSpec.from_params(value)` checks such a value strictly; `spec.create(runs_dir)` builds the
executor. Every executor has `submit(fn, *args, **kwargs)` returning a future with done() and
result(); the Slurm one also has `batch()`, inside which submissions become one job array,
and writes its logs into one folder per sweep (<runs>/slurm/<date>-<time>-<pid> by default).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from thesislib.study.config import ConfigError

__all__ = ["KINDS", "Executor", "ExecutorSpec", "InlineExecutor", "SlurmExecutor", "default_executor", "executor_of",
           "local_executor"]

KINDS = ("inline", "local", "slurm")


@runtime_checkable
class Executor(Protocol):
    """Anything runs can be computed on: `submit(fn, *args, **kwargs)` returns a future with done()
    and result() (concurrent.futures' executors, submitit's, ours)."""

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> Any: ...


class _Lazy:
    """A future of the inline executor: computed, in this process, the first time it is asked for."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict) -> None:
        self._call = (fn, args, kwargs)
        self._exc: BaseException | None = None
        self._value: Any = None
        self.traceback: str | None = None

    def _compute(self) -> None:
        if self._call is None:
            return
        fn, args, kwargs = self._call
        self._call = None
        try:
            self._value = fn(*args, **kwargs)
        except Exception as exc:  # re-raised by result(), as a real future would
            self._exc = exc
            self.traceback = traceback.format_exc()

    def done(self) -> bool:
        self._compute()
        return True

    def result(self, timeout: float | None = None) -> Any:
        self._compute()
        if self._exc is not None:
            raise self._exc
        return self._value


class InlineExecutor:
    """Runs each submitted call in this process, one at a time, when its result is first asked for
    (so a caller that reports each finished future reports each run as it finishes)."""

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> _Lazy:
        return _Lazy(fn, args, kwargs)

    def shutdown(self, wait: bool = True, **_: Any) -> None:
        pass


def local_executor(workers: int | None = None) -> cf.ProcessPoolExecutor:
    """A pool of `workers` processes (default $THESISLIB_WORKERS, else one per core).

    Workers start from a fork server that has imported the study code once (where the platform
    has one; else they are spawned), so a pool starts in a moment, its workers skip seconds of
    imports each, and they hold no state of the caller's. A forked worker would inherit the fork
    server's environment, fixed when the server started; each worker takes the caller's THESISLIB_*
    variables as they are when the pool is created instead.
    """
    workers = workers or int(os.environ.get("THESISLIB_WORKERS", "0")) or os.cpu_count() or 1
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # pytorch_grad_cam (and sklearn, cv2 behind it) is imported at the first explanation: seconds
        ctx.set_forkserver_preload(["thesislib.study.runs", "pytorch_grad_cam"])
    else:
        ctx = mp.get_context("spawn")
    ours = {k: v for k, v in os.environ.items() if k.startswith("THESISLIB_")}
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_take_environment,
                                  initargs=(ours,))


def _take_environment(ours: dict[str, str]) -> None:
    """A pool worker's initializer: the THESISLIB_* variables are `ours`, exactly."""
    for k in [k for k in os.environ if k.startswith("THESISLIB_") and k not in ours]:
        del os.environ[k]
    os.environ.update(ours)


def _default_workers(workers: int | None) -> int:
    """`workers`, else $THESISLIB_WORKERS, else 1 on a GPU machine and one per core on a CPU."""
    if workers is not None:
        return workers
    import torch

    return int(os.environ.get("THESISLIB_WORKERS", "0")) or (1 if torch.cuda.is_available() else os.cpu_count() or 1)


def default_executor(workers: int | None = None):
    """Inline for one worker or a GPU; else a local pool of `workers` processes (default: one per core)."""
    workers = _default_workers(workers)
    if workers <= 1:
        return InlineExecutor()
    return local_executor(workers)


# -- Slurm ------------------------------------------------------------------------------------

# states in which a Slurm job ends without running to its end (no result file will come)
_ENDED = ("CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "FAILED")


class _SlurmFuture:
    """A submitit job as a future: done() and result(), plus `log` (its stderr file)."""

    def __init__(self, job, owner: "SlurmExecutor") -> None:
        self._job = job
        self._owner = owner

    @property
    def job_id(self) -> str:
        return self._job.job_id

    @property
    def log(self) -> Path:
        return Path(self._job.paths.stderr)

    def _ended(self) -> str | None:
        state = self._job.watcher.get_state(self._job.job_id, mode="cache").split(" ")[0].upper()
        return state if state in _ENDED and not self._job.paths.result_pickle.exists() else None

    def done(self) -> bool:
        self._owner.poll()
        return self._job.done()

    def result(self, timeout: float | None = None) -> Any:
        state = self._ended()
        if state is not None:  # do not wait for a result file that cannot come
            from submitit.core.utils import UncompletedJobError

            raise UncompletedJobError(f"Slurm job {self.job_id} ended {state} before it finished")
        return self._job.result()


class SlurmExecutor:
    """submitit's SlurmExecutor with the options of an ExecutorSpec; `batch()` makes one job array."""

    poll_s = 10.0  # at most one forced Slurm state query per this many seconds

    def __init__(self, spec: "ExecutorSpec", folder: Path) -> None:
        import submitit

        missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
        if missing:
            raise ConfigError(f"executor: kind slurm needs Slurm's sbatch and srun on PATH, found no {' or '.join(missing)} "
                              "(run the sweep on a machine of the cluster, or use the executor local)")
        self.folder = folder
        self._ex = submitit.SlurmExecutor(folder=folder, python=spec.python)
        params: dict[str, Any] = dict(job_name="thesislib", time=spec.time_min, partition=spec.partition,
                                      gpus_per_task=spec.gpus_per_task, cpus_per_task=spec.cpus_per_task,
                                      mem=f"{int(spec.mem_gb * 1024)}MB" if spec.mem_gb else None,
                                      array_parallelism=spec.array_parallelism,
                                      additional_parameters=dict(spec.sbatch) or None,
                                      setup=list(spec.setup) or None)
        self._ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        self._last_poll = time.monotonic()

    @property
    def parameters(self) -> dict[str, Any]:
        """The sbatch parameters every job gets (submitit's names)."""
        return dict(self._ex.parameters)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        with self._ex.batch():
            yield

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> _SlurmFuture:
        return _SlurmFuture(self._ex.submit(fn, *args, **kwargs), self)

    def poll(self) -> None:
        """Ask Slurm for the state of every job, at most every `poll_s` seconds (result files are
        seen at once; this catches jobs that ended without one: cancelled, timed out, killed)."""
        from submitit.slurm.slurm import SlurmJob

        if time.monotonic() - self._last_poll >= self.poll_s:
            self._last_poll = time.monotonic()
            SlurmJob.watcher.update()

    def shutdown(self, wait: bool = True, **_: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"SlurmExecutor(folder={str(self.folder)!r})"


# -- the spec ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecutorSpec:
    """Where runs compute, as a params file or `thesislib sweep` states it.

    kind: "inline" (this process, one run after another), "local" (a process pool on this
    machine), "slurm" (one Slurm job per run, submitted as one job array), or None: inline on a
    GPU or a single core, else local. The other fields apply to the kinds named beside them and
    are ignored by the others, so one params file can hold a cluster's options and still be run
    with `--executor local`.
    """

    kind: str | None = None
    threads: int | None = None  # all: torch threads per run on a CPU (default $THESISLIB_THREADS or 1; slurm: cpus_per_task)
    workers: int | None = None  # local: processes (default $THESISLIB_WORKERS, else one per core)
    partition: str | None = None  # slurm: --partition (default: the cluster's default partition)
    gpus_per_task: int | None = None  # slurm: --gpus-per-task
    cpus_per_task: int | None = None  # slurm: --cpus-per-task
    mem_gb: float | None = None  # slurm: --mem, in GB
    time_min: int = 240  # slurm: --time, minutes per run (a job at its limit is resumed by the next sweep)
    array_parallelism: int | None = None  # slurm: at most this many runs at once (--array=0-N%P)
    sbatch: dict[str, Any] = field(default_factory=dict)  # slurm: further sbatch options, e.g. {account: x, qos: y}
    setup: tuple[str, ...] = ()  # slurm: shell lines run before each job (module load ..., source venv)
    log_dir: str | None = None  # slurm: the sweep's log folder (default <runs>/slurm/<date>-<time>-<pid>)
    python: str | None = None  # slurm: the command that starts Python on the nodes (default: this interpreter)

    def __post_init__(self) -> None:
        if isinstance(self.setup, (list, tuple)):
            object.__setattr__(self, "setup", tuple(self.setup))
        self._validate()

    @classmethod
    def from_params(cls, value: Any, *, source: str = "executor") -> "ExecutorSpec":
        """An `executor` params value: None, a kind ("local"), a mapping of fields, or a spec.

        Raises:
            ConfigError: naming `source`, the key, what was found and what is expected.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: expected null, one of {', '.join(KINDS)}, or a mapping with a 'kind' "
                              f"and its options, found {value!r}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(allowed)}")
        try:
            return cls(**value)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    def override(self, **changes: Any) -> "ExecutorSpec":
        """A copy with the given fields changed; None values leave a field as it is (unset flags)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults (what a params file would hold)."""
        default = ExecutorSpec()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def _validate(self) -> None:
        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{key}: expected {expected}, found {getattr(self, key)!r}")

        def integer(key: str, lo: int, optional: bool = True) -> None:
            v = getattr(self, key)
            if (v is not None or not optional) and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
                fail(key, f"an integer >= {lo}" + (" or null" if optional else ""))

        if self.kind is not None and self.kind not in KINDS:
            fail("kind", "one of " + ", ".join(KINDS) + " or null")
        for key in ("threads", "workers", "gpus_per_task", "cpus_per_task", "array_parallelism"):
            integer(key, 1 if key != "gpus_per_task" else 0)
        integer("time_min", 3, optional=False)  # submitit signals a job 90 s before its limit: shorter ones misfire
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float))
                                        or self.mem_gb <= 0):
            fail("mem_gb", "a positive number of GB or null")
        for key in ("partition", "log_dir", "python"):
            if getattr(self, key) is not None and not (isinstance(getattr(self, key), str) and getattr(self, key)):
                fail(key, "a non-empty string or null")
        if not isinstance(self.sbatch, dict) or not all(isinstance(k, str) for k in self.sbatch) \
                or not all(isinstance(v, (str, int, float, bool)) for v in self.sbatch.values()):
            fail("sbatch", "a mapping of sbatch option names to values, e.g. {account: myproject, qos: normal}")
        if not isinstance(self.setup, tuple) or not all(isinstance(line, str) for line in self.setup):
            fail("setup", "a list of shell lines, e.g. [module load cuda]")

    # -- building ----------------------------------------------------------------------------
    def resolved_kind(self) -> str:
        """The kind, with None resolved as `default_executor` would."""
        if self.kind is not None:
            return self.kind
        return "local" if _default_workers(self.workers) > 1 else "inline"

    def run_threads(self) -> int:
        """Torch threads per run on a CPU."""
        if self.threads is not None:
            return self.threads
        if self.kind == "slurm" and self.cpus_per_task:
            return self.cpus_per_task
        return int(os.environ.get("THESISLIB_THREADS", "1"))

    def log_folder(self, runs_dir: str | os.PathLike) -> Path:
        """The Slurm log folder of a sweep started now."""
        if self.log_dir:
            return Path(self.log_dir).expanduser().resolve()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path(runs_dir) / "slurm" / f"{stamp}-{os.getpid()}"

    def create(self, runs_dir: str | os.PathLike):
        """The executor: InlineExecutor, a process pool, or a SlurmExecutor logging under `runs_dir`."""
        if self.kind is None:
            return default_executor(self.workers)
        if self.kind == "inline":
            return InlineExecutor()
        if self.kind == "local":
            return local_executor(self.workers)
        return SlurmExecutor(self, self.log_folder(runs_dir))

    def describe(self) -> str:
        """One line: the kind and the options that apply to it."""
        kind = self.resolved_kind()
        keys = {"local": ("workers", "threads"), "inline": ("threads",),
                "slurm": ("partition", "gpus_per_task", "cpus_per_task", "mem_gb", "time_min", "array_parallelism",
                          "sbatch", "setup", "threads")}[kind]
        shown = {k: getattr(self, k) for k in keys if getattr(self, k) not in (None, {}, ())}
        return kind + (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else "")


def executor_of(value: Any, *, source: str = "executor") -> "ExecutorSpec | Executor":
    """An `executor` value parsed once, where it enters (params loaded, a grid made): an executor
    object (with submit()) as it is, anything else through `ExecutorSpec.from_params`.

    Raises:
        ConfigError: naming `source`, the key, what was found and what is expected.
    """
    if isinstance(value, Executor) and not isinstance(value, ExecutorSpec):
        return value
    return ExecutorSpec.from_params(value, source=source)
