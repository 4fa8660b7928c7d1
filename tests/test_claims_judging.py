"""The claims' judge (thesislib.claims.judging): its error rates by simulation, its power on a paired
design, and the outcomes it gives for runs that did not learn, equal cells and bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from thesislib import claims as C
from thesislib import inference as I
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


def test_bad_alpha_and_results_without_overrides_are_refused():
    claim = C.CLAIMS[0]
    with pytest.raises(ValueError, match="alpha"):
        C.judge_claim(claim, C.Evidence({}, {}), alpha=1.5)
    with pytest.raises(ValueError, match="overrides"):
        C.Evidence.of_results(pd.DataFrame({"family": ["depth"], "setting": ["18"], "seed": [0]}))
