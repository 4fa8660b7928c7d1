import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from thesislib import claims as C
from thesislib import tables as T
from thesislib.thesis import reference

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_every_name_the_notebooks_call_exists():
    from thesislib import questions, reliability

    modules = {"tables": T, "claims": C, "questions": questions, "reliability": reliability}
    called = set()
    for nb in NOTEBOOKS.glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.startswith("%"))
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                    called.add((node.value.id, node.attr))
    assert ("claims", "claims_markdown") in called and ("tables", "thesis_table") in called
    missing = [f"{m}.{a}" for m, a in sorted(called) if not hasattr(modules[m], a)]
    assert not missing


def test_reference_is_the_thesis_tables():
    ref = reference()
    assert len(ref) == 339
    cell = ref[(ref["family"] == "depth") & (ref["setting"] == "50") & (ref["method"] == "Score-CAM")
               & (ref["metric"] == "iou_area")]
    assert cell[["mean", "std"]].values.tolist() == [[21.0, 0.33]]
    assert set(ref["setting"][ref["family"] == "weight_decay"]) == {"baseline", "L1 1e-05", "L1 1e-04", "L1 1e-03",
                                                                    "L2 1e-05", "L2 1e-04", "L2 1e-03"}
    assert set(ref["setting"][ref["family"] == "precode"]) >= {"baseline", "β=1e-03, k=512"}


def _results(flag_seed: int | None = None, references: bool = False):
    rows = []
    methods = [("gradcam", "Grad-CAM", 0.0), ("scorecam", "Score-CAM", 5.0)]
    if references:
        methods += [("prior", "Prior (mean expert map)", 20.0), ("ceiling", "Ceiling (expert map at CAM grid)", 40.0)]
    for setting, shift in (("a", 0.0), ("b", 10.0)):
        for seed, noise in ((0, -1.0), (1, 1.0), (2, 3.0)):
            for method, label, m_shift in methods:
                rows.append(dict(family="depth", setting=setting, seed=seed, run_id=f"{setting}{seed}", method=method,
                                 method_label=label, iou_area=20 + shift + m_shift + noise, iou_bbox=1.0,
                                 average_drop=50.0, increase_in_confidence=2.0, accuracy=80 + shift + seed,
                                 roc_auc=70.0, f1=60.0, seconds_per_image=0.002, constant_heatmaps=0,
                                 learned=not (setting == "b" and seed == flag_seed)))
    return pd.DataFrame(rows)


def _depth(df):
    return df.assign(setting=df["setting"].map({"a": "18", "b": "50"}))


def test_aggregate_is_mean_sample_std_and_t_interval_over_seeds():
    agg = T.aggregate(_results())
    cell = agg[(agg["setting"] == "b") & (agg["method"] == "Score-CAM") & (agg["metric"] == "iou_area")].iloc[0]
    values = [34, 36, 38]
    assert cell["mean"] == pytest.approx(36) and cell["std"] == pytest.approx(np.std(values, ddof=1))
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
    assert (cell["lo"], cell["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert cell["n"] == 3 and cell["n_flagged"] == 0 and cell["kind"] == "explainer"
    acc = agg[(agg["setting"] == "a") & (agg["metric"] == "accuracy")].iloc[0]
    assert acc["method"] == "" and acc["mean"] == pytest.approx(81) and acc["n"] == 3  # one value per run


def test_aggregate_counts_flagged_runs_and_can_leave_them_out():
    agg = T.aggregate(_results(flag_seed=2)).set_index(["setting", "method", "metric"])
    assert agg.loc[("b", "Score-CAM", "iou_area"), "n_flagged"] == 1
    assert agg.loc[("b", "", "accuracy"), "n_flagged"] == 1 and agg.loc[("a", "", "accuracy"), "n_flagged"] == 0
    kept = T.aggregate(_results(flag_seed=2), learned_only=True).set_index(["setting", "method", "metric"])
    assert kept.loc[("b", "Score-CAM", "iou_area"), "n"] == 2
    assert kept.loc[("b", "Score-CAM", "iou_area"), "mean"] == pytest.approx(35)


def test_thesis_table_puts_the_thesis_beside_ours():
    agg = T.aggregate(_depth(_results()))
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


def test_thesis_table_shows_reference_rows_flags_and_small_n():
    agg = T.aggregate(_depth(_results(flag_seed=2, references=True)))
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
    two = T.thesis_table(T.aggregate(_depth(_results()[lambda d: d["seed"] < 2])), "depth", methods=["Score-CAM"])
    assert two.loc[("↑ IoU (A)", "Score-CAM"), ("18", "ours")].endswith("(n=2)")
    one = T.thesis_table(T.aggregate(_depth(_results()[lambda d: d["seed"] == 0])), "depth", methods=["Score-CAM"])
    assert one.loc[("↑ IoU (A)", "Score-CAM"), ("18", "ours")] == "24.0 (n=1)"


def test_a_thesis_table_with_many_settings_puts_them_in_rows():
    res = _results(references=True)[lambda d: d["setting"] == "a"]
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


def test_method_table_lists_explainers_then_references_and_marks_duplicates():
    res = _results(flag_seed=1, references=True)
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


def test_correlation_verdicts_use_the_thesis_numbers():
    j = C.judge_correlations(None).set_index("family")
    assert j.loc["depth", "thesis_rho"] == pytest.approx(0.5)  # Score-CAM IoU 16.2, 15.5, 21.0 vs acc 82.2, 83.5, 85.3
    assert j.loc["batch_norm", "thesis_rho"] == pytest.approx(-1.0)


def test_best_settings_ignore_references_and_can_skip_flagged_runs():
    res = _results(flag_seed=0, references=True).assign(family="dropout")
    res = pd.concat([res, res[res["setting"] == "a"].assign(setting="c", iou_area=lambda d: d["iou_area"] + 5)])
    agg = T.aggregate(res)
    assert T.best_settings(agg, method="Score-CAM") == [("dropout", "b")]
    assert T.best_settings(agg, method="Score-CAM", learned_only=True) == [("dropout", "c")]
    assert T.best_settings(agg, method="Prior (mean expert map)") == []


def test_model_points_carry_learned():
    pts = T.model_points(_results(flag_seed=1), "scorecam")
    assert len(pts) == 6 and pts["learned"].sum() == 5 and "iou_area" in pts and "accuracy" in pts
    assert len(T.model_points(_results(flag_seed=1), "scorecam", learned_only=True)) == 5
    assert T.model_points(_results().drop(columns="learned"), "scorecam")["learned"].all()
    unknown = _results(flag_seed=1).astype({"learned": object})
    unknown.loc[unknown["seed"] == 0, "learned"] = None  # a run that predates the check counts as learned
    assert T.model_points(unknown, "scorecam")["learned"].sum() == 5
    assert T.aggregate(unknown)["n_flagged"].max() == 1
    with pytest.raises(ValueError, match="reference map"):
        T.model_points(_results(references=True), "prior")


def test_correlation_table_side_by_side():
    from thesislib.stats import correlations

    pts = T.model_points(_results(flag_seed=1), "scorecam")
    both = T.correlation_table(correlations(pts, "accuracy", ["iou_area"], n_boot=50),
                               correlations(pts, "accuracy", ["iou_area"], learned_only=True, n_boot=50))
    assert list(both.columns.get_level_values(0).unique()) == ["all models", "learned only"]
    assert both.loc[("all", "IoU (A)"), ("all models", "models")] == 6
    assert both.loc[("all", "IoU (A)"), ("learned only", "models")] == 5


def test_method_label_knows_references():
    assert T.method_label("scorecam") == "Score-CAM" and T.method_label("prior").startswith("Prior")
    with pytest.raises(ValueError, match="method"):
        T.method_label("nope")


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


def test_run_health_names_the_runs_that_never_learned():
    res = _results(flag_seed=1)
    text = T.run_health(res).data
    assert "1 of 6 runs never learned" in text and "seed 1" in text
    assert "All 6 runs learned" in T.run_health(_results()).data


def test_references_summary_uses_learned_runs_and_says_when_none_learned():
    res = _against(prior_shift=10.0)
    assert T.references_summary(res).frame["an explainer beats it (95 %)"].tolist() == ["yes", "yes"]
    failed = T.references_summary(res.assign(learned=False))
    assert "No run learned" in failed.notes[0] and len(failed.frame) == 2
    per_class = T.references_summary(res, by="pred").frame
    assert {f for f, _ in per_class.index} == {"Depth, predicted non-glaucoma", "Depth, predicted glaucoma"}


# -- does a conclusion survive another metric, threshold or slice? -------------------------------

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
