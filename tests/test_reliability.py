"""Reliability: ICC(1) against scipy's one-way ANOVA and a simulation, Kendall's W against Friedman's test."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from thesislib import reliability as R


def test_icc_rests_on_scipys_one_way_anova():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(5), 3)
    values = rng.normal(0, 1, 5)[groups] + rng.normal(0, 1, 15)
    r = R.icc(values, groups)
    ref = stats.f_oneway(*[values[groups == g] for g in range(5)])
    assert r["F"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    assert r["lo"] <= r["icc"] <= r["hi"] and (r["groups"], r["n"]) == (5, 15)


def test_icc_recovers_the_share_of_variance_between_settings_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    covered, estimates = 0, []
    true = 0.6  # between-setting variance 1.5, within 1.0
    for _ in range(300):
        groups = np.repeat(np.arange(8), 3)
        values = rng.normal(0, np.sqrt(1.5), 8)[groups] + rng.normal(0, 1, 24)
        r = R.icc(values, groups)
        covered += r["lo"] <= true <= r["hi"]
        groups = np.repeat(np.arange(40), 3)  # many settings: the estimate's small-sample bias fades
        estimates.append(R.icc(rng.normal(0, np.sqrt(1.5), 40)[groups] + rng.normal(0, 1, 120), groups)["icc"])
    assert np.mean(estimates) == pytest.approx(true, abs=0.03)
    assert covered / 300 >= 0.9  # a 95 % interval (Monte Carlo error aside)


def test_kendalls_w_is_friedmans_test():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(6, 4)) + np.arange(4)  # 6 raters, 4 items with a common order
    w = R.kendalls_w(scores)
    ref = stats.friedmanchisquare(*scores.T)
    assert w["chi2"] == pytest.approx(ref.statistic) and w["p"] == pytest.approx(ref.pvalue)
    assert R.kendalls_w(np.tile(np.arange(5.0), (4, 1)))["w"] == pytest.approx(1.0)
    tied = np.array([[1, 1, 2, 3], [1, 2, 2, 3], [3, 1, 1, 2.0]])
    assert R.kendalls_w(tied)["chi2"] == pytest.approx(stats.friedmanchisquare(*tied.T).statistic)


def _results(between: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(4):
        shift = rng.normal(0, between)
        for s in range(3):
            for m, base in (("gradcam", 20.0), ("scorecam", 30.0), ("cam", 25.0)):
                rows.append(dict(family="f", setting=f"s{k}", overrides=json.dumps({"k": k}), seed=s,
                                 run_id=f"s{k}-{s}", learned=True, method=m, method_label=m, kind="explainer",
                                 iou_area=base + shift + rng.normal(0, 1), accuracy=80 + rng.normal(0, 1)))
    return pd.DataFrame(rows)


def test_a_metric_that_cannot_tell_settings_apart_is_named():
    flat = R.setting_reliability(_results(0.0, seed=1), methods=["scorecam"], metrics=["iou_area"]).frame
    apart = R.setting_reliability(_results(10.0), methods=["scorecam"], metrics=["iou_area"]).frame
    assert flat.loc[("Score-CAM", "IoU (A)"), "tells settings apart"].startswith("no")
    assert apart.loc[("Score-CAM", "IoU (A)"), "tells settings apart"] == "yes"


def test_method_concordance_over_runs_and_metrics():
    t = R.method_concordance(_results(1.0), metrics=["iou_area"]).frame
    assert float(t.loc["IoU (A)", "Kendall's W"]) > 0.8  # every run ranks Score-CAM > CAM > Grad-CAM
    assert float(t.loc["IoU (A)", "seed-to-seed τ (mean)"]) > 0.8


def _family_rows(family, settings, seeds, *, seed_effect, noise, paired, rng):
    rows = []
    shared = rng.normal(0, seed_effect, seeds)  # what a seed's initial weights add to every setting
    for k, (label, mean) in enumerate(settings.items()):
        for s in range(seeds):
            effect = shared[s] if paired else rng.normal(0, seed_effect)
            rows.append(dict(family=family, setting=label, seed=s, run_id=f"{family}-{label}-{s}", learned=True,
                             pairing=f"init{s}" if paired else f"{family}-{label}-{s}", method="scorecam",
                             iou_area=mean + effect + rng.normal(0, noise)))
    return rows


def test_power_by_family_uses_the_pairing_the_design_gives():
    from thesislib.inference import detectable_difference

    rng = np.random.default_rng(3)
    rows = (_family_rows("dropout", {"0": 30, "0.5": 31, "0.75": 29}, 3, seed_effect=5, noise=0.5, paired=True, rng=rng)
            + _family_rows("depth", {"18": 30, "34": 31, "50": 29}, 3, seed_effect=5, noise=0.5, paired=False, rng=rng))
    results = pd.DataFrame(rows)
    table = R.power_by_family(results).set_index("family")
    assert table.loc["dropout", "design"] == "paired by seed" and table.loc["depth", "design"] == "unpaired (Welch)"
    # paired: the seed's shared effect cancels in the differences, so far smaller differences are decided
    assert table.loc["dropout", "detectable at 3 seeds"] < table.loc["depth", "detectable at 3 seeds"] / 3
    d = results[results["family"] == "dropout"].pivot(index="pairing", columns="setting", values="iou_area")
    diffs = pd.concat([d["0.5"] - d["0"], d["0.75"] - d["0"]])
    sd = math.sqrt(((d["0.5"] - d["0"]).var() + (d["0.75"] - d["0"]).var()) / 2)  # pooled, 2 df each
    assert table.loc["dropout", "sd"] == pytest.approx(sd) and len(diffs) == 6
    assert table.loc["dropout", "detectable at 3 seeds"] == pytest.approx(detectable_difference(sd, 3))
    assert table.loc["dropout", "detectable at 10 seeds"] < table.loc["dropout", "detectable at 3 seeds"]
    pooled = math.sqrt(results[results["family"] == "depth"].groupby("setting")["iou_area"].var().mean())
    assert table.loc["depth", "detectable at 5 seeds"] == pytest.approx(
        detectable_difference(pooled, 5, paired_design=False))
    # runs that never learned inform nothing
    results.loc[results["setting"] == "0.75", "learned"] = False
    assert R.power_by_family(results).set_index("family").loc["dropout", "settings"] == 2
    results["learned"] = False
    assert R.power_by_family(results).set_index("family").empty  # nothing learned: an empty table, not an error


def test_power_beside_puts_an_earlier_designs_detectable_difference_beside_this_ones():
    import math

    import pandas as pd
    import pytest

    from thesislib.inference import detectable_difference
    from thesislib.reliability import power_beside

    power = pd.DataFrame({"family": ["depth", "dropout", "new"], "design": ["unpaired (Welch)", "paired by seed",
                                                                           "unpaired (Welch)"],
                          "sd": [4.0, 3.0, 1.0]})
    before = {"design": "report X", "sd": {"depth": 5.0, "dropout": 2.0}, "paired": ["dropout"]}
    out = power_beside(power, before).set_index("family")
    now, then = "detectable at 3 seeds", "report X: detectable at 3 seeds"
    assert out.loc["depth", now] == pytest.approx(detectable_difference(4.0, 3, paired_design=False))
    assert out.loc["depth", then] == pytest.approx(detectable_difference(5.0, 3, paired_design=False))
    assert out.loc["dropout", then] == pytest.approx(detectable_difference(2.0, 3, paired_design=True))
    assert list(out["no larger"]) == ["yes", "no", "—"] and math.isnan(out.loc["new", then])
    with pytest.raises(ValueError, match="power_before: missing sd"):
        power_beside(power, {"design": "report X"})


def test_the_panel_is_the_registrys_reliability_set(monkeypatch):
    """The reliability panel takes its metrics from the registry (its "reliability" set, in registry
    order): the per-image metrics every evaluation computes by default, the thesis's four among them."""
    import importlib

    from thesislib import reliability
    from thesislib.metrics import registry

    assert reliability.PANEL_METRICS == ("iou_area", "iou_bbox", "pointing_game", "relevance_mass", "average_drop",
                                         "increase_in_confidence")
    assert all(registry.REGISTRY[m].option is None and registry.REGISTRY[m].group for m in reliability.PANEL_METRICS)
    extra = registry.REGISTRY["ssim"]
    monkeypatch.setitem(registry.REGISTRY, "ssim", type(extra)(**{**extra.__dict__, "sets": ("reliability",)}))
    try:
        assert importlib.reload(reliability).PANEL_METRICS[-1] == "ssim"  # tag a metric, and the panel has it
    finally:
        monkeypatch.undo()
        importlib.reload(reliability)
