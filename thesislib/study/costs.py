"""Costs: what computing the missing runs of a sweep takes, before it starts.

A run's cost is timed by finished runs of the same model, input size and data in the runs folder,
else by the measured per-image costs of the default scale's models in costs.json beside this
module (`measured`, `per_image`), scaled by this machine's speed now (`machine_speed`). costs.json
holds the numbers of one measurement and what they cover; re-measure with
`python -m benchmarks.profile_run --depth 18 34 50 --epochs 2 --images 32` (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import functools
import heapq
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from thesislib.study.config import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from thesislib.study.runs import Run

__all__ = ["COSTS", "measured", "per_image", "train_factor", "step_seconds", "probe_seconds", "machine_speed", "estimate",
           "makespan"]

COSTS = Path(__file__).with_name("costs.json")


@functools.lru_cache(maxsize=None)
def measured(path: Path = COSTS) -> dict[str, Any]:
    """The measured costs (costs.json): about (what was measured, how), input_size, width and stem
    of the models measured, and per_image: depth -> cost name -> CPU seconds per image with one
    torch thread.

    Raises:
        ConfigError: the file is missing, not JSON, or lacks one of those keys.
    """
    try:
        costs = json.loads(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"{path}: the measured per-image costs cannot be read ({err})") from None
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    missing = [k for k in ("input_size", "width", "stem", "per_image") if k not in costs]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}; expected input_size, width, stem and "
                          "per_image (depth -> cost -> seconds per image)")
    return costs


def per_image(depth: int, key: str, *, path: Path = COSTS) -> float:
    """CPU seconds per image with one torch thread of `key` for a ResNet of `depth` at the measured
    size, width and stem: "train" (per training image and epoch: the optimiser steps, the validation
    pass and tracking every second epoch), "steps" (the optimiser steps alone, what
    `machine_speed` measures again), a method's name, "method" or "reference" (per scored image:
    its map with both faithfulness passes and the metrics).

    Raises:
        ConfigError: costs.json has no such depth or no such cost for it, naming what it has.
    """
    table = measured(path)["per_image"]
    if str(depth) not in table:
        raise ConfigError(f"{path}: per_image: no costs for depth {depth}; measured: {', '.join(table)}")
    if key not in table[str(depth)]:
        raise ConfigError(f"{path}: per_image.{depth}: no cost {key!r}; measured: {', '.join(table[str(depth)])}")
    return float(table[str(depth)][key])


def norm_key(norm: str, groups: int) -> str:
    """costs.json's name for a normalisation setting in `train_factor`: "none", "batch", "group-32"."""
    return f"group-{groups}" if norm == "group" else norm


def train_factor(norm: str, groups: int, *, path: Path = COSTS) -> float:
    """How many times the training of a model with this normalisation costs against one without
    (costs.json's optional "train_factor": norm_key -> the optimiser steps' time over the steps'
    time without normalisation, measured at the default ResNet-50; 1 where it has none). BatchNorm
    and GroupNorm layers cost more than the convolutions at the default scale's width (a GroupNorm
    ResNet-50 with 64 groups about twice as much per step), and the per-image costs are measured
    without them.

    Raises:
        ConfigError: a factor that is not a positive number, naming it.
    """
    factors = measured(path).get("train_factor") or {}
    value = factors.get(norm_key(norm, groups), 1.0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{path}: train_factor.{norm_key(norm, groups)}: expected a positive number, found {value!r}")
    return float(value)


def makespan(seconds: Iterable[float], workers: int) -> float:
    """Wall time of jobs of these durations taken in this order by `workers` processes, each job
    starting on the first process to come free (as a local pool or a job array takes its runs): the
    sum over `workers` where the jobs are many and alike, more where a few long ones come last."""
    if workers < 1:
        raise ValueError(f"makespan: workers: expected at least 1, found {workers}")
    free = [0.0] * workers
    for s in seconds:
        heapq.heapreplace(free, free[0] + s)
    return max(free)


def _counts(run: "Run", cache: dict) -> tuple[int, int]:
    """(training images, evaluation images) of a run's split, from the data's file list."""
    from thesislib.data import THESIS_FRACTIONS, scan

    if run.data_root not in cache:
        cache[run.data_root] = len(scan(run.data_root))
    n = cache[run.data_root]
    c = run.config
    f = THESIS_FRACTIONS if c.split == "thesis" else c.split
    n_train = max(1, round(n * f[0] * getattr(c, "train_fraction", 1.0)))
    n_eval = max(1, round(n * f[1 if c.eval_split == "val" else 2]))
    return n_train, min(n_eval, c.eval_images or n_eval)


def _shape(run: "Run") -> tuple:
    """What a run's speed depends on most: its model, its input and its data."""
    c = run.config
    return (c.depth, c.width, c.stem, c.input_size, run.fingerprint)


def _rates(runs_dir: Path, planned: list["Run"], counts: dict, per_shape: int = 3) -> dict[tuple, dict[str, float]]:
    """Seconds per training image and per scored image and method, from finished runs in the
    runs folder with the same model, input size and data as some planned run (a few per shape)."""
    import pandas as pd

    from thesislib.study.config import RunConfig
    from thesislib.study.runs import Run

    wanted = {_shape(r): r for r in planned}
    samples: dict[tuple, list[dict[str, float]]] = {}
    for done in sorted(runs_dir.glob("*/done.json")):
        try:
            stored = json.loads((done.parent / "config.json").read_text())
            cached = Run(RunConfig.from_dict(stored["config"]), Path(stored["data_root"]), stored["data_fingerprint"],
                         runs_dir)
            shape = _shape(cached)
            if shape not in wanted or len(samples.get(shape, [])) >= per_shape:
                continue
            n_train, _ = _counts(Run(cached.config, wanted[shape].data_root, cached.fingerprint, runs_dir), counts)
            rate = {"train": float(pd.read_csv(done.parent / "history.csv")["seconds"].mean()) / n_train}
            for csv in done.parent.glob("eval/*/*.csv"):
                if csv.stem != "summary" and csv.stat().st_size:
                    df = pd.read_csv(csv)
                    if "seconds" in df and len(df):
                        rate[csv.stem] = float(df["seconds"].mean())
        except (OSError, ValueError, KeyError):
            continue  # made by other code, or damaged: not a sample
        samples.setdefault(shape, []).append(rate)
    return {shape: {k: sum(s[k] for s in ss if k in s) / sum(k in s for s in ss) for k in set().union(*ss)}
            for shape, ss in samples.items()}




def _reference_rate(config, speed: float) -> dict[str, float] | None:
    """Seconds per training image ("train", times its normalisation's `train_factor`) and per scored
    image of each method and reference map for `config` from the measured costs (`measured`), times
    `speed` (this machine's time over the reference machine's); None for a model, width or stem they
    do not cover."""
    from thesislib.references import REFERENCES

    costs = measured()
    if str(config.depth) not in costs["per_image"] or config.width != costs["width"] or config.stem != costs["stem"]:
        return None
    scale = speed * (config.input_size / costs["input_size"]) ** 2
    out = {"train": per_image(config.depth, "train") * scale * train_factor(config.norm, config.groups)}
    for m in config.scored_ids:
        key = m if m in costs["per_image"][str(config.depth)] else "reference" if m in REFERENCES else "method"
        out[m] = per_image(config.depth, key) * scale
    return out


def step_seconds(model: "torch.nn.Module", batch: int, size: int, steps: int = 20) -> float:
    """CPU seconds per image of an Adam step of `model` (cross-entropy, random images of `size` px,
    `batch` per step) with one torch thread, in the memory format training gives it
    (`thesislib.train.memory_format`): the median of `steps` steps after one untimed step. The model
    is trained in place."""
    import time

    import torch
    import torch.nn.functional as F

    from thesislib.train import memory_format

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fmt = memory_format(model, size, "cpu")
        model.to(memory_format=fmt).train()
        gen = torch.Generator().manual_seed(0)
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(batch, 3, size, size, generator=gen).contiguous(memory_format=fmt)
        y = torch.randint(0, 2, (batch,), generator=gen)
        seconds = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            optim.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optim.step()
            seconds.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return sorted(seconds[1:])[len(seconds[1:]) // 2] / batch


def probe_seconds(steps: int = 20) -> float:
    """`step_seconds` of the speed probe: ResNet-18 at the default scale, batch 16 (about 1.5 s).
    Fewer than about 20 steps vary by a fifth between calls on a quiet machine."""
    from thesislib.models import create_model

    return step_seconds(create_model("resnet18", width=0.0625, stem="compact"), 16, measured()["input_size"], steps)


def machine_speed(steps: int = 20) -> float:
    """This machine's time now over the time of the machine that measured the costs, for the same
    speed probe (`probe_seconds`; costs.json's "probe", else its ResNet-18 "steps"): 2 means half as
    fast, now (other work on the machine counts)."""
    reference = measured().get("probe") or per_image(18, "steps")
    return probe_seconds(steps) / reference


def estimate(runs: list["Run"], *, speed: float | None = None) -> "pd.DataFrame":
    """What computing the missing part of `runs` costs, one row per run that is not complete.

    Columns: run_id, run (its settings), todo ("train + evaluate" or the methods to evaluate),
    train_images (epochs x training images), maps (scored images x missing methods and reference
    maps), scorecam_forwards (Score-CAM's masked forward passes: one per layer4 channel and scored
    image), seconds (CPU seconds with one thread: from finished runs of the same model, input size
    and data in the runs folder, else from the measured costs (`per_image`) times `speed`, else NaN), timed_by ("runs
    folder", "measured costs" or "").

    Args:
        speed: this machine's time over the measured costs' machine (`machine_speed`); None measures it
            when some run has no finished run to be timed by.
    """
    import pandas as pd

    from thesislib.models import pooled_dim
    from thesislib.study.runs import run_label, distinct

    todo = [r for r in distinct(runs) if not r.complete]
    counts: dict = {}
    rates = _rates(todo[0].runs_dir, todo, counts) if todo else {}
    rows, to_train = [], set()
    for r in todo:
        c = r.config
        n_train, n_scored = _counts(r, counts)
        missing = r.missing_methods()
        trains = not r.trained and r.run_id not in to_train  # a run with two evaluation settings trains once
        to_train.add(r.run_id)
        train_images = c.epochs * n_train if trains else 0
        forwards = n_scored * pooled_dim(c.depth, c.width) * sum(m.startswith("scorecam") for m in missing)
        seconds, timed_by = float("nan"), ""
        for source in ("runs folder", "measured costs"):
            if source == "runs folder":
                rate = rates.get(_shape(r))
            else:
                if speed is None and _reference_rate(c, 1.0) is not None:
                    speed = machine_speed()
                rate = _reference_rate(c, speed or 1.0)
            if rate is not None and (not trains or "train" in rate) and all(m in rate for m in missing):
                seconds = train_images * rate.get("train", 0.0) + sum(n_scored * rate[m] for m in missing)
                timed_by = source
                break
        rows.append(dict(run_id=r.run_id, run=run_label(r),
                         todo="train + evaluate" if trains else "evaluate " + ", ".join(missing),
                         train_images=train_images, maps=n_scored * len(missing), scorecam_forwards=forwards,
                         seconds=seconds, timed_by=timed_by))
    return pd.DataFrame(rows, columns=["run_id", "run", "todo", "train_images", "maps", "scorecam_forwards", "seconds",
                                       "timed_by"])
