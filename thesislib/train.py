"""Training: Adam (or SGD with momentum, RMSprop), cross-entropy plus an L1/L2 penalty plus PRECODE's KL,
best-val-loss checkpoint (the last epoch's weights for a model trained on shuffled labels).

Same seed on the CPU gives the same history: python, numpy and torch are seeded, the batches
draw their order and augmentation from their own seeded generator, and a resumed run restores
both random states. With a checkpoint folder, `last.pt` (model, optimiser, history, random
states) is written atomically after every epoch and `best.pt` whenever the validation loss
improves; a call on a folder that holds `last.pt` resumes where it stopped.

One code path for every device: the training split's uint8 images live on the device and are
augmented a whole batch at a time there (`LagDataset.batches`); on CUDA the forward pass and
loss run under bf16 autocast, in channels-last format, optionally through torch.compile. On
the CPU channels-last is used only where `thesislib.models.channels_last_ok` says it is safe.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thesislib.atomic import atomic_save, atomic_write_text
from thesislib.data import LagDataset
from thesislib.models import channels_last_ok

__all__ = ["seed_everything", "weight_penalty", "train", "default_device", "predict", "validate",
           "learning_check", "memory_format", "with_shuffled_labels", "make_optimizer", "PENALTIES", "OPTIMIZERS", "SGD_MOMENTUM", "AMP", "KEEP",
           "LEARNED_SE"]

PENALTIES = ("none", "l1", "l2")
OPTIMIZERS = ("adam", "sgd", "rmsprop")  # see `make_optimizer`
SGD_MOMENTUM = 0.9
AMP = ("bf16", "off")  # autocast modes of `train`; None picks bf16 on CUDA, off on the CPU
KEEP = ("best", "last")  # which epoch's weights `train` keeps (see its `keep`)
LEARNED_SE = 2.0  # a run has learned if its accuracy beats the majority rate by this many binomial SEs


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weight_penalty(model: nn.Module, kind: str) -> torch.Tensor:
    """Sum of |w| (l1) or w^2 (l2) over conv and linear weights; biases and norm parameters are exempt."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if kind == "l1":
        return sum(w.abs().sum() for w in weights)
    if kind == "l2":
        return sum(w.pow(2).sum() for w in weights)
    raise ValueError(f"penalty: expected one of {', '.join(PENALTIES)}, found {kind!r}")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """The optimiser `name` over `params`: "adam" (torch's defaults, the thesis's), "sgd" (momentum
    SGD_MOMENTUM, no Nesterov, no weight decay: the penalties are part of the loss) or "rmsprop"
    (torch's defaults: alpha 0.99, no momentum)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, found {name!r}")


def with_shuffled_labels(data: LagDataset, seed: int) -> LagDataset:
    """`data` with its labels permuted by a generator seeded with `seed` (class counts kept; the
    images, expert maps and every other split unchanged): the data randomisation test's training set."""
    gen = torch.Generator().manual_seed(seed)
    labels = data.arrays.labels.clone()
    labels[data.indices] = labels[data.indices][torch.randperm(len(data.indices), generator=gen)]
    return LagDataset(dataclasses.replace(data.arrays, labels=labels), data.indices, train=data.train)


def memory_format(model: nn.Module, input_size: int, device: torch.device | str) -> torch.memory_format:
    """channels_last where it is safe (`channels_last_ok`; faster for narrow ResNets on oneDNN and
    with CUDA's tensor cores), else contiguous."""
    return torch.channels_last if channels_last_ok(model, input_size, device) else torch.contiguous_format


@torch.no_grad()
def predict(model: nn.Module, dataset: LagDataset, batch_size: int = 256, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, classes] and labels [N] of a split, in eval mode, without augmentation."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = []
    for start in range(0, len(dataset), batch_size):
        x, _, _ = dataset.batch(slice(start, start + batch_size))
        logits.append(model(x.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(logits), dataset.labels


def learning_check(pred: torch.Tensor, labels: torch.Tensor, classes: int = 2) -> dict:
    """Did a classifier learn anything beyond the majority class?

    Args:
        pred: predicted classes, int64 [N]; labels: true classes, int64 [N].
        classes: number of classes.

    Returns:
        majority_rate (the most frequent label's share), accuracy, margin (LEARNED_SE binomial
        standard errors of the majority rate, sqrt(m (1 - m) / N)), pred_counts (list: predictions
        per class), learned: accuracy > majority_rate + margin and more than one class predicted.
    """
    if pred.shape != labels.shape or pred.dim() != 1 or not len(labels):
        raise ValueError(f"pred, labels: expected two non-empty [N] tensors, found shapes "
                         f"{tuple(pred.shape)} and {tuple(labels.shape)}")
    n = len(labels)
    majority = torch.bincount(labels.cpu(), minlength=classes).max().item() / n
    accuracy = (pred.cpu() == labels.cpu()).sum().item() / n
    margin = LEARNED_SE * (majority * (1 - majority) / n) ** 0.5
    counts = torch.bincount(pred.cpu(), minlength=classes).tolist()
    learned = accuracy > majority + margin and sum(c > 0 for c in counts) > 1
    return dict(majority_rate=majority, accuracy=accuracy, margin=margin, learned=bool(learned), pred_counts=counts)


@torch.no_grad()
def validate(model: nn.Module, data: LagDataset, *, seed: int = 0, device: torch.device | str | None = None,
             memory_format: torch.memory_format = torch.contiguous_format, batch_size: int = 256) -> dict:
    """The validation losses that pick the checkpoint, in eval mode, in float32.

    val_ce: cross-entropy on the mean path (z = mu for PRECODE); val_loss: val_ce + beta * KL (as
    the official PRECODE code's test loss; = val_ce without PRECODE); val_loss_sampled: the same
    with z sampled as in training (noise from `seed` in a forked RNG, so deterministic and leaving
    the training's random state alone; = val_loss without PRECODE); val_acc on the mean path.
    KL and cross-entropy are means over the split.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    pre = getattr(model, "precode", None)
    gen = torch.Generator()  # unused: an evaluation split is not augmented
    n, ce, ce_sampled, kl, correct = len(data), 0.0, 0.0, 0.0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for x, y in data.batches(batch_size, generator=gen, device=device, shuffle=False):
            x = x.contiguous(memory_format=memory_format)
            if pre is None:
                logits = model(x).float()
            else:
                f = model.features(x)
                sample_eval, pre.sample_eval = pre.sample_eval, False
                logits = model.head(f).float()
                kl += pre.kl.item() * len(y)
                pre.sample_eval = True
                ce_sampled += F.cross_entropy(model.head(f).float(), y, reduction="sum").item()
                pre.sample_eval = sample_eval
            ce += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    val_ce = ce / n
    penalty = pre.beta * kl / n if pre is not None else 0.0
    val_loss = val_ce + penalty
    return dict(val_loss=val_loss, val_ce=val_ce, val_acc=correct / n,
                val_loss_sampled=ce_sampled / n + penalty if pre is not None else val_loss)


def _rng_state(gen: torch.Generator) -> dict:
    state = dict(torch=torch.get_rng_state(), loader=gen.get_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


TEST_GATE = "THESISLIB_TEST_GATE"  # see `_test_gate`


def _test_gate(checkpoint_dir: Path, epoch: int) -> None:
    """A hook for tests that need a run still training when they act on it (cancel, kill, a second sweep).

    With $THESISLIB_TEST_GATE naming a folder, a run announces each epoch it has finished (its
    checkpoint step done) as <folder>/<run>.epoch<N>, a file holding its process id, and then waits
    while <folder>/<run>.hold exists; <run> is the checkpoint folder's name (the run id). It reads
    and writes nothing of the run's, so no number changes. Unset (everywhere but the tests), it
    costs one environment lookup per epoch. tests/conftest.py's `gate` fixture drives it.
    """
    folder = os.environ.get(TEST_GATE)
    if not folder:
        return
    folder, run = Path(folder), checkpoint_dir.name
    atomic_write_text(folder / f"{run}.epoch{epoch}", f"{os.getpid()}\n")
    while (folder / f"{run}.hold").exists():
        time.sleep(0.05)


SMALL_STATE_BYTES = 16 * 2**20  # a model state this small is checkpointed after every epoch
CHECKPOINT_SECONDS = 60.0        # else at most once a minute (a kill loses at most that much training)


def train(model: nn.Module, train_set: LagDataset, val_set: LagDataset, *, epochs: int, batch_size: int,
          lr: float = 1e-3, penalty: str = "none", penalty_lambda: float = 0.0, seed: int = 0,
          device: torch.device | str | None = None, checkpoint_dir: str | Path | None = None,
          on_epoch: Callable[[int, nn.Module], dict] | None = None, progress: bool = True,
          amp: str | None = None, compile: bool = False, optimizer: str = "adam",
          shuffle_labels: bool = False, keep: str | None = None, warmup_steps: int = 0) -> list[dict]:
    """Train `model` in place and leave it holding the weights `keep` picks: by default those of
    the epoch with the lowest validation loss, and the last epoch's for shuffled labels.

    Args:
        model: a freshly created model (create it after `seed_everything(seed)` for reproducible
            initial weights).
        train_set, val_set: the splits; `train_set` augments.
        epochs, batch_size, lr: the schedule.
        warmup_steps: over the first this many optimiser steps the learning rate rises linearly,
            lr * s / warmup_steps at step s = 1, 2, ...; 0 (default): lr from the first step.
        penalty, penalty_lambda: "none" | "l1" | "l2" and its weight, added to the loss.
        seed: seeds the batch order and the random augmentations, dropout and PRECODE noise.
        device: default CUDA when present, else CPU.
        checkpoint_dir: where `last.pt` and `best.pt` go; resumes from `last.pt` if present.
        on_epoch: called as on_epoch(epoch, model) after each epoch (model in eval mode, holding
            that epoch's weights); the dict it returns is merged into the epoch's history row.
        progress: show a tqdm bar over epochs.
        amp: "bf16" (torch.autocast around forward and loss), "off", or None: bf16 on CUDA, off
            on the CPU. The weights and the optimiser stay float32.
        compile: run the training forward pass through torch.compile (the checkpoints hold the
            plain module's weights).
        optimizer: one of OPTIMIZERS (see `make_optimizer`).
        shuffle_labels: train on a seeded permutation of the training labels (`with_shuffled_labels`,
            Adebayo et al.'s data randomisation test); validation keeps the true labels.
        keep: which epoch's weights `best.pt` holds and the model ends with: "best" (lowest
            validation loss) or "last". None: "last" with shuffle_labels, else "best". A model
            trained on shuffled labels must not be picked by its loss on the true labels: that
            would keep the epoch that happens to fit them best (typically an early one, before the
            model has fitted the shuffled labels); the last epoch has fitted them longest.

    Returns:
        History: one dict per epoch with epoch, train_loss (the objective: CE + penalty + beta*KL
        on sampled z), train_ce, train_acc, val_loss (the checkpoint criterion, see `validate`),
        val_ce, val_loss_sampled, val_acc, seconds, and what `on_epoch` added.
    """
    if penalty not in PENALTIES:
        raise ValueError(f"penalty: expected one of {', '.join(PENALTIES)}, found {penalty!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size: expected positive integers, found {epochs!r} and {batch_size!r}")
    if amp is not None and amp not in AMP:
        raise ValueError(f"amp: expected one of {', '.join(AMP)} or None, found {amp!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected an integer >= 0, found {warmup_steps!r}")
    if keep is None:
        keep = "last" if shuffle_labels else "best"
    if keep not in KEEP:
        raise ValueError(f"keep: expected one of {', '.join(KEEP)} or None, found {keep!r}")
    device = torch.device(device) if device is not None else default_device()
    if amp is None:
        amp = "bf16" if device.type == "cuda" else "off"
    fmt = memory_format(model, train_set.arrays.images.shape[-1], device)
    model.to(device, memory_format=fmt)
    forward = torch.compile(model) if compile else model
    optim = make_optimizer(optimizer, model.parameters(), lr)
    if shuffle_labels:
        train_set = with_shuffled_labels(train_set, seed)
    gen = torch.Generator().manual_seed(seed)  # batch order and augmentation
    torch.manual_seed(seed + 1)  # dropout and PRECODE noise: seeded apart from the init
    history: list[dict] = []
    best_loss, start, best_state = float("inf"), 0, None
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and (ckpt / "last.pt").is_file():
        state = torch.load(ckpt / "last.pt", weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
        history, start = list(state["history"]), int(state["epoch"])
        best_loss = min((h["val_loss"] for h in history), default=float("inf"))
        _set_rng_state(state["rng"], gen)

    # Checkpoints (best.pt, and last.pt to resume) after every epoch for small models; a large one
    # (full-width ResNet-50 with Adam: ~280 MB a write, longer than a GPU epoch on a small set) at
    # most once per CHECKPOINT_SECONDS and after the last epoch. The numbers do not depend on it.
    small = sum(t.numel() * t.element_size() for t in model.state_dict().values()) <= SMALL_STATE_BYTES
    saved, best_dirty = time.perf_counter(), False
    bar = range(start, epochs)
    if progress:
        from tqdm import tqdm
        bar = tqdm(bar, desc="train", unit="epoch", initial=start, total=epochs, leave=False)
    steps_per_epoch = -(-len(train_set) // batch_size)
    step = start * steps_per_epoch  # optimiser steps taken (a resumed run continues its warm-up)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        # running sums stay on the device: one host sync per epoch, not per step
        total = torch.zeros((), device=device)
        ce_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        for x, y in train_set.batches(batch_size, generator=gen, device=device):
            x = x.contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                logits = forward(x)
                ce = F.cross_entropy(logits.float(), y)
                loss = ce
                if penalty != "none" and penalty_lambda:
                    loss = loss + penalty_lambda * weight_penalty(model, penalty)
                if hasattr(model, "precode_loss"):
                    loss = loss + model.precode_loss()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            step += 1
            if step <= warmup_steps:  # at step warmup_steps the rate reaches lr and stays there
                for group in optim.param_groups:
                    group["lr"] = lr * step / warmup_steps
            optim.step()
            n = len(y)
            total += loss.detach().float() * n
            ce_sum += ce.detach().float() * n
            correct += (logits.detach().argmax(1) == y).sum()
            seen += n
        row = dict(epoch=epoch + 1, train_loss=total.item() / seen, train_ce=ce_sum.item() / seen,
                   train_acc=correct.item() / seen)
        row.update(validate(model, val_set, seed=seed, device=device, memory_format=fmt))
        if on_epoch is not None:
            row.update(on_epoch(epoch + 1, model))
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if progress:
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{row['val_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
        if row["val_loss"] < best_loss or keep == "last":
            best_loss, best_dirty = row["val_loss"], True
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if ckpt is not None and (small or epoch + 1 == epochs or time.perf_counter() - saved >= CHECKPOINT_SECONDS):
            # best.pt first: a resumed run's best.pt never comes from after its last.pt
            if best_dirty:
                atomic_save(best_state, ckpt / "best.pt")
                best_dirty = False
            atomic_save(dict(model=model.state_dict(), optimizer=optim.state_dict(), history=history,
                             epoch=epoch + 1, rng=_rng_state(gen)), ckpt / "last.pt")
            saved = time.perf_counter()
        if ckpt is not None:
            _test_gate(ckpt, epoch + 1)
    if ckpt is not None and (ckpt / "best.pt").is_file():
        model.load_state_dict(torch.load(ckpt / "best.pt", weights_only=True, map_location=device))
    elif best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
