"""Run health: which runs never learned, said once per notebook under its first table.
"""

from __future__ import annotations

import pandas as pd

from thesislib.labels import family_label
from thesislib.summary import learned_sentence
from thesislib.tables.formatting import FLAG, NOT_LEARNED_RULE
from thesislib.tables.summaries import with_defaults

__all__ = ["run_health"]

def run_health(results: pd.DataFrame):
    """Markdown: which runs never learned (flagged in every table and figure that uses them)."""
    from IPython.display import Markdown

    if results.empty:
        return Markdown("_No runs._")
    runs = with_defaults(results).drop_duplicates("run_id")
    bad = runs[~runs["learned"].astype(bool)]
    share = " " + learned_sentence(results)
    if bad.empty:
        return Markdown(f"All {len(runs)} runs learned (validation accuracy above the majority-class rate by more "
                        "than two binomial standard errors, and both classes predicted)." + share)
    lines = [f"- {family_label(r.family)} · {r.setting} · seed {r.seed}: "
             f"test accuracy {r.accuracy:.1f} %" for r in bad.itertuples()]
    return Markdown(f"**{len(bad)} of {len(runs)} runs never learned** ({NOT_LEARNED_RULE}); they inform no verdict, "
                    f"and are marked {FLAG} in the tables and with an X in the figures.{share}\n\n" + "\n".join(lines))
