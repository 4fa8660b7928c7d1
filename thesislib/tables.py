"""Tables of our results: seed summaries in long format, the thesis's tables with our numbers
beside theirs, method tables with reference rows, and the helpers the notebooks call.

The thesis's numbers live in `thesislib.thesis`, claims and verdicts in `thesislib.claims`.
Labels, directions, units and ranges of metrics come from `thesislib.metrics.REGISTRY` only; every
other key a table shows (families, classes, columns) is labelled by `thesislib.labels`. A shown
number is a `Cell`: "mean ± sd" to one decimal, its 95 % interval in the hover, marked when best.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from thesislib.design import FAMILIES
from thesislib.labels import CLASS_NAMES, family_label
from thesislib.metrics import REGISTRY, registered
from thesislib.thesis import THESIS_METHODS, reference

__all__ = ["Table", "aggregate", "thesis_table", "method_table", "TABLE_METRICS", "FLAG", "method_label",
           "method_kind", "expert_regions", "best_settings", "generalisation_gap", "model_points",
           "correlation_table", "against_references", "references_summary", "run_health", "CLASS_NAMES",
           "conventions_table", "verdict_summary", "ranking_agreement", "threshold_curve", "slice_conclusions",
           "split_families", "Cell", "readable_table", "to_html"]

TABLE_METRICS = ("iou_area", "iou_bbox", "average_drop", "increase_in_confidence")
FLAG = "†"
LEVEL = 0.95  # of the t-interval in every cell
_LONG = ["family", "setting", "method", "metric", "mean", "std", "n", "lo", "hi", "n_flagged", "kind"]
_RULE = ("validation accuracy not above the majority-class rate by more than two binomial standard errors, "
         "or one class predicted for every image")
FLAG_RULE = f"{FLAG}: the cell's seeds include runs that never learned ({_RULE})."
_FLAG_NOTE = f"{FLAG} {{n}} of the runs averaged in this table never learned."


# -- what a row is ------------------------------------------------------------------------------

def method_label(method: str) -> str:
    """"scorecam" -> "Score-CAM", "prior" -> "Prior (mean expert map)"."""
    from thesislib.explain import LABELS
    from thesislib.references import LABELS as REF_LABELS

    labels = {**LABELS, **REF_LABELS}
    if method not in labels:
        raise ValueError(f"method: unknown {method!r}, expected one of {', '.join(labels)}")
    return labels[method]


def method_kind(method: str) -> str:
    """"reference" for a reference map (prior, ceiling, ...), else "explainer"."""
    from thesislib.references import REFERENCES

    return "reference" if method in REFERENCES else "explainer"


def _with_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with `learned` and `kind` filled in where the run records predate them."""
    out = results
    if "learned" not in out.columns:
        out = out.assign(learned=True)
    elif out["learned"].isna().any():  # not recorded: no evidence that the run failed
        out = out.assign(learned=out["learned"].astype(object).where(out["learned"].notna(), True).astype(bool))
    if "kind" not in out.columns:
        out = out.assign(kind=[method_kind(m) for m in out["method"]])
    return out


def _interval(mean: pd.Series, std: pd.Series, n: pd.Series, metric=None) -> tuple[pd.Series, pd.Series]:
    """The LEVEL Student-t interval of a mean, kept inside the metric's range (`Metric.bounds`: a
    true mean lies inside it, so the clipped interval covers it as often); NaN where n < 2.

    Args:
        metric: a registry name, or a Series of them aligned with `mean` (None: no clipping).
    """
    n = n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = sps.t.ppf(0.5 + LEVEL / 2, np.where(n > 1, n - 1, np.nan)) * std / np.sqrt(n)
    lo, hi = mean - half, mean + half
    if metric is not None:
        names = metric if isinstance(metric, pd.Series) else pd.Series(metric, index=mean.index)
        bounds = names.map(lambda m: REGISTRY[m].bounds if m in REGISTRY else (-np.inf, np.inf))
        lo = np.maximum(lo, bounds.map(lambda b: b[0]).astype(float))
        hi = np.minimum(hi, bounds.map(lambda b: b[1]).astype(float))
    return lo, hi


# -- summaries ----------------------------------------------------------------------------------



def split_families(results: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """`grid.results(by=...)` rows with each family split per class ("<family>, predicted
    glaucoma"; by="correct": "<family>, correctly classified" / "misclassified"); None: unchanged."""
    if by is None:
        return results
    if by == "correct":
        return results.assign(family=[f"{family_label(f)}, "
                                      f"{'correctly classified' if bool(c) else 'misclassified'}"
                                      for f, c in zip(results["family"], results[by])])
    word = {"pred": "predicted", "label": "labelled"}.get(by, by)
    return results.assign(family=[f"{family_label(f)}, {word} {CLASS_NAMES.get(c, c)}"
                                  for f, c in zip(results["family"], results[by])])


def aggregate(results: pd.DataFrame, *, learned_only: bool = False, by: str | None = None) -> pd.DataFrame:
    """Mean, sample std and 95 % t-interval over seeds, in long format.

    Args:
        results: `Grid.results()` rows (one row per run x method, metrics in %, optional
            `learned` and `kind` columns).
        learned_only: leave out runs flagged as never learning.
        by: "pred" or "label" for `grid.results(by=...)` rows: each family is split per
            class, as "<family>, predicted glaucoma" etc.; "correct": "<family>, correctly
            classified" and "<family>, misclassified".

    Returns:
        Columns family, setting, method (label; "" for classification), metric, mean, std (NaN for
        one seed), n, lo, hi (95 % t-interval of the mean), n_flagged (runs that never learned among
        the n), kind ("explainer" | "reference"; "" for classification).
    """
    if results.empty:
        return pd.DataFrame(columns=_LONG)
    results = _with_defaults(results)
    if learned_only:
        results = results[results["learned"].astype(bool)]
    results = split_families(results, by)
    per_image = [m.name for m in REGISTRY.values() if m.kind != "classification" and m.name in results.columns]
    classification = [m.name for m in registered("classification") if m.name in results.columns]
    keys = ["family", "setting", "seed"]
    expl = results.melt(id_vars=keys + ["method_label", "kind", "learned"], value_vars=per_image,
                        var_name="metric", value_name="value").rename(columns={"method_label": "method"})
    runs = results.drop_duplicates(keys)
    cls = runs.melt(id_vars=keys + ["learned"], value_vars=classification, var_name="metric",
                    value_name="value").assign(method="", kind="")
    long = pd.concat([cls, expl], ignore_index=True).dropna(subset=["value"])
    long["flagged"] = ~long["learned"].astype(bool)
    g = long.groupby(["family", "setting", "method", "metric"], sort=False)
    out = g["value"].agg(mean="mean", std="std", n="count")
    out["n_flagged"] = g["flagged"].sum().astype(int)
    out["kind"] = g["kind"].first()
    out = out.reset_index()
    out["lo"], out["hi"] = _interval(out["mean"], out["std"], out["n"], out["metric"])
    return out[_LONG]


class Cell(str):
    """A shown value: its text ("mean ± sd"), what hovering over it tells (the 95 % interval, the
    seeds), and whether it is marked as the best of its column."""

    title: str
    best: bool
    mean: float = math.nan  # the value behind the text, where one is (for marking the best)

    def __new__(cls, text: str, title: str = "", best: bool = False) -> "Cell":
        cell = super().__new__(cls, text)
        cell.title, cell.best = title, best
        return cell

    def marked(self) -> "Cell":
        """The same cell, marked best (bold)."""
        out = Cell(str(self), self.title, True)
        out.mean = self.mean
        return out

    def html(self) -> str:
        text = html.escape(str(self))
        text = f"<b>{text}</b>" if self.best else text
        title = f' title="{html.escape(self.title)}"' if self.title else ""
        return f'<span class="num"{title}>{text}</span>'


def _fmt(mean, std=math.nan, n=None, lo=math.nan, hi=math.nan, flagged: int = 0, *, measured: bool = True,
         over: str = "seeds") -> Cell:
    """"mean ± sd" ("mean" alone where every seed gave the same value); "(n=2)" where fewer than
    three seeds; FLAG where runs never learned. The 95 % interval and the seeds go into the hover.

    `measured=False` for a published summary (the thesis's): an sd of 0.0 there is a rounded sd,
    not seeds known to agree, and is shown. `over`: what n counts ("seeds", "runs").
    """
    if mean is None or pd.isna(mean):
        return Cell("—")
    constant = measured and not pd.isna(std) and abs(std) < 1e-9
    text = f"{mean:.1f}"
    if not pd.isna(std) and not constant:
        text += f" ± {std:.1f}"
    known = n is not None and not pd.isna(n)
    if known and n < 3:
        text += f" (n={int(n)})"
    title = []
    if constant and known:
        title.append(f"the same in all {int(n)} {over}")
    elif not (pd.isna(lo) or pd.isna(hi)):
        title.append(f"95 % interval {lo:.1f} to {hi:.1f}" + (f", {int(n)} {over}" if known else ""))
    elif known:
        title.append(f"{int(n)} {over if int(n) != 1 else over.rstrip('s')}")
    if flagged:
        title.append(f"{int(flagged)} never learned")
    out = Cell(text + (f" {FLAG}" if flagged else ""), "; ".join(title))
    out.mean = float(mean)
    return out


def _shown(value, digits: int = 1) -> str:
    """A value of a shown table as HTML: cells with their hover, numbers to `digits` decimals,
    booleans as yes / no, nothing as "—"."""
    from thesislib.labels import yes_no

    if isinstance(value, Cell):
        return value.html()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return yes_no(value)
    if isinstance(value, (float, np.floating)):
        return f'<span class="num">{value:.{digits}f}</span>'
    return html.escape(str(value))


def to_html(frame: pd.DataFrame, decimals: dict | None = None) -> str:
    """`frame` as an HTML table for the report: `Cell`s with their hover and mark, floats to one
    decimal (`decimals`: {column: digits} where a statistic needs more), labels escaped."""
    decimals = decimals or {}
    # every value through `_shown` (pandas' formatters skip what it takes for missing, such as None)
    shown = pd.DataFrame({i: [_shown(v, decimals.get(c, 1)) for v in frame.iloc[:, i]]
                          for i, c in enumerate(frame.columns)}, index=frame.index)
    shown.columns = frame.columns

    def esc(x):
        return html.escape(str(x)) if isinstance(x, str) else x

    if isinstance(shown.index, pd.MultiIndex):
        shown.index = pd.MultiIndex.from_tuples([tuple(map(esc, t)) for t in shown.index],
                                                names=[esc(n) for n in shown.index.names])
    else:
        shown.index = pd.Index([esc(x) for x in shown.index], name=esc(shown.index.name))
    if isinstance(shown.columns, pd.MultiIndex):
        shown.columns = pd.MultiIndex.from_tuples([tuple(map(esc, t)) for t in shown.columns],
                                                  names=[esc(n) for n in shown.columns.names])
    else:
        shown.columns = pd.Index([esc(x) for x in shown.columns], name=esc(shown.columns.name))
    return shown.to_html(escape=False)


@dataclass
class Table:
    """A table for the report: the frame, the notes printed under it (what holds for this table:
    flagged runs, ...) and the explanations (what a marker or a column means: the report shows
    each once per section, under the first table that has it)."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    decimals: dict = field(default_factory=dict)  # {column: digits} of a statistic (τ, p); others one

    def _repr_html_(self) -> str:
        notes = "".join(f"<p><small>{html.escape(n)}</small></p>" for n in self.notes)
        notes += "".join(f'<p class="note"><small>{html.escape(n)}</small></p>' for n in self.explanations)
        return to_html(self.frame, self.decimals) + notes

    def __repr__(self) -> str:
        return "\n".join([repr(self.frame), *self.notes, *self.explanations])

    @property
    def loc(self):
        return self.frame.loc


def readable_table(frame: pd.DataFrame, notes: Sequence[str] = (), *, decimals: dict | None = None) -> Table:
    """Any result frame as a reader sees it: keys as labels (`thesislib.labels.readable`), floats
    to one decimal (or `decimals`: {column label: digits}), booleans as yes / no, NaN as "—"."""
    from thesislib.labels import readable

    return Table(readable(frame), list(notes), decimals=dict(decimals or {}))


def _metric_row(metric: str) -> str:
    m = REGISTRY[metric]
    return f"{m.arrow} {m.label}"


REFERENCE_BLOCK = "reference maps: "  # the first index level of a thesis table's reference rows
MAX_COLUMNS = 6  # data columns of a thesis table with settings as columns; more: settings become rows
EVERY_SETTING = "every setting"


def _mark_best(frame: pd.DataFrame, rows: dict, columns: Sequence) -> None:
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
        from thesislib.references import LABELS, REFERENCES

        present = set(mine.loc[mine["kind"] == "reference", "method"])
        refs = [LABELS[r] for r in REFERENCES if LABELS[r] in present]
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
        return _fmt(r.mean, r.std, r.n, getattr(r, "lo", math.nan), getattr(r, "hi", math.nan),
                    getattr(r, "n_flagged", 0), measured=found is not sources.get("thesis"))

    ref_lo, ref_hi = _interval(ref["mean"], ref["std"], ref["n"], ref["metric"])
    sources = {"ours": lookup(mine)}
    if with_thesis:
        sources["thesis"] = lookup(ref.assign(lo=ref_lo, hi=ref_hi))
    fam_label = FAMILIES[fams[0]].title
    best_rows: dict[str, list] = {}
    if len(settings) * len(sources) <= MAX_COLUMNS:
        def label(m: str, meth: str, reference_row: bool) -> tuple:
            return (REFERENCE_BLOCK + _metric_row(m) if reference_row else _metric_row(m), meth)

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
            first = _metric_row(m) if not is_ref else REFERENCE_BLOCK + _metric_row(m)
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
                    best_rows.setdefault((m, s), []).append((_metric_row(m), meth, s))
    if len(frame.columns) and best_rows:
        if isinstance(next(iter(best_rows)), tuple):  # settings as rows: the best explainer per metric and setting
            for (m, _), keys in best_rows.items():
                _mark_best(frame, {m: keys}, list(frame.columns))
        else:
            _mark_best(frame, best_rows, list(frame.columns))
    notes = []
    if "n_flagged" in mine.columns:
        flagged = mine[(mine["method"] == "") & mine["setting"].isin(settings)]
        per_run = flagged.groupby(["family", "setting"])["n_flagged"].max().sum()
        if per_run:
            notes.append(_FLAG_NOTE.format(n=int(per_run)))
    return Table(frame, notes, [FLAG_RULE] if notes else [])


def _same_as(results: pd.DataFrame, labels: list[str], columns: list[str]) -> dict[str, str]:
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
    from thesislib.labels import COLUMNS, value_label

    results = _with_defaults(results)
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
            lo, hi = _interval(pd.Series([mean]), pd.Series([std]), pd.Series([n]), m)
            row[_metric_row(m)] = _fmt(mean, std, n, lo.iloc[0], hi.iloc[0], flagged, over="runs")
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
    same = _same_as(results, labels, present) if "run_id" in results.columns else {}
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
                _mark_best(frame, {m: list(g.index)}, [_metric_row(m)])
    notes = [_FLAG_NOTE.format(n=n_flagged)] if n_flagged else []
    explanations = [FLAG_RULE] if n_flagged else []
    if "constant_heatmaps" in results.columns and "constant maps" not in frame.columns:
        explanations.append("No method gave a constant map on any scored image (else a column counts them).")
    if same:
        explanations.append("Methods whose maps equal another's on every scored image (max difference 1e-4) are "
                            "shown once, named under \"same maps as\".")
    return Table(frame, notes, explanations)


# -- helpers the notebooks call -----------------------------------------------------------------

def expert_regions(data) -> pd.DataFrame:
    """How large the Otsu foreground of the expert maps of a split is (% of the image)."""
    from thesislib.metrics import binarize, is_empty

    _, labels, maps = data.batch()
    masks = binarize(maps)
    share = masks.flatten(1).float().mean(1) * 100
    rows = []
    for sel in (slice(None), labels == 0, labels == 1):
        s = share[sel]
        rows.append(dict(images=len(s), mean=float(s.mean()), min=float(s.min()), max=float(s.max()),
                         empty=int(is_empty(masks[sel]).sum())))
    out = pd.DataFrame(rows, index=["all", "non-glaucoma", "glaucoma"]).round(1)
    out.index.name = "expert region (% of image)"
    return out


def best_settings(ours: pd.DataFrame, *, method: str = "Score-CAM", metric: str = "iou_area",
                  learned_only: bool = False) -> list[tuple[str, str]]:
    """(family, setting) of the baseline and of each family's best non-baseline setting by `metric`.

    Args:
        ours: `aggregate` output; reference rows never count.
        learned_only: skip settings whose seeds include a run that never learned.
    """
    part = ours[(ours["method"] == method) & (ours["metric"] == metric)]
    if "kind" in part.columns:
        part = part[part["kind"] != "reference"]
    if learned_only and "n_flagged" in part.columns:
        part = part[part["n_flagged"] == 0]
    picks: list[tuple[str, str]] = []
    if (part["setting"] == "baseline").any():
        picks.append((part[part["setting"] == "baseline"]["family"].iloc[0], "baseline"))
    for fam, g in part[part["setting"] != "baseline"].groupby("family", sort=False):
        best = g.loc[g["mean"].idxmax() if REGISTRY[metric].higher else g["mean"].idxmin()]
        picks.append((fam, best["setting"]))
    return picks


def generalisation_gap(hist: pd.DataFrame) -> pd.DataFrame:
    """Per setting (mean over seeds): best epoch, and train / validation loss and their gap at the last epoch."""
    last = hist.sort_values("epoch").groupby(["setting", "seed"]).tail(1)
    best = hist.loc[hist.groupby(["setting", "seed"])["val_loss"].idxmin()]
    out = pd.DataFrame({
        "best epoch": best.groupby("setting")["epoch"].mean(),
        "final train CE": last.groupby("setting")["train_ce"].mean(),
        "final val loss": last.groupby("setting")["val_loss"].mean(),
    })
    out["gap (val - train)"] = out["final val loss"] - out["final train CE"]
    return out.round(3)


def model_points(results: pd.DataFrame, method: str, *, learned_only: bool = False) -> pd.DataFrame:
    """One row per trained model and family: classification, `learned` and the `method`'s metrics (%).

    A run shared by several families (the baseline) appears once per family; `stats.correlations`
    counts it once in the pooled correlation (unique="run_id").

    Args:
        method: method key ("scorecam"), as in results["method"]; never a reference map.
        learned_only: leave out runs that never learned.
    """
    results = _with_defaults(results)
    part = results[results["method"] == method]
    if (part["kind"] == "reference").any():
        raise ValueError(f"method: {method!r} is a reference map, expected an explainer")
    metric_cols = [m.name for m in REGISTRY.values() if m.name in part.columns]
    cols = ["family", "setting", "seed", "run_id", "learned", *metric_cols]
    out = part[cols].drop_duplicates(["family", "run_id"]).reset_index(drop=True)
    return out[out["learned"].astype(bool)].reset_index(drop=True) if learned_only else out


def _ci(r, lo, hi, n=None) -> str:
    from thesislib.stats import MIN_MODELS

    if n is not None and n < MIN_MODELS:
        return f"cannot be judged ({n} models)"
    return "—" if pd.isna(r) else f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _corr_frame(corr: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "group": corr["group"].map(family_label), "explainability": corr["y"].map(lambda m: REGISTRY[m].label if m in REGISTRY else m),
        "models": corr["n"],
        "Pearson r [95% CI]": [_ci(*v) for v in corr[["pearson", "pearson_lo", "pearson_hi", "n"]].itertuples(index=False)],
        "Spearman ρ [95% CI]": [_ci(*v) for v in corr[["spearman", "spearman_lo", "spearman_hi", "n"]].itertuples(index=False)],
    })
    return out.set_index(["group", "explainability"])


def correlation_table(corr: pd.DataFrame, learned: pd.DataFrame | None = None) -> pd.DataFrame:
    """`stats.correlations` output as a readable table: r [95 % CI] per group and metric.

    Args:
        corr: `stats.correlations(points, ...)` over all models.
        learned: the same with `learned_only=True`; if given, both side by side under
            "all models" and "learned only".
    """
    if learned is None:
        return _corr_frame(corr)
    both = pd.concat({"all models": _corr_frame(corr), "learned only": _corr_frame(learned)}, axis=1)
    models = [c for c in both.columns if c[1] == "models"]
    return both.astype({c: "Int64" for c in models})  # a count, where a group has none on one side


# -- explainers against what a trivial and the best possible answer score ------------------------

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
    from thesislib.claims import Claim, Evidence, judge_claim

    if not isinstance(metric, str):
        parts = [against_references(results, m, family=family) for m in metric]
        frames = [p.frame.reset_index().assign(metric=f"{REGISTRY[m].arrow} {REGISTRY[m].label}")
                  for p, m in zip(parts, metric) if not p.frame.empty]
        frame = pd.concat(frames, ignore_index=True).set_index(["family", "metric"]) if frames else pd.DataFrame()
        return Table(frame, parts[0].notes if parts else [], parts[0].explanations if parts else [])
    m = REGISTRY[metric]
    results = _with_defaults(results)
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
        fmt = lambda r: "—" if r is None else _fmt(r["mean"], r["std"], r["n"], r["lo"], r["hi"], r["n_flagged"])  # noqa: E731
        ceil = ceiling.iloc[0] if len(ceiling) else None
        share = (best["mean"] / ceil["mean"] * 100) if ceil is not None and ceil["mean"] else math.nan
        rows.append({"family": family_label(fam), "best explainer": f"{best['method']} ({best['setting']})",
                     "value": fmt(best), "strongest reference": strongest,
                     "its value": fmt(ref_cell.iloc[0]) if len(ref_cell) else "—", "ceiling": fmt(ceil),
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
    from thesislib.claims import Any, beats

    learned = [s for s in ev.settings if (s, metric, ref) in ev.cells and len(ev.cells[(s, metric, ref)].learned()) > 1]
    leaves = [beats(ev, (s, metric, meth), (s, metric, ref)) for s in learned for meth in explainers]
    leaves = tuple(x for x in leaves if x is not None)
    return Any(leaves) if leaves else None


def run_health(results: pd.DataFrame):
    """Markdown: which runs never learned (flagged in every table and figure that uses them)."""
    from IPython.display import Markdown

    if results.empty:
        return Markdown("_No runs._")
    from thesislib.summary import learned_sentence

    runs = _with_defaults(results).drop_duplicates("run_id")
    bad = runs[~runs["learned"].astype(bool)]
    share = " " + learned_sentence(results)
    if bad.empty:
        return Markdown(f"All {len(runs)} runs learned (validation accuracy above the majority-class rate by more "
                        "than two binomial standard errors, and both classes predicted)." + share)
    lines = [f"- {family_label(r.family)} · {r.setting} · seed {r.seed}: "
             f"test accuracy {r.accuracy:.1f} %" for r in bad.itertuples()]
    return Markdown(f"**{len(bad)} of {len(runs)} runs never learned** ({_RULE}); they inform no verdict, and are "
                    f"marked {FLAG} in the tables and with an X in the figures.{share}\n\n" + "\n".join(lines))


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


def verdict_summary(results: pd.DataFrame, judged: pd.DataFrame | None = None) -> Table:
    """Counts of every claim's verdict in the report (family claims, RQ3's method claims, RQ6's
    correlation claims), for our runs and for the thesis's own numbers; "untestable" and "n/a"
    are counted apart from the tally. `judged`: `claims.judge_all(results)` where the caller has it."""
    from thesislib.claims import TALLY, judge_all, verdict_counts

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
    learned = _with_defaults(results)["learned"].astype(bool)
    note = []
    if not learned.any():
        note = [f"No run learned (all {FLAG}): the comparison uses every run, and says nothing about explanations."]
        part = results.assign(learned=True)
    else:
        part = results[learned.to_numpy()]
    table = against_references(split_families(part, by), list(metrics))
    return Table(table.frame, note + table.notes, table.explanations)


# -- does a conclusion survive another metric, threshold or slice? -------------------------------

def _explainer_means(results: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per explainer (label): the mean over runs of each column, over the runs that learned (all
    runs where none did); explainers whose maps equal an earlier one's are left out (a duplicate
    would count as a tie it did not earn)."""
    results = _with_defaults(results)
    learned = results["learned"].astype(bool)
    part = results[learned] if learned.any() else results
    part = part[part["kind"] == "explainer"]
    present = [c for c in columns if c in part.columns]
    if "run_id" in part.columns and present:  # the evaluation's word, else equal metrics on every run
        twins = _same_as(part, list(dict.fromkeys(part["method_label"])), present)
        part = part[~part["method_label"].isin(list(twins))]
    return part.groupby("method_label", sort=False)[present].mean()


def _direction(column: str) -> bool:
    """True if higher is better: the registry's word, and for the IoU curve's columns (IoUs) True."""
    return REGISTRY[column].higher if column in REGISTRY else True


def _column_label(column: str) -> str:
    from thesislib.metrics import curve_columns

    if column in REGISTRY:
        return f"{REGISTRY[column].arrow} {REGISTRY[column].label}"
    rule, level = curve_columns().get(column, (None, None))
    if rule == "fixed":
        return f"IoU, map > {level:g}"
    if rule == "top":
        return f"IoU, top {100 * level:g} % of pixels"
    return column


def ranking_agreement(results: pd.DataFrame, metrics: Sequence[str], *, reference: str = "iou_area") -> Table:
    """Does ranking the explainers by another metric (or IoU at another threshold) give the order
    that `reference` gives? Kendall's tau-b between the two orders of the explainers' means over runs.

    Args:
        results: `Grid.results` rows (explainers and references; only explainers are ranked,
            each distinct map once).
        metrics: registry names or IoU-curve columns (`thesislib.metrics.curve_columns`).
        reference: the metric whose order the others are compared with.

    Returns:
        A `Table`, one row per metric: τ (Kendall's tau-b, +1 same order, -1 reversed), its
        two-sided p-value, the number of explainers ranked, the first explainer by it and by the
        reference, and a verdict: "agrees" (τ > 0, p < 0.05), "reversed" (τ < 0, p < 0.05),
        "not significantly" otherwise.
    """
    means = _explainer_means(results, [reference, *metrics])
    if reference not in means.columns or means.empty:
        return Table(pd.DataFrame(), [f"No explainer has {reference!r} in these results."])
    ref = means[reference] if _direction(reference) else -means[reference]
    rows = []
    for m in metrics:
        if m not in means.columns or m == reference:
            continue
        v = (means[m] if _direction(m) else -means[m]).dropna()
        both = ref.loc[v.index].dropna()
        v = v.loc[both.index]
        tau, p = (sps.kendalltau(both, v) if len(v) > 2 else (math.nan, math.nan))
        verdict = ("agrees" if tau > 0 and p < 0.05 else "reversed" if tau < 0 and p < 0.05 else "not significantly")
        rows.append({"metric": _column_label(m), "Kendall τ": round(float(tau), 2) if not pd.isna(tau) else math.nan,
                     "p": round(float(p), 3) if not pd.isna(p) else math.nan, "explainers": len(v),
                     "first by it": v.idxmax() if len(v) else "—",
                     f"first by {REGISTRY[reference].label}": both.idxmax() if len(both) else "—",
                     f"order agrees with {REGISTRY[reference].label}": verdict if len(v) > 2 else "n/a"})
    frame = pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()
    return Table(frame, [], decimals={"Kendall τ": 2, "p": 3}, explanations=[f"Explainers ranked by their mean over runs (learned runs only, where any learned); methods "
                         f"with another's maps counted once. τ compares each order with {REGISTRY[reference].label}'s."])


def threshold_curve(results: pd.DataFrame, *, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """IoU (A) against the binarisation of the heatmap: Otsu, fixed thresholds, top shares of pixels.

    Args:
        results: `Grid.results` rows with the IoU curve's columns.
        methods: method labels to keep (default: every explainer with its own maps, the prior and
            the ceiling).

    Returns:
        Tidy: method (label), kind, rule ("otsu" | "fixed" | "top"), level (threshold or share;
        NaN for Otsu), mean, std, n (runs), lo, hi (95 % t-interval over runs), in %.
    """
    from thesislib.metrics import curve_columns
    from thesislib.references import LABELS as REF

    results = _with_defaults(results)
    if "run_id" in results.columns:
        results = results.drop_duplicates(["run_id", "method"])
    if methods is None:
        same = results["same_as"].astype(object).fillna("").astype(str) if "same_as" in results else ""
        keep = ((results["kind"] == "explainer") & (same == "")) | results["method_label"].isin(
            [REF["prior"], REF["ceiling"]])
        results = results[keep]
    else:
        results = results[results["method_label"].isin(list(methods))]
    columns = {"iou_area": ("otsu", math.nan), **curve_columns()}
    rows = []
    for label, g in results.groupby("method_label", sort=False):
        for col, (rule, level) in columns.items():
            if col not in g.columns:
                continue
            v = g[col].dropna()
            rows.append(dict(method=label, kind=g["kind"].iloc[0], rule=rule, level=level, mean=v.mean(),
                             std=v.std(), n=len(v)))
    out = pd.DataFrame(rows, columns=["method", "kind", "rule", "level", "mean", "std", "n"])
    out["lo"], out["hi"] = _interval(out["mean"], out["std"], out["n"])
    return out


def slice_conclusions(results: pd.DataFrame, sliced: pd.DataFrame, *, by: str = "correct",
                      metrics: Sequence[str] = ("iou_area", "pointing_game")) -> Table:
    """Where reading only some images changes a conclusion: per metric, the first explainer (mean
    over runs) and whether some explainer beats the prior (`against_references`' verdict), on all
    scored images and on each slice.

    Args:
        results: `grid.results()` rows; sliced: `grid.results(by=by)` rows.
        by: the slicing column ("correct": correctly vs wrongly classified; "pred"; "label").
        metrics: localisation metrics of the registry.

    Returns:
        A `Table` indexed by (metric, conclusion), one column per slice beside "all images", and
        "changes" ("yes" where a slice's conclusion differs from all images').
    """
    names = {"correct": {True: "correctly classified", False: "misclassified"}}.get(by, CLASS_NAMES)
    learned = _with_defaults(results)["learned"].astype(bool)
    learned_s = _with_defaults(sliced)["learned"].astype(bool)
    base = results[learned.to_numpy()] if learned.any() else results
    part = sliced[learned_s.to_numpy()] if learned_s.any() else sliced
    slices = [("all images", base)] + [(names.get(v, str(v)), g) for v, g in part.groupby(by, sort=True)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for m in metrics:
        label = f"{REGISTRY[m].arrow} {REGISTRY[m].label}"
        for name, df in slices:
            means = _explainer_means(df.assign(learned=True), [m])
            first = "—"
            if m in means.columns and means[m].notna().any():
                first = (means[m].idxmax() if REGISTRY[m].higher else means[m].idxmin())
            rows.setdefault((label, "first explainer"), {})[name] = first
            verdict = against_references(df, m).frame
            rows.setdefault((label, "an explainer beats the strongest reference (95 %)"), {})[name] = (
                ", ".join(dict.fromkeys(verdict["an explainer beats it (95 %)"])) if not verdict.empty else "n/a")
            n = int(df.drop_duplicates(["run_id", "method"])["n_images"].sum()) if "n_images" in df.columns else 0
            rows.setdefault((label, "images scored (all runs, per method)"), {})[name] = str(
                n // max(1, df["method"].nunique()))
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["metric", "conclusion"])
    conclusions = frame.index.get_level_values("conclusion") != "images scored (all runs, per method)"
    frame["changes"] = ""
    for key in frame.index[conclusions]:
        values = frame.loc[key].drop("changes").dropna()
        frame.loc[key, "changes"] = "yes" if (values != values.get("all images")).any() else "no"
    note = (f"Runs that learned (all runs where none did). A slice with few images per run is noisy: read its "
            f"column with the images it holds.")
    return Table(frame, [], [note])
