"""What the figures share: timing, the synthetic data folder, a briefly trained model, the results file."""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from thesislib.data import LagDataset, Split, load_split
from thesislib.models import create_model
from thesislib.synth import SynthSpec, synthesize

HERE = Path(__file__).resolve().parent


def seconds(fn, repeats: int = 1, warmup: bool = False) -> tuple[float, object]:
    """Best wall-clock time of `repeats` calls of `fn` (CUDA synchronised) and the last result."""
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def quiet():
    """Silence the stock Score-CAM's per-image tqdm bars."""
    return contextlib.redirect_stderr(io.StringIO())


@dataclass
class Figure:
    """One measured pair: ratio = baseline time / our time (> 1: ours is faster)."""

    name: str
    ratio: float | None = None
    detail: str = ""
    target: float | None = None
    skipped: str | None = None

    def line(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped - {self.skipped}"
        hit = "" if self.target is None else (f", target >= {self.target:g}x met" if self.ratio >= self.target
                                              else f", target >= {self.target:g}x MISSED")
        return f"{self.name}: {self.ratio:.2f}x (ours vs baseline) - {self.detail}{hit}"


@dataclass
class Bench:
    """State shared by the figures of one run: device, scale, a synthetic data folder and a model."""

    device: torch.device
    quick: bool
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="thesislib-bench-")))
    _split: Split | None = None
    _model: torch.nn.Module | None = None

    @property
    def root(self) -> Path:
        """A synthetic folder in the LAG layout at 112 px (300 images quick, else 600)."""
        root = self.workdir / "lag"
        if not root.is_dir():
            synthesize(root, SynthSpec(n=300 if self.quick else 600, size=112, seed=0))
        return root

    @property
    def split(self) -> Split:
        if self._split is None:
            self._split = load_split(self.root, 112)
        return self._split

    @property
    def model(self) -> torch.nn.Module:
        """Default-scale ResNet-50 (width 1/16, compact stem, 7x7 grid at 112 px), trained 8 epochs."""
        if self._model is None:
            self._model = trained_model(self.split.train, self.device)
        return self._model

    def images(self, n: int) -> torch.Tensor:
        x, _, _ = self.split.test.batch(slice(0, n))
        return x.to(self.device)


def trained_model(data: LagDataset, device: torch.device, epochs: int = 8) -> torch.nn.Module:
    """A default-scale model trained for a few epochs (past the first, where it predicts the majority
    class), so that Score-CAM's channels are those of a model that learned."""
    torch.manual_seed(0)
    model = create_model("resnet50", width=0.0625, stem="compact").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for x, y in data.batches(32, generator=gen, device=device):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"


def write_results(path: Path, title: str, figures: list[Figure], device: torch.device, command: str,
                  extra: str = "") -> None:
    """The figures with device, torch version, date and commit, as Markdown."""
    lines = [f"# {title}", "", f"- command: `{command}`", f"- device: {device_name(device)}",
             f"- torch {torch.__version__}, Python {platform.python_version()}",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- commit: {commit()}", "", "Ratios are baseline time / our time on the same inputs in the same run "
             "(> 1: ours is faster).", "", "```", *[f.line() for f in figures], "```", ""]
    if extra:
        lines += [extra, ""]
    path.write_text("\n".join(lines))
