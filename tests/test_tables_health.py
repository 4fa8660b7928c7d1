"""Which runs never learned (thesislib.tables.health)."""

from thesislib import tables as T


def test_run_health_names_the_runs_that_never_learned(seed_results):
    res = seed_results(flag_seed=1)
    text = T.run_health(res).data
    assert "1 of 6 runs never learned" in text and "seed 1" in text
    assert "All 6 runs learned" in T.run_health(seed_results()).data
