"""The tables package: every name the notebooks call on it (and on claims, questions and
reliability) exists."""

import ast
import json
from pathlib import Path

from thesislib import claims as C
from thesislib import tables as T

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_every_name_the_notebooks_call_exists():
    from thesislib import questions, reliability

    modules = {"tables": T, "claims": C, "questions": questions, "reliability": reliability}
    called = set()
    for nb in NOTEBOOKS.glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.startswith("%"))
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                    called.add((node.value.id, node.attr))
    assert ("claims", "claims_markdown") in called and ("tables", "thesis_table") in called
    missing = [f"{m}.{a}" for m, a in sorted(called) if not hasattr(modules[m], a)]
    assert not missing
