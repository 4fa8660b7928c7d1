"""Grids: configs x seeds as a `Grid` (its table, its runs folder, where its runs compute).

A notebook's params hold a `base` config (overrides of `RunConfig`'s defaults), `experiments`
(family -> list of overrides, one per setting; {} is the family's baseline) and `seeds`.
`grid(...)` expands them into a Grid with one table row per family x setting x seed;
`Grid.compute()` trains and evaluates what is missing, and `Grid.results()` gives one row per
run x method with the run's mean metrics (%), its classification metrics (%), the grid's columns
and `learned` (False for a run whose best checkpoint did not beat the majority class, see
`thesislib.train.learning_check`). `notebook_results(grid)` is the first cell of every research
question's notebook.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from thesislib.design import BEYOND, FAMILIES, NOTEBOOKS
from thesislib.evaluation import summarize
from thesislib.study.config import ConfigError, RunConfig
from thesislib.study.executors import Executor, ExecutorSpec, executor_of
from thesislib.study.params import load_params, merge_params, params_layers  # named here as before
from thesislib.study.runs import Run, run_all
from thesislib.study.settings import setting_label

if TYPE_CHECKING:
    import torch

__all__ = ["FAMILIES", "NOTEBOOKS", "BEYOND", "Grid", "grid", "study_grid", "notebook_results", "setting_label",
           "load_params", "merge_params", "params_layers", "long_run_experiments", "mean_maps", "input_scaling",
           "bottlenecks"]

_COLUMNS = ("family", "setting", "seed", "overrides", "config")


@dataclass(frozen=True, eq=False)
class Grid:
    """A grid of runs: which (its table), where they are stored (its runs folder) and where they
    compute (its executor).

    Attributes:
        table: one row per family x setting x seed: family, setting, seed, overrides (JSON),
            config (RunConfig). A run shared by several families (a baseline) has one row in each.
        runs_dir: the runs folder; None: the default (`thesislib.paths.runs_dir`).
        executor: where `compute` runs what is missing: an ExecutorSpec, or an executor object
            (with submit()). Given what a params file's `executor` key holds (None: inline on a GPU
            or one core, else a local pool; "inline", "local", "slurm", or a mapping with its
            options, see `thesislib.study.executors`), the grid parses it when it is made, so a bad
            one fails before anything computes.
    """

    table: pd.DataFrame
    runs_dir: str | os.PathLike | None = None
    executor: ExecutorSpec | Executor = ExecutorSpec()

    def __post_init__(self) -> None:
        object.__setattr__(self, "executor", executor_of(self.executor, source="Grid: executor"))
        missing = [c for c in _COLUMNS if c not in self.table.columns]
        if missing:
            raise ValueError(f"Grid: table: expected the columns {', '.join(_COLUMNS)}, found "
                             f"{', '.join(map(str, self.table.columns)) or 'none'} (missing {', '.join(missing)})")

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (f"Grid({len(self.table)} rows, {len(set(self.table['config']))} configs, settings "
                f"{self.settings}, seeds {self.seeds}, runs_dir={self.runs_dir!r}, executor={self.executor!r})")

    @property
    def settings(self) -> list[str]:
        """The distinct settings, in the table's order."""
        return list(dict.fromkeys(self.table["setting"]))

    @property
    def seeds(self) -> list[int]:
        """The distinct seeds, in the table's order."""
        return [int(s) for s in dict.fromkeys(self.table["seed"])]

    def runs(self) -> list[Run]:
        """The run of each table row (in the table's order; a shared baseline appears per row)."""
        from thesislib.study.runs import plan

        return plan(self.table["config"], self.runs_dir)

    def where(self, *, family: str | None = None, setting: str | None = None, seed: int | None = None) -> Grid:
        """The rows of the given family, setting and seed (None matches any), as a Grid.

        Raises:
            KeyError: no row matches; the message lists the grid's settings.
        """
        rows = self.table
        for col, val in (("family", family), ("setting", setting), ("seed", seed)):
            if val is not None:
                rows = rows[rows[col] == val]
        if rows.empty:
            raise KeyError(f"no run with family={family!r}, setting={setting!r}, seed={seed!r}; settings are "
                           f"{', '.join(self.settings)}, seeds {self.seeds}")
        return replace(self, table=rows.reset_index(drop=True))

    def find(self, *, family: str | None = None, setting: str | None = None, seed: int | None = None) -> Run:
        """The run of the first row of the given family, setting and seed (None matches any)."""
        return self.where(family=family, setting=setting, seed=seed).runs()[0]

    def with_evaluation(self, **changes: Any) -> Grid:
        """The same runs scored with other evaluation settings (`EVALUATION` fields of RunConfig,
        e.g. layer="layer3", methods=[...]): the same trained models, another evaluation.

        Raises:
            ConfigError: a change names a training field (that would be other runs, not another
                evaluation of these).
        """
        from thesislib.study.config import EVALUATION

        training = sorted(k for k in changes if k not in EVALUATION)
        if training:
            raise ConfigError(f"with_evaluation: {', '.join(map(repr, training))} are not evaluation settings; "
                              f"expected some of {', '.join(EVALUATION)}")
        table = self.table.copy()
        table["config"] = [c.replace(**changes) for c in self.table["config"]]
        return replace(self, table=table)

    def compute(self, *, workers: int | None = None, progress: bool = True) -> Grid:
        """Train and evaluate every run that is not in the cache, on the grid's executor; returns
        the grid (so `grid.compute().results()` reads).

        Raises:
            RunError: some runs failed (after all others finished); each names its error and logs.
        """
        run_all(self.table["config"], runs_dir=self.runs_dir, executor=self.executor, workers=workers,
                progress=progress)
        return self

    def results(self, by: str | None = None) -> pd.DataFrame:
        """One row per table row x method (and reference map) of the runs computed so far: the
        grid's columns, `learned`, `pairing` (`Run.pairing`: runs of two settings with equal keys
        are compared paired by seed), and every column of the run's `summarize` (mean metrics and
        classification in %, kind, same_as, ...).

        Args:
            by: None, or a per-image column ("pred", "label", "correct") to split each run's rows
                by (one row per run x method x class), so every method table can be read per class.
        """
        frames, summaries = [], {}
        for row in self._with_runs().itertuples(index=False):
            if row.run_id not in summaries:  # a baseline shared by several families is read once
                df = row.run.images()
                summaries[row.run_id] = None if df.empty else summarize(df, by=by)
            if summaries[row.run_id] is None:
                continue
            summary = summaries[row.run_id].copy()
            for col in ("family", "setting", "seed", "run_id", "overrides"):
                summary[col] = getattr(row, col)
            summary["learned"] = _learned(row.run)
            summary["pairing"] = row.run.pairing
            summary["config"] = [row.config] * len(summary)
            frames.append(summary)
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, ignore_index=True)
        front = ["family", "setting", "seed", "run_id", "learned", "method", "method_label"] + ([by] if by else [])
        return out[front + [c for c in out.columns if c not in front]]

    def layer_results(self, layers: list[str], methods: list[str], *, progress: bool = True) -> pd.DataFrame:
        """The runs explained at each of `layers` by `methods` (computed where missing), stacked
        with a `layer` column: every metric and reference map (the ceiling at that layer's grid).

        Only the layer and the methods change: each run's other evaluation settings
        (`RunConfig.eval_spec`, via `with_evaluation`) stay as they are, so each layer is scored
        as the run's own evaluation is, with the same metrics.

        Returns:
            `results()` rows of every layer, with a `layer` column; empty without layers.
        """
        frames = [self.with_evaluation(layer=layer, methods=list(methods)).compute(progress=progress).results()
                  .assign(layer=layer) for layer in layers]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def images(self) -> pd.DataFrame:
        """Per-image rows of every run, with family, setting, seed, run_id and learned."""
        frames = []
        for row in self._with_runs().drop_duplicates("run_id").itertuples(index=False):
            df = row.run.images()
            if not df.empty:
                frames.append(df.assign(family=row.family, setting=row.setting, seed=row.seed, run_id=row.run_id,
                                        learned=_learned(row.run)))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def histories(self) -> pd.DataFrame:
        """Training histories of every trained run, long format with family, setting, seed and run_id."""
        frames = []
        for row in self._with_runs().itertuples(index=False):
            if row.run.trained:
                frames.append(row.run.history().assign(family=row.family, setting=row.setting, seed=row.seed,
                                                       run_id=row.run_id))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def models(self, picks: list[tuple[str, str]], seed: int) -> dict[str, torch.nn.Module]:
        """"family: setting" -> the trained model of that row and seed (for galleries)."""
        return {f"{fam}: {setting}": self.find(family=fam, setting=setting, seed=seed).load_model()
                for fam, setting in picks}

    def describe(self):
        """Markdown: how many runs, what they share (the config fields equal across all of them)
        and what varies."""
        from IPython.display import Markdown

        configs = [{**c.training_dict(), **c.evaluation_dict(), "methods": c.methods} for c in self.table["config"]]
        keys = list(dict.fromkeys(k for c in configs for k in c))
        same = {k: configs[0].get(k) for k in keys if all(c.get(k) == configs[0].get(k) for c in configs)}
        varies = [k for k in keys if k not in same and k != "seed"]
        runs = self.runs()
        datas = {r.fingerprint: r.data_root.name for r in runs}  # a data set is its content, not its name
        varies += ["data"] if len(datas) > 1 else []
        shown = ", ".join(f"{_words(k)} {_plain(k, v)}" for k, v in same.items()
                          if k not in ("seed", "split_seed", "lr") and v is not None)
        seeds = ", ".join(str(s) for s in sorted(set(self.table["seed"])))
        return Markdown(f"**Runs:** {len(set(r.run_id for r in runs))} distinct ({len(self.table)} grid rows), "
                        f"seeds {seeds}; data {', '.join(datas.values()) or 'none'}.  \n"
                        f"**Shared settings:** {shown}.  \n**Varied:** {', '.join(map(_words, varies)) or 'nothing'}.")

    def _with_runs(self) -> pd.DataFrame:
        out = self.table.copy()
        runs = self.runs()
        out["run"] = runs
        out["run_id"] = [r.run_id for r in runs]
        return out


def _words(key: str) -> str:
    """A config key as words ("input_size" -> "input size")."""
    return str(key).replace("_", " ")


def _plain(key: str, value: Any) -> str:
    """A config value as a reader reads it: lists joined, methods by their labels, no Python reprs."""
    if key == "methods":
        from thesislib.tables import method_label

        return ", ".join(method_label(m) for m in value)
    if isinstance(value, (list, tuple)):
        return " / ".join(str(v) for v in value)
    if isinstance(value, bool):
        from thesislib.labels import yes_no

        return yes_no(value)
    return str(value)


def grid(base: dict[str, Any], experiments: dict[str, list[dict[str, Any]]], seeds: list[int], *,
         data: str | None = None, runs: str | os.PathLike | None = None,
         executor: ExecutorSpec | Executor | dict | str | None = None,
         source: str = "params") -> Grid:
    """Expand a notebook's params into a Grid: one row per family x setting x seed.

    Args:
        base: overrides of RunConfig's defaults shared by every run.
        experiments: family -> list of per-setting overrides ({} is the baseline).
        seeds: training seeds.
        data: data folder for every run (overrides base["data"]); None keeps base's.
        runs: the runs folder (None: the default).
        executor: where `Grid.compute` computes (a params file's `executor`, see `Grid`), parsed here.
        source: named in error messages (e.g. the params file).

    Raises:
        ConfigError: experiments, seeds, a setting or an executor that is not valid.
    """
    executor = executor_of(executor, source=f"{source}: executor")
    if not isinstance(experiments, dict) or not experiments:
        raise ConfigError(f"{source}: experiments: expected a mapping family -> list of settings, found {experiments!r}")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{source}: seeds: expected a non-empty list of integers, found {seeds!r}")
    base = dict(base)
    if data is not None:
        base["data"] = str(data)
    rows = []
    for family, settings in experiments.items():
        if family not in FAMILIES:
            raise ConfigError(f"{source}: experiments: unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
        if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
            raise ConfigError(f"{source}: experiments.{family}: expected a list of mappings, found {settings!r}")
        for overrides in settings:
            for seed in seeds:
                cfg = RunConfig.from_dict({**base, **overrides, "seed": seed},
                                          source=f"{source}: experiments.{family}[{setting_label(family, overrides)}]")
                rows.append(dict(family=family, setting=setting_label(family, overrides), seed=seed,
                                 overrides=json.dumps(overrides, sort_keys=True), config=cfg))
    return Grid(pd.DataFrame(rows, columns=list(_COLUMNS)), runs, executor)


def notebook_results(grid: Grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first cell of a research question's notebook, in one call: show what the grid's runs
    share and what varies, compute what is missing, show the runs' health.

    Returns:
        (results, ours): `grid.results()` (one row per run x method) and its per-setting
        aggregate (`thesislib.tables.aggregate`: mean and spread over seeds).
    """
    from IPython.display import display

    from thesislib import tables

    display(grid.describe())
    results = grid.compute().results()
    display(tables.run_health(results))
    return results, tables.aggregate(results)


def _learned(run: Run) -> bool | None:
    """done.json's verdict on whether the run learned (None if not trained or not recorded)."""
    return run.summary().get("learned") if run.trained else None


def long_run_experiments(long_run: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """RQ5's long run: the baseline and PRECODE (the keys of `long_run`) trained for long_run["epochs"]."""
    if "epochs" not in long_run:
        raise ConfigError(f"long_run: expected an 'epochs' key, found {long_run!r}")
    return {"precode_long": [{"epochs": long_run["epochs"]}, dict(long_run)]}


def study_grid(params_dir: str | os.PathLike, *, data: str | None = None, runs: str | os.PathLike | None = None,
               executor: ExecutorSpec | Executor | dict | str | None = None) -> Grid:
    """The grids of every research-question notebook of a params folder, stacked (RQ6: all models).

    A run shared by several families (a baseline) appears once per family. The notebooks beyond
    the thesis (BEYOND) stay out: RQ6 asks the thesis's question over the thesis's grid, and the
    shortcut notebook's models learn from other data.
    """
    params_dir = Path(params_dir)
    frames = []
    for name in (n for n in NOTEBOOKS if n not in BEYOND):
        path = params_dir / f"{name}.yaml"
        if not path.is_file():
            continue
        p = load_params(path)
        if "experiments" in p:
            frames.append(grid(p.get("base", {}), p["experiments"], p["seeds"], data=data if data is not None else p.get("data"),
                               runs=runs, source=str(path)).table)
    if not frames:
        raise ConfigError(f"{params_dir}: no notebook params with experiments found")
    # RQ3 re-explains RQ1's models: keep each family x setting x seed once
    table = pd.concat(frames, ignore_index=True).drop_duplicates(["family", "setting", "seed"], ignore_index=True)
    return Grid(table, runs, executor)


def mean_maps(run: Run, methods: list[str] | None = None, *, references: tuple[str, ...] = ("prior", "ceiling"),
              max_images: int | None = None) -> dict[str, "torch.Tensor"]:
    """Each method's mean map over the run's scored images, beside the mean expert map and the
    given reference maps (see `thesislib.evaluation.mean_maps`).

    The maps are drawn with the run's evaluation settings whole (`RunConfig.eval_spec`: its split
    part, target, layer, and the same subset of images as its evaluation); `methods` (default: the
    run's), `references` and `max_images` (default: the run's `eval_images`) replace its own.

    Returns:
        method (and reference) -> float32 [H, W] in [0, 1], plus "expert": the mean expert map.
    """
    from thesislib.references import mean_expert_map

    spec = run.config.eval_spec.replace(
        methods=methods or run.config.methods, references=references,
        eval_images=max_images if max_images is not None else run.config.eval_images)
    split = run.split()
    return spec.mean_maps(run.load_model(), spec.data_of(split), prior=mean_expert_map(split.train))


def input_scaling(grid: Grid, *, seed: int | None = None, alpha: float = 0.5, images: int = 16) -> pd.DataFrame:
    """How far each setting's model is from scaling its logits with its input.

    For x -> alpha x, a model without biases before its linear head gives logits
    alpha (z - b) + b exactly (b: the fc bias). Reported per setting: the relative deviation
    |f(alpha x) - (alpha (f(x) - b) + b)| / |f(x) - b| over `images` test images (0 = exactly linear).
    """
    import torch

    rows = []
    seed = grid.seeds[0] if seed is None else seed
    for row in grid.where(seed=seed)._with_runs().drop_duplicates("run_id").itertuples(index=False):
        model = row.run.load_model()
        x, _, _ = row.run.eval_data().batch(slice(0, images))
        with torch.no_grad():
            b = model.fc.bias
            z, za = model(x) - b, model(alpha * x) - b
        dev = float(((za - alpha * z).norm(dim=1) / (alpha * z).norm(dim=1).clamp_min(1e-12)).mean())
        rows.append(dict(family=row.family, setting=row.setting, norm=row.config.norm,
                         **{"deviation from linear scaling": round(dev, 6)}))
    return pd.DataFrame(rows).drop_duplicates(["setting", "norm"]).set_index(["family", "setting"])


def bottlenecks(grid: Grid) -> pd.DataFrame:
    """PRECODE settings of a grid with the pooled dimension d, the nominal k (of 2048) and the k used."""
    from thesislib.study.config import precode_dims

    rows = []
    for row in grid.table.drop_duplicates("setting").itertuples(index=False):
        d, k = precode_dims(row.config)
        if k is not None:
            rows.append(dict(setting=row.setting, d=d, **{"k (thesis, of 2048)": row.config.precode_k, "k (here)": k,
                                                          "k / d": round(k / d, 4)}))
    return pd.DataFrame(rows).set_index("setting") if rows else pd.DataFrame()
