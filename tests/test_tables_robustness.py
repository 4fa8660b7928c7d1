"""Conclusions under another metric, threshold or slice (thesislib.tables.robustness)."""

import pandas as pd
import pytest
from scipy import stats as sps

from thesislib import tables as T


def _ranked(order_b, *, dup=False):
    """Explainers on three runs: IoU (A) orders them A > B > C > ...; "pointing_game" follows `order_b`."""
    rows = []
    labels = sorted(order_b)
    for seed in range(3):
        for i, label in enumerate(labels):
            rows.append(dict(family="depth", setting="50", seed=seed, run_id=f"r{seed}", method=label.lower(),
                             method_label=label, kind="explainer", same_as="", iou_area=40.0 - 10 * i + seed,
                             pointing_game=40.0 - 10 * order_b.index(label) + seed, average_drop=10.0 * i,
                             iou_fixed_50=40.0 - 10 * i, learned=True))
        if dup:  # a method with A's maps: counted once
            rows.append({**rows[-len(labels)], "method": "twin", "method_label": "Twin", "same_as": "a"})
        rows.append(dict(family="depth", setting="50", seed=seed, run_id=f"r{seed}", method="prior",
                         method_label="Prior (mean expert map)", kind="reference", same_as="", iou_area=99.0,
                         pointing_game=0.0, average_drop=0.0, iou_fixed_50=99.0, learned=True))
    return pd.DataFrame(rows)


def test_ranking_agreement_is_kendalls_tau_of_the_explainers_orders():
    same = T.ranking_agreement(_ranked(["A", "B", "C", "D"], dup=True), ["pointing_game", "average_drop", "iou_fixed_50"])
    row = same.frame.loc["↑ Pointing game"]
    assert row["Kendall τ"] == 1.0 and row["explainers"] == 4  # the twin and the prior are not ranked
    # a twin that no evaluation named: the same metrics on every run give it away
    unnamed = _ranked(["A", "B", "C", "D"], dup=True).assign(same_as="")
    assert T.ranking_agreement(unnamed, ["pointing_game"]).frame.loc["↑ Pointing game", "explainers"] == 4
    assert row["first by it"] == "A" and row["first by IoU (A)"] == "A"
    # lower Average Drop is better: A (0) first, so the same order
    assert same.frame.loc["↓ AD", "Kendall τ"] == 1.0
    assert same.frame.loc["IoU, map > 0.5", "Kendall τ"] == 1.0
    reversed_ = T.ranking_agreement(_ranked(["D", "C", "B", "A"]), ["pointing_game"]).frame.loc["↑ Pointing game"]
    assert reversed_["Kendall τ"] == -1.0 and reversed_["first by it"] == "D"
    # four explainers: even the reversed order has p = 2 / 4! > 0.05
    assert reversed_["p"] == pytest.approx(2 / 24, abs=1e-3)
    assert reversed_["order agrees with IoU (A)"] == "not significantly"
    six = T.ranking_agreement(_ranked(list("FEDCBA")), ["pointing_game"]).frame.loc["↑ Pointing game"]
    assert six["order agrees with IoU (A)"] == "reversed"
    assert T.ranking_agreement(_ranked(list("ABCDEF")), ["pointing_game"]).frame.loc[
        "↑ Pointing game", "order agrees with IoU (A)"] == "agrees"
    tau, _ = sps.kendalltau([4, 3, 2, 1], [3, 4, 1, 2])
    swapped = T.ranking_agreement(_ranked(["B", "A", "D", "C"]), ["pointing_game"]).frame
    assert swapped.loc["↑ Pointing game", "Kendall τ"] == pytest.approx(round(tau, 2))


def test_threshold_curve_is_tidy_with_otsu_beside_the_curve():
    res = _ranked(["A", "B", "C", "D"], dup=True)
    curve = T.threshold_curve(res)
    assert set(curve["rule"]) == {"otsu", "fixed"} and "Twin" not in set(curve["method"])
    otsu = curve[(curve["method"] == "A") & (curve["rule"] == "otsu")].iloc[0]
    assert otsu["mean"] == pytest.approx(41.0) and otsu["n"] == 3 and otsu["lo"] < 41 < otsu["hi"]
    assert curve[(curve["method"] == "A") & (curve["rule"] == "fixed")]["level"].tolist() == [0.5]
    assert "Prior (mean expert map)" in set(curve["method"])


def _slices(flip: bool):
    """Per run, rows of one explainer pair and the prior for correctly (True) and wrongly (False)
    classified images; with `flip`, Score-CAM comes first on the misclassified ones only."""
    rows = []
    for seed, eps in ((0, -1.0), (1, 0.0), (2, 1.0)):
        for correct in (True, False):
            for method, label, kind, value in (
                    ("scorecam", "Score-CAM", "explainer", 30.0 if correct or not flip else 60.0),
                    ("gradcam", "Grad-CAM", "explainer", 40.0),
                    ("prior", "Prior (mean expert map)", "reference", 35.0)):
                rows.append(dict(family="depth", setting="50", overrides="{}", seed=seed, run_id=f"r{seed}", method=method,
                                 method_label=label, kind=kind, iou_area=value + eps, pointing_game=value + eps,
                                 correct=correct, n_images=4, accuracy=80.0, roc_auc=80.0, f1=80.0, learned=True))
    sliced = pd.DataFrame(rows)
    whole = sliced.groupby(["family", "setting", "overrides", "seed", "run_id", "method", "method_label", "kind"],
                           as_index=False)[["iou_area", "pointing_game", "accuracy", "roc_auc", "f1"]].mean()
    return whole.assign(learned=True, n_images=8), sliced


def test_slice_conclusions_say_where_a_slice_changes_the_first_explainer():
    whole, sliced = _slices(flip=True)
    table = T.slice_conclusions(whole, sliced, by="correct", metrics=["iou_area"]).frame
    first = table.loc[("↑ IoU (A)", "first explainer")]
    assert first["all images"] == "Score-CAM"  # (30 + 60) / 2 = 45 against Grad-CAM's 40
    assert first["correctly classified"] == "Grad-CAM" and first["misclassified"] == "Score-CAM"
    assert first["changes"] == "yes"
    assert table.loc[("↑ IoU (A)", "images scored (all runs, per method)"), "correctly classified"] == "12"
    steady = T.slice_conclusions(*_slices(flip=False), by="correct", metrics=["iou_area"]).frame
    assert steady.loc[("↑ IoU (A)", "first explainer"), "changes"] == "no"
    assert steady.loc[("↑ IoU (A)", "an explainer beats the strongest reference (95 %)"), "all images"] == "yes"


def test_correctly_and_wrongly_classified_slices():
    from thesislib.evaluation import summarize

    df = pd.DataFrame(dict(image=list("abcd"), label=[0, 1, 1, 0], pred=[0, 1, 0, 1], method="gradcam",
                           method_label="Grad-CAM", iou_area=[0.1, 0.3, 0.5, 0.7], seconds=0.0,
                           heatmap_empty=False, heatmap_constant=False, map_empty=False, same_as=""))
    s = summarize(df, by="correct")  # derived from pred and label where the column is absent
    assert s["correct"].tolist() == [False, True] and s["iou_area"].tolist() == pytest.approx([60.0, 20.0])
    # a run whose older per-method tables lack the column, beside newer ones that have it
    mixed = pd.concat([df, df.assign(method="new", method_label="New", correct=df["pred"] == df["label"])])
    both = summarize(mixed, by="correct")
    assert both["correct"].tolist() == [False, True, False, True]
    agg = T.aggregate(s.assign(family="depth", setting="50", seed=0, learned=True), by="correct")
    iou = agg[agg["metric"] == "iou_area"].set_index("family")["mean"]
    assert iou.to_dict() == {"Depth, misclassified": pytest.approx(60.0), "Depth, correctly classified": pytest.approx(20.0)}
