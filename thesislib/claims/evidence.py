"""Evidence: the cells a claim is judged on, per setting key, metric and method key: one value per
run for our side (`SeedValues`), mean, std and n for the thesis's (`Summary`); and setting keys (`S`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from thesislib.metrics import REGISTRY

__all__ = ["S", "BASELINE", "Cell", "SeedValues", "Summary", "Evidence", "canonical"]


def S(**overrides) -> str:
    """A setting's key: its overrides of the base config as canonical JSON (S() is the baseline)."""
    return json.dumps(overrides, sort_keys=True)


BASELINE = S()
Cell = tuple  # (setting key, metric, method key; "" for classification)


@dataclass(frozen=True)
class SeedValues:
    """Our side of a cell: per seed its value, whether the run learned, and its pairing key (runs
    of two settings with the same key for a seed share initial weights and batch order)."""

    values: dict  # seed -> (value, learned, pairing)

    def learned(self) -> dict[int, float]:
        return {s: v for s, (v, ok, _) in self.values.items() if ok and math.isfinite(v)}

    @property
    def runs(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Summary:
    """The thesis's side of a cell: mean, sample std and the number of seeds."""

    mean: float
    std: float
    n: int


class Evidence:
    """The cells of one scope: (setting key, metric, method key) -> SeedValues or Summary, the
    settings' labels (for rendering only) and, for our runs, each setting's run ids."""

    def __init__(self, cells: dict, labels: dict[str, str], runs: dict[str, frozenset] | None = None):
        self.cells, self.labels, self.runs = cells, labels, runs or {}

    @property
    def settings(self) -> list[str]:
        return list(self.labels)

    def has(self, setting: str, metric: str, method: str = "") -> bool:
        return (setting, metric, method) in self.cells

    def restrict(self, settings: Sequence[str]) -> Evidence:
        keep = set(settings)
        return Evidence({k: v for k, v in self.cells.items() if k[0] in keep},
                        {s: lab for s, lab in self.labels.items() if s in keep},
                        {s: r for s, r in self.runs.items() if s in keep})

    @classmethod
    def of_results(cls, results: pd.DataFrame, *, key: Callable[[pd.Series], str] | None = None) -> Evidence:
        """Our runs: `Grid.results()` rows (one per run x method). `key` makes a row's setting key
        (default: its `overrides`)."""
        cells: dict = {}
        labels: dict[str, str] = {}
        runs: dict[str, set] = {}
        if results is None or results.empty:
            return cls(cells, labels)
        if "overrides" not in results.columns:
            raise ValueError(f"results: expected Grid.results() rows with an 'overrides' column, found columns "
                             f"{', '.join(map(str, results.columns))}")
        learned = results["learned"] if "learned" in results.columns else pd.Series(True, index=results.index)
        learned = learned.astype(object).where(learned.notna(), True).astype(bool)
        # without recorded pairing keys, the maps of one run are still paired with each other
        pairing = results["pairing"] if "pairing" in results.columns else (
            results["run_id"] if "run_id" in results.columns else pd.Series(None, index=results.index))
        keys = [key(r) for _, r in results.iterrows()] if key else [canonical(o) for o in results["overrides"]]
        metrics = [m for m in REGISTRY if m in results.columns]
        seen_runs: set = set()
        for i, (k, (_, row)) in enumerate(zip(keys, results.iterrows())):
            labels.setdefault(k, str(row["setting"]))
            runs.setdefault(k, set()).add(row.get("run_id", i))
            seed, ok, pair = int(row["seed"]), bool(learned.iloc[i]), pairing.iloc[i]
            pair = None if pair is None or (isinstance(pair, float) and math.isnan(pair)) else str(pair)
            first_of_run = (k, seed) not in seen_runs
            seen_runs.add((k, seed))
            for m in metrics:
                value = row[m]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                method = "" if REGISTRY[m].kind == "classification" else str(row["method"])
                if method == "" and not first_of_run:
                    continue
                cells.setdefault((k, m, method), {}).setdefault(seed, (float(value), ok, pair))
        return cls({c: SeedValues(v) for c, v in cells.items()}, labels, {k: frozenset(v) for k, v in runs.items()})

    @classmethod
    def of_summary(cls, long: pd.DataFrame, *, key: Callable[[pd.Series], str] | None = None) -> Evidence:
        """The thesis's numbers (`thesislib.thesis.reference()`: overrides, method_key, metric, mean, std, n)."""
        cells, labels = {}, {}
        for _, r in long.iterrows():
            k = key(r) if key else canonical(r["overrides"])
            labels.setdefault(k, str(r["setting"]))
            if pd.notna(r["mean"]):
                cells[(k, r["metric"], r["method_key"])] = Summary(float(r["mean"]), float(r["std"]), int(r["n"]))
        return cls(cells, labels)


def canonical(overrides) -> str:
    """A setting's key from its overrides (JSON or a mapping), without those that only adapt the network
    to a scale (`thesislib.study.settings.SCALE_ONLY`): a default-scale ResNet-50 is the thesis's "50"."""
    from thesislib.study.settings import SCALE_ONLY

    values = json.loads(overrides) if isinstance(overrides, str) else dict(overrides)
    return S(**{k: v for k, v in values.items() if k not in SCALE_ONLY})
