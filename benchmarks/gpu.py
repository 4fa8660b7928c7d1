"""Figure e (CUDA): ResNet-50 training images/s at 224 px, and Score-CAM images/s ours vs stock.

The functions take any device, so `gpu_check --device cpu` runs every branch here at toy scale
(bf16 autocast on the CPU, device-resident batches on "cpu").
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import Bench, Figure, seconds
from thesislib.data import Arrays, LagDataset
from thesislib.models import channels_last_ok, create_model


def random_split(n: int, size: int, seed: int = 0) -> LagDataset:
    """A training split of `n` random uint8 images: throughput does not depend on the pixels, and no JPEG is decoded."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    arrays = Arrays(images, torch.zeros(n, size, size, dtype=torch.uint8),
                    torch.randint(0, 2, (n,), generator=gen), [str(i) for i in range(n)], "random")
    return LagDataset(arrays, torch.arange(n), train=True)


def train_throughput(device: torch.device, *, width: float = 1.0, size: int = 224, batch: int = 256, steps: int = 30,
                     warmup: int = 5, amp: bool = True, channels_last: bool = True, compile: bool = False,
                     images: int | None = None) -> dict:
    """Training images/s of a ResNet-50 (imagenet stem, no norm) on device-resident, batch-augmented data.

    channels_last is applied only where `thesislib.models.channels_last_ok` says it is safe (oneDNN
    crashes in some narrow backward passes on the CPU). Returns images_per_s, steps, seconds and
    the settings actually used.
    """
    torch.manual_seed(0)
    model = create_model("resnet50", width=width, stem="imagenet").to(device)
    use_cl = channels_last and channels_last_ok(model, size, device)
    fmt = torch.channels_last if use_cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = random_split(images or batch * 4, size)
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from data.batches(batch, generator=gen, device=device)

    stream = batches()
    model.train()

    def step():
        x, y = next(stream)
        x = x.contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(y)

    for _ in range(warmup):
        step()
    t, n = seconds(lambda: sum(step() for _ in range(steps)))
    return dict(images_per_s=n / t, steps=steps, seconds=t, batch=batch, size=size, width=width, amp=amp,
                channels_last=use_cl, compile=compile)


def scorecam_throughput(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Score-CAM images/s, FastScoreCAM (its defaults: bf16 on CUDA) vs the stock class, same images and targets."""
    from pytorch_grad_cam import ScoreCAM

    from benchmarks.scorecam import fast_class, score

    with torch.no_grad():
        targets = model(x).argmax(1)
    t_stock, stock = seconds(lambda: score(ScoreCAM, model, x, targets))
    t_fast, ours = seconds(lambda: score(fast_class(), model, x, targets), repeats=2, warmup=True)
    diff = np.abs(stock - ours)
    return dict(ours=len(x) / t_fast, stock=len(x) / t_stock, max_diff=float(diff.max()),
                mean_diff=float(diff.mean()))


def run(bench: Bench) -> list[Figure]:
    if bench.device.type != "cuda":
        why = "CUDA only (run `python -m benchmarks --device cuda` or `make gpu-check` on a GPU)"
        return [Figure("resnet50 224px training", skipped=why), Figure("score-cam resnet50 224px", skipped=why)]
    figures = []
    base = train_throughput(bench.device, amp=False, channels_last=False, steps=10)
    fast = train_throughput(bench.device, steps=30)
    figures.append(Figure("resnet50 224px training", fast["images_per_s"] / base["images_per_s"],
                          f"{fast['images_per_s']:.0f} images/s with bf16 + channels_last + device-resident "
                          f"batches (batch {fast['batch']}), {base['images_per_s']:.0f} images/s in float32 "
                          f"contiguous; target >= 3000 images/s on one H100: "
                          f"{'met' if fast['images_per_s'] >= 3000 else 'MISSED'}"))
    torch.manual_seed(0)
    model = create_model("resnet50", width=1.0, stem="imagenet").to(bench.device).eval()
    x = random_split(8 if bench.quick else 16, 224).batch()[0].to(bench.device)
    t0 = time.perf_counter()
    sc = scorecam_throughput(model, x)
    figures.append(Figure("score-cam resnet50 224px", sc["ours"] / sc["stock"],
                          f"{len(x)} images, ours {sc['ours']:.1f} images/s (bf16), stock {sc['stock']:.2f} "
                          f"images/s, max |diff| {sc['max_diff']:.1e}, mean {sc['mean_diff']:.1e} "
                          f"({time.perf_counter() - t0:.0f} s; untrained weights)", target=5))
    return figures
