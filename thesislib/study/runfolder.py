"""A run: one config trained once into its own folder (see `thesislib.study.runs` for the layout),
its identity, its files and what they hold; shared by the planning side (`thesislib.study.runs`)
and the worker that computes it (`thesislib.study.worker`)."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from thesislib.atomic import file_sha256
from thesislib.study.config import RunConfig

__all__ = ["Run", "CheckpointError", "initial_fingerprint", "say"]


class CheckpointError(RuntimeError):
    """A run's best.pt does not match the sha256 recorded in its done.json; the run is recomputed."""


@dataclass
class Run:
    """A planned or finished run: its config, its directory and what it holds."""

    config: RunConfig
    data_root: Path
    fingerprint: str
    runs_dir: Path

    @property
    def run_id(self) -> str:
        return self.config.run_id(self.fingerprint)

    @property
    def dir(self) -> Path:
        return self.runs_dir / self.run_id

    @property
    def eval_dir(self) -> Path:
        return self.dir / "eval" / self.config.eval_id()

    @property
    def trained(self) -> bool:
        """done.json is written and best.pt matches the sha256 it records (`checkpoint_problem`)."""
        return (self.dir / "done.json").is_file() and self.checkpoint_problem() is None

    def checkpoint_problem(self) -> str | None:
        """Why best.pt cannot be trusted (missing, no sha256 in done.json, another sha256), or None."""
        best = self.dir / "best.pt"
        try:
            expected = self.summary().get("best_sha256")
        except (OSError, ValueError) as err:
            return f"{self.dir / 'done.json'}: unreadable ({err})"
        if not best.is_file():
            return f"{best}: missing"
        if not expected:
            return f"{self.dir / 'done.json'}: no sha256 of best.pt recorded (written by older code)"
        found = file_sha256(best)
        if found != expected:
            return (f"{best}: sha256 {found[:12]}... differs from the {expected[:12]}... recorded in done.json "
                    "(changed or damaged after training)")
        return None

    def missing_methods(self) -> list[str]:
        """The methods and reference maps of the config that have no stored evaluation yet."""
        return [m for m in self.config.scored_ids if not (self.eval_dir / f"{m}.csv").is_file()]

    @property
    def complete(self) -> bool:
        """Trained, every method scored, and the summary written (the last file of a run)."""
        return self.trained and not self.missing_methods() and (self.eval_dir / "summary.csv").is_file()

    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.dir / "history.csv")

    def summary(self) -> dict[str, Any]:
        return json.loads((self.dir / "done.json").read_text())

    def images(self, methods: Iterable[str] | None = None) -> pd.DataFrame:
        """Per-image metrics of the evaluated methods and reference maps (default: the config's;
        methods not applicable are absent)."""
        frames = []
        for m in methods or self.config.scored_ids:
            path = self.eval_dir / f"{m}.csv"
            if path.is_file() and path.stat().st_size > 0:
                df = pd.read_csv(path)
                if not df.empty:
                    frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def load_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The best checkpoint in eval mode (loaded with weights_only=True), in the memory format
        training used on `device` (channels-last where `channels_last_ok`)."""
        from thesislib.models import create_model
        from thesislib.train import memory_format

        problem = self.checkpoint_problem()
        if problem is not None:
            raise CheckpointError(f"{problem}; expected the checkpoint that training wrote: the next compute "
                                  f"(grid.compute(), thesislib sweep) recomputes run {self.run_id} instead of trusting it")
        model = create_model(self.config.model_name, **self.config.model_kwargs())
        model.load_state_dict(torch.load(self.dir / "best.pt", weights_only=True, map_location=device))
        fmt = memory_format(model, self.config.input_size, device)
        return model.to(device, memory_format=fmt).eval()

    def split(self):
        """The data split this run was trained and evaluated on."""
        from thesislib.data import load_split

        return load_split(self.data_root, self.config.input_size, fractions=self.config.split,
                          split_seed=self.config.split_seed, cache_dir=self.runs_dir / "cache",
                          train_fraction=self.config.train_fraction, skip_corrupt=self.config.skip_corrupt)

    def eval_data(self, split=None):
        """The split's part this run is scored on (`EvalSpec.data_of`: config.eval_split)."""
        return self.config.eval_spec.data_of(split or self.split())

    @property
    def pairing(self) -> str:
        """The key that pairs this run with another setting's run of the same seed: equal keys mean
        the same initial weights (`thesislib.models.init_fingerprint`, as recorded in done.json)
        and the same batch order (seed, batch size, training images, input size, labels). Two
        settings are compared by a paired test where their runs' keys agree."""
        recorded = self.summary().get("init_sha256") if (self.dir / "done.json").is_file() else None
        init = recorded or initial_fingerprint(self.config)
        c = self.config
        order = dict(seed=c.seed, batch_size=c.batch_size, data=self.fingerprint, input_size=c.input_size,
                     split=c.split, split_seed=c.split_seed, train_fraction=c.train_fraction,
                     shuffle_labels=c.shuffle_labels, skip_corrupt=c.skip_corrupt)
        return f"{init[:16]}-{_digest(order)}"

    def __repr__(self) -> str:
        state = "complete" if self.complete else "trained" if self.trained else "pending"
        return f"Run({self.run_id}, {state})"


@functools.lru_cache(maxsize=256)
def initial_fingerprint(config: RunConfig) -> str:
    """`init_fingerprint` of the model `compute_one` creates for `config` (its seed, before
    training), computed without touching the caller's random state."""
    from thesislib.models import create_model, init_fingerprint

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return init_fingerprint(create_model(config.model_name, **config.model_kwargs()))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
