import math

import pytest
import torch
import torchvision
from torch import nn

from thesislib.models import Precode, cam_grid, create_model, list_models


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_batchnorm_width1_matches_torchvision(depth):
    ours = create_model(f"resnet{depth}", norm="batch", width=1.0, stem="imagenet")
    ref = getattr(torchvision.models, f"resnet{depth}")(num_classes=2)
    assert n_params(ours) == n_params(ref)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in ref.parameters()]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("kwargs", [dict(norm="none"), dict(norm="batch"), dict(norm="group", groups=32, width=0.125),
                                    dict(dropout=0.5), dict(precode_k=16, precode_beta=1e-3)])
def test_every_model_runs_forward_and_backward(name, kwargs):
    kw = dict(width=0.0625, stem="compact", **kwargs) if "width" not in kwargs else dict(stem="compact", **kwargs)
    model = create_model(name, **kw).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 2)
    loss = out.sum() + model.precode_loss()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.features(x).shape[-2:] == (cam_grid("compact", 64),) * 2 == (4, 4)


def test_create_model_ignores_none_and_rejects_unknown():
    m = create_model("resnet18", norm=None, width=0.0625, stem="compact", dropout=None)
    assert m.norm == "none"
    with pytest.raises(ValueError, match="resnet18, resnet34, resnet50"):
        create_model("resnet101")


def test_norm_none_has_no_normalisation_layers():
    m = create_model("resnet50", norm="none", width=0.0625, stem="compact")
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.GroupNorm)) for x in m.modules())
    x = torch.randn(4, 3, 64, 64)
    logits = m.eval()(x)
    assert torch.isfinite(logits).all() and logits.abs().max() < 100  # zero-initialised residual branches


def test_group_norm_keeps_channels_per_group_across_widths():
    full = create_model("resnet18", norm="group", groups=32, width=1.0)
    narrow = create_model("resnet18", norm="group", groups=32, width=0.125)
    assert full.bn1.num_groups == 32 and narrow.bn1.num_groups == 4
    assert full.bn1.num_channels // full.bn1.num_groups == narrow.bn1.num_channels // narrow.bn1.num_groups
    with pytest.raises(ValueError, match="groups"):
        create_model("resnet18", norm="group", groups=16, width=0.03125)


@pytest.mark.parametrize("stem, size, grid", [("imagenet", 224, 7), ("imagenet", 64, 2), ("compact", 64, 4),
                                              ("cifar", 64, 8), ("compact", 128, 8)])
def test_cam_grid_matches_the_network(stem, size, grid):
    assert cam_grid(stem, size) == grid
    m = create_model("resnet18", width=0.0625, stem=stem).eval()
    assert m.features(torch.randn(1, 3, size, size)).shape[-1] == grid


def test_precode_kl_in_bits_matches_torch_distributions():
    torch.manual_seed(0)
    vb = Precode(dim=12, k=5, beta=1e-3).train()
    x = torch.randn(7, 12)
    vb(x)
    stats = vb.encoder(x)
    mu, std = stats[:, :5], nn.functional.softplus(stats[:, 5:])
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, std), torch.distributions.Normal(0, 1))
    assert vb.kl.item() == pytest.approx((ref.sum(1).mean() / math.log(2)).item(), rel=1e-5)


def test_precode_uses_the_mean_at_evaluation_and_samples_in_training():
    m = create_model("resnet18", width=0.0625, stem="compact", precode_k=8)
    x = torch.randn(3, 3, 64, 64)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    b = m(x)
    assert not torch.equal(a, b)
    assert m.precode_loss().item() > 0
    m.eval()
    m.precode.sample_eval = True
    assert not torch.equal(m(x), m(x))


def test_dropout_sits_before_the_classifier():
    m = create_model("resnet18", width=0.0625, stem="compact", dropout=0.5)
    names = [n for n, _ in m.named_children()]
    assert names.index("dropout") < names.index("fc") and isinstance(m.dropout, nn.Dropout)
