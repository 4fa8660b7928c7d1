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


def test_bad_params_key_is_named(tmp_path):
    (tmp_path / "p").mkdir()
    for nb in ("01_depth",):
        (tmp_path / "p" / f"{nb}.yaml").write_text("seeds: [0]\nbase: {depht: 18}\nexperiments: {depth: [{}]}\n")
    from thesislib import study

    with pytest.raises(study.ConfigError, match="unknown key.*'depht'"):
        p = study.load_params(tmp_path / "p" / "01_depth.yaml")
        study.grid(p["base"], p["experiments"], p["seeds"], source="p/01_depth.yaml")
    (tmp_path / "p" / "broken.yaml").write_text("a: [1,\n")
    with pytest.raises(study.ConfigError, match="broken.yaml: not valid YAML"):
        study.load_params(tmp_path / "p" / "broken.yaml")
