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


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("norm", ["none", "group"])
def test_stem_channels_widen_the_stem_only(name, norm):
    kw = dict(width=0.0625, stem="compact", norm=norm, groups=32)
    torch.manual_seed(0)
    plain = create_model(name, **kw)
    torch.manual_seed(0)
    wide = create_model(name, **kw, stem_channels=16)
    assert plain.conv1.out_channels == 4 and wide.conv1.out_channels == 16
    first = wide.layer1[0]
    assert first.conv1.in_channels == 16 and first.conv1.out_channels == plain.layer1[0].conv1.out_channels
    # every stage after the stem keeps its width: the same layer4 and pooled features
    assert [tuple(p.shape) for p in wide.layer4.parameters()] == [tuple(p.shape) for p in plain.layer4.parameters()]
    assert wide.fc.in_features == plain.fc.in_features
    x = torch.randn(2, 3, 64, 64)
    assert wide(x).shape == (2, 2) and wide.features(x).shape == plain.features(x).shape
    # unset, it is the first stage's width (the model of every run before the option existed)
    torch.manual_seed(0)
    same = create_model(name, **kw, stem_channels=None)
    assert all(torch.equal(p, q) for p, q in zip(same.state_dict().values(), plain.state_dict().values()))
    with pytest.raises(ValueError, match="stem_channels"):
        create_model(name, **kw, stem_channels=0)


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


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("norm, kw", [("batch", {}), ("group", dict(groups=16))])
def test_norm_variants_differ_from_the_baseline_only_in_their_norm_layers(depth, norm, kw):
    torch.manual_seed(3)
    base = create_model(f"resnet{depth}", norm="none", width=0.0625, stem="compact")
    torch.manual_seed(3)
    other = create_model(f"resnet{depth}", norm=norm, width=0.0625, stem="compact", **kw)
    weights = lambda m: {n: p for n, p in m.named_parameters()  # noqa: E731
                         if isinstance(m.get_submodule(n.rsplit(".", 1)[0]), (nn.Conv2d, nn.Linear))}
    a, b = weights(base), weights(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = [blk.conv3 if depth == 50 else blk.conv2 for blk in other.modules() if hasattr(blk, "downsample")]
    assert last and all(c.weight.abs().sum() == 0 for c in last)  # every residual branch starts at zero
    norms = [m for m in other.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


@pytest.mark.parametrize("norm, kw", [("none", {}), ("batch", {}), ("group", dict(groups=32))])
def test_every_norm_variant_still_trains(norm, kw):
    torch.manual_seed(0)
    model = create_model("resnet18", norm=norm, width=0.0625, stem="compact", **kw).train()
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 2
    x[y == 1, 0] += 2.0  # a learnable difference between the classes
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("depth, d_full", [(18, 512), (50, 2048)])
@pytest.mark.parametrize("width", [1.0, 0.25, 0.125])
@pytest.mark.parametrize("k", [128, 256, 512])
def test_precode_k_keeps_the_thesis_ratio_to_the_pooled_dimension(depth, d_full, width, k):
    from thesislib.models import pooled_dim, scaled_precode_k

    d = pooled_dim(depth, width)
    assert d == round(d_full * width)
    assert scaled_precode_k(k, d) / d == pytest.approx(k / 2048)  # exact for these widths
    m = create_model(f"resnet{depth}", width=width, stem="compact", precode_k=k)
    assert (m.precode.dim, m.precode.k) == (d, scaled_precode_k(k, d)) == (m.fc.in_features, m.precode.encoder.out_features // 2)
    assert "dim=" in repr(m.precode)


def test_precode_k_is_the_thesis_k_at_full_width_and_never_zero():
    from thesislib.models import scaled_precode_k

    assert create_model("resnet50", width=1.0, stem="imagenet", precode_k=256).precode.k == 256
    assert scaled_precode_k(1, 32) == 1
    with pytest.raises(ValueError, match="precode_k"):
        scaled_precode_k(0, 32)


@pytest.mark.parametrize("depth, width, stem, size, ok", [
    (18, 0.125, "compact", 112, False),  # layer2's downsample: 8 channels at 56 px
    (34, 0.125, "compact", 112, False),
    (18, 0.125, "compact", 64, True),    # 8 channels at 32 px
    (50, 0.125, "compact", 112, True),   # bottleneck: 32 channels into the downsample
    (18, 0.25, "compact", 112, True),    # 16 channels
    (18, 0.0625, "compact", 64, False),  # 4 channels at 32 px
    (50, 0.0625, "compact", 64, True),   # 16 channels
])
def test_channels_last_is_refused_on_the_cpu_where_onednn_crashes(depth, width, stem, size, ok):
    from thesislib.models import channels_last_ok

    model = create_model(f"resnet{depth}", width=width, stem=stem).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert channels_last_ok(model, size, "cpu") is ok
    assert channels_last_ok(model, size, "cuda") is True  # the check needs no GPU
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
