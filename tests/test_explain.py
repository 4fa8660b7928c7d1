import pytest
import torch
import torch.nn.functional as F

from thesislib.explain import (CLASS_AGNOSTIC, GRADIENT_METHODS, LABELS, METHODS, REGISTRY, Explainer, NotApplicable,
                               cam_raw, explain, explain_all, normalize_maps)


def test_relu_cam_equals_grad_cam_on_a_gap_linear_head(tiny_model, images):
    """For GAP + linear, Grad-CAM's weights are the fc weights / (h*w): the maps coincide."""
    model = tiny_model(name="resnet34")
    targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    raw = F.relu(cam_raw(model, images, targets))
    ours = normalize_maps(F.interpolate(raw[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0])
    grad = explain(model, images, "gradcam", targets=targets)
    assert grad.abs().amax() > 0
    assert torch.allclose(ours, grad, atol=1e-5)


def test_each_image_gets_its_own_target(tiny_model, images):
    """8 images, 8 different targets: 8 maps, each as if the image were explained alone."""
    # residual branches not zeroed: at initialisation both classes then have positive evidence somewhere
    model = tiny_model(norm="batch", zero_init_residual=False)
    targets = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    for method in ("gradcam", "gradcam++", "scorecam", "cam"):
        batch = explain(model, images, method, targets=targets)
        alone = torch.cat([explain(model, images[i:i + 1], method, targets=targets[i:i + 1]) for i in range(8)])
        assert torch.allclose(batch, alone, atol=1e-4), method
        flat = batch.flatten(1)
        assert all(not torch.allclose(flat[i], flat[j]) for i in range(8) for j in range(i))
    # the other target gives another map (class-discriminative methods)
    flipped = explain(model, images, "gradcam", targets=1 - targets)
    assert not torch.allclose(flipped, explain(model, images, "gradcam", targets=targets))


def test_without_targets_the_predicted_class_is_explained(tiny_model, images):
    """The default target is each image's most likely class, not another one."""
    model = tiny_model(norm="batch", zero_init_residual=False)  # both classes have evidence: their maps differ
    with torch.no_grad():
        logits = model(images)
    top, other = logits.argmax(1), logits.argmin(1)
    assert (top != other).all()  # no ties
    methods = ["cam", "gradcam", "scorecam"]
    together = explain_all(model, images, methods)
    for method in methods:
        alone = explain(model, images, method)
        assert torch.allclose(alone, explain(model, images, method, targets=top), atol=1e-6), method
        assert torch.allclose(together[method], alone, atol=1e-5), method
        assert not torch.allclose(alone, explain(model, images, method, targets=other), atol=1e-3), method


@pytest.mark.parametrize("record", REGISTRY.values(), ids=list(REGISTRY))
def test_every_registered_method_explains_a_tiny_model(tiny_model, images, record):
    """Each record gives maps of the input's shape in [0, 1], and its explainer is built on
    pytorch-grad-cam's class of that method (CAM, ours alone, names none)."""
    import pytorch_grad_cam as pgc

    model = tiny_model()
    maps = explain(model, images, record.key)
    assert maps.shape == (8, 64, 64) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    cam = Explainer(model, record.key)._cam
    if record.library is None:
        assert cam is None and record.family == "cam"
    else:
        # pytorch-grad-cam's class of the same name (GradCAMPlusPlus: "gradcam++"; a variant after a "-")
        assert record.library.lower().replace("plusplus", "++") == record.key.split("-")[0], record.library
        assert isinstance(cam, getattr(pgc, record.library)), (record.key, type(cam).__mro__)
        assert type(cam).__name__ == (record.ours or record.library)
    assert METHODS == tuple(REGISTRY) and LABELS[record.key] == record.label
    assert (record.key in CLASS_AGNOSTIC) == record.class_agnostic
    assert (record.key in GRADIENT_METHODS) == (record.family == "gradient")


def test_mode_grads_and_hooks_are_restored(tiny_model, images):
    model = tiny_model().train()
    for p in model.parameters():
        p.grad = None
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    for method in ("gradcam", "scorecam", "cam"):
        explain(model, images, method)
        assert model.training
        assert torch.equal(first.grad, torch.ones_like(first))
        assert all(p.grad is None for p in list(model.parameters())[1:])
        assert not model.layer4._forward_hooks and not model.layer4._backward_hooks


def test_explainer_is_reused_per_model_and_method(tiny_model, images):
    from thesislib.explain import _EXPLAINERS

    model = tiny_model()
    explain(model, images[:2], "gradcam")
    first = _EXPLAINERS[model]["gradcam"]
    explain(model, images[2:4], "gradcam")
    assert _EXPLAINERS[model]["gradcam"] is first


def test_precode_explains_through_its_mean(tiny_model, images):
    model = tiny_model(precode_k=8)
    model.precode.sample_eval = True
    for method in ("gradcam", "cam"):
        a = explain(model, images, method)
        b = explain(model, images, method)
        assert torch.equal(a, b) and model.precode.sample_eval, method


def test_cam_on_a_non_linear_head_is_not_applicable(tiny_model, images):
    model = tiny_model()
    model.fc = torch.nn.Sequential(torch.nn.Linear(model.fc.in_features, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(NotApplicable, match="cam: expected a linear `fc` head"):
        explain(model, images, "cam")


def test_a_constant_map_is_zero_not_nan(tiny_model, images):
    model = tiny_model()
    model.layer4 = torch.nn.Sequential(model.layer4, _Zero())  # every layer4 channel is constant
    for method in ("gradcam", "scorecam", "cam", "eigencam"):
        maps = explain(model, images, method)
        assert torch.equal(maps, torch.zeros_like(maps)), method


class _Zero(torch.nn.Module):
    def forward(self, x):
        return x * 0


def test_bad_arguments_are_named(tiny_model, images):
    model = tiny_model()
    with pytest.raises(ValueError, match="method: expected one of"):
        Explainer(model, "gradcam+++")
    with pytest.raises(ValueError, match="targets: expected one per image"):
        explain(model, images, "gradcam", targets=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="images: expected a batch"):
        explain(model, images[0], "gradcam")
