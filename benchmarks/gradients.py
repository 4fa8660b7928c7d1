"""Figure b: six gradient-based methods from one pass (`explain_all`) against six explainers one by one."""

from __future__ import annotations

import torch

from benchmarks.common import Bench, Figure, seconds
from thesislib.explain import Explainer, explain_all

METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")


def run(bench: Bench) -> Figure:
    n = 16 if bench.quick else 32
    model, x = bench.model, bench.images(n)
    with torch.no_grad():
        targets = model(x).argmax(1)
    explainers = [Explainer(model, m) for m in METHODS]
    repeats = 3 if bench.quick else 5
    t_each, each = seconds(lambda: {e.method: e(x, targets) for e in explainers}, repeats, warmup=True)
    t_all, together = seconds(lambda: explain_all(model, x, METHODS, targets=targets), repeats, warmup=True)
    diff = max(float((each[m] - together[m]).abs().max()) for m in METHODS)
    return Figure("gradient methods", t_each / t_all, f"{len(METHODS)} methods, {n} images 112 px, ResNet-50 w1/16, "
                  f"one by one {t_each * 1e3:.0f} ms, one pass {t_all * 1e3:.0f} ms, max |diff| {diff:.1e}",
                  target=2.5)
