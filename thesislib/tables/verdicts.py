"""Verdict tables: explainers against the reference maps (what a trivial and the best possible
answer score), judged like the thesis's claims, and the tally of every claim's verdict.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from thesislib.claims import TALLY, Claim, Evidence, beats, judge_all, judge_claim, verdict_counts
from thesislib.claims import Any as SomeOf
from thesislib.labels import family_label
from thesislib.metrics import REGISTRY
from thesislib.tables.formatting import FLAG, Cell, Table, fmt, method_label
from thesislib.tables.summaries import aggregate, split_families, with_defaults

__all__ = ["STRONGEST_EXCLUDES", "against_references", "verdict_summary", "references_summary"]

STRONGEST_EXCLUDES = ("ceiling",)  # the ceiling is the best possible answer, not a trivial one


def against_references(results: pd.DataFrame, metric: str | Sequence[str] = "iou_area", *,
                       family: str | Sequence[str] | None = None) -> Table:
    """Per family: the best explainer (over settings and methods) beside the strongest trivial
    reference map of the metric (the one with the best mean of prior, Gaussian, noise, Sobel, ...)
    and the ceiling on the same runs, and whether some explainer beats that reference beyond the
    seed noise.

    The verdict is the claims' judge (`thesislib.claims`) on "some explainer at some setting beats
    the strongest reference on its own runs": one comparison per explainer x setting, each paired
    by run, Holm over them, so picking the best of many does not by itself make a winner; "no":
    every explainer is worse (intersection-union); "equivalent": every one within the margin.

    Args:
        results: `Grid.results()` rows (references present as kind "reference"); pass the runs
            that learned (`references_summary` does).
        metric: a metric of the registry, or several (one block each).
        family: restrict to these families.

    Returns:
        A `Table` with rows per family (x metric): best explainer, its value, the strongest
        reference and its value, the ceiling, the share of the ceiling reached, and the verdict.
    """
    if not isinstance(metric, str):
        parts = [against_references(results, m, family=family) for m in metric]
        frames = [p.frame.reset_index().assign(metric=f"{REGISTRY[m].arrow} {REGISTRY[m].label}")
                  for p, m in zip(parts, metric) if not p.frame.empty]
        frame = pd.concat(frames, ignore_index=True).set_index(["family", "metric"]) if frames else pd.DataFrame()
        return Table(frame, parts[0].notes if parts else [], parts[0].explanations if parts else [])
    m = REGISTRY[metric]
    results = with_defaults(results)
    if family is not None:
        results = results[results["family"].isin([family] if isinstance(family, str) else list(family))]
    ours = aggregate(results)
    part = ours[ours["metric"] == metric]
    rows = []
    for fam, g in part.groupby("family", sort=False):
        expl = g[g["kind"] == "explainer"].dropna(subset=["mean"])
        refs = g[(g["kind"] == "reference") & ~g["method"].isin([method_label(r) for r in STRONGEST_EXCLUDES])]
        refs = refs.dropna(subset=["mean"])
        if expl.empty or refs.empty:
            continue
        pick = (lambda d: d.loc[d["mean"].idxmax() if m.higher else d["mean"].idxmin()])  # noqa: E731
        best = pick(expl)
        by_ref = refs.groupby("method", sort=False)["mean"].mean()
        strongest = by_ref.idxmax() if m.higher else by_ref.idxmin()
        strongest_key = _key_of(results, strongest)
        ceiling = g[(g["method"] == method_label("ceiling")) & (g["setting"] == best["setting"])]
        ref_cell = refs[(refs["method"] == strongest) & (refs["setting"] == best["setting"])]
        fam_rows = results[results["family"] == fam]
        ev = Evidence.of_results(fam_rows)
        explainers = list(dict.fromkeys(fam_rows.loc[fam_rows["kind"] == "explainer", "method"]))

        claim = Claim("some explainer beats the strongest reference", fam,
                      lambda e, who=explainers, ref=strongest_key: _versus(e, who, ref, metric))
        verdict = judge_claim(claim, ev).outcome or "n/a"
        shown = lambda r: ("—" if r is None  # noqa: E731
                           else fmt(r["mean"], r["std"], r["n"], r["lo"], r["hi"], r["n_flagged"]))
        ceil = ceiling.iloc[0] if len(ceiling) else None
        share = (best["mean"] / ceil["mean"] * 100) if ceil is not None and ceil["mean"] else math.nan
        rows.append({"family": family_label(fam), "best explainer": f"{best['method']} ({best['setting']})",
                     "value": shown(best), "strongest reference": strongest,
                     "its value": shown(ref_cell.iloc[0]) if len(ref_cell) else "—", "ceiling": shown(ceil),
                     "% of ceiling": "—" if math.isnan(share) else f"{share:.0f}",
                     "an explainer beats it (95 %)": Cell(verdict, best=verdict in ("yes", "no", "equivalent"))})
    frame = pd.DataFrame(rows).set_index("family") if rows else pd.DataFrame()
    explanations = ["Value: the best explainer's (over settings and methods). Strongest reference: of the trivial "
                    "reference maps (mean expert map, centred Gaussian, noise, Sobel edges), the one with the best mean "
                    "on this metric; ceiling: the expert map itself at the CAM grid, what a perfect explainer at this "
                    "resolution would score. The verdict compares each explainer at each setting with that reference "
                    "on the same runs (paired), Holm over the comparisons; a decided verdict is in bold."]
    return Table(frame, [], explanations)


def _key_of(results: pd.DataFrame, label: str) -> str:
    hit = results.loc[results["method_label"] == label, "method"]
    return str(hit.iloc[0]) if len(hit) else label


def _versus(ev, explainers: Sequence[str], ref: str, metric: str):
    """"Some explainer at some setting beats reference `ref` on its runs": Any over explainer x setting."""
    learned = [s for s in ev.settings if (s, metric, ref) in ev.cells and len(ev.cells[(s, metric, ref)].learned()) > 1]
    leaves = [beats(ev, (s, metric, meth), (s, metric, ref)) for s in learned for meth in explainers]
    leaves = tuple(x for x in leaves if x is not None)
    return SomeOf(leaves) if leaves else None


def verdict_summary(results: pd.DataFrame, judged: pd.DataFrame | None = None) -> Table:
    """Counts of every claim's verdict in the report (family claims, RQ3's method claims, RQ6's
    correlation claims), for our runs and for the thesis's own numbers; "untestable" and "n/a"
    are counted apart from the tally. `judged`: `claims.judge_all(results)` where the caller has it."""
    judged = judge_all(results) if judged is None else judged
    rows = list(TALLY) + ["untestable", "n/a"]
    ours, thesis = verdict_counts(judged, "ours"), verdict_counts(judged, "thesis")
    frame = pd.DataFrame({"our runs": {k: ours.get(k, 0) for k in rows},
                          "the thesis's own numbers": {k: thesis.get(k, 0) for k in rows}})
    apart = [k for k in ("untestable", "n/a") if not frame.loc[k].any()]
    frame = frame.drop(index=apart)  # a verdict outside the tally that no claim has is not a row
    tallied = sum(ours.get(k, 0) for k in TALLY)
    frame.index.name = f"{len(judged)} claims"
    return Table(frame, [f"Tallied: the {tallied} claims our runs could be judged on; \"untestable\" (cannot be "
                         "decided by construction or other design) and \"n/a\" (no data) stand apart. For the "
                         "thesis's column, \"agrees\" means its own tables support its claim beyond its seed noise "
                         "(mean, std, n = 3)."])


def references_summary(results: pd.DataFrame, metrics: Sequence[str] = ("iou_area", "pointing_game"), *,
                       by: str | None = None) -> Table:
    """`against_references` over the runs that learned (all runs, said so, where none did).

    Args:
        results: `Grid.results` rows (per class with `by`, see `aggregate`).
        metrics: localisation metrics of the registry.
        by: None, "pred" or "label".
    """
    learned = with_defaults(results)["learned"].astype(bool)
    note = []
    if not learned.any():
        note = [f"No run learned (all {FLAG}): the comparison uses every run, and says nothing about explanations."]
        part = results.assign(learned=True)
    else:
        part = results[learned.to_numpy()]
    table = against_references(split_families(part, by), list(metrics))
    return Table(table.frame, note + table.notes, table.explanations)
