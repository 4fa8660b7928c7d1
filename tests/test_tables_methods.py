"""The thesis's tables with ours beside theirs, and method tables (thesislib.tables.methods)."""

import numpy as np
import pandas as pd
from scipy import stats as sps

from thesislib import tables as T


def _depth(df):
    return df.assign(setting=df["setting"].map({"a": "18", "b": "50"}))


def test_thesis_table_puts_the_thesis_beside_ours(seed_results):
    agg = T.aggregate(_depth(seed_results()))
    table = T.thesis_table(agg, "depth", settings=["18", "50"])
    lo, hi = sps.t.interval(0.95, 2, loc=21.0, scale=0.33 / np.sqrt(3))
    thesis = table.loc[("↑ IoU (A)", "Score-CAM"), ("50", "thesis")]
    assert thesis == "21.0 ± 0.3" and thesis.title == f"95 % interval {lo:.1f} to {hi:.1f}, 3 seeds"
    ours = table.loc[("↑ IoU (A)", "Score-CAM"), ("50", "ours")]
    assert ours == "36.0 ± 2.0" and ours.title == "95 % interval 31.0 to 41.0, 3 seeds"
    assert 'title="95 % interval 31.0 to 41.0, 3 seeds"' in table._repr_html_()  # the interval is the hover
    assert ours.best and "<b>36.0 ± 2.0</b>" in table._repr_html_()  # the best explainer of its column
    assert not table.loc[("↑ IoU (A)", "Grad-CAM"), ("50", "ours")].best
    assert table.loc[("↑ IoU (A)", "CAM"), ("50", "ours")] == "—"  # not computed
    assert table.loc[("↓ AD", "Grad-CAM"), ("18", "thesis")] == "67.1 ± 1.7"
    bbox = table.loc[("↑ IoU (BB)", "Score-CAM"), ("50", "ours")]
    assert bbox == "1.0" and bbox.title == "the same in all 3 seeds"  # the same in every seed: shown once
    assert not bbox.best  # every explainer ties: nothing to mark
    assert table.loc[("↑ IiC", "CAM"), ("18", "thesis")] == "0.0 ± 0.0"  # the thesis's sd, as published
    assert list(table.frame.index.get_level_values(0)[:3]) == ["↑ Acc", "↑ ROC AUC", "↑ F1 score"]
    assert table.notes == []


def test_thesis_table_shows_reference_rows_flags_and_small_n(seed_results):
    agg = T.aggregate(_depth(seed_results(flag_seed=2, references=True)))
    table = T.thesis_table(agg, "depth", methods=["Score-CAM"])
    rows = list(table.frame.index)
    assert [m for _, m in rows] == ["", "", "", "Score-CAM"] * 1 + ["Score-CAM"] * 3 + [
        "Prior (mean expert map)", "Ceiling (expert map at CAM grid)"] * 4
    # the reference maps in one block after every explainer row, not under each metric
    assert [b for b, _ in rows[7:]] == [f"reference maps: {m}" for m in ("↑ IoU (A)", "↑ IoU (BB)", "↓ AD", "↑ IiC")
                                        for _ in range(2)]
    assert table.loc[("↑ IoU (A)", "Score-CAM"), ("50", "ours")].endswith(T.FLAG)
    assert not table.loc[("↑ IoU (A)", "Score-CAM"), ("18", "ours")].endswith(T.FLAG)
    assert table.notes and "1 of the runs" in table.notes[0]
    assert T.FLAG in table._repr_html_() and "1 of the runs" in table._repr_html_()
    two = T.thesis_table(T.aggregate(_depth(seed_results()[lambda d: d["seed"] < 2])), "depth", methods=["Score-CAM"])
    assert two.loc[("↑ IoU (A)", "Score-CAM"), ("18", "ours")].endswith("(n=2)")
    one = T.thesis_table(T.aggregate(_depth(seed_results()[lambda d: d["seed"] == 0])), "depth", methods=["Score-CAM"])
    assert one.loc[("↑ IoU (A)", "Score-CAM"), ("18", "ours")] == "24.0 (n=1)"


def test_a_thesis_table_with_many_settings_puts_them_in_rows(seed_results):
    res = seed_results(references=True)[lambda d: d["setting"] == "a"]
    explainer = ~res["method"].isin(["prior", "ceiling"])
    wide = pd.concat([res.assign(setting=s, iou_area=res["iou_area"] + i * explainer, accuracy=res["accuracy"] + i,
                                 run_id=res["run_id"] + s)
                      for i, s in enumerate(["16", "32", "64", "128"])], ignore_index=True)
    table = T.thesis_table(T.aggregate(wide.assign(family="batch_size")), "batch_size", methods=["Score-CAM"])
    assert list(table.frame.columns) == ["ours", "thesis"]  # 4 settings x 2 would be 8 columns
    assert table.frame.index.names == ["metric", "method", "Batch size"]
    assert table.loc[("↑ IoU (A)", "Score-CAM", "64"), "thesis"] == "22.1 ± 1.3"  # thesis Table 5.4
    # the prior's IoU does not depend on the model: one row for every setting; its AD row per setting
    prior = [k for k in table.frame.index if k[1] == "Prior (mean expert map)"]
    assert ("reference maps: ↑ IoU (A)", "Prior (mean expert map)", "every setting") in prior
    assert table.loc[("reference maps: ↑ IoU (A)", "Prior (mean expert map)", "every setting"), "ours"] == "41.0 ± 2.0"
    narrow = T.thesis_table(T.aggregate(wide.assign(family="batch_size")), "batch_size", methods=["Score-CAM"],
                            with_thesis=False, settings=["16", "32", "64"])
    assert list(narrow.frame.columns) == [("16", "ours"), ("32", "ours"), ("64", "ours")]


def test_method_table_lists_explainers_then_references_and_marks_duplicates(seed_results):
    res = seed_results(flag_seed=1, references=True)
    dup = res[res["method"] == "gradcam"].assign(method="hirescam", method_label="HiResCAM")
    res = pd.concat([dup, res], ignore_index=True)
    table = T.method_table(res)
    # Grad-CAM gives HiResCAM's maps: shown once, under the first name, the other named beside it;
    # the explainers first, then the reference maps, one block each
    assert list(table.frame.index) == [("explainers", "HiResCAM"), ("explainers", "Score-CAM"),
                                       ("reference maps", "Prior (mean expert map)"),
                                       ("reference maps", "Ceiling (expert map at CAM grid)")]
    assert table.frame.loc[("explainers", "HiResCAM"), "same maps as"] == "Grad-CAM"
    assert table.frame.loc[("explainers", "Score-CAM"), "same maps as"] == ""
    assert any("shown once" in n for n in table.explanations)
    assert "kind" not in table.frame.columns and "constant maps" not in table.frame.columns  # none was constant
    assert "No method gave a constant map" in " ".join(table.explanations)
    assert table.frame.loc[("explainers", "Score-CAM"), "ms per image"] == 2.0
    iou = table.frame.loc[("explainers", "Score-CAM"), "↑ IoU (A)"]
    assert iou.endswith(T.FLAG) and "1 of the runs" in table.notes[0]
    assert iou.best and not table.frame.loc[("explainers", "HiResCAM"), "↑ IoU (A)"].best  # the best explainer, bold
    assert not table.frame.loc[("reference maps", "Ceiling (expert map at CAM grid)"), "↑ IoU (A)"].best
    # the evaluation's own duplicate detection wins where present
    named = T.method_table(res.assign(same_as=np.where(res["method"] == "hirescam", "gradcam", "")))
    assert "HiResCAM" not in named.frame.index.get_level_values("method")
    assert named.frame.loc[("explainers", "Grad-CAM"), "same maps as"] == "HiResCAM"
    assert "same maps as" not in T.method_table(res[res["method"] != "hirescam"]).frame.columns
    agnostic = T.method_table(res.assign(class_agnostic=res["method"].isin(["scorecam", "prior"])))
    methods = agnostic.frame.index.get_level_values("method")
    assert "Score-CAM (class-agnostic)" in methods
    assert "Prior (mean expert map)" in methods  # a reference map is not marked
    by = T.method_table(res, by="setting")
    assert by.frame.index.names == ["setting", "", "method"]
    assert by.frame.loc[("b", "explainers", "Score-CAM"), "↑ IoU (A)"].endswith(T.FLAG)
    assert not by.frame.loc[("a", "explainers", "Score-CAM"), "↑ IoU (A)"].endswith(T.FLAG)
    # a predicted class by its name, never 0 / 1; correct as words, never True / False
    pred = T.method_table(res.assign(pred=res["seed"] % 2), by="pred").frame
    assert pred.index.names[0] == "predicted class"
    assert set(pred.index.get_level_values(0)) == {"non-glaucoma", "glaucoma"}
    correct = T.method_table(res.assign(correct=res["seed"] == 0), by="correct").frame
    assert set(correct.index.get_level_values(0)) == {"correctly classified", "misclassified"}
