"""Evaluation: every metric of every heatmap of one model, as a tidy table.

`evaluate(model, data, methods)` returns one row per image x method (explainers and reference
maps alike) with every per-image metric of `thesislib.metrics.REGISTRY` that the run options turn
on (`thesislib.metrics.active`; each metric's compute group, below, fills it), flags for empty or
constant maps, duplicated methods, the time per image, the IoU at other thresholds
(`thesislib.metrics.iou_curve`), and the model's classification metrics on the whole split
(repeated on each row, so tables of many runs can be concatenated). `summarize` averages a run's
rows per method (optionally per class, or for correctly and wrongly classified images) in %;
`mean_maps` averages each method's maps over a split, to show systematic biases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from thesislib import explain as X
from thesislib import metrics as M
from thesislib import references as R
from thesislib.metrics import localisation
from thesislib.data import LagDataset
from thesislib.train import predict

__all__ = ["evaluate", "summarize", "mean_maps", "classification", "stratified_subset", "DUPLICATE_ATOL",
           "CONFUSION"]

DUPLICATE_ATOL = 1e-4  # two methods whose maps differ by at most this on every image are one method
CONFUSION = ("tn", "fp", "fn", "tp")


@dataclass(frozen=True)
class _Batch:
    """What every compute group reads for one batch: the model, images [N, 3, H, W], targets [N],
    expert maps [N, H, W] and their Otsu masks, the unmasked confidence [N], and the run options."""

    model: nn.Module
    x: torch.Tensor
    targets: torch.Tensor
    part: torch.Tensor
    maps: torch.Tensor
    expert: torch.Tensor
    y_conf: torch.Tensor
    options: dict


_GROUPS: dict[str, Callable[[_Batch, torch.Tensor], dict[str, torch.Tensor]]] = {}


def _group(name: str):
    """Decorator: the compute group `name` (`thesislib.metrics.GROUPS`): (batch, heatmaps [N, H, W])
    -> column -> [N], every registry metric of that group and the flags that come with it."""
    def add(fn):
        _GROUPS[name] = fn
        return fn
    return add


@_group("otsu")
def _otsu(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    otsu = M.otsu_ious(h, b.maps)  # both Otsu masks' IoU (A), IoU (BB) and emptiness, in one call
    return dict(iou_area=otsu["iou_area"], iou_bbox=otsu["iou_bbox"], heatmap_empty=otsu["heatmap_empty"])


@_group("expert")
def _expert(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    return {m.name: getattr(localisation, m.name)(h, b.expert).float()
            for m in M.active(b.options) if m.group == "expert"}


@_group("masking")
def _masking(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    o_conf = M.masked_confidence(b.model, b.x, h, b.targets, convention="tensor")
    return dict(average_drop=M.average_drop(b.y_conf, o_conf),
                increase_in_confidence=M.increase_in_confidence(b.y_conf, o_conf),
                drop_in_confidence=M.drop_in_confidence(b.y_conf, o_conf))


@_group("masking_black")
def _masking_black(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    o_black = M.masked_confidence(b.model, b.x, h, b.targets, convention="black")
    return dict(average_drop_black=M.average_drop(b.y_conf, o_black),
                increase_in_confidence_black=M.increase_in_confidence(b.y_conf, o_black))


@_group("deletion")
def _deletion(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    deletion, insertion = M.deletion_insertion(b.model, b.x, h, b.targets, steps=b.options["deletion_steps"])
    return dict(deletion_auc=deletion, insertion_auc=insertion)


@_group("road")
def _road(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(int(b.part[0]))  # seeded per batch
    return {"road": M.road(b.model, b.x, h, b.targets, list(b.options["road_percentiles"]),
                           generator=generator)["road"]}


@_group("threshold_free")
def _threshold_free(b: _Batch, h: torch.Tensor) -> dict[str, torch.Tensor]:
    return M.threshold_free(h, b.expert)  # with the IoU curve's columns


def _groups_on(options: dict) -> list[str]:
    """The compute groups of the metrics that `options` turn on, in `thesislib.metrics.GROUPS` order."""
    wanted = {m.group for m in M.active(options)}
    return [g for g in M.GROUPS if g in wanted]


def classification(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy, ROC AUC (glaucoma probability), F1 (glaucoma positive) and the confusion matrix."""
    pred = logits.argmax(1)
    prob = F.softmax(logits.float(), 1)[:, 1]
    cm = M.confusion_matrix(pred, labels)
    return dict(accuracy=M.accuracy(pred, labels), roc_auc=M.roc_auc(prob, labels), f1=M.f1_score(pred, labels),
                tn=int(cm[0, 0]), fp=int(cm[0, 1]), fn=int(cm[1, 0]), tp=int(cm[1, 1]))


def stratified_subset(labels: torch.Tensor, k: int | None, seed: int = 0) -> torch.Tensor:
    """Positions of at most k items, each class in proportion, in a seeded order; all if k is None."""
    n = len(labels)
    if k is None or k >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    picked = []
    for cls in torch.unique(labels).tolist():
        members = order[labels[order] == cls]
        picked.append(members[: max(1, round(k * len(members) / n))])
    return torch.sort(torch.cat(picked)[:k]).values


class _Duplicates:
    """Which methods repeat an earlier method's maps on every image, fed batch by batch.

    Per batch, `thesislib.explain.duplicate_groups` groups methods by their first member (no
    chaining); a method repeats that member only if it falls in its group on every batch.
    """

    def __init__(self, atol: float = DUPLICATE_ATOL):
        self.atol = atol
        self.order: list[str] = []
        self.pairs: set[tuple[str, str]] | None = None  # (kept method, its duplicate)

    def update(self, maps: dict[str, torch.Tensor]) -> None:
        self.order += [m for m in maps if m not in self.order]
        pairs = {(g[0], m) for g in X.duplicate_groups(maps, self.atol) for m in g[1:]}
        self.pairs = pairs if self.pairs is None else self.pairs & pairs

    def same_as(self) -> dict[str, str]:
        """method -> the method whose maps it repeats, or "" if its maps are its own."""
        kept_of = {dup: kept for kept, dup in self.pairs or ()}
        return {m: kept_of.get(m, "") for m in self.order}


def _check_args(methods, references, prior, target) -> None:
    for arg, given, allowed in (("methods", methods, X.METHODS), ("references", references, R.REFERENCES)):
        if isinstance(given, str):
            raise TypeError(f"{arg}: expected a sequence of names, found the string {given!r} (write [{given!r}])")
        unknown = [m for m in given if m not in allowed]
        if unknown:
            raise ValueError(f"{arg}: unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(allowed)}")
        if len(set(given)) != len(given):
            raise ValueError(f"{arg}: expected each name once, found {list(given)}")
    if "prior" in references and prior is None:
        raise ValueError("prior: the 'prior' reference needs the training split's mean expert map "
                         "(thesislib.references.mean_expert_map(split.train)), found None")
    if target not in ("predicted", "label"):
        raise ValueError(f"target: expected 'predicted' or 'label', found {target!r}")


def _batches(model: nn.Module, data: LagDataset, rows: torch.Tensor, targets_all: torch.Tensor,
             methods: Sequence[str], references: Sequence[str], prior: torch.Tensor | None,
             batch_size: int, layer: str = "layer4") -> Iterator[tuple]:
    """Per batch: (positions, images, targets, expert maps, method -> maps, method -> seconds per image).

    The ceiling and noise references are drawn at the explained layer's grid."""
    at_grid = R.AT_GRID & set(references)
    grid = X.grid_at(model, data.batch(slice(0, 1))[0].shape[-1], layer) if at_grid else None
    names = data.names
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        x, _, maps = data.batch(part)
        targets = targets_all[part]
        timings: dict[str, float] = {}
        heat = X.explain_all(model, x, list(methods), targets=targets, timings=timings, layer=layer)
        for ref in references:
            t0 = time.perf_counter()
            heat[ref] = R.reference_maps(ref, x, maps, prior=prior, grid=grid,
                                         index=[names[i] for i in part.tolist()])
            timings[ref] = time.perf_counter() - t0
        seconds = {m: timings.get(m, float("nan")) / len(part) for m in heat}
        yield part, x, targets, maps, heat, seconds


def evaluate(model: nn.Module, data: LagDataset, methods: Sequence[str], *, references: Sequence[str] = (),
             prior: torch.Tensor | None = None, target: str = "predicted", max_images: int | None = None,
             batch_size: int = 32, deletion_steps: int = 0, correct_only: bool = False, layer: str = "layer4",
             road_percentiles: Sequence[float] = (), threshold_free: bool = False,
             metric_sets: Sequence[str] = ()) -> pd.DataFrame:
    """Score the heatmaps of `methods` and the reference maps on `data` against its expert maps.

    Args:
        model: trained classifier.
        data: an evaluation split (no augmentation is applied).
        methods: explainers, from `thesislib.explain.METHODS`; those not applicable to the model
            are left out.
        references: reference maps, from `thesislib.references.REFERENCES`, scored like explainers.
        prior: float [H, W], the training split's mean expert map; needed for "prior".
        target: explain the "predicted" class (default) or the true "label".
        max_images: explain a seeded stratified subset of this many images (classification
            metrics always use the whole split).
        batch_size: images per explainer call.
        deletion_steps: if > 0, also the deletion and insertion AUC with this many steps.
        correct_only: explain only correctly classified images.
        layer: the stage the explainers read (`thesislib.explain.LAYERS`); the ceiling and noise
            references follow its grid.
        road_percentiles: if given, also ROAD (`thesislib.metrics.road`) at these percentiles,
            its noise seeded per batch.
        threshold_free: also relevance rank accuracy, top-k intersection, pixel AUROC and the IoU
            curve (`thesislib.metrics.threshold_free`: a sort of every map).
        metric_sets: also the metrics of these named sets (`thesislib.metrics.SETS`) that are off
            unless a set asks for them (`Metric.option` "metric_sets").

    Returns:
        One row per image x method: image, label, pred, correct, prob_glaucoma, target, method, method_label,
        kind ("explainer" | "reference"), class_agnostic, same_as (the earlier method whose maps
        this method's maps equal within DUPLICATE_ATOL on every evaluated image, else ""), the
        registry's per-image localisation and faithfulness metrics (fractions; Average Drop and
        Increase in Confidence under both masking conventions, deletion/insertion only when
        deletion_steps > 0, ROAD only with road_percentiles, the threshold-free ones only with
        threshold_free), drop_in_confidence (absolute, as pytorch-grad-cam's), heatmap_empty /
        map_empty (no Otsu foreground), heatmap_constant, seconds (time per image), with
        threshold_free the IoU curve's columns (`thesislib.metrics.curve_columns`), and
        the classification metrics of the whole split (accuracy, roc_auc, f1, tn, fp, fn, tp).
    """
    _check_args(methods, references, prior, target)
    X.check_layer(layer)
    options = dict(deletion_steps=deletion_steps, road_percentiles=tuple(road_percentiles),
                   threshold_free=threshold_free, metric_sets=tuple(metric_sets))
    unknown = [s for s in options["metric_sets"] if s not in M.SETS]
    if isinstance(metric_sets, str) or unknown:
        raise ValueError(f"metric_sets: expected a list of metric sets from {', '.join(M.SETS)}, found {metric_sets!r}")
    groups = _groups_on(options)
    was_training = model.training
    model.eval()
    logits, labels = predict(model, data)
    preds = logits.argmax(1)
    probs = F.softmax(logits.float(), 1)[:, 1]
    cls_metrics = classification(logits, labels)
    rows = stratified_subset(labels, max_images)
    if correct_only:
        rows = rows[preds[rows] == labels[rows]]
    targets_all = preds if target == "predicted" else labels
    names = data.names
    agnostic = X.CLASS_AGNOSTIC
    dups = _Duplicates()
    records = []
    try:
        for part, x, targets, maps, heat, seconds in _batches(model, data, rows, targets_all, methods, references,
                                                             prior, batch_size, layer):
            b = _Batch(model, x, targets, part, maps, M.binarize(maps),
                       M.target_confidence(model, x, targets), options)  # Y does not depend on the map
            expert_empty = M.is_empty(b.expert)
            dups.update({m: heat[m] for m in methods if m in heat})
            for method, h in heat.items():
                cols = {"map_empty": expert_empty, "heatmap_constant": h.flatten(1).amax(1) == 0}
                for group in groups:
                    cols.update(_GROUPS[group](b, h))
                is_ref = method in references
                label = R.LABELS[method] if is_ref else X.LABELS[method]
                for k, i in enumerate(part.tolist()):
                    rec = dict(image=names[i], label=int(labels[i]), pred=int(preds[i]),
                               correct=bool(preds[i] == labels[i]), prob_glaucoma=float(probs[i]), target=int(targets[k]), method=method,
                               method_label=label, kind="reference" if is_ref else "explainer",
                               class_agnostic=is_ref or method in agnostic, seconds=seconds[method])
                    rec.update({c: v[k].item() for c, v in cols.items()})
                    records.append(rec)
    finally:
        model.train(was_training)
    metric_cols = [m.name for m in M.active(options)]
    columns = ["image", "label", "pred", "correct", "prob_glaucoma", "target", "method", "method_label", "kind",
               "class_agnostic", "same_as", *metric_cols, "drop_in_confidence", "heatmap_empty", "map_empty",
               "heatmap_constant", "seconds", *(M.curve_columns() if "threshold_free" in groups else [])]
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=columns)
    same_as = dups.same_as()
    df["same_as"] = df["method"].map(lambda m: same_as.get(m, "")).astype(object)
    df = df[columns]
    for key, value in cls_metrics.items():
        df[key] = value
    return df


def summarize(df: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Per-method means of one run's `evaluate` rows, in %, plus counts of empty and constant maps.

    Args:
        df: `evaluate` output of one run.
        by: None for one row per method, or a column such as "pred" or "label" for one row per
            method x value of it (every method table read per predicted or true class), or
            "correct" (correctly vs wrongly classified images; derived from pred and label where
            the table predates the column).
    Returns:
        One row per method (x class): method, [by,] method_label, kind, class_agnostic, same_as,
        n_images, the registry's per-image metrics present (% means), the IoU curve's columns
        present (% means), seconds_per_image, empty_heatmaps, constant_heatmaps, empty_maps, and
        the classification metrics of the whole split (accuracy, roc_auc, f1 in %; tn, fp, fn,
        tp counts).
    """
    df = df.copy()
    if by == "correct" and {"pred", "label"} <= set(df.columns):  # rows written before the column: derived
        derived = df["pred"] == df["label"]
        df["correct"] = derived if "correct" not in df.columns else df["correct"].where(df["correct"].notna(), derived)
    if by is not None and by not in df.columns:
        raise ValueError(f"by: expected a column of the evaluation table such as 'pred', 'label' or 'correct', "
                         f"found {by!r}")
    if by == "correct":
        df["correct"] = df["correct"].astype(bool)
    # tables written by older code, or read back from CSV (where "" becomes NaN)
    if "kind" not in df.columns:
        df["kind"] = "explainer"
    if "class_agnostic" not in df.columns:
        df["class_agnostic"] = df["method"].isin(X.CLASS_AGNOSTIC)
    df["same_as"] = df["same_as"].astype(object).fillna("").astype(str) if "same_as" in df.columns else ""
    # a label is not a number: a reference map is named as the code names it now, whenever scored
    is_ref = (df["kind"] == "reference") & df["method"].isin(list(R.LABELS))
    if "method_label" in df.columns and is_ref.any():
        df.loc[is_ref, "method_label"] = df.loc[is_ref, "method"].map(R.LABELS)
    keys = ["method"] if by is None else ["method", by]
    present = [m.name for m in M.registered() if m.kind != "classification" and m.name in df.columns]
    present += [c for c in M.curve_columns() if c in df.columns]
    g = df.groupby(keys, sort=False)
    out = g[present].mean() * 100
    out["n_images"] = g.size()
    out["seconds_per_image"] = g["seconds"].mean()
    out["empty_heatmaps"] = g["heatmap_empty"].sum().astype(int)
    out["constant_heatmaps"] = g["heatmap_constant"].sum().astype(int)
    out["empty_maps"] = g["map_empty"].sum().astype(int)
    for m in M.registered("classification"):
        if m.name in df.columns:
            out[m.name] = g[m.name].first() * 100
    for key in CONFUSION:
        if key in df.columns:
            out[key] = g[key].first()
    for i, col in enumerate(("method_label", "kind", "class_agnostic", "same_as")):
        out.insert(i, col, g[col].first())
    out["class_agnostic"] = out["class_agnostic"].astype(bool)
    out = out.reset_index()
    if by is not None:  # classes in order within each method, methods in their order of appearance
        rank = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}
        out = out.sort_values([by], kind="stable").sort_values("method", key=lambda s: s.map(rank), kind="stable")
        out = out.reset_index(drop=True)
    return out


def mean_maps(model: nn.Module, data: LagDataset, methods: Sequence[str], *, references: Sequence[str] = (),
              prior: torch.Tensor | None = None, target: str = "predicted", max_images: int | None = None,
              batch_size: int = 32, layer: str = "layer4") -> dict[str, torch.Tensor]:
    """Each method's mean map over a split, beside the mean expert map, to show systematic biases.

    Args:
        as `evaluate` (the same seeded subset of images for the same `max_images`).
    Returns:
        method (and reference) -> float32 [H, W] in [0, 1], plus "expert": the mean expert map over
        the same images. Methods not applicable to the model are left out.
    """
    _check_args(methods, references, prior, target)
    was_training = model.training
    model.eval()
    logits, labels = predict(model, data)
    targets_all = logits.argmax(1) if target == "predicted" else labels
    rows = stratified_subset(labels, max_images)
    sums: dict[str, torch.Tensor] = {}
    try:
        for _, _, _, maps, heat, _ in _batches(model, data, rows, targets_all, methods, references, prior, batch_size,
                                               layer):
            for name, m in {**heat, "expert": maps}.items():
                part = m.double().sum(0)
                sums[name] = sums[name] + part if name in sums else part
    finally:
        model.train(was_training)
    return {name: (s / max(1, len(rows))).float() for name, s in sums.items()}
