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


def _requirements():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_declared_dependency_is_installed_in_its_range_and_imports():
    from importlib import import_module, metadata

    provides: dict[str, list[str]] = {}  # distribution -> its top-level modules
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(_canonical(dist), []).append(module)
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = metadata.version(req.name)
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version}: outside {req.specifier}"
        modules = sorted(m for m in provides.get(_canonical(req.name), []) if not m.startswith("_"))
        assert modules, f"{req.name}: installs no importable module"
        # the module named like the distribution (yaml for pyyaml: the shortest) must import
        named = [m for m in modules if _canonical(m) == _canonical(req.name)] or sorted(modules, key=len)
        import_module(named[0])


def test_torch_range_admits_the_gpu_images_torch_and_grad_cam_is_spelled_once():
    """`make report ENV=system` uses the torch a GPU image has (2.4 or later); the wheels for it pin
    grad-cam as pyproject.toml does."""
    from packaging.requirements import Requirement

    from benchmarks.wheels import GRAD_CAM

    reqs = {_canonical(r.name): r for r in _requirements()}
    assert reqs["torch"].specifier.contains("2.4.0") and reqs["torchvision"].specifier.contains("0.19.0")
    assert Requirement(GRAD_CAM).specifier == reqs["grad-cam"].specifier


def test_the_console_script_runs_the_cli():
    import subprocess
    import sys
    from importlib import import_module, metadata

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        [ep] = metadata.entry_points(group="console_scripts", name=name)
        assert ep.value == target, f"{name}: installed as {ep.value}, pyproject.toml says {target} (reinstall)"
        module, attr = target.split(":")
        assert ep.load() is getattr(import_module(module), attr)
    exe = Path(sys.executable).parent / "thesislib"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=600)  # against a hang only
    assert r.returncode == 0 and all(cmd in r.stdout for cmd in ("synth", "check-data", "report")), r.stderr


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


def test_the_license_is_an_spdx_expression():
    """A TOML table there is deprecated by setuptools (a warning at every install, an error from 2027)."""
    from importlib import metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert metadata.metadata("thesislib")["License-Expression"] == "MIT"  # as installed (reinstall if not)
