"""The claims' judge: its error rates by simulation, its power on a paired design, and the outcomes
it gives for runs that did not learn, other designs, equal cells and one scope per claim."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from thesislib import claims as C
from thesislib import inference as I
from thesislib.claims import verdicts
from thesislib.metrics import REGISTRY

ALPHA = C.ALPHA
REPS = 2000
# a rate measured over REPS simulations may exceed its true value by Monte Carlo error only
TOLERANCE = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)


def _evidence(values: dict[str, np.ndarray], *, paired: bool = True, metric: str = "iou_area",
              method: str = "scorecam", learned: dict[str, list[bool]] | None = None) -> C.Evidence:
    """Evidence from per-setting seed values (settings are their own keys and labels)."""
    cells = {}
    for s, vals in values.items():
        ok = (learned or {}).get(s, [True] * len(vals))
        cells[(s, metric, method)] = C.SeedValues(
            {i: (float(v), bool(ok[i]), f"seed{i}" if paired else f"{s}:{i}") for i, v in enumerate(vals)})
    return C.Evidence(cells, {s: s for s in values})


def _draw(rng, means: dict[str, float], n: int = 3, rho: float = 0.8, sd: float = 1.0) -> dict[str, np.ndarray]:
    """Seed values whose settings correlate at `rho` by seed (a shared seed effect)."""
    shared = rng.normal(size=n)
    return {s: m + sd * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.normal(size=n)) for s, m in means.items()}


def _rate(check, means, outcome, *, paired=True, seed=0, reps=REPS, **kw) -> float:
    rng = np.random.default_rng(seed)
    claim = C.Claim("simulated", "f", check)
    hits = sum(C.judge_claim(claim, _evidence(_draw(rng, means, **kw), paired=paired)).outcome == outcome
               for _ in range(reps))
    return hits / reps


# -- error rates: with no effect, a wrong decided outcome at most alpha of the time ----------------

@pytest.mark.parametrize("paired", [True, False])
def test_one_comparison_without_an_effect_is_decided_at_most_alpha_each_way(paired):
    check = C.better_than("b", "a", "iou_area", "scorecam")
    assert _rate(check, {"a": 30, "b": 30}, "yes", paired=paired) <= TOLERANCE
    assert _rate(check, {"a": 30, "b": 30}, "no", paired=paired, seed=1) <= TOLERANCE


def test_every_of_k_says_yes_at_most_alpha_when_one_comparison_has_no_effect():
    # the least favourable case for the intersection-union rule: three comparisons certain, one null
    check = C.best_setting_is("a", "iou_area", "scorecam")
    assert _rate(check, {"a": 30, "b": 30, "c": 20, "d": 20, "e": 20}, "yes") <= TOLERANCE
    # and "no" (Holm over the reversed comparisons) when none is reversed
    assert _rate(check, {"a": 30, "b": 30, "c": 30, "d": 30, "e": 30}, "no", seed=1) <= TOLERANCE


def test_some_of_k_says_yes_at_most_alpha_without_an_effect_and_the_naive_rule_far_more():
    means = {"base": 30, **{f"s{i}": 30 for i in range(6)}}
    check = C.some_setting_better("base", "iou_area", "scorecam")
    assert _rate(check, means, "yes") <= TOLERANCE
    # the same simulation judged without multiplicity control: each comparison at alpha
    rng = np.random.default_rng(0)
    naive = 0
    for _ in range(REPS):
        v = _draw(rng, means)
        naive += any(I.paired(v[s], v["base"], 2.0).p_greater <= ALPHA for s in means if s != "base")
    assert naive / REPS > 2 * TOLERANCE


def test_some_of_k_says_no_at_most_alpha_when_one_comparison_is_null():
    check = C.some_setting_better("base", "iou_area", "scorecam")
    assert _rate(check, {"base": 30, "s0": 30, "s1": 20, "s2": 20}, "no") <= TOLERANCE


def _most_evidence(rng, wins: int, settings: int = 5):
    """Score-CAM against three other methods at each setting: it wins by 10 at `wins` settings, ties elsewhere."""
    cells = {}
    for k in range(settings):
        shared = rng.normal(size=3)
        for m in C.THESIS_METHOD_KEYS:
            mean = 40 if (m == "scorecam" and k < wins) else 30
            v = mean + math.sqrt(0.8) * shared + math.sqrt(0.2) * rng.normal(size=3)
            cells[(f"s{k}", "iou_area", m)] = C.SeedValues({i: (float(v[i]), True, f"s{k}:{i}") for i in range(3)})
    return C.Evidence(cells, {f"s{k}": f"s{k}" for k in range(settings)})


def test_most_of_k_says_yes_at_most_alpha_when_only_half_hold():
    claim = C.Claim("most", "methods", C.best_method_is("scorecam", "iou_area", every_setting=False))
    rng = np.random.default_rng(0)
    yes = sum(C.judge_claim(claim, _most_evidence(rng, wins=2)).outcome == "yes" for _ in range(REPS // 2))
    assert yes / (REPS // 2) <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / (REPS // 2))
    assert C.judge_claim(claim, _most_evidence(rng, wins=5)).outcome == "yes"


def test_equivalence_at_the_margin_is_claimed_at_most_alpha():
    check = C.better_than("b", "a", "iou_area", "scorecam")
    margin = REGISTRY["iou_area"].margin
    assert _rate(check, {"a": 30, "b": 30 + margin}, "equivalent") <= TOLERANCE
    assert _rate(check, {"a": 30, "b": 30}, "equivalent", sd=0.3, seed=1) > 0.5  # within the margin: found


# -- power: the design's pairing by seed reaches the judge ------------------------------------------

def _old_judge_yes(a: np.ndarray, b: np.ndarray, rng, draws: int = 4000) -> bool:
    """The judge this replaces: each cell's mean drawn on its own from Student t(n - 1)."""
    n = len(a)
    da = a.mean() + a.std(ddof=1) / math.sqrt(n) * rng.standard_t(n - 1, draws)
    db = b.mean() + b.std(ddof=1) / math.sqrt(n) * rng.standard_t(n - 1, draws)
    return float((da > db).mean()) >= 1 - ALPHA


def test_one_sd_at_correlation_0_8_and_three_seeds_is_decided_yes_often():
    check = C.better_than("b", "a", "iou_area", "scorecam")
    power = _rate(check, {"a": 30, "b": 31}, "yes")
    assert power >= 0.45  # a paired t-test: about 56 %
    rng = np.random.default_rng(0)
    old = np.mean([_old_judge_yes(v["b"], v["a"], rng) for v in (_draw(rng, {"a": 30, "b": 31}) for _ in range(400))])
    assert old < 0.2  # the unpaired bootstrap judge: about 10 %


def test_unpaired_runs_are_judged_by_welch():
    v = {"a": np.array([30.0, 31, 32]), "b": np.array([33.0, 34, 36])}
    claim = C.Claim("b beats a", "f", C.better_than("b", "a", "iou_area", "scorecam"))
    paired, welch = C.judge_claim(claim, _evidence(v)), C.judge_claim(claim, _evidence(v, paired=False))
    assert paired.design == "paired by seed" and welch.design == "Welch"
    assert welch.tests[0][1].p_greater == pytest.approx(I.welch_from_values(v["b"], v["a"], 2.0).p_greater)


# -- outcomes that are not tests -------------------------------------------------------------------

def test_a_setting_with_fewer_than_two_learned_seeds_did_not_learn():
    v = {"a": np.array([30.0, 31, 32]), "b": np.array([50.0, 51, 52])}
    ev = _evidence(v, learned={"b": [True, False, False]})
    j = C.judge_claim(C.Claim("b beats a", "f", C.better_than("b", "a", "iou_area", "scorecam")), ev)
    assert j.outcome == "did not learn" and "b: 1 of 3 learned" in j.note
    two = C.judge_claim(C.Claim("b beats a", "f", C.better_than("b", "a", "iou_area", "scorecam")),
                        _evidence(v, learned={"b": [True, False, True]}))
    assert two.outcome == "yes" and two.seeds == "2-3 of 3"  # unpaired seeds 0 and 2 of b: still judged


def test_equal_cells_without_spread_are_equivalent_not_no():
    v = {"a": np.array([30.0, 30, 30]), "b": np.array([30.0, 30, 30])}
    j = C.judge_claim(C.Claim("b beats a", "f", C.better_than("b", "a", "iou_area", "scorecam")), _evidence(v))
    assert j.outcome == "equivalent"


def test_a_trend_over_fewer_than_four_settings_is_untestable_and_not_tallied():
    judged = C.judge_correlations(None)
    by = judged.set_index("family")
    assert by.loc["batch_norm", "thesis"] == "untestable" and by.loc["depth", "thesis"] == "untestable"
    counts = C.verdict_counts(judged, "thesis")
    assert counts["untestable"] == 2 and sum(counts[k] for k in C.TALLY) == len(judged) - 2


def test_the_thesis_tables_support_16_of_its_23_claims():
    judged = pd.concat([C.judge(None), C.judge_methods(None)])
    assert len(judged) == 23
    assert C.verdict_counts(judged, "thesis")["agrees"] == 16
    j = C.judge(None, "batch_norm").set_index("claim")
    # Table 5.8: Score-CAM IoU (A) 27.8 -> 34.8 % with small std over 3 seeds
    assert j.loc["BatchNorm raises Score-CAM IoU (A) over the baseline", "thesis"] == "yes"


def test_thirty_claims():
    assert len(C.CLAIMS) + len(C.METHOD_CLAIMS) + len(C.correlation_claims()) == 30


# -- our runs: keys, scopes, designs ---------------------------------------------------------------

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


def test_bad_alpha_and_results_without_overrides_are_refused():
    claim = C.CLAIMS[0]
    with pytest.raises(ValueError, match="alpha"):
        C.judge_claim(claim, C.Evidence({}, {}), alpha=1.5)
    with pytest.raises(ValueError, match="overrides"):
        C.Evidence.of_results(pd.DataFrame({"family": ["depth"], "setting": ["18"], "seed": [0]}))
