"""The smaller tables a notebook shows (thesislib.tables.extras)."""

import pandas as pd
import pytest

from thesislib import tables as T


def test_best_settings_ignore_references_and_can_skip_flagged_runs(seed_results):
    res = seed_results(flag_seed=0, references=True).assign(family="dropout")
    res = pd.concat([res, res[res["setting"] == "a"].assign(setting="c", iou_area=lambda d: d["iou_area"] + 5)])
    agg = T.aggregate(res)
    assert T.best_settings(agg, method="Score-CAM") == [("dropout", "b")]
    assert T.best_settings(agg, method="Score-CAM", learned_only=True) == [("dropout", "c")]
    assert T.best_settings(agg, method="Prior (mean expert map)") == []


def test_model_points_carry_learned(seed_results):
    pts = T.model_points(seed_results(flag_seed=1), "scorecam")
    assert len(pts) == 6 and pts["learned"].sum() == 5 and "iou_area" in pts and "accuracy" in pts
    assert len(T.model_points(seed_results(flag_seed=1), "scorecam", learned_only=True)) == 5
    assert T.model_points(seed_results().drop(columns="learned"), "scorecam")["learned"].all()
    unknown = seed_results(flag_seed=1).astype({"learned": object})
    unknown.loc[unknown["seed"] == 0, "learned"] = None  # a run that predates the check counts as learned
    assert T.model_points(unknown, "scorecam")["learned"].sum() == 5
    assert T.aggregate(unknown)["n_flagged"].max() == 1
    with pytest.raises(ValueError, match="reference map"):
        T.model_points(seed_results(references=True), "prior")


def test_correlation_table_side_by_side(seed_results):
    from thesislib.stats import correlations

    pts = T.model_points(seed_results(flag_seed=1), "scorecam")
    both = T.correlation_table(correlations(pts, "accuracy", ["iou_area"], n_boot=50),
                               correlations(pts, "accuracy", ["iou_area"], learned_only=True, n_boot=50))
    assert list(both.columns.get_level_values(0).unique()) == ["all models", "learned only"]
    assert both.loc[("all", "IoU (A)"), ("all models", "models")] == 6
    assert both.loc[("all", "IoU (A)"), ("learned only", "models")] == 5
