"""The design records: every question's notebook, params, families, claims and metrics exist, and
every family and claim belongs to a question."""

import importlib
import json
from pathlib import Path

import pytest

from thesislib import design, study
from thesislib.claims import CLAIMS, Claim
from thesislib.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("smoke", "default", "gpu", "thesis")
# params keys from which a grid derives a family of its own (`study.long_run_experiments`, 03's shuffled labels)
DERIVED = {"precode_long": "long_run", "shuffled_labels": "shuffled_labels"}


def _claims(q: design.Question) -> list[Claim]:
    module, name = q.claims.split(":")
    found = getattr(importlib.import_module(module), name)
    if callable(found):
        args = {"optimizer_questions": ('{"optimizer": "adam"}', "scorecam"),
                "size_questions": ('{"train_fraction": 1.0}', ['{"train_fraction": 0.5}'], "scorecam")}.get(name, ())
        found = found(*args)
    if found is CLAIMS:
        found = [c for c in CLAIMS if c.family in q.families]
    return found


@pytest.mark.parametrize("q", design.QUESTIONS, ids=lambda q: q.notebook)
def test_every_question_has_its_notebook_params_metrics_and_claims(q):
    notebook = ROOT / "notebooks" / f"{q.notebook}.ipynb"
    assert notebook.is_file(), f"{q.notebook}: no {notebook.name}"
    assert json.loads(notebook.read_text())["cells"], f"{notebook.name}: no cells"
    for scale in SCALES:
        assert (ROOT / "params" / scale / f"{q.notebook}.yaml").is_file(), f"{q.notebook}: no params/{scale} file"
    assert q.title.startswith(q.notebook[:2] + " · "), f"{q.notebook}: title {q.title!r}"
    unknown = [m for m in q.metrics if m not in REGISTRY]
    assert not unknown, f"{q.notebook}: metrics {unknown} are not in the registry"
    assert all(f in design.FAMILIES for f in q.families), f"{q.notebook}: families {q.families}"
    if q.claims is not None:
        claims = _claims(q)
        assert claims and all(isinstance(c, Claim) for c in claims), f"{q.notebook}: claims {q.claims}"


@pytest.mark.parametrize("scale", SCALES)
def test_every_question_trains_its_families_in_its_params(scale):
    for q in design.QUESTIONS:
        p = study.load_params(ROOT / "params" / scale / f"{q.notebook}.yaml")
        trained = set(p.get("experiments", {}))
        trained |= {f for f, key in DERIVED.items() if p.get(key)}
        assert trained == set(q.families), f"params/{scale}/{q.notebook}.yaml trains {sorted(trained)}, " \
                                           f"its record names {sorted(q.families)}"


def test_every_family_and_every_thesis_claim_belongs_to_a_question():
    owned = {f for q in design.QUESTIONS for f in q.families}
    assert owned == set(design.FAMILIES), f"families of no question: {sorted(set(design.FAMILIES) - owned)}"
    judged = {f for q in design.QUESTIONS if q.claims == "thesislib.claims:CLAIMS" for f in q.families}
    orphans = [c.text for c in CLAIMS if c.family not in judged]
    assert not orphans, f"claims of no question: {orphans}"


def test_the_lists_of_notebooks_are_derived_from_the_records():
    assert design.NOTEBOOKS == tuple(sorted(design.NOTEBOOKS)) and len(set(design.NOTEBOOKS)) == len(design.QUESTIONS)
    assert design.BEYOND == ("07_optimizers", "08_dataset_size", "09_shortcut")
    assert study.NOTEBOOKS is design.NOTEBOOKS and study.FAMILIES is design.FAMILIES
    assert design.question("06_correlation").title == design.TITLES["06_correlation"]
    with pytest.raises(ValueError, match="10_x.*expected one of 00_data"):
        design.question("10_x")
