"""Shared fixtures: tiny synthetic data sets and tiny models, made on the spot (nothing downloaded),
and the gate that holds a run mid-training while a test acts on it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch

from thesislib.data import load_split
from thesislib.models import create_model
from thesislib.synth import SynthSpec, synthesize
from thesislib.train import TEST_GATE

# How long a test waits for something that must happen before it calls the suite hung. It guards
# against a hang only: no test passes or fails by how fast the machine is.
HANG_S = 15 * 60


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """120 synthetic photos at 64 px in the LAG layout."""
    root = tmp_path_factory.mktemp("data") / "lag"
    synthesize(root, SynthSpec(n=120, size=64, seed=0))
    return root


@pytest.fixture(scope="session")
def split(synth_root, tmp_path_factory):
    return load_split(synth_root, 64, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture
def tiny_model():
    """A ResNet-18 at 1/16 width with a 4x4 CAM grid at 64 px."""
    def make(name: str = "resnet18", **kwargs):
        torch.manual_seed(0)
        return create_model(name, **{"width": 0.0625, "stem": "compact", **kwargs}).eval()
    return make


def perturbed(model: torch.nn.Module, fc_bias: tuple[float, float] | None = None) -> torch.nn.Module:
    """`model` with every weight moved by seeded noise (0.2 sd), so its maps have structure and its
    CAM a negative part; with `fc_bias`, a classifier bias that makes the confidence move under masking."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
        if fc_bias is not None:
            model.fc.bias.copy_(torch.tensor(fc_bias))
    return model


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(8, 3, 64, 64)


def wait_until(condition: Callable[[], bool], what: str, *, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll `condition` until it holds; fail if `alive()` turns false first, or after HANG_S (a hang)."""
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert alive(), f"gave up waiting: {what} (what should get there stopped first)"
        assert time.monotonic() < deadline, f"no sign after {HANG_S} s: {what}"
        time.sleep(0.05)


class Gate:
    """Runs held after a finished epoch while a test acts on them (thesislib.train's test hook).

    A test holds a run before starting it; the run, once it has checkpointed epoch N, announces it
    and waits until released (or killed, or cancelled). Every process started after the fixture set
    $THESISLIB_TEST_GATE sees it: this process (inline), local pool workers, Slurm jobs.
    """

    hang_s = HANG_S
    until = staticmethod(wait_until)

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def hold(self, run) -> None:
        (self.folder / f"{run.run_id}.hold").touch()

    def release(self, run) -> None:
        (self.folder / f"{run.run_id}.hold").unlink(missing_ok=True)

    def epochs(self, run) -> list[int]:
        """The epochs `run` has announced (since the last `forget`)."""
        return sorted(int(p.name.rsplit(".epoch", 1)[1]) for p in self.folder.glob(f"{run.run_id}.epoch*"))

    def forget(self, run) -> None:
        for p in self.folder.glob(f"{run.run_id}.epoch*"):
            p.unlink()

    def wait(self, run, epoch: int, *, alive: Callable[[], bool] = lambda: True) -> int:
        """Wait until `run` has announced `epoch`; return the process id that trains it."""
        path = self.folder / f"{run.run_id}.epoch{epoch}"
        wait_until(path.exists, f"run {run.run_id} at the end of epoch {epoch}", alive=alive)
        return int(path.read_text())


@pytest.fixture
def gate(tmp_path_factory, monkeypatch):
    """A Gate; every hold is released when the test ends, pass or fail, so nothing stays blocked."""
    folder = tmp_path_factory.mktemp("gate")
    monkeypatch.setenv(TEST_GATE, str(folder))
    yield Gate(folder)
    for p in folder.glob("*.hold"):
        p.unlink()


def _seed_results(flag_seed: int | None = None, references: bool = False):
    """Grid.results()-like rows: settings a and b x seeds 0-2 x Grad-CAM and Score-CAM (with
    `references`, the prior and the ceiling too); `flag_seed` marks that seed of b as not learned."""
    rows = []
    methods = [("gradcam", "Grad-CAM", 0.0), ("scorecam", "Score-CAM", 5.0)]
    if references:
        methods += [("prior", "Prior (mean expert map)", 20.0), ("ceiling", "Ceiling (expert map at CAM grid)", 40.0)]
    for setting, shift in (("a", 0.0), ("b", 10.0)):
        for seed, noise in ((0, -1.0), (1, 1.0), (2, 3.0)):
            for method, label, m_shift in methods:
                rows.append(dict(family="depth", setting=setting, seed=seed, run_id=f"{setting}{seed}", method=method,
                                 method_label=label, iou_area=20 + shift + m_shift + noise, iou_bbox=1.0,
                                 average_drop=50.0, increase_in_confidence=2.0, accuracy=80 + shift + seed,
                                 roc_auc=70.0, f1=60.0, seconds_per_image=0.002, constant_heatmaps=0,
                                 learned=not (setting == "b" and seed == flag_seed)))
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def seed_results() -> Callable[..., pd.DataFrame]:
    """The builder of small `Grid.results()`-like rows the tables' tests share (`_seed_results`)."""
    return _seed_results
