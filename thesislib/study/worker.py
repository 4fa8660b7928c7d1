"""Worker: one run trained (or resumed) and evaluated into its folder, under its lock.

`compute_one` is what every executor runs, in this process, a pool worker or a Slurm job: its
arguments are plain data. It writes every file atomically and done.json last, removes what a
killed process left half-written, and adds only the evaluations a finished run lacks (see
`thesislib.study.runs` for the folder's layout).
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock

from thesislib import __version__
from thesislib.atomic import atomic_write_text, file_sha256
from thesislib.study.config import RunConfig
from thesislib.study.runfolder import Run, say as _say

__all__ = ["compute_one", "git_commit"]


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def git_commit(start: Path | None = None) -> str | None:
    """The project's git commit (with '+dirty' for uncommitted changes), or None outside git."""
    from thesislib.paths import project_root

    cwd = start or project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def _remove_debris(folder: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process left in a run folder
    (called by the lock's holder, the only writer there; error.txt is written by sweeps, unlocked)."""
    for tmp in folder.rglob(".*.*"):
        if tmp.is_file() and not tmp.name.startswith(".error.txt."):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` across processes and machines sharing the folder (blocks while
    another holds it; the operating system releases it when its holder dies, even by kill -9)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


def _tracker(cfg: RunConfig, val_set):
    """on_epoch callback: classification and explainability of the current weights every k epochs.

    Columns come from the metric registry: val_<classification metric> (but accuracy, which the
    history has as val_acc) and track_<metric> for every localisation and faithfulness metric
    except those computed on request only (deletion/insertion, ROAD: not computed while tracking).
    """
    from thesislib.evaluation import classification, evaluate
    from thesislib.metrics import registered
    from thesislib.train import predict

    tracked = [m.name for kind in ("localisation", "faithfulness") for m in registered(kind)
               if not m.on_request]
    classes = [m.name for m in registered("classification") if m.name != "accuracy"]

    def on_epoch(epoch: int, model: torch.nn.Module) -> dict:
        if epoch % cfg.track_every and epoch != cfg.epochs:
            return {}
        # evaluate() already scores the whole split's classification; only an inapplicable
        # method leaves no rows to read it from
        df = evaluate(model, val_set, [cfg.track_method], max_images=cfg.track_images)
        cls = df.iloc[0] if not df.empty else classification(*predict(model, val_set))
        row = {f"val_{k}": float(cls[k]) for k in classes}
        for metric in tracked:
            row[f"track_{metric}"] = float(df[metric].mean()) if metric in df and not df.empty else float("nan")
        return row

    return on_epoch


def compute_one(config: dict, data_root: str, runs_dir: str, *, threads: int | None = 1, progress: bool = False) -> dict:
    """Train (or resume) and evaluate one run; safe to call for a run that is already complete.

    The worker-side entry point: arguments are plain data so any executor can ship them.

    Returns:
        {"run_id", "trained" (bool: trained now), "evaluated" (methods added now), "summary"}.
    """
    from thesislib.data import load_split
    from thesislib.evaluation import summarize
    from thesislib.models import create_model, init_fingerprint
    from thesislib.references import mean_expert_map
    from thesislib.train import default_device, learning_check, predict, seed_everything, train

    cfg = RunConfig.from_dict(config)
    split = load_split(data_root, cfg.input_size, fractions=cfg.split, split_seed=cfg.split_seed,
                       cache_dir=Path(runs_dir) / "cache", train_fraction=cfg.train_fraction,
                       skip_corrupt=cfg.skip_corrupt)
    run = Run(cfg, Path(data_root), split.train.arrays.fingerprint, Path(runs_dir))
    old_threads = torch.get_num_threads()
    device = default_device()
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    trained_now, evaluated = False, []
    try:
        with _locked(run.dir / ".lock"):
            _remove_debris(run.dir)
            if not run.trained:
                if (run.dir / "done.json").is_file():  # trained once, but best.pt fails its check: redo
                    _say(f"{run.checkpoint_problem()}: recomputing run {run.run_id}")
                    (run.dir / "done.json").unlink()
                    shutil.rmtree(run.dir / "eval", ignore_errors=True)
                trained_now = True
                t0 = time.time()
                meta = dict(git_commit=git_commit(), thesislib=__version__, torch=torch.__version__,
                            python=platform.python_version(), device=str(device),
                            device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
                            threads=torch.get_num_threads(), host=platform.node(),
                            started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
                atomic_write_text(run.dir / "config.json", json.dumps(
                    dict(config=cfg.to_dict(), data_root=str(data_root), data_fingerprint=run.fingerprint,
                         run_id=run.run_id), indent=1) + "\n")
                seed_everything(cfg.seed)
                model = create_model(cfg.model_name, **cfg.model_kwargs())
                init_sha256 = init_fingerprint(model)
                history = train(model, split.train, split.val, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                lr=cfg.lr, warmup_steps=cfg.warmup_steps, optimizer=cfg.optimizer, penalty=cfg.penalty,
                                penalty_lambda=cfg.penalty_lambda, seed=cfg.seed, device=device,
                                checkpoint_dir=run.dir, progress=progress, shuffle_labels=cfg.shuffle_labels,
                                on_epoch=_tracker(cfg, split.val) if cfg.track_every else None)
                hist = pd.DataFrame(history)
                _write_csv(hist, run.dir / "history.csv")
                # the epoch best.pt holds: the last for a shuffled-label run (train's default `keep`)
                kept_last = cfg.shuffle_labels or not hist["val_loss"].notna().any()
                best = hist.iloc[-1] if kept_last else hist.loc[hist["val_loss"].idxmin()]
                meta.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            train_seconds=round(time.time() - t0, 2))
                atomic_write_text(run.dir / "meta.json", json.dumps(meta, indent=1) + "\n")
                # `model` holds the best checkpoint: did it learn more than the majority class?
                val_logits, val_labels = predict(model, split.val)
                check = learning_check(val_logits.argmax(1), val_labels)
                summary = dict(run_id=run.run_id, best_epoch=int(best["epoch"]), best_val_loss=float(best["val_loss"]),
                               best_val_acc=float(best["val_acc"]), train_seconds=meta["train_seconds"],
                               majority_rate=check["majority_rate"], learned=check["learned"],
                               learned_margin=check["margin"], val_pred_counts=check["pred_counts"],
                               best_sha256=file_sha256(run.dir / "best.pt"), init_sha256=init_sha256)
                atomic_write_text(run.dir / "done.json", json.dumps(summary, indent=1) + "\n")
            (run.dir / "last.pt").unlink(missing_ok=True)  # also when a kill came between done.json and here
            missing = run.missing_methods()
            if missing:
                model = run.load_model(device)
                data = run.eval_data(split)
                spec = cfg.eval_spec
                atomic_write_text(run.eval_dir / "settings.json", json.dumps(spec.evaluation_dict(), indent=1) + "\n")
                # one call: the model's forward passes and the images are shared by every map
                todo = spec.replace(methods=tuple(m for m in missing if m in spec.methods),
                                    references=tuple(m for m in missing if m in spec.references))
                df = todo.evaluate(model, data, prior=mean_expert_map(split.train))
                for name in missing:  # an inapplicable method is stored empty, so it is not retried
                    _write_csv(df[df["method"] == name], run.eval_dir / f"{name}.csv")
                    evaluated.append(name)
                (run.eval_dir / "summary.csv").unlink(missing_ok=True)  # stale now: rewritten below
            if not (run.eval_dir / "summary.csv").is_file():  # also when a kill came while it was written
                done = run.images([p.stem for p in run.eval_dir.glob("*.csv") if p.stem != "summary"])
                _write_csv(summarize(done) if not done.empty else pd.DataFrame(columns=["method"]),
                           run.eval_dir / "summary.csv")
    finally:
        torch.set_num_threads(old_threads)
    return dict(run_id=run.run_id, trained=trained_now, evaluated=evaluated, summary=run.summary())
