import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from thesislib.layout import CLASSES, IMAGE_DIR, MAP_DIR
from thesislib.synth import SynthSpec, synthesize


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_cli_writes_lag_layout_and_is_byte_identical(tmp_path):
    """The issue's check: 120 images and 120 maps, both classes, identical bytes for the same seed."""
    cmd = [sys.executable, "-m", "thesislib", "synth", None, "--n", "120", "--size", "128", "--seed", "0", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        cmd[4] = str(out)
        subprocess.run(cmd, check=True, capture_output=True)
    images = [p for c in CLASSES for p in (a / c / IMAGE_DIR).iterdir()]
    maps = [p for c in CLASSES for p in (a / c / MAP_DIR).iterdir()]
    assert len(images) == 120 and len(maps) == 120
    assert all(any((a / c / IMAGE_DIR).iterdir()) for c in CLASSES)
    assert {p.name for p in images} == {p.name for p in maps}
    assert _digest(a) == _digest(b)
    photo = Image.open(images[0])
    assert photo.mode == "RGB" and photo.size == (128, 128)
    assert Image.open(maps[0]).mode == "L"


def test_other_seed_gives_other_images(tmp_path):
    synthesize(tmp_path / "a", SynthSpec(n=6, size=64, seed=0))
    synthesize(tmp_path / "b", SynthSpec(n=6, size=64, seed=1))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "b")


def test_ground_truth_records_class_evidence(tmp_path):
    synthesize(tmp_path / "d", SynthSpec(n=200, size=64, seed=3, label_noise=0.0))
    rows = list(csv.DictReader(open(tmp_path / "d" / "ground_truth.csv")))
    cdr = {c: [float(r["cup_to_disc"]) for r in rows if r["true_class"] == c] for c in CLASSES}
    assert min(cdr["suspicious_glaucoma"]) > max(cdr["non_glaucoma"])  # the evidence separates the classes
    assert all(r["folder"] == r["true_class"] for r in rows)
    share = len(cdr["suspicious_glaucoma"]) / len(rows)
    assert 0.25 < share < 0.45


def test_label_noise_flips_about_the_requested_share(tmp_path):
    synthesize(tmp_path / "d", SynthSpec(n=400, size=32, seed=0, label_noise=0.2))
    rows = list(csv.DictReader(open(tmp_path / "d" / "ground_truth.csv")))
    flipped = [r for r in rows if r["label_flipped"] == "True"]
    assert 0.13 < len(flipped) / len(rows) < 0.27
    assert all(r["folder"] != r["true_class"] for r in flipped)


def test_expert_map_sits_on_the_disc(tmp_path):
    synthesize(tmp_path / "d", SynthSpec(n=20, size=128, seed=0, map_size=128))
    for r in csv.DictReader(open(tmp_path / "d" / "ground_truth.csv")):
        att = np.asarray(Image.open(tmp_path / "d" / r["folder"] / MAP_DIR / r["file"]), float)
        y, x = np.unravel_index(att.argmax(), att.shape)
        px = lambda v: (float(v) + 1) / 2 * 128  # noqa: E731
        dist = np.hypot(x - px(r["disc_x"]), y - px(r["disc_y"]))
        assert dist < 2.5 * float(r["disc_r"]) * 64


def test_spurious_marker_follows_the_label(tmp_path):
    synthesize(tmp_path / "d", SynthSpec(n=200, size=64, seed=0, spurious=0.9, label_noise=0.0))
    rows = list(csv.DictReader(open(tmp_path / "d" / "ground_truth.csv")))
    rate = lambda c: np.mean([r["marker"] == "True" for r in rows if r["true_class"] == c])  # noqa: E731
    assert rate("suspicious_glaucoma") > 0.75 and rate("non_glaucoma") < 0.25
    off = tmp_path / "off"
    synthesize(off, SynthSpec(n=50, size=64, seed=0))
    assert not any(r["marker"] == "True" for r in csv.DictReader(open(off / "ground_truth.csv")))


def test_existing_folder_needs_force(tmp_path):
    synthesize(tmp_path / "d", SynthSpec(n=4, size=32))
    with pytest.raises(FileExistsError, match="--force"):
        synthesize(tmp_path / "d", SynthSpec(n=4, size=32))
    synthesize(tmp_path / "d", SynthSpec(n=6, size=32), force=True)
    assert len(list((tmp_path / "d").rglob("*.jpg"))) == 12


@pytest.mark.parametrize("kwargs, key", [(dict(n=1), "n"), (dict(size=8), "size"), (dict(label_noise=0.7), "label_noise"),
                                          (dict(spurious=0.2), "spurious")])
def test_bad_spec_names_the_field(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SynthSpec(**kwargs)
