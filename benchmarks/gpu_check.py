"""The CUDA path end to end, at smoke scale, plus the GPU throughput figures (`make gpu-check`).

    python -m benchmarks.gpu_check [--device cuda|cpu] [--out FILE] [--wheels DIR] [--compile]

On a GPU machine with only the stack (torch, torchvision, numpy, scipy, pandas, scikit-image,
matplotlib, seaborn, tqdm, pyyaml) it installs the wheel folder, if one is present and
pytorch-grad-cam is missing, with `pip install --no-index --no-deps --target <tmp>` (nothing from
the network), then:

1. trains a tiny ResNet-18 on a small synthetic set on the device (bf16 autocast, device-resident
   batches), evaluates every explainer, every reference map and every metric on the device and
   again on the CPU with the same weights, and checks that they agree within TOLERANCES;
2. measures ResNet-50 (width 1, imagenet stem) 224 px training images/s, float32 against bf16 +
   channels_last + device-resident batches;
3. measures Score-CAM images/s, FastScoreCAM against the stock class, on a ResNet-50 at 224 px;
4. times the batched Otsu / IoU (A) / IoU (BB) on 1,000 maps kept on the device against the per-image
   scikit-image loop (the figure `python -m benchmarks` reports for the CPU);

and writes benchmarks/RESULTS-gpu.md. Exits 3 without a GPU and 1 if an agreement check fails.
`--device cpu` is a dry run of every branch at toy scale (bf16 autocast on the CPU, batches resident
on "cpu"); it writes only to --out if given. Takes about 3-5 minutes on one H100 (estimated).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

# Device vs CPU, same weights. Maps are in [0, 1]; metrics are fractions, compared as the mean
# over images per method. The bounds allow CUDA's TF32 convolutions (gradient methods, CAM) and
# FastScoreCAM's bf16 masked passes: Otsu masks then differ in a few border pixels.
TOLERANCES = {
    "map_mean_abs": 0.02,        # mean |device - CPU| over the pixels of every method's maps
    "scorecam_map_mean_abs": 0.05,
    "metric_mean_abs": 0.03,     # |mean over images (device) - mean over images (CPU)| per method and metric
    "classification_abs": 1e-6,  # accuracy, ROC AUC, F1: predictions must not change
}


def ensure_grad_cam(wheels: Path) -> str:
    """Import pytorch-grad-cam, installing it from the wheel folder (offline) if it is missing."""
    try:
        import pytorch_grad_cam  # noqa: F401
        return "pytorch-grad-cam already installed"
    except ImportError:
        pass
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found:
        raise SystemExit(f"gpu-check: pytorch-grad-cam is not installed and {wheels}/ holds no wheels; "
                         "run `make wheels` on a machine with PyPI access and copy the folder here")
    target = Path(tempfile.mkdtemp(prefix="thesislib-wheels-"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--disable-pip-version-check", "--target", str(target), *map(str, found)], check=True)
    sys.path.insert(0, str(target))
    import pytorch_grad_cam  # noqa: F401
    return f"installed {len(found)} wheels from {wheels}/ into {target}"


def smoke(device: torch.device, workdir: Path, dry: bool) -> tuple[list[str], list[str]]:
    """Train, explain and score on `device` and on the CPU; (report lines, failed checks)."""
    import pandas as pd

    from thesislib.data import load_split
    from thesislib.evaluation import evaluate
    from thesislib.explain import METHODS, explain_all
    from thesislib.metrics import registered
    from thesislib.models import create_model
    from thesislib.references import REFERENCES
    from thesislib.synth import SynthSpec, synthesize
    from thesislib.train import train

    root = synthesize(workdir / "lag", SynthSpec(n=40 if dry else 160, size=64, seed=0))
    split = load_split(root, 64)
    torch.manual_seed(0)
    model = create_model("resnet18", width=0.0625 if dry else 0.25, stem="compact")
    t0 = time.perf_counter()
    history = train(model, split.train, split.val, epochs=2 if dry else 4, batch_size=16, device=device,
                    amp="bf16", progress=False, seed=0)
    lines = [f"smoke training on {device.type}: {len(history)} epochs in {time.perf_counter() - t0:.1f} s, "
             f"val_acc {history[-1]['val_acc']:.3f} (bf16 autocast)"]
    failed = []
    x, _, _ = split.test.batch(slice(0, 8))
    cpu_model = create_model("resnet18", width=0.0625 if dry else 0.25, stem="compact")
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    model.eval(), cpu_model.eval()
    with torch.no_grad():
        targets = cpu_model(x).argmax(1)
    on_dev = explain_all(model, x.to(device), METHODS, targets=targets.to(device))
    on_cpu = explain_all(cpu_model, x, METHODS, targets=targets)
    for m in on_cpu:
        diff = float((on_dev[m] - on_cpu[m]).abs().mean())
        bound = TOLERANCES["scorecam_map_mean_abs" if m == "scorecam" else "map_mean_abs"]
        ok = diff <= bound
        lines.append(f"  map {m:<10} mean |{device.type} - cpu| {diff:.1e} (<= {bound}) {'ok' if ok else 'FAILED'}")
        failed += [] if ok else [f"map {m}"]
    prior = split.train.batch()[2].mean(0)
    kwargs = dict(references=REFERENCES, prior=prior, max_images=8 if dry else 32, batch_size=8)
    t0 = time.perf_counter()
    dev_rows = evaluate(model, split.test, METHODS, **kwargs)
    t_dev = time.perf_counter() - t0
    cpu_rows = evaluate(cpu_model, split.test, METHODS, **kwargs)
    cols = [m.name for m in registered() if m.kind != "classification" and m.name in dev_rows]
    a, b = dev_rows.groupby("method")[cols].mean(), cpu_rows.groupby("method")[cols].mean()
    worst = (a - b).abs().stack()
    bound = TOLERANCES["metric_mean_abs"]
    lines.append(f"  evaluate on {device.type}: {len(dev_rows)} rows ({dev_rows.method.nunique()} methods and "
                 f"references, {len(cols)} per-image metrics) in {t_dev:.1f} s; largest |{device.type} - cpu| "
                 f"of a per-method mean: {worst.max():.3f} ({'/'.join(worst.idxmax())}, <= {bound})")
    failed += [f"metric {m}/{c}" for (m, c), v in worst.items() if not v <= bound]
    for c in ("accuracy", "roc_auc", "f1"):
        d = abs(float(dev_rows[c].iloc[0]) - float(cpu_rows[c].iloc[0]))
        if not d <= TOLERANCES["classification_abs"]:
            failed.append(f"classification {c} ({d:.3g})")
    pd.testing.assert_index_equal(a.index, b.index)
    return lines, failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: a dry run of every branch at toy scale")
    ap.add_argument("--out", help="results file (default on cuda: benchmarks/RESULTS-gpu.md; on cpu: none)")
    ap.add_argument("--wheels", default=str(ROOT / "wheels"), help="wheel folder for offline installs")
    ap.add_argument("--compile", action="store_true", help="also measure training through torch.compile")
    args = ap.parse_args(argv)
    dry = args.device == "cpu"
    if not dry and not torch.cuda.is_available():
        print("gpu-check: FAILED - no CUDA device is visible to torch "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). Run it on a GPU machine, "
              "or `python -m benchmarks.gpu_check --device cpu` for a dry run.", file=sys.stderr)
        return 3
    device = torch.device(args.device)
    start = time.perf_counter()
    print(ensure_grad_cam(Path(args.wheels)), flush=True)
    from benchmarks import common, gpu

    lines, failed = smoke(device, Path(tempfile.mkdtemp(prefix="thesislib-gpu-check-")), dry)
    print("\n".join(lines), flush=True)
    scale = dict(width=0.0625, size=64, batch=8, steps=2, warmup=1) if dry else dict(steps=30)
    base = gpu.train_throughput(device, amp=False, channels_last=False, **{**scale, "steps": scale["steps"] // 2 or 1})
    fast = gpu.train_throughput(device, **scale)
    runs = [("float32, contiguous", base), ("bf16 + channels_last + resident batches", fast)]
    if args.compile:
        try:
            runs.append(("... + torch.compile", gpu.train_throughput(device, compile=True, **scale)))
        except Exception as err:  # optional figure: a missing compiler must not cost the others
            lines.append(f"torch.compile training not measured: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
            print(lines[-1], flush=True)
    for label, r in runs:
        lines.append(f"resnet50 w{r['width']:g} {r['size']} px training, batch {r['batch']}, {label}: "
                     f"{r['images_per_s']:.0f} images/s (channels_last used: {r['channels_last']})")
        print(lines[-1], flush=True)
    torch.manual_seed(0)
    from thesislib.models import create_model

    model = create_model("resnet50", width=scale.get("width", 1.0), stem="imagenet").to(device).eval()
    x = gpu.random_split(2 if dry else 8, scale.get("size", 224)).batch()[0].to(device)
    sc = gpu.scorecam_throughput(model, x)
    lines.append(f"score-cam resnet50 w{scale.get('width', 1.0):g} {x.shape[-1]} px, {len(x)} images: ours "
                 f"{sc['ours']:.2f} images/s, stock {sc['stock']:.2f} images/s, ratio {sc['ours'] / sc['stock']:.1f}x, "
                 f"max |diff| {sc['max_diff']:.1e}, mean {sc['mean_diff']:.1e}")
    print(lines[-1], flush=True)
    from benchmarks import metrics as metric_bench

    met = metric_bench.run(common.Bench(device=device, quick=True))
    lines.append(f"metrics on {device.type}: {met.ratio:.1f}x the per-image scikit-image loop - {met.detail}")
    print(lines[-1], flush=True)
    lines.append(f"total {time.perf_counter() - start:.0f} s")
    figures = [common.Figure("resnet50 training (bf16 vs float32)", fast["images_per_s"] / base["images_per_s"],
                             f"{fast['images_per_s']:.0f} vs {base['images_per_s']:.0f} images/s"),
               common.Figure("score-cam (ours vs stock)", sc["ours"] / sc["stock"],
                             f"{sc['ours']:.2f} vs {sc['stock']:.2f} images/s"), met]
    out = args.out or (None if dry else str(ROOT / "benchmarks" / "RESULTS-gpu.md"))
    if out:
        verdict = "all agreement checks passed" if not failed else "FAILED: " + ", ".join(failed)
        common.write_results(Path(out), "GPU check" + (" (CPU dry run)" if dry else ""), figures, device,
                             "python -m benchmarks.gpu_check" + (" --device cpu" if dry else ""),
                             extra="```\n" + "\n".join(lines) + "\n```\n\n" + verdict + "\n\nTolerances: " +
                             ", ".join(f"{k} {v}" for k, v in TOLERANCES.items()))
        print(f"wrote {out}")
    if failed:
        print("gpu-check: FAILED - " + ", ".join(failed), file=sys.stderr)
        return 1
    print("gpu-check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
