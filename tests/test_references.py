import pytest
import torch
import torch.nn.functional as F

from thesislib import metrics as M
from thesislib.data import denormalize
from thesislib.explain import normalize_maps
from thesislib.references import (AT_GRID, GAUSSIAN_SIGMA, LABELS, REFERENCES, REGISTRY, cam_grid_of, gaussian_map,
                                  mean_expert_map, reference_maps)


@pytest.fixture(scope="module")
def batch(split):
    rows = torch.arange(12)
    x, _, maps = split.test.batch(rows)
    return x, maps, [split.test.names[i] for i in rows.tolist()]


def _ceiling_iou(x, maps, grid):
    heat = reference_maps("ceiling", x, maps, grid=grid)
    return M.iou_area(M.binarize(heat), M.binarize(maps)).mean().item()


def test_ceiling_of_a_perfect_map_is_below_one_and_rises_with_the_grid(batch):
    x, maps, _ = batch
    ious = [_ceiling_iou(x, maps, g) for g in (4, 7, 14)]
    assert ious[0] < ious[1] < ious[2] < 0.99
    # at the input's own resolution nothing is lost: the ceiling is the (scaled) expert map itself
    full = reference_maps("ceiling", x, maps, grid=x.shape[-1])
    assert torch.allclose(full, normalize_maps(maps), atol=1e-6)


def test_ceiling_upsamples_like_a_cam(batch):
    x, maps, _ = batch
    small = F.adaptive_avg_pool2d(maps[:, None], 4)
    expected = normalize_maps(F.interpolate(small, size=maps.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    assert torch.equal(reference_maps("ceiling", x, maps, grid=4), expected)
    with pytest.raises(ValueError, match="grid"):
        reference_maps("ceiling", x, maps)


def test_sobel_matches_scikit_image(batch):
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    x, maps, _ = batch
    ours = reference_maps("sobel", x, maps)
    ref = torch.stack([torch.from_numpy(sobel(rgb2gray(denormalize(img).permute(1, 2, 0).numpy())))
                       for img in x]).float()
    assert torch.allclose(ours, normalize_maps(ref), atol=1e-5)
    assert ours.flatten(1).amax(1).eq(1).all()


def test_random_is_reproducible_per_image(batch):
    x, maps, names = batch
    a = reference_maps("random", x, maps, index=names)
    # the same images in another batch, in another order, give the same maps
    perm = torch.tensor([5, 2, 9])
    b = reference_maps("random", x[perm], maps[perm], index=[names[i] for i in perm.tolist()])
    assert torch.equal(a[perm], b)
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, reference_maps("random", x, maps, index=names, seed=1))
    with pytest.raises(ValueError, match="index"):
        reference_maps("random", x, maps)


def test_noise_is_uniform_noise_on_the_cam_grid_upsampled_like_a_cam(batch):
    x, maps, names = batch
    a = reference_maps("noise", x, maps, grid=4, index=names)
    # every map is a bilinear (align_corners=False) upsampling of some 4x4 field, like a CAM: the
    # least-squares fit through the upsampling of the 16 unit fields leaves nothing over; the pixel
    # noise leaves almost everything
    unit = torch.eye(16).view(16, 4, 4)
    basis = F.interpolate(unit[:, None], size=maps.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    basis = basis.flatten(1).T.double()  # [H*W, 16]

    def residual(m):
        target = m.flatten(1).T.double()
        fit = torch.linalg.lstsq(basis, target).solution
        return (basis @ fit - target).abs().max().item()

    assert residual(a) < 1e-5
    assert residual(reference_maps("random", x, maps, index=names)) > 0.5
    assert a.flatten(1).amax(1).eq(1).all() and a.flatten(1).amin(1).eq(0).all()
    # the same image gets the same noise in any batch; other images, seeds and grids get other noise
    perm = torch.tensor([5, 2, 9])
    b = reference_maps("noise", x[perm], maps[perm], grid=4, index=[names[i] for i in perm.tolist()])
    assert torch.equal(a[perm], b)
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, reference_maps("noise", x, maps, grid=4, index=names, seed=1))
    assert residual(reference_maps("noise", x, maps, grid=7, index=names)) > 1e-3
    with pytest.raises(ValueError, match="grid"):
        reference_maps("noise", x, maps, index=names)
    with pytest.raises(ValueError, match="index: the 'noise' reference"):
        reference_maps("noise", x, maps, grid=4)


def test_the_two_noises_are_labelled_as_what_they_are():
    assert LABELS["random"] == "Pixel noise (uniform)" and LABELS["noise"] == "Noise at CAM grid (uniform)"
    assert set(LABELS) == set(REFERENCES) and "noise" in REFERENCES


def test_prior_is_the_mean_expert_map(split, batch):
    x, maps, _ = batch
    prior = mean_expert_map(split.train)
    assert torch.allclose(prior, split.train.batch()[2].mean(0), atol=1e-6)
    got = reference_maps("prior", x, maps, prior=prior)
    assert torch.allclose(got, normalize_maps(prior[None]).expand_as(got))
    with pytest.raises(ValueError, match="prior"):
        reference_maps("prior", x, maps)
    with pytest.raises(ValueError, match="prior"):
        reference_maps("prior", x, maps, prior=prior[:10])


def test_gaussian_is_centred_with_the_stated_sigma(batch):
    x, maps, _ = batch
    g = reference_maps("gaussian", x, maps)
    assert torch.equal(g[0], g[-1]) and torch.equal(g[0], g[0].flip(0)) and torch.equal(g[0], g[0].T)
    raw = gaussian_map((64, 64))
    # centre (31.5, 31.5), sigma = GAUSSIAN_SIGMA x side: row 31 lies half a pixel off the centre
    s = GAUSSIAN_SIGMA * 64
    col = torch.arange(64, dtype=torch.float32)
    expected = torch.exp(-((col - 31.5) ** 2 + 0.25) / (2 * s * s))
    assert torch.allclose(raw[31], expected, atol=1e-6)


def test_every_reference_is_a_map_in_unit_range(split, batch):
    x, maps, names = batch
    prior = mean_expert_map(split.train)
    for name in REFERENCES:
        m = reference_maps(name, x, maps, prior=prior, grid=4, index=names)
        assert m.shape == maps.shape and m.dtype == torch.float32
        assert float(m.min()) >= 0 and float(m.max()) <= 1 and not torch.isnan(m).any()


@pytest.mark.parametrize("record", REGISTRY.values(), ids=list(REGISTRY))
def test_each_record_asks_for_what_it_declares(split, batch, record):
    """A reference's map depends on exactly the inputs its record declares, and drawn without one
    of them it is refused, naming that input."""
    x, maps, names = batch
    prior = mean_expert_map(split.train)
    given = dict(prior=prior, grid=4, index=names)
    other = dict(prior=prior.flip(0), grid=2, index=[f"other {n}" for n in names])
    for need, arg in (("prior", "prior"), ("grid", "grid"), ("keys", "index")):
        changed = reference_maps(record.key, x, maps, **{**given, arg: other[arg]})
        depends = not torch.equal(changed, reference_maps(record.key, x, maps, **given))
        assert depends == getattr(record, need), f"{record.key}: depends on {arg}: {depends}"
        if getattr(record, need):
            with pytest.raises(ValueError, match=f"^{arg}: the {record.key!r} reference needs"):
                reference_maps(record.key, x, maps, **{**given, arg: None})
    assert LABELS[record.key] == record.label and (record.key in AT_GRID) == record.grid


def test_bad_arguments_are_named(batch):
    x, maps, _ = batch
    with pytest.raises(ValueError, match="'nope'"):
        reference_maps("nope", x, maps)
    with pytest.raises(ValueError, match="expert"):
        reference_maps("gaussian", x, maps[:, :10])


def test_cam_grid_of_reads_layer4(tiny_model):
    model = tiny_model().train()
    assert cam_grid_of(model, 64) == model.features(torch.zeros(1, 3, 64, 64)).shape[-1] == 4
    assert cam_grid_of(model, 128) == 8
    assert model.training
    with pytest.raises(TypeError, match="layer4"):
        cam_grid_of(torch.nn.Linear(2, 2), 64)
