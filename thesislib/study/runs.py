"""Runs: each config is trained once into its own directory and reused by every notebook.

    runs/<run_id>/                 run_id = hash of the training fields and the data's content
        config.json                the full config, the data folder and its fingerprint
        meta.json                  git commit, versions, device, threads, timings
        history.csv                one row per epoch
        best.pt                    lowest-validation-loss weights (state dict; weights_only)
        last.pt                    resumable state while training; removed once done
        done.json                  written last: training is complete (summary, and whether the
                                   best checkpoint learned more than the majority class)
        eval/<eval_id>/<id>.csv    per-image metrics of one method or reference map for one set
                                   of evaluation settings
        eval/<eval_id>/summary.csv their per-method means (%)
    runs/cache/                    decoded data sets

Work goes through an executor with `submit(fn, *args) -> future` (`.done()`, `.result()`):
in-process, a local process pool (default on a multi-core CPU), or a cluster executor such as
submitit's. Every file is written atomically; a run that was interrupted resumes from its last
epoch; a finished run is never recomputed, and only missing evaluations are added to it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from thesislib import __version__
from thesislib.atomic import atomic_write_text
from thesislib.study.config import RunConfig

__all__ = ["Run", "RunError", "plan", "execute", "run_all", "InlineExecutor", "default_executor", "git_commit"]


class RunError(RuntimeError):
    """Some runs failed; the others were kept. The message lists each failure and its log."""


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
        return (self.dir / "done.json").is_file()

    def missing_methods(self) -> list[str]:
        """The methods and reference maps of the config that have no stored evaluation yet."""
        return [m for m in self.config.scored_ids if not (self.eval_dir / f"{m}.csv").is_file()]

    @property
    def complete(self) -> bool:
        return self.trained and not self.missing_methods()

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

        model = create_model(self.config.model_name, **self.config.model_kwargs())
        model.load_state_dict(torch.load(self.dir / "best.pt", weights_only=True, map_location=device))
        fmt = memory_format(model, self.config.input_size, device)
        return model.to(device, memory_format=fmt).eval()

    def split(self):
        """The data split this run was trained and evaluated on."""
        from thesislib.data import load_split

        return load_split(self.data_root, self.config.input_size, fractions=self.config.split,
                          split_seed=self.config.split_seed, cache_dir=self.runs_dir / "cache")

    def eval_data(self, split=None):
        """The split's part this run is scored on (config.eval_split)."""
        return (split or self.split())[self.config.eval_split]

    def __repr__(self) -> str:
        state = "complete" if self.complete else "trained" if self.trained else "pending"
        return f"Run({self.run_id}, {state})"


def plan(configs: Iterable[RunConfig], runs_dir: str | os.PathLike | None = None) -> list[Run]:
    """Resolve each config's data folder and content hash, and so its run directory."""
    from thesislib.data import fingerprint, resolve_root, scan
    from thesislib.paths import runs_dir as default_runs_dir

    root_dir = default_runs_dir(runs_dir)
    fingerprints: dict[Path, str] = {}
    out = []
    for cfg in configs:
        root = resolve_root(cfg.data)
        if root not in fingerprints:
            fingerprints[root] = fingerprint(scan(root))
        out.append(Run(cfg, root, fingerprints[root], root_dir))
    return out


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (blocks while another process holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tracker(cfg: RunConfig, val_set):
    """on_epoch callback: classification and explainability of the current weights every k epochs.

    Columns come from the metric registry: val_<classification metric> (but accuracy, which the
    history has as val_acc) and track_<metric> for every localisation and faithfulness metric
    except deletion/insertion (not computed while tracking).
    """
    from thesislib.evaluation import classification, evaluate
    from thesislib.metrics import registered
    from thesislib.train import predict

    tracked = [m.name for kind in ("localisation", "faithfulness") for m in registered(kind)
               if m.name not in ("deletion_auc", "insertion_auc")]
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


def execute(config: dict, data_root: str, runs_dir: str, *, threads: int | None = 1, progress: bool = False) -> dict:
    """Train (or resume) and evaluate one run; safe to call for a run that is already complete.

    The worker-side entry point: arguments are plain data so any executor can ship them.

    Returns:
        {"run_id", "trained" (bool: trained now), "evaluated" (methods added now), "summary"}.
    """
    from thesislib.data import load_split
    from thesislib.evaluation import evaluate, summarize
    from thesislib.models import create_model
    from thesislib.references import mean_expert_map
    from thesislib.train import default_device, learning_check, predict, seed_everything, train

    cfg = RunConfig.from_dict(config)
    split = load_split(data_root, cfg.input_size, fractions=cfg.split, split_seed=cfg.split_seed,
                       cache_dir=Path(runs_dir) / "cache")
    run = Run(cfg, Path(data_root), split.train.arrays.fingerprint, Path(runs_dir))
    old_threads = torch.get_num_threads()
    device = default_device()
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    trained_now, evaluated = False, []
    try:
        with _locked(run.dir / ".lock"):
            if not run.trained:
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
                history = train(model, split.train, split.val, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                lr=cfg.lr, penalty=cfg.penalty, penalty_lambda=cfg.penalty_lambda, seed=cfg.seed,
                                device=device, checkpoint_dir=run.dir, progress=progress,
                                on_epoch=_tracker(cfg, split.val) if cfg.track_every else None)
                hist = pd.DataFrame(history)
                _write_csv(hist, run.dir / "history.csv")
                best = hist.loc[hist["val_loss"].idxmin()] if hist["val_loss"].notna().any() else hist.iloc[-1]
                meta.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            train_seconds=round(time.time() - t0, 2))
                atomic_write_text(run.dir / "meta.json", json.dumps(meta, indent=1) + "\n")
                # `model` holds the best checkpoint: did it learn more than the majority class?
                val_logits, val_labels = predict(model, split.val)
                check = learning_check(val_logits.argmax(1), val_labels)
                summary = dict(run_id=run.run_id, best_epoch=int(best["epoch"]), best_val_loss=float(best["val_loss"]),
                               best_val_acc=float(best["val_acc"]), train_seconds=meta["train_seconds"],
                               majority_rate=check["majority_rate"], learned=check["learned"],
                               learned_margin=check["margin"], val_pred_counts=check["pred_counts"])
                atomic_write_text(run.dir / "done.json", json.dumps(summary, indent=1) + "\n")
                (run.dir / "last.pt").unlink(missing_ok=True)
            missing = run.missing_methods()
            if missing:
                model = run.load_model(device)
                data = run.eval_data(split)
                atomic_write_text(run.eval_dir / "settings.json", json.dumps(cfg.evaluation_dict(), indent=1) + "\n")
                methods = [m for m in missing if m in cfg.methods]
                references = [m for m in missing if m in cfg.references]
                # one call: the model's forward passes and the images are shared by every map
                df = evaluate(model, data, methods, references=references, prior=mean_expert_map(split.train),
                              target=cfg.target, max_images=cfg.eval_images, deletion_steps=cfg.deletion_steps)
                for name in missing:  # an inapplicable method is stored empty, so it is not retried
                    _write_csv(df[df["method"] == name], run.eval_dir / f"{name}.csv")
                    evaluated.append(name)
                done = run.images([p.stem for p in run.eval_dir.glob("*.csv") if p.stem != "summary"])
                if not done.empty:
                    _write_csv(summarize(done), run.eval_dir / "summary.csv")
    finally:
        torch.set_num_threads(old_threads)
    return dict(run_id=run.run_id, trained=trained_now, evaluated=evaluated, summary=run.summary())


class _Done:
    """A finished future (for the inline executor)."""

    def __init__(self, fn, args, kwargs):
        self._exc = None
        try:
            self._value = fn(*args, **kwargs)
        except Exception as exc:  # re-raised by result(), as a real future would
            self._exc = exc
            self._tb = traceback.format_exc()

    def done(self) -> bool:
        return True

    def result(self, timeout=None):
        if self._exc is not None:
            raise self._exc
        return self._value


class InlineExecutor:
    """Runs each submitted call at once, in this process."""

    def submit(self, fn, *args, **kwargs) -> _Done:
        return _Done(fn, args, kwargs)

    def shutdown(self, wait: bool = True) -> None:
        pass


def default_executor(workers: int | None = None):
    """Inline for one worker or a GPU; else a pool of `workers` processes (default: one per core)."""
    if workers is None:
        workers = int(os.environ.get("THESISLIB_WORKERS", "0")) or (1 if torch.cuda.is_available() else os.cpu_count() or 1)
    if workers <= 1:
        return InlineExecutor()
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))


def _describe(run: Run) -> str:
    c = run.config
    parts = [f"resnet{c.depth}", f"bs={c.batch_size}", f"ep={c.epochs}"]
    if c.norm != "none":
        parts.append(f"norm={c.norm}" + (f"({c.groups})" if c.norm == "group" else ""))
    if c.penalty != "none":
        parts.append(f"{c.penalty}={c.penalty_lambda:g}")
    if c.dropout:
        parts.append(f"dropout={c.dropout:g}")
    if c.precode_k:
        parts.append(f"precode(k={c.precode_k},beta={c.precode_beta:g})")
    parts.append(f"seed={c.seed}")
    return " ".join(parts)


def run_all(configs: Iterable[RunConfig], *, runs_dir: str | os.PathLike | None = None, executor=None,
            workers: int | None = None, threads: int | None = None, progress: bool = True) -> list[Run]:
    """Make sure every config is trained and evaluated; compute only what is missing.

    Args:
        configs: run configs (duplicates are computed once).
        runs_dir: the runs folder (default: see `thesislib.paths.runs_dir`).
        executor: anything with submit(fn, *args, **kwargs) returning futures with done() and
            result(), e.g. a concurrent.futures or submitit executor; default `default_executor`.
        workers: processes for the default executor.
        threads: torch threads per run on the CPU (default $THESISLIB_THREADS or 1); results are
            reproducible for the same seed and thread count.
        progress: print a line as each run finishes.

    Returns:
        The runs, in the order of `configs`.

    Raises:
        RunError: some runs failed (after all others finished); each failure's traceback is in
            its run directory as error.txt.
    """
    runs = plan(configs, runs_dir)
    unique = {r.run_id: r for r in runs}
    todo = [r for r in unique.values() if not r.complete]
    if threads is None:
        threads = int(os.environ.get("THESISLIB_THREADS", "1"))
    if not todo:
        return runs
    own = executor is None
    executor = executor or default_executor(workers)
    t_start = time.time()
    if progress:
        print(f"{len(unique) - len(todo)} of {len(unique)} runs cached; computing {len(todo)}", file=sys.stderr, flush=True)
    pending = {}
    for r in todo:
        fut = executor.submit(execute, r.config.to_dict(), str(r.data_root), str(r.runs_dir), threads=threads)
        pending[fut] = r
    failures = []
    done_count = 0
    try:
        while pending:
            finished = [f for f in pending if f.done()]
            if not finished:
                time.sleep(0.2)
                continue
            for fut in finished:
                r = pending.pop(fut)
                done_count += 1
                try:
                    out = fut.result()
                    if progress:
                        s = out["summary"]
                        what = []
                        if out["trained"]:
                            what.append(f"trained in {s['train_seconds']:.0f}s (best epoch {s['best_epoch']}, "
                                        f"val acc {100 * s['best_val_acc']:.1f}%)")
                        if out["evaluated"]:
                            what.append("evaluated " + ", ".join(out["evaluated"]))
                        print(f"[{done_count}/{len(todo)} {time.time() - t_start:.0f}s] {r.run_id} {_describe(r)}: "
                              + ("; ".join(what) or "cached"), file=sys.stderr, flush=True)
                except Exception as exc:  # keep going: finished runs are kept, failures reported at the end
                    log = r.dir / "error.txt"
                    tb = getattr(fut, "_tb", None) or "".join(traceback.format_exception(exc))
                    atomic_write_text(log, tb)
                    failures.append(f"{r.run_id} ({_describe(r)}): {type(exc).__name__}: {exc} [log: {log}]")
                    if progress:
                        print(f"[{done_count}/{len(todo)}] {r.run_id} FAILED: {exc}", file=sys.stderr, flush=True)
    finally:
        if own:
            executor.shutdown(wait=True)
    if failures:
        raise RunError(f"{len(failures)} of {len(todo)} runs failed:\n" + "\n".join(failures))
    return runs
