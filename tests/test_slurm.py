"""Sweeps through a real Slurm cluster: the one-node cluster of .ci/slurm.sh, which `make test` starts.

Without such a cluster these tests skip and say why; under CI (CI=true) they fail instead.
The cluster has no accounting database: .ci/bin/sacct answers submitit's state queries from squeue.
"""

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pandas as pd
import pytest

from thesislib import study
from thesislib.study.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(input_size=64, stem="compact", width=0.0625, depth=18, epochs=1, batch_size=32, eval_images=4,
            methods=["gradcam"], references=["prior"])
BAD = {"norm": "group", "groups": 48}  # valid config; 3 groups do not divide layer1's 4 channels: fails in the job
SLURM = {"kind": "slurm", "time_min": 60}  # a limit only against a hang: a busy machine may be slow


def _cluster() -> tuple[str | None, str | None]:
    """(SLURM_CONF, None) when a Slurm cluster answers with a node up, else (None, why not)."""
    # the cluster of .ci/slurm.sh only, never one a user's own SLURM_CONF points at
    conf = str(Path(os.environ.get("SLURM_CI_DIR") or ROOT / "build" / "slurm") / "slurm.conf")
    start = "`.ci/slurm.sh start` installs Slurm with apt-get where missing and starts a one-node cluster; `make test` runs it"
    if shutil.which("sbatch") is None:
        return None, f"Slurm is not installed ({start})"
    if not Path(conf).is_file():
        return None, f"no Slurm cluster configured: {conf} is missing ({start})"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True,
                           text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, f"the Slurm cluster of {conf} does not answer within 120 s"
    if r.returncode or not any(s.startswith(("idle", "mixed", "allocated", "completing")) for s in r.stdout.split()):
        return None, f"the Slurm cluster of {conf} has no node up ({(r.stderr or r.stdout).strip()}; {start})"
    return conf, None


@pytest.fixture(scope="module")
def slurm():
    conf, why = _cluster()
    if conf is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Slurm to test against: {why}")
        pytest.skip(why)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", conf)
        mp.setenv("PATH", f"{ROOT / '.ci' / 'bin'}{os.pathsep}{os.environ['PATH']}")
        yield conf


def _config(synth_root, **changes) -> RunConfig:
    return RunConfig.from_dict({**TINY, "data": str(synth_root), **changes})


@pytest.fixture(scope="module")
def swept(slurm, synth_root, tmp_path_factory):
    """Two runs and a failing one through Slurm, the two also through a local process pool."""
    folder = tmp_path_factory.mktemp("slurm")
    good = [_config(synth_root, seed=0), _config(synth_root, seed=1, depth=34)]
    runs = study.plan(good + [_config(synth_root, **BAD)], folder / "runs")
    out = study.compute(runs, executor=SLURM, progress=False)
    local = study.run_all(good, runs_dir=folder / "local", executor={"kind": "local", "workers": 2}, progress=False)
    return dict(runs=runs, out=out, local=local, folder=folder)


def test_slurm_gives_the_same_metrics_as_the_local_executor(swept):
    [a, b, _] = swept["runs"]
    assert len(swept["out"].submitted) == 3 and sorted(swept["out"].trained) == sorted([a.run_id, b.run_id])
    for on_slurm, here in zip([a, b], swept["local"]):
        assert on_slurm.complete and on_slurm.run_id == here.run_id
        pd.testing.assert_frame_equal(on_slurm.images().drop(columns="seconds"), here.images().drop(columns="seconds"))
        cols = ["train_loss", "val_loss", "val_acc"]
        pd.testing.assert_frame_equal(on_slurm.history()[cols], here.history()[cols])
    logs = list((swept["folder"] / "runs" / "slurm").iterdir())
    assert len(logs) == 1 and len(list(logs[0].glob("*_submission.sh"))) == 1  # one folder, one job array


def test_a_failing_slurm_run_reports_its_error_and_leaves_nothing_in_the_cache(swept):
    bad = swept["runs"][2]
    [failure] = swept["out"].failures
    assert failure.startswith(bad.run_id) and "groups: 3 groups do not divide 4 channels" in failure
    slurm_log = Path(failure.split("Slurm log: ")[1].rstrip("]"))
    assert slurm_log.is_file() and "groups: 3 groups do not divide" in slurm_log.read_text()
    assert not bad.trained and not (bad.dir / "best.pt").exists() and not (bad.dir / "eval").exists()
    assert not bad.complete and bad.run_id not in swept["out"].trained


def test_a_cancelled_job_is_recomputed_by_the_next_sweep_and_finished_ones_are_not(slurm, synth_root, tmp_path, gate):
    runs = study.plan([_config(synth_root, seed=0), _config(synth_root, seed=1, epochs=3)], tmp_path)
    [done, victim] = runs
    gate.hold(victim)  # it waits after its first epoch, so it is cancelled mid-training
    result = {}

    def sweep() -> None:
        try:
            result["out"] = study.compute(runs, executor=SLURM, progress=False)
        except BaseException as err:  # reported below
            result["error"] = err
    thread = threading.Thread(target=sweep)
    thread.start()
    gate.wait(victim, 1, alive=thread.is_alive)
    [script] = (tmp_path / "slurm").glob("*/*_submission.sh")
    array = script.name.split("_")[0]
    subprocess.run(["scancel", f"{array}_1"], check=True)  # runs are submitted in order: task 1 is the victim
    thread.join(gate.hang_s)
    assert not thread.is_alive() and "error" not in result, result
    out = result["out"]
    [failure] = out.failures
    assert failure.startswith(victim.run_id) and "CANCELLED" in failure
    assert not victim.complete and not victim.trained and (victim.dir / "last.pt").exists()
    finished = (done.dir / "done.json").stat().st_mtime_ns
    assert done.complete

    gate.release(victim)
    gate.forget(victim)
    again = study.compute(runs, executor=SLURM, progress=False)
    assert again.submitted == [victim.run_id] and again.trained == [victim.run_id] and not again.failures
    assert gate.epochs(victim) == [2, 3]  # resumed after epoch 1, not trained from the start
    assert victim.complete and list(victim.history()["epoch"]) == [1, 2, 3]  # each epoch once
    assert (done.dir / "done.json").stat().st_mtime_ns == finished
