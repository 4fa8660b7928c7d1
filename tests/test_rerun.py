"""Rerunning with changed params: `thesislib report --set`, `thesislib params`, and the report's provenance."""

import hashlib
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
import yaml

from thesislib import cli, report, study
from thesislib.study.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEPTH = ROOT / "params" / "default" / "01_depth.yaml"


def _keys(name: str) -> list[str]:
    return report.notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb")


# -- --set over the merged params ---------------------------------------------------------------

def test_set_changes_the_merged_params_and_nothing_else(capsys):
    expected = study.load_params(DEPTH, keys=_keys("01_depth"))  # shared.yaml merged under the file
    assert expected["seeds"] != [0, 1, 2, 3, 4] and expected["base"]["epochs"] != 12
    expected["seeds"] = [0, 1, 2, 3, 4]
    expected["base"]["epochs"] = 12
    sets = ["seeds=[0,1,2,3,4]", "base.epochs=12"]
    assert report.params_for(DEPTH, sets) == expected
    assert cli.main(["params", str(DEPTH), *(x for s in sets for x in ("--set", s))]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == expected  # what papermill -f would read
    assert cli.main(["params", str(DEPTH)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == study.load_params(DEPTH, keys=_keys("01_depth"))


def test_sets_apply_in_order_and_a_dotted_key_starts_from_the_notebooks_value():
    params = {"seeds": [0], "base": {"epochs": 1, "depth": 18}, "executor": None}
    defaults = {"extras": {"eval_images": 4, "deletion_steps": 4}}
    keys = ["seeds", "base", "executor", "extras"]
    changed = report.apply_sets(params, ["base.epochs=3", "base.epochs=5", "extras.eval_images=2",
                                         "executor.kind=local", "base={depth: 34}"],
                                keys=keys, defaults=defaults)
    assert changed == {"seeds": [0], "base": {"depth": 34}, "executor": {"kind": "local"},
                       "extras": {"eval_images": 2, "deletion_steps": 4}}
    assert params == {"seeds": [0], "base": {"epochs": 1, "depth": 18}, "executor": None}  # not modified
    assert defaults == {"extras": {"eval_images": 4, "deletion_steps": 4}}


@pytest.mark.parametrize("arg, needles", [
    ("sedes=[0]", ["--set sedes=[0]", "unknown key 'sedes'", "allowed keys: data, runs, executor, seeds, base"]),
    ("seeds.first=1", ["--set seeds.first=1", "seeds is [0, 1, 2] (list)", "expected a mapping to set 'first'"]),
    ("base.epochs.x=1", ["--set base.epochs.x=1", "base.epochs is 10 (int)", "expected a mapping"]),
    ("base.depht=18", ["--set base.depht=18", "unknown key(s) 'depht'", "allowed keys"]),
    ("base.epochs=0", ["--set base.epochs=0", "epochs", "0"]),
    ("seeds", ["--set seeds: expected KEY=VALUE"]),
    ("base..epochs=1", ["--set base..epochs=1: expected KEY=VALUE"]),
    ("seeds=[0,", ["--set seeds=[0,: VALUE '[0,' is not valid YAML"]),
])
def test_a_bad_set_is_one_line_naming_the_argument(arg, needles, capsys):
    assert cli.main(["params", str(DEPTH), "--set", arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thesislib: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_bad_file_is_named_before_any_set(tmp_path):
    (tmp_path / "01_depth.yaml").write_text("seeds: [0]\nbase: {depht: 18}\nexperiments: {depth: [{}]}\n")
    with pytest.raises(ConfigError) as err:
        report.params_for(tmp_path / "01_depth.yaml", ["base.epochs=2"])
    assert str(err.value).startswith(f"{tmp_path / '01_depth.yaml'}: ") and "'depht'" in str(err.value)


def test_a_bad_set_stops_the_report_before_any_notebook(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("THESISLIB_RUNS", str(tmp_path / "runs"))
    for arg, needle in (("sedes=[0]", "no notebook of this report (07_optimizers) takes it"),
                        ("base.epochs=0", "--set base.epochs=0 (over ")):
        assert cli.main(["report", "--params", "params/smoke", "--notebooks", "07_optimizers", "--set", arg,
                         "--out", str(tmp_path / "r.html"), "--workdir", str(tmp_path / "executed")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "executed").exists()
    assert not (tmp_path / "runs").exists()


def test_the_report_is_given_the_command_and_the_sets(monkeypatch):
    seen = {}
    monkeypatch.setattr(report, "build_report", lambda **kw: seen.update(kw) or True)
    assert cli.main(["report", "--params", "params/smoke", "--set", "seeds=[0, 1]", "--set", "base.epochs=2"]) == 0
    assert seen["sets"] == ["seeds=[0, 1]", "base.epochs=2"]
    assert seen["command"] == "thesislib report --params params/smoke --set 'seeds=[0, 1]' --set base.epochs=2"


def test_correlation_reads_every_notebooks_params_with_the_sets(tmp_path):
    folder = report._study_params(ROOT / "params" / "smoke", ["seeds=[0,1,2]", "base.epochs=3"], tmp_path)
    grid = study.study_grid(folder)
    assert sorted(grid.table["seed"].unique()) == [0, 1, 2]
    assert {c.epochs for c in grid.table["config"]} == {3}
    assert study.load_params(folder / "06_correlation.yaml") == study.load_params(
        ROOT / "params" / "smoke" / "06_correlation.yaml", keys=_keys("06_correlation"))  # no seeds, no base: unchanged


# -- a rerun reuses the cache -------------------------------------------------------------------

def _done(runs: Path) -> dict[str, tuple[int, str]]:
    """Each finished run's folder name -> (done.json's mtime in ns, its sha256)."""
    return {p.parent.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in runs.glob("*/done.json")}


def test_a_rerun_with_another_seed_trains_only_that_seeds_runs(tmp_path):
    env = {**os.environ, "THESISLIB_RUNS": str(tmp_path / "runs")}

    def run(*sets):
        args = [sys.executable, "-m", "thesislib", "report", "--params", "params/smoke", "--notebooks", "07_optimizers",
                "--out", str(tmp_path / "reports" / "index.html"), "--workdir", str(tmp_path / "executed")]
        r = subprocess.run([*args, *(x for s in sets for x in ("--set", s))], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]

    run()
    first = _done(tmp_path / "runs")
    assert len(first) == 3 * 2  # three optimisers x the smoke scale's two seeds
    run("seeds=[0,1,2]")
    second = _done(tmp_path / "runs")
    assert {k: second[k] for k in first} == first  # every cached run reused, untouched
    new = set(second) - set(first)
    configs = [json.loads((tmp_path / "runs" / k / "config.json").read_text())["config"] for k in new]
    assert sorted(c["optimizer"] for c in configs) == ["adam", "rmsprop", "sgd"]
    assert [c["seed"] for c in configs] == [2, 2, 2]  # only the new seed's runs trained
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "--set seeds=[0,1,2]" in page and "href=\"../executed/07_optimizers.ipynb\"" in page


def test_the_report_links_the_params_each_notebook_ran_with_merged(tmp_path):
    path = ROOT / "params" / "smoke" / "01_depth.yaml"
    ran = report.params_for(path, ["seeds=[0]"])
    out = report.ran_params(tmp_path, path, ran, ["seeds=[0]"], root=ROOT)
    text = out.read_text()
    assert out == tmp_path / "01_depth.yaml" and yaml.safe_load(text) == ran
    assert text.splitlines()[0] == ("# as it ran: params/study/01_depth.yaml < params/smoke/shared.yaml < "
                                    "params/smoke/01_depth.yaml, --set seeds=[0]")  # no path of the machine
    assert ran["experiments"] and ran["base"]["methods"]  # from the study design, not in the scale's own file


# -- provenance in the header -------------------------------------------------------------------

def _outcomes(tmp_path: Path) -> list[dict]:
    executed = tmp_path / "runs" / "notebooks" / "07_optimizers.ipynb"
    executed.parent.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Optimisers")])
    nbformat.write(nb, executed)
    return [dict(name="07_optimizers", ok=True, failure=None, seconds=3.0, path=executed,
                 params=tmp_path / "params" / "smoke" / "07_optimizers.yaml")]


HEADER = dict(params="params/smoke", data="synthetic-n240-s64", commit="0123abcd", date="2024-01-01 00:00 UTC",
              machine="a machine", wall=60.0)


def test_header_names_versions_dirty_tree_and_the_exact_command(tmp_path):
    header = dict(HEADER, dirty=True, command="thesislib report --set 'seeds=[0, 1]' --data 'my data'",
                  packages={"torch": "2.5.1", "torchvision": "0.20.1", "grad-cam": "1.5.4", "numpy": "2.1.0"})
    page = report.stitch(_outcomes(tmp_path), header)
    assert "<th>git commit</th><td>0123abcd <b>(dirty:" in page
    assert "<th>command</th><td><code>thesislib report --set 'seeds=[0, 1]' --data 'my data'</code>" in page
    assert "<th>packages</th><td>torch 2.5.1, torchvision 0.20.1, grad-cam 1.5.4, numpy 2.1.0</td>" in page
    clean = report.stitch(_outcomes(tmp_path / "b"), dict(HEADER, dirty=False))
    assert "<th>git commit</th><td>0123abcd (clean)</td>" in clean and "(dirty:" not in clean


def test_each_section_links_its_executed_notebook_and_params_from_the_reports_folder(tmp_path):
    page = report.stitch(_outcomes(tmp_path), HEADER, links_from=tmp_path / "reports")
    executed, params = "../runs/notebooks/07_optimizers.ipynb", "../params/smoke/07_optimizers.yaml"
    assert page.count(f'href="{executed}"') == 2 and page.count(f'href="{params}"') == 2  # contents and section
    assert (tmp_path / "reports" / executed).resolve() == tmp_path / "runs" / "notebooks" / "07_optimizers.ipynb"


def test_package_versions_are_the_installed_ones():
    versions = report.package_versions()
    assert list(versions) == ["torch", "torchvision", "grad-cam", "numpy"]
    assert versions["grad-cam"] == metadata.version("grad-cam") and versions["numpy"] == metadata.version("numpy")
    assert report.package_versions(("no-such-distribution-x",)) == {"no-such-distribution-x": "not installed"}


def test_dirty_means_any_change_untracked_files_included(tmp_path):
    assert report.git_tree(tmp_path) == dict(commit="unknown", dirty=None)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert report.git_tree(tmp_path) == dict(commit=head, dirty=False)
    (tmp_path / "new.txt").write_text("untracked")
    assert report.git_tree(tmp_path) == dict(commit=head, dirty=True)
    (tmp_path / "new.txt").unlink()
    (tmp_path / "a.txt").write_text("changed")
    assert report.git_tree(tmp_path) == dict(commit=head, dirty=True)
