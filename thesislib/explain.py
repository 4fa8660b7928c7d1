"""Explainers: class-activation heatmaps in [0, 1] at input resolution, one per image and target.

`explain(model, images, method, targets=None)` is the public entry point. Methods:

- "cam": ours, fc weights x layer4 features (Zhou et al. 2016); defined only for a linear head,
  so a PRECODE model raises `NotApplicable`.
- "gradcam", "gradcam++", "scorecam", "xgradcam", "layercam", "hirescam", "eigencam": from
  pytorch-grad-cam (package grad-cam), target layer `model.layer4`.

Conventions (PROTOCOL): the explained class is the predicted one unless targets are given, one
target per image; ReLU where the method defines it; bilinear upsampling to the input size;
per-image min-max to [0, 1]; a constant map is all zeros, never NaN.

Around pytorch-grad-cam's known traps: every image gets its own target (a single target for a
batch explains the first image only); the model's train/eval mode and its parameters' `.grad`
are restored after each call; hooks are registered only during a call, so an explainer kept
for reuse does not slow down or leak memory in later training; PRECODE explains through its
mean path; Score-CAM's per-image progress bars are silenced and its masked inputs are chunked.
"""

from __future__ import annotations

import contextlib
import io
import weakref

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["explain", "Explainer", "NotApplicable", "METHODS", "LABELS", "cam_raw", "normalize_maps"]

METHODS = ("cam", "gradcam", "gradcam++", "scorecam", "xgradcam", "layercam", "hirescam", "eigencam")
LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
          "xgradcam": "XGrad-CAM", "layercam": "Layer-CAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM"}


class NotApplicable(ValueError):
    """The method is not defined for this model (CAM on a PRECODE head)."""


def _library_class(method: str):
    import pytorch_grad_cam as pgc

    return {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "scorecam": pgc.ScoreCAM,
            "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM,
            "eigencam": pgc.EigenCAM}[method]


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


def _check_linear_head(model: nn.Module) -> None:
    if getattr(model, "precode", None) is not None:
        raise NotApplicable("cam: not applicable to a PRECODE head (CAM needs a linear classifier on the "
                            "pooled layer4 features); use a gradient- or score-based method")
    if not isinstance(getattr(model, "fc", None), nn.Linear) or not hasattr(model, "features"):
        raise NotApplicable("cam: expected a model with `features(x)` (layer4 output) and a linear `fc` head")


@torch.no_grad()
def cam_raw(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CAM at layer4 resolution, before any ReLU or scaling: sum_k w[target, k] * A_k.

    Args:
        images: float [N, 3, H, W]; targets: int64 [N].
    Returns:
        float [N, h, w].
    """
    _check_linear_head(model)
    feats = model.features(images)
    weights = model.fc.weight[targets.to(model.fc.weight.device)]
    return torch.einsum("nc,nchw->nhw", weights.float(), feats.float())


class Explainer:
    """One explainer per model and method, reused across batches.

    Args:
        model: a `thesislib.models.ResNet` (or any module with `layer4`, and for "cam"
            `features` and a linear `fc`).
        method: one of METHODS.
        memory: Score-CAM's budget in bytes for the masked copies of the input it forwards at
            once (pytorch-grad-cam builds them for a whole batch).
        channel_batch: Score-CAM's number of masked inputs per forward pass.
    """

    def __init__(self, model: nn.Module, method: str, *, memory: int = 2**29, channel_batch: int = 128):
        if method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
        if not hasattr(model, "layer4"):
            raise TypeError(f"model: expected a ResNet with a `layer4` stage, found {type(model).__name__}")
        self.method, self.memory = method, memory
        self._model = weakref.ref(model)
        self._cam = None
        if method == "cam":
            _check_linear_head(model)
        else:
            was_training = model.training
            self._cam = _library_class(method)(model=model, target_layers=[model.layer4])
            model.train(was_training)  # the library switches the model to eval mode on creation
            self._release()
            self._cam.batch_size = channel_batch

    def __repr__(self) -> str:
        model = self._model()
        return f"Explainer(method={self.method!r}, model={type(model).__name__ if model else None})"

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
        device = next(model.parameters()).device
        images = images.to(device)
        was_training = model.training
        grads = [p.grad for p in model.parameters()]
        precode = getattr(model, "precode", None)
        sample_eval = precode.sample_eval if precode is not None else False
        model.eval()
        if precode is not None:
            precode.sample_eval = False
        try:
            if targets is None:
                with torch.no_grad():
                    targets = model(images).argmax(1)
            targets = torch.as_tensor(targets).flatten().long()
            if len(targets) != len(images):
                raise ValueError(f"targets: expected one per image ({len(images)}), found {len(targets)}")
            if self.method == "cam":
                raw = cam_raw(model, images, targets)
                up = F.interpolate(raw[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                return normalize_maps(up.cpu())
            return normalize_maps(self._library(model, images, targets))
        finally:
            model.train(was_training)
            if precode is not None:
                precode.sample_eval = sample_eval
            for p, g in zip(model.parameters(), grads):
                p.grad = g

    def _library(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        chunk = len(images)
        if self.method == "scorecam":
            per_image = model.fc.in_features * images[0].numel() * images.element_size()  # layer4 channels
            chunk = max(1, min(len(images), self.memory // max(1, per_image)))
        self._cam.model = model
        self._cam.activations_and_grads = ActivationsAndGradients(model, [model.layer4], None)
        out = []
        try:
            for start in range(0, len(images), chunk):
                x = images[start:start + chunk]
                t = [ClassifierOutputTarget(int(c)) for c in targets[start:start + chunk]]
                with contextlib.redirect_stderr(io.StringIO()):  # Score-CAM's per-image tqdm bars
                    out.append(torch.from_numpy(self._cam(x, targets=t)))
        finally:
            self._release()
        return torch.cat(out)


_EXPLAINERS: "weakref.WeakKeyDictionary[nn.Module, dict[str, Explainer]]" = weakref.WeakKeyDictionary()


def explain(model: nn.Module, images: torch.Tensor, method: str, *, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Heatmaps in [0, 1] at input resolution, one per image.

    Args:
        model: the classifier (its mode and gradients are left as they were).
        images: float [N, 3, H, W], normalised.
        method: one of METHODS.
        targets: int [N] classes to explain; default the predicted classes.
    Returns:
        float32 [N, H, W] on the CPU; constant maps are all zeros.
    Raises:
        NotApplicable: "cam" on a PRECODE model.
    """
    per_model = _EXPLAINERS.setdefault(model, {})
    if method not in per_model:
        per_model[method] = Explainer(model, method)
    return per_model[method](images, targets)
