"""Explainers: class-activation heatmaps in [0, 1] at input resolution, one per image and target.

`explain(model, images, method, targets=None)` explains one method; `explain_all(model, images,
methods)` explains several from one forward and one backward pass. Each method is one record
(`thesislib.explain.methods.REGISTRY`), from which METHODS, LABELS, CLASS_AGNOSTIC and
GRADIENT_METHODS derive. Methods:

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

One module per job: `methods` (the records), `library` (pytorch-grad-cam and our subclasses of
it), `maps` (CAM, scaling, duplicates, grids), `explainer` (Explainer, explain, explain_all).
"""

from thesislib.explain.explainer import _EXPLAINERS, Explainer, explain, explain_all
from thesislib.explain.maps import cam_raw, duplicate_groups, grid_at, linear_head, normalize_maps
from thesislib.explain.methods import (CLASS_AGNOSTIC, GRADIENT_METHODS, LABELS, LAYERS, METHODS, ONE_PASS, REGISTRY,
                                       Method, NotApplicable, check_layer, library_class)

__all__ = ["explain", "explain_all", "Explainer", "FastScoreCAM", "PaperScoreCAM", "NotApplicable", "Method",
           "REGISTRY", "METHODS", "LABELS", "CLASS_AGNOSTIC", "GRADIENT_METHODS", "ONE_PASS", "LAYERS", "cam_raw",
           "normalize_maps", "duplicate_groups", "grid_at", "linear_head", "check_layer", "library_class"]


def __getattr__(name: str):
    if name in ("FastScoreCAM", "PaperScoreCAM"):
        from thesislib.explain.library import derived

        return derived()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
