"""Study: run configs, the runs folder (train once, reuse everywhere) and grids of runs.

    from thesislib import study
    table = study.grid(base, experiments, seeds)   # configs x seeds
    res = study.run(table)                         # computes what is missing, returns tidy results
"""

from thesislib.study.config import ConfigError, RunConfig, precode_dims
from thesislib.study.grid import (FAMILIES, NOTEBOOKS, bottlenecks, describe, find_run, grid, histories, images,
                                  input_scaling, load_models, load_params, long_run_experiments, mean_maps, results,
                                  run, setting_label, study_grid)
from thesislib.study.grid import layer_results, with_evaluation
from thesislib.study.executors import ExecutorSpec
from thesislib.study.runs import InlineExecutor, Outcome, Run, RunError, compute, default_executor, execute, plan, run_all

__all__ = ["ConfigError", "RunConfig", "precode_dims", "bottlenecks", "input_scaling", "mean_maps", "FAMILIES", "NOTEBOOKS", "describe", "find_run", "grid", "histories",
           "images", "load_models", "load_params", "long_run_experiments", "results", "run", "setting_label", "study_grid",
           "InlineExecutor", "Run", "RunError", "default_executor", "execute", "plan", "run_all",
           "ExecutorSpec", "Outcome", "compute", "layer_results", "with_evaluation"]
