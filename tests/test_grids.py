"""The study API: a Grid holds its table, its runs folder and its executor; one name per meaning."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from thesislib import study, tables
from thesislib.study import runs as R
from thesislib.study.config import ConfigError

TINY = dict(input_size=64, stem="compact", width=0.0625, depth=18, epochs=1, batch_size=32, eval_images=4,
            methods=["gradcam"], references=["prior"], track_every=0)


class Counting(study.InlineExecutor):
    """The inline executor, counting what it is given."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []

    def submit(self, fn, *args, **kwargs):
        self.submitted.append(args[0])
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def base(synth_root):
    return {**TINY, "data": str(synth_root)}


def test_a_grid_holds_its_table_runs_folder_and_executor(base, tmp_path):
    g = study.grid(base, {"depth": [{}, {"depth": 34}]}, [0, 1], runs=tmp_path, executor="inline")
    assert isinstance(g, study.Grid) and len(g) == 4
    inline = study.ExecutorSpec(kind="inline")
    assert (g.settings, g.seeds, g.runs_dir, g.executor) == (["baseline", "34"], [0, 1], tmp_path, inline)
    assert list(g.table.columns) == ["family", "setting", "seed", "overrides", "config"]
    assert all(r.runs_dir == tmp_path for r in g.runs())
    deep = g.where(setting="34")
    assert len(deep) == 2 and deep.runs_dir == tmp_path and deep.executor == inline
    run = g.find(setting="34", seed=1)
    assert (run.config.depth, run.config.seed) == (34, 1)


def test_a_grid_names_its_settings_when_nothing_matches(base, tmp_path):
    g = study.grid(base, {"depth": [{}]}, [0], runs=tmp_path)
    with pytest.raises(KeyError, match="settings are baseline, seeds \\[0\\]"):
        g.find(setting="50")


def test_a_grid_table_needs_its_columns():
    with pytest.raises(ValueError, match="missing overrides, config"):
        study.Grid(pd.DataFrame({"family": ["depth"], "setting": ["18"], "seed": [0]}))


def test_with_evaluation_refuses_training_settings(base, tmp_path):
    g = study.grid(base, {"depth": [{}]}, [0], runs=tmp_path)
    with pytest.raises(ConfigError, match="'epochs' are not evaluation settings"):
        g.with_evaluation(epochs=3)
    other = g.with_evaluation(methods=["cam"])
    assert [c.methods for c in other.table["config"]] == [("cam",)] and other.runs()[0].run_id == g.runs()[0].run_id


def test_a_grid_computes_on_its_own_executor_once(base, tmp_path, monkeypatch):
    ex = Counting()
    g = study.grid(base, {"depth": [{}]}, [0], runs=tmp_path, executor=ex)
    res = g.compute(progress=False).results()
    assert len(ex.submitted) == 1 and set(res["method"]) == {"gradcam", "prior"}
    assert (res["run_id"] == g.runs()[0].run_id).all()
    g.compute(progress=False)
    assert len(ex.submitted) == 1  # in the cache: nothing submitted

    def boom(*a, **k):
        raise AssertionError("trained again")
    monkeypatch.setattr("thesislib.train.train", boom)
    layered = g.layer_results(["layer3"], ["gradcam"], progress=False)  # another evaluation, the same model
    assert len(ex.submitted) == 2 and set(layered["layer"]) == {"layer3"}
    assert not g.histories().empty and set(g.images()["method"]) == {"gradcam", "prior"}


def test_notebook_results_shows_the_grid_and_its_health_and_returns_results_and_aggregate(base, tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    g = study.grid(base, {"depth": [{}]}, [0], runs=tmp_path, executor="inline")
    results, ours = study.notebook_results(g)
    assert "**Runs:** 1 distinct" in shown[0].data
    assert len(shown) == 2 and shown[1].data == tables.run_health(results).data
    pd.testing.assert_frame_equal(results, g.results())
    pd.testing.assert_frame_equal(ours, tables.aggregate(results))


def test_each_name_has_one_meaning():
    """The grid module is not hidden by the function that makes grids; compute, results and
    describe mean one thing each (no study.run, study.execute or study.describe beside them)."""
    import thesislib.study.grids as grids

    assert study.grid is grids.grid and callable(study.grid)
    assert importlib.util.find_spec("thesislib.study.grid") is None
    for gone in ("run", "execute", "describe", "results", "find_run", "with_evaluation"):
        assert not hasattr(study, gone), gone
    assert not hasattr(R, "execute") and study.compute_one is R.compute_one


# each family's design: which settings share initial weights and batch order with the baseline for a seed
PAIRED = {"weight_decay", "dropout", "batch_norm", "group_norm", "precode", "optimizer"}
UNPAIRED = {"depth", "batch_size", "train_fraction", "shortcut"}


@pytest.mark.parametrize("name", ["01_depth", "02_optimisation", "04_regularisation", "05_precode",
                                  "07_optimizers", "08_dataset_size", "09_shortcut"])
def test_the_pairing_of_every_family_follows_its_design(name, tmp_path):
    from thesislib.study.runs import Run

    p = study.load_params(Path(__file__).resolve().parents[1] / "params" / "default" / f"{name}.yaml")
    g = study.grid(p["base"], p["experiments"], p["seeds"], runs=tmp_path)
    for family, rows in g.table.groupby("family"):
        if family == "epochs":  # one setting
            continue
        keys = {}
        for r in rows.itertuples():  # the data's fingerprint stands in for its content
            run = Run(r.config, tmp_path, str(r.config.data), tmp_path)
            keys.setdefault(r.seed, {})[r.setting] = run.pairing
        per_seed = [set(k.values()) for k in keys.values()]
        assert len({k for ks in per_seed for k in ks}) == sum(len(ks) for ks in per_seed)  # seeds never pair
        if family in PAIRED:
            assert all(len(ks) == 1 for ks in per_seed), family
        else:
            assert family in UNPAIRED and all(len(ks) == len(rows["setting"].unique()) for ks in per_seed), family


def test_the_executor_is_parsed_when_a_grid_is_made(base, tmp_path):
    """A bad executor fails where the grid is made, in the one line every params key gets, not inside compute."""
    with pytest.raises(ConfigError, match=r"^01_depth: executor: kind: expected one of inline, local, slurm or null, "
                                          r"found 'slrum'$"):
        study.grid(base, {"depth": [{}]}, [0], runs=tmp_path, executor="slrum", source="01_depth")
    with pytest.raises(ConfigError, match=r"^Grid: executor: unknown key\(s\) 'partiton'; allowed keys: kind, "):
        study.Grid(study.grid(base, {"depth": [{}]}, [0]).table, tmp_path, {"kind": "slurm", "partiton": "gpu"})
    g = study.grid(base, {"depth": [{}]}, [0], executor={"kind": "local", "workers": 2})
    assert g.executor == study.ExecutorSpec(kind="local", workers=2) and g.where(seed=0).executor is g.executor
    ex = Counting()
    assert study.grid(base, {"depth": [{}]}, [0], executor=ex).executor is ex  # an executor object as it is
    assert study.grid(base, {"depth": [{}]}, [0]).executor == study.ExecutorSpec()


def test_load_params_fails_on_a_bad_executor_naming_the_file_that_sets_it(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "shared.yaml").write_text("executor: {kind: slurm, time_min: 1}\n")
    (tmp_path / "s" / "00_data.yaml").write_text("n_examples: 2\n")
    for keys in (None, ["n_examples"]):  # also for a notebook that does not take the executor
        with pytest.raises(ConfigError, match=rf"^{tmp_path / 's' / 'shared.yaml'}: executor: time_min: expected an "
                                              r"integer >= 3, found 1$"):
            study.load_params(tmp_path / "s" / "00_data.yaml", keys=keys)
