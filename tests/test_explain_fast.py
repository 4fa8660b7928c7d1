"""FastScoreCAM, explain_all's one pass, CAM on any linear head, EigenCAM's sign, duplicate groups."""

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from thesislib.explain import (CLASS_AGNOSTIC, METHODS, Explainer, FastScoreCAM, cam_raw, duplicate_groups,
                               explain, explain_all, normalize_maps)


class _Dead(torch.nn.Module):
    """Zeroes every other channel, as dead ReLU units do."""

    def forward(self, x):
        keep = torch.zeros(x.shape[1], device=x.device)
        keep[::2] = 1
        return x * keep[None, :, None, None]


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(4, 3, 32, 32)


def _trained(tiny_model, x, steps: int = 5):
    """A tiny model after a few Adam steps on a fixed labelling, so its classes differ."""
    model = tiny_model(norm="batch")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    y = torch.tensor([0, 1, 1, 0])
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _stock(model, x, targets):
    cam = ScoreCAM(model=model, target_layers=[model.layer4])
    cam.batch_size = 64
    with contextlib.redirect_stderr(io.StringIO()):
        return cam(x, targets=targets)


@pytest.mark.parametrize("kind", ["trained", "dead"])
def test_fast_score_cam_reproduces_the_library(tiny_model, x, kind):
    model = _trained(tiny_model, x)
    if kind == "dead":
        model.layer4 = torch.nn.Sequential(model.layer4, _Dead())
    targets = [ClassifierOutputTarget(c) for c in (0, 1, 0, 1)]
    ours = FastScoreCAM(model=model, target_layers=[model.layer4])(x, targets=targets)
    ref = _stock(model, x, targets)
    assert ref.max() > 0
    assert np.abs(ours - ref).max() <= 1e-4
    # any other target goes through the per-row path, with the same result
    soft = [ClassifierOutputSoftmaxTarget(c) for c in (0, 1, 0, 1)]
    ours = FastScoreCAM(model=model, target_layers=[model.layer4])(x, targets=soft)
    assert np.abs(ours - _stock(model, x, soft)).max() <= 1e-4


def test_fast_score_cam_forwards_each_dead_mask_once_in_bounded_chunks(tiny_model, x):
    model = tiny_model()
    model.layer4 = torch.nn.Sequential(model.layer4, _Dead())
    feats = model.features(x)
    live = int((feats.flatten(2).amax(2) > feats.flatten(2).amin(2)).sum())
    n, c = feats.shape[:2]
    assert live <= n * c // 2
    sizes = []
    hook = model.conv1.register_forward_hook(lambda m, inputs, out: sizes.append(len(inputs[0])))
    cam = FastScoreCAM(model=model, target_layers=[model.layer4], memory=5 * x[0].numel() * 4)
    cam(x, targets=[ClassifierOutputTarget(0)] * n)
    hook.remove()
    # the first pass, one shared zero image, then the live masks in chunks of at most 5
    assert sizes[:2] == [n, 1] and sum(sizes[2:]) == live and max(sizes[2:]) == 5
    # the masked passes ran without the activation hooks: only the first pass was recorded
    assert len(cam.activations_and_grads.activations) == 1


def test_fast_score_cam_in_bf16_autocast_stays_close(tiny_model, x):
    """The CUDA branch (bf16 autocast) exercised on the CPU: close to float32, not equal."""
    model = _trained(tiny_model, x)
    targets = [ClassifierOutputTarget(c) for c in (0, 1, 0, 1)]
    f32 = FastScoreCAM(model=model, target_layers=[model.layer4])(x, targets=targets)
    bf16 = FastScoreCAM(model=model, target_layers=[model.layer4], autocast=True)(x, targets=targets)
    assert np.abs(f32 - bf16).max() < 0.1
    with pytest.raises(ValueError, match="autocast: expected"):
        FastScoreCAM(model=model, target_layers=[model.layer4], autocast="bf16")


def test_explainer_uses_fast_score_cam_and_keeps_the_stock_one(tiny_model, x):
    model = _trained(tiny_model, x)
    fast, stock = Explainer(model, "scorecam"), Explainer(model, "scorecam", fast=False)
    assert isinstance(fast._cam, FastScoreCAM) and not isinstance(stock._cam, FastScoreCAM)
    assert "fast=False" in repr(stock)
    assert (fast(x) - stock(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("precode_k", [None, 256])
def test_explain_all_equals_each_explainer_alone(tiny_model, images, precode_k):
    model = tiny_model(precode_k=precode_k).train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    timings = {}
    together = explain_all(model, images, METHODS, timings=timings)
    assert list(together) == list(METHODS) and set(timings) == set(METHODS)
    assert model.training and torch.equal(first.grad, torch.ones_like(first))
    assert all(p.grad is None for p in list(model.parameters())[1:])
    assert not model.layer4._forward_hooks and not model.layer4._backward_hooks
    for method in METHODS:
        alone = explain(model, images, method)
        assert (together[method] - alone).abs().max() <= 1e-5, method
    targets = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    some = explain_all(model, images, ["hirescam", "cam"], targets=targets)
    assert list(some) == ["hirescam", "cam"]
    assert torch.allclose(some["cam"], explain(model, images, "cam", targets=targets), atol=1e-5)


def test_explain_all_charges_the_shared_pass_to_each_gradient_method(tiny_model, images):
    timings = {}
    explain_all(tiny_model(), images, ["gradcam", "layercam"], timings=timings)
    alone = {}
    explain_all(tiny_model(), images, ["gradcam"], timings=alone)
    # each method shows what it would cost alone, not a share of the pass
    assert timings["layercam"] > 0.5 * alone["gradcam"]


def test_explain_all_leaves_out_what_does_not_apply_and_names_bad_methods(tiny_model, images):
    model = tiny_model()
    model.fc = torch.nn.Sequential(torch.nn.Linear(model.fc.in_features, 2))
    assert list(explain_all(model, images, ["cam", "gradcam"])) == ["gradcam"]
    with pytest.raises(ValueError, match="methods: expected some of"):
        explain_all(model, images, ["grad-cam"])
    with pytest.raises(ValueError, match="targets: expected one per image"):
        explain_all(tiny_model(), images, ["gradcam"], targets=torch.tensor([0]))


def _relu_cam(model, images, targets):
    raw = F.relu(cam_raw(model, images, targets))
    return normalize_maps(F.interpolate(raw[:, None], size=images.shape[-2:], mode="bilinear",
                                        align_corners=False)[:, 0])


def test_relu_cam_equals_grad_cam_on_a_precode_head(images):
    from thesislib.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", width=1 / 16, stem="compact", precode_k=256).eval()
    targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    grad = explain(model, images, "gradcam", targets=targets)
    assert grad.abs().amax() > 0
    assert (_relu_cam(model, images, targets) - grad).abs().max() <= 1e-5
    # the encoder's std half takes no part: W_eff uses its first k rows only
    with torch.no_grad():
        model.precode.encoder.weight[model.precode.k:] += 1.0
    assert (_relu_cam(model, images, targets) - explain(model, images, "gradcam", targets=targets)).abs().max() <= 1e-5


def test_cam_on_torchvision_resnet_equals_grad_cam(images):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    grad = explain(model, images, "gradcam", targets=targets)
    assert grad.abs().amax() > 0
    assert (_relu_cam(model, images, targets) - grad).abs().max() <= 1e-5
    assert explain(model, images, "cam").shape == (8, 64, 64)


def test_eigencam_correlates_with_the_mean_activation_and_ignores_the_class(tiny_model, images):
    model = tiny_model()
    feats = model.features(images).detach()
    proj = torch.from_numpy(get_2d_projection(feats.numpy()))
    mean = feats.mean(1)
    cov = ((proj - proj.mean((1, 2), keepdim=True)) * (mean - mean.mean((1, 2), keepdim=True))).sum((1, 2))
    assert (cov < 0).any() and (cov > 0).any()  # the library's sign varies: the test can tell
    oriented = F.relu(proj * torch.where(cov < 0, -1.0, 1.0)[:, None, None])
    expected = normalize_maps(F.interpolate(oriented[:, None], size=(64, 64), mode="bilinear",
                                            align_corners=False)[:, 0])
    ours = explain(model, images, "eigencam")
    assert (ours - expected).abs().max() <= 1e-5
    assert CLASS_AGNOSTIC == frozenset({"eigencam"})
    assert torch.equal(ours, explain(model, images, "eigencam", targets=1 - model(images).argmax(1)))


def test_duplicate_groups_on_a_gap_linear_head(tiny_model, images):
    """On GAP + linear, Grad-CAM, XGrad-CAM and HiResCAM coincide; CAM keeps its negative evidence
    (no ReLU), so it joins them only where that is zero; the others differ."""
    model = tiny_model()
    maps = explain_all(model, images, METHODS)
    assert duplicate_groups(maps) == [["gradcam", "xgradcam", "hirescam"]]
    assert duplicate_groups({"a": maps["cam"], "b": _relu_cam(model, images, model(images).argmax(1)),
                             "c": maps["gradcam"]}) == [["b", "c"]]
    assert duplicate_groups({"a": maps["gradcam"]}) == []
    with pytest.raises(ValueError, match=r"maps\['b'\]: expected shape"):
        duplicate_groups({"a": maps["gradcam"], "b": maps["gradcam"][:2]})


# -- Score-CAM as its authors wrote it ----------------------------------------------------------

def _paper_score_cam(model, x, targets, layer):
    """The Score-CAM paper's equations (Wang et al. 2020), image by image and channel by channel:
    H_k = s(Up(A_k)) with s the min-max scaling (a constant channel is skipped), weight
    a_k = softmax(f(x * H_k))[target], map = ReLU(sum_k a_k A_k), upsampled and scaled as every map."""
    maps = []
    with torch.no_grad():
        for i in range(len(x)):
            acts = []
            hook = layer.register_forward_hook(lambda m, inputs, out: acts.append(out))
            model(x[i:i + 1])
            hook.remove()
            a = acts[0][0]
            masks, channels = [], []
            for k in range(a.shape[0]):
                up = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                if up.max() == up.min():
                    continue
                masks.append((up - up.min()) / (up.max() - up.min()))
                channels.append(k)
            weights = F.softmax(model(x[i] * torch.stack(masks)[:, None]), dim=1)[:, targets[i]]  # one batch per image
            cam = F.relu((weights[:, None, None] * a[channels]).sum(0))
            maps.append(F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0])
    return normalize_maps(torch.stack(maps))


@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_paper_score_cam_is_the_papers_equations(tiny_model, x, layer):
    model = _trained(tiny_model, x)
    targets = torch.tensor([0, 1, 0, 1])
    ours = explain(model, x, "scorecam-paper", targets=targets, layer=layer)
    ref = _paper_score_cam(model, x, targets, getattr(model, layer))
    assert ref.amax() > 0
    assert (ours - ref).abs().max() <= 1e-5
    # and it is not the library's weighting (a softmax across channels of raw logits)
    library = explain(model, x, "scorecam", targets=targets, layer=layer)
    assert (ours - library).abs().max() > 1e-3
    with pytest.raises(ValueError, match="batched only"):
        Explainer(model, "scorecam-paper", fast=False)


def test_paper_score_cam_skips_dead_channels_without_a_forward(tiny_model, x):
    model = _trained(tiny_model, x)
    model.layer4 = torch.nn.Sequential(model.layer4, _Dead())
    sizes = []
    hook = model.conv1.register_forward_hook(lambda m, inputs, out: sizes.append(len(inputs[0])))
    ours = explain(model, x, "scorecam-paper", targets=torch.tensor([0, 1, 0, 1]))
    hook.remove()
    feats = model.features(x)
    live = int((feats.flatten(2).amax(2) > feats.flatten(2).amin(2)).sum())
    assert sum(sizes) == len(x) + live  # the unmasked pass and the live masks: no zero image
    ref = _paper_score_cam(model, x, torch.tensor([0, 1, 0, 1]), model.layer4)
    assert (ours - ref).abs().max() <= 1e-5


# -- another layer ----------------------------------------------------------------------------

def test_gradient_methods_at_layer3_are_the_librarys(tiny_model, images):
    from pytorch_grad_cam import GradCAM, LayerCAM

    from thesislib.explain import LAYERS, NotApplicable, grid_at

    model = tiny_model()
    targets = torch.tensor([1, 0] * 4)
    t = [ClassifierOutputTarget(int(c)) for c in targets]
    maps = explain_all(model, images, ["cam", "gradcam", "layercam"], targets=targets, layer="layer3")
    assert list(maps) == ["gradcam", "layercam"]  # CAM is defined at layer4 only
    for method, cls in (("gradcam", GradCAM), ("layercam", LayerCAM)):
        ref = normalize_maps(torch.from_numpy(cls(model=model, target_layers=[model.layer3])(images, targets=t)))
        assert (maps[method] - ref).abs().max() <= 1e-5, method
        assert (maps[method] - explain(model, images, method, targets=targets, layer="layer3")).abs().max() <= 1e-5
    assert (maps["gradcam"] - explain(model, images, "gradcam", targets=targets)).abs().max() > 1e-3
    assert grid_at(model, 64, "layer3") == 2 * grid_at(model, 64) == 8
    assert "layer='layer3'" in repr(Explainer(model, "gradcam", layer="layer3"))
    with pytest.raises(NotApplicable, match="layer4 only"):
        Explainer(model, "cam", layer="layer3")
    with pytest.raises(ValueError, match="layer: expected one of"):
        explain_all(model, images, ["gradcam"], layer="layer5")
    assert LAYERS[-1] == "layer4"
