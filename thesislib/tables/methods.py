"""Method tables: the thesis's tables with our numbers beside theirs (`thesis_table`), explainers x
metrics per setting (`method_table`) and the thesis's conventions beside ours (`conventions_table`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from thesislib.design import FAMILIES
from thesislib.labels import COLUMNS, value_label
from thesislib.metrics import REGISTRY, in_set, registered
from thesislib.references import LABELS as REF_LABELS
from thesislib.references import REFERENCES
from thesislib.tables.formatting import FLAG_NOTE, FLAG_RULE, Cell, Table, fmt, method_label, metric_row
from thesislib.tables.summaries import interval, with_defaults
from thesislib.thesis import THESIS_METHODS, reference

__all__ = ["TABLE_METRICS", "REFERENCE_BLOCK", "MAX_COLUMNS", "EVERY_SETTING", "mark_best", "thesis_table", "same_as",
           "method_table", "conventions_table"]

# the thesis's explanation metrics: the registry's "thesis" set without the classification metrics
TABLE_METRICS = tuple(m.name for m in in_set("thesis") if m.kind != "classification")
REFERENCE_BLOCK = "reference maps: "  # the first index level of a thesis table's reference rows
MAX_COLUMNS = 6  # data columns of a thesis table with settings as columns; more: settings become rows
EVERY_SETTING = "every setting"


def mark_best(frame: pd.DataFrame, rows: dict, columns: Sequence) -> None:
    """Bold, in each of `columns`, the best cell among each metric's explainer `rows` ({metric: [row keys]});
    ties (equal as shown, to one decimal) are all marked, a column where all tie has none; "—" and
    references never are."""
    for metric, keys in rows.items():
        higher = REGISTRY[metric].higher
        for col in columns:
            values = {k: frame.at[k, col] for k in keys}
            means = {k: round(v.mean, 1) for k, v in values.items() if isinstance(v, Cell) and not math.isnan(v.mean)}
            if len(set(means.values())) < 2:
                continue
            best = max(means.values()) if higher else min(means.values())
            for k, m in means.items():
                if m == best:
                    frame.at[k, col] = values[k].marked()


def thesis_table(ours: pd.DataFrame, family: str | Sequence[str], *, settings: Sequence[str] | None = None,
                 methods: Sequence[str] = THESIS_METHODS, metrics: Sequence[str] = TABLE_METRICS,
                 with_thesis: bool = True, references: bool = True) -> Table:
    """A table shaped like the thesis's: ours beside the thesis's per setting; classification
    first, then each metric's explainers, then the reference maps in one block.

    With at most `MAX_COLUMNS` data columns the settings are columns (setting x ours, thesis) and
    the rows metric x method; with more, the settings become rows (metric x method x setting,
    columns ours, thesis), so the table stays as wide as a page.

    Args:
        ours: `aggregate` output.
        family: experiment family (or several, e.g. a family and its baseline share columns).
        settings: setting order (default: the order in `ours`).
        methods: explainers to show, by label ("Score-CAM").
        metrics: explainability metrics (REGISTRY names); classification metrics always come first.
        with_thesis: add the thesis's value beside ours.
        references: add the reference maps of `ours` (kind "reference": prior, ceiling, ...) after
            the explainers, under "reference maps: <metric>"; in the settings-as-rows layout a
            reference whose cells are the same at every setting has one row, "every setting".

    Returns:
        A `Table` of `Cell`s: "mean ± sd" in % ("mean" alone where every seed gave the same value,
        "(n=2)" where fewer than three seeds, FLAG where runs that never learned are among them,
        "—" where a value does not exist), the 95 % t-interval in each cell's hover, the best
        explainer per metric and column in bold; a note counts the flagged runs.
    """
    unknown = [m for m in metrics if m not in REGISTRY]
    if unknown:
        raise ValueError(f"metrics: {unknown} are not registered, expected names from {', '.join(REGISTRY)}")
    fams = [family] if isinstance(family, str) else list(family)
    ref = reference()
    ref = ref[ref["family"].isin(fams)]
    mine = ours[ours["family"].isin(fams)]
    if settings is None:
        settings = list(dict.fromkeys(mine["setting"])) or list(dict.fromkeys(ref["setting"]))
    refs = []
    if references and "kind" in mine.columns:
        present = set(mine.loc[mine["kind"] == "reference", "method"])
        refs = [REF_LABELS[r] for r in REFERENCES if REF_LABELS[r] in present]
        refs += sorted(present - set(refs))
    classification = [m.name for m in registered("classification")]
    explainer_keys = [(m, "") for m in classification] + [(m, meth) for m in metrics for meth in methods]
    reference_keys = [(m, meth) for m in metrics for meth in refs]

    def lookup(df: pd.DataFrame) -> dict:
        return {k: r for k, r in zip(zip(df["metric"], df["method"], df["setting"]), df.itertuples())}

    def cell(found: dict, metric: str, method: str, setting: str) -> Cell:
        r = found.get((metric, method, setting))
        if r is None:
            return Cell("—")
        return fmt(r.mean, r.std, r.n, getattr(r, "lo", math.nan), getattr(r, "hi", math.nan),
                    getattr(r, "n_flagged", 0), measured=found is not sources.get("thesis"))

    ref_lo, ref_hi = interval(ref["mean"], ref["std"], ref["n"], ref["metric"])
    sources = {"ours": lookup(mine)}
    if with_thesis:
        sources["thesis"] = lookup(ref.assign(lo=ref_lo, hi=ref_hi))
    fam_label = FAMILIES[fams[0]].title
    best_rows: dict[str, list] = {}
    if len(settings) * len(sources) <= MAX_COLUMNS:
        def label(m: str, meth: str, reference_row: bool) -> tuple:
            return (REFERENCE_BLOCK + metric_row(m) if reference_row else metric_row(m), meth)

        keys = [(k, False) for k in explainer_keys] + [(k, True) for k in reference_keys]
        cols = {(s, src): [cell(found, m, meth, s) for (m, meth), _ in keys]
                for s in settings for src, found in sources.items()}
        index = pd.MultiIndex.from_tuples([label(m, meth, r) for (m, meth), r in keys], names=["metric", "method"])
        frame = pd.DataFrame(cols, index=index)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=[fam_label, ""])
        for (m, meth), r in keys:
            if not r and meth:
                best_rows.setdefault(m, []).append(label(m, meth, False))
    else:
        rows, index = [], []
        for (m, meth), is_ref in [(k, False) for k in explainer_keys] + [(k, True) for k in reference_keys]:
            block = [{src: cell(found, m, meth, s) for src, found in sources.items()} for s in settings]
            first = metric_row(m) if not is_ref else REFERENCE_BLOCK + metric_row(m)
            if is_ref and all(b == block[0] for b in block):  # a map that does not depend on the model
                rows.append(block[0])
                index.append((first, meth, EVERY_SETTING))
                continue
            for s, b in zip(settings, block):
                rows.append(b)
                index.append((first, meth, s))
        frame = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["metric", "method", fam_label]))
        for (m, meth) in explainer_keys:
            if meth:
                for s in settings:
                    best_rows.setdefault((m, s), []).append((metric_row(m), meth, s))
    if len(frame.columns) and best_rows:
        if isinstance(next(iter(best_rows)), tuple):  # settings as rows: the best explainer per metric and setting
            for (m, _), keys in best_rows.items():
                mark_best(frame, {m: keys}, list(frame.columns))
        else:
            mark_best(frame, best_rows, list(frame.columns))
    notes = []
    if "n_flagged" in mine.columns:
        flagged = mine[(mine["method"] == "") & mine["setting"].isin(settings)]
        per_run = flagged.groupby(["family", "setting"])["n_flagged"].max().sum()
        if per_run:
            notes.append(FLAG_NOTE.format(n=int(per_run)))
    return Table(frame, notes, [FLAG_RULE] if notes else [])


def same_as(results: pd.DataFrame, labels: list[str], columns: list[str]) -> dict[str, str]:
    """Label -> label of an earlier method it duplicates.

    From the evaluation's `same_as` column where every run says the same (a method key or label),
    else where every per-run metric of two methods is equal (identical maps give identical metrics).
    """
    out = {}
    if "same_as" in results.columns:  # the evaluation's word, where it holds in every run
        words = results["same_as"].astype(object).where(results["same_as"].notna(), "")
        for label, others in words.groupby(results["method_label"], sort=False):
            values = set(others.astype(str))
            other = values.pop() if len(values) == 1 else ""
            if other:
                try:
                    out[label] = method_label(other)
                except ValueError:
                    out[label] = other
    # methods scored in separate evaluations of a run were never compared map to map: fall back
    # to their per-run metrics
    explainers = set(results.loc[results["kind"] == "explainer", "method_label"]) if "kind" in results else set(labels)
    labels = [lab for lab in labels if lab in explainers]
    wide = results.pivot_table(index="run_id", columns="method_label", values=columns, aggfunc="first")
    for i, a in enumerate(labels):
        if a in out:
            continue
        for b in labels[:i]:
            if b in out:
                continue
            va, vb = wide.xs(a, axis=1, level=1), wide.xs(b, axis=1, level=1)
            if va.notna().any().any() and np.allclose(va.to_numpy(float), vb.to_numpy(float), atol=1e-6,
                                                      equal_nan=True):
                out[a] = b
                break
    return out


def method_table(results: pd.DataFrame, by: str | Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None) -> Table:
    """Every method's metrics over the runs of `results`: explainers, then reference maps.

    Args:
        results: `Grid.results()` rows; a run shared by several families counts once
            unless `by` includes "family".
        by: results column(s) to split the rows by, e.g. "family".
        metrics: REGISTRY names (default: every registered localisation and faithfulness metric present).

    Returns:
        A `Table`, rows (by..., kind, method): per value of `by` the explainers, then the reference
        maps ("explainers" | "reference maps"); `by` values and names as a reader says them
        (`thesislib.labels`). Columns: the metrics as "mean ± sd" `Cell`s over runs (%, the 95 %
        interval in the hover, FLAG where runs that never learned are among them, the best
        explainer of each column in bold), "ms per image", "constant maps" (where any method gave
        one) and "same maps as" (where a method gives another's maps on these models: its row
        goes, its name joins the other's).
    """
    results = with_defaults(results)
    by = [] if by is None else [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in results.columns]
    if missing:
        raise ValueError(f"by: {missing} not in results (columns: {', '.join(map(str, results.columns))})")
    if metrics is None:
        metrics = [m.name for m in REGISTRY.values() if m.kind != "classification"]
    present = [m for m in metrics if m in results.columns]
    if "run_id" in results.columns:
        results = results.drop_duplicates(by + ["run_id", "method"])
    order = {"explainer": 0, "reference": 1}
    labels = list(dict.fromkeys(results.sort_values("kind", key=lambda k: k.map(order), kind="stable")["method_label"]))
    rows = []
    for keys, g in results.groupby(by + ["method_label"], sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        flagged = int((~g["learned"].astype(bool)).sum())
        row = dict(zip(by + ["method"], keys))
        for m in present:
            v = g[m].dropna()
            n, mean, std = len(v), v.mean(), v.std()
            lo, hi = interval(pd.Series([mean]), pd.Series([std]), pd.Series([n]), m)
            row[metric_row(m)] = fmt(mean, std, n, lo.iloc[0], hi.iloc[0], flagged, over="runs")
        if "seconds_per_image" in g.columns:
            row["ms per image"] = round(float(g["seconds_per_image"].mean()) * 1000, 1)
        if "constant_heatmaps" in g.columns:
            row["constant maps"] = int(g["constant_heatmaps"].sum())
        row["kind"] = g["kind"].iloc[0]
        row["_flagged"] = flagged
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["_order"] = frame["method"].map({lab: i for i, lab in enumerate(labels)})
    frame = frame.sort_values(by + ["_order"], kind="stable")
    same = same_as(results, labels, present) if "run_id" in results.columns else {}
    # a method that gives another's maps is shown once: its row goes, its name joins the other's
    twins: dict[str, list[str]] = {}
    for lab, other in same.items():
        twins.setdefault(other, []).append(lab)
    frame = frame[~frame["method"].isin(list(same))]
    frame["same maps as"] = frame["method"].map(lambda lab: ", ".join(twins.get(lab, [])))
    agnostic = set()
    if "class_agnostic" in results.columns:
        explainer = results["kind"] == "explainer"  # reference maps ignore the class by construction
        agnostic = set(results.loc[results["class_agnostic"].fillna(False).astype(bool) & explainer, "method_label"])
    frame["method"] = [f"{lab} (class-agnostic)" if lab in agnostic else lab for lab in frame["method"]]
    runs = results.drop_duplicates(by + ["run_id"]) if "run_id" in results.columns else results
    n_flagged = int((~runs["learned"].astype(bool)).sum())
    frame["kind"] = frame["kind"].map({"explainer": "explainers", "reference": "reference maps"})
    if "constant maps" in frame.columns and not frame["constant maps"].any():
        frame = frame.drop(columns="constant maps")  # said in a note instead
    if not frame["same maps as"].astype(bool).any():
        frame = frame.drop(columns="same maps as")
    for b in by:
        frame[b] = [value_label(b, v) for v in frame[b]]
    frame = frame.drop(columns=["_order", "_flagged"]).set_index(by + ["kind", "method"])
    frame.index.names = [COLUMNS.get(b, b) for b in by] + ["", "method"]
    for key, g in frame.groupby(level=list(range(len(by) + 1)), sort=False):
        if (key[-1] if isinstance(key, tuple) else key) == "explainers":
            for m in present:
                mark_best(frame, {m: list(g.index)}, [metric_row(m)])
    notes = [FLAG_NOTE.format(n=n_flagged)] if n_flagged else []
    explanations = [FLAG_RULE] if n_flagged else []
    if "constant_heatmaps" in results.columns and "constant maps" not in frame.columns:
        explanations.append("No method gave a constant map on any scored image (else a column counts them).")
    if same:
        explanations.append("Methods whose maps equal another's on every scored image (max difference 1e-4) are "
                            "shown once, named under \"same maps as\".")
    return Table(frame, notes, explanations)


def conventions_table(ours: pd.DataFrame, family: str | Sequence[str] = "depth",
                      methods: Sequence[str] = THESIS_METHODS) -> Table:
    """Average Drop and Increase in Confidence under both masking conventions beside the thesis's,
    each the mean over the family's settings (%)."""
    fams = [family] if isinstance(family, str) else list(family)
    ref = reference()
    ref, mine = ref[ref["family"].isin(fams)], ours[ours["family"].isin(fams)]

    def mean_of(df: pd.DataFrame, metric: str, method: str) -> str:
        v = df[(df["metric"] == metric) & (df["method"] == method)]["mean"]
        return "—" if v.empty else f"{v.mean():.1f}"

    rows = []
    for meth in methods:
        rows.append({"method": meth,
                     "AD thesis": mean_of(ref, "average_drop", meth),
                     "AD ours (normalised × map)": mean_of(mine, "average_drop", meth),
                     "AD ours (image × map, black outside)": mean_of(mine, "average_drop_black", meth),
                     "IiC thesis": mean_of(ref, "increase_in_confidence", meth),
                     "IiC ours (normalised × map)": mean_of(mine, "increase_in_confidence", meth),
                     "IiC ours (black outside)": mean_of(mine, "increase_in_confidence_black", meth)})
    return Table(pd.DataFrame(rows).set_index("method"),
                 [f"Means over the settings of {', '.join(FAMILIES[f].title for f in fams)}, in %."])
