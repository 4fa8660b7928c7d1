"""Explainer: one method on one model, reused across batches; `explain` and `explain_all` (several
methods from one forward and one backward pass). The conventions are the package's
(`thesislib.explain`).
"""

from __future__ import annotations

import contextlib
import io
import time
import weakref

import torch
from torch import nn

from thesislib.explain.maps import cam_from, cam_raw, linear_head, normalize_maps, upsample
from thesislib.explain.methods import REGISTRY, NotApplicable, check_layer, library_class, record

__all__ = ["Explainer", "explain", "explain_all"]


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
        rec = record(method)
        check_layer(layer)
        if not hasattr(model, layer):
            raise TypeError(f"model: expected a ResNet with a `{layer}` stage, found {type(model).__name__}")
        if rec.family == "score" and not fast and not rec.stock:
            raise ValueError(f"fast: {rec.label} exists batched only ({rec.ours}); expected fast=True")
        self.method, self.fast, self.layer = method, fast, layer
        self.stock = rec.family == "score" and not fast  # the library's own Score-CAM
        self.memory = memory if memory is not None or fast else 2**29
        self._model = weakref.ref(model)
        self._cam = None
        if rec.family == "cam":
            linear_head(model)
            if layer not in rec.layers:
                raise NotApplicable(f"{method}: defined at {', '.join(rec.layers)} only (the layer its linear head "
                                    f"pools), found {layer!r}")
        else:
            was_training = model.training
            kwargs = {"memory": self.memory, "batch_size": channel_batch} if rec.family == "score" and fast else {}
            self._cam = library_class(method, fast)(model=model, target_layers=[getattr(model, layer)], **kwargs)
            model.train(was_training)  # the library switches the model to eval mode on creation
            self._release()
            if self.stock:
                self._cam.batch_size = channel_batch or 128

    def __repr__(self) -> str:
        model = self._model()
        fast = ", fast=False" if self.stock else ""
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
            if self._cam is None:  # CAM
                return normalize_maps(upsample(cam_raw(model, images, targets), images.shape[-2:]).cpu())
            return normalize_maps(self._library(model, images, targets))

    def _library(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        chunk = len(images)
        if self.stock:  # the library builds N x C masked inputs at once
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
        if method not in REGISTRY:
            raise ValueError(f"methods: expected some of {', '.join(REGISTRY)}, found {method!r}")
    if images.dim() != 4:
        raise ValueError(f"images: expected a batch [N, 3, H, W], found shape {tuple(images.shape)}")
    check_layer(layer)
    cost: dict[str, float] = {}
    out: dict[str, torch.Tensor] = {}
    shared = [m for m in methods if REGISTRY[m].one_pass]
    head = None
    for m in [m for m in shared if REGISTRY[m].family == "cam"]:
        try:
            if layer not in REGISTRY[m].layers:
                raise NotApplicable(f"{m}: {', '.join(REGISTRY[m].layers)} only")
            head = linear_head(model)
        except NotApplicable:
            shared.remove(m)
    if shared:
        targets = _one_pass(model, images, shared, targets, head, out, cost, layer)
    for method in methods:
        if not REGISTRY[method].one_pass:
            t0 = time.perf_counter()
            out[method] = explain(model, images, method, targets=targets, layer=layer)
            cost[method] = time.perf_counter() - t0
    if timings is not None:
        timings.update(cost)
    return {m: out[m] for m in methods if m in out}


def _one_pass(model, images, methods, targets, head, out, cost, layer: str = "layer4") -> torch.Tensor:
    """Fill `out` and `cost` for CAM, the gradient methods and EigenCAM; return the targets."""
    explainers = {m: _explainer(model, m, layer) for m in methods if REGISTRY[m].family != "cam"}
    images = images.to(next(model.parameters()).device)
    needs_grad = any(REGISTRY[m].gradient for m in methods)
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
            if REGISTRY[method].family == "cam":
                with torch.no_grad():
                    out[method] = normalize_maps(upsample(cam_from(head, feats, targets), images.shape[-2:]).cpu())
            else:
                out[method] = explainers[method]._from_captured(images, targets.cpu(), acts, grads)
            own = time.perf_counter() - t3
            cost[method] = (t1 - t0) + (t2 - t1 if REGISTRY[method].gradient else 0.0) + own
    return targets.cpu()
