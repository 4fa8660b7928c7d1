"""The models really learn the synthetic task, and the metrics see real localisation."""

import pytest
import torch

from thesislib.data import load_split
from thesislib.evaluation import evaluate
from thesislib.models import create_model
from thesislib.synth import SynthSpec, synthesize
from thesislib.train import seed_everything, train


def _fit(root, cache):
    split = load_split(root, 64, cache_dir=cache)
    seed_everything(0)
    model = create_model("resnet18", width=0.125, stem="compact")
    history = train(model, split.train, split.val, epochs=8, batch_size=32, seed=0, progress=False)
    return max(h["val_acc"] for h in history), history, model, split


@pytest.mark.slow
def test_resnet18_cpu_width_learns_and_label_noise_hurts(tmp_path):
    torch.set_num_threads(2)
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    synthesize(clean, SynthSpec(n=1000, size=128, seed=0))  # the default 5 % label noise
    synthesize(noisy, SynthSpec(n=1000, size=128, seed=0, label_noise=0.3))
    acc_clean, hist, model, split = _fit(clean, tmp_path / "cache")
    acc_noisy, *_ = _fit(noisy, tmp_path / "cache")
    seconds = sum(h["seconds"] for h in hist)
    print(f"ResNet-18 (width 1/8, 64 px, 600 training images, 8 epochs, {seconds:.0f} s): "
          f"best val acc {100 * acc_clean:.1f}% with 5% label noise, {100 * acc_noisy:.1f}% with 30%")
    assert acc_clean >= 0.80
    assert acc_noisy < acc_clean - 0.08

    # the metrics see real localisation: trained beats the same architecture at initialisation
    seed_everything(0)
    init = create_model("resnet18", width=0.125, stem="compact")
    iou = {name: evaluate(m, split.test, ["gradcam"])["iou_area"].mean()
           for name, m in (("trained", model), ("init", init))}
    print(f"Grad-CAM IoU (A) on {len(split.test)} test images: trained {100 * iou['trained']:.1f}%, "
          f"at initialisation {100 * iou['init']:.1f}%")
    assert iou["trained"] > iou["init"] + 0.03
