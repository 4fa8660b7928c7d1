"""Our own questions beyond the thesis (notebooks 07 and 08), judged like the thesis's claims.

The thesis makes no claims about optimisers or the training-set size (it lists both as future
work), so these questions are ours. Each is a `thesislib.claims.Claim` over setting keys (the
settings' overrides, `claims.S(optimizer="sgd", lr=0.01)`) and method keys, judged on our runs by
the claims' judge (paired by seed where the design pairs, Welch otherwise; intersection-union for
"every", Holm for "some"; 95 %): yes / no / equivalent beyond the seed noise, else inconclusive,
with the seeds that would decide it.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from thesislib.claims import (ALPHA, All, Claim, Evidence, all_others_worse, better, judge_claim,
                              some_setting_better)
from thesislib.explain import LABELS

__all__ = ["optimizer_questions", "size_questions", "judge_questions", "questions_markdown"]


def optimizer_questions(adam: str, method: str) -> list[Claim]:
    """07: does another optimiser than the thesis's Adam give better models or explanations?

    Args:
        adam: the setting key of the Adam runs (`claims.S(optimizer="adam")`).
        method: the explainer's key ("scorecam").
    """
    label = LABELS.get(method, method)
    return [
        Claim("Some other optimiser beats Adam on accuracy", "optimizer", some_setting_better(adam, "accuracy")),
        Claim(f"Some other optimiser beats Adam on {label} IoU (A)", "optimizer",
              some_setting_better(adam, "iou_area", method)),
        Claim(f"Adam beats every other optimiser on {label} IoU (A)", "optimizer",
              all_others_worse(adam, "iou_area", method)),
    ]


def size_questions(full: str, smaller: Sequence[str], method: str) -> list[Claim]:
    """08: does the whole training set beat each smaller share of it?

    Args:
        full: the setting key of the whole training set; smaller: the keys of the smaller shares.
        method: the explainer's key.
    """
    label = LABELS.get(method, method)
    return [
        Claim("The whole training set beats every smaller share on accuracy", "train_fraction",
              _beats_each(full, smaller, "accuracy", "")),
        Claim(f"The whole training set beats every smaller share on {label} IoU (A)", "train_fraction",
              _beats_each(full, smaller, "iou_area", method)),
        Claim(f"The whole training set beats every smaller share on {label} pointing game", "train_fraction",
              _beats_each(full, smaller, "pointing_game", method)),
    ]


def _beats_each(winner: str, others: Sequence[str], metric: str, method: str):
    """Claim check: `winner` beats each of `others` on `metric` (one comparison each, all needed)."""
    def check(ev: Evidence):
        parts = tuple(p for p in (better(ev, winner, o, metric, method) for o in others) if p is not None)
        return All(parts) if parts else None
    return check


def judge_questions(results: pd.DataFrame, questions: Sequence[Claim], *, alpha: float = ALPHA) -> pd.DataFrame:
    """Each question judged on our runs.

    Args:
        results: `Grid.results()` rows.
        questions: claims whose family is in `results`.

    Returns:
        Columns family, question, answer (yes / no / equivalent / inconclusive / did not learn;
        None where the runs lack the cells), rule, comparisons, design, seeds, seeds_needed, note,
        level.
    """
    rows = []
    for q in questions:
        part = results[results["family"] == q.family] if not results.empty else results
        j = judge_claim(q, Evidence.of_results(part) if not part.empty else None, alpha=alpha)
        rows.append(dict(family=q.family, question=q.text, answer=j.outcome, rule=j.rule, comparisons=j.comparisons,
                         design=j.design, seeds=j.seeds, seeds_needed=j.needed, note=j.note, level=1 - alpha))
    return pd.DataFrame(rows, columns=["family", "question", "answer", "rule", "comparisons", "design", "seeds",
                                       "seeds_needed", "note", "level"])


def questions_markdown(judged: pd.DataFrame):
    """Markdown for the report: each question, its answer, the test and the seeds that would decide it."""
    from IPython.display import Markdown

    if judged.empty:
        return Markdown("_No questions._")
    level = float(judged["level"].iloc[0]) * 100
    dash = lambda v: v if isinstance(v, str) and v else "—"  # noqa: E731
    lines = ["| question (ours; the thesis makes no claim here) | answer | test | seeds (learned of run) | "
             "seeds to decide |", "| --- | --- | --- | --- | --- |"]
    for r in judged.itertuples():
        test = ", ".join(x for x in (r.rule, r.design) if isinstance(x, str) and x)
        note = f" ({r.note})" if isinstance(r.note, str) and r.note else ""
        answer = f"**{r.answer}**" if r.answer in ("yes", "no", "equivalent") else dash(r.answer)  # decided
        lines.append(f"| {r.question} | {answer}{note} | {dash(test)} | {dash(r.seeds)} | "
                     f"{dash(r.seeds_needed)} |")
    return Markdown(f'<p class="note">Answers at {level:g} %, by the judge of the thesis\'s claims (see Methods).</p>\n\n'
                    + "\n".join(lines))
