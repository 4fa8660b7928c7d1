"""Models: ResNet-18/34/50 from torchvision's blocks with the knobs the study varies.

`create_model("resnet50", norm="group", groups=32, dropout=0.1, precode_k=256, ...)` builds a
network trained from scratch:

- norm: "none" (the thesis baseline), "batch" or "group" (GroupNorm; `groups` counts groups at
  width 1, and narrower models keep the same channels per group).
- dropout: on the pooled features, before the classifier.
- PRECODE (Scheliga et al. 2022): a variational bottleneck between the pooled features and the
  classifier; its KL term (bits, batch mean) is exposed for the loss, and at evaluation it uses
  the mean path (sampling optional).
- width: multiplier of every stage's channel count; stem: "imagenet" (7x7/2 conv + max-pool,
  torchvision's), "compact" (3x3/2 conv) or "cifar" (3x3/1 conv), so that small CPU inputs keep
  a CAM grid of at least 4x4 at layer4.

With norm="batch", width=1 and the imagenet stem the network is torchvision's resnet18/34/50.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

__all__ = ["ResNet", "Precode", "create_model", "list_models", "register_model", "cam_grid",
           "NORMS", "STEMS"]

NORMS = ("none", "batch", "group")
STEMS = ("imagenet", "compact", "cifar")
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


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
        self.k, self.beta, self.sample_eval = k, beta, sample_eval
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
        return f"k={self.k}, beta={self.beta}, sample_eval={self.sample_eval}"


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


class ResNet(nn.Module):
    """ResNet with selectable normalisation, width, stem, dropout and PRECODE head.

    Attributes used by the explainers: `layer4` (target layer), `fc` (linear classifier),
    `features(x)` (layer4 output), `head(f)` (layer4 output -> logits), `precode` (or None).
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], *, num_classes: int = 2,
                 norm: str = "none", groups: int = 32, width: float = 1.0, stem: str = "imagenet",
                 dropout: float = 0.0, precode_k: int | None = None, precode_beta: float = 1e-3,
                 precode_sample: bool = False, zero_init_residual: bool | None = None):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width: expected a positive multiplier, found {width!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a rate in [0, 1), found {dropout!r}")
        if stem not in STEMS:
            raise ValueError(f"stem: expected one of {', '.join(STEMS)}, found {stem!r}")
        self.norm, self.width, self.stem_kind = norm, width, stem
        norm_layer = _norm_factory(norm, groups, width)
        self._norm_layer = norm_layer
        planes = [max(1, round(64 * width * 2**i)) for i in range(4)]
        self.inplanes = planes[0]
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
        self.precode = Precode(dim, precode_k, precode_beta, precode_sample) if precode_k else None
        self.fc = nn.Linear(dim, num_classes)

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # Without normalisation, every residual branch adds its variance to the trunk and the
        # logits of a deep net explode at initialisation; starting each branch at zero (Fixup,
        # SkipInit) keeps the network trainable. With a norm layer this is torchvision's option.
        if zero_init_residual is None:
            zero_init_residual = norm == "none"
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last_norm = m.bn3 if isinstance(m, Bottleneck) else m.bn2
                    last_conv = m.conv3 if isinstance(m, Bottleneck) else m.conv2
                    target = last_norm if isinstance(last_norm, (nn.BatchNorm2d, nn.GroupNorm)) else last_conv
                    nn.init.zeros_(target.weight)

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


@register_model
def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)
