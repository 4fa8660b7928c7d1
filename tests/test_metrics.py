import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu
from sklearn.metrics import confusion_matrix as sk_confusion, f1_score as sk_f1, roc_auc_score
from torchvision.ops import box_iou as tv_box_iou, masks_to_boxes

from thesislib import metrics as M
from thesislib.metrics import kernels


def _soft_maps(n: int, seed: int, dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 24, 24, generator=g, dtype=dtype) ** (1 + 4 * torch.rand(n, 1, 1, generator=g, dtype=dtype))
    blob = torch.exp(-((torch.arange(24) - 12.0) ** 2)[None, :, None] / 30 - ((torch.arange(24) - 9.0) ** 2)[None, None, :] / 20)
    x[: n // 4] = 0.6 * x[: n // 4] + blob.to(dtype)
    x[n // 4: n // 2] = 0.5 + 1e-3 * x[n // 4: n // 2]  # near-constant
    x[n // 2: n // 2 + 10] = torch.round(x[n // 2: n // 2 + 10] * 5) / 5  # few levels, ties at bin edges
    x[-1] = 0.25  # constant
    return x


@pytest.fixture(params=["compiled", "torch"])
def path(request, monkeypatch):
    """Run a test on the compiled CPU kernels (numba) and again on the torch code."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    monkeypatch.setattr(kernels, "USE_NUMBA", request.param == "compiled")
    assert kernels.compiled(torch.zeros(1, 1, 1)) == (request.param == "compiled")
    return request.param


def _hard_maps(dtype) -> tuple[torch.Tensor, list[bool]]:
    """Maps whose bins are hardest to get right, and whether numpy.histogram rejects each (range too
    small for 256 bins): values on numpy's own bin edges and one ULP beside them, over several
    ranges (in the last two, numpy's -1 and +1 corrections of the computed bin both fire, in float32
    and in float64); a range of a few ULPs; -0.0 beside 0.0; constant maps of either zero."""
    dt = np.float32 if dtype == torch.float32 else np.float64
    rng = np.random.default_rng(0)
    maps, rejected = [], []
    for lo, hi in ((0.0, 1.0), (-3.7, 12.1), (1e-3, 1e-3 + 1e-5), (-1.0, 0.0),
                   (3.132702350616455, 33.09212875366211), (1.4971968329330378, 10.694102550453369)):
        edges = np.linspace(dt(lo), dt(hi), 257, dtype=dt)  # numpy.histogram's edges for this range
        near = np.concatenate([edges, np.nextafter(edges, dt(-np.inf)), np.nextafter(edges, dt(np.inf))])
        m = rng.choice(np.clip(near, edges[0], edges[-1]), 24 * 24)
        m[:2] = edges[0], edges[-1]
        maps.append(m)
        rejected.append(False)
    maps.append(dt(0.5) + rng.integers(0, 100, 24 * 24).astype(dt) * np.spacing(dt(0.5)))  # a few ULPs
    rejected.append(True)
    maps.append(rng.choice(np.array([-0.0, 0.0, 1.0], dt), 24 * 24))
    rejected.append(False)
    for zeros in ([0.0, -0.0], [-0.0], [0.0]):
        maps.append(rng.choice(np.array(zeros, dt), 24 * 24))
        rejected.append(False)
    return torch.from_numpy(np.stack(maps).reshape(-1, 24, 24)), rejected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_otsu_masks_identical_to_scikit_image(dtype, path):
    hard, rejected = _hard_maps(dtype)
    maps = torch.cat([_soft_maps(200, seed=0, dtype=dtype), hard])
    rejected = [False] * 200 + rejected
    t = M.otsu_threshold(maps)
    ours = M.binarize(maps)
    assert t.dtype == dtype and ours.dtype == torch.bool
    for i in range(len(maps)):
        if rejected[i]:
            with pytest.raises(ValueError, match="Too many bins"):
                threshold_otsu(maps[i].numpy())
            assert float(t[i]) == float(maps[i].max()) and not ours[i].any()  # the maximum: empty foreground
            continue
        ref = threshold_otsu(maps[i].numpy())
        assert float(t[i]) == float(ref), i
        assert np.array_equal(ours[i].numpy(), maps[i].numpy() > ref), i
    assert M.is_empty(ours[199:200]).item()  # a constant map has no foreground


def test_compiled_and_torch_code_give_the_same_values(monkeypatch):
    pytest.importorskip("numba")
    for dtype in (torch.float32, torch.float64):
        maps = torch.cat([_soft_maps(64, seed=1, dtype=dtype), _hard_maps(dtype)[0]])
        maps[5, 3, 3], maps[6, 0, 1], maps[7, 4, 4] = float("nan"), float("inf"), -float("inf")
        expert = maps.roll(1, 0)
        runs = []
        for compiled in (True, False):
            monkeypatch.setattr(kernels, "USE_NUMBA", compiled)
            a, b = M.binarize(maps), M.binarize(expert)
            runs.append(dict(t=M.otsu_threshold(maps), nbins=M.otsu_threshold(maps, nbins=7), a=a, b=b,
                             boxes=M.boxes(a), area=M.iou_area(a, b), bbox=M.iou_bbox(a, b),
                             together=M.otsu_ious(maps, expert)))
        for key, value in runs[0].items():
            torch.testing.assert_close(value, runs[1][key], rtol=0, atol=0, equal_nan=True, msg=f"{dtype} {key}")


def test_otsu_ious_is_the_masks_metrics_in_one_call(path):
    for dtype in (torch.float32, torch.float64):
        heat = torch.cat([_soft_maps(40, seed=3, dtype=dtype), _hard_maps(dtype)[0]])
        heat[2, 1, 1] = float("nan")
        expert = heat.roll(5, 0)
        h, m = M.binarize(heat), M.binarize(expert)
        want = {"iou_area": M.iou_area(h, m), "iou_bbox": M.iou_bbox(h, m), "heatmap_empty": M.is_empty(h),
                "map_empty": M.is_empty(m)}
        got = M.otsu_ious(heat, expert)
        assert list(got) == list(want)
        assert all(torch.equal(got[k], want[k]) for k in want), dtype
        assert got["heatmap_empty"].any() and got["map_empty"].any() and (got["iou_bbox"] > got["iou_area"]).any()
    mixed = M.otsu_ious(heat.float(), expert)  # each map binarised in its own dtype
    assert torch.equal(mixed["iou_area"], M.iou_area(M.binarize(heat.float()), m))
    with pytest.raises(ValueError, match=r"otsu_ious: expert: expected the shape .* found \(51, 24, 5\)"):
        M.otsu_ious(heat, expert[:, :, :5])


def test_otsu_of_a_map_with_nan_or_inf_is_nan(path):
    x = torch.rand(5, 6, 6, generator=torch.Generator().manual_seed(0))
    x[0, 1, 1], x[1, 2, 2], x[2, 0, 0] = float("nan"), float("inf"), -float("inf")
    x[3] = float("inf")  # constant: its value, as scikit-image
    t = M.otsu_threshold(x)
    assert t[:3].isnan().all() and t[3] == float("inf") and t[4] == threshold_otsu(x[4].numpy())
    assert M.is_empty(M.binarize(x))[:4].all()  # x > NaN holds nowhere
    for i in range(3):
        with pytest.raises(ValueError, match="not finite"):
            threshold_otsu(x[i].numpy())


def test_otsu_on_synthetic_expert_maps(split, path):
    _, _, maps = split.test.batch()
    masks = M.binarize(maps)
    for i in range(len(maps)):
        assert np.array_equal(masks[i].numpy(), maps[i].numpy() > threshold_otsu(maps[i].numpy()))
    share = masks.flatten(1).float().mean(1)
    assert (share > 0.01).all() and (share < 0.4).all()  # a compact region, not the whole photo


def test_otsu_rejects_integer_maps_and_bad_arguments():
    with pytest.raises(TypeError, match="floating"):
        M.otsu_threshold(torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"nbins: expected an int >= 2, found 1"):
        M.otsu_threshold(torch.rand(1, 4, 4), nbins=1)
    with pytest.raises(ValueError, match=r"at least one pixel, found shape \(2, 0, 4\)"):
        M.binarize(torch.rand(2, 0, 4))


def test_without_numba_the_torch_code_runs(monkeypatch):
    """A machine without numba (a GPU image may lack it) gets the torch code, with the same values."""
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    kernels.numba_ready.cache_clear()
    try:
        assert not kernels.compiled(torch.zeros(1, 1, 1))
        maps = _soft_maps(16, seed=2, dtype=torch.float32)
        ref = torch.tensor([threshold_otsu(m.numpy()) for m in maps])
        assert torch.equal(M.binarize(maps), maps > ref[:, None, None])
    finally:
        kernels.numba_ready.cache_clear()


def _two_masks():
    a = torch.zeros(1, 4, 4, dtype=torch.bool)
    b = torch.zeros(1, 4, 4, dtype=torch.bool)
    a[0, :, :2] = True  # left half: 8 px
    b[0, :, 1:3] = True  # middle columns: 8 px, overlap 4
    return a, b


def test_iou_area_hand_case(path):
    a, b = _two_masks()
    assert M.iou_area(a, b).item() == pytest.approx(4 / 12)  # 1/3
    assert M.iou_area(a, a).item() == 1.0


def test_boxes_and_box_iou_hand_case_and_torchvision(path):
    a, b = _two_masks()
    assert M.boxes(a).tolist() == [[0, 0, 2, 4]] and M.boxes(b).tolist() == [[1, 0, 3, 4]]
    assert M.iou_bbox(a, b).item() == pytest.approx(1 / 3)
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(30, 16, 16, generator=g) > 0.97
    masks[:, 3, 5] = True
    ref = masks_to_boxes(masks).long()
    ref[:, 2:] += 1  # torchvision's boxes are inclusive; ours are half-open pixel boxes
    assert torch.equal(M.boxes(masks), ref)
    other = torch.rand(30, 16, 16, generator=g) > 0.95
    other[:, 10, 10] = True
    expected = tv_box_iou(M.boxes(masks).float(), M.boxes(other).float()).diagonal()
    assert torch.allclose(M.iou_bbox(masks, other), expected)


def test_empty_foreground_scores_zero_not_nan(path):
    empty = torch.zeros(2, 4, 4, dtype=torch.bool)
    full = torch.ones(2, 4, 4, dtype=torch.bool)
    for f in (M.iou_area, M.iou_bbox):
        assert f(empty, full).tolist() == [0.0, 0.0] and f(empty, empty).tolist() == [0.0, 0.0]
    assert M.boxes(empty).tolist() == [[0, 0, 0, 0]] * 2
    assert M.relevance_mass(torch.zeros(2, 4, 4), full).tolist() == [0.0, 0.0]
    assert M.pointing_game(torch.zeros(2, 4, 4), full).tolist() == [False, False]


def test_pointing_game_and_relevance_mass():
    heat = torch.zeros(2, 5, 5)
    heat[0, 1, 1] = 1.0
    heat[1, 4, 4] = 1.0
    heat[1, 0, 0] = 0.5
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask[:, :2, :2] = True
    assert M.pointing_game(heat, mask).tolist() == [True, False]
    assert M.pointing_game(heat, mask, tolerance=3).tolist() == [True, True]
    assert M.relevance_mass(heat, mask).tolist() == pytest.approx([1.0, 0.5 / 1.5])


def _model_and_inputs(tiny_model, images):
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    cams = torch.rand(len(images), 64, 64, generator=g)
    targets = torch.tensor([0, 1] * (len(images) // 2))
    return model, cams, targets



def test_centroid_distance_matches_scipy_center_of_mass():
    """The distance between scipy's centres of mass of the map and of the mask, over the diagonal;
    no mass, no centre: 1 (the worst)."""
    from scipy.ndimage import center_of_mass

    from thesislib.metrics.localisation import centroid_distance

    g = torch.Generator().manual_seed(0)
    heat = torch.rand(5, 24, 40, generator=g) ** 4
    mask = torch.rand(5, 24, 40, generator=g) > 0.8
    heat[3] = 0
    mask[4] = False
    got = centroid_distance(heat, mask)
    assert got.dtype == torch.float32 and got.shape == (5,)
    for i in range(3):
        a = np.array(center_of_mass(heat[i].double().numpy()))
        b = np.array(center_of_mass(mask[i].numpy()))
        assert got[i].item() == pytest.approx(np.linalg.norm(a - b) / np.hypot(24, 40), abs=1e-6)
    assert got[3] == 1 and got[4] == 1
    record = M.REGISTRY["centroid_distance"]
    assert not record.on({}) and record.on({"metric_sets": ["geometry"]})  # off by default
    with pytest.raises(ValueError, match="centroid_distance: mask: expected the shape"):
        centroid_distance(heat, mask[:, :10])

def test_drop_and_increase_match_pytorch_grad_cam(tiny_model, images):
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, cams, targets = _model_and_inputs(tiny_model, images)
    with torch.no_grad():  # a model whose confidence moves both ways under masking
        model.fc.bias.copy_(torch.tensor([0.3, -0.3]))
    y, o = M.confidences(model, images, cams, targets)
    t = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
    ref_drop = DropInConfidence()(images, cams.numpy(), t, model)
    ref_inc = IncreaseInConfidence()(images, cams.numpy(), t, model)
    assert np.allclose(M.drop_in_confidence(y, o).numpy(), ref_drop, atol=1e-6)
    assert np.array_equal(M.increase_in_confidence(y, o).numpy(), ref_inc)
    assert 0 < ref_inc.sum() < len(images)


def test_average_drop_is_the_relative_drop():
    y = torch.tensor([0.8, 0.5, 0.9, 0.6])
    o = torch.tensor([0.2, 0.6, 0.9, 0.3])
    assert M.average_drop(y, o).tolist() == pytest.approx([0.75, 0.0, 0.0, 0.5])
    assert M.increase_in_confidence(y, o).tolist() == [0.0, 1.0, 0.0, 0.0]
    assert M.average_drop(y, o).mean().item() * 100 == pytest.approx(31.25)


def test_deletion_and_insertion(tiny_model, images):
    model, cams, targets = _model_and_inputs(tiny_model, images)
    dele, ins = M.deletion_insertion(model, images, cams, targets, steps=8)
    assert dele.shape == ins.shape == (8,)
    assert ((0 <= dele) & (dele <= 1) & (0 <= ins) & (ins <= 1)).all()

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.stack([torch.zeros(len(x)), torch.full((len(x),), np.log(3.0))], 1) + self.w

    d, i = M.deletion_insertion(Constant(), images, cams, torch.ones(8, dtype=torch.long), steps=4)
    assert torch.allclose(d, torch.full((8,), 0.75)) and torch.allclose(i, torch.full((8,), 0.75))


def test_classification_metrics_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (300,), generator=g)
    scores = torch.rand(300, generator=g) * 0.6 + 0.4 * labels
    scores[:50] = torch.round(scores[:50] * 4) / 4  # ties
    pred = (scores > 0.5).long()
    assert M.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    assert M.f1_score(pred, labels) == pytest.approx(sk_f1(labels.numpy(), pred.numpy()))
    assert M.confusion_matrix(pred, labels).numpy().tolist() == sk_confusion(labels.numpy(), pred.numpy()).tolist()
    assert M.accuracy(pred, labels) == pytest.approx((pred == labels).double().mean().item())
    with pytest.raises(ValueError, match="both classes"):
        M.roc_auc(scores, torch.ones(300, dtype=torch.long))
    assert M.f1_score(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)) == 0.0


def test_masking_conventions_match_a_direct_computation(tiny_model):
    from torchvision.transforms.v2 import functional as TF

    from thesislib.data import MEAN, STD, normalize

    model = tiny_model()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([0.3, -0.3]))
    g = torch.Generator().manual_seed(4)
    raw = torch.randint(0, 256, (6, 3, 64, 64), generator=g, dtype=torch.uint8)
    images = normalize(raw)
    maps = torch.rand(6, 64, 64, generator=g)
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    prob = lambda x: F.softmax(model(x), 1)[torch.arange(6), targets]  # noqa: E731
    with torch.no_grad():
        y_ref = prob(images)
        tensor_ref = prob(images * maps[:, None])
        black_ref = prob(TF.normalize(raw.float() / 255 * maps[:, None], MEAN, STD))
    y = M.target_confidence(model, images, targets, batch_size=4)
    o_tensor = M.masked_confidence(model, images, maps, targets, convention="tensor", batch_size=4)
    o_black = M.masked_confidence(model, images, maps, targets, convention="black")
    assert torch.allclose(y, y_ref, atol=1e-6)
    assert torch.allclose(o_tensor, tensor_ref, atol=1e-6)
    assert torch.allclose(o_black, black_ref, atol=1e-5)
    assert not torch.allclose(o_tensor, o_black, atol=1e-3)
    # masked-out pixels: the data mean (0 after normalisation) under "tensor", black under "black"
    zero = torch.zeros(1, 64, 64)
    assert M.masked_inputs(images[:1], zero, "tensor").abs().max() == 0
    black = (torch.zeros(3) - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(M.masked_inputs(images[:1], zero, "black")[0, :, 5, 5], black)
    # the compatible one-call form
    y2, o2 = M.confidences(model, images, maps, targets, convention="black")
    assert torch.equal(y2, y) and torch.equal(o2, o_black)
    with pytest.raises(ValueError, match="convention"):
        M.masked_confidence(model, images, maps, targets, convention="grey")
    with pytest.raises(ValueError, match="maps"):
        M.masked_confidence(model, images, maps[:, :10], targets)


# -- threshold-free localisation: Quantus's definitions transcribed as the reference ---------------

def _quantus_rank_accuracy(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """quantus/metrics/localisation/relevance_rank_accuracy.py, RelevanceRankAccuracy.evaluate_batch."""
    batch_size = a.shape[0]
    s = s.astype(bool)
    a, s = a.reshape(batch_size, -1), s.reshape(batch_size, -1)
    n_features = a.shape[-1]
    s_sums = s.sum(-1)
    a_sorted = np.argsort(-a, axis=-1)
    s_mask = np.array([[True] * k + [False] * (n_features - k) for k in s_sums])
    choice = s[np.arange(batch_size)[:, None], a_sorted]
    with np.errstate(invalid="ignore"):
        out = (choice * s_mask).sum(-1) / s_mask.sum(-1)
    out[s_sums == 0] = np.nan
    return out


def _quantus_top_k(a: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """quantus/metrics/localisation/top_k_intersection.py, TopKIntersection.evaluate_batch (no concept influence)."""
    batch_size = a.shape[0]
    s = s.astype(bool)
    a, s = a.reshape(batch_size, -1), s.reshape(batch_size, -1)
    a_sorted = np.argsort(-a, axis=-1)
    out = s[np.arange(batch_size)[:, None], a_sorted[:, :k]].mean(-1)
    out[s.sum(-1) == 0] = np.nan
    return out


def _pair(n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    heat = torch.rand(n, size, size, generator=g)
    mask = torch.rand(n, size, size, generator=g) > 0.7
    mask[-1] = False
    return heat, mask


def test_rank_accuracy_and_top_k_are_quantus_without_ties():
    heat, mask = _pair()
    ref = _quantus_rank_accuracy(heat.numpy(), mask.numpy())
    ours = M.relevance_rank_accuracy(heat, mask)
    assert np.allclose(ours[:-1].numpy(), ref[:-1], atol=1e-6)
    assert np.isnan(ref[-1]) and ours[-1] == 0.0  # an empty mask scores 0 here, flagged as map_empty
    assert np.allclose(M.top_k_intersection(heat, mask, 20)[:-1].numpy(), _quantus_top_k(heat.numpy(), mask.numpy(), 20)[:-1])
    # the share form: Quantus's default k = 1000 of a 224 x 224 input is 2 % of the pixels
    assert torch.equal(M.top_k_intersection(heat, mask), M.top_k_intersection(heat, mask, round(M.TOP_K * 256)))
    with pytest.raises(ValueError, match="k"):
        M.top_k_intersection(heat, mask, 0)


def test_rank_accuracy_shares_tied_places_as_the_mean_over_tie_orders():
    heat, mask = _pair(n=2, size=6, seed=2)
    heat, mask = (heat[:1] * 3).floor() / 3, mask[:1]  # three values, many ties
    k = int(mask.sum())
    # every order of the ties, drawn many times: the mean hit rate
    g = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(3000):
        perm = torch.randperm(36, generator=g)
        a, s = heat.flatten()[perm], mask.flatten()[perm]
        rates.append(s[torch.argsort(-a, stable=True)[:k]].float().mean().item())
    assert M.relevance_rank_accuracy(heat, mask).item() == pytest.approx(np.mean(rates), abs=0.01)


def test_pixel_auroc_is_scikit_learns_per_image():
    from sklearn.metrics import roc_auc_score

    heat, mask = _pair()
    heat[1] = (heat[1] * 4).round() / 4  # ties
    heat[2] = 0.0  # constant
    ours = M.pixel_auroc(heat, mask)
    ref = [roc_auc_score(mask[i].flatten().numpy(), heat[i].flatten().numpy()) for i in range(len(heat) - 1)]
    assert np.allclose(ours[:-1].numpy(), ref, atol=1e-6)
    assert ours[2] == 0.5 and ours[-1] == 0.5  # constant map; empty mask (undefined): chance


def test_iou_curve_binarises_at_each_threshold_and_share():
    heat, mask = _pair(n=5, size=32)
    heat[1] = (heat[1] * 5).round() / 5  # ties at the k-th value
    heat[2] = 0.0
    curve = M.iou_curve(heat, mask)
    assert list(curve) == list(M.curve_columns())
    for name, (rule, level) in M.curve_columns().items():
        fg = heat > level if rule == "fixed" else M.top_share_mask(heat, level)
        assert torch.equal(curve[name], M.iou_area(fg, mask)), name
    top = M.top_share_mask(heat, 0.1)
    assert int(top[0].sum()) == round(0.1 * 32 * 32) and not top[2].any()  # never a pixel of value 0
    assert int(top[1].sum()) >= round(0.1 * 32 * 32)  # ties at the k-th value are all kept
    together = M.threshold_free(heat, mask)
    one_by_one = {"relevance_rank_accuracy": M.relevance_rank_accuracy(heat, mask),
                  "top_k_intersection": M.top_k_intersection(heat, mask), "pixel_auroc": M.pixel_auroc(heat, mask),
                  **curve}
    assert list(together) == list(one_by_one)
    assert all(torch.equal(together[k], one_by_one[k]) for k in one_by_one)


# -- ROAD: pytorch-grad-cam's own classes as the reference --------------------------------------

def test_road_is_pytorch_grad_cams_road(tiny_model):
    from pytorch_grad_cam.metrics.road import ROADCombined, ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = tiny_model()
    with torch.no_grad():
        model.fc.weight.normal_(generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 24, 24, generator=g)
    cams = torch.rand(2, 24, 24, generator=g)
    targets = torch.tensor([0, 1])
    t = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
    # the library draws its noise from torch's global generator: the same seed, the same noise
    torch.manual_seed(5)
    combined = ROADCombined(percentiles=[30, 80])(x, cams.numpy(), t, model)
    ours = M.road(model, x, cams, targets, [30, 80], generator=torch.Generator().manual_seed(5))
    assert np.allclose(ours["road"].numpy(), combined, atol=1e-6)
    torch.manual_seed(6)
    morf = ROADMostRelevantFirst(50)(x, cams.numpy(), t, model)
    torch.manual_seed(6)
    lerf = ROADLeastRelevantFirst(50)(x, cams.numpy(), t, model)
    ours_morf = M.road(model, x, cams, targets, [50], generator=torch.Generator().manual_seed(6))
    assert np.allclose(ours_morf["road_lerf"].numpy(), lerf, atol=1e-6)  # LeRF draws first, as in ROADCombined
    assert not np.allclose(morf, lerf)
    with pytest.raises(ValueError, match="percentiles"):
        M.road(model, x, cams, targets, [100])


def test_road_imputation_is_the_librarys_linear_system():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 10, generator=g)
    keep = torch.rand(2, 12, 10, generator=g) > 0.4
    keep[1] = False  # nothing kept: the library's system is singular; here the mean colour
    ours = M.road_impute(x, keep, noise=0.0)
    ref = NoisyLinearImputer(noise=0.0)(x[0], keep[0].float())
    assert torch.allclose(ours[0], ref, atol=1e-6)
    assert torch.equal(ours[0][:, keep[0]], x[0][:, keep[0]])  # kept pixels stay
    assert torch.equal(ours[1], torch.zeros_like(ours[1]))


def test_energy_in_box_is_the_heat_inside_the_expert_masks_box():
    """Against a per-image loop over scikit-image's region bounding box; on request only."""
    from skimage.measure import regionprops

    from thesislib.metrics.localisation import energy_in_box

    g = torch.Generator().manual_seed(1)
    heat = torch.rand(4, 20, 30, generator=g) ** 3
    mask = torch.zeros(4, 20, 30, dtype=torch.bool)
    mask[0, 3:9, 5:12] = True
    mask[1, 0, 0] = mask[1, 19, 29] = True  # two pixels: the box is the whole image
    mask[2, 10:20, 25:30] = True
    heat[3] = 0
    mask[3, 2:4, 2:4] = True
    got = energy_in_box(heat, mask)
    for i in range(3):
        r0, c0, r1, c1 = regionprops(mask[i].numpy().astype(np.uint8))[0].bbox
        want = heat[i, r0:r1, c0:c1].double().sum() / heat[i].double().sum()
        assert got[i].item() == pytest.approx(want.item(), abs=1e-6)
    assert got[1] == pytest.approx(1.0) and got[3] == 0
    record = M.REGISTRY["energy_in_box"]
    assert record.higher and not record.on({}) and record.on({"metric_sets": ["geometry"]})
