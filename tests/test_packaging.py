"""The project's own promises: one dependency list, CI runs make test, notebooks without outputs."""

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _norm(req: str) -> str:
    return req.replace(" ", "").lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): _norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.update({_name(r): _norm(r) for r in dep["pip"] if not r.startswith("-e")})
        elif not dep.startswith(("python=", "pip")) or dep.startswith("pip:"):
            conda[_name(dep)] = _norm(dep)
    conda.pop("pip", None)
    mirrored = {**conda, **pip}
    assert mirrored == wanted, (set(mirrored.items()) ^ set(wanted.items()))


def test_torch_range_admits_the_local_wheels():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.4" in deps and "torchvision>=0.19" in deps


def test_ci_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "set -e" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make report" in readme and "make test" in readme


def test_notebooks_are_committed_without_outputs():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, nb.name


def test_reference_tables_ship_with_the_package():
    from importlib import resources

    text = resources.files("thesislib").joinpath("reference/reference_tables.csv").read_text()
    assert text.startswith("table,experiment") and len(text.splitlines()) == 340
