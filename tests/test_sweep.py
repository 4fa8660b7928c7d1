"""`thesislib sweep` and the executors: params, flags, progress, failures, dry runs (no Slurm needed)."""

import functools
import json
import math
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from thesislib import cli, study
from thesislib.study import costs as costs_mod
from thesislib.study import runs as R
from thesislib.study.config import ConfigError, RunConfig
from thesislib.study.executors import ExecutorSpec, SlurmExecutor
from thesislib import sweep as sweep_mod
from thesislib.sweep import load_sweep, run_sweep

TINY = dict(input_size=64, stem="compact", width=0.0625, depth=18, epochs=1, batch_size=32, eval_images=4,
            methods=["gradcam"], references=["prior"])
BAD = {"norm": "group", "groups": 48}  # valid config; 3 groups do not divide layer1's 4 channels: fails in the worker


def _params(folder: Path, synth_root, *, executor=None, settings=({}, ), seeds=(0,)) -> Path:
    """A scale folder: shared.yaml (data, seeds, base, executor) and 01_depth.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    shared = dict(data=None, runs=None, seeds=list(seeds), base={**TINY, "data": str(synth_root)})
    if executor is not None:
        shared["executor"] = executor
    (folder / "shared.yaml").write_text(yaml.safe_dump(shared))
    (folder / "01_depth.yaml").write_text(yaml.safe_dump({"experiments": {"depth": [dict(s) for s in settings]}}))
    return folder / "01_depth.yaml"


def test_executor_spec_is_strict_and_names_the_key():
    assert ExecutorSpec.from_params(None).kind is None
    assert ExecutorSpec.from_params("slurm").kind == "slurm"
    cases = [("gpu", "kind: expected one of inline, local, slurm"),
             ({"kind": "slurm", "partiton": "gpu"}, "unknown key(s) 'partiton'; allowed keys: kind, threads"),
             ({"kind": "slurm", "time_min": 1}, "time_min: expected an integer >= 3"),
             ({"kind": "slurm", "mem_gb": -4}, "mem_gb: expected a positive number"),
             ({"kind": "slurm", "sbatch": ["account=x"]}, "sbatch: expected a mapping"),
             ({"kind": "local", "workers": 0}, "workers: expected an integer >= 1"),
             ({"kind": "slurm", "setup": "module load cuda"}, "setup: expected a list of shell lines"),
             (["slurm"], "expected null, one of inline, local, slurm, or a mapping")]
    for value, message in cases:
        with pytest.raises(ConfigError) as err:
            ExecutorSpec.from_params(value, source="p/shared.yaml: executor")
        assert str(err.value).startswith("p/shared.yaml: executor") and message in str(err.value), str(err.value)


def test_slurm_options_reach_the_sbatch_script(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("sbatch", "srun"):  # submitit only checks that they exist until something is submitted
        (fake / name).write_text("#!/bin/sh\nexit 1\n")
        (fake / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    spec = ExecutorSpec.from_params(dict(kind="slurm", partition="gpu", gpus_per_task=1, cpus_per_task=8, mem_gb=32,
                                         time_min=720, array_parallelism=3, sbatch={"account": "proj", "qos": "long"},
                                         setup=["module load cuda"]))
    ex = spec.create(tmp_path / "runs")
    assert isinstance(ex, SlurmExecutor) and ex.folder.parent == tmp_path / "runs" / "slurm"
    from submitit.slurm.slurm import _make_sbatch_string

    script = _make_sbatch_string(command="python -m x", folder=ex.folder, map_count=10, **ex.parameters)
    for flag in ("--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=8", "--mem=32768MB", "--time=720",
                 "--array=0-9%3", "--account=proj", "--qos=long", "--job-name=thesislib"):
        assert f"#SBATCH {flag}\n" in script, (flag, script)
    assert "module load cuda" in script
    assert spec.run_threads() == 8  # a task's CPUs are its torch threads unless threads is set
    assert "slurm (partition=gpu" in spec.describe()


def test_local_pool_workers_see_the_thesislib_variables_of_when_the_pool_was_made(monkeypatch):
    """Workers fork from a fork server started once, with the environment of that moment; the pool
    hands them the caller's THESISLIB_* variables as they are now (the test gate reaches them so)."""
    from thesislib.study.executors import local_executor

    monkeypatch.delenv("THESISLIB_PROBE", raising=False)
    monkeypatch.setenv("THESISLIB_GONE", "set when the fork server may have started")
    with local_executor(1) as pool:  # starts the fork server if no test has
        assert pool.submit(os.getenv, "THESISLIB_GONE").result() == "set when the fork server may have started"
    monkeypatch.setenv("THESISLIB_PROBE", "set later")
    monkeypatch.delenv("THESISLIB_GONE")
    with local_executor(1) as pool:
        assert pool.submit(os.getenv, "THESISLIB_PROBE").result() == "set later"
        assert pool.submit(os.getenv, "THESISLIB_GONE").result() is None


def test_params_executor_and_flags(tmp_path, synth_root):
    path = _params(tmp_path / "p", synth_root, executor={"kind": "local", "workers": 2, "partition": "gpu"})
    assert load_sweep([path]).executor == ExecutorSpec(kind="local", workers=2, partition="gpu")
    flags = cli.build_parser().parse_args(["sweep", str(path), "--executor", "slurm", "--time-min", "240",
                                           "--sbatch", "account=proj"])
    from thesislib.sweep import spec_overrides

    spec = load_sweep([path], executor=spec_overrides(flags)).executor
    assert (spec.kind, spec.workers, spec.partition, spec.time_min, spec.sbatch) == ("slurm", 2, "gpu", 240,
                                                                                   {"account": "proj"})
    other = _params(tmp_path / "q", synth_root, executor="inline")
    with pytest.raises(ConfigError, match=r"executor: .*p/01_depth.yaml has \{'kind': 'local', 'workers': 2, "
                                          r"'partition': 'gpu'\} but .*q/01_depth.yaml has \{'kind': 'inline'\}"):
        load_sweep([path, other])
    with pytest.raises(ConfigError, match="missing.yaml: params file not found"):
        load_sweep([tmp_path / "missing.yaml"])


def test_progress_is_shown_as_each_run_finishes(tmp_path, synth_root, monkeypatch):
    events = []
    real = R.compute_one
    monkeypatch.setattr(R, "compute_one", lambda *a, **k: events.append("compute") or real(*a, **k))
    monkeypatch.setattr(R, "_say", events.append)
    path = _params(tmp_path / "p", synth_root, seeds=(0, 1, 2))
    out = run_sweep(load_sweep([path], runs=tmp_path / "runs", executor="inline"))
    assert len(out.trained) == 3 and not out.failures
    ticks = [e for e in events if e == "compute" or e.startswith("[")]
    assert [t if t == "compute" else t[:4] for t in ticks] == ["compute", "[1/3", "compute", "[2/3", "compute", "[3/3"]
    assert "elapsed, ~" in ticks[1] and "left]" in ticks[1] and "trained in" in ticks[1]


def test_a_failing_run_is_reported_with_its_log_and_the_others_complete(tmp_path, synth_root, capsys):
    path = _params(tmp_path / "p", synth_root, settings=({}, BAD))
    args = ["sweep", str(path), "--runs", str(tmp_path / "runs"), "--executor", "inline"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    [good, bad] = study.plan([RunConfig.from_dict({**TINY, "data": str(synth_root), **s}) for s in ({}, BAD)],
                             tmp_path / "runs")
    assert "1 of 2 runs failed" in err and "groups: 3 groups do not divide 4 channels" in err
    assert f"log: {bad.dir / 'error.txt'}" in err and "Traceback" in (bad.dir / "error.txt").read_text()
    assert good.complete
    assert not bad.trained and not (bad.dir / "best.pt").exists() and not (bad.dir / "eval").exists()
    # the next sweep retries only the failed run
    out = run_sweep(load_sweep([path], runs=tmp_path / "runs", executor="inline"), progress=False)
    assert out.submitted == [bad.run_id] and len(out.failures) == 1


def test_dry_run_lists_what_is_missing_and_its_cost(tmp_path, synth_root, capsys):
    path = _params(tmp_path / "p", synth_root, seeds=(0, 1))
    args = ["sweep", str(path), "--runs", str(tmp_path / "runs"), "--dry-run"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "plan: 2 runs, 0 in the cache, 2 to compute (2 to train" in text
    # nothing finished to time them by: the measured per-image costs, scaled to this machine now
    assert re.search(r"projected [\d.]+ min here: [\d.]+ min of compute over \d+ at once, timed by measured costs",
                     text), text
    assert f"a quicker look: {sweep_mod.QUICK_LOOK[0]}" in text
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/done.json"))
    study.run_all([RunConfig.from_dict({**TINY, "data": str(synth_root), "seed": 0})], runs_dir=tmp_path / "runs",
                  executor="inline", progress=False)
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    [seed1] = study.plan([RunConfig.from_dict({**TINY, "data": str(synth_root), "seed": 1})], tmp_path / "runs")
    assert "1 in the cache, 1 to compute" in text and seed1.run_id in text
    assert "timed by runs folder" in text, text
    est = sweep_mod.estimate([seed1])
    n_train = round(120 * 0.6)  # 120 images, a 0.6 training share, one epoch
    assert int(est["train_images"].iloc[0]) == pytest.approx(n_train, abs=2) and est["maps"].iloc[0] == 4 * 2


def test_measured_costs_scale_with_pixels_and_machine_speed(tmp_path, synth_root):
    config = RunConfig.from_dict({**TINY, "data": str(synth_root), "methods": ["gradcam", "scorecam"]})
    slow, fast = costs_mod._reference_rate(config, 2.0), costs_mod._reference_rate(config, 1.0)
    pixels = (64 / costs_mod.measured()["input_size"]) ** 2
    cost = functools.partial(costs_mod.per_image, 18)
    assert fast["train"] == pytest.approx(cost("train") * pixels) and fast["scorecam"] == pytest.approx(cost("scorecam") * pixels)
    assert fast["gradcam"] == pytest.approx(cost("method") * pixels) and fast["prior"] == pytest.approx(cost("reference") * pixels)
    assert all(slow[k] == pytest.approx(2 * fast[k]) for k in fast)
    assert costs_mod._reference_rate(config.replace(width=1.0), 1.0) is None  # no measured cost: no projection
    [run] = study.plan([config], tmp_path / "runs")
    one, two = (sweep_mod.estimate([run], speed=s)["seconds"].iloc[0] for s in (1.0, 2.0))
    n_train, n_scored = costs_mod._counts(run, {})
    assert one == pytest.approx(n_train * fast["train"] + n_scored * sum(fast[m] for m in run.missing_methods()))
    assert two == pytest.approx(2 * one)
    speed = sweep_mod.machine_speed(steps=2)
    assert speed > 0 and math.isfinite(speed)  # a ratio; never compared with a wall-clock bound


def test_the_measured_costs_are_read_from_their_data_file_and_a_missing_one_is_named(tmp_path):
    assert costs_mod.COSTS.name == "costs.json" and costs_mod.COSTS.parent.name == "study"
    table = json.loads(costs_mod.COSTS.read_text())["per_image"]
    assert costs_mod.per_image(50, "scorecam") == table["50"]["scorecam"] > 0
    assert costs_mod.per_image(18, "steps") == table["18"]["steps"] > 0
    with pytest.raises(ConfigError, match=r"costs\.json: per_image\.34: no cost 'train'; measured: steps, scorecam"):
        bad = tmp_path / "costs.json"
        table = json.loads(costs_mod.COSTS.read_text())
        del table["per_image"]["34"]["train"]
        bad.write_text(json.dumps(table))
        costs_mod.per_image(34, "train", path=bad)
    with pytest.raises(ConfigError, match=r"per_image: no costs for depth 101; measured: 18, 34, 50$"):
        costs_mod.per_image(101, "train")
    (tmp_path / "short.json").write_text('{"per_image": {}}')
    with pytest.raises(ConfigError, match=r"short\.json: missing key\(s\) input_size, width, stem; expected"):
        costs_mod.measured(tmp_path / "short.json")


def test_the_plan_divides_compute_by_the_runs_at_once_and_adds_the_notebooks(tmp_path, synth_root):
    path = _params(tmp_path / "p", synth_root, seeds=(0, 1), executor={"kind": "local", "workers": 2})
    sweep = load_sweep([path], runs=tmp_path / "runs")
    text, est = sweep_mod.plan(sweep, notebooks=3, speed=1.0)
    compute = est["seconds"].sum()
    assert f"projected {sweep_mod._minutes(compute / 2 + 3 * sweep_mod.NOTEBOOK_SECONDS)} here" in text, text
    assert f"{sweep_mod._minutes(compute)} of compute over 2 at once" in text


def test_makespan_takes_the_runs_in_order_on_the_first_free_worker():
    assert costs_mod.makespan([], 2) == 0
    assert costs_mod.makespan([10, 10, 10, 10], 2) == 20  # many alike: the sum over the workers
    assert costs_mod.makespan([10, 10, 30], 2) == 40  # a long one last waits for a free worker
    assert costs_mod.makespan([30, 10, 10], 2) == 30
    assert costs_mod.makespan([5, 7], 1) == 12
    with pytest.raises(ValueError, match="workers: expected at least 1, found 0"):
        costs_mod.makespan([1], 0)


def test_the_plan_schedules_each_params_file_in_turn(tmp_path, synth_root):
    """A report's notebooks compute one after another: two files of one run each take two runs'
    time on two workers, not one; a run that both files have is counted in the first."""
    folder = tmp_path / "p"
    first = _params(folder, synth_root, executor={"kind": "local", "workers": 2})
    second = folder / "02_optimisation.yaml"
    second.write_text(yaml.safe_dump({"experiments": {"batch_size": [{}, {"batch_size": 16}]}}))
    sweep = load_sweep([first, second], runs=tmp_path / "runs")
    assert [len(p) for p in sweep.parts()] == [1, 1]  # 02's batch-32 run is 01's run
    text, est = sweep_mod.plan(sweep, notebooks=0, speed=3000.0)  # minutes, not seconds
    seconds = dict(zip(est["run_id"], est["seconds"]))
    [[a], [b]] = sweep.parts()
    assert f"projected {sweep_mod._minutes(seconds[a] + seconds[b])} here" in text, text
    # one file with both runs: they compute at once, the longer one's time
    one = _params(tmp_path / "q", synth_root, executor={"kind": "local", "workers": 2},
                  settings=({}, {"batch_size": 16}))
    text, _ = sweep_mod.plan(load_sweep([one], runs=tmp_path / "runs"), notebooks=0, speed=3000.0)
    assert f"projected {sweep_mod._minutes(max(seconds[a], seconds[b]))} here" in text, text


def test_a_normalised_run_is_projected_at_its_measured_factor(tmp_path, synth_root):
    config = RunConfig.from_dict({**TINY, "data": str(synth_root)})
    plain = costs_mod._reference_rate(config, 1.0)
    for norm, groups in (("batch", 32), ("group", 16), ("group", 64)):
        rate = costs_mod._reference_rate(config.replace(norm=norm, groups=groups), 1.0)
        factor = costs_mod.train_factor(norm, groups)
        assert factor > 1 and rate["train"] == pytest.approx(plain["train"] * factor)
        assert rate["gradcam"] == plain["gradcam"]  # scoring is not scaled
    assert costs_mod.train_factor("none", 32) == 1.0
    bad = tmp_path / "costs.json"
    bad.write_text(json.dumps({**json.loads(costs_mod.COSTS.read_text()), "train_factor": {"batch": "fast"}}))
    with pytest.raises(ConfigError, match=r"costs\.json: train_factor\.batch: expected a positive number, found 'fast'"):
        costs_mod.train_factor("batch", 32, path=bad)


def test_machine_speed_compares_the_probe_with_the_probe_of_the_measurement(monkeypatch):
    monkeypatch.setattr(costs_mod, "probe_seconds", lambda steps=20: 2 * costs_mod.measured()["probe"])
    assert costs_mod.machine_speed() == pytest.approx(2.0)


def _calls(src: str, name: str) -> list[str]:
    """The full text of each call `name(...)` in `src` (balanced parentheses)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", src):
        depth, i = 0, m.end() - 1
        for i in range(m.end() - 1, len(src)):
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            if depth == 0:
                break
        out.append(src[m.start():i + 1])
    return out


def test_notebooks_compute_where_their_params_say():
    """Each notebook that computes runs takes an `executor` parameter and gives it to every grid it
    makes (a Grid computes on its own executor); nothing computes outside a grid."""
    import nbformat
    import papermill as pm

    root = Path(__file__).resolve().parents[1]
    computing = 0
    for name in study.NOTEBOOKS:
        path = root / "notebooks" / f"{name}.ipynb"
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        grids = _calls(code, "study.grid") + _calls(code, "study.study_grid")
        assert not re.search(r"study\.(run|run_all|compute)\(", code), f"{name}: computes outside a grid"
        if not grids:
            assert ".compute(" not in code and "notebook_results(" not in code, name
            continue
        computing += 1
        assert "executor" in pm.inspect_notebook(str(path)), f"{name}: no `executor` parameter"
        assert all("executor=executor" in call for call in grids), f"{name}: {grids}"
    assert computing == 9  # 01-09