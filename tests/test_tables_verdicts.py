"""Explainers against the reference maps (thesislib.tables.verdicts)."""

import json

import pandas as pd

from thesislib import tables as T


def _against(prior_shift: float, noise: float = 1.0):
    """One family, two settings; Score-CAM's IoU (A) sits `prior_shift` points above the prior's."""
    rows = []
    for setting in ("a", "b"):
        for seed, eps in ((0, -noise), (1, 0.0), (2, noise)):
            for method, label, kind, value in (
                    ("scorecam", "Score-CAM", "explainer", 30.0 + prior_shift + eps),
                    ("gradcam", "Grad-CAM", "explainer", 20.0 + eps),
                    ("prior", "Prior (mean expert map)", "reference", 30.0 + eps / 10),
                    ("ceiling", "Ceiling (expert map at CAM grid)", "reference", 60.0)):
                rows.append(dict(family="depth", setting=setting, overrides=json.dumps({"s": setting}), seed=seed,
                                 run_id=f"{setting}{seed}", method=method, method_label=label, kind=kind,
                                 iou_area=value, pointing_game=value, accuracy=90.0, roc_auc=90.0, f1=90.0,
                                 learned=True, pred=seed % 2))
    return pd.DataFrame(rows)


def test_against_references_judges_the_strongest_reference_beyond_the_seed_noise():
    col = "an explainer beats it (95 %)"
    clear = T.against_references(_against(prior_shift=10.0)).frame
    assert clear[col].tolist() == ["yes"] and clear["strongest reference"].iloc[0].startswith("Prior")
    assert clear["best explainer"].iloc[0].startswith("Score-CAM")
    assert clear["% of ceiling"].iloc[0] == "67"  # 40 of 60
    level = T.against_references(_against(prior_shift=0.0)).frame
    assert level[col].tolist() == ["inconclusive"]
    below = T.against_references(_against(prior_shift=-9.0)).frame
    assert below[col].tolist() == ["no"]
    # a stronger trivial map is the one to beat
    sobel = _against(prior_shift=10.0)
    edges = sobel[sobel["method"] == "prior"].assign(method="sobel", method_label="Sobel edges", iou_area=45.0)
    with_edges = T.against_references(pd.concat([sobel, edges], ignore_index=True)).frame
    assert with_edges["strongest reference"].iloc[0] == "Sobel edges" and with_edges[col].tolist() == ["no"]


def test_against_references_takes_several_metrics_and_per_class_families():
    res = _against(prior_shift=10.0)
    both = T.against_references(res, ["iou_area", "pointing_game"]).frame
    assert len(both) == 2 and both.index.names == ["family", "metric"]
    per_class = T.aggregate(res, by="pred")
    assert set(per_class["family"]) == {"Depth, predicted non-glaucoma", "Depth, predicted glaucoma"}


def test_references_summary_uses_learned_runs_and_says_when_none_learned():
    res = _against(prior_shift=10.0)
    assert T.references_summary(res).frame["an explainer beats it (95 %)"].tolist() == ["yes", "yes"]
    failed = T.references_summary(res.assign(learned=False))
    assert "No run learned" in failed.notes[0] and len(failed.frame) == 2
    per_class = T.references_summary(res, by="pred").frame
    assert {f for f, _ in per_class.index} == {"Depth, predicted non-glaucoma", "Depth, predicted glaucoma"}
