"""Shortcuts: where the synthetic spurious marker is, how much of a map lies on it, and every run of a
grid scored on other data sets (with the cue on, off).

The synthetic generator can draw a marker near a corner that goes with the filed label
(`thesislib.synth.SynthSpec.spurious`). A model that learns the marker instead of the optic disc
keeps its accuracy where the cue is present and loses it where it is not; its maps move from the
disc to the marker. `marker_mass` measures the second: the share of a map's mass in the corner
square that holds the image's marker (side CORNER of the image side; a map spread evenly puts
CORNER ** 2 of its mass there, and the optic disc never reaches the square).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pandas as pd
import torch

from thesislib.synth import MARKER_INSET, MARKER_SIDE

if TYPE_CHECKING:
    from thesislib.study.grids import Grid

__all__ = ["CORNER", "CORNERS", "MARKER_LEVEL", "MARKER_MASS", "marker_corners", "marker_mass", "marker_scores",
           "marked_rows", "cross_evaluate", "aggregate", "summary_table", "what_catches_it"]

CORNER = 0.3  # side of the corner square, as a fraction of the image side (the disc stays below 1/3)
CORNERS = ("top left", "top right", "bottom left", "bottom right")  # the generator's numbering
MARKER_LEVEL = 0.6  # darkest channel of the marker (light grey, 0.9) above this; retina and spots stay below
MARKER_MASS = "marker_mass"  # the column, a registered metric (`thesislib.metrics.REGISTRY`)


def _box(size: int, corner: int, lo: float, hi: float) -> tuple[slice, slice]:
    """Rows and columns of the square [lo, hi) x [lo, hi) (fractions of `size`) mirrored into `corner`."""
    a, b = int(lo * size), max(int(lo * size) + 1, round(hi * size))
    rows = slice(a, b) if corner < 2 else slice(size - b, size - a)
    cols = slice(a, b) if corner % 2 == 0 else slice(size - b, size - a)
    return rows, cols


def marker_corners(images: torch.Tensor) -> torch.Tensor:
    """Which corner holds the synthetic spurious marker, per image.

    Args:
        images: float [N, 3, S, S] in [0, 1] (`thesislib.data.denormalize` of a batch).

    Returns:
        int64 [N]: the corner's index in CORNERS, or -1 where no marker is found (the darkest
        channel stays at or below MARKER_LEVEL around every corner's marker position).
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images: expected float [N, 3, S, S] in [0, 1], found shape {tuple(images.shape)}")
    darkest = images.amin(1)  # [N, S, S]: high only where every channel is high (grey or white)
    size = images.shape[-1]
    margin = 0.02  # the marker's edges blur with JPEG and resizing
    levels = []
    for corner in range(len(CORNERS)):
        rows, cols = _box(size, corner, MARKER_INSET - margin, MARKER_INSET + MARKER_SIDE + margin)
        levels.append(darkest[:, rows, cols].flatten(1).amax(1))
    level, corner = torch.stack(levels, 1).max(1)
    return torch.where(level > MARKER_LEVEL, corner, torch.full_like(corner, -1))


def marker_mass(heatmaps: torch.Tensor, corners: torch.Tensor, corner: float = CORNER) -> torch.Tensor:
    """Share of each map's mass in the corner square that holds its image's marker.

    Args:
        heatmaps: float [N, H, W], non-negative (explainers' maps are in [0, 1]).
        corners: int64 [N], from `marker_corners` (-1: no marker).
        corner: side of the square, as a fraction of the map's side.

    Returns:
        float [N] in [0, 1]: NaN where the image has no marker, 0 for an all-zero map.
    """
    if heatmaps.dim() != 3 or corners.shape != heatmaps.shape[:1]:
        raise ValueError(f"heatmaps, corners: expected [N, H, W] and [N], found shapes {tuple(heatmaps.shape)} "
                         f"and {tuple(corners.shape)}")
    if not 0 < corner <= 0.5:
        raise ValueError(f"corner: expected a fraction of the side in (0, 0.5], found {corner!r}")
    h = heatmaps.float().clamp_min(0)
    total = h.flatten(1).sum(1)
    inside = torch.zeros_like(total)
    for k in range(len(CORNERS)):
        rows, cols = _box(h.shape[-1], k, 0.0, corner)
        sel = corners == k
        inside[sel] = h[sel][:, rows, cols].flatten(1).sum(1)
    share = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return torch.where(corners >= 0, share, torch.full_like(share, float("nan")))


def marker_scores(model: torch.nn.Module, data, methods: Sequence[str], *, references: Sequence[str] = (),
                  prior: torch.Tensor | None = None, target: str = "predicted", max_images: int | None = None,
                  batch_size: int = 32, layer: str = "layer4", corner: float = CORNER) -> pd.DataFrame:
    """Where each method's maps put their mass relative to the marker, on the images `evaluate` scores.

    Args:
        model, data, methods, references, prior, target, max_images, batch_size, layer: as
            `thesislib.evaluation.evaluate` (the same seeded subset of images for the same
            `max_images`; the same maps for the same `layer`, the ceiling and noise references
            at its grid).
        corner: side of the corner square (see `marker_mass`).

    Returns:
        One row per image x method: image, method, marker_corner (CORNERS index, -1: none) and
        marker_mass (fraction; NaN without a marker).
    """
    from thesislib import explain as X
    from thesislib import references as R
    from thesislib.data import denormalize
    from thesislib.evaluation import stratified_subset
    from thesislib.train import predict

    was_training = model.training
    model.eval()
    logits, labels = predict(model, data)
    targets_all = logits.argmax(1) if target == "predicted" else labels
    rows = stratified_subset(labels, max_images)
    names = data.names
    size = data.batch(slice(0, 1))[0].shape[-1]
    grid = X.grid_at(model, size, layer) if {"ceiling", "noise"} & set(references) else None
    corners = torch.cat([marker_corners(denormalize(data.batch(rows[i:i + 256])[0]))
                         for i in range(0, len(rows), 256)] or [torch.zeros(0, dtype=torch.int64)])
    # the measure needs a marker: images without one get NaN and are not explained
    records = [dict(image=names[i], method=m, marker_corner=-1, marker_mass=float("nan"))
               for i in rows[corners < 0].tolist() for m in [*methods, *references]]
    rows, corners = rows[corners >= 0], corners[corners >= 0]
    try:
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            x, _, maps = data.batch(part)
            where = corners[start:start + batch_size]
            heat = X.explain_all(model, x, list(methods), targets=targets_all[part], layer=layer)
            for ref in references:
                heat[ref] = R.reference_maps(ref, x, maps, prior=prior, grid=grid,
                                             index=[names[i] for i in part.tolist()])
            for method, h in heat.items():
                mass = marker_mass(h, where, corner)
                records += [dict(image=names[i], method=method, marker_corner=int(c), marker_mass=float(m))
                            for i, c, m in zip(part.tolist(), where.tolist(), mass.tolist())]
    finally:
        model.train(was_training)
    return pd.DataFrame.from_records(records, columns=["image", "method", "marker_corner", "marker_mass"])


def cross_evaluate(grid: "Grid", test_sets: dict[str, str], *, corner: float = CORNER) -> pd.DataFrame:
    """Every run of a grid scored on other data sets, as `Grid.results` scores it on its own.

    Each run's model is scored on the `eval_split` part of each test set, split as its own data
    (input size, split, split seed), with its own evaluation settings whole (`RunConfig.eval_spec`:
    methods, reference maps, target, number of images, layer, and the metrics asked for; the
    prior is its own training split's mean expert map). Nothing is stored: the runs folder holds
    each run's scores on its own data only.

    Args:
        grid: a `thesislib.study.Grid` whose runs are trained (`grid.compute()`).
        test_sets: name -> data (a folder or a synthetic set's name, as RunConfig's `data`).
        corner: side of the corner square of `marker_mass`.

    Returns:
        One row per run x test set x method: the grid's family, setting, seed, run_id, learned,
        test_set, then `thesislib.evaluation.summarize`'s columns (metrics and classification in %)
        and marker_mass (% of the maps' mass in the marker's corner square, mean over the images
        with a marker; NaN without any) and marked_images.
    """
    from thesislib.data import load_split, resolve_root
    from thesislib.evaluation import summarize
    from thesislib.references import mean_expert_map

    if not isinstance(test_sets, dict) or not test_sets:
        raise ValueError(f"test_sets: expected a mapping name -> data set, found {test_sets!r}")
    roots = {name: resolve_root(data) for name, data in test_sets.items()}
    frames, seen = [], set()
    for row, run in zip(grid.table.itertuples(index=False), grid.runs()):
        if run.run_id in seen:  # a run in several rows (a baseline shared by families) is scored once
            continue
        seen.add(run.run_id)
        cfg = run.config
        if not run.trained:
            raise ValueError(f"grid: run {run.run_id} ({row.family} · {row.setting} · seed {row.seed}) is not "
                             "trained; expected grid.compute() first")
        model = run.load_model()
        prior = mean_expert_map(run.split().train)
        spec = cfg.eval_spec
        for name, root in roots.items():
            data = spec.data_of(load_split(root, cfg.input_size, fractions=cfg.split, split_seed=cfg.split_seed,
                                           cache_dir=run.runs_dir / "cache"))
            if root == run.data_root and run.complete:  # its own data: the stored evaluation, same settings
                summary = summarize(run.images())
            else:
                summary = summarize(spec.evaluate(model, data, prior=prior))
            marks = marker_scores(model, data, spec.methods, prior=prior, corner=corner, **spec.map_kwargs())
            marked = marks[marks["marker_corner"] >= 0].groupby("method")["marker_mass"]
            summary["marker_mass"] = summary["method"].map(marked.mean() * 100)
            summary["marked_images"] = summary["method"].map(marked.size()).fillna(0).astype(int)
            front = dict(family=row.family, setting=row.setting, seed=row.seed, run_id=run.run_id,
                         learned=run.summary().get("learned"), test_set=name)
            frames.append(summary.assign(**front))
    out = pd.concat(frames, ignore_index=True)
    front = ["family", "setting", "seed", "run_id", "learned", "test_set", "method", "method_label"]
    return out[front + [c for c in out.columns if c not in front]]


def marked_rows(data, n: int) -> list[int]:
    """Positions of up to `n` images of a split that carry the marker, glaucoma first (for galleries)."""
    from thesislib.data import denormalize

    x, labels, _ = data.batch()
    marked = (marker_corners(denormalize(x)) >= 0).nonzero().flatten().tolist()
    return sorted(marked, key=lambda i: -int(labels[i]))[:n]


def _label(metric: str) -> str:
    from thesislib.metrics import REGISTRY

    m = REGISTRY[metric]
    return f"{m.arrow} {m.label}"


def _higher(metric: str) -> bool:
    from thesislib.metrics import REGISTRY

    return REGISTRY[metric].higher


def aggregate(scores: pd.DataFrame) -> pd.DataFrame:
    """`cross_evaluate` rows over seeds, in `thesislib.tables.aggregate`'s long format.

    Returns:
        Its columns (mean, std, n, 95 % interval, flagged runs per cell) with setting
        "<trained> → <tested>", plus `trained` and `tested`; the marker mass is the metric
        MARKER_MASS (cells without marked images are left out).
    """
    from thesislib import tables

    if scores.empty:
        raise ValueError("scores: expected cross_evaluate rows, found none")
    keyed = scores.assign(setting=scores["setting"] + " → " + scores["test_set"])
    # the marker mass is aggregated below, over the marked images only
    long = tables.aggregate(keyed.drop(columns=[MARKER_MASS], errors="ignore"))
    runs = tables.with_defaults(keyed)
    g = runs.dropna(subset=[MARKER_MASS]).groupby(["family", "setting", "method_label"], sort=False)
    mass = g[MARKER_MASS].agg(mean="mean", std="std", n="count").reset_index()
    mass = mass.rename(columns={"method_label": "method"})
    mass["n_flagged"] = g["learned"].agg(lambda v: int((~v.astype(bool)).sum())).to_numpy()
    mass["kind"] = g["kind"].first().to_numpy()
    mass["metric"] = MARKER_MASS
    mass["lo"], mass["hi"] = tables.interval(mass["mean"], mass["std"], mass["n"])
    long = pd.concat([long, mass[long.columns]], ignore_index=True)
    pairs = dict(zip(keyed["setting"], zip(scores["setting"], scores["test_set"])))
    long["trained"] = long["setting"].map(lambda s: pairs[s][0])
    long["tested"] = long["setting"].map(lambda s: pairs[s][1])
    return long


def summary_table(long: pd.DataFrame, metrics: Sequence[str], methods: Sequence[str] = ("",)):
    """Rows metric x method, columns trained x tested: "mean ± sd" over seeds (the 95 % interval in
    each cell's hover), the explainers first, then the reference maps in one block.

    Args:
        long: `aggregate` output.
        metrics: registry names or MARKER_MASS.
        methods: method labels ("Score-CAM", reference labels; "" for classification metrics).

    Returns:
        A `thesislib.tables.Table`, with a note on flagged runs and on the marker mass.
    """
    from thesislib import tables
    from thesislib.metrics import REGISTRY
    from thesislib.references import LABELS as REFERENCE_LABELS

    part = long[long["metric"].isin(list(metrics)) & long["method"].isin(list(methods))]
    cols = list(dict.fromkeys(zip(part["trained"], part["tested"])))
    refs = set(REFERENCE_LABELS.values())
    rows = [(m, meth) for reference in (False, True) for m in metrics for meth in methods
            if (meth in refs) == reference and ((part["metric"] == m) & (part["method"] == meth)).any()]
    at = {(r.metric, r.method, r.trained, r.tested): r for r in part.itertuples()}

    def cell(key) -> str:
        r = at.get(key)
        return "—" if r is None else tables.fmt(r.mean, r.std, r.n, r.lo, r.hi, r.n_flagged)

    frame = pd.DataFrame({c: [cell((m, meth, *c)) for m, meth in rows] for c in cols},
                         index=pd.MultiIndex.from_tuples(
                             [(tables.REFERENCE_BLOCK * (meth in refs) + _label(m), meth) for m, meth in rows],
                             names=["metric", "method"]))
    frame.columns = pd.MultiIndex.from_tuples(cols, names=["trained on", "tested on"])
    notes = []
    flagged = int(part.loc[part["method"] == part["method"].iloc[0], "n_flagged"].max()) if len(part) else 0
    if flagged:
        notes.append(tables.FLAG_RULE)
    if MARKER_MASS in metrics:
        notes.append(f"{REGISTRY[MARKER_MASS].label}: the share of a map's mass in the corner square (side {CORNER:g} of the "
                     f"image side) that holds the image's marker, over the images that carry one; a map spread "
                     f"evenly puts {100 * CORNER ** 2:.0f} % there. No marker, no value (—).")
    return tables.Table(frame, [], notes)


def what_catches_it(long: pd.DataFrame, *, clean: str, cue: str, tested: str, method: str,
                    metrics: Sequence[str]):
    """Which metric tells the shortcut model from the clean one on data with the cue, beyond seed noise.

    For each metric, Welch's t-test (`thesislib.inference.welch`; the two models learn from
    different data, so nothing pairs them) of "the `cue` model is worse than the `clean` model",
    both tested on `tested` ("worse" in the metric's own direction; for classification metrics
    `method` is ignored), one-sided at 95 %.

    Returns:
        A `thesislib.tables.Table`: per metric the clean model's and the cue model's cells and the
        verdict ("yes": the metric catches the shortcut; "no (rates it better)" beyond the noise;
        "no (equivalent)" where the two lie within the metric's margin; "inconclusive").
    """
    from thesislib import tables
    from thesislib.inference import ALPHA, welch
    from thesislib.metrics import REGISTRY

    rows = []
    for metric in metrics:
        meth = "" if metric in REGISTRY and REGISTRY[metric].kind == "classification" else method
        pick = long[(long["metric"] == metric) & (long["method"] == meth) & (long["tested"] == tested)]
        a, b = pick[pick["trained"] == clean], pick[pick["trained"] == cue]
        if a.empty or b.empty:
            continue
        ra, rb = a.iloc[0], b.iloc[0]
        better_, worse = (ra, rb) if _higher(metric) else (rb, ra)
        margin = REGISTRY[metric].margin if metric in REGISTRY else 2.0
        try:
            t = welch(better_["mean"], better_["std"], int(better_["n"]), worse["mean"], worse["std"], int(worse["n"]),
                      margin)
        except ValueError:
            verdict = "inconclusive"
        else:
            verdict = ("yes" if t.p_greater <= ALPHA else "no (rates it better)" if t.p_less <= ALPHA
                       else "no (equivalent)" if t.p_equivalent <= ALPHA else "inconclusive")
        fmt = lambda r: tables.fmt(r["mean"], r["std"], r["n"], r["lo"], r["hi"], r["n_flagged"])  # noqa: E731
        rows.append({"metric": _label(metric), f"trained on: {clean}": fmt(a.iloc[0]),
                     f"trained on: {cue}": fmt(b.iloc[0]),
                     "shortcut model worse (95 %)": tables.Cell(verdict, best=verdict != "inconclusive")})
    frame = pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()
    return tables.Table(frame, [f"Both tested on \"{tested}\"; explainability metrics of {method}."],
                        ["Verdict: Welch's t-test, one-sided at 95 %, of \"the shortcut model is worse\": yes, the "
                                "metric catches the shortcut; no, it rates the shortcut model better beyond the "
                                "noise, or the two are equivalent within the metric's margin; a decided verdict is in bold."])
