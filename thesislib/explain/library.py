"""Library explainers: pytorch-grad-cam's classes, and our subclasses of them (FastScoreCAM,
PaperScoreCAM, SignedEigenCAM), made on first use so `import thesislib.explain` stays light.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["derived"]


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


# mixed into pytorch_grad_cam.ScoreCAM as `FastScoreCAM` on first use, see `derived`
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


# mixed into pytorch_grad_cam.EigenCAM on first use, see `derived`
class _SignedEigenCAM:
    """EigenCAM whose projection correlates positively with the channel-mean activation."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        projection = torch.from_numpy(np.asarray(super().get_cam_image(
            input_tensor, target_layer, targets, activations, grads, eigen_smooth)))
        mean = torch.as_tensor(np.asarray(activations)).float().mean(1)
        return _orient(projection, mean).numpy()


_DERIVED: dict[str, type] = {}


def derived() -> dict[str, type]:
    """The library subclasses, made on first use: pytorch-grad-cam imports OpenCV and scikit-learn,
    seconds that `import thesislib.explain` (tables, figures, the report) should not pay."""
    if not _DERIVED:
        import pytorch_grad_cam as pgc

        for name, mixins, base in (("FastScoreCAM", (_FastScoreCAM,), pgc.ScoreCAM),
                                   ("PaperScoreCAM", (_PaperScoreCAM, _FastScoreCAM), pgc.ScoreCAM),
                                   ("SignedEigenCAM", (_SignedEigenCAM,), pgc.EigenCAM)):
            _DERIVED[name] = type(name, (*mixins, base),
                                  {"__doc__": mixins[0].__doc__, "__module__": "thesislib.explain"})
    return _DERIVED

