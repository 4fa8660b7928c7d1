"""Formatting: how a table shows a number (`Cell`: "mean ± sd", its interval in the hover, bold when
best), a row's method label, and the `Table` a notebook displays.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from thesislib.explain import LABELS
from thesislib.labels import readable, yes_no
from thesislib.metrics import REGISTRY
from thesislib.references import LABELS as REF_LABELS
from thesislib.references import REFERENCES

__all__ = ["FLAG", "NOT_LEARNED_RULE", "FLAG_RULE", "FLAG_NOTE", "method_label", "method_kind", "Cell", "fmt",
           "to_html", "Table", "readable_table", "metric_row"]

FLAG = "†"
NOT_LEARNED_RULE = ("validation accuracy not above the majority-class rate by more than two binomial standard errors, "
         "or one class predicted for every image")
FLAG_RULE = f"{FLAG}: the cell's seeds include runs that never learned ({NOT_LEARNED_RULE})."
FLAG_NOTE = f"{FLAG} {{n}} of the runs averaged in this table never learned."


def method_label(method: str) -> str:
    """"scorecam" -> "Score-CAM", "prior" -> "Prior (mean expert map)"."""
    labels = {**LABELS, **REF_LABELS}
    if method not in labels:
        raise ValueError(f"method: unknown {method!r}, expected one of {', '.join(labels)}")
    return labels[method]


def method_kind(method: str) -> str:
    """"reference" for a reference map (prior, ceiling, ...), else "explainer"."""
    return "reference" if method in REFERENCES else "explainer"


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


def fmt(mean, std=math.nan, n=None, lo=math.nan, hi=math.nan, flagged: int = 0, *, measured: bool = True,
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
    return Table(readable(frame), list(notes), decimals=dict(decimals or {}))


def metric_row(metric: str) -> str:
    m = REGISTRY[metric]
    return f"{m.arrow} {m.label}"
