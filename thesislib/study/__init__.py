"""Study: run configs, the runs folder (train once, reuse everywhere) and grids of runs.

    from thesislib import study
    grid = study.grid(base, experiments, seeds, runs=runs, executor=executor)  # configs x seeds
    results = grid.compute().results()   # computes what is missing, returns tidy results
    results, ours = study.notebook_results(grid)   # the same, shown as a notebook's first cell shows it

Names, one meaning each: a `Grid` is a table of configs with its runs folder and executor; a
`Run` is one config's folder in the runs folder; to *compute* is to train and evaluate what is
missing from the cache (`Grid.compute`, `compute` for planned runs, `compute_one` for one run in
a worker); *results* are tidy rows read from the cache; `describe()` is a method of what it
describes (a Grid, a data Split, an ExecutorSpec).
"""

from thesislib.study.config import ConfigError, RunConfig, precode_dims
from thesislib.study.executors import ExecutorSpec
from thesislib.study.grids import (BEYOND, FAMILIES, NOTEBOOKS, Grid, bottlenecks, grid, input_scaling, load_params,
                                   long_run_experiments, mean_maps, merge_params, notebook_results, params_layers,
                                   setting_label, study_grid)
from thesislib.study.scale import left_out, left_out_labels
from thesislib.study.runs import (InlineExecutor, Outcome, Run, RunError, compute, compute_one, default_executor, plan,
                                  run_all)

__all__ = ["ConfigError", "RunConfig", "precode_dims", "ExecutorSpec",
           "BEYOND", "FAMILIES", "NOTEBOOKS", "Grid", "bottlenecks", "grid", "input_scaling", "load_params",
           "long_run_experiments", "mean_maps", "merge_params", "notebook_results", "params_layers", "setting_label",
           "study_grid",
           "left_out", "left_out_labels",
           "InlineExecutor", "Outcome", "Run", "RunError", "compute", "compute_one", "default_executor", "plan",
           "run_all"]
