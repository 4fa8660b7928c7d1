"""Figure a: FastScoreCAM against pytorch-grad-cam's ScoreCAM on a briefly trained default-scale model."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import Bench, Figure, quiet, seconds

STOCK_BATCH = 128  # masked inputs per forward for the stock class, as thesislib's Explainer sets it


def fast_class():
    """thesislib's FastScoreCAM, or None while it does not exist."""
    from thesislib import explain

    return getattr(explain, "FastScoreCAM", None)


def score(cls, model, x: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Maps [N, H, W] of one Score-CAM class (stock or FastScoreCAM with its defaults), targets given."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = cls(model=model, target_layers=[model.layer4])
    if cls is ScoreCAM:
        cam.batch_size = STOCK_BATCH
    with quiet():
        return cam(x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def run(bench: Bench) -> Figure:
    name = "score-cam"
    fast = fast_class()
    if fast is None:
        return Figure(name, skipped="thesislib.explain.FastScoreCAM does not exist yet")
    from pytorch_grad_cam import ScoreCAM

    n = 4 if bench.quick else 16
    model, x = bench.model, bench.images(n)
    with torch.no_grad():
        targets = model(x).argmax(1)
    t_stock, stock = seconds(lambda: score(ScoreCAM, model, x, targets))
    t_fast, ours = seconds(lambda: score(fast, model, x, targets), repeats=2)
    diff = float(np.abs(stock - ours).max())
    return Figure(name, t_stock / t_fast, f"{n} images 112 px, ResNet-50 w1/16 compact (7x7 grid, "
                  f"{model.fc.in_features} channels), stock {t_stock / n * 1e3:.0f} ms/image, "
                  f"ours {t_fast / n * 1e3:.0f} ms/image, max |diff| {diff:.1e}"
                  + (" (ours in bf16)" if bench.device.type == "cuda" else ""), target=5 if bench.device.type == "cuda" else 1.5)
