import importlib
import pkgutil
import shutil

import pytest
import torch

from thesislib import data as D
from thesislib.data import decoded
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
    real = decoded.decode
    monkeypatch.setattr(decoded, "decode", lambda *a: calls.append(1) or real(*a))
    decoded.MEMORY.clear()
    first = D.load_arrays(synth_root, 48, cache_dir=tmp_path)
    assert len(calls) == 240  # 120 images + 120 maps, once each
    again = D.load_arrays(synth_root, 48, cache_dir=tmp_path)
    assert again is first and len(calls) == 240  # in memory
    decoded.MEMORY.clear()
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


def _params(n, *, w=1.0, h=1.0, cx=0.0, cy=0.0, angle=0.0, flip=False):
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return D.Augmentation(full(w), full(h), full(cx), full(cy), full(angle), torch.full((n,), flip))


def _normalise_float(x):
    return (x - torch.tensor(D.MEAN).view(3, 1, 1)) / torch.tensor(D.STD).view(3, 1, 1)


def test_identity_and_flip_parameters_give_the_normalised_image():
    imgs = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    # exact up to the float32 rounding of the sampling grid (~1e-5 of a grey level)
    assert torch.allclose(D.augment(imgs, _params(4)), D.normalize(imgs), atol=1e-4, rtol=0)
    assert torch.allclose(D.augment(imgs, _params(4, flip=True)), D.normalize(imgs).flip(-1), atol=1e-4, rtol=0)


def test_augment_matches_torchvision_crop_and_rotation():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    imgs = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    # a 32 x 32 crop at top=8, left=16 is half the side, centred at (0, -0.25) in grid coordinates
    ours = D.augment(imgs, _params(2, w=0.5, h=0.5, cx=0.0, cy=-0.25))
    ref = _normalise_float(TF.resized_crop(imgs.float() / 255, 8, 16, 32, 32, [64, 64], antialias=False))
    # the border row differs: torchvision clamps at the crop's edge, the grid reads the pixel beyond it
    assert torch.allclose(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)
    ours = D.augment(imgs, _params(2, angle=30.0))
    ref = _normalise_float(TF.rotate(imgs.float() / 255, 30, interpolation=InterpolationMode.BILINEAR))
    inside = TF.rotate(torch.ones(1, 1, 64, 64), 30)
    inside = -torch.nn.functional.max_pool2d(-inside, 5, 1, 2)[0, 0] > 0  # away from the black corners
    assert inside.float().mean() > 0.5
    assert torch.allclose(ours[..., inside], ref[..., inside], atol=1e-4)
    # rotated out of the crop: black, as RandomRotation fills it, though the image goes on beyond the crop
    corner = D.augment(imgs, _params(2, w=0.5, h=0.5, angle=30.0))[:, :, 0, 0]
    assert torch.allclose(corner, _normalise_float(torch.zeros(3, 1, 1)).flatten().expand_as(corner))


def test_augmentation_parameters_follow_the_protocol_ranges():
    p = D.Augmentation.draw(4000, torch.Generator().manual_seed(0))
    area, ratio = p.crop_w * p.crop_h, p.crop_w / p.crop_h
    assert area.min() >= D.CROP_SCALE[0] - 1e-6 and area.max() <= D.CROP_SCALE[1] + 1e-6
    assert ratio.min() >= D.CROP_RATIO[0] - 1e-6 and ratio.max() <= D.CROP_RATIO[1] + 1e-6
    assert p.crop_w.max() <= 1 and p.crop_h.max() <= 1
    assert (p.cx.abs() <= 1 - p.crop_w + 1e-6).all() and (p.cy.abs() <= 1 - p.crop_h + 1e-6).all()
    assert p.angle.abs().max() <= D.ROTATION and p.angle.std() > D.ROTATION / 2.5  # spread over the range
    assert 0.45 < p.flip.float().mean() < 0.55
    assert area.std() > 0.04 and p.cx.abs().max() > 0.05


def test_training_batches_are_seeded_augmented_and_cover_the_split(split):
    ds = split.train
    a = list(ds.batches(16, generator=torch.Generator().manual_seed(0)))
    b = list(ds.batches(16, generator=torch.Generator().manual_seed(0)))
    c = list(ds.batches(16, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert [len(y) for _, y in a] == [16] * (len(ds) // 16) + ([len(ds) % 16] if len(ds) % 16 else [])
    x, y = a[0]
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(ds.labels.tolist())
    # augmented: no image of the first batch equals an unaugmented image of the split
    plain, _, _ = ds.batch()
    assert (x[:, None] - plain[None]).abs().flatten(2).amax(-1).min() > 0.1


def test_evaluation_batches_are_exactly_batch(split):
    ds = split.test
    x = torch.cat([x for x, _ in ds.batches(7, generator=torch.Generator(), shuffle=False)])
    ref, labels, _ = ds.batch()
    assert torch.equal(x, ref)
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(3))
    x, y = next(ds.batches(5, generator=gen))
    ref, labels, _ = ds.batch(order[:5])
    assert torch.equal(x, ref) and torch.equal(y, labels)


def test_images_are_moved_to_the_device_once(split):
    ds = split.test
    first = ds.resident("cpu")
    assert ds.resident(None)[0] is first[0] and first[0].dtype == torch.uint8
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, found 0"):
        next(ds.batches(0, generator=torch.Generator()))
    with pytest.raises(ValueError, match="images: expected uint8"):
        D.augment(torch.zeros(1, 3, 8, 8), _params(1))


def test_describe_counts_per_split_and_what_the_protocol_counts(split):
    table = split.describe()
    assert list(table.columns) == [*CLASSES, "total", "blank maps", "maps of another aspect"]
    assert list(table.index) == list(D.SPLITS) and table["total"].sum() == 120
    assert table["blank maps"].sum() == 0 and table["maps of another aspect"].sum() == 0


def test_the_sample_loader_batches_a_split_without_torch_s_dataset_base(split):
    x, y, i = next(iter(split.test.loader(5, shuffle=False)))
    assert x.shape == (5, 3, 64, 64) and torch.equal(y, split.test.labels[:5]) and i.tolist() == list(range(5))


def test_check_reads_every_file_and_counts(synth_root):
    result = D.check(synth_root)
    assert sum(result.counts.values()) == 120 and not result.skipped and not result.blank_maps
    assert str(result).startswith(f"{synth_root}: LAG layout, 120 image/map pairs")


def test_the_fingerprint_follows_the_content_of_every_image_and_map(synth_root, tmp_path):
    """Changed data never passes for the data a run was trained on; the same bytes elsewhere do."""
    import os
    import shutil

    from thesislib.layout import CLASSES, IMAGE_DIR, MAP_DIR

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    base = D.fingerprint(D.scan(root))
    assert D.fingerprint(D.scan(synth_root)) == base
    for sub in (IMAGE_DIR, MAP_DIR):
        victim = sorted((root / CLASSES[1] / sub).iterdir())[0]
        original, st = victim.read_bytes(), victim.stat()
        victim.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one bit, same size
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # past the memo's timestamp granularity
        assert D.fingerprint(D.scan(root)) != base, sub
        victim.write_bytes(original)
    assert D.fingerprint(D.scan(root)) == base


def test_every_public_name_is_importable_from_the_package():
    """Each public name has one home module and the package re-exports it; names that need torch
    load on first use."""
    homes: dict[str, list] = {}
    for room in pkgutil.iter_modules(D.__path__):
        module = importlib.import_module(f"thesislib.data.{room.name}")
        for name in module.__all__:
            homes.setdefault(name, []).append(module)
    for name in D.__all__:
        assert len(homes.get(name, [])) == 1, name
        assert getattr(D, name) is getattr(homes[name][0], name), name
    assert set(D.__all__) <= set(dir(D))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        D.nope
