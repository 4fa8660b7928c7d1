"""Expected failures end in one line on stderr, naming the problem; no traceback."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from thesislib.layout import CLASSES, MAP_DIR

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "thesislib", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def _one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("thesislib: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_missing_data_root(tmp_path):
    _one_line_error(_cli("check-data", tmp_path / "LAG"), "LAG: data root not found")
    _one_line_error(_cli("report", "--params", "params/smoke", "--data", tmp_path / "LAG"), "data root not found")


def test_folder_not_in_lag_layout_says_what_was_expected(tmp_path):
    (tmp_path / "photos").mkdir()
    _one_line_error(_cli("check-data", tmp_path), "non_glaucoma/image", "suspicious_glaucoma/attention_map", "photos")


def test_image_without_map(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    victim = sorted((root / CLASSES[0] / MAP_DIR).iterdir())[3]
    victim.unlink()
    _one_line_error(_cli("check-data", root), f"{victim.name}: image without its attention map")


def test_check_data_counts(synth_root):
    r = _cli("check-data", synth_root)
    assert r.returncode == 0 and "120 image/map pairs" in r.stdout


def test_synth_refuses_to_overwrite(tmp_path):
    assert _cli("synth", tmp_path / "d", "--n", "4", "--size", "32", "--quiet").returncode == 0
    _one_line_error(_cli("synth", tmp_path / "d", "--n", "4", "--size", "32", "--quiet"), "--force")
    _one_line_error(_cli("synth", tmp_path / "e", "--n", "4", "--size", "8"), "size")


def test_bad_params_key_is_named(tmp_path, capsys):
    from thesislib import cli, study

    params = tmp_path / "p"
    params.mkdir()
    path = params / "01_depth.yaml"
    path.write_text("seeds: [0]\nbase: {depht: 18}\nexperiments: {depth: [{}]}\n")
    report = ("report", "--params", params, "--notebooks", "01_depth", "--out", tmp_path / "r.html",
              "--workdir", tmp_path / "executed")
    r = _cli(*report)
    _one_line_error(r, str(path), "unknown key", "'depht'", "allowed keys")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "executed").exists()  # no notebook started
    with pytest.raises(study.ConfigError) as api:  # the Python API says the same
        p = study.load_params(path)
        study.grid(p["base"], p["experiments"], p["seeds"], source=str(path))
    assert str(api.value) in r.stderr, (str(api.value), r.stderr)
    path.write_text("a: [1,\n")
    assert cli.main(list(map(str, report))) == 2  # in this process: the same entry point, no second start-up
    err = capsys.readouterr().err
    assert err.startswith(f"thesislib: error: {path}: not valid YAML") and err.count("\n") == 1, err
    with pytest.raises(study.ConfigError, match="01_depth.yaml: not valid YAML"):
        study.load_params(path)


def test_bad_executor_fails_before_any_notebook_starts(tmp_path, capsys):
    """A misspelt executor in a scale's shared.yaml fails in one line naming that file, the key, what
    was found and what is expected, before any notebook (also one that takes no executor) starts."""
    from thesislib import cli, study

    params = tmp_path / "p"
    params.mkdir()
    (params / "shared.yaml").write_text("executor: {kind: slrum, partition: gpu}\nseeds: [0]\n")
    (params / "00_data.yaml").write_text("n_examples: 2\n")
    (params / "01_depth.yaml").write_text("base: {depth: 18}\nexperiments: {depth: [{}]}\n")
    expected = f"{params / 'shared.yaml'}: executor: kind: expected one of inline, local, slurm or null, found 'slrum'"
    for notebooks in (["00_data"], ["01_depth"]):
        assert cli.main(["report", "--params", str(params), "--notebooks", *notebooks, "--out", str(tmp_path / "r.html"),
                         "--workdir", str(tmp_path / "executed")]) == 2
        err = capsys.readouterr().err
        assert err == f"thesislib: error: {expected}\n", err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "executed").exists()  # no notebook started
    with pytest.raises(study.ConfigError) as api:  # the Python API says the same, where the params are loaded
        study.load_params(params / "01_depth.yaml")
    assert str(api.value) == expected
