"""Verdicts: the report's claims judged per scope (a family, RQ3's methods, RQ6's correlations,
all of them), counted and rendered for readers.
"""

from __future__ import annotations

import math

import pandas as pd

from thesislib import inference as I
from thesislib.claims.evidence import Evidence, canonical
from thesislib.claims.judging import (ALPHA, COLUMNS, VERDICTS, Judged, NotLearned, judge_claim, judge_pair,
                                      learned_values, seed_summary, verdict_row)
from thesislib.claims.lists import CLAIMS, METHOD_CLAIMS, METHOD_FAMILIES, correlation_claims
from thesislib.claims.statements import THESIS_METHOD_KEYS, Claim
from thesislib.design import FAMILIES
from thesislib.explain import LABELS
from thesislib.thesis import reference

__all__ = ["judge", "methods_scope", "judge_methods", "judge_correlations", "judge_all", "TALLY", "verdict_counts",
           "verdicts_markdown", "claims_markdown"]


def _thesis_family(family: str) -> Evidence:
    ref = reference()
    return Evidence.of_summary(ref[ref["family"] == family])


def _ours_family(results: pd.DataFrame | None, family: str) -> Evidence | None:
    if results is None or results.empty:
        return None
    return Evidence.of_results(results[results["family"] == family])


def judge(results: pd.DataFrame | None, family: str | None = None, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Each claim (of `family`) judged on the thesis's numbers and on our runs.

    Args:
        results: `Grid.results()` rows (one per run x method; `learned` and `pairing` are read).
        family: a family of `thesislib.design.FAMILIES` (None: every family's claims).

    Returns:
        COLUMNS: thesis and ours (OUTCOMES, or None where the cells are missing), verdict (what ours
        says of the claim: agrees, disagrees, equivalent, inconclusive, did not learn, untestable,
        n/a), rule, comparisons, design (paired by seed / Welch), seeds (learned of run), seeds
        needed (ours and the thesis's, for an inconclusive claim), note, details, level.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family: unknown {family!r}, expected one of {', '.join(FAMILIES)}")
    claims = [c for c in CLAIMS if family is None or c.family == family]
    rows = [judge_pair(c, _thesis_family(c.family), _ours_family(results, c.family), alpha) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def _methods_key(row) -> str:
    return f"{row['family']}|{canonical(row['overrides'])}"


def methods_scope(results: pd.DataFrame | None) -> tuple[Evidence, Evidence | None]:
    """RQ3's scope: the thesis's settings of Tables 5.2-5.4 that our runs hold with all four of the
    thesis's methods, each distinct set of runs once (a shared run counts once), on both sides."""
    ref = reference()
    ref = ref[ref["family"].isin(METHOD_FAMILIES)]
    thesis = Evidence.of_summary(ref, key=_methods_key)
    if results is None or results.empty:
        return thesis, None
    part = results[results["family"].isin(METHOD_FAMILIES) & results["method"].isin(THESIS_METHOD_KEYS)]
    ours = Evidence.of_results(part, key=_methods_key)
    keep, seen = [], set()
    for s in thesis.settings:
        runs = ours.runs.get(s)
        full = all(ours.has(s, "iou_area", meth) for meth in THESIS_METHOD_KEYS)
        if runs is None or not full or runs in seen:
            continue
        seen.add(runs)
        keep.append(s)
    return thesis.restrict(keep), ours.restrict(keep)


def judge_methods(results: pd.DataFrame | None, *, alpha: float = ALPHA) -> pd.DataFrame:
    """RQ3's claims on one scope for both sides (see `methods_scope`); the thesis alone where
    our runs hold none of its settings."""
    thesis, ours = methods_scope(results)
    if ours is not None and not ours.cells:
        thesis_all, _ = methods_scope(None)
        rows = [verdict_row(c, judge_claim(c, thesis_all, alpha=alpha),
                     Judged(None, note="no setting of Tables 5.2-5.4 with the four methods"), alpha)
                for c in METHOD_CLAIMS]
    else:
        rows = [verdict_row(c, judge_claim(c, thesis, alpha=alpha), judge_claim(c, ours, alpha=alpha), alpha)
                for c in METHOD_CLAIMS]
    return pd.DataFrame(rows, columns=COLUMNS)


def judge_correlations(results: pd.DataFrame | None, metric: str = "iou_area", method: str = "scorecam", *,
                       alpha: float = ALPHA) -> pd.DataFrame:
    """`correlation_claims` judged on the thesis's numbers and on our learned runs, with the point
    estimates thesis_rho and ours_rho (Spearman over the settings both sides hold)."""
    claims = correlation_claims(metric, method, LABELS.get(method, method))
    rows, rhos = [], []
    for c in claims:
        row = judge_pair(c, _thesis_family(c.family), _ours_family(results, c.family), alpha)
        rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    for side, name in (("thesis", "thesis_rho"), ("ours", "ours_rho")):
        out[name] = [_rho(c, results, side, metric, method) for c in claims]
    return out


def _rho(claim: Claim, results, side: str, metric: str, method: str) -> float | None:
    thesis = _thesis_family(claim.family)
    ours = _ours_family(results, claim.family)
    ev = thesis if side == "thesis" else ours
    if ev is None:
        return None
    if ours is not None and ours.cells:
        ev = ev.restrict([s for s in thesis.settings if s in ours.labels] or ev.settings)
    settings = [s for s in ev.settings if ev.has(s, "accuracy") and ev.has(s, metric, method)]
    try:
        acc = [seed_summary(learned_values(ev, (s, "accuracy", ""))).mean for s in settings]
        val = [seed_summary(learned_values(ev, (s, metric, method))).mean for s in settings]
    except NotLearned:
        return None
    if len(settings) < 2:
        return None
    rho = I.spearman_trend(acc, val)[0] if len(settings) <= 8 else math.nan
    return None if math.isnan(rho) else rho


def judge_all(results: pd.DataFrame | None, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Every claim of the report: the families' claims, RQ3's method claims and RQ6's correlation claims."""
    return pd.concat([judge(results, alpha=alpha), judge_methods(results, alpha=alpha),
                      judge_correlations(results, alpha=alpha)], ignore_index=True)


# -- for readers --------------------------------------------------------------------------------

TALLY = ("agrees", "disagrees", "equivalent", "inconclusive", "did not learn")


def verdict_counts(judged: pd.DataFrame, side: str = "ours") -> dict[str, int]:
    """How many claims of a `judge*` table have each verdict, for our runs or (side="thesis") for
    the thesis's own numbers ("agrees": they support the claim). "untestable" and "n/a" (claims
    without data) are counted apart, never in the tally."""
    if side not in ("ours", "thesis"):
        raise ValueError(f"side: expected 'ours' or 'thesis', found {side!r}")
    values = judged["verdict"] if side == "ours" else judged["thesis"].map(lambda v: VERDICTS.get(v, "n/a"))
    counts = values.fillna("n/a").value_counts()
    out = {k: int(counts.get(k, 0)) for k in TALLY}
    for extra in ("untestable", "n/a"):
        if counts.get(extra, 0):
            out[extra] = int(counts[extra])
    return out


def _cell(v) -> str:
    return v if isinstance(v, str) and v else "—"


def verdicts_markdown(judged: pd.DataFrame, labels: dict[str, str] | None = None):
    """Markdown for the report: one row per claim with the thesis's numbers' answer, ours, the
    verdict, the rule and design, the seeds used and the seeds that would decide it."""
    from IPython.display import Markdown

    if judged.empty:
        return Markdown("_No thesis claims for this table._")
    level = float(judged["level"].iloc[0]) * 100
    lines = ["| claim | thesis's numbers | our runs | verdict | test | seeds (learned of run) | seeds to decide |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in judged.itertuples():
        test = ", ".join(x for x in (r.rule, r.design) if isinstance(x, str) and x)
        needed = r.seeds_needed if isinstance(r.seeds_needed, str) and r.seeds_needed else ""
        note = f" ({r.note})" if isinstance(r.note, str) and r.note else ""
        verdict = f"**{r.verdict}**" if r.verdict in ("agrees", "disagrees", "equivalent") else r.verdict  # decided
        lines.append(f"| {r.claim} | {_cell(r.thesis)} | {_cell(r.ours)} | {verdict}{note} | {_cell(test)} | "
                     f"{_cell(r.seeds)} | {_cell(needed)} |")
    # an explanation, shown once per section of the report (`thesislib.report`)
    head = (f'<p class="note">Verdicts at {level:g} % (each decided outcome is wrong at most {100 - level:g} % of '
            'the time; see Methods).</p>\n\n')
    return Markdown(head + "\n".join(lines))


def claims_markdown(results: pd.DataFrame, family: str):
    """The claims of `family` as Markdown for the report (`verdicts_markdown(judge(results, family))`)."""
    return verdicts_markdown(judge(results, family))
