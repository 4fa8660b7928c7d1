"""Where one default-scale run spends its time: training, validation, tracking, each explainer,
the reference maps, the faithfulness passes and the metrics, timed separately.

    python -m benchmarks.profile_run                       # ResNet-18 (batch 16) and ResNet-50 (batch 32)
    python -m benchmarks.profile_run --depth 50 --epochs 2 # shorter: per-epoch costs are what matter

The run is the params file's (default params/default/01_depth.yaml over its shared.yaml), at each
depth, with every method and reference map; the batch size is RQ1's for ResNet-18/34 (16) and the
RQ2/4/5 baseline's for ResNet-50 (32) unless --batch-size says otherwise. Training goes through
`thesislib.train.train` and evaluation's parts through the functions `thesislib.evaluation.evaluate`
calls, on the same batches of the same scored images; `evaluate` itself is timed too, as a check
that the parts add up. A method's time is what it costs alone (the shared forward and backward
pass charged to each gradient method, as `explain_all` reports it); the table also gives what the
one shared pass of the gradient methods, CAM and EigenCAM costs together.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from thesislib import evaluation as E
from thesislib import explain as X
from thesislib import metrics as M
from thesislib import references as R
from thesislib import train as T
from thesislib.data import load_split, resolve_root
from thesislib.models import create_model
from thesislib.study.config import RunConfig
from thesislib.study.costs import COSTS
from thesislib.study.grids import load_params
from thesislib.study.worker import _tracker

DEFAULT_PARAMS = Path(__file__).resolve().parent.parent / "params" / "default" / "01_depth.yaml"
BATCH = {18: 16, 34: 16, 50: 32}  # RQ1's batch size; ResNet-50: the RQ2/4/5 baseline's
ONE_PASS = "explain: one shared pass (cam, gradient methods, eigencam)"
# paid once per process, not per run: the data (decoded once into the runs folder's cache, then
# read from it), the imports of pytorch-grad-cam (OpenCV, scikit-learn) and numba's compilation
ONCE = ("data: decode and split (once)", "warm-up: imports, numba compilation (once per process)")

# CPU seconds of this process (every thread of it) by default, --wall for wall-clock. Other work on
# the machine inflates both, CPU seconds less (shared caches and memory bandwidth only; on a 2-core
# machine under a load of 7 they came out about twice those of a quiet machine)
now = time.process_time


class Clock:
    """Seconds and counts per named part."""

    def __init__(self):
        self.seconds, self.count = defaultdict(float), defaultdict(int)

    def add(self, part: str, seconds: float, count: int = 1) -> None:
        self.seconds[part] += seconds
        self.count[part] += count

    def timed(self, part: str, fn, count: int = 1):
        def wrapper(*args, **kwargs):
            t0 = now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(part, now() - t0, count)
        return wrapper


def config(params: Path, depth: int, batch_size: int | None, epochs: int | None, images: int | None) -> RunConfig:
    values = load_params(params)
    base = dict(values.get("base", {}))
    for entry in (values.get("experiments") or {}).get("depth", []):
        if entry.get("depth") == depth:
            base.update(entry)  # the depth's own settings at this scale, as its notebook trains it
    base.update(depth=depth, batch_size=batch_size or BATCH[depth], methods=list(X.METHODS),
                references=list(R.REFERENCES))
    if epochs:
        base["epochs"] = epochs
    if images:
        base["eval_images"] = images
    return RunConfig.from_dict(base, source=str(params))


def profile(cfg: RunConfig, data: str | None, workdir: Path) -> tuple[Clock, dict]:
    clock = Clock()
    t0 = now()
    root = resolve_root(data if data is not None else cfg.data)
    split = load_split(root, cfg.input_size, fractions=cfg.split, split_seed=cfg.split_seed, cache_dir=workdir / "cache")
    clock.add(ONCE[0], now() - t0)
    t0 = now()
    T.seed_everything(cfg.seed)
    warm = create_model(cfg.model_name, **cfg.model_kwargs()).eval()
    E.evaluate(warm, split.val, list(cfg.methods), references=list(cfg.references), max_images=2,
               prior=R.mean_expert_map(split.train))
    clock.add(ONCE[1], now() - t0)

    # training, with validation, tracking and checkpoints timed apart from the epochs' steps
    T.seed_everything(cfg.seed)
    model = create_model(cfg.model_name, **cfg.model_kwargs())
    tracker = _tracker(cfg, split.val) if cfg.track_every else None
    tracked_epochs = []

    def on_epoch(epoch, m):
        if epoch % cfg.track_every and epoch != cfg.epochs:
            return {}
        tracked_epochs.append(epoch)
        return clock.timed("tracking (per tracked epoch)", tracker)(epoch, m)

    saved_validate, saved_save = T.validate, T.atomic_save
    T.validate = clock.timed("validation (per epoch)", saved_validate)
    T.atomic_save = clock.timed("checkpoints (per epoch)", saved_save, count=0)
    t0 = now()
    try:
        history = T.train(model, split.train, split.val, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          optimizer=cfg.optimizer, penalty=cfg.penalty, penalty_lambda=cfg.penalty_lambda,
                          seed=cfg.seed, device="cpu", checkpoint_dir=workdir / "run", progress=False,
                          on_epoch=on_epoch if tracker else None)
    finally:
        T.validate, T.atomic_save = saved_validate, saved_save
    spent = now() - t0
    clock.count["checkpoints (per epoch)"] = cfg.epochs
    other = sum(clock.seconds[p] for p in ("validation (per epoch)", "tracking (per tracked epoch)",
                                           "checkpoints (per epoch)"))
    clock.add("training steps (per epoch)", spent - other, cfg.epochs)

    # evaluation, part by part, on evaluate()'s batches of its scored images
    model.eval()
    data_eval = split[cfg.eval_split]
    prior = R.mean_expert_map(split.train)
    t0 = now()
    logits, labels = T.predict(model, data_eval)
    clock.add("eval: predict the split", now() - t0)
    rows = E.stratified_subset(labels, cfg.eval_images)
    targets_all = logits.argmax(1)
    grid = X.grid_at(model, cfg.input_size)
    n = len(rows)
    one_pass = [m for m in cfg.methods if m in X.ONE_PASS]
    for start in range(0, n, 32):
        part = rows[start:start + 32]
        x, _, maps = data_eval.batch(part)
        targets = targets_all[part]
        k = len(part)
        heat = {}
        for method in cfg.methods:  # each alone: what it costs when a run asks for it only
            t0 = now()
            heat[method] = X.explain_all(model, x, [method], targets=targets)[method]
            clock.add(f"explain: {method}", now() - t0, k)
        t0 = now()
        X.explain_all(model, x, one_pass, targets=targets)
        clock.add(ONE_PASS, now() - t0, k)
        for ref in cfg.references:
            t0 = now()
            heat[ref] = R.reference_maps(ref, x, maps, prior=prior, grid=grid,
                                         index=[data_eval.names[i] for i in part.tolist()])
            clock.add(f"reference: {ref}", now() - t0, k)
        t0 = now()
        expert = M.binarize(maps)
        y_conf = M.target_confidence(model, x, targets)
        clock.add("faithfulness: Y (once per batch)", now() - t0, k)
        for h in heat.values():
            t0 = now()
            M.masked_confidence(model, x, h, targets, convention="tensor")
            M.masked_confidence(model, x, h, targets, convention="black")
            clock.add("faithfulness: O, both conventions (per map)", now() - t0, k)
            t0 = now()
            M.otsu_ious(h, maps)
            M.pointing_game(h, expert)
            M.relevance_mass(h, expert)
            clock.add("metrics: Otsu, IoUs, pointing, mass (per map)", now() - t0, k)
    t0 = now()
    E.evaluate(model, data_eval, list(cfg.methods), references=list(cfg.references), prior=prior,
               max_images=cfg.eval_images)
    check = now() - t0
    best = min(history, key=lambda h: h["val_loss"])
    return clock, dict(evaluate_seconds=check, images=n, tracked=len(tracked_epochs), best_epoch=best["epoch"],
                       train_images=len(split.train),
                       best_val_acc=best["val_acc"], train_steps=-(-len(split.train) // cfg.batch_size) * cfg.epochs)


def table(cfg: RunConfig, clock: Clock, info: dict) -> str:
    """The parts with seconds, unit cost and share of the run as configured (its methods only once
    per shared pass: the one-pass line stands for the gradient methods, CAM and EigenCAM)."""
    counted = [p for p in clock.seconds
               if not (p.startswith("explain: ") and p.split(": ")[1] in X.ONE_PASS) and p not in ONCE]
    total = sum(clock.seconds[p] for p in counted)
    lines = [f"resnet{cfg.depth} width {cfg.width:g} {cfg.stem} {cfg.input_size} px, batch {cfg.batch_size}, "
             f"{cfg.epochs} epochs ({info['train_steps']} steps), track every {cfg.track_every} "
             f"({info['tracked']} tracked, {cfg.track_images} images), {info['images']} scored images; "
             f"best epoch {info['best_epoch']}, val acc {100 * info['best_val_acc']:.1f} %",
             f"{'part':<58} {'seconds':>9} {'per unit':>12} {'share':>7}"]
    for part in clock.seconds:
        s, k = clock.seconds[part], clock.count[part]
        unit = "image" if part.startswith(("explain", "reference", "faithfulness", "metrics")) else \
            "epoch" if "epoch" in part else ""
        per = f"{s / k * (1e3 if unit == 'image' else 1):.3g} {'ms/img' if unit == 'image' else 's'}" if k else ""
        share = f"{100 * s / total:6.1f}%" if part in counted else "   (once)" if part in ONCE else "  (alone)"
        lines.append(f"{part:<58} {s:9.2f} {per:>12} {share:>7}")
    evaluated = sum(clock.seconds[p] for p in counted if p.startswith(("eval", "explain", "reference",
                                                                          "faithfulness", "metrics")))
    lines.append(f"{'total of the run (shares of this)':<58} {total:9.2f}")
    lines.append(f"check: evaluate() of every method and reference took {info['evaluate_seconds']:.2f} s "
                 f"against {evaluated:.2f} s for its parts above (the shared pass counted once)")
    return "\n".join(lines)


def per_image_costs(cfg: RunConfig, clock: Clock, info: dict) -> dict[str, float]:
    """costs.json's entry for this depth (`thesislib.study.costs.per_image`): CPU seconds per
    training image and epoch ("steps": the optimiser steps; "train": with validation, checkpoints
    and tracking at the profiled rate), and per scored image of each method and of a reference map
    with both faithfulness passes and the metrics ("method": the slowest one-pass gradient method
    alone; "reference": the mean reference map)."""
    images = info["train_images"] * cfg.epochs
    per = {p: clock.seconds[p] / clock.count[p] for p in clock.seconds if clock.count[p]}
    scoring = per["faithfulness: O, both conventions (per map)"] + per["metrics: Otsu, IoUs, pointing, mass (per map)"]
    training = sum(clock.seconds[p] for p in ("training steps (per epoch)", "validation (per epoch)",
                                                  "checkpoints (per epoch)", "tracking (per tracked epoch)"))
    out = {"steps": clock.seconds["training steps (per epoch)"] / images, "train": training / images}
    for m in ("scorecam", "scorecam-paper", "eigencam"):
        out[m] = per[f"explain: {m}"] + scoring
    gradient = [per[f"explain: {m}"] for m in X.GRADIENT_METHODS if f"explain: {m}" in per]
    out["method"] = max(gradient) + scoring
    refs = [per[f"reference: {r}"] for r in R.REFERENCES if f"reference: {r}" in per]
    out["reference"] = sum(refs) / len(refs) + scoring
    return {k: float(f"{v:.3g}") for k, v in out.items()}


NORMS = ({"norm": "batch"}, {"norm": "group", "groups": 16}, {"norm": "group", "groups": 32},
         {"norm": "group", "groups": 64})  # the thesis's settings (RQ4)


def norm_factors(cfg: RunConfig, steps: int = 20) -> dict[str, float]:
    """costs.json's "train_factor" (`thesislib.study.costs.train_factor`): the optimiser steps' time
    per image with each of the thesis's normalisations over the time without, for `cfg`'s model at
    its batch size (the default ResNet-50)."""
    from thesislib.study.costs import norm_key, step_seconds

    def seconds(**norm) -> float:
        c = cfg.replace(**norm)
        return step_seconds(create_model(c.model_name, **c.model_kwargs()), c.batch_size, c.input_size, steps)

    plain = seconds(norm="none")
    return {norm_key(n["norm"], n.get("groups", cfg.groups)): float(f"{seconds(**n) / plain:.3g}") for n in NORMS}


def fresh_probe(times: int = 5) -> float:
    """The speed probe (`thesislib.study.costs.probe_seconds`) as `machine_speed` meets it: in a new
    process, before any other work (within a process that has trained, it ran up to 1.6 times
    faster; between new processes it varies by up to a third): the median of `times` processes."""
    import statistics
    import subprocess

    code = "from thesislib.study.costs import probe_seconds; print(probe_seconds())"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                  text=True).stdout) for _ in range(times))


def write_costs(path: Path, measured: dict[int, dict[str, float]], cfg: RunConfig, command: str,
                factors: dict[str, float] | None = None) -> None:
    """Replace the measured depths' entries of costs.json at `path` (the others stay), the speed
    probe's time now ("probe", what `machine_speed` compares with) and the normalisations' factors
    when given, and say in its "about" how and when they were measured."""

    import json
    import platform
    from datetime import datetime, timezone

    costs = json.loads(path.read_text())
    if (cfg.input_size, cfg.width, cfg.stem) != (costs["input_size"], costs["width"], costs["stem"]):
        raise SystemExit(f"{path}: holds costs for {costs['input_size']} px, width {costs['width']}, {costs['stem']} "
                         f"stem; the profiled runs are {cfg.input_size} px, width {cfg.width}, {cfg.stem} stem")
    costs["per_image"].update({str(d): c for d, c in measured.items()})
    costs["probe"] = float(f"{fresh_probe():.3g}")
    if factors is not None:
        costs["train_factor"] = factors
    costs["measured"] = (f"{command}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
                         f"{os.cpu_count()} cores, torch {torch.__version__}, CPU seconds of one process")
    path.write_text(json.dumps(costs, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_run", description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="a notebook's params file (its shared.yaml "
                    "beside it is merged under it); default params/default/01_depth.yaml")
    ap.add_argument("--depth", type=int, nargs="+", choices=(18, 34, 50), default=[18, 50])
    ap.add_argument("--batch-size", type=int, default=None, help="default: 16 for ResNet-18/34, 32 for ResNet-50")
    ap.add_argument("--epochs", type=int, default=None, help="default: the params' (shorter is fine: costs per epoch)")
    ap.add_argument("--images", type=int, default=None, help="scored images (default: the params' eval_images)")
    ap.add_argument("--data", default=None, help="data folder (default: the params' data, else the embedded set)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as one run of a local pool)")
    ap.add_argument("--wall", action="store_true", help="wall-clock seconds (default: this process's CPU seconds, "
                    "which other work on the machine changes less; the same as wall-clock on a quiet one)")
    ap.add_argument("--blas-threads", type=int, default=None, help="BLAS threads of numpy and OpenCV (default: "
                    "theirs, as in a run of the report; EigenCAM's SVD runs there)")
    ap.add_argument("--write-costs", nargs="?", const=COSTS, type=Path, default=None, metavar="FILE",
                    help="write the measured per-image costs of each depth into FILE (default: "
                         "thesislib/study/costs.json, which sweep's and the report's plans read); measure on a "
                         "quiet machine, with the default --epochs 2 --images 32 or more")
    args = ap.parse_args(argv)
    global now
    now = time.perf_counter if args.wall else time.process_time
    if args.blas_threads:  # numpy's and OpenCV's BLAS (EigenCAM's SVD), which torch's setting leaves alone
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.blas_threads, user_api="blas")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} torch thread(s), BLAS threads {args.blas_threads or 'default'}, "
          f"{'wall-clock' if args.wall else 'CPU'} seconds")
    measured = {}
    for depth in args.depth:
        cfg = config(args.params, depth, args.batch_size, args.epochs, args.images)
        with tempfile.TemporaryDirectory(prefix="thesislib-profile-") as tmp:
            clock, info = profile(cfg, args.data, Path(tmp))
        print("\n" + table(cfg, clock, info), flush=True)
        measured[depth] = per_image_costs(cfg, clock, info)
    factors = None
    if 50 in args.depth:
        deep = config(args.params, 50, args.batch_size, args.epochs, args.images)
        factors = norm_factors(deep)
        print(f"\ntraining steps with each normalisation over those without, ResNet-50, batch {deep.batch_size}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in factors.items()))
    if args.write_costs is not None:
        command = "python -m benchmarks.profile_run " + " ".join(argv if argv is not None else sys.argv[1:])
        write_costs(args.write_costs, measured, cfg, command, factors)
        print(f"\nwrote the per-image costs of ResNet-{', '.join(map(str, measured))} to {args.write_costs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
