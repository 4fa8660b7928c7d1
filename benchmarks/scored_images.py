"""What scoring fewer test images per run costs in power, read from a default report's cached runs.

    python -m benchmarks.scored_images --runs RUNS [--params params/default] [--images 32 64 96] [--seeds 3]

For each number of scored images n, every run's Score-CAM IoU (A) is recomputed as the mean over
the same stratified n of its scored images (`thesislib.evaluation.stratified_subset`, the draw
the evaluation itself makes: per class in proportion, in one seeded order, the same images for
every run), and per family the smallest difference the judge decides with 80 % power at `--seeds`
seeds comes from the family's sd (`thesislib.reliability.power_by_family`) through
`thesislib.inference.detectable_difference`, as notebook 06 computes it beside an earlier design
(`thesislib.reliability.power_beside`). The per-image metrics are the cached runs' own; nothing is
trained or evaluated. Prints a table (Markdown).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from thesislib import study
from thesislib.evaluation import stratified_subset
from thesislib.inference import detectable_difference
from thesislib.reliability import power_by_family

METHOD, METRIC = "scorecam", "iou_area"


def subset(images: pd.DataFrame, n: int, seed: int = 0) -> set[str]:
    """n image names of the scored set, each class in proportion, in one seeded order."""
    names = images.drop_duplicates("image").set_index("image")["label"].sort_index()
    codes = torch.as_tensor(pd.factorize(names)[0])
    return set(names.index[stratified_subset(codes, n, seed).numpy()])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params/default"))
    ap.add_argument("--runs", required=True, help="the runs folder of a default report (read only)")
    ap.add_argument("--images", type=int, nargs="+", default=[32, 64, 96])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per setting at which to state the difference")
    args = ap.parse_args(argv)
    grid = study.study_grid(args.params, runs=args.runs)
    results = grid.results()
    images = grid.images()
    images = images[images["method"] == METHOD]
    full = images["image"].nunique()
    rows = {}
    for n in [*args.images, full]:
        keep = subset(images, n) if n < full else set(images["image"])
        part = images[images["image"].isin(keep)]
        means = part.groupby("run_id")[METRIC].mean() * 100  # the tables' unit (%)
        res = results[results["method"] == METHOD].copy()
        res[METRIC] = res["run_id"].map(means)
        power = power_by_family(res, METHOD, METRIC)
        rows[f"{n} images"] = {r.family: detectable_difference(r.sd, args.seeds, 0.05, 0.8,
                                                               paired_design=r.design == "paired by seed")
                               for r in power.itertuples(index=False)}
    table = pd.DataFrame(rows).round(1)
    print(f"Detectable difference of Score-CAM IoU (A) (percentage points, 80 % power, 5 %), at "
          f"{args.seeds} seeds, by scored images per run ({len(results['run_id'].unique())} runs):\n")
    print("| family | " + " | ".join(table.columns) + " |")
    print("|---|" + "---|" * len(table.columns))
    for family, row in table.iterrows():
        print(f"| {family} | " + " | ".join("-" if pd.isna(v) else f"{v:.1f}" for v in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
