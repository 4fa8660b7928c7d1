"""Explainers: class-activation heatmaps in [0, 1] at input resolution, one per image and target.

`explain(model, images, method, targets=None)` explains one method; `explain_all(model, images,
methods)` explains several from one forward and one backward pass. Methods:

- "cam": ours, class weights x layer4 features (Zhou et al. 2016), on any ResNet-like model with
  `layer4`, global average pooling (`avgpool`) and a linear `fc`. A PRECODE head is linear on its
  mean path (z = mu at evaluation), so its CAM uses the effective head
  W_eff = fc.W @ decoder.W @ encoder.W[:k]. Biases are left out, as in Zhou et al.: they add a
  constant per class to the logit, never a spatial pattern, so ReLU(CAM) after min-max equals
  Grad-CAM on such a head. A non-linear head raises `NotApplicable`.
- "scorecam": `FastScoreCAM`, pytorch-grad-cam's Score-CAM with the same weights (max |map diff|
  <= 1e-4 in float32), batched over images and channels; `Explainer(model, "scorecam",
  fast=False)` gives the library's own. The library weighs each channel by a softmax over
  channels of the class's raw logit for the masked inputs.
- "scorecam-paper": `PaperScoreCAM`, Score-CAM as its authors wrote it (Wang et al. 2020 and
  their code, haofanwang/Score-CAM): each channel's weight is the softmax probability of the class
  (softmax over classes) for its masked input, with no softmax across channels; masks are
  upsampled with align_corners=False and min-max scaled without an epsilon; a constant channel
  gets weight 0. Batched like FastScoreCAM; ReLU at the layer's grid, then the same upsampling
  and scaling as every method here (the authors' code applies the ReLU after upsampling).
- "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam": pytorch-grad-cam (package grad-cam),
  target layer `model.layer4`, or another stage (`layer`, one of LAYERS; CAM is defined at layer4
  only, the layer its linear head pools).
- "eigencam": pytorch-grad-cam's EigenCAM with its sign fixed: the first principal component's
  sign is arbitrary, so each image's projection is oriented to correlate positively (covariance
  >= 0 over the layer4 grid) with the layer's channel-mean activation; a zero covariance keeps the
  library's sign. It ignores the target: it is listed in `CLASS_AGNOSTIC`.

Conventions (PROTOCOL): the explained class is the predicted one unless targets are given, one
target per image; ReLU where the method defines it (CAM has none: its negative evidence stays);
bilinear upsampling to the input size; per-image min-max to [0, 1]; a constant map is all zeros,
never NaN. `duplicate_groups` finds methods whose maps coincide on the model at hand.

Around pytorch-grad-cam's known traps: every image gets its own target (a single target for a
batch explains the first image only); the model's train/eval mode and its parameters' `.grad`
are restored after each call; hooks are registered only during a call, so an explainer kept
for reuse does not slow down or leak memory in later training; PRECODE explains through its
mean path; the stock Score-CAM's per-image progress bars are silenced and its masked inputs are
chunked.
"""

from __future__ import annotations

import contextlib
import io
import time
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["explain", "explain_all", "Explainer", "FastScoreCAM", "PaperScoreCAM", "NotApplicable", "METHODS",
           "LABELS", "CLASS_AGNOSTIC", "GRADIENT_METHODS", "LAYERS", "cam_raw", "normalize_maps",
           "duplicate_groups", "grid_at"]

METHODS = ("cam", "gradcam", "gradcam++", "scorecam", "xgradcam", "layercam", "hirescam", "eigencam",
           "scorecam-paper")
LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
          "xgradcam": "XGrad-CAM", "layercam": "Layer-CAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM",
          "scorecam-paper": "Score-CAM (paper)"}
LAYERS = ("layer1", "layer2", "layer3", "layer4")
"""Stages an explainer can read (default layer4); CAM only at layer4."""
CLASS_AGNOSTIC = frozenset({"eigencam"})
"""Methods whose map does not depend on the explained class."""

_GRADIENT = frozenset({"gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"})
GRADIENT_METHODS = tuple(m for m in METHODS if m in _GRADIENT)
"""The methods that weigh the layer's activations by its gradients."""
_ONE_PASS = _GRADIENT | {"cam", "eigencam"}  # read only the layer's activations (and gradients)
_SCORE = ("scorecam", "scorecam-paper")


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"layer: expected one of {', '.join(LAYERS)}, found {layer!r}")


class NotApplicable(ValueError):
    """The method is not defined for this model (CAM on a model without a linear head)."""


# ---------------------------------------------------------------------------------------------
# Score-CAM, batched


@contextlib.contextmanager
def _hooks_paused(handles):
    """Take the given forward hooks out of their modules for the duration, then put them back."""
    saved = []
    for handle in handles:
        hooks = handle.hooks_dict_ref()
        if hooks is not None and handle.id in hooks:
            saved.append((hooks, handle.id, hooks.pop(handle.id)))
    try:
        yield
    finally:
        for hooks, key, fn in saved:
            hooks[key] = fn


# mixed into pytorch_grad_cam.ScoreCAM as `FastScoreCAM` on first use, see `_derived`
class _FastScoreCAM:
    """pytorch-grad-cam's ScoreCAM with the same weights, batched across images and channels.

    Same constructor and call as `pytorch_grad_cam.ScoreCAM`. The library forwards the masked
    inputs image by image, through its activation hooks, with a host sync per channel batch, and
    forwards every channel even where the mask is all zero (a constant channel, e.g. a dead one
    after a ReLU, min-max scales to zeros). Here the masks of all images are built chunk by chunk
    with the library's arithmetic (bilinear upsampling with align_corners=True, per-channel
    min-max with +1e-8), every all-zero mask is scored by one forward of a zero image shared by
    the batch, the other masked inputs are forwarded in chunks bounded by `memory`, with the hooks
    paused, in inference mode, with channels-last inputs (2x faster forwards on this CPU's
    oneDNN, whose channels-last crash is in backward passes only), and the scores (the target's
    output on raw logits) stay on the device until one softmax over channels. On CUDA the masked
    passes run in bf16 autocast (`autocast=False` keeps float32 there); elsewhere they run in
    float32 and reproduce the library's maps within 1e-4. The model is assumed in eval mode (the
    library puts it there), so an input's score does not depend on its batch.

    Args:
        model, target_layers, reshape_transform: as for `pytorch_grad_cam.ScoreCAM`.
        memory: bytes of masked inputs forwarded at once (and of upsampled maps held at once);
            None: 4 MiB on the CPU (small chunks stay in cache: 30 inputs of 112 px), 1 GiB on CUDA.
        batch_size: optional cap on masked inputs per forward pass (the library's attribute).
        autocast: "auto" (bf16 on CUDA, float32 elsewhere), True or False.
        channels_last: masked inputs in channels-last memory format (the model is left as it is).
    """

    def __init__(self, model, target_layers, reshape_transform=None, *, memory: int | None = None,
                 batch_size: int | None = None, autocast: bool | str = "auto", channels_last: bool = True):
        super().__init__(model, target_layers, reshape_transform=reshape_transform)
        if memory is not None and (not isinstance(memory, int) or memory < 1):
            raise ValueError(f"memory: expected a positive number of bytes or None, found {memory!r}")
        if autocast not in ("auto", True, False):
            raise ValueError(f"autocast: expected 'auto', True or False, found {autocast!r}")
        self.memory, self.autocast, self.channels_last = memory, autocast, channels_last
        if batch_size is not None:
            self.batch_size = batch_size

    def forward(self, input_tensor, targets, eigen_smooth: bool = False):
        with torch.no_grad():  # Score-CAM needs no backward: no graph for the first pass either
            return super().forward(input_tensor, targets, eigen_smooth)

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads) -> np.ndarray:
        """Softmax over channels of the target's score of each masked input: float32 [N, C]."""
        device = self.device
        x = input_tensor.to(device)
        acts = torch.as_tensor(activations).to(device)
        n, c = acts.shape[:2]
        flat = acts.reshape(n * c, 1, *acts.shape[2:])
        size, corners = tuple(x.shape[-2:]), self._align_corners

        def upsample(a: torch.Tensor) -> torch.Tensor:
            return F.interpolate(a, size=size, mode="bilinear", align_corners=corners)
        map_bytes = x.shape[-2] * x.shape[-1] * 4
        input_bytes = x[0].numel() * 4
        memory = self.memory or (2**30 if device.type == "cuda" else 2**22)
        chunk = max(1, memory // input_bytes)
        if getattr(self, "batch_size", None):
            chunk = min(chunk, self.batch_size)
        amp = device.type == "cuda" if self.autocast == "auto" else bool(self.autocast)
        handles = getattr(self.activations_and_grads, "handles", [])
        with torch.inference_mode(), _hooks_paused(handles):
            lo = torch.empty(n * c, device=device)
            hi = torch.empty(n * c, device=device)
            step = max(1, memory // map_bytes)
            for s in range(0, n * c, step):
                up = upsample(flat[s:s + step]).flatten(1)
                lo[s:s + step], hi[s:s + step] = up.min(1).values, up.max(1).values
            # a mask whose upsampled map is constant is exactly zero: its input is the zero image
            live = (hi > lo).nonzero()[:, 0]  # the one host sync: how many masks need a forward
            image_of = torch.arange(n * c, device=device) // c
            score = self._scorer(targets, n, device)
            if self._dead_weight is None:
                with self._autocast(device, amp):
                    zero = self._class_scores(self.model(self._layout(torch.zeros_like(x[:1]))).float())
                scores = score(zero.expand(n, -1), torch.arange(n, device=device))[image_of]
            else:
                scores = torch.full((n * c,), self._dead_weight, device=device)
            for s in range(0, len(live), chunk):
                idx = live[s:s + chunk]
                img = image_of[idx]
                up = upsample(flat[idx])
                low, high = lo[idx, None, None, None], hi[idx, None, None, None]
                mask = (up - low) / (high - low + self._mask_eps)  # the library's arithmetic, bit for bit
                with self._autocast(device, amp):
                    logits = self.model(self._layout(x[img] * mask)).float()
                scores[idx] = score(self._class_scores(logits), img)
            weights = self._channel_weights(scores.view(n, c))
        return weights.cpu().numpy()

    # what makes this pytorch-grad-cam's Score-CAM; `_PaperScoreCAM` changes these
    _align_corners = True  # the library's UpsamplingBilinear2d
    _mask_eps = 1e-8
    _dead_weight: float | None = None  # None: a constant channel is scored like the zero image

    @staticmethod
    def _class_scores(logits: torch.Tensor) -> torch.Tensor:
        """What the target reads from the model's output: the raw logits."""
        return logits

    @staticmethod
    def _channel_weights(scores: torch.Tensor) -> torch.Tensor:
        """Channel weights from the scores [N, C]: a softmax over channels."""
        return torch.softmax(scores, dim=-1)

    @staticmethod
    def _autocast(device: torch.device, enabled: bool):
        if not enabled:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @staticmethod
    def _scorer(targets, n: int, device: torch.device):
        """(logits [m, K], image index [m]) -> each row's score under its image's target, [m]."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if len(targets) != n:
            raise ValueError(f"targets: expected one per image ({n}), found {len(targets)}")
        if all(type(t) is ClassifierOutputTarget for t in targets):
            classes = torch.tensor([int(t.category) for t in targets], device=device)
            return lambda logits, img: logits.gather(1, classes[img][:, None])[:, 0]

        def general(logits, img):  # any other target: one call per row, as the library does
            return torch.stack([targets[i](row) for row, i in zip(logits, img.tolist())]).float()
        return general


# mixed into pytorch_grad_cam.ScoreCAM (after _FastScoreCAM) as `PaperScoreCAM` on first use
class _PaperScoreCAM:
    """Score-CAM as its authors wrote it (Wang et al. 2020; haofanwang/Score-CAM), batched like
    FastScoreCAM (same constructor, call and options).

    Per channel k of the target layer: the mask H_k is the channel upsampled bilinearly
    (align_corners=False) to the input and min-max scaled to [0, 1]; its weight is the softmax
    probability of the target class for the input x H_k (a softmax over classes, one per masked
    input; no softmax across channels, no baseline subtracted, as in the authors' code); a
    constant channel is skipped (weight 0). The map is ReLU(sum_k weight_k A_k) at the layer's
    grid, upsampled and scaled like every other method.
    """

    _align_corners = False
    _mask_eps = 0.0
    _dead_weight = 0.0

    @staticmethod
    def _class_scores(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    @staticmethod
    def _channel_weights(scores: torch.Tensor) -> torch.Tensor:
        return scores


# ---------------------------------------------------------------------------------------------
# EigenCAM with a fixed sign


def _orient(projection: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip each map whose covariance with `reference` is negative.

    Args:
        projection, reference: float [N, h, w].
    Returns:
        float [N, h, w].
    """
    p = projection.flatten(1) - projection.flatten(1).mean(1, keepdim=True)
    r = reference.flatten(1) - reference.flatten(1).mean(1, keepdim=True)
    sign = torch.where((p * r).sum(1) < 0, -1.0, 1.0).to(projection.dtype)
    return projection * sign[:, None, None]


# mixed into pytorch_grad_cam.EigenCAM on first use, see `_derived`
class _SignedEigenCAM:
    """EigenCAM whose projection correlates positively with the channel-mean activation."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        projection = torch.from_numpy(np.asarray(super().get_cam_image(
            input_tensor, target_layer, targets, activations, grads, eigen_smooth)))
        mean = torch.as_tensor(np.asarray(activations)).float().mean(1)
        return _orient(projection, mean).numpy()


_DERIVED: dict[str, type] = {}


def _derived() -> dict[str, type]:
    """The library subclasses, made on first use: pytorch-grad-cam imports OpenCV and scikit-learn,
    seconds that `import thesislib.explain` (tables, figures, the report) should not pay."""
    if not _DERIVED:
        import pytorch_grad_cam as pgc

        for name, mixins, base in (("FastScoreCAM", (_FastScoreCAM,), pgc.ScoreCAM),
                                   ("PaperScoreCAM", (_PaperScoreCAM, _FastScoreCAM), pgc.ScoreCAM),
                                   ("SignedEigenCAM", (_SignedEigenCAM,), pgc.EigenCAM)):
            _DERIVED[name] = type(name, (*mixins, base), {"__doc__": mixins[0].__doc__, "__module__": __name__})
    return _DERIVED


def __getattr__(name: str):
    if name in ("FastScoreCAM", "PaperScoreCAM"):
        return _derived()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _library_class(method: str, fast: bool = True):
    import pytorch_grad_cam as pgc

    return {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus,
            "scorecam": _derived()["FastScoreCAM"] if fast else pgc.ScoreCAM,
            "scorecam-paper": _derived()["PaperScoreCAM"],
            "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM,
            "eigencam": _derived()["SignedEigenCAM"]}[method]


# ---------------------------------------------------------------------------------------------
# Helpers


def normalize_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image min-max to [0, 1]; maps whose range is below `eps` become all zeros.

    Args:
        maps: float [N, H, W].
    Returns:
        float32 [N, H, W] in [0, 1].
    """
    flat = maps.flatten(1).float()
    lo, hi = flat.min(1).values, flat.max(1).values
    span = hi - lo
    ok = span > eps
    out = (flat - lo[:, None]) / torch.where(ok, span, torch.ones_like(span))[:, None]
    return torch.where(ok[:, None], out, torch.zeros_like(out)).view_as(maps)


def duplicate_groups(maps: dict[str, torch.Tensor], atol: float = 1e-4) -> list[list[str]]:
    """Methods whose maps agree within `atol` on every image, grouped.

    Each method joins the first group whose first member's maps it matches (max |diff| <= atol),
    so groups are compared against one representative and never chain. Only groups of two or
    more methods are returned; within a group, and across groups by their first member, the
    order is that of `maps`.

    Args:
        maps: method -> float [N, H, W], all of one shape.
        atol: largest absolute difference at any pixel of any image.
    Returns:
        lists of method names, e.g. [["cam", "gradcam", "xgradcam", "hirescam"]].
    """
    groups: list[list[str]] = []
    shape = None
    for name, m in maps.items():
        if m.dim() != 3:
            raise ValueError(f"maps[{name!r}]: expected [N, H, W], found shape {tuple(m.shape)}")
        if shape is not None and m.shape != shape:
            raise ValueError(f"maps[{name!r}]: expected shape {tuple(shape)} like the others, found {tuple(m.shape)}")
        shape = m.shape
        for group in groups:
            ref = maps[group[0]]
            if m.numel() == 0 or (ref.float() - m.float()).abs().amax() <= atol:
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def _linear_head(model: nn.Module) -> torch.Tensor:
    """The class weights [classes, C] of a head linear in the pooled layer4 features."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        found = type(fc).__name__ if fc is not None else "none"
        raise NotApplicable(f"cam: expected a linear `fc` head, found {found}")
    pool = getattr(model, "avgpool", None)
    size = getattr(pool, "output_size", None)
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or size not in (1, (1, 1)):
        raise NotApplicable(f"cam: expected global average pooling `avgpool` (AdaptiveAvgPool2d(1)), found {pool!r}")
    precode = getattr(model, "precode", None)
    if precode is None:
        return fc.weight
    enc, dec = getattr(precode, "encoder", None), getattr(precode, "decoder", None)
    if not (isinstance(enc, nn.Linear) and isinstance(dec, nn.Linear) and isinstance(getattr(precode, "k", None), int)):
        raise NotApplicable("cam: expected a PRECODE head with Linear `encoder`, `decoder` and an int `k`")
    # z = mu at evaluation, and mu is the encoder's first k outputs: the head is linear
    return fc.weight @ dec.weight @ enc.weight[:precode.k]


def _layer4(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """layer4's output [N, C, h, w]: `model.features` where there is one, else a forward hook."""
    if callable(getattr(model, "features", None)):
        return model.features(images)
    seen = []
    handle = model.layer4.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        model(images)
    finally:
        handle.remove()
    return seen[-1]


def _cam_from(weights: torch.Tensor, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum_k weights[target, k] * A_k: class weights [K, C], features [N, C, h, w] -> [N, h, w]."""
    w = weights[targets.to(weights.device)]
    return torch.einsum("nc,nchw->nhw", w.float(), feats.float())


@torch.no_grad()
def cam_raw(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CAM at layer4 resolution, before any ReLU or scaling: sum_k w[target, k] * A_k.

    `w` is the fc weight, or for a PRECODE head the mean path's effective weight
    fc.W @ decoder.W @ encoder.W[:k]; biases are left out (a per-class constant of the logit).

    Args:
        images: float [N, 3, H, W]; targets: int64 [N].
    Returns:
        float [N, h, w].
    Raises:
        NotApplicable: the head is not linear in the globally average-pooled layer4 features.
    """
    weights = _linear_head(model)
    return _cam_from(weights, _layer4(model, images), targets)


def _upsample(raw: torch.Tensor, size) -> torch.Tensor:
    """[N, h, w] -> [N, H, W], bilinear, align_corners=False (as the library's cv2.resize)."""
    return F.interpolate(raw[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


@contextlib.contextmanager
def _explaining(model: nn.Module):
    """Eval mode and PRECODE's mean path for the duration; mode, sampling and `.grad` restored."""
    was_training = model.training
    grads = [p.grad for p in model.parameters()]
    precode = getattr(model, "precode", None)
    sample_eval = getattr(precode, "sample_eval", False)
    model.eval()
    if precode is not None:
        precode.sample_eval = False
    try:
        yield
    finally:
        model.train(was_training)
        if precode is not None:
            precode.sample_eval = sample_eval
        for p, g in zip(model.parameters(), grads):
            p.grad = g


def _check_targets(targets, n: int) -> torch.Tensor:
    targets = torch.as_tensor(targets).flatten().long()
    if len(targets) != n:
        raise ValueError(f"targets: expected one per image ({n}), found {len(targets)}")
    return targets


# ---------------------------------------------------------------------------------------------
# Explainers


class Explainer:
    """One explainer per model and method, reused across batches.

    Args:
        model: a `thesislib.models.ResNet` (or any module with `layer4`, and for "cam" global
            average pooling `avgpool` and a linear `fc`).
        method: one of METHODS.
        layer: the stage explained, one of LAYERS (CAM: layer4 only).
        fast: Score-CAM only: `FastScoreCAM` (default) or the library's ScoreCAM (False); the
            paper's variant exists batched only.
        memory: Score-CAM's budget in bytes for the masked copies of the input held at once
            (default: FastScoreCAM's per device, see there; 2**29 for the stock one's image chunks).
        channel_batch: Score-CAM's cap on masked inputs per forward pass (stock default 128;
            FastScoreCAM is bounded by `memory` unless given).
    """

    def __init__(self, model: nn.Module, method: str, *, layer: str = "layer4", fast: bool = True,
                 memory: int | None = None, channel_batch: int | None = None):
        if method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
        _check_layer(layer)
        if not hasattr(model, layer):
            raise TypeError(f"model: expected a ResNet with a `{layer}` stage, found {type(model).__name__}")
        if method == "scorecam-paper" and not fast:
            raise ValueError("fast: the paper's Score-CAM exists batched only (PaperScoreCAM); expected fast=True")
        self.method, self.fast, self.layer = method, fast, layer
        self.memory = memory if memory is not None or fast else 2**29
        self._model = weakref.ref(model)
        self._cam = None
        if method == "cam":
            _linear_head(model)
            if layer != "layer4":
                raise NotApplicable(f"cam: defined at layer4 only (the layer its linear head pools), found {layer!r}")
        else:
            was_training = model.training
            kwargs = {"memory": self.memory, "batch_size": channel_batch} if method in _SCORE and fast else {}
            self._cam = _library_class(method, fast)(model=model, target_layers=[getattr(model, layer)], **kwargs)
            model.train(was_training)  # the library switches the model to eval mode on creation
            self._release()
            if method == "scorecam" and not fast:
                self._cam.batch_size = channel_batch or 128

    def __repr__(self) -> str:
        model = self._model()
        fast = ", fast=False" if self.method == "scorecam" and not self.fast else ""
        layer = f", layer={self.layer!r}" if self.layer != "layer4" else ""
        return f"Explainer(method={self.method!r}, model={type(model).__name__ if model else None}{layer}{fast})"

    def _release(self) -> None:
        aag = self._cam.activations_and_grads
        aag.release()
        aag.model = None
        self._cam.model = None
        self._cam.outputs = None  # holds the autograd graph of the last batch

    @property
    def model(self) -> nn.Module:
        model = self._model()
        if model is None:
            raise RuntimeError("Explainer: its model no longer exists")
        return model

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Heatmaps of `images` for `targets` (default: the predicted classes).

        Args:
            images: float [N, 3, H, W], normalised as the model expects.
            targets: int [N] classes to explain, one per image, or None.
        Returns:
            float32 [N, H, W] in [0, 1] on the CPU.
        """
        if images.dim() != 4:
            raise ValueError(f"images: expected a batch [N, 3, H, W], found shape {tuple(images.shape)}")
        model = self.model
        images = images.to(next(model.parameters()).device)
        with _explaining(model):
            if targets is None:
                with torch.no_grad():
                    targets = model(images).argmax(1)
            targets = _check_targets(targets, len(images))
            if self.method == "cam":
                return normalize_maps(_upsample(cam_raw(model, images, targets), images.shape[-2:]).cpu())
            return normalize_maps(self._library(model, images, targets))

    def _library(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        chunk = len(images)
        if self.method == "scorecam" and not self.fast:  # the library builds N x C masked inputs at once
            per_image = model.fc.in_features * images[0].numel() * images.element_size()
            chunk = max(1, min(len(images), self.memory // max(1, per_image)))
        self._cam.model = model
        self._cam.device = images.device
        self._cam.activations_and_grads = ActivationsAndGradients(model, [getattr(model, self.layer)], None)
        out = []
        try:
            for start in range(0, len(images), chunk):
                x = images[start:start + chunk]
                t = [ClassifierOutputTarget(int(c)) for c in targets[start:start + chunk]]
                with contextlib.redirect_stderr(io.StringIO()):  # the stock Score-CAM's per-image tqdm bars
                    out.append(torch.from_numpy(self._cam(x, targets=t)))
        finally:
            self._release()
        return torch.cat(out)

    def _from_captured(self, images: torch.Tensor, targets: torch.Tensor, activations: torch.Tensor,
                       gradients: torch.Tensor | None) -> torch.Tensor:
        """The library's maps from layer4 activations and gradients captured elsewhere (gradient
        methods and EigenCAM), through its own get_cam_image and post-processing."""
        from types import SimpleNamespace

        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        released = self._cam.activations_and_grads
        self._cam.activations_and_grads = SimpleNamespace(
            activations=[activations], gradients=[] if gradients is None else [gradients])
        try:
            t = [ClassifierOutputTarget(int(c)) for c in targets]
            per_layer = self._cam.compute_cam_per_layer(images, t, False)
            return normalize_maps(torch.from_numpy(self._cam.aggregate_multi_layers(per_layer)))
        finally:
            self._cam.activations_and_grads = released


_EXPLAINERS: "weakref.WeakKeyDictionary[nn.Module, dict[str, Explainer]]" = weakref.WeakKeyDictionary()


def _explainer(model: nn.Module, method: str, layer: str = "layer4") -> Explainer:
    per_model = _EXPLAINERS.setdefault(model, {})
    key = method if layer == "layer4" else (method, layer)
    if key not in per_model:
        per_model[key] = Explainer(model, method, layer=layer)
    return per_model[key]


def explain(model: nn.Module, images: torch.Tensor, method: str, *, targets: torch.Tensor | None = None,
            layer: str = "layer4") -> torch.Tensor:
    """Heatmaps in [0, 1] at input resolution, one per image.

    Args:
        model: the classifier (its mode and gradients are left as they were).
        images: float [N, 3, H, W], normalised.
        method: one of METHODS.
        targets: int [N] classes to explain; default the predicted classes.
        layer: the stage explained, one of LAYERS.
    Returns:
        float32 [N, H, W] on the CPU; constant maps are all zeros.
    Raises:
        NotApplicable: "cam" on a model whose head is not linear in the pooled layer4 features,
            or at another layer.
    """
    return _explainer(model, method, layer)(images, targets)


def explain_all(model: nn.Module, images: torch.Tensor, methods, *, targets: torch.Tensor | None = None,
                timings: dict | None = None, layer: str = "layer4") -> dict[str, torch.Tensor]:
    """Heatmaps of several methods for one batch (methods not applicable to the model are left out).

    CAM, the gradient methods and EigenCAM share one forward pass, and the gradient methods one
    backward pass to the layer (torch.autograd.grad of the targets' summed logits, as the library's
    loss); each method then weighs the captured activations and gradients with the library's own
    code. The maps equal those of `explain` method by method. Score-CAM runs `FastScoreCAM`.

    Args:
        model: the classifier (its mode and gradients are left as they were).
        images: float [N, 3, H, W], normalised.
        methods: some of METHODS.
        targets: int [N] classes to explain; default the predicted classes.
        timings: if given, filled with method -> seconds this batch cost that method: the shared
            forward (and, for gradient methods, backward) is charged in full to every method that
            used it, so each shows what it would cost alone, plus its own weighting.
        layer: the stage explained, one of LAYERS (CAM is left out at any other than layer4).
    Returns:
        method -> float32 [N, H, W] in [0, 1] on the CPU, in the order of `methods`.
    """
    methods = list(methods)
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"methods: expected some of {', '.join(METHODS)}, found {method!r}")
    if images.dim() != 4:
        raise ValueError(f"images: expected a batch [N, 3, H, W], found shape {tuple(images.shape)}")
    _check_layer(layer)
    cost: dict[str, float] = {}
    out: dict[str, torch.Tensor] = {}
    shared = [m for m in methods if m in _ONE_PASS]
    head = None
    if "cam" in shared:
        try:
            if layer != "layer4":
                raise NotApplicable("cam: layer4 only")
            head = _linear_head(model)
        except NotApplicable:
            shared.remove("cam")
    if shared:
        targets = _one_pass(model, images, shared, targets, head, out, cost, layer)
    for method in methods:
        if method not in _ONE_PASS:
            t0 = time.perf_counter()
            out[method] = explain(model, images, method, targets=targets, layer=layer)
            cost[method] = time.perf_counter() - t0
    if timings is not None:
        timings.update(cost)
    return {m: out[m] for m in methods if m in out}


def _one_pass(model, images, methods, targets, head, out, cost, layer: str = "layer4") -> torch.Tensor:
    """Fill `out` and `cost` for CAM, the gradient methods and EigenCAM; return the targets."""
    explainers = {m: _explainer(model, m, layer) for m in methods if m != "cam"}
    images = images.to(next(model.parameters()).device)
    needs_grad = any(m in _GRADIENT for m in methods)
    seen = []
    with _explaining(model):
        handle = getattr(model, layer).register_forward_hook(lambda module, inputs, output: seen.append(output))
        try:
            t0 = time.perf_counter()
            with torch.set_grad_enabled(needs_grad):
                # an input that requires grad keeps layer4 in the graph even with frozen parameters
                x = images.detach().requires_grad_(needs_grad)
                logits = model(x)
                targets = logits.argmax(1) if targets is None else _check_targets(targets, len(images))
                targets = targets.to(logits.device)
                feats = seen[-1]
                t1 = time.perf_counter()
                grads = None
                if needs_grad:
                    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), feats)
                    grads = grads.detach().cpu()
            t2 = time.perf_counter()
        finally:
            handle.remove()
        feats = feats.detach()
        acts = feats.cpu()
        for method in methods:
            t3 = time.perf_counter()
            if method == "cam":
                with torch.no_grad():
                    out[method] = normalize_maps(_upsample(_cam_from(head, feats, targets), images.shape[-2:]).cpu())
            else:
                out[method] = explainers[method]._from_captured(images, targets.cpu(), acts, grads)
            own = time.perf_counter() - t3
            cost[method] = (t1 - t0) + (t2 - t1 if method in _GRADIENT else 0.0) + own
    return targets.cpu()


@torch.no_grad()
def grid_at(model: nn.Module, input_size: int, layer: str = "layer4") -> int:
    """The side of `layer`'s output for a square input of `input_size` px (a hook and a dummy input)."""
    _check_layer(layer)
    module = getattr(model, layer, None)
    if module is None:
        raise TypeError(f"model: expected a ResNet with a `{layer}` stage, found {type(model).__name__}")
    shapes = []
    handle = module.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[-2:])))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype))
    finally:
        handle.remove()
        model.train(was_training)
    h, w = shapes[0]
    if h != w:
        raise ValueError(f"model: expected a square {layer} grid for a {input_size} px input, found {h}x{w}")
    return h
