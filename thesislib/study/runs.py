"""Runs: each config is trained once into its own directory and reused by every notebook.

    runs/<run_id>/                 run_id = hash of the training fields and the data's content
        config.json                the full config, the data folder and its fingerprint
        meta.json                  git commit, versions, device, threads, timings
        history.csv                one row per epoch
        best.pt                    lowest-validation-loss weights (state dict; weights_only)
        last.pt                    resumable state while training; removed once done
        done.json                  written last: training is complete (summary, and whether the
                                   best checkpoint learned more than the majority class)
        eval/<eval_id>/<id>.csv    per-image metrics of one method or reference map for one set
                                   of evaluation settings
        eval/<eval_id>/summary.csv their per-method means (%)
    runs/cache/                    decoded data sets

Work goes through an executor with `submit(fn, *args) -> future` (`.done()`, `.result()`):
in-process, a local process pool (default on a multi-core CPU), or a Slurm cluster (see
`thesislib.study.executors`); each computes one run with `thesislib.study.worker.compute_one`. Every file is written atomically and done.json last; a run that was
interrupted (even by kill -9) resumes from its last epoch; a finished run is never recomputed, and
only missing evaluations are added to it. A file lock per run (<run>/.lock, released by the
operating system when its holder dies) keeps two sweeps on one runs folder from computing the same
run twice.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


from thesislib.atomic import atomic_write_text, ensure_writable
from thesislib.study.config import RunConfig
from thesislib.study.executors import ExecutorSpec, InlineExecutor, default_executor, executor_of
from thesislib.study.runfolder import CheckpointError, Run, initial_fingerprint, say as _say  # noqa: F401 (named here as before)
from thesislib.study.worker import compute_one, git_commit  # what executors run; named here as before

__all__ = ["Run", "RunError", "CheckpointError", "Outcome", "plan", "compute_one", "compute", "run_label", "distinct",
           "run_all", "InlineExecutor", "default_executor", "git_commit", "initial_fingerprint"]


class RunError(RuntimeError):
    """Some runs failed; the others were kept. The message lists each failure and its log."""


def plan(configs: Iterable[RunConfig], runs_dir: str | os.PathLike | None = None) -> list[Run]:
    """Resolve each config's data folder and content hash, and so its run directory."""
    from thesislib.data import fingerprint, resolve_root, scan
    from thesislib.paths import runs_dir as default_runs_dir

    root_dir = default_runs_dir(runs_dir)
    fingerprints: dict[Path, str] = {}
    out = []
    for cfg in configs:
        root = resolve_root(cfg.data)
        if root not in fingerprints:
            fingerprints[root] = fingerprint(scan(root))
        out.append(Run(cfg, root, fingerprints[root], root_dir))
    return out


def run_label(run: Run) -> str:
    """A run in a few words: "resnet50 bs=32 ep=10 dropout=0.5 seed=0"."""
    c = run.config
    parts = [f"resnet{c.depth}", f"bs={c.batch_size}", f"ep={c.epochs}"]
    if c.norm != "none":
        parts.append(f"norm={c.norm}" + (f"({c.groups})" if c.norm == "group" else ""))
    if c.penalty != "none":
        parts.append(f"{c.penalty}={c.penalty_lambda:g}")
    if c.dropout:
        parts.append(f"dropout={c.dropout:g}")
    if c.precode_k:
        parts.append(f"precode(k={c.precode_k},beta={c.precode_beta:g})")
    parts.append(f"seed={c.seed}")
    return " ".join(parts)


@dataclass
class Outcome:
    """What one `compute` call did."""

    total: int = 0  # distinct runs (x evaluation settings) asked for
    cached: int = 0  # complete before the call
    submitted: list[str] = field(default_factory=list)  # run ids handed to the executor
    trained: list[str] = field(default_factory=list)  # run ids trained by this call
    evaluated: list[str] = field(default_factory=list)  # run ids that got new evaluations
    failures: list[str] = field(default_factory=list)  # one line each: run, error, log
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.total} runs: {self.cached} in the cache, {len(self.submitted)} computed ({len(self.trained)} "
                f"trained, {len(self.evaluated)} evaluated, {len(self.failures)} failed) in {_clock(self.seconds)}")


def distinct(runs: Iterable[Run]) -> list[Run]:
    """One run per run id and evaluation settings, scoring the union of the methods and reference
    maps asked for (so a run two notebooks share is trained and evaluated by one task)."""
    merged: dict[tuple[str, str], Run] = {}
    for r in runs:
        key = (r.run_id, r.config.eval_id())
        if key in merged:
            c = merged[key].config
            union = dict(methods=list(dict.fromkeys(c.methods + r.config.methods)),
                         references=list(dict.fromkeys(c.references + r.config.references)))
            if (tuple(union["methods"]), tuple(union["references"])) != (c.methods, c.references):
                merged[key] = Run(c.replace(**union), r.data_root, r.fingerprint, r.runs_dir)
        else:
            merged[key] = r
    return list(merged.values())


def _clock(seconds: float) -> str:
    """1:05, or 1:02:03 past an hour."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _headline(exc: BaseException) -> str:
    """One line for a failure: the exception, or the last line of a traceback carried as text (Slurm)."""
    text = str(exc)
    if "Traceback (most recent call last)" in text:
        block = text[text.index("Traceback (most recent call last)"):].split("\n" + "-" * 10)[0]
        lines = [line for line in block.splitlines() if line.strip()]
        return lines[-1].strip()
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def compute(runs: Iterable[Run], *, executor=None, workers: int | None = None, threads: int | None = None,
            progress: bool = True) -> Outcome:
    """Compute what is missing of `runs`; a failed run is reported and the others go on.

    Args:
        runs: planned runs (see `plan`), all in one runs folder; duplicates are computed once
            (see `distinct`).
        executor: an executor object (anything with submit(fn, *args, **kwargs) returning futures
            with done() and result(); with a batch() context, e.g. submitit's, all are submitted
            as one job array), or what a params file's `executor` key holds (None, "inline",
            "local", "slurm", a mapping, an ExecutorSpec; see `thesislib.study.executors`).
        workers: processes of a local pool (overrides the spec's).
        threads: torch threads per run on the CPU (default: the spec's, else $THESISLIB_THREADS or
            1); results are reproducible for the same seed and thread count.
        progress: print a line to stderr as each run finishes: done/total, elapsed, estimated time left.

    Returns:
        The Outcome; each failure names the run, its error and its logs (the traceback is in
        <run>/error.txt). Nothing of a failed run is taken as done by the cache.
    """
    t_start = time.time()
    runs = list(runs)
    unique = distinct(runs)
    todo = [r for r in unique if not r.complete]
    out = Outcome(total=len(unique), cached=len(unique) - len(todo))
    if not todo:
        if progress and unique:
            _say(f"all {len(unique)} runs are in the cache")
        return out
    ensure_writable(todo[0].runs_dir, "runs folder (THESISLIB_RUNS)")  # fail now, not in every worker
    executor = executor_of(executor)  # as it is where a grid or params parsed it already
    own = isinstance(executor, ExecutorSpec)
    if own:
        spec = executor.override(workers=workers)
        threads = threads or spec.run_threads()
        executor = spec.create(todo[0].runs_dir)
        where = spec.describe()
    else:
        threads = threads or int(os.environ.get("THESISLIB_THREADS", "1"))
        where = type(executor).__name__
    if progress:
        log = getattr(executor, "folder", None)
        _say(f"{len(unique)} runs: {out.cached} in the cache, computing {len(todo)} on {where}"
             + (f"; Slurm logs in {log}" if log else ""))
    pending = {}
    try:
        batch = getattr(executor, "batch", None)
        with batch() if callable(batch) else contextlib.nullcontext():
            for r in todo:
                fut = executor.submit(compute_one, r.config.to_dict(), str(r.data_root), str(r.runs_dir), threads=threads)
                pending[fut] = r
        out.submitted = [r.run_id for r in todo]
        while pending:
            finished = 0
            for fut in list(pending):
                if not fut.done():
                    continue
                finished += 1
                r = pending.pop(fut)
                line = _collect(fut, r, out)
                if progress:
                    done = len(todo) - len(pending)
                    elapsed = time.time() - t_start
                    left = f", ~{_clock(elapsed / done * len(pending))} left" if pending else ""
                    _say(f"[{done}/{len(todo)}, {_clock(elapsed)} elapsed{left}] {line}")
            if not finished:
                time.sleep(0.2)
    except BaseException:
        if own:  # interrupted: drop what has not started
            executor.shutdown(wait=False, cancel_futures=True)
            own = False
        jobs = [str(f.job_id) for f in pending if getattr(f, "job_id", None)]
        if progress and jobs:
            _say(f"stopped waiting; {len(jobs)} Slurm jobs may still be queued or running ({', '.join(jobs[:5])}"
                 f"{', ...' if len(jobs) > 5 else ''}): `scancel` them, or let them finish, and rerun the sweep")
        raise
    finally:
        if own:
            executor.shutdown(wait=True)
    out.seconds = time.time() - t_start
    if progress:
        _say(str(out))
    return out


def _collect(fut, r: Run, out: Outcome) -> str:
    """Record a finished future in `out` (a failure with its logs); return a line saying what happened."""
    try:
        res = fut.result()
    except Exception as exc:  # keep going: finished runs are kept, failures reported at the end
        log = r.dir / "error.txt"
        try:
            atomic_write_text(log, getattr(fut, "traceback", None) or "".join(traceback.format_exception(exc)))
        except OSError as err:  # a full disk: the failure is still reported, without its log
            log = f"not written: {err}"
        slurm_log = getattr(fut, "log", None) or getattr(getattr(fut, "paths", None), "stderr", None)  # submitit's
        logs = f"log: {log}" + (f", Slurm log: {slurm_log}" if slurm_log else "")
        out.failures.append(f"{r.run_id} ({run_label(r)}): {_headline(exc)} [{logs}]")
        return f"{r.run_id} FAILED: {_headline(exc)} [{logs}]"
    (r.dir / "error.txt").unlink(missing_ok=True)  # from an earlier attempt
    s = res["summary"]
    what = []
    if res["trained"]:
        out.trained.append(r.run_id)
        what.append(f"trained in {s['train_seconds']:.0f}s (best epoch {s['best_epoch']}, "
                    f"val acc {100 * s['best_val_acc']:.1f}%)")
    if res["evaluated"]:
        out.evaluated.append(r.run_id)
        what.append("evaluated " + ", ".join(res["evaluated"]))
    return f"{r.run_id} {run_label(r)}: " + ("; ".join(what) or "done by another sweep")


def run_all(configs: Iterable[RunConfig], *, runs_dir: str | os.PathLike | None = None, executor=None,
            workers: int | None = None, threads: int | None = None, progress: bool = True) -> list[Run]:
    """Make sure every config is trained and evaluated; compute only what is missing.

    Args:
        configs: run configs (duplicates are computed once).
        runs_dir: the runs folder (default: see `thesislib.paths.runs_dir`).
        executor, workers, threads, progress: see `compute`; executor default: a params file's
            default (inline on a GPU or one core, else a local process pool).

    Returns:
        The runs, in the order of `configs`.

    Raises:
        RunError: some runs failed (after all others finished); each failure's traceback is in
            its run directory as error.txt.
    """
    runs = plan(configs, runs_dir)
    out = compute(runs, executor=executor, workers=workers, threads=threads, progress=progress)
    if out.failures:
        raise RunError(f"{len(out.failures)} of {len(out.submitted)} runs failed:\n" + "\n".join(out.failures))
    return runs
