"""The report's claims judged per scope (thesislib.claims.verdicts): keys, scopes, designs, seeds to
decide, and the Markdown a reader sees."""

import json

import numpy as np
import pandas as pd
import pytest

from thesislib import claims as C
from thesislib.claims import verdicts

def test_a_trend_over_fewer_than_four_settings_is_untestable_and_not_tallied():
    judged = C.judge_correlations(None)
    by = judged.set_index("family")
    assert by.loc["batch_norm", "thesis"] == "untestable" and by.loc["depth", "thesis"] == "untestable"
    counts = C.verdict_counts(judged, "thesis")
    assert counts["untestable"] == 2 and sum(counts[k] for k in C.TALLY) == len(judged) - 2


def _results(family: str, settings: dict[str, tuple[dict, float]], *, method="scorecam", seeds=3, noise=0.5,
             seed=0, learned=True, epochs=None) -> pd.DataFrame:
    """Grid.results()-like rows: per setting (label -> (overrides, mean Score-CAM IoU)) and seed."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, (overrides, mean) in settings.items():
        for s in range(seeds):
            rows.append(dict(family=family, setting=label, overrides=json.dumps(overrides, sort_keys=True), seed=s,
                             run_id=f"{label}-{s}", learned=learned, pairing=f"init{s}", method=method,
                             method_label="Score-CAM", kind="explainer", iou_area=mean + rng.normal(0, noise),
                             accuracy=80 + rng.normal(0, noise), roc_auc=80.0, f1=70.0))
    return pd.DataFrame(rows)


def test_claims_join_on_overrides_not_on_labels():
    res = _results("batch_norm", {"baseline": ({}, 30.0), "BatchNorm": ({"norm": "batch"}, 40.0)})
    relabelled = res.assign(setting=res["setting"].map({"baseline": "no norm", "BatchNorm": "BN (renamed)"}))
    for r in (res, relabelled):
        j = C.judge(r, "batch_norm").set_index("claim")
        assert j.loc["BatchNorm raises Score-CAM IoU (A) over the baseline", "verdict"] == "agrees"


def test_other_design_is_untestable_and_says_why():
    # batch sizes at equal optimiser steps carry their epochs: not the thesis's equal-epoch design
    res = _results("batch_size", {"16": ({"batch_size": 16, "epochs": 5}, 30.0), "32": ({"batch_size": 32}, 31.0),
                                  "256": ({"batch_size": 256, "epochs": 63}, 35.0)})
    j = C.judge(res, "batch_size").set_index("claim")
    row = j.loc["Batch size 256 has the highest Score-CAM IoU (A)"]
    assert row["verdict"] == "untestable" and "other design" in row["note"] and "epochs 63" in row["note"]
    assert row["thesis"] == "yes"  # the thesis's numbers are still judged on the thesis's design


def test_a_scale_s_wider_stem_is_the_thesis_s_setting_not_another_design():
    # the default scale's ResNet-50 carries stem_channels: the same setting "50", judged, not "other design"
    wide = {"18": ({"depth": 18}, 20.0), "34": ({"depth": 34}, 22.0), "50": ({"depth": 50, "stem_channels": 16}, 30.0)}
    plain = {k: ({"depth": int(k)}, v) for k, (_, v) in wide.items()}
    got, want = (C.judge(_results("depth", d), "depth").set_index("claim") for d in (wide, plain))
    assert (got["ours"] != "untestable").all() and not got["note"].str.contains("other design").any()
    assert got[["ours", "verdict"]].equals(want[["ours", "verdict"]])
    from thesislib.claims.evidence import canonical

    assert canonical({"depth": 50, "stem_channels": 16}) == C.S(depth=50)


def test_both_sides_are_judged_on_the_settings_both_hold():
    res = _results("weight_decay", {"baseline": ({}, 40.0), "L1 1e-04": ({"penalty": "l1", "penalty_lambda": 1e-4}, 30.0)})
    row = C.judge(res, "weight_decay").set_index("claim").loc[
        "Every weight-decay setting lowers Score-CAM IoU (A) below the baseline"]
    assert row["verdict"] == "agrees" and row["comparisons"] == 1
    assert "judged on 2 of the thesis's 7 settings" in row["note"]


def test_method_claims_count_a_shared_run_once_and_need_the_four_methods():
    rows = []
    for fam, setting, ov in (("depth", "50", {"depth": 50}), ("epochs", "batch 16", {"batch_size": 16}),
                             ("depth", "18", {"depth": 18})):
        for m, mean in zip(C.THESIS_METHOD_KEYS, (20, 25, 26, 35)):
            part = _results(fam, {setting: (ov, mean)}, method=m, seed=hash(m) % 100)
            run = "50" if setting in ("50", "batch 16") else setting  # the epochs run is the depth-50 run
            rows.append(part.assign(run_id=[f"{run}-{s}" for s in part["seed"]]))
    res = pd.concat(rows, ignore_index=True)
    thesis, ours = verdicts.methods_scope(res)
    assert sorted(ours.labels.values()) == ["18", "50"] and sorted(thesis.settings) == sorted(ours.settings)
    j = C.judge_methods(res).set_index("claim")
    assert j.loc["Score-CAM has the highest IoU (A) in most settings", "comparisons"] == 6  # 2 settings x 3
    gradcam_only = res[res["method"].isin(["gradcam", "scorecam"])]
    assert C.judge_methods(gradcam_only)["verdict"].eq("n/a").all()  # "best of four" needs the four


def test_inconclusive_claims_say_how_many_seeds_would_decide():
    res = _results("batch_norm", {"baseline": ({}, 30.0), "BatchNorm": ({"norm": "batch"}, 31.5)}, noise=1.5, seed=3)
    j = C.judge(res, "batch_norm").set_index("claim").loc["BatchNorm raises Score-CAM IoU (A) over the baseline"]
    assert j["ours"] == "inconclusive"
    needed = j["seeds_needed"]
    assert needed.startswith("no effect to find") or needed.startswith(">") or int(needed) > 3


def test_verdict_markdown_names_rule_design_and_seeds():
    res = _results("batch_norm", {"baseline": ({}, 30.0), "BatchNorm": ({"norm": "batch"}, 40.0)})
    text = C.verdicts_markdown(C.judge(res, "batch_norm")).data
    assert "| BatchNorm raises Score-CAM IoU (A) over the baseline | yes | yes | **agrees**" in text
    assert "one comparison, paired by seed" in text and "3 of 3" in text and "95 %" in text
    missing = C.judge(res.iloc[0:0], "precode")
    assert C.verdict_counts(missing)["n/a"] == 2


def test_correlation_verdicts_use_the_thesis_numbers():
    j = C.judge_correlations(None).set_index("family")
    assert j.loc["depth", "thesis_rho"] == pytest.approx(0.5)  # Score-CAM IoU 16.2, 15.5, 21.0 vs acc 82.2, 83.5, 85.3
    assert j.loc["batch_norm", "thesis_rho"] == pytest.approx(-1.0)


def test_a_family_outside_the_design_is_refused():
    assert C.judge(None, "optimizer").empty  # a family of the design without thesis claims: none to judge
    with pytest.raises(ValueError, match="family: unknown 'dropuot', expected one of depth, epochs"):
        C.claims_markdown(None, "dropuot")
