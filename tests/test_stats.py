import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from thesislib.stats import correlation, correlations


def test_point_estimates_are_scipys_and_the_ci_covers_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    r = correlation(x, y, n_boot=1000)
    assert r["pearson"] == pytest.approx(sps.pearsonr(x, y).statistic)
    assert r["spearman"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert r["pearson_p"] == pytest.approx(sps.pearsonr(x, y).pvalue)
    for k in ("pearson", "spearman"):
        assert r[f"{k}_lo"] < r[k] < r[f"{k}_hi"]
    ref = sps.bootstrap((x, y), lambda a, b: sps.pearsonr(a, b).statistic, paired=True, vectorized=False,
                        n_resamples=1000, method="percentile", random_state=1).confidence_interval
    assert r["pearson_lo"] == pytest.approx(ref.low, abs=0.06) and r["pearson_hi"] == pytest.approx(ref.high, abs=0.06)
    assert correlation(x, y, n_boot=1000) == r  # seeded


def test_wider_interval_for_fewer_models():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    wide, narrow = correlation(x[:12], y[:12]), correlation(x, y)
    assert wide["pearson_hi"] - wide["pearson_lo"] > narrow["pearson_hi"] - narrow["pearson_lo"]


def test_degenerate_input_gives_nan_not_an_error():
    assert np.isnan(correlation([1, 2], [3, 4])["pearson"])
    three = correlation([1, 2, 3], [1, 3, 2])  # three models: a point estimate, nothing to judge it by
    assert three["spearman"] == pytest.approx(0.5) and np.isnan(three["spearman_lo"]) and np.isnan(three["spearman_p"])
    assert np.isnan(correlation([1, 1, 1, 1], [1, 2, 3, 4])["spearman"])


def test_grouped_correlations_count_shared_runs_once():
    df = pd.DataFrame(dict(family=["a"] * 4 + ["b"] * 4, run_id=["base", "1", "2", "3", "base", "4", "5", "6"],
                           acc=[1, 2, 3, 4, 1, 5, 6, 7], iou=[2, 3, 4, 5, 2, 1, 0, -1]))
    out = correlations(df, "acc", ["iou"], by="family", n_boot=200)
    assert list(out["group"]) == ["all", "a", "b"]
    assert out.set_index("group").loc["all", "n"] == 7
    assert out.set_index("group").loc["a", "spearman"] == pytest.approx(1.0)
    assert out.set_index("group").loc["b", "spearman"] == pytest.approx(-1.0)


def test_spearman_rows_is_scipys_row_by_row():
    from thesislib.stats import spearman_rows

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
    b[0] = a[0]  # perfect
    a[1, :3] = 1.0  # ties
    rho = spearman_rows(a, b)
    assert rho == pytest.approx([sps.spearmanr(x, y).statistic for x, y in zip(a, b)])
    assert rho[0] == pytest.approx(1.0)
    assert np.isnan(spearman_rows(np.ones((1, 4)), b[:1, :4])[0])
    with pytest.raises(ValueError, match="a, b"):
        spearman_rows(a, b[:, :3])


def test_correlations_can_leave_out_runs_that_never_learned():
    df = pd.DataFrame(dict(run_id=list("abcdef"), acc=[64.5, 64.5, 80, 82, 85, 90], iou=[1, 1, 20, 18, 17, 15],
                           learned=[False, False, True, True, True, True]))
    every = correlations(df, "acc", ["iou"], n_boot=100).iloc[0]
    learned = correlations(df, "acc", ["iou"], learned_only=True, n_boot=100).iloc[0]
    assert every["n"] == 6 and learned["n"] == 4
    assert every["pearson"] > 0 > learned["pearson"]  # the failed runs alone make the positive correlation
    assert learned["pearson"] == pytest.approx(sps.pearsonr([80, 82, 85, 90], [20, 18, 17, 15]).statistic)
    with pytest.raises(ValueError, match="learned_only"):
        correlations(df.drop(columns="learned"), "acc", ["iou"], learned_only=True)
