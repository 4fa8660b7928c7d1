import shutil

import pytest
import torch

from thesislib import data as D
from thesislib.layout import CLASSES, IMAGE_DIR, MAP_DIR


def test_scan_pairs_images_and_maps(synth_root):
    records = D.scan(synth_root)
    assert len(records) == 120
    assert {r.label for r in records} == {0, 1}
    for r in records:
        assert r.image.name == r.map.name
        assert r.image.parent.name == IMAGE_DIR and r.map.parent.name == MAP_DIR
        assert r.image.parent.parent.name == CLASSES[r.label]


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(D.DataError, match="data root not found"):
        D.scan(tmp_path / "nope")


def test_wrong_layout_lists_expected_folders(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(D.DataError) as err:
        D.scan(tmp_path)
    msg = str(err.value)
    assert "non_glaucoma/image" in msg and "suspicious_glaucoma/attention_map" in msg and "images" in msg


def test_image_without_map_is_named(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    victim = sorted((root / CLASSES[1] / MAP_DIR).iterdir())[0]
    victim.unlink()
    with pytest.raises(D.DataError, match=f"{victim.name}: image without its attention map"):
        D.scan(root)


def test_stratified_split_is_seeded_disjoint_and_complete():
    labels = torch.tensor([0] * 70 + [1] * 30)
    a = D.stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    b = D.stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    c = D.stratified_split(labels, (0.6, 0.2, 0.2), seed=1)
    assert all(torch.equal(a[s], b[s]) for s in D.SPLITS)
    assert not torch.equal(a["train"], c["train"])
    union = torch.cat([a[s] for s in D.SPLITS])
    assert sorted(union.tolist()) == list(range(100))
    for s, n in (("train", 60), ("val", 20), ("test", 20)):
        assert len(a[s]) == n
        assert labels[a[s]].float().mean().item() == pytest.approx(0.3, abs=0.02)  # stratified


def test_thesis_fractions_mimic_table_4_1():
    labels = torch.tensor([0] * 3175 + [1] * 3192)  # the thesis's 6,367 images
    parts = D.stratified_split(labels, D.THESIS_FRACTIONS, seed=0)
    assert abs(len(parts["train"]) - 4793) <= 2 and abs(len(parts["val"]) - 159) <= 2


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.3, 0.3), (1.0, 0.0, 0.0)])
def test_bad_fractions_are_rejected(fractions):
    with pytest.raises(ValueError, match="fractions"):
        D.stratified_split(torch.zeros(10, dtype=torch.long), fractions, seed=0)


def test_arrays_are_decoded_once_and_cached_on_disk(synth_root, tmp_path, monkeypatch):
    calls = []
    real = D._decode
    monkeypatch.setattr(D, "_decode", lambda *a: calls.append(1) or real(*a))
    D._MEMORY.clear()
    first = D.load_arrays(synth_root, 48, cache_dir=tmp_path)
    assert len(calls) == 240  # 120 images + 120 maps, once each
    again = D.load_arrays(synth_root, 48, cache_dir=tmp_path)
    assert again is first and len(calls) == 240  # in memory
    D._MEMORY.clear()
    from_disk = D.load_arrays(synth_root, 48, cache_dir=tmp_path)
    assert len(calls) == 240  # from the disk cache
    assert torch.equal(from_disk.images, first.images) and torch.equal(from_disk.maps, first.maps)
    assert first.images.shape == (120, 3, 48, 48) and first.images.dtype == torch.uint8
    assert first.maps.shape == (120, 48, 48)


def test_training_items_are_augmented_and_evaluation_items_are_not(split):
    torch.manual_seed(0)
    a, _, _ = split.train[0]
    b, _, _ = split.train[0]
    assert a.shape == (3, 64, 64) and not torch.equal(a, b)
    x1, _, _ = split.test[0]
    x2, _, _ = split.test[0]
    assert torch.equal(x1, x2)
    imgs, labels, maps = split.test.batch(slice(0, 4))
    assert torch.allclose(imgs[0], x1)
    assert maps.shape == (4, 64, 64) and 0 <= maps.min() and maps.max() <= 1


def test_normalize_round_trips(split):
    raw = split.test.arrays.images[:2]
    back = D.denormalize(D.normalize(raw))
    assert torch.allclose(back, raw.float() / 255, atol=1e-5)


def test_synthetic_data_names(tmp_path, monkeypatch):
    spec = D.synth_spec("synthetic-n40-s32-seed3-label_noise0.1")
    assert (spec.n, spec.size, spec.seed, spec.label_noise) == (40, 32, 3, 0.1)
    assert D.synth_name(spec) == "synthetic-n40-s32-seed3-label_noise0.1"
    with pytest.raises(D.DataError, match="cannot read 'x3'"):
        D.synth_spec("synthetic-x3")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("THESISLIB_DATA", raising=False)
    root = D.resolve_root("synthetic-n12-s32")
    assert root == tmp_path / "data" / "synthetic-n12-s32-seed0" and len(D.scan(root)) == 12
    monkeypatch.setenv("THESISLIB_DATA", str(root))
    assert D.resolve_root(None) == root
