"""The spurious cue: how data sets with it are named, where the marker sits (and that the training
augmentation keeps it), how it follows the filed label, and the marker measures of 09_shortcut."""

import csv
import math

import pytest
import torch

from thesislib.data import Augmentation, DataError, augment, denormalize, load_arrays, synth_name, synth_spec
from thesislib.shortcut import CORNER, marker_corners, marker_mass
from thesislib.synth import MARKER_INSET, MARKER_SIDE, SynthSpec, synthesize


@pytest.fixture(scope="module")
def cue_root(tmp_path_factory):
    """40 photos at 64 px with the marker on every image filed as glaucoma, and label noise."""
    root = tmp_path_factory.mktemp("cue") / "lag"
    synthesize(root, SynthSpec(n=40, size=64, seed=0, spurious=1.0, label_noise=0.3))
    return root


def _truth(root):
    return {f"{r['folder']}/{r['file']}": r for r in csv.DictReader(open(root / "ground_truth.csv"))}


def test_spurious_sets_are_named_and_read_back():
    spec = synth_spec("synthetic-n240-s64-spurious0.95")
    assert (spec.n, spec.size, spec.spurious) == (240, 64, 0.95)
    assert synth_name(spec) == "synthetic-n240-s64-seed0-spurious0.95"
    assert synth_spec(synth_name(spec)) == spec
    assert synth_spec("synthetic-n240-s64").spurious is None


@pytest.mark.parametrize("name, expected", [
    ("synthetic-n240-s64-spurious0.3", r"spurious: expected None or a value in \[0.5, 1\], found 0.3"),
    ("synthetic-n240-s64-spurious", r"cannot read 'spurious'.*e.g. spurious0.95"),
    ("synthetic-n240-s64-spurious0.9.5", r"cannot read '0.9.5' as the value of spurious; expected a number"),
    ("synthetic-n240-s64-spurious0.9-spurious0.8", r"spurious is given twice"),
    ("synthetic-n240.5-s64", r"cannot read '240.5' as the value of n; expected a whole number"),
])
def test_bad_spurious_names_are_named(name, expected):
    with pytest.raises(DataError, match=expected):
        synth_spec(name)


def test_the_marker_follows_the_filed_label(cue_root):
    rows = list(_truth(cue_root).values())
    flipped = [r for r in rows if r["label_flipped"] == "True"]
    assert flipped  # the filed label differs from the true class on some images
    assert all((r["marker"] == "True") == (r["folder"] == "suspicious_glaucoma") for r in rows)


def test_marker_corners_finds_every_marker_and_nothing_else(cue_root):
    truth = _truth(cue_root)
    for size in (64, 48):  # at the photo's size and resized
        arrays = load_arrays(cue_root, size)
        found = marker_corners(arrays.images.float() / 255)
        assert ((found >= 0).tolist() == [truth[n]["marker"] == "True" for n in arrays.names])


def test_the_training_augmentation_keeps_a_marker_at_the_inset():
    size = 64  # the generator's geometry: a square of MARKER_SIDE inset MARKER_INSET from a corner
    s, inset = max(2, round(size * MARKER_SIDE)), round(size * MARKER_INSET)
    kept = {}
    for where, at in (("inset", inset), ("corner", 2)):
        images = torch.zeros(400, 3, size, size, dtype=torch.uint8)
        images[:, :, at:at + s, at:at + s] = 230
        out = denormalize(augment(images, Augmentation.draw(400, torch.Generator().manual_seed(0))))
        kept[where] = ((out.amin(1) > 0.45).flatten(1).sum(1) >= s * s / 2).float().mean().item()
    assert kept["inset"] > 0.99 and kept["corner"] < 0.5, kept


def test_marker_mass():
    maps = torch.zeros(4, 10, 10)
    maps[0, :3, :3] = 1  # all in the top-left corner square (side 0.3)
    maps[1] = 1  # spread evenly
    maps[3, :3, :3] = 1
    corners = torch.tensor([0, 3, 1, -1])
    mass = marker_mass(maps, corners)
    assert mass[0] == 1 and math.isclose(mass[1], CORNER ** 2, rel_tol=1e-6)
    assert mass[2] == 0  # an all-zero map puts nothing anywhere
    assert math.isnan(mass[3])  # no marker, no value
    assert marker_mass(maps[:1], torch.tensor([3]))[0] == 0  # another corner
    with pytest.raises(ValueError, match=r"heatmaps, corners: expected \[N, H, W\] and \[N\]"):
        marker_mass(maps, corners[:2])


def _scores():
    """cross_evaluate-like rows: a clean and a shortcut model, three seeds, tested with the cue on."""
    import pandas as pd

    rows = []
    for setting, iou, ad, mass in (("no cue", 30.0, 20.0, 8.0), ("cue 1", 10.0, 5.0, 50.0)):
        for seed in range(3):
            rows.append(dict(family="shortcut", setting=setting, seed=seed, run_id=f"{setting}{seed}", learned=True,
                             test_set="cue on", method="gradcam", method_label="Grad-CAM", kind="explainer",
                             accuracy=95.0, iou_area=iou + seed, average_drop=ad + seed,
                             marker_mass=mass + seed))
    return pd.DataFrame(rows)


def test_what_catches_it_reads_each_metric_in_its_own_direction():
    from thesislib.shortcut import aggregate, summary_table, what_catches_it

    long = aggregate(_scores())
    assert set(long["setting"]) == {"no cue → cue on", "cue 1 → cue on"}
    verdicts = what_catches_it(long, clean="no cue", cue="cue 1", tested="cue on", method="Grad-CAM",
                               metrics=["accuracy", "iou_area", "average_drop", "marker_mass"]).frame
    got = dict(zip(verdicts.index, verdicts["shortcut model worse (95 %)"]))
    assert got == {"↑ Acc": "no (equivalent)", "↑ IoU (A)": "yes", "↓ AD": "no (rates it better)",
                   "↓ Mass in the marker corner": "yes"}
    table = summary_table(long, ["marker_mass"], ["Grad-CAM"]).frame
    assert table.loc[("↓ Mass in the marker corner", "Grad-CAM"), ("cue 1", "cue on")].startswith("51.0 ± 1.0")


def test_describe_says_that_the_data_varies(synth_root, cue_root, tmp_path):
    from thesislib import study

    base = dict(depth=18, width=0.0625, stem="compact", input_size=64, epochs=1, batch_size=8)
    g = study.grid(base, {"shortcut": [{"data": str(synth_root)}, {"data": str(cue_root)}]}, [0], runs=str(tmp_path))
    text = g.describe().data
    assert "**Varied:** data." in text and "data lag, lag." in text  # two folders of one name, two data sets
    one = g.where(setting=g.settings[0]).describe().data
    assert "**Varied:** nothing." in one
