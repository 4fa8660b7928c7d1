"""Checkpoint cadence: a large model is checkpointed at most once per CHECKPOINT_SECONDS (and after
its last epoch), a small one after every epoch; the numbers and best.pt do not depend on it."""

import torch

import thesislib.train as T
from thesislib.models import create_model
from thesislib.train import seed_everything, train


def _fresh():
    seed_everything(0)
    return create_model("resnet18", width=0.0625, stem="compact")


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_large_models_checkpoint_by_time_with_the_same_numbers(split, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    writes = []
    real_save = T.atomic_save
    monkeypatch.setattr(T, "atomic_save", lambda obj, path: writes.append(path.name) or real_save(obj, path))
    every = train(_fresh(), split.train, split.val, epochs=3, batch_size=16, checkpoint_dir=tmp_path / "a",
                  progress=False)
    assert writes.count("last.pt") == 3  # a small model: after every epoch

    writes.clear()
    monkeypatch.setattr(T, "SMALL_STATE_BYTES", 0)  # every model is "large" now
    monkeypatch.setattr(T, "CHECKPOINT_SECONDS", 1e9)
    m = _fresh()
    timed = train(m, split.train, split.val, epochs=3, batch_size=16, checkpoint_dir=tmp_path / "b", progress=False)
    assert writes == ["best.pt", "last.pt"]  # only after the last epoch
    assert _strip(timed) == _strip(every)
    best_a = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    best_b = torch.load(tmp_path / "b" / "best.pt", weights_only=True)
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in best_b.items())


def test_large_models_checkpoint_when_the_interval_has_passed(split, tmp_path, monkeypatch):
    writes = []
    real_save = T.atomic_save
    monkeypatch.setattr(T, "atomic_save", lambda obj, path: writes.append(path.name) or real_save(obj, path))
    monkeypatch.setattr(T, "SMALL_STATE_BYTES", 0)
    monkeypatch.setattr(T, "CHECKPOINT_SECONDS", 0.0)
    train(_fresh(), split.train, split.val, epochs=2, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    assert writes.count("last.pt") == 2
