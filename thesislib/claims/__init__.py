"""Claims and verdicts: the thesis's statements, judged on its own numbers and on our runs by one
judge whose error rates are stated and checked by simulation (tests/test_claims.py).

A claim is a statement about one family's settings, written once over setting keys (a setting's
overrides of the base config, `S(depth=50)`) and method keys ("scorecam"); labels appear only
where verdicts are rendered. It is built from comparisons "a beats b on a metric" (`Leaf`),
combined as "every" (`All`), "some" (`Any`) or "most" (`Most`), or is a rank correlation across
a family's settings (`Trend`). The evidence (`Evidence`) is one value per run for our side
(learned runs only; a setting with fewer than two learned seeds did not learn) and mean, std and
n = 3 for the thesis's.

Each comparison is a paired t-test on the per-seed differences where the design pairs the two
cells (same initial weights and batch order, or two maps of one run), else Welch's t-test
(`thesislib.inference`). A claim's outcome, at level ALPHA:

- one comparison: "yes" if a beats b (one-sided p <= ALPHA), "no" if b beats a, "equivalent" if
  the difference lies within the metric's margin (two one-sided tests), else "inconclusive";
- every (All): "yes" by the intersection-union rule (each comparison at ALPHA); "no" if Holm
  finds some comparison reversed; "equivalent" if every comparison is;
- some (Any): "yes" if Holm finds some comparison that holds; "no" if every one is reversed
  (intersection-union); "equivalent" if every one is;
- most (Most): "yes" if the Holm-adjusted count of parts that hold exceeds half; "no" if the
  Holm-adjusted count of reversed parts is at least half; "equivalent" likewise;
- a trend: Spearman's rho over the family's settings, exact permutation test, one-sided.

So each decided outcome is wrong at most ALPHA of the time when the hypothesis that makes it
wrong holds. Before any of this: a claim that names a setting with fewer than two learned seeds
is "did not learn"; one that cannot be decided by construction (a trend over fewer than
MIN_TREND_POINTS settings, runs of another design than the thesis's) is "untestable".
"""

from thesislib.claims.evidence import BASELINE, Evidence, S, SeedValues, Summary
from thesislib.claims.judging import ALPHA, OUTCOMES, VERDICTS, Judged, judge_claim
from thesislib.claims.lists import CLAIMS, CORRELATION_FAMILIES, METHOD_CLAIMS, METHOD_FAMILIES, correlation_claims
from thesislib.claims.statements import (THESIS_METHOD_KEYS, All, Any, Claim, Leaf, Most, Trend, Unjudged,
                                         all_others_worse, beats, best_method_is, best_setting_is, better, better_than,
                                         lower_than, lowest_setting_is, some_setting_better, trend)
from thesislib.claims.verdicts import (TALLY, claims_markdown, judge, judge_all, judge_correlations, judge_methods,
                                       verdict_counts, verdicts_markdown)

__all__ = ["ALPHA", "S", "BASELINE", "Evidence", "SeedValues", "Summary", "Leaf", "All", "Any", "Most", "Trend",
           "Claim", "Unjudged", "Judged", "CLAIMS", "METHOD_CLAIMS", "CORRELATION_FAMILIES", "correlation_claims",
           "judge_claim", "judge", "judge_methods", "judge_correlations", "judge_all", "TALLY", "verdict_counts",
           "verdicts_markdown", "claims_markdown", "OUTCOMES", "VERDICTS", "beats", "better", "best_setting_is",
           "lowest_setting_is", "best_method_is", "better_than", "lower_than", "all_others_worse",
           "some_setting_better", "trend", "METHOD_FAMILIES", "THESIS_METHOD_KEYS"]
