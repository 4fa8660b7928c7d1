import pytest
import torch

import thesislib
from thesislib.evaluation import METRICS, evaluate, stratified_subset, summarize


def test_evaluate_rows_and_columns(tiny_model, split):
    model = tiny_model()
    df = thesislib.evaluate(model, split.test, ["cam", "gradcam", "scorecam"], max_images=10, deletion_steps=4)
    assert len(df) == 30 and set(df["method"]) == {"cam", "gradcam", "scorecam"}
    assert set(METRICS) <= set(df.columns)
    assert {"image", "label", "pred", "prob_glaucoma", "target", "seconds", "heatmap_empty", "map_empty",
            "heatmap_constant", "accuracy", "roc_auc", "f1", "tn", "fp", "fn", "tp", "drop_in_confidence"} <= set(df.columns)
    assert not df[list(METRICS)].isna().any().any()
    assert (df["target"] == df["pred"]).all()
    assert df["tn"].iloc[0] + df["fp"].iloc[0] + df["fn"].iloc[0] + df["tp"].iloc[0] == len(split.test)
    assert not model.training


def test_label_targets_and_correct_only(tiny_model, split):
    model = tiny_model()
    df = evaluate(model, split.test, ["gradcam"], target="label")
    assert (df["target"] == df["label"]).all() and len(df) == len(split.test)
    right = evaluate(model, split.test, ["gradcam"], correct_only=True)
    assert (right["pred"] == right["label"]).all()


def test_precode_skips_cam_but_keeps_classification(tiny_model, split):
    df = evaluate(tiny_model(precode_k=8), split.test, ["cam", "gradcam"], max_images=6)
    assert set(df["method"]) == {"gradcam"}


def test_bad_method_is_named(tiny_model, split):
    with pytest.raises(ValueError, match="'gradcamx'"):
        evaluate(tiny_model(), split.test, ["gradcamx"])


def test_summarize_means_in_percent(tiny_model, split):
    df = evaluate(tiny_model(), split.test, ["gradcam", "cam"], max_images=8)
    s = summarize(df)
    row = s[s["method"] == "gradcam"].iloc[0]
    part = df[df["method"] == "gradcam"]
    assert row["iou_area"] == pytest.approx(100 * part["iou_area"].mean())
    assert row["n_images"] == 8 and row["accuracy"] == pytest.approx(100 * part["accuracy"].iloc[0])


def test_stratified_subset_keeps_class_shares():
    labels = torch.tensor([0] * 60 + [1] * 40)
    pick = stratified_subset(labels, 20)
    assert len(pick) == 20 and labels[pick].sum().item() == 8
    assert torch.equal(pick, stratified_subset(labels, 20))
    assert len(stratified_subset(labels, None)) == 100
