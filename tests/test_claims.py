import numpy as np
import pandas as pd
import pytest

from thesislib import claims as C
from thesislib import tables as T
from thesislib.thesis import reference, thesis_notes


def _long(values: dict[str, list[float]], metric="iou_area", method="Score-CAM", family="batch_norm"):
    """Long format from per-setting seed values."""
    rows = [dict(family=family, setting=s, method=method, metric=metric, mean=np.mean(v),
                 std=np.std(v, ddof=1) if len(v) > 1 else np.nan, n=len(v)) for s, v in values.items()]
    return pd.DataFrame(rows)


def _results(effect: float, seed: int = 0, noise: float = 1.0):
    """Per-run results of baseline and BatchNorm, 3 seeds each, Score-CAM IoU (A) differing by `effect`."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, shift in (("baseline", 0.0), ("BatchNorm", effect)):
        for s in range(3):
            rows.append(dict(family="batch_norm", setting=setting, seed=s, run_id=f"{setting}{s}", method="scorecam",
                             method_label="Score-CAM", iou_area=30 + shift + rng.normal(0, noise),
                             accuracy=80.0 + rng.normal(0, noise), roc_auc=80.0, f1=70.0))
    return pd.DataFrame(rows)


def _verdict(results, claim="BatchNorm raises Score-CAM IoU (A) over the baseline"):
    return C.judge(T.aggregate(results), "batch_norm").set_index("claim").loc[claim, "verdict"]


def test_real_effect_agrees_noise_is_inconclusive_reversed_disagrees():
    assert _verdict(_results(10.0)) == "agrees"
    assert _verdict(_results(0.0)) == "inconclusive"
    assert _verdict(_results(-10.0)) == "disagrees"


def test_the_thesis_numbers_go_through_the_same_judge():
    j = C.judge(reference(), "batch_norm").set_index("claim")
    # Table 5.8: Score-CAM IoU (A) 27.8 -> 34.8 % with small std over 3 seeds
    assert j.loc["BatchNorm raises Score-CAM IoU (A) over the baseline", "thesis"] == "yes"
    assert set(j["level"]) == {0.95}


def test_one_of_six_is_rarely_yes_without_an_effect():
    rng = np.random.default_rng(0)
    claim = C.some_setting_better("baseline", "iou_area", "Score-CAM")
    yes = naive = 0
    reps = 200
    for _ in range(reps):
        seeds = {s: rng.normal(30, 1, 3) for s in ["baseline"] + [f"s{i}" for i in range(6)]}
        df = _long(seeds, family="precode")
        verdict, m = C.decide(claim(C.Cells(df)), df, seed=1)
        assert m == 6
        yes += verdict == "yes"
        naive += any(seeds[s].mean() > seeds["baseline"].mean() for s in seeds if s != "baseline")
    assert yes / reps <= 0.1
    assert naive / reps > 0.7  # the rule this replaces: "some mean is larger"


def test_one_of_six_finds_a_real_effect():
    rng = np.random.default_rng(1)
    seeds = {s: rng.normal(30, 1, 3) for s in ["baseline"] + [f"s{i}" for i in range(6)]}
    seeds["s3"] = rng.normal(40, 1, 3)
    df = _long(seeds, family="precode")
    assert C.decide(C.some_setting_better("baseline", "iou_area", "Score-CAM")(C.Cells(df)), df)[0] == "yes"


def test_best_of_k_makes_k_minus_one_comparisons_and_direction_comes_from_the_registry():
    df = _long({"a": [10, 11, 12], "b": [20, 21, 22], "c": [30, 31, 32]}, metric="average_drop")
    cells = C.Cells(df)
    # Average Drop: lower is better, so "a" is the best setting
    assert C.decide(C.best_setting_is("a", "average_drop", "Score-CAM")(cells), df) == ("yes", 2)
    assert C.decide(C.best_setting_is("c", "average_drop", "Score-CAM")(cells), df) == ("no", 2)
    assert C.decide(C.lowest_setting_is("a", "average_drop", "Score-CAM")(cells), df) == ("yes", 2)


def test_three_valued_logic():
    sure = C.Leaf((("a", "m", ""), ("b", "m", "")), lambda x: x[:, 0] > x[:, 1])
    never = C.Leaf((("a", "m", ""), ("b", "m", "")), lambda x: x[:, 0] < x[:, 1])
    unsure = C.Leaf((), None)
    df = pd.DataFrame(dict(setting=["a", "b"], metric="m", method="", mean=[10.0, 0.0], std=[1.0, 1.0], n=3))
    assert C.decide(C.All((sure, sure)), df)[0] == "yes"
    assert C.decide(C.All((sure, unsure)), df)[0] == "inconclusive"
    assert C.decide(C.All((sure, never)), df)[0] == "no"
    assert C.decide(C.Any((never, sure)), df)[0] == "yes"
    assert C.decide(C.Any((never, unsure)), df)[0] == "inconclusive"
    assert C.decide(C.Any((never, never)), df)[0] == "no"
    assert C.decide(C.Most((sure, sure, unsure)), df)[0] == "yes"
    assert C.decide(C.Most((sure, never, unsure)), df)[0] == "inconclusive"
    assert C.decide(C.Most((never, never, sure)), df)[0] == "no"


def test_one_seed_or_a_missing_std_is_inconclusive():
    one = _long({"BatchNorm": [50.0], "baseline": [10.0]})
    assert C.decide(C.better_than("BatchNorm", "baseline", "iou_area", "Score-CAM")(C.Cells(one)), one)[0] \
        == "inconclusive"
    nan = _long({"BatchNorm": [50, 51, 52], "baseline": [10, 11, 12]}).assign(std=np.nan)
    assert C.decide(C.better_than("BatchNorm", "baseline", "iou_area", "Score-CAM")(C.Cells(nan)), nan)[0] \
        == "inconclusive"


def test_same_seed_same_verdict_and_alpha_is_checked():
    df = _long({"BatchNorm": [31, 33, 35], "baseline": [30, 31, 32]})
    node = C.better_than("BatchNorm", "baseline", "iou_area", "Score-CAM")(C.Cells(df))
    assert C.decide(node, df, seed=3) == C.decide(node, df, seed=3)
    with pytest.raises(ValueError, match="alpha"):
        C.decide(node, df, alpha=1.5)


def _family_long(accs, ious, family="dropout"):
    rows = []
    for i, (a, v) in enumerate(zip(accs, ious)):
        rows.append(dict(family=family, setting=f"s{i}", method="", metric="accuracy", mean=a, std=0.5, n=3))
        rows.append(dict(family=family, setting=f"s{i}", method="Score-CAM", metric="iou_area", mean=v, std=0.5, n=3))
    return pd.DataFrame(rows)


def test_spearman_sign_needs_three_settings():
    # dropout: the thesis says accuracy and IoU trade off
    trade = C.judge_correlations(_family_long([80, 85, 90, 95], [40, 30, 20, 10])).set_index("family")
    assert trade.loc["dropout", "verdict"] == "agrees"
    rise = C.judge_correlations(_family_long([80, 85, 90, 95], [10, 20, 30, 40])).set_index("family")
    assert rise.loc["dropout", "verdict"] == "disagrees"
    two = C.judge_correlations(_family_long([80, 95], [40, 10])).set_index("family")
    assert two.loc["dropout", "ours_rho"] == pytest.approx(-1.0)
    assert two.loc["dropout", "verdict"] == "inconclusive"
    assert C.judge_correlations(reference()).set_index("family").loc["batch_norm", "thesis"] == "inconclusive"


def test_verdict_counts_and_markdown_state_the_level():
    j = C.judge(T.aggregate(_results(10.0)), "batch_norm")
    counts = C.verdict_counts(j)
    assert counts == {"agrees": 1, "disagrees": 0, "inconclusive": 1}
    text = C.verdicts_markdown(j).data
    assert "95 % confidence" in text and "**agrees**" in text
    missing = C.judge(pd.DataFrame(columns=["family", "setting", "method", "metric", "mean", "std", "n"]), "precode")
    assert C.verdict_counts(missing) == {"agrees": 0, "disagrees": 0, "inconclusive": 0, "n/a": 2}


def test_thirty_claims():
    assert len(C.CLAIMS) + len(C.METHOD_CLAIMS) + len(C.correlation_claims()) == 30


def test_cam_note_quotes_the_thesis_numbers():
    note = thesis_notes("depth")
    ref = reference()
    cam = ref[(ref["family"] == "depth") & (ref["setting"] == "18") & (ref["method"] == "CAM")
              & (ref["metric"] == "iou_area")]["mean"].iloc[0]
    assert f"IoU (A) {cam:g} % vs 11.6 %" in note and "Grad-CAM up to a" in note
    assert thesis_notes("dropout") == ""  # no CAM column there


def test_one_of_six_is_judged_at_alpha_over_six():
    # s0 beats the baseline by 4 points (std 1, 3 seeds): significant alone, not as one of six
    values = {"baseline": [30, 31, 32], "s0": [34, 35, 36], **{f"s{i}": [29, 30, 31] for i in range(1, 6)}}
    df = _long(values, family="precode")
    cells = C.Cells(df)
    assert C.decide(C.better_than("s0", "baseline", "iou_area", "Score-CAM")(cells), df) == ("yes", 1)
    assert C.decide(C.some_setting_better("baseline", "iou_area", "Score-CAM")(cells), df) == ("inconclusive", 6)
