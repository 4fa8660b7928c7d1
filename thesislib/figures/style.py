"""The figures' shared style: one colour per method, family and setting, captions (alt text),
legends outside the data, and the small helpers every figure uses."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from thesislib.data import denormalize
from thesislib.explain import LABELS, METHODS
from thesislib.metrics import REGISTRY
from thesislib.references import LABELS as REF_LABELS
from thesislib.references import REFERENCES


NOT_LEARNED = "not learned (flagged run)"
NOT_LEARNED_MARKER = "X"
CAPTION_KEY = "thesislib"  # a figure's display metadata: {CAPTION_KEY: {"caption": text}}

sns.set_theme(context="notebook", style="whitegrid")

# Explainers: tab10 without its grey (then Dark2), one colour each in the order of explain.METHODS.
# Reference maps: greys, the most telling (prior, ceiling) darkest, each with its own marker.
_EXPLAINER_COLOURS = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7] + sns.color_palette("Dark2")
REFERENCE_ORDER = ["prior", "ceiling"] + [r for r in REFERENCES if r not in ("prior", "ceiling")]
METHOD_COLOURS: dict[str, tuple[float, float, float]] = {
    **{LABELS[m]: tuple(c) for m, c in zip(METHODS, _EXPLAINER_COLOURS)},
    **{REF_LABELS[r]: (g, g, g) for r, g in zip(REFERENCE_ORDER, np.linspace(0.15, 0.75, len(REFERENCE_ORDER)))},
}
"""Method label (explainer or reference map) -> its colour in every figure."""
REFERENCE_LABELS = frozenset(REF_LABELS[r] for r in REFERENCES)
REFERENCE_MARKERS = {REF_LABELS[r]: mk for r, mk in zip(REFERENCE_ORDER, "sD^vPph*")}  # X marks flagged runs


def method_palette(labels) -> dict[str, tuple[float, float, float]]:
    """Each method label's fixed colour (`METHOD_COLOURS`), in the order given.

    Raises:
        ValueError: a label that is neither an explainer's nor a reference map's.
    """
    unknown = [lab for lab in dict.fromkeys(labels) if lab not in METHOD_COLOURS]
    if unknown:
        raise ValueError(f"method labels: unknown {', '.join(map(repr, unknown))}; expected some of "
                         f"{', '.join(METHOD_COLOURS)}")
    return {lab: METHOD_COLOURS[lab] for lab in dict.fromkeys(labels)}


def family_palette(families) -> dict[str, tuple[float, float, float]]:
    """Each family's fixed colour (by its place in `study.FAMILIES`), in the order given; an unknown
    family gets black."""
    from thesislib.design import FAMILIES

    colours = sns.color_palette("tab10") + sns.color_palette("Dark2")
    fixed = dict(zip(FAMILIES, colours))
    return {f: fixed.get(f, (0.0, 0.0, 0.0)) for f in dict.fromkeys(families)}


def setting_palette(settings) -> dict[str, tuple[float, float, float]]:
    """The settings of one family, in the grid's order, along one sequential palette (light to dark).

    A family's settings come in the same order in every figure, so a setting keeps its colour; the
    palette (crest) is none of the methods' colours.
    """
    names = list(dict.fromkeys(settings))
    return dict(zip(names, sns.color_palette("crest", max(len(names), 2))[:len(names)] if len(names) > 1
                    else [sns.color_palette("crest", 3)[1]]))


def captioned(fig: plt.Figure, text: str) -> plt.Figure:
    """Attach `text` as `fig`'s caption: IPython shows it in the figure's display metadata."""
    text = " ".join(text.split())
    fig._thesislib_caption = text
    # IPython merges the metadata of _repr_mimebundle_ with the PNG the inline backend draws
    fig._repr_mimebundle_ = lambda include=None, exclude=None: ({}, {CAPTION_KEY: {"caption": text}})
    return fig


def caption_of(fig: plt.Figure) -> str | None:
    """The caption a figure function attached to `fig`, or None."""
    return getattr(fig, "_thesislib_caption", None)


def count_text(values, what: str) -> str:
    """"n = 3 seeds" or "n = 2 to 3 seeds" from a sequence of counts."""
    counts = sorted({int(v) for v in values})
    if not counts:
        return f"n = 0 {what}"
    return f"n = {counts[0]} {what}" if len(counts) == 1 else f"n = {counts[0]} to {counts[-1]} {what}"


def seeds_text(df: pd.DataFrame, by: str | None) -> str:
    """How many seeds each value of `by` rests on (all rows together where `by` is None)."""
    if "seed" not in df.columns:
        return "n unknown"
    if by is None or by not in df.columns:
        return count_text([df["seed"].nunique()], "seeds")
    return count_text(df.groupby(by, sort=False)["seed"].nunique(), "seeds") + f" per {by}"


def legend_outside(ax, **kwargs) -> None:
    """Move `ax`'s legend to the right of the axes, out of the data area."""
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, **kwargs)


def rgb(x: torch.Tensor) -> np.ndarray:
    return denormalize(x).permute(1, 2, 0).cpu().numpy()


def metric_record(name: str):
    if name not in REGISTRY:
        raise ValueError(f"metric: expected one of {', '.join(REGISTRY)}, found {name!r}")
    return REGISTRY[name]


def learned_mask(df: pd.DataFrame) -> pd.Series:
    """The `learned` flag of each row (True where the column is absent or empty)."""
    if "learned" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["learned"].fillna(True).astype(bool)


def axis_off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
