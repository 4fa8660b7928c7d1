"""Models: ResNet-18/34/50 from torchvision's blocks with the knobs the study varies.

`create_model("resnet50", norm="group", groups=32, dropout=0.1, precode_k=256, ...)` builds a
network trained from scratch:

- norm: "none" (the thesis baseline), "batch" or "group" (GroupNorm; `groups` counts groups at
  width 1, and narrower models keep the same channels per group).
- dropout: on the pooled features, before the classifier.
- PRECODE (Scheliga et al. 2022): a variational bottleneck between the pooled features and the
  classifier; its KL term (bits, batch mean) is exposed for the loss, and at evaluation it uses
  the mean path (sampling optional). `precode_k` is the thesis's nominal k "of 2048" pooled
  features; the bottleneck gets k = max(1, round(precode_k * d / 2048)) for the model's pooled
  dimension d, so that k/d keeps the thesis's ratio at any width and depth (`scaled_precode_k`).
- width: multiplier of every stage's channel count; stem: "imagenet" (7x7/2 conv + max-pool,
  torchvision's), "compact" (3x3/2 conv) or "cifar" (3x3/1 conv), so that small CPU inputs keep
  a CAM grid of at least 4x4 at layer4.
- stem_channels: the stem convolution's output channels; None (default): the first stage's,
  64 * width, as in torchvision's ResNets. A narrow network keeps a wider stem this way (at width
  1/16 the first stage has 4 channels, too few for three colour channels' evidence).
  `stage_stem(depth, width)` gives a stem as wide as the first stage's output.

With norm="batch", width=1 and the imagenet stem the network is torchvision's resnet18/34/50.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

__all__ = ["ResNet", "Precode", "create_model", "list_models", "register_model", "cam_grid", "init_fingerprint",
           "pooled_dim", "scaled_precode_k", "channels_last_ok", "NORMS", "STEMS", "THESIS_POOLED_DIM"]

NORMS = ("none", "batch", "group")
STEMS = ("imagenet", "compact", "cifar")
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
THESIS_POOLED_DIM = 2048  # ResNet-50 at width 1: the d that the thesis's k = 128 / 256 / 512 refer to
_BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make `fn` available to `create_model` under its own name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments that are None are ignored (config files may
    leave keys unset), so the model's own defaults apply."""
    if name not in _REGISTRY:
        raise ValueError(f"model: expected one of {', '.join(list_models())}, found {name!r}")
    return _REGISTRY[name](**{k: v for k, v in kwargs.items() if v is not None})


class Precode(nn.Module):
    """PRECODE's variational bottleneck, as in the official code (dAI-SY-Group/PRECODE).

    Linear(d, 2k) -> mu, std = softplus(.) -> z = mu + eps * std -> Linear(k, d). After each
    forward, `kl` holds KL(N(mu, std) || N(0, 1)) in bits, summed over the k units and averaged
    over the batch. In eval mode z = mu unless `sample_eval`.
    """

    def __init__(self, dim: int, k: int, beta: float, sample_eval: bool = False):
        super().__init__()
        if k < 1 or dim < 1:
            raise ValueError(f"Precode: expected dim >= 1 and k >= 1, found dim={dim!r}, k={k!r}")
        self.dim, self.k, self.beta, self.sample_eval = dim, k, beta, sample_eval
        self.encoder = nn.Linear(dim, 2 * k)
        self.decoder = nn.Linear(k, dim)
        self.kl: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = self.encoder(x)
        mu, std = stats[:, : self.k], F.softplus(stats[:, self.k:])
        z = mu + torch.randn_like(std) * std if (self.training or self.sample_eval) else mu
        log_std = torch.log(std.clamp_min(1e-12))
        self.kl = (-0.5 * (1 + 2 * log_std - mu.pow(2) - std.pow(2))).sum(1).mean() / math.log(2)
        return self.decoder(z)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, k={self.k}, beta={self.beta}, sample_eval={self.sample_eval}"


def _norm_factory(norm: str, groups: int, width: float) -> Callable[[int], nn.Module]:
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "none":
        return lambda channels: nn.Identity()
    if norm == "group":
        g = groups * width
        if g < 1 or abs(g - round(g)) > 1e-9:
            raise ValueError(f"groups: {groups} groups at width {width} give {g} groups; expected a whole "
                             f"number >= 1 (choose groups so that groups * width is an integer)")
        g = round(g)

        def make(channels: int) -> nn.Module:
            if channels % g:
                raise ValueError(f"groups: {g} groups do not divide {channels} channels "
                                 f"(groups={groups}, width={width})")
            return nn.GroupNorm(g, channels)
        return make
    raise ValueError(f"norm: expected one of {', '.join(NORMS)}, found {norm!r}")


def cam_grid(stem: str, size: int) -> int:
    """Side of the layer4 feature map for a square input of `size` pixels."""
    conv = lambda s, k, st, p: (s + 2 * p - k) // st + 1  # noqa: E731
    if stem == "imagenet":
        s = conv(conv(size, 7, 2, 3), 3, 2, 1)
    elif stem == "compact":
        s = conv(size, 3, 2, 1)
    elif stem == "cifar":
        s = size
    else:
        raise ValueError(f"stem: expected one of {', '.join(STEMS)}, found {stem!r}")
    for _ in range(3):  # layer2, layer3, layer4 halve the grid (3x3 or 1x1 conv, stride 2)
        s = conv(s, 3, 2, 1)
    return s


def stage_stem(depth: int, width: float = 1.0) -> int | None:
    """`stem_channels` for a stem as wide as the first stage's output: None where the first stage's
    own width already is (ResNet-18/34's basic blocks), else that output (ResNet-50's bottlenecks
    widen it fourfold: 16 channels at width 1/16). What `stem_channels: stage` in a run's
    settings gives (`thesislib.study.config.RunConfig.from_dict`)."""
    if depth not in _BLOCKS:
        raise ValueError(f"depth: expected one of {', '.join(map(str, _BLOCKS))}, found {depth!r}")
    expansion = _BLOCKS[depth][0].expansion
    return None if expansion == 1 else max(1, round(64 * width)) * expansion


def pooled_dim(depth: int, width: float = 1.0) -> int:
    """d: the number of pooled layer4 features (the classifier's input) of resnet`depth` at `width`."""
    if depth not in _BLOCKS:
        raise ValueError(f"depth: expected one of {', '.join(map(str, _BLOCKS))}, found {depth!r}")
    return max(1, round(64 * width * 8)) * _BLOCKS[depth][0].expansion


def scaled_precode_k(k: int, dim: int) -> int:
    """PRECODE's nominal k (of THESIS_POOLED_DIM = 2048 pooled features) scaled to a pooled dimension d.

    k_eff = max(1, round(k * d / 2048)), so k_eff / d keeps the thesis's k / 2048 (1/16, 1/8, 1/4
    for k = 128, 256, 512); at d = 2048 (ResNet-50, width 1) k_eff = k.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"precode_k: expected an integer >= 1, found {k!r}")
    return max(1, round(k * dim / THESIS_POOLED_DIM))


# oneDNN (torch 2.14 on x86 CPUs) kills the process (SIGSEGV or SIGABRT) in the backward pass of a
# channels-last 1x1 stride-2 convolution with few input channels. Measured here, one process per
# case: 1, 2 and 4 channels crash at sizes from 8 to 64 px (a lone conv; in a width-1/16 ResNet-18
# at 64 px, 4 channels at 32 px); 8 channels crash at 56 px inside a width-1/8 ResNet-18 at 112 px.
_ONEDNN_ALWAYS_BAD, _ONEDNN_BAD_CHANNELS, _ONEDNN_BAD_SIZE = 4, 8, 56


def channels_last_ok(model: nn.Module, input_size: int, device: torch.device | str) -> bool:
    """Whether training `model` on `input_size` px inputs in channels-last format is safe on `device`.

    On CUDA always True. On the CPU False if any 1x1 stride-2 convolution has <= 4 input channels,
    or <= 8 input channels and an input of >= 56 px: oneDNN crashes in its backward pass in
    channels-last (e.g. layer2's downsample of a width-1/8 ResNet-18/34 at 112 px with the compact
    stem, or of any width-1/16 ResNet-18/34). The sizes come from one forward pass of a zero image
    through the model's features (hooks only; no state changes).
    """
    if torch.device(device).type != "cpu":
        return True
    risky = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
             and m.stride == (2, 2) and m.in_channels <= _ONEDNN_BAD_CHANNELS]
    if any(m.in_channels <= _ONEDNN_ALWAYS_BAD for m in risky):
        return False
    if not risky:
        return True
    seen: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(max(args[0].shape[-2:]))) for m in risky]
    param = next(model.parameters())
    was_training = model.training
    try:
        with torch.no_grad():
            # features only: a PRECODE head that samples at evaluation would draw random numbers
            getattr(model.eval(), "features", model)(
                torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return max(seen, default=0) < _ONEDNN_BAD_SIZE


class ResNet(nn.Module):
    """ResNet with selectable normalisation, width, stem, dropout and PRECODE head.

    Attributes used by the explainers: `layer4` (target layer), `fc` (linear classifier),
    `features(x)` (layer4 output), `head(f)` (layer4 output -> logits), `precode` (or None; its
    `dim` is the pooled dimension d and its `k` the scaled bottleneck size, see `scaled_precode_k`).

    Initialisation, the same for every norm: convolutions Kaiming-normal (fan out), norm layers
    weight 1 and bias 0, and the LAST convolution of every residual branch (BasicBlock.conv2,
    Bottleneck.conv3) zero, so each block starts as the identity; PRECODE's bottleneck is drawn
    after everything else, so its model shares every other initial weight with the baseline. The normalisation-free
    baseline needs this to train at all (Fixup, Zhang et al. 2019; SkipInit, De & Smith 2020:
    otherwise every branch adds its variance to the trunk and the logits of a deep net explode);
    it is applied to the BatchNorm and GroupNorm variants too, so that for the same seed a norm
    comparison changes the norm layers only (every conv and linear weight is equal).
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], *, num_classes: int = 2,
                 norm: str = "none", groups: int = 32, width: float = 1.0, stem: str = "imagenet",
                 dropout: float = 0.0, precode_k: int | None = None, precode_beta: float = 1e-3,
                 precode_sample: bool = False, zero_init_residual: bool = True, stem_channels: int | None = None):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width: expected a positive multiplier, found {width!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a rate in [0, 1), found {dropout!r}")
        if stem not in STEMS:
            raise ValueError(f"stem: expected one of {', '.join(STEMS)}, found {stem!r}")
        if stem_channels is not None and (isinstance(stem_channels, bool) or not isinstance(stem_channels, int)
                                          or stem_channels < 1):
            raise ValueError(f"stem_channels: expected None or an integer >= 1, found {stem_channels!r}")
        self.norm, self.width, self.stem_kind = norm, width, stem
        norm_layer = _norm_factory(norm, groups, width)
        self._norm_layer = norm_layer
        planes = [max(1, round(64 * width * 2**i)) for i in range(4)]
        self.inplanes = stem_channels or planes[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=2 if stem == "compact" else 1,
                                   padding=1, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        dim = planes[3] * block.expansion
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.precode: Precode | None = None
        self.fc = nn.Linear(dim, num_classes)

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # Zero the last conv of each branch (not its norm layer, torchvision's option) for every
        # norm: the baseline needs it to train, and a norm comparison must not change the init.
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.conv3.weight if isinstance(m, Bottleneck) else m.conv2.weight)
        # PRECODE's bottleneck draws its weights last, so that for one seed every other weight
        # equals the baseline's: a PRECODE comparison is paired by seed like every other one
        if precode_k:
            self.precode = Precode(dim, scaled_precode_k(precode_k, dim), precode_beta, precode_sample)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       self._norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer=self._norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input [N, 3, H, W] -> layer4 output [N, C, h, w]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """layer4 output [N, C, h, w] -> logits [N, classes]."""
        x = self.dropout(torch.flatten(self.avgpool(f), 1))
        if self.precode is not None:
            x = self.precode(x)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def precode_loss(self) -> torch.Tensor | float:
        """beta * KL of the last forward pass (0 without PRECODE)."""
        if self.precode is None or self.precode.kl is None:
            return 0.0
        return self.precode.beta * self.precode.kl


def init_fingerprint(model: nn.Module) -> str:
    """sha256 of the weights that settings compared by seed share at initialisation: every
    convolution and linear layer (weights and biases) outside PRECODE's bottleneck. Norm layers
    start constant (weight 1, bias 0) and dropout has no weights, so a dropout, BatchNorm,
    GroupNorm, weight-decay, optimiser or PRECODE model has its baseline's fingerprint for the
    same seed; another depth or width has another."""
    import hashlib

    digest = hashlib.sha256()
    for name, module in model.named_modules():
        if name.split(".")[0] == "precode" or not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        for pname, p in module.named_parameters(recurse=False):
            digest.update(f"{name}.{pname}{tuple(p.shape)}".encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@register_model
def resnet18(**kwargs) -> ResNet:
    return ResNet(*_BLOCKS[18], **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    return ResNet(*_BLOCKS[34], **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    return ResNet(*_BLOCKS[50], **kwargs)
