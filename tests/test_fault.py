"""Interruptions lose nothing: workers killed with SIGKILL at random points, and two sweeps at once."""

import os
import random
import signal
import threading
import time
from pathlib import Path

import pandas as pd

from thesislib import study
from thesislib.study.config import RunConfig
from thesislib.study.executors import local_executor

TINY = dict(input_size=64, stem="compact", width=0.0625, depth=18, batch_size=32, eval_images=4,
            methods=["gradcam"], references=["prior"])


def _configs(synth_root) -> list[RunConfig]:
    base = RunConfig.from_dict({**TINY, "data": str(synth_root), "epochs": 3, "track_every": 1, "track_images": 4})
    # the dropout run draws from the global RNG while training: resuming must restore it too
    return [base, base.replace(seed=1), base.replace(seed=2, dropout=0.5)]


def _files(folder: Path) -> dict[Path, int]:
    """Every file under `folder` with its modification time (ns)."""
    out = {}
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                out[p] = p.stat().st_mtime_ns
        except FileNotFoundError:  # renamed or removed while listing
            pass
    return out


class _Killer(threading.Thread):
    """Kills one worker of `pool` with SIGKILL after `events` file writes under `folder` (and a
    random moment more), unless `stop` is set first; records done.json times as first seen.

    The run `held` waits after each epoch while held at the `gate`: once it announces one, nothing
    more comes of it, so the kill comes then at the latest. A sweep in which the held run still
    trains cannot end before the kill, however fast or slow the machine.
    """

    def __init__(self, pool, folder: Path, rng: random.Random, done_seen: dict[Path, int], gate, held) -> None:
        super().__init__(daemon=True)
        self.pool, self.folder, self.rng, self.done_seen = pool, folder, rng, done_seen
        self.gate, self.held = gate, held
        self.events, self.pause = rng.randint(0, 10), rng.uniform(0, 0.3)
        self.stop, self.killed = threading.Event(), False

    def run(self) -> None:
        try:
            self._watch_and_kill()
        finally:
            if not self.killed:  # never leave the sweep waiting on a run nobody kills
                self.gate.release(self.held)

    def _watch_and_kill(self) -> None:
        seen, changes = _files(self.folder), 0
        while not self.stop.is_set() and changes < self.events and not self.gate.epochs(self.held):
            time.sleep(0.01)
            now = _files(self.folder)
            changes += sum(1 for p, t in now.items() if seen.get(p) != t)
            seen = now
            for p, t in now.items():
                if p.name == "done.json":
                    self.done_seen.setdefault(p, t)
        if self.stop.wait(self.pause):
            return
        self.gate.until(lambda: self.stop.is_set() or self.pool._processes, "the pool's workers")  # started on demand
        workers = list(self.pool._processes or {})  # the pool's worker pids (private, stable since Python 3.2)
        if workers and not self.stop.is_set():
            try:
                os.kill(self.rng.choice(workers), signal.SIGKILL)
                self.killed = True
            except ProcessLookupError:  # it had just exited
                pass


def _same_numbers(a: study.Run, b: study.Run) -> None:
    assert a.run_id == b.run_id
    pd.testing.assert_frame_equal(a.images().drop(columns="seconds"), b.images().drop(columns="seconds"))
    pd.testing.assert_frame_equal(a.history().drop(columns="seconds"), b.history().drop(columns="seconds"))
    drop = ("train_seconds",)
    assert {k: v for k, v in a.summary().items() if k not in drop} == \
           {k: v for k, v in b.summary().items() if k not in drop}


def test_workers_killed_at_random_points_lose_nothing_and_duplicate_nothing(synth_root, tmp_path, gate):
    configs = _configs(synth_root)
    reference = study.run_all(configs, runs_dir=tmp_path / "uninterrupted", executor="inline", progress=False)
    folder = tmp_path / "killed"
    held = study.plan(configs, folder)[2]  # the dropout run: resuming must restore its global RNG too
    rng = random.Random(20240611)
    interrupted, done_seen = 0, {}
    for sweep in range(6):
        if all(r.complete for r in study.plan(configs, folder)):
            break
        gate.forget(held)
        if not held.trained:  # it trains one epoch at most per sweep: three sweeps at least are interrupted
            gate.hold(held)
        pool = local_executor(2)
        killer = _Killer(pool, folder, rng, done_seen, gate, held)
        if sweep == 0:  # the first kill comes when the held run has checkpointed epoch 1: it is resumed
            killer.events = float("inf")
        killer.start()
        try:
            study.run_all(configs, runs_dir=folder, executor=pool, progress=False)
        except study.RunError as err:
            assert "BrokenProcessPool" in str(err) or "terminated abruptly" in str(err), str(err)
            interrupted += 1
        finally:
            killer.stop.set()
            killer.join()
            pool.shutdown(wait=True)
            gate.release(held)
    assert interrupted >= 3, f"only {interrupted} sweeps were interrupted by a kill"

    out = study.compute(study.plan(configs, folder), executor="inline", progress=False)  # the rerun
    assert not out.failures
    runs = study.plan(configs, folder)
    assert all(r.complete for r in runs)
    assert study.compute(runs, executor="inline", progress=False).submitted == []
    # none duplicated: one folder per run, each epoch and image once, and no finished run trained again
    assert {p.name for p in folder.iterdir()} - {"cache"} == {r.run_id for r in reference}
    for r in runs:
        assert list(r.history()["epoch"]) == list(range(1, r.config.epochs + 1))
        assert not r.images().duplicated(["method", "image"]).any()
        assert not (r.dir / "last.pt").exists()
        assert not [p for p in r.dir.rglob(".*.*") if not p.name.startswith(".error.txt.")], "debris left"
    for path, first in done_seen.items():
        assert path.stat().st_mtime_ns == first, f"{path} was written again after the run was done"
    for a, b in zip(runs, reference):
        _same_numbers(a, b)


class _Counting:
    """A local pool of one worker that keeps what was submitted to it."""

    def __init__(self) -> None:
        self.pool, self.submitted = local_executor(1), []

    def submit(self, fn, *args, **kwargs):
        self.submitted.append(args[0]["seed"])
        return self.pool.submit(fn, *args, **kwargs)


def test_two_sweeps_at_once_train_each_run_once(synth_root, tmp_path, gate):
    runs = study.plan(_configs(synth_root)[:2], tmp_path)
    # the first run waits after its first epoch until both sweeps have submitted both runs: both
    # set out to compute both, and neither can finish anything before the other has started
    gate.hold(runs[0])
    executors = [_Counting(), _Counting()]
    outcomes, errors = [], []

    def sweep(executor) -> None:
        try:
            outcomes.append(study.compute(runs, executor=executor, progress=False))
        except Exception as err:  # reported below
            errors.append(err)

    sweeps = [threading.Thread(target=sweep, args=(ex,)) for ex in executors]
    try:
        for t in sweeps:
            t.start()
        gate.until(lambda: all(len(ex.submitted) == 2 for ex in executors), "both sweeps submitting both runs",
                   alive=lambda: all(t.is_alive() for t in sweeps))
        gate.wait(runs[0], 1)
        gate.release(runs[0])
        for t in sweeps:
            t.join(gate.hang_s)
    finally:
        gate.release(runs[0])
        for ex in executors:
            ex.pool.shutdown(wait=True)
    assert not errors and len(outcomes) == 2 and not any(o.failures for o in outcomes), errors
    assert all(len(o.submitted) == 2 for o in outcomes)  # both set out to compute both runs ...
    trained = sorted(rid for o in outcomes for rid in o.trained)
    assert trained == sorted(r.run_id for r in runs)  # ... and each run was trained by one of them
    assert all(r.complete for r in runs)
