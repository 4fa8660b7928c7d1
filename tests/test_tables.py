import numpy as np
import pandas as pd
import pytest

from thesislib import tables as T


def test_reference_is_the_thesis_tables():
    ref = T.reference()
    assert len(ref) == 339
    cell = ref[(ref["family"] == "depth") & (ref["setting"] == "50") & (ref["method"] == "Score-CAM")
               & (ref["metric"] == "iou_area")]
    assert cell[["mean", "std"]].values.tolist() == [[21.0, 0.33]]
    assert set(ref["setting"][ref["family"] == "weight_decay"]) == {"baseline", "L1 1e-05", "L1 1e-04", "L1 1e-03",
                                                                    "L2 1e-05", "L2 1e-04", "L2 1e-03"}
    assert set(ref["setting"][ref["family"] == "precode"]) >= {"baseline", "β=1e-03, k=512"}


def _results():
    rows = []
    for setting, shift in (("a", 0.0), ("b", 10.0)):
        for seed, noise in ((0, -1.0), (1, 1.0), (2, 3.0)):
            for method, m_shift in (("Grad-CAM", 0.0), ("Score-CAM", 5.0)):
                rows.append(dict(family="depth", setting=setting, seed=seed, method=method.lower(), method_label=method,
                                 iou_area=20 + shift + m_shift + noise, iou_bbox=1.0, average_drop=50.0,
                                 increase_in_confidence=2.0, accuracy=80 + shift + seed, roc_auc=70.0, f1=60.0))
    return pd.DataFrame(rows)


def test_aggregate_is_mean_and_sample_std_over_seeds():
    agg = T.aggregate(_results())
    cell = agg[(agg["setting"] == "b") & (agg["method"] == "Score-CAM") & (agg["metric"] == "iou_area")].iloc[0]
    assert cell["mean"] == pytest.approx(35 + 1) and cell["std"] == pytest.approx(np.std([-1, 1, 3], ddof=1))
    assert cell["n"] == 3
    acc = agg[(agg["setting"] == "a") & (agg["metric"] == "accuracy")].iloc[0]
    assert acc["method"] == "" and acc["mean"] == pytest.approx(81) and acc["n"] == 3  # one value per run


def test_thesis_table_puts_the_thesis_beside_ours():
    agg = T.aggregate(_results().assign(setting=lambda d: d["setting"].map({"a": "18", "b": "50"})))
    table = T.thesis_table(agg, "depth", settings=["18", "50"])
    assert table.loc[("↑ IoU (A)", "Score-CAM"), ("50", "thesis")] == "21.0 ± 0.3"
    assert table.loc[("↑ IoU (A)", "Score-CAM"), ("50", "ours")] == "36.0 ± 2.0"
    assert table.loc[("↑ IoU (A)", "CAM"), ("50", "ours")] == "—"  # not computed
    assert table.loc[("↓ AD", "Grad-CAM"), ("18", "thesis")] == "67.1 ± 1.7"
    assert list(table.index.get_level_values(0)[:3]) == ["↑ Acc", "↑ ROC AUC", "↑ F1 score"]


def test_claims_are_computed_on_both_sides():
    j = T.judge(T.reference())
    row = j[j["claim"] == "Score-CAM has the highest IoU (A) at every batch size"].iloc[0]
    assert row["thesis"] is not None and not row["thesis"]  # Grad-CAM++ wins at batch 128
    assert j[j["claim"] == "BatchNorm raises Score-CAM IoU (A) over the baseline"]["thesis"].iloc[0]
    ours = T.aggregate(_results().assign(setting=lambda d: d["setting"].map({"a": "18", "b": "50"})))
    mine = T.judge(ours, "depth").set_index("claim")
    assert mine.loc["ResNet-50 has the highest accuracy", "ours"]
    assert mine.loc["Score-CAM has the highest IoU (A) at every depth", "ours"]
    tied = mine.loc["Score-CAM has the lowest Average Drop at every depth", "ours"]
    assert tied is not None and not tied  # equal values: no method is the best


def test_missing_data_gives_no_verdict():
    j = T.judge(pd.DataFrame(columns=["family", "setting", "method", "metric", "mean", "std", "n"]), "batch_norm")
    assert j["ours"].isna().all() and j["thesis"].notna().all()


def test_correlation_verdicts_use_the_thesis_numbers():
    j = T.judge_correlations(T.reference()).set_index("family")
    assert j.loc["depth", "thesis_rho"] == pytest.approx(0.5)  # Score-CAM IoU 16.2, 15.5, 21.0 vs acc 82.2, 83.5, 85.3
    assert j.loc["batch_norm", "thesis_rho"] == pytest.approx(-1.0)
