"""The optimiser and the training-set share of a run: config fields, the optimiser train() builds,
the seeded stratified subset, and run ids that stay as they were at the defaults."""

import pytest
import torch

from thesislib.data import load_split, stratified_fraction
from thesislib.study.config import ConfigError, RunConfig
from thesislib.train import OPTIMIZERS, SGD_MOMENTUM, make_optimizer, train

SMALL = dict(depth=18, width=0.0625, stem="compact", input_size=64, epochs=1, batch_size=8)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
                                       ("rmsprop", torch.optim.RMSprop)])
def test_make_optimizer_builds_the_named_optimiser(name, cls):
    opt = make_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], 0.05)
    assert type(opt) is cls and opt.defaults["lr"] == 0.05
    if name == "sgd":
        assert opt.defaults["momentum"] == SGD_MOMENTUM == 0.9 and not opt.defaults["nesterov"]
    assert set(OPTIMIZERS) == {"adam", "sgd", "rmsprop"}


def test_make_optimizer_names_a_bad_name():
    with pytest.raises(ValueError, match=r"optimizer: expected one of adam, sgd, rmsprop, found 'adamw'"):
        make_optimizer("adamw", [torch.nn.Parameter(torch.zeros(2))], 1e-3)


class _Stop(Exception):
    """Raised by a stand-in to stop a call once it has seen what it needs."""


def test_train_builds_the_optimiser_it_is_given(split, tiny_model, monkeypatch):
    import thesislib.train as T

    seen = []

    def fake(name, params, lr):
        seen.append((name, lr))
        raise _Stop

    monkeypatch.setattr(T, "make_optimizer", fake)
    for name in ("sgd", "rmsprop"):
        with pytest.raises(_Stop):
            train(tiny_model(), split.train, split.val, epochs=1, batch_size=8, lr=0.02, optimizer=name,
                  progress=False, device="cpu")
    assert seen == [("sgd", 0.02), ("rmsprop", 0.02)]


def test_a_run_trains_with_its_configs_optimiser_on_its_share(synth_root, tmp_path, monkeypatch):
    """`study.compute_one` hands the config's optimizer and the reduced training split to train()."""
    import thesislib.train as T
    from thesislib.study.runs import compute_one

    seen = {}

    def fake(model, train_set, val_set, **kw):
        seen.update(train=len(train_set), val=len(val_set), optimizer=kw["optimizer"], lr=kw["lr"])
        raise _Stop

    monkeypatch.setattr(T, "train", fake)
    full = load_split(synth_root, 64, cache_dir=tmp_path / "cache")
    cfg = RunConfig(**SMALL, optimizer="sgd", lr=0.01, train_fraction=0.5, methods=["gradcam"])
    with pytest.raises(_Stop):
        compute_one(cfg.to_dict(), str(synth_root), str(tmp_path / "runs"), threads=1)
    assert seen["optimizer"] == "sgd" and seen["lr"] == 0.01
    assert abs(seen["train"] - len(full.train) / 2) <= 1 and seen["val"] == len(full.val)


def test_defaults_leave_the_run_id_as_it_was():
    base = RunConfig(**SMALL)
    assert base.optimizer == "adam" and base.train_fraction == 1.0
    assert "optimizer" not in base.training_dict() and "train_fraction" not in base.training_dict()
    assert RunConfig(**SMALL, optimizer="adam", train_fraction=1).run_id("d") == base.run_id("d")
    ids = {base.run_id("d"), base.replace(optimizer="sgd").run_id("d"), base.replace(optimizer="rmsprop").run_id("d"),
           base.replace(train_fraction=0.5).run_id("d"), base.replace(train_fraction=0.25).run_id("d")}
    assert len(ids) == 5
    assert RunConfig.from_dict(base.replace(optimizer="sgd", train_fraction=0.5).to_dict()).optimizer == "sgd"


@pytest.mark.parametrize("key, value, expected", [
    ("optimizer", "adamw", "optimizer: expected one of adam, sgd, rmsprop, found 'adamw'"),
    ("optimizer", None, "optimizer: expected one of adam, sgd, rmsprop, found None"),
    ("train_fraction", 0, r"train_fraction: expected a number in \(0, 1\]"),
    ("train_fraction", 1.5, r"train_fraction: expected a number in \(0, 1\].*found 1.5"),
    ("train_fraction", "half", r"train_fraction: expected a number in \(0, 1\].*found 'half'"),
    ("train_fraction", True, r"train_fraction: expected a number in \(0, 1\]"),
])
def test_bad_values_are_named(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        RunConfig.from_dict({**SMALL, key: value}, source="07.yaml")


def test_the_share_is_seeded_stratified_and_nested():
    labels = torch.tensor([0] * 70 + [1] * 30)[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    half = stratified_fraction(labels, 0.5, seed=0)
    assert torch.equal(half, stratified_fraction(labels, 0.5, seed=0))
    assert not torch.equal(half, stratified_fraction(labels, 0.5, seed=1))
    assert torch.bincount(labels[half]).tolist() == [35, 15]  # each class in proportion
    assert torch.equal(half, torch.sort(half).values) and len(set(half.tolist())) == len(half)
    quarter = stratified_fraction(labels, 0.25, seed=0)
    assert torch.bincount(labels[quarter]).tolist() == [18, 8]  # round(17.5), round(7.5)
    assert set(quarter.tolist()) <= set(half.tolist())  # a smaller share lies inside a larger one
    assert torch.equal(stratified_fraction(labels, 1.0, seed=0), torch.arange(100))
    assert torch.bincount(labels[stratified_fraction(labels, 0.001, seed=0)]).tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"train_fraction: expected a number in \(0, 1\], found 0"):
        stratified_fraction(labels, 0, seed=0)


def test_load_split_shrinks_only_the_training_split(synth_root, tmp_path):
    full = load_split(synth_root, 64, cache_dir=tmp_path)
    part = load_split(synth_root, 64, cache_dir=tmp_path, train_fraction=0.5)
    assert set(part.train.indices.tolist()) < set(full.train.indices.tolist())
    assert abs(len(part.train) - len(full.train) / 2) <= 1 and part.train.train
    assert torch.equal(part.val.indices, full.val.indices) and torch.equal(part.test.indices, full.test.indices)


@pytest.mark.parametrize("scale, source, family, setting", [("default", "01_depth", "depth", "18"),
                                                            ("gpu", "04_regularisation", "dropout", "baseline")])
def test_the_beyond_notebooks_reuse_a_study_run_as_their_baseline(scale, source, family, setting):
    """07's Adam, 08's whole training set and 09's model without the cue are runs the study trains anyway."""
    from pathlib import Path

    from thesislib import study
    from thesislib.data import synth_name, synth_spec

    params = Path(__file__).resolve().parents[1] / "params" / scale

    def training(name: str, fam: str, label: str) -> dict:
        p = study.load_params(params / f"{name}.yaml")
        g = study.grid(p["base"], p["experiments"], p["seeds"], data=p.get("data")).table
        cfg = g[(g["family"] == fam) & (g["setting"] == label)]["config"].iloc[0]
        # data None is the embedded synthetic set (without THESISLIB_DATA): compare canonical names
        return {**cfg.training_dict(), "data": synth_name(synth_spec(cfg.data or "synthetic"))}

    want = training(source, family, setting)
    assert training("07_optimizers", "optimizer", "Adam, lr 0.001") == want
    assert training("08_dataset_size", "train_fraction", "100 %") == want
    assert training("09_shortcut", "shortcut", "no cue") == want
