"""Our own questions beyond the thesis (notebooks 07 and 08), judged like the thesis's claims.

The thesis makes no claims about optimisers or the training-set size (it lists both as future
work), so these questions are ours. Each is a `thesislib.claims.Claim` over the cells of a
long-format table (`thesislib.tables.aggregate`) and is judged by the same judge
(`thesislib.claims.decide`: parametric bootstrap of the seed means, 95 %, Bonferroni over the
comparisons a question makes): "yes" / "no" beyond the seed noise, else "inconclusive".
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from thesislib.claims import (ALPHA, All, Cells, Claim, all_others_worse, better_than, decide,
                              some_setting_better)

__all__ = ["optimizer_questions", "size_questions", "judge_questions", "questions_markdown"]


def optimizer_questions(adam: str, method: str) -> list[Claim]:
    """07: does another optimiser than the thesis's Adam give better models or explanations?

    Args:
        adam: the setting label of the Adam runs (e.g. "Adam, lr 0.001").
        method: the explainer's label (e.g. "Score-CAM").
    """
    return [
        Claim("Some other optimiser beats Adam on accuracy", "optimizer", some_setting_better(adam, "accuracy")),
        Claim(f"Some other optimiser beats Adam on {method} IoU (A)", "optimizer",
              some_setting_better(adam, "iou_area", method)),
        Claim(f"Adam beats every other optimiser on {method} IoU (A)", "optimizer",
              all_others_worse(adam, "iou_area", method)),
    ]


def size_questions(full: str, smaller: Sequence[str], method: str) -> list[Claim]:
    """08: does the whole training set beat each smaller share of it?

    Args:
        full: the setting label of the whole training set (e.g. "100 %").
        smaller: the labels of the smaller shares.
        method: the explainer's label.
    """
    return [
        Claim("The whole training set beats every smaller share on accuracy", "train_fraction",
              _beats_each(full, smaller, "accuracy", "")),
        Claim(f"The whole training set beats every smaller share on {method} IoU (A)", "train_fraction",
              _beats_each(full, smaller, "iou_area", method)),
        Claim(f"The whole training set beats every smaller share on {method} pointing game", "train_fraction",
              _beats_each(full, smaller, "pointing_game", method)),
    ]


def _beats_each(winner: str, others: Sequence[str], metric: str, method: str):
    """Claim check: `winner` beats each of `others` on `metric` (one comparison each, all needed)."""
    def check(df: Cells):
        parts = [better_than(winner, o, metric, method)(df) for o in others]
        parts = tuple(p for p in parts if p is not None)
        return All(parts) if parts else None
    return check


def judge_questions(ours: pd.DataFrame, questions: Sequence[Claim], *, alpha: float = ALPHA) -> pd.DataFrame:
    """Each question judged on our numbers.

    Args:
        ours: `thesislib.tables.aggregate` output.
        questions: claims whose family is in `ours`.

    Returns:
        Columns family, question, answer ("yes" / "no" / "inconclusive"; None where `ours` lacks
        the cells), comparisons, level.
    """
    rows = []
    for q in questions:
        part = ours[ours["family"] == q.family]
        cells = Cells(part) if not part.empty else None
        node = q.check(cells) if cells else None
        answer, m = decide(node, cells, alpha=alpha) if node is not None else (None, 0)
        rows.append(dict(family=q.family, question=q.text, answer=answer, comparisons=m, level=1 - alpha))
    return pd.DataFrame(rows, columns=["family", "question", "answer", "comparisons", "level"])


def questions_markdown(judged: pd.DataFrame):
    """Markdown for the report: each question and its answer at the stated confidence."""
    from IPython.display import Markdown

    if judged.empty:
        return Markdown("_No questions._")
    level = float(judged["level"].iloc[0]) * 100
    head = (f"Answers at {level:g} % confidence, by the judge of the thesis's claims (parametric bootstrap of "
            "each seed mean, the error level divided by the number of comparisons a question makes): *yes* / "
            "*no* beyond the seed noise, else *inconclusive*. The thesis makes no claim here; the questions "
            "are ours.\n")
    lines = [f"- {r.question}: **{r.answer if isinstance(r.answer, str) else 'n/a'}** "
             f"({r.comparisons} comparison{'s' if r.comparisons != 1 else ''})" for r in judged.itertuples()]
    return Markdown(head + "\n".join(lines))
