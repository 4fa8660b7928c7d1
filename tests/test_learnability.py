"""thesislib.learnability: why penalised runs did not learn, measured on models and stored runs."""

import pytest
import torch

from thesislib import learnability as L
from thesislib import study
from thesislib.train import seed_everything, train


def test_branch_weights_are_the_convolutions_before_each_branchs_last(tiny_model):
    r18, r50 = tiny_model("resnet18"), tiny_model("resnet50")
    assert len(L.branch_weights(r18)) == 8 and len(L.branch_weights(r50)) == 2 * 16
    assert all(w.abs().sum() > 0 for w in L.branch_weights(r50))  # the last convolutions (zero at init) are not in
    assert L.branch_weight_scale(r50) == pytest.approx(
        float(torch.cat([w.detach().abs().flatten() for w in L.branch_weights(r50)]).median()))
    assert L.branch_weight_scale(torch.nn.Linear(2, 2)) != L.branch_weight_scale(torch.nn.Linear(2, 2))  # NaN


def _trained(split, penalty: str, lam: float, epochs: int = 4):
    from thesislib.models import create_model

    seed_everything(0)
    model = create_model("resnet18", width=0.0625, stem="compact")
    before = L.branch_weight_scale(model)
    train(model, split.train, split.val, epochs=epochs, batch_size=16, penalty=penalty, penalty_lambda=lam,
          progress=False, keep="last")
    return before, L.branch_weight_scale(model)


def test_under_adam_any_penalty_shrinks_the_branches_that_cross_entropy_leaves_alone(split):
    # 4 epochs of 72 images at batch 16: 20 optimiser steps of lr 1e-3
    before, none = _trained(split, "none", 0.0)
    _, weak = _trained(split, "l1", 1e-5)
    _, strong = _trained(split, "l1", 1e-3)
    assert abs(none - before) < 0.01 * before  # no cross-entropy gradient behind a zero last convolution
    assert before - weak > 0.05 * before  # the weakest penalty of the thesis shrinks them all the same
    assert before - strong > 0.05 * before
    assert (before - weak) > 0.5 * (before - strong)  # a hundred times the penalty, less than twice the shrinking


def test_weight_collapse_reads_each_run_at_init_and_at_its_kept_epoch(synth_root, tmp_path):
    base = dict(input_size=64, stem="compact", width=0.0625, depth=18, epochs=2, batch_size=16, eval_images=4,
                methods=["gradcam"], references=[], data=str(synth_root))
    grid = study.grid(base, {"weight_decay": [{}, {"penalty": "l1", "penalty_lambda": 1e-3}]}, [0],
                      runs=str(tmp_path / "runs"), executor="inline").compute(progress=False)
    table = L.weight_collapse(grid, "weight_decay").set_index("setting")
    assert len(table) == 2 and table["at_init"].nunique() == 1  # paired by seed: the same initial weights
    [plain, penalised] = table.index
    assert table.loc[penalised, "kept"] < table.loc[penalised, "at_init"]
    assert table.loc[penalised, "kept"] < table.loc[plain, "kept"]
    run = grid.find(family="weight_decay", setting=penalised, seed=0)
    assert table.loc[penalised, "kept"] == pytest.approx(L.branch_weight_scale(run.load_model()))
    summary = L.collapse_by_setting(table.reset_index())
    assert list(summary.index) == [plain, penalised] and summary["runs"].tolist() == [1, 1]
    assert summary.loc[penalised, "branch median |w| kept"] == pytest.approx(table.loc[penalised, "kept"], abs=5e-4)
