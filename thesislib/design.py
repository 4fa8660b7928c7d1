"""Design: the study's research questions and experiment families, one record each.

A research question is a notebook, one `Question` here and one params file per scale. The report
(its sections and their titles), the study grid (which notebooks pool into RQ6), sweep (which
notebooks a params folder holds), the claims and the tests read these records; nothing else keeps
its own list of notebooks, titles or families. A family is one `Family` in FAMILIES: the thesis's
table it reproduces (None beyond the thesis) and its title.

This module holds data only and imports nothing of the package, so every room can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Family", "FAMILIES", "Question", "QUESTIONS", "NOTEBOOKS", "BEYOND", "TITLES", "question"]


class Family(NamedTuple):
    """An experiment family: the thesis's table it reproduces (None beyond the thesis) and its title."""

    table: str | None
    title: str


# family -> Family; the order is the report's (and fixes each family's colour in the figures)
FAMILIES: dict[str, Family] = {
    "depth": Family("5.2", "Depth"),
    "epochs": Family("5.3", "Epochs"),
    "batch_size": Family("5.4", "Batch size"),
    "weight_decay": Family("5.6", "Weight decay"),
    "dropout": Family("5.7", "Dropout"),
    "batch_norm": Family("5.8", "Batch normalisation"),
    "group_norm": Family("5.9", "Group normalisation"),
    "precode": Family("5.10", "PRECODE"),
    "precode_long": Family(None, "PRECODE long run"),
    # beyond the thesis (its future work): no thesis table
    "optimizer": Family(None, "Optimiser"),
    "train_fraction": Family(None, "Training-set size"),
    "shortcut": Family(None, "Shortcut (spurious cue)"),
    "shuffled_labels": Family(None, "Shuffled labels (data randomisation)"),
}


@dataclass(frozen=True)
class Question:
    """One research question: its notebook and what the study holds for it.

    Attributes:
        notebook: the notebook's name ("01_depth"): notebooks/<notebook>.ipynb and
            params/<scale>/<notebook>.yaml.
        title: the report's section title.
        families: the families its params train (keys of FAMILIES); a family derived from
            another params key (05's long run, 03's shuffled labels) is listed too.
        claims: where its claims live, as "module:name" (a list of `thesislib.claims.Claim`, or a
            function that returns one); for the thesis's claims over families, those of this
            question's families. None: the question judges no claim.
        metrics: the metrics its conclusions rest on (keys of `thesislib.metrics.REGISTRY`).
        beyond: a question beyond the thesis (its future work): its runs stay out of RQ6's pool.
    """

    notebook: str
    title: str
    families: tuple[str, ...] = ()
    claims: str | None = None
    metrics: tuple[str, ...] = ()
    beyond: bool = False


_THESIS_CLAIMS = "thesislib.claims:CLAIMS"
_EXPLAINED = ("accuracy", "iou_area", "iou_bbox", "average_drop", "increase_in_confidence")

# in the report's order
QUESTIONS: tuple[Question, ...] = (
    Question("00_data", "00 · Data"),
    Question("01_depth", "01 · Depth (RQ1)", ("depth",), _THESIS_CLAIMS, _EXPLAINED),
    Question("02_optimisation", "02 · Optimisation (RQ2)", ("epochs", "batch_size"), _THESIS_CLAIMS, _EXPLAINED),
    Question("03_cam_methods", "03 · CAM methods (RQ3)", ("depth", "shuffled_labels"),
             "thesislib.claims:METHOD_CLAIMS", _EXPLAINED),
    Question("04_regularisation", "04 · Regularisation (RQ4)", ("weight_decay", "dropout", "batch_norm", "group_norm"),
             _THESIS_CLAIMS, _EXPLAINED),
    Question("05_precode", "05 · PRECODE (RQ5)", ("precode", "precode_long"), _THESIS_CLAIMS, _EXPLAINED),
    Question("06_correlation", "06 · Accuracy and explainability (RQ6)", (),
             "thesislib.claims:correlation_claims", ("accuracy", "iou_area")),
    Question("07_optimizers", "07 · Optimisers", ("optimizer",), "thesislib.questions:optimizer_questions",
             ("accuracy", "iou_area"), beyond=True),
    Question("08_dataset_size", "08 · Training-set size", ("train_fraction",), "thesislib.questions:size_questions",
             ("accuracy", "iou_area", "pointing_game"), beyond=True),
    Question("09_shortcut", "09 · A shortcut: what accuracy hides", ("shortcut",), None,
             ("accuracy", "iou_area", "pointing_game"), beyond=True),
)

NOTEBOOKS: tuple[str, ...] = tuple(q.notebook for q in QUESTIONS)
# beyond the thesis: their own questions, outside RQ6's pool (`study_grid`), which stays the thesis's grid
BEYOND: tuple[str, ...] = tuple(q.notebook for q in QUESTIONS if q.beyond)
TITLES: dict[str, str] = {q.notebook: q.title for q in QUESTIONS}


def question(notebook: str) -> Question:
    """The record of `notebook` ("01_depth"); a ValueError names the notebooks there are."""
    for q in QUESTIONS:
        if q.notebook == notebook:
            return q
    raise ValueError(f"notebook: unknown {notebook!r}, expected one of {', '.join(NOTEBOOKS)}")
