"""The tests a verdict rests on, checked against scipy and by simulation."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from thesislib import inference as I


@pytest.mark.parametrize("seed", range(5))
def test_paired_is_scipys_ttest_rel_and_tost_is_two_shifted_ttests(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(30, 2, 4), rng.normal(31, 2, 4)
    t = I.paired(a, b, margin=2.0)
    assert t.paired and t.df == 3 and t.n == (4, 4)
    assert t.p_greater == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-10)
    assert t.p_less == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue, rel=1e-10)
    tost = max(stats.ttest_rel(a + 2.0, b, alternative="greater").pvalue,
               stats.ttest_rel(a - 2.0, b, alternative="less").pvalue)
    assert t.p_equivalent == pytest.approx(tost, rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_welch_is_scipys_ttest_ind_without_equal_variances(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(30, 1, 3), rng.normal(29, 3, 3)
    t = I.welch_from_values(a, b, margin=2.0)
    assert not t.paired
    assert t.p_greater == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue, rel=1e-10)
    assert t.p_less == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue, rel=1e-10)
    tost = max(stats.ttest_ind(a + 2.0, b, equal_var=False, alternative="greater").pvalue,
               stats.ttest_ind(a - 2.0, b, equal_var=False, alternative="less").pvalue)
    assert t.p_equivalent == pytest.approx(tost, rel=1e-10)
    s = I.welch(30.0, 1.2, 3, 28.0, 2.5, 3, margin=2.0)  # the thesis's side: summary statistics only
    ref = stats.ttest_ind_from_stats(30.0, 1.2, 3, 28.0, 2.5, 3, equal_var=False, alternative="greater")
    assert s.p_greater == pytest.approx(ref.pvalue, rel=1e-10)


def test_no_spread_decides_exactly_and_equal_values_are_equivalent():
    same = I.paired([30, 31, 32], [30, 31, 32], margin=2.0)
    assert (same.p_greater, same.p_less, same.p_equivalent) == (1.0, 1.0, 0.0)
    shifted = I.welch(35.0, 0.0, 3, 30.0, 0.0, 3, margin=2.0)
    assert (shifted.p_greater, shifted.p_less, shifted.p_equivalent) == (0.0, 1.0, 1.0)


def test_bad_input_names_what_was_found():
    with pytest.raises(ValueError, match="at least 2"):
        I.paired([1.0], [2.0], 1.0)
    with pytest.raises(ValueError, match="n=1"):
        I.welch(1.0, 0.5, 1, 2.0, 0.5, 3, 1.0)
    with pytest.raises(ValueError, match="margin"):
        I.paired([1, 2], [2, 3], -1)


def _rejection_rate(test: I.Test, n: int, reps: int = 4000, seed: int = 0) -> float:
    """Monte Carlo: how often the test's design rejects at 5 % with n seeds if the truth is `test`'s estimate."""
    rng = np.random.default_rng(seed)
    if test.paired:
        d = rng.normal(test.diff, test.spread[0], (reps, n))
        p = stats.ttest_1samp(d, 0, axis=1, alternative="greater" if test.diff > 0 else "less").pvalue
    else:
        a = rng.normal(test.diff, test.spread[0], (reps, n))
        b = rng.normal(0, test.spread[1], (reps, n))
        p = stats.ttest_ind(a, b, axis=1, equal_var=False, alternative="greater" if test.diff > 0 else "less").pvalue
    return float((p <= 0.05).mean())


@pytest.mark.parametrize("design", ["paired", "welch"])
def test_seeds_needed_reach_the_power_a_simulation_of_the_test_shows(design):
    t = I.paired([31, 33, 30.5], [30, 31, 30], 2.0) if design == "paired" else I.welch(32, 1.5, 3, 30, 2.0, 3, 2.0)
    n = int(I.seeds_needed(t))
    assert 2 < n < I.MAX_SEEDS
    assert I.power(t, n) >= I.POWER > I.power(t, n - 1)
    # the noncentral t is the test's real power: checked against the test itself, simulated
    assert _rejection_rate(t, n) == pytest.approx(I.power(t, n), abs=0.03)
    assert _rejection_rate(t, max(2, n // 2), seed=1) == pytest.approx(I.power(t, max(2, n // 2)), abs=0.03)


def test_no_difference_needs_no_seeds_and_equivalence_has_its_own_count():
    t = I.paired([30, 31, 32.1], [30, 31, 32], margin=2.0)
    assert math.isfinite(I.seeds_needed(t, decision="equivalent"))
    assert I.seeds_needed(I.paired([30, 31, 32], [31, 30, 32], 2.0)) == math.inf  # a difference of exactly 0
    assert I.seeds_needed(I.paired([40, 41, 45], [30, 31, 32], 2.0), decision="equivalent") == math.inf


def test_detectable_difference_is_where_power_reaches_the_target():
    d = I.detectable_difference(2.0, 3)
    t = I.Test(d, 2.0 / math.sqrt(3), 2.0, True, (3, 3), (2.0, math.nan), 2.0, 0, 0, 0)
    assert I.power(t, 3) == pytest.approx(I.POWER, abs=1e-6)
    assert _rejection_rate(t, 3) == pytest.approx(I.POWER, abs=0.03)
    assert I.detectable_difference(2.0, 6) < d  # more seeds, smaller effects


def test_holm_count_steps_down():
    assert I.holm_count([0.001, 0.01, 0.04], 0.05) == 3  # 0.001 <= .05/3, 0.01 <= .05/2, 0.04 <= .05
    assert I.holm_count([0.001, 0.03, 0.04], 0.05) == 1  # 0.03 > .05/2: stops there
    assert I.holm_count([0.02, 0.02, 0.02], 0.05) == 0
    assert I.holm_count([0.01, 0.02, 0.03], 0.05) == 3
    assert I.holm_count([], 0.05) == 0


@pytest.mark.parametrize("x,y", [([1, 2, 3, 4], [2, 1, 4, 3]), ([80, 85, 90, 95, 99], [40, 30, 31, 10, 5]),
                                 ([1, 2, 2, 3, 5], [3, 3, 1, 2, 0])])
def test_spearman_trend_is_the_exact_permutation_test(x, y):
    rho, p_pos, p_neg = I.spearman_trend(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    def spearman(a, b, axis=-1):  # vectorised for scipy's enumeration of the pairings
        ra, rb = stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis)
        ra, rb = ra - ra.mean(axis, keepdims=True), rb - rb.mean(axis, keepdims=True)
        return (ra * rb).sum(axis) / np.sqrt((ra * ra).sum(axis) * (rb * rb).sum(axis))

    for alt, p in (("greater", p_pos), ("less", p_neg)):
        ref = stats.permutation_test((x, y), spearman, permutation_type="pairings", alternative=alt,
                                     n_resamples=math.inf, vectorized=True)
        assert p == pytest.approx(ref.pvalue)
    assert len(list(itertools.permutations(range(len(x))))) >= 24  # 4 points: p can reach 1/24 < 0.05


def test_three_points_cannot_reach_five_percent():
    assert I.spearman_trend([1, 2, 3], [1, 2, 3])[1] == pytest.approx(1 / 6)
    assert math.isnan(I.spearman_trend([1, 1, 1], [1, 2, 3])[1])
