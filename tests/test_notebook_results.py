"""Notebook tests check numbers: each notebook's key results against the runs folder.

The smoke report (`make test` runs it first, into build/smoke) executes every notebook; each
notebook's last cell writes <name>.results.json beside its executed notebook
(`thesislib.report.record`). Here those numbers are recomputed from what the runs folder holds:
the per-image CSVs averaged with pandas, accuracy with scikit-learn on each model's own
predictions, histories from history.csv, correlations with numpy and pandas, split sizes and
expert regions from the data folder with scikit-image's Otsu threshold. Without a smoke run
(THESISLIB_SMOKE_REPORT and THESISLIB_RUNS, set by `make test`) the tests are skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params" / "smoke"
STUDY = ("01_depth", "02_optimisation", "03_cam_methods", "04_regularisation", "05_precode")  # RQ6 pools these
MUST_RECORD = (*STUDY, "07_optimizers", "08_dataset_size")


def _params(name: str) -> dict:
    """A notebook's smoke params: the study design, shared.yaml and its own file merged."""
    from thesislib.study import load_params

    return load_params(PARAMS / f"{name}.yaml")


# every notebook with a grid of runs is checked once it records its key results
# 09_shortcut records its own cross-evaluation table (test_09_shortcut_cross_evaluation)
GRIDS = sorted({*MUST_RECORD, *(p.stem for p in PARAMS.glob("*.yaml") if p.stem not in ("09_shortcut", "shared")
                          if "experiments" in _params(p.stem))})
CLASSES = ("non_glaucoma", "suspicious_glaucoma")


@pytest.fixture(scope="module")
def smoke() -> tuple[Path, "Runs"]:
    """(folder of the executed notebooks, the runs folder) of the smoke run."""
    report, runs = os.environ.get("THESISLIB_SMOKE_REPORT"), os.environ.get("THESISLIB_RUNS")
    if not report or not Path(report).is_file() or not runs or not Path(runs).is_dir():
        pytest.skip(f"no smoke run: THESISLIB_SMOKE_REPORT={report!r}, THESISLIB_RUNS={runs!r} "
                    "(make test runs the smoke report into build/smoke and sets both)")
    return Path(report).parent / "notebooks", Runs(Path(runs))


def _recorded(smoke, name: str) -> dict:
    path = smoke[0] / f"{name}.results.json"
    assert path.is_file(), (f"{path}: missing; the notebook's last cell writes it when the smoke report runs "
                            f"(did {name} fail? make test rebuilds build/smoke)")
    return json.loads(path.read_text())


class Runs:
    """What the runs folder holds, read without thesislib's evaluation or tables."""

    def __init__(self, root: Path):
        self.root = root
        self.model_outputs = lru_cache(maxsize=None)(self._model_outputs)
        self.per_image = lru_cache(maxsize=None)(self._per_image)

    def _per_image(self, run_id: str, eval_id: str, scored: tuple[str, ...] | None = None) -> pd.DataFrame:
        """The stored per-image rows of a run's evaluation: of the methods and reference maps
        `scored` (default all; a run that several notebooks share holds the union of theirs)."""
        folder = self.root / run_id / "eval" / eval_id
        paths = sorted(folder.glob("*.csv")) if scored is None else [folder / f"{m}.csv" for m in scored]
        frames = [pd.read_csv(p) for p in paths if p.stem != "summary" and p.is_file() and p.stat().st_size]
        frames = [f for f in frames if not f.empty]
        assert frames, f"{folder}: no per-image results"
        return pd.concat(frames, ignore_index=True)

    def eval_id(self, run_id: str) -> str:
        from thesislib.study.config import RunConfig

        return RunConfig.from_dict(json.loads((self.root / run_id / "config.json").read_text())["config"]).eval_id()

    def _model_outputs(self, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """part -> (labels, predicted classes) of the best checkpoint on the scored split and on val."""
        from thesislib.study.config import RunConfig
        from thesislib.study.runs import Run

        stored = json.loads((self.root / run_id / "config.json").read_text())
        cfg = RunConfig.from_dict(stored["config"])
        run = Run(cfg, Path(stored["data_root"]), stored["data_fingerprint"], self.root)
        assert run.run_id == run_id, f"{run_id}: config.json gives run id {run.run_id}"
        model, split = run.load_model(), run.split()
        parts = {"scored": run.eval_data(split), "val": split.val}
        batches = [data.batch()[:2] for data in parts.values()]
        with torch.no_grad():
            pred = model(torch.cat([x for x, _ in batches])).argmax(1).numpy()
        out, start = {}, 0
        for part, (_, labels) in zip(parts, batches):
            out[part] = labels.numpy(), pred[start:start + len(labels)]
            start += len(labels)
        return out

    def accuracy(self, run_id: str) -> float:
        """% of the scored split classified right (scikit-learn)."""
        from sklearn.metrics import accuracy_score

        labels, pred = self.model_outputs(run_id)["scored"]
        return 100 * accuracy_score(labels, pred)

    def learned(self, run_id: str) -> bool:
        """Validation accuracy beyond the majority rate by two binomial standard errors, both classes predicted."""
        labels, pred = self.model_outputs(run_id)["val"]
        majority = np.bincount(labels, minlength=2).max() / len(labels)
        margin = 2 * math.sqrt(majority * (1 - majority) / len(labels))
        return bool((pred == labels).mean() > majority + margin and len(set(pred.tolist())) > 1)

    def history(self, run_id: str) -> pd.DataFrame:
        return pd.read_csv(self.root / run_id / "history.csv")


def _close(got, want, tol: float, what: str) -> None:
    both_nan = (got is None or (isinstance(got, float) and math.isnan(got))) and math.isnan(want)
    assert both_nan or (got is not None and abs(got - want) <= tol), f"{what}: recorded {got}, computed {want}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    s = pd.Series(values, dtype=float)
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else math.nan


def test_00_data_counts_and_expert_regions(smoke):
    from skimage.filters import threshold_otsu

    from thesislib.data import load_split
    from thesislib.study.config import RunConfig

    got = _recorded(smoke, "00_data")
    base = _params("00_data")["base"]
    root = Path(got["data_root"])
    files = [sum(1 for p in (root / c / "image").iterdir() if p.is_file()) for c in CLASSES]
    assert sum(files) == int(re.search(r"-n(\d+)", base["data"]).group(1))  # synthetic-n240-s64: 240 images
    fractions = RunConfig.from_dict(base).split
    expected = {"train": [], "val": [], "test": []}
    for n in files:
        val, test = max(1, round(fractions[1] * n)), max(1, round(fractions[2] * n))
        for part, k in (("train", n - val - test), ("val", val), ("test", test)):
            expected[part].append(k)
    assert got["split"] == expected and got["input_size"] == base["input_size"]

    test = load_split(root, got["input_size"], fractions=fractions, cache_dir=smoke[1].root / "cache").test
    _, labels, maps = test.batch()
    share = np.array([100 * (m > threshold_otsu(m, nbins=256)).mean() for m in maps.numpy()])
    for key, sel in (("all", slice(None)), ("non-glaucoma", labels.numpy() == 0), ("glaucoma", labels.numpy() == 1)):
        _close(got["expert_region_mean"][key], float(share[sel].mean()), 0.06, f"expert region mean, {key}")


@pytest.mark.parametrize("name", GRIDS)
def test_study_notebook_tables_match_the_runs_folder(smoke, name):
    from thesislib.study.config import RunConfig

    if name not in MUST_RECORD and not (smoke[0] / f"{name}.results.json").is_file():
        pytest.skip(f"{name} does not record its key results (thesislib.report.record)")
    got, runs = _recorded(smoke, name), smoke[1]
    params = _params(name)
    scored = RunConfig.from_dict(params["base"]).scored_ids  # this notebook's methods and reference maps
    settings = {(fam, str(i)) for fam, levels in params["experiments"].items() for i in range(len(levels))}
    assert len(got["runs"]) == len(settings) * len(params["seeds"])
    assert {r["seed"] for r in got["runs"]} == set(params["seeds"])
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in got["runs"]:
        groups.setdefault((r["family"], r["setting"]), []).append(r)
        assert r["learned"] == runs.learned(r["run_id"]), f"{r['run_id']}: learned"
        assert r["eval_id"] == runs.eval_id(r["run_id"])
    assert {fam for fam, _ in groups} == set(params["experiments"])
    assert all(len(g) == len(params["seeds"]) for g in groups.values())

    rows = pd.DataFrame(got["table"])
    assert set(rows["metric"]) == {"iou_area", "accuracy"}
    for (family, setting), members in groups.items():
        here = rows[(rows["family"] == family) & (rows["setting"] == setting)]
        images = {r["run_id"]: runs.per_image(r["run_id"], r["eval_id"], scored) for r in members}
        labels = set().union(*(set(df["method_label"]) for df in images.values()))
        assert set(here.loc[here["metric"] == "iou_area", "method"]) == labels, (family, setting)
        for row in here.itertuples():
            if row.metric == "accuracy":
                assert row.method == ""
                values = [runs.accuracy(r["run_id"]) for r in members]
            else:
                values = [100 * df.loc[df["method_label"] == row.method, row.metric].mean()
                          for df in images.values() if (df["method_label"] == row.method).any()]
            mean, std = _mean_std(values)
            what = f"{name}: {family}/{setting}/{row.method or 'classification'}/{row.metric}"
            assert row.n == len(values), what
            _close(row.mean, mean, 1e-6, f"{what} mean")
            _close(row.std, std, 1e-6, f"{what} std")


def test_05_precode_long_run_generalisation_gap(smoke):
    got, runs = _recorded(smoke, "05_precode"), smoke[1]
    seeds = _params("05_precode")["seeds"]
    by_setting: dict[str, list[pd.DataFrame]] = {}
    for r in got["long_runs"]:
        by_setting.setdefault(str(r["setting"]), []).append(runs.history(r["run_id"]))
    assert len(by_setting) == 2 and all(len(h) == len(seeds) for h in by_setting.values())
    recorded = {str(row["setting"]): row for row in got["generalisation_gap"]}
    assert set(recorded) == set(by_setting)
    for setting, hists in by_setting.items():
        last = [h.sort_values("epoch").iloc[-1] for h in hists]
        best_epoch = np.mean([h.loc[h["val_loss"].idxmin(), "epoch"] for h in hists])
        train_ce, val_loss = np.mean([x["train_ce"] for x in last]), np.mean([x["val_loss"] for x in last])
        row = recorded[setting]
        for key, want in (("best epoch", best_epoch), ("final train CE", train_ce), ("final val loss", val_loss),
                          ("gap (val - train)", val_loss - train_ce)):
            _close(row[key], float(want), 1e-3, f"long run {setting}: {key}")  # the table rounds to 3 decimals


def test_06_correlations_over_every_trained_model(smoke):
    got, runs = _recorded(smoke, "06_correlation"), smoke[1]
    studied = {(r["family"], r["run_id"]) for name in STUDY for r in _recorded(smoke, name)["runs"]}
    points = pd.DataFrame(got["points"])
    found = set(zip(points["family"], points["run_id"]))
    assert studied <= found and len(found) == len(points)  # every model of 01..05, each family once
    assert all((runs.root / run_id / "done.json").is_file() for _, run_id in found - studied)  # and other grids'

    def metric(run_id: str, name: str) -> float:
        df = runs.per_image(run_id, runs.eval_id(run_id))
        return 100 * df.loc[df["method"] == got["method"], name].mean()

    assert got["correlations"]
    for row in got["correlations"]:
        part = points if row["group"] == "all" else points[points["family"] == row["group"]]
        ids = list(dict.fromkeys(part["run_id"])) if row["group"] == "all" else list(part["run_id"])
        x = np.array([runs.accuracy(i) for i in ids])
        y = np.array([metric(i, row["y"]) for i in ids])
        assert row["n"] == len(ids), row
        constant = len(ids) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0
        pearson = math.nan if constant else float(np.corrcoef(x, y)[0, 1])
        spearman = math.nan if constant else float(pd.Series(x).rank().corr(pd.Series(y).rank()))
        _close(row["pearson"], pearson, 1e-6, f"{row['group']}/{row['y']}: Pearson r")
        _close(row["spearman"], spearman, 1e-6, f"{row['group']}/{row['y']}: Spearman rho")


def test_06_power_beside_an_earlier_design(smoke):
    """The table beside an earlier design (params `power_before`) gives each design's detectable
    difference at 3 seeds from its own sd, through the same test."""
    from thesislib.inference import detectable_difference
    from thesislib.study import load_params

    got = _recorded(smoke, "06_correlation")
    before = load_params(ROOT / "params" / "smoke" / "06_correlation.yaml")["power_before"]
    assert before, "the smoke params name a design to stand beside"
    if not got["power"]:  # no family has two settings with learned runs (smoke runs rarely learn): no table
        assert got["power_beside"] is None
        return
    assert [r["family"] for r in got["power_beside"]] == [p["family"] for p in got["power"]]
    for row, p in zip(got["power_beside"], got["power"]):
        sd = math.nan if p["sd"] is None else p["sd"]
        now = detectable_difference(sd, 3, 0.05, 0.8, paired_design=p["design"] == "paired by seed")
        then = detectable_difference(before["sd"][p["family"]], 3, 0.05, 0.8,
                                     paired_design=p["family"] in before["paired"])
        _close(row["detectable at 3 seeds"], now, 1e-9, f"{p['family']}: now")
        _close(row[f"{before['design']}: detectable at 3 seeds"], then, 1e-9, f"{p['family']}: before")
        assert row["no larger"] == ("—" if math.isnan(now) else "yes" if now <= then + 1e-9 else "no"), row


def test_record_writes_plain_json_beside_the_executed_notebooks(tmp_path, monkeypatch):
    from thesislib import report

    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    assert report.record("01_depth", {"a": 1}) is None  # outside a report run nothing is written
    monkeypatch.setenv(report.RESULTS_ENV, str(tmp_path))
    path = report.record("01_depth", {"x": np.float32(0.5), "n": np.int64(3), "nan": math.nan,
                                      "t": torch.tensor(2.0), "pair": (1, "a"), "ok": np.bool_(True)})
    assert path == tmp_path / "01_depth.results.json"
    assert json.loads(path.read_text()) == {"x": 0.5, "n": 3, "nan": None, "t": 2.0, "pair": [1, "a"], "ok": True}
    with pytest.raises(TypeError, match=r"results\['table'\]: expected numbers"):
        report.record("01_depth", {"table": pd.DataFrame({"a": [1]})})
    with pytest.raises(ValueError, match="name: expected a notebook name"):
        report.record("../01_depth", {})


def test_09_shortcut_cross_evaluation(smoke):
    got = _recorded(smoke, "09_shortcut")
    params = _params("09_shortcut")
    table = pd.DataFrame(got["table"])
    assert {got["clean"], got["cue"]} == set(table["trained"])
    assert set(got["test_sets"]) == set(table["tested"])
    # every model explained and scored on every test set, one value per seed behind each mean
    assert (table["n"] == len(params["seeds"])).all()
    acc = table[table["metric"] == "accuracy"]
    assert len(acc.groupby(["trained", "tested"])) == 2 * len(got["test_sets"])
    assert acc["mean"].between(0, 100).all() and table["std"].ge(0).all()
