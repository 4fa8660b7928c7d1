"""Seed summaries in long format (thesislib.tables.summaries)."""

import numpy as np
import pytest
from scipy import stats as sps

from thesislib import tables as T


def test_aggregate_is_mean_sample_std_and_t_interval_over_seeds(seed_results):
    agg = T.aggregate(seed_results())
    cell = agg[(agg["setting"] == "b") & (agg["method"] == "Score-CAM") & (agg["metric"] == "iou_area")].iloc[0]
    values = [34, 36, 38]
    assert cell["mean"] == pytest.approx(36) and cell["std"] == pytest.approx(np.std(values, ddof=1))
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
    assert (cell["lo"], cell["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert cell["n"] == 3 and cell["n_flagged"] == 0 and cell["kind"] == "explainer"
    acc = agg[(agg["setting"] == "a") & (agg["metric"] == "accuracy")].iloc[0]
    assert acc["method"] == "" and acc["mean"] == pytest.approx(81) and acc["n"] == 3  # one value per run


def test_aggregate_counts_flagged_runs_and_can_leave_them_out(seed_results):
    agg = T.aggregate(seed_results(flag_seed=2)).set_index(["setting", "method", "metric"])
    assert agg.loc[("b", "Score-CAM", "iou_area"), "n_flagged"] == 1
    assert agg.loc[("b", "", "accuracy"), "n_flagged"] == 1 and agg.loc[("a", "", "accuracy"), "n_flagged"] == 0
    kept = T.aggregate(seed_results(flag_seed=2), learned_only=True).set_index(["setting", "method", "metric"])
    assert kept.loc[("b", "Score-CAM", "iou_area"), "n"] == 2
    assert kept.loc[("b", "Score-CAM", "iou_area"), "mean"] == pytest.approx(35)
