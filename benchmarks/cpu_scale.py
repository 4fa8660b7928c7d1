"""Ratios that fixed the CPU-scale defaults: channels-last training, explanation cost per method.

    python benchmarks/cpu_scale.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from thesislib.explain import Explainer
from thesislib.models import create_model


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def train_step(depth: int, width: float, channels_last: bool, repeats: int) -> float:
    torch.manual_seed(0)
    model = create_model(f"resnet{depth}", width=width, stem="compact")
    x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 2, (32,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _time(step, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), 64 px, batch 32, compact stem")
    print("\ntraining step, channels-last vs contiguous (ratio > 1: channels-last is faster)")
    for depth, width in ((18, 0.125), (34, 0.125), (50, 0.125), (50, 0.25)):
        slow = train_step(depth, width, False, args.repeats)
        fast = train_step(depth, width, True, args.repeats)
        print(f"  resnet{depth} width {width:<6} contiguous {slow * 1e3:6.1f} ms  channels-last {fast * 1e3:6.1f} ms"
              f"  ratio {slow / fast:4.2f}")
    print("\nexplanation time per image relative to Grad-CAM (resnet50, width 1/8, channels-last, 16 images)")
    torch.manual_seed(0)
    model = create_model("resnet50", width=0.125, stem="compact").eval().to(memory_format=torch.channels_last)
    x = torch.randn(16, 3, 64, 64)
    base = None
    for method in ("gradcam", "cam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam"):
        t = _time(lambda e=Explainer(model, method): e(x), max(1, args.repeats // 2)) / len(x)
        base = base or t
        print(f"  {method:<10} {t * 1e3:8.2f} ms/image  x{t / base:7.1f}")


if __name__ == "__main__":
    main()
