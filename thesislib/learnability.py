"""Why a run did not learn: measurements on stored runs.

At the default scale (width-1/16 ResNets without normalisation, each residual branch's last
convolution initialised to zero so that a block starts as the identity) a branch's earlier
convolutions get no cross-entropy gradient until its last convolution has grown, and the models
sit at the majority class for their first ~100 optimiser steps. A weight penalty acts on those
weights from the first step, and Adam scales each weight's step by its own gradient's size: with
no cross-entropy gradient beside it, a penalty of any strength moves a weight by about the
learning rate per step towards zero. `branch_weight_scale` measures the result on a model;
`weight_collapse` puts it beside each run's learning check, at initialisation and at the epoch the
run kept.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["branch_weights", "branch_weight_scale", "weight_collapse", "collapse_by_setting"]


def branch_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights of every residual branch's convolutions before its last one (BasicBlock.conv1,
    Bottleneck.conv1 and conv2): those that see no cross-entropy gradient while the branch's last
    convolution is zero."""
    out = []
    for block in model.modules():
        if isinstance(block, Bottleneck):
            out += [block.conv1.weight, block.conv2.weight]
        elif isinstance(block, BasicBlock):
            out.append(block.conv1.weight)
    return out


def branch_weight_scale(model: nn.Module) -> float:
    """Median |w| over `branch_weights(model)`; NaN for a model without residual blocks."""
    weights = branch_weights(model)
    if not weights:
        return float("nan")
    return float(torch.cat([w.detach().abs().flatten().float() for w in weights]).median())


def weight_collapse(grid, family: str) -> pd.DataFrame:
    """Per run of `family` in `grid` (a `thesislib.study.Grid` whose runs are trained): setting,
    seed, learned, best_epoch, and `branch_weight_scale` at initialisation ("at init", the model
    the run's seed creates) and at the epoch the run kept ("kept")."""
    from thesislib.models import create_model

    rows = []
    part = grid.table[grid.table["family"] == family]
    for row in part.itertuples():
        run = grid.find(family=family, setting=row.setting, seed=row.seed)
        done = run.summary()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.config.seed)
            init = create_model(run.config.model_name, **run.config.model_kwargs())
        rows.append(dict(setting=row.setting, seed=row.seed, learned=bool(done["learned"]),
                         best_epoch=int(done["best_epoch"]), at_init=branch_weight_scale(init),
                         kept=branch_weight_scale(run.load_model())))
    return pd.DataFrame(rows, columns=["setting", "seed", "learned", "best_epoch", "at_init", "kept"])


def collapse_by_setting(table: pd.DataFrame) -> pd.DataFrame:
    """`weight_collapse`'s table per setting, in its order: learned runs of all, and the median over
    seeds of the branch weights' scale at initialisation and at the kept epoch (labelled for reading)."""
    out = table.groupby("setting", sort=False).agg(
        learned=("learned", "sum"), runs=("learned", "size"), at_init=("at_init", "median"), kept=("kept", "median"))
    return out.round(3).rename(columns={"at_init": "branch median |w| at init", "kept": "branch median |w| kept"})
