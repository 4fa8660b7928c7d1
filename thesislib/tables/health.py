"""Run health: which runs never learned, said once per notebook under its first table.
"""

from __future__ import annotations

import pandas as pd

from thesislib.labels import family_label
from thesislib.tables.formatting import FLAG, NOT_LEARNED_RULE
from thesislib.tables.summaries import with_defaults

__all__ = ["run_health", "run_counts", "learned_sentence", "learned_text"]


def run_counts(results: pd.DataFrame) -> dict[str, int]:
    """Runs of `results` (one row per run and method): all, those that never learned, and those
    trained on shuffled labels (which must not learn)."""
    if results.empty:
        return dict(runs=0, not_learned=0, shuffled=0, shuffled_not_learned=0)
    runs = results.drop_duplicates("run_id")
    learned = runs["learned"].fillna(False).astype(bool)
    shuffled = runs["family"].eq("shuffled_labels")
    return dict(runs=int(len(runs)), not_learned=int((~learned).sum()), shuffled=int(shuffled.sum()),
                shuffled_not_learned=int((shuffled & ~learned).sum()))


def learned_text(r: dict[str, int]) -> str:
    """The sentence of `learned_sentence` from `run_counts`' counts."""
    should = r["runs"] - r["shuffled"]
    bad = r["not_learned"] - r["shuffled_not_learned"]
    share = f" ({100 * (should - bad) / should:.0f} %)" if should else ""
    shuffled = (f"; the {r['shuffled']} trained on shuffled labels, which should not, left aside" if r["shuffled"]
                else "")
    return f"{should - bad} of the {should} runs that should learn did{share}{shuffled}."


def learned_sentence(results: pd.DataFrame) -> str:
    """"84 of the 87 runs that should learn did (97 %); ..." for `results`."""
    return learned_text(run_counts(results))


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
