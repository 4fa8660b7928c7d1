"""Study: run configs, the runs folder (train once, reuse everywhere) and grids of runs.

    from thesislib import study
    table = study.grid(base, experiments, seeds)   # configs x seeds
    res = study.run(table)                         # computes what is missing, returns tidy results
"""

from thesislib.study.config import ConfigError, RunConfig
from thesislib.study.grid import (FAMILIES, NOTEBOOKS, describe, find_run, grid, histories, images, load_models,
                                  load_params, long_run_experiments, results, run, setting_label, study_grid)
from thesislib.study.runs import InlineExecutor, Run, RunError, default_executor, execute, plan, run_all

__all__ = ["ConfigError", "RunConfig", "FAMILIES", "NOTEBOOKS", "describe", "find_run", "grid", "histories",
           "images", "load_models", "load_params", "long_run_experiments", "results", "run", "setting_label", "study_grid",
           "InlineExecutor", "Run", "RunError", "default_executor", "execute", "plan", "run_all"]
