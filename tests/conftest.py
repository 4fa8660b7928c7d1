"""Shared fixtures: tiny synthetic data sets and tiny models, made on the spot (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from thesislib.data import load_split
from thesislib.models import create_model
from thesislib.synth import SynthSpec, synthesize


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


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(8, 3, 64, 64)
