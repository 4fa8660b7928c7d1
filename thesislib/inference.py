"""Inference: the tests one comparison of a verdict rests on, and the seeds a decision would need.

A comparison asks whether a is larger than b (a claim's direction is applied before: "lower is
better" swaps a and b). The unit is the run: one value per seed.

- Where the design pairs a and b by seed (same initial weights and batch order, or two maps of
  the same run), the test is a paired t-test on the per-seed differences (`paired`).
- Otherwise, and for the thesis's side (only mean, std and n = 3 are published), Welch's t-test
  (`welch`).

Each test gives three one-sided p-values: `p_greater` (H0: a <= b), `p_less` (H0: a >= b) and
`p_equivalent`, two one-sided tests (TOST) of H0: |a - b| >= margin, where the margin is the
metric's (`thesislib.metrics.Metric.margin`: the smallest difference worth the name). Each
decision made at level alpha is wrong at most alpha of the time when its null holds.

`seeds_needed` gives the seeds per setting at which a one-sided test (or TOST) would reach a given
power if the true difference and spread were those observed: the noncentral t distribution, with
Welch's degrees of freedom for unpaired comparisons. `spearman_trend` is the exact permutation
test of a rank correlation over a few points (a family's settings).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special, stats

__all__ = ["ALPHA", "POWER", "MAX_SEEDS", "Test", "paired", "welch", "welch_from_values", "power", "seeds_needed",
           "detectable_difference", "holm_count", "spearman_trend", "MIN_TREND_POINTS"]

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 100  # seeds_needed searches up to here; beyond it a claim is "not within 100 seeds"
MIN_TREND_POINTS = 4  # an exact permutation test of Spearman's rho over 3 points cannot reach p < 1/6


@dataclass(frozen=True)
class Test:
    """One comparison "a > b".

    Attributes:
        diff: mean(a) - mean(b) (paired: the mean of the per-seed differences).
        se: its standard error; df: the t distribution's degrees of freedom.
        paired: True for a paired t-test, False for Welch's.
        n: (values of a, values of b); paired: the number of pairs, twice.
        spread: paired: (sd of the differences, nan); Welch: (sd of a, sd of b).
        margin: the equivalence margin, in the values' unit.
        p_greater, p_less: one-sided p-values of H0 a <= b and of H0 a >= b.
        p_equivalent: TOST p-value of H0 |a - b| >= margin (the larger of its two one-sided p).
    """

    diff: float
    se: float
    df: float
    paired: bool
    n: tuple[int, int]
    spread: tuple[float, float]
    margin: float
    p_greater: float
    p_less: float
    p_equivalent: float

    @property
    def design(self) -> str:
        return "paired" if self.paired else "Welch"


def _pvalues(diff: float, se: float, df: float, margin: float) -> tuple[float, float, float]:
    if not (math.isfinite(se) and se > 0):  # no spread: the difference is exact
        p_greater = 0.0 if diff > 0 else 1.0
        p_less = 0.0 if diff < 0 else 1.0
        return p_greater, p_less, 0.0 if abs(diff) < margin else 1.0
    # scipy.special's Student t CDF (stdtr): the distribution scipy.stats.t uses, without its overhead
    t = diff / se
    p_equivalent = max(float(special.stdtr(df, -(diff + margin) / se)), float(special.stdtr(df, (diff - margin) / se)))
    return float(special.stdtr(df, -t)), float(special.stdtr(df, t)), p_equivalent


def _check_margin(margin: float) -> None:
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin: expected a finite number >= 0, found {margin!r}")


def paired(a: Sequence[float], b: Sequence[float], margin: float) -> Test:
    """Paired t-test of a > b on the per-seed differences a[i] - b[i] (scipy's `ttest_rel`).

    Raises:
        ValueError: a and b differ in length, hold fewer than 2 pairs or a non-finite value.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    _check_margin(margin)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"a, b: expected two equal-length lists of at least 2 finite values, found {a.tolist()} "
                         f"and {b.tolist()}")
    d = a - b
    n = len(d)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    diff = float(d.mean())
    return Test(diff, se, n - 1.0, True, (n, n), (sd, math.nan), float(margin), *_pvalues(diff, se, n - 1.0, margin))


def _welch_df(va: float, vb: float, na: int, nb: int) -> float:
    den = (va * va / (na - 1) if va else 0.0) + (vb * vb / (nb - 1) if vb else 0.0)
    return (va + vb) ** 2 / den if den > 0 else float(na + nb - 2)


def welch(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, margin: float) -> Test:
    """Welch's t-test of a > b from summary statistics (scipy's `ttest_ind_from_stats`, equal_var=False).

    Raises:
        ValueError: a group has fewer than 2 values, or a mean or sd is not finite.
    """
    _check_margin(margin)
    values = (mean_a, sd_a, mean_b, sd_b)
    if n_a < 2 or n_b < 2 or not all(math.isfinite(float(v)) for v in values) or sd_a < 0 or sd_b < 0:
        raise ValueError(f"expected two groups of at least 2 values with finite mean and sd >= 0, found "
                         f"a = ({mean_a}, {sd_a}, n={n_a}) and b = ({mean_b}, {sd_b}, n={n_b})")
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(va + vb)
    df = _welch_df(va, vb, n_a, n_b)
    diff = float(mean_a - mean_b)
    return Test(diff, se, df, False, (int(n_a), int(n_b)), (float(sd_a), float(sd_b)), float(margin),
                *_pvalues(diff, se, df, margin))


def welch_from_values(a: Sequence[float], b: Sequence[float], margin: float) -> Test:
    """Welch's t-test of a > b on two samples (scipy's `ttest_ind`, equal_var=False)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return welch(float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan, len(a),
                 float(b.mean()), float(b.std(ddof=1)) if len(b) > 1 else math.nan, len(b), margin)


def _at(test: Test, n):
    """(se, df) of `test`'s design with n seeds per setting (a number or an array) and the observed spread."""
    n = np.asarray(n, float)
    if test.paired:
        return test.spread[0] / np.sqrt(n), n - 1.0
    va, vb = test.spread[0] ** 2 / n, test.spread[1] ** 2 / n
    den = np.where(va > 0, va * va / (n - 1), 0.0) + np.where(vb > 0, vb * vb / (n - 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(den > 0, (va + vb) ** 2 / np.where(den > 0, den, 1.0), 2 * n - 2)
    return np.sqrt(va + vb), df


def _power(test: Test, n, alpha: float, decision: str) -> np.ndarray:
    se, df = _at(test, n)
    se, df = np.broadcast_arrays(np.asarray(se, float), np.asarray(df, float))
    if decision not in ("direction", "equivalent"):
        raise ValueError(f"decision: expected 'direction' or 'equivalent', found {decision!r}")
    if not np.all(se > 0):
        exact = abs(test.diff) < test.margin if decision == "equivalent" else test.diff != 0
        return np.full(se.shape, 1.0 if exact else 0.0)
    crit = special.stdtrit(df, 1 - alpha)
    # P(T' > c) of the noncentral t (scipy.special.nctdtr is its CDF, the one scipy.stats.nct uses)
    if decision == "direction":
        return 1.0 - special.nctdtr(df, abs(test.diff) / se, crit)
    lower = 1.0 - special.nctdtr(df, (test.diff + test.margin) / se, crit)
    upper = special.nctdtr(df, (test.diff - test.margin) / se, -crit)
    return np.maximum(0.0, lower + upper - 1.0)


def power(test: Test, n: int, alpha: float = ALPHA, *, decision: str = "direction") -> float:
    """The chance that `test`'s design decides at n seeds per setting, if the true difference and
    spread are the observed ones.

    Args:
        decision: "direction" (the one-sided test in the observed difference's direction) or
            "equivalent" (TOST within the margin; a lower bound: P(both reject) >= P(1) + P(2) - 1).
    """
    return float(_power(test, n, alpha, decision))


def seeds_needed(test: Test, alpha: float = ALPHA, target: float = POWER, *, decision: str = "direction",
                 max_seeds: int = MAX_SEEDS) -> float:
    """Seeds per setting at which `power` reaches `target` (inf if not within `max_seeds`, or if
    there is no difference to find in that direction)."""
    if decision == "direction" and test.diff == 0:
        return math.inf
    if decision == "equivalent" and abs(test.diff) >= test.margin:
        return math.inf
    reach = lambda n: float(_power(test, n, alpha, decision)) >= target  # noqa: E731
    if not reach(max_seeds):
        return math.inf
    lo, hi = 1, max_seeds  # power grows with n: bisect for the first n that reaches the target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reach(mid) else (mid, hi)
    return float(max(hi, 2))


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, target: float = POWER, *,
                          paired_design: bool = True) -> float:
    """The smallest true difference a one-sided t-test at `alpha` detects with `target` power at n
    seeds per setting: paired (sd: of the per-seed differences) or Welch with equal sds `sd`."""
    if n < 2 or not (math.isfinite(sd) and sd >= 0):
        return math.nan
    if sd == 0:
        return 0.0
    se, df = (sd / math.sqrt(n), n - 1.0) if paired_design else (sd * math.sqrt(2 / n), 2.0 * (n - 1))
    crit = stats.t.ppf(1 - alpha, df)
    lo, hi = 0.0, 1.0
    while stats.nct.sf(crit, df, hi) < target:
        hi *= 2
    for _ in range(60):  # bisection on the noncentrality
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stats.nct.sf(crit, df, mid) < target else (lo, mid)
    return hi * se


def holm_count(pvalues: Sequence[float], alpha: float = ALPHA) -> int:
    """How many of the hypotheses Holm's step-down procedure rejects at family-wise level alpha."""
    k = len(pvalues)
    count = 0
    for i, p in enumerate(sorted(pvalues)):
        if p <= alpha / (k - i):
            count += 1
        else:
            break
    return count


def spearman_trend(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Spearman's rho of (x, y) and its exact one-sided permutation p-values.

    Every pairing of y with x is enumerated (k! of them; k <= 8), ties get average ranks.

    Returns:
        (rho, p_positive: P(rho* >= rho), p_negative: P(rho* <= rho)); NaN p-values where x or y
        is constant or there are fewer than 2 points.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x, y: expected two lists of one length, found {x.tolist()} and {y.tolist()}")
    k = len(x)
    if k > 8:
        raise ValueError(f"x, y: an exact permutation test enumerates k! pairings; expected k <= 8, found {k}")
    if k < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt((rx * rx).sum() * (ry * ry).sum())
    rho = float((rx * ry).sum() / den)
    perms = np.array(list(itertools.permutations(range(k))))
    null = (ry[perms] * rx).sum(1) / den
    eps = 1e-12
    return rho, float((null >= rho - eps).mean()), float((null <= rho + eps).mean())
