"""Mutants: one-line breakages of the study's core that the tests must notice.

Each mutant replaces one line of the package (explain, metrics, train, evaluation, data, study)
in a temporary copy of the repository (its tracked and untracked, not ignored files; never the
working tree), then runs the tests of its room (`pytest -x -q -m "not slow"`). A mutant that
leaves every test passing has survived: the tests cannot see that breakage, and none may.

    python tools/mutants.py                  # every mutant; a table; exit status 1 if any survive
    python tools/mutants.py --list           # the mutants, without running anything
    python tools/mutants.py --room metrics   # one room (repeatable)
    python tools/mutants.py --only explain-least-likely-class --jobs 2

`make mutants` runs it on demand (it takes a while: one test run per mutant); CI does not.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The tests that cover each room of the package.
ROOMS: dict[str, tuple[str, ...]] = {
    "explain": ("tests/test_explain.py", "tests/test_explain_fast.py"),
    "metrics": ("tests/test_metrics.py",),
    "train": ("tests/test_train.py", "tests/test_models.py"),
    "evaluation": ("tests/test_evaluation.py",),
    "data": ("tests/test_data.py",),
    "study": ("tests/test_runs.py", "tests/test_config.py"),
}


@dataclass(frozen=True)
class Mutant:
    """One breakage: in `path`, the text `old` (found exactly once) becomes `new`."""

    name: str
    room: str
    path: str
    old: str
    new: str
    what: str


MUTANTS: tuple[Mutant, ...] = (
    # explain
    Mutant("explain-least-likely-class", "explain", "thesislib/explain.py",
           "targets = model(images).argmax(1)", "targets = model(images).argmin(1)",
           "explain() explains the least likely class instead of the predicted one"),
    Mutant("explain-all-least-likely-class", "explain", "thesislib/explain.py",
           "targets = logits.argmax(1) if targets is None", "targets = logits.argmin(1) if targets is None",
           "explain_all() explains the least likely class by default"),
    Mutant("explain-map-scaling", "explain", "thesislib/explain.py",
           "out = (flat - lo[:, None]) / torch.where(ok, span,", "out = flat / torch.where(ok, span,",
           "normalize_maps() divides by the range without subtracting the minimum"),
    Mutant("explain-cam-sign", "explain", "thesislib/explain.py",
           "out[method] = normalize_maps(_upsample(_cam_from(head, feats, targets)",
           "out[method] = normalize_maps(_upsample(-_cam_from(head, feats, targets)",
           "explain_all()'s CAM uses the negated class activation map"),
    # metrics
    Mutant("metrics-pair-foreground", "metrics", "thesislib/metrics/kernels.py",
           "            ma = np.uint8(a[y * width + c] > ta)", "            ma = np.uint8(a[y * width + c] >= ta)",
           "the compiled pair kernel takes the heatmap's threshold pixel as foreground"),
    Mutant("metrics-iou-union", "metrics", "thesislib/metrics/kernels.py",
           "            union += ma | mb", "            union += mb",
           "IoU (A) divides by the expert map's area instead of the union (the compiled pair kernel "
           "that evaluate() uses on the CPU)"),
    Mutant("metrics-box-iou-union", "metrics", "thesislib/metrics/localisation.py",
           "union = area(a) + area(b) - inter", "union = area(a) + area(b)",
           "IoU (BB) counts the intersection twice in the union"),
    Mutant("metrics-box-open-end", "metrics", "thesislib/metrics/localisation.py",
           "last = torch.where(any_, pos, -1).max(1).values + 1", "last = torch.where(any_, pos, -1).max(1).values",
           "bounding boxes lose their last row and column"),
    Mutant("metrics-average-drop-clamp", "metrics", "thesislib/metrics/faithfulness.py",
           "return (y - o).clamp_min(0) / y.clamp_min(1e-12)", "return (y - o) / y.clamp_min(1e-12)",
           "Average Drop counts rises in confidence as negative drops"),
    Mutant("metrics-otsu-foreground", "metrics", "thesislib/metrics/otsu.py",
           "return x > otsu_threshold(x)[:, None, None]", "return x >= otsu_threshold(x)[:, None, None]",
           "binarize() takes the threshold pixel itself as foreground"),
    Mutant("metrics-pointing-dead-map", "metrics", "thesislib/metrics/localisation.py",
           "return hit & (flat.amax(1) > 0)", "return hit",
           "the pointing game lets an all-zero heatmap hit"),
    # train
    Mutant("train-best-every-epoch", "train", "thesislib/train.py",
           'if row["val_loss"] < best_loss:', "if True:",
           "best.pt is written at every epoch instead of at the lowest validation loss"),
    Mutant("train-precode-kl-sign", "train", "thesislib/models.py",
           "self.kl = (-0.5 * (1 + 2 * log_std - mu.pow(2) - std.pow(2)))",
           "self.kl = (-0.5 * (1 + 2 * log_std + mu.pow(2) - std.pow(2)))",
           "PRECODE's KL rewards a large mean instead of penalising it"),
    Mutant("train-l2-is-l1", "train", "thesislib/train.py",
           "return sum(w.pow(2).sum() for w in weights)", "return sum(w.abs().sum() for w in weights)",
           "the L2 penalty sums |w| instead of w^2"),
    Mutant("train-val-loss-without-kl", "train", "thesislib/train.py",
           "penalty = pre.beta * kl / n if pre is not None else 0.0", "penalty = 0.0",
           "PRECODE's validation loss leaves out beta * KL"),
    Mutant("train-resume-forgets-best", "train", "thesislib/train.py",
           'best_loss = min((h["val_loss"] for h in history), default=float("inf"))', 'best_loss = float("inf")',
           "a resumed run forgets its best validation loss and overwrites best.pt with a worse epoch"),
    # evaluation
    Mutant("evaluation-classification-argmin", "evaluation", "thesislib/evaluation.py",
           "pred = logits.argmax(1)\n    prob = F.softmax", "pred = logits.argmin(1)\n    prob = F.softmax",
           "classification() predicts with argmin: accuracy, F1 and the confusion matrix inverted"),
    Mutant("evaluation-target-swapped", "evaluation", "thesislib/evaluation.py",
           'targets_all = preds if target == "predicted" else labels',
           'targets_all = labels if target == "predicted" else preds',
           "evaluate() explains the true label when asked for the predicted class"),
    Mutant("evaluation-correct-only-inverted", "evaluation", "thesislib/evaluation.py",
           "rows = rows[preds[rows] == labels[rows]]", "rows = rows[preds[rows] != labels[rows]]",
           "correct_only keeps the misclassified images"),
    Mutant("evaluation-summary-median", "evaluation", "thesislib/evaluation.py",
           "out = g[present].mean() * 100", "out = g[present].median() * 100",
           "summarize() reports the median instead of the mean"),
    Mutant("evaluation-auc-of-healthy", "evaluation", "thesislib/evaluation.py",
           "prob = F.softmax(logits.float(), 1)[:, 1]\n    cm", "prob = F.softmax(logits.float(), 1)[:, 0]\n    cm",
           "ROC AUC scores the healthy probability instead of the glaucoma probability"),
    # data
    Mutant("data-split-test-overlaps-val", "data", "thesislib/data/stratify.py",
           'parts["test"].append(idx[n_train + n_val:])', 'parts["test"].append(idx[n_train:])',
           "the test split also holds the validation images"),
    Mutant("data-split-ignores-seed", "data", "thesislib/data/stratify.py",
           "gen = torch.Generator().manual_seed(seed)\n    parts", "gen = torch.Generator().manual_seed(0)\n    parts",
           "the split seed is ignored"),
    Mutant("data-fingerprint-skips-maps", "data", "thesislib/data/folder.py",
           "h.update(r.map.read_bytes())", "pass",
           "the data fingerprint ignores the expert maps' content"),
    Mutant("data-normalize-swapped", "data", "thesislib/data/transforms.py",
           "return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), MEAN, STD)",
           "return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), STD, MEAN)",
           "normalize() swaps the mean and the standard deviation"),
    # study
    Mutant("study-run-id-ignores-data", "study", "thesislib/study/config.py",
           'key = {**self.training_dict(), "data": data_fingerprint, "semantics": SEMANTICS}',
           'key = {**self.training_dict(), "semantics": SEMANTICS}',
           "the run id ignores the data's content: another data set reuses the runs"),
    Mutant("study-complete-ignores-missing", "study", "thesislib/study/runs.py",
           "return self.trained and not self.missing_methods()", "return self.trained",
           "a trained run counts as complete although methods are missing"),
    Mutant("study-retrains-finished-runs", "study", "thesislib/study/runs.py",
           "if not run.trained:", "if True:",
           "compute_one() trains a run again although it is finished"),
    Mutant("study-computes-cached-runs", "study", "thesislib/study/runs.py",
           "todo = [r for r in unique if not r.complete]", "todo = list(unique)",
           "run_all() submits runs that are already complete"),
    Mutant("study-first-failure-aborts", "study", "thesislib/study/runs.py",
           'out.failures.append(f"{r.run_id} ({run_label(r)}): {_headline(exc)} [{logs}]")', "raise",
           "one failed run aborts the sweep instead of being reported after the others finish"),
    Mutant("study-keeps-resume-state", "study", "thesislib/study/runs.py",
           '(run.dir / "last.pt").unlink(missing_ok=True)', "pass",
           "a finished run keeps its resumable last.pt (optimiser state and all) beside best.pt"),
)


@dataclass
class Outcome:
    mutant: Mutant
    result: str  # killed | survived | error | timeout | stale
    seconds: float
    detail: str


def repository_files(root: Path) -> list[str]:
    """Tracked and untracked, not ignored files of the repository (what a checkout would hold)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return sorted({p for p in out.split("\0") if p and (root / p).is_file()})


def make_copy(root: Path, dest: Path) -> Path:
    """Copy the repository's files (not the working tree itself) to `dest`."""
    for rel in repository_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def _env(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("THESISLIB_SMOKE_REPORT", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", THESISLIB_RUNS=str(copy / "runs"),
               THESISLIB_WORKERS=env.get("THESISLIB_WORKERS", "1"))
    return env


def check_import(copy: Path) -> None:
    """The tests in `copy` must import the copy's thesislib, not the installed one."""
    where = subprocess.run([sys.executable, "-c", "import thesislib; print(thesislib.__file__)"], cwd=copy,
                           env=_env(copy), capture_output=True, text=True)
    found = Path(where.stdout.strip() or "?").resolve()
    if where.returncode != 0 or copy.resolve() not in found.parents:
        raise SystemExit(f"mutants: thesislib in the copy: expected it under {copy}, found {found} "
                         f"({where.stderr.strip()[-300:]})")


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """(result, seconds, detail) of `pytest -x -q -m "not slow"` on `tests` in `copy`."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, f"over {timeout:.0f} s"
    seconds = time.perf_counter() - t0
    out = r.stdout + r.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    if r.returncode == 0:
        return "survived", seconds, (re.findall(r"^\d+ passed.*$", out, flags=re.M) or [""])[-1]
    if r.returncode == 1 and failed:
        return "killed", seconds, failed[0]
    return "error", seconds, (failed[:1] or [out.strip().splitlines()[-1] if out.strip() else f"rc {r.returncode}"])[0]


def apply(copy: Path, m: Mutant) -> str | None:
    """Write the mutant into `copy`; return the original text, or None if `old` is not found once."""
    path = copy / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        return None
    mutated = text.replace(m.old, m.new)
    compile(mutated, str(path), "exec")  # a mutant must still be valid Python
    path.write_text(mutated)
    return text


def try_mutant(copy: Path, m: Mutant, timeout: float) -> Outcome:
    """Apply `m` alone to `copy`, run its room's tests, restore the file."""
    original = apply(copy, m)
    if original is None:
        found = (copy / m.path).read_text().count(m.old)
        return Outcome(m, "stale", 0.0, f"{m.path}: expected the text once, found it {found} times")
    try:
        result, seconds, detail = run_tests(copy, ROOMS[m.room], timeout)
    finally:
        (copy / m.path).write_text(original)
    return Outcome(m, result, seconds, detail)


def table(outcomes: list[Outcome]) -> str:
    lines = ["| room | mutant | breakage | result | s | first failing test |", "| --- | --- | --- | --- | ---: | --- |"]
    for o in outcomes:
        lines.append(f"| {o.mutant.room} | {o.mutant.name} | {o.mutant.what} | {o.result} | {o.seconds:.0f} | "
                     f"{o.detail.replace('|', '/')} |")
    return "\n".join(lines)


def select(names: list[str], rooms: list[str]) -> list[Mutant]:
    known = {m.name for m in MUTANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"mutants: --only: unknown {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    bad_rooms = [r for r in rooms if r not in ROOMS]
    if bad_rooms:
        raise SystemExit(f"mutants: --room: unknown {', '.join(bad_rooms)}; expected some of {', '.join(ROOMS)}")
    return [m for m in MUTANTS if (not names or m.name in names) and (not rooms or m.room in rooms)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated mutant names")
    p.add_argument("--room", action="append", default=[], help=f"only this room ({', '.join(ROOMS)}); repeatable")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--jobs", type=int, default=1, help="mutants tested at once, each in its own copy (default 1)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per test run (default 900)")
    p.add_argument("--no-baseline", action="store_true", help="skip checking that the unmutated tests pass")
    p.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    args = p.parse_args(argv)
    mutants = select([n for n in args.only.split(",") if n], args.room)
    if args.list:
        for m in mutants:
            print(f"{m.room:<11} {m.name:<36} {m.what}")
        return 0
    if args.jobs < 1:
        raise SystemExit(f"mutants: --jobs: expected a positive integer, found {args.jobs}")
    with tempfile.TemporaryDirectory(prefix="thesislib-mutants-") as tmp:
        copies = [make_copy(ROOT, Path(tmp) / f"copy{i}") for i in range(min(args.jobs, len(mutants)) or 1)]
        check_import(copies[0])
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in mutants for t in ROOMS[m.room]))
            result, seconds, detail = run_tests(copies[0], tests, args.timeout * 2)
            print(f"baseline (no mutant) on {len(tests)} test files: {result} in {seconds:.0f} s {detail}", flush=True)
            if result != "survived":
                print("mutants: the unmutated tests must pass first", file=sys.stderr)
                return 2
        free = list(copies)

        def one(m: Mutant) -> Outcome:
            copy = free.pop()
            try:
                o = try_mutant(copy, m, args.timeout)
            finally:
                free.append(copy)
            print(f"{o.result:<8} {o.seconds:5.0f} s  {m.name}: {o.detail}", flush=True)
            return o

        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            outcomes = list(pool.map(one, mutants))
    report = table(outcomes)
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")
    bad = [o for o in outcomes if o.result not in ("killed",)]
    survived = sum(o.result == "survived" for o in bad)
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} mutants killed; {survived} survived"
          + (f"; {len(bad) - survived} stale, errored or timed out" if len(bad) > survived else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
