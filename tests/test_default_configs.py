"""Every model and training configuration of params/default trains one step without crashing.

The default scale runs on a CPU whose oneDNN crashes the process in some channels-last backward
passes (see `thesislib.models.channels_last_ok`); this test takes `thesislib.train.train`'s own
code path, memory-format decision included, for each distinct configuration, in this process, so
such a crash fails the test run instead of a user's `make report`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from thesislib.data import Arrays, LagDataset
from thesislib.models import create_model
from thesislib.paths import project_root
from thesislib.study import grid, load_params, long_run_experiments
from thesislib.train import seed_everything, train

PARAMS = project_root() / "params" / "default"
# fields that cannot change which kernels one optimiser step runs
_IGNORED = ("seed", "epochs", "batch_size", "track_every", "track_method", "track_images")


def _distinct_configs() -> list:
    configs: dict[str, object] = {}
    for path in sorted(PARAMS.glob("[0-9]*.yaml")):
        p = load_params(path)
        experiments = dict(p.get("experiments") or {})
        if "long_run" in p:
            experiments.update(long_run_experiments(p["long_run"]))
        if not experiments:
            continue  # 00 and 06 train nothing of their own
        g = grid(p.get("base", {}), experiments, p.get("seeds", [0]), source=str(path))
        for cfg in g.table["config"]:
            key = json.dumps({k: v for k, v in cfg.training_dict().items() if k not in _IGNORED}, sort_keys=True)
            configs.setdefault(key, cfg)
    return list(configs.values())


CONFIGS = _distinct_configs()


def _random_split(size: int, n: int) -> tuple[LagDataset, LagDataset]:
    gen = torch.Generator().manual_seed(size)
    arrays = Arrays(images=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen),
                    maps=torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=gen),
                    labels=torch.arange(n) % 2, names=[f"{i:04d}.jpg" for i in range(n)], fingerprint="random")
    return LagDataset(arrays, torch.arange(n), train=True), LagDataset(arrays, torch.arange(n))


def test_the_default_params_have_models_to_train():
    assert len(CONFIGS) >= 5
    assert {c.depth for c in CONFIGS} == {18, 34, 50}


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in sorted(c.training_dict().items())
                                                                 if k not in _IGNORED + ("split", "split_seed", "lr")))
def test_one_training_step_of_every_default_configuration(cfg):
    torch.set_num_threads(1)
    n = 4  # one batch: one optimiser step
    train_set, val_set = _random_split(cfg.input_size, n)
    seed_everything(0)
    model = create_model(cfg.model_name, **cfg.model_kwargs())
    history = train(model, train_set, val_set, epochs=1, batch_size=n, lr=cfg.lr, penalty=cfg.penalty,
                    penalty_lambda=cfg.penalty_lambda, seed=0, device="cpu", progress=False)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"]) and math.isfinite(history[0]["val_loss"])
