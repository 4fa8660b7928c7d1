"""Evaluation: every metric of every heatmap of one model, as a tidy table.

`evaluate(model, data, methods)` returns one row per image x method with the localisation and
faithfulness metrics, flags for empty or constant maps, the time per image, and the model's
classification metrics on the whole split (repeated on each row, so tables of many runs can be
concatenated). `summarize` averages a run's rows per method in %; `METRICS` lists the columns
and whether higher is better.
"""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from thesislib import metrics as M
from thesislib.data import LagDataset
from thesislib.explain import LABELS, METHODS, Explainer, NotApplicable
from thesislib.train import predict

__all__ = ["evaluate", "summarize", "classification", "stratified_subset", "METRICS", "CLASSIFICATION"]

# column -> (label, higher is better); per-image values are fractions, tables show %
METRICS = {
    "iou_area": ("IoU (A)", True),
    "iou_bbox": ("IoU (BB)", True),
    "average_drop": ("AD", False),
    "increase_in_confidence": ("IiC", True),
    "pointing_game": ("Pointing game", True),
    "relevance_mass": ("Relevance mass", True),
    "deletion_auc": ("Deletion AUC", False),
    "insertion_auc": ("Insertion AUC", True),
}
CLASSIFICATION = {"accuracy": ("Acc", True), "roc_auc": ("ROC AUC", True), "f1": ("F1 score", True)}


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


def evaluate(model: nn.Module, data: LagDataset, methods: Sequence[str], *, target: str = "predicted",
             max_images: int | None = None, batch_size: int = 32, deletion_steps: int = 0,
             correct_only: bool = False) -> pd.DataFrame:
    """Score the heatmaps of `methods` on `data` against its expert maps.

    Args:
        model: trained classifier.
        data: an evaluation split (no augmentation is applied).
        methods: explainers, from `thesislib.explain.METHODS`; "cam" is skipped for PRECODE models
            (not applicable).
        target: explain the "predicted" class (default) or the true "label".
        max_images: explain a seeded stratified subset of this many images (classification
            metrics always use the whole split).
        batch_size: images per explainer call.
        deletion_steps: if > 0, also the deletion and insertion AUC with this many steps.
        correct_only: explain only correctly classified images.

    Returns:
        One row per image x method: image, label, pred, prob_glaucoma, target, method,
        method_label, the METRICS columns (fractions), drop_in_confidence (absolute, as
        pytorch-grad-cam's), heatmap_empty / map_empty (no Otsu foreground), heatmap_constant,
        seconds (explanation time per image), and the classification metrics of the whole split.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(METHODS)}")
    if target not in ("predicted", "label"):
        raise ValueError(f"target: expected 'predicted' or 'label', found {target!r}")
    was_training = model.training
    model.eval()
    logits, labels = predict(model, data)
    preds = logits.argmax(1)
    probs = F.softmax(logits.float(), 1)[:, 1]
    cls_metrics = classification(logits, labels)
    rows = stratified_subset(labels, max_images)
    if correct_only:
        rows = rows[preds[rows] == labels[rows]]
    names = data.names

    explainers = {}
    for method in methods:
        try:
            explainers[method] = Explainer(model, method)
        except NotApplicable:
            continue

    records = []
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        x, y, maps = data.batch(part)
        targets = preds[part] if target == "predicted" else y
        expert = M.binarize(maps)
        expert_empty = M.is_empty(expert)
        for method, explainer in explainers.items():
            t0 = time.perf_counter()
            heat = explainer(x, targets)
            seconds = (time.perf_counter() - t0) / len(part)
            mask = M.binarize(heat)
            y_conf, o_conf = M.confidences(model, x, heat, targets)
            cols = dict(
                iou_area=M.iou_area(mask, expert), iou_bbox=M.iou_bbox(mask, expert),
                average_drop=M.average_drop(y_conf, o_conf),
                increase_in_confidence=M.increase_in_confidence(y_conf, o_conf),
                drop_in_confidence=M.drop_in_confidence(y_conf, o_conf),
                pointing_game=M.pointing_game(heat, expert).float(),
                relevance_mass=M.relevance_mass(heat, expert),
                heatmap_empty=M.is_empty(mask), map_empty=expert_empty,
                heatmap_constant=heat.flatten(1).amax(1) == 0,
            )
            if deletion_steps:
                cols["deletion_auc"], cols["insertion_auc"] = M.deletion_insertion(
                    model, x, heat, targets, steps=deletion_steps)
            for k, i in enumerate(part.tolist()):
                rec = dict(image=names[i], label=int(labels[i]), pred=int(preds[i]), prob_glaucoma=float(probs[i]),
                           target=int(targets[k]), method=method, method_label=LABELS[method], seconds=seconds)
                rec.update({c: v[k].item() for c, v in cols.items()})
                records.append(rec)
    model.train(was_training)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["image", "label", "pred", "prob_glaucoma", "target", "method", "method_label",
                                   "seconds", *METRICS, "drop_in_confidence"])
    for key, value in cls_metrics.items():
        df[key] = value
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per-method means of one run's `evaluate` rows, in %, plus counts of empty and constant maps.

    Returns:
        One row per method: method, method_label, n_images, the METRICS columns present (% means),
        seconds_per_image, empty_heatmaps, constant_heatmaps, empty_maps, and the classification
        metrics in %.
    """
    present = [m for m in METRICS if m in df.columns]
    g = df.groupby("method", sort=False)
    out = g[present].mean() * 100
    out["n_images"] = g.size()
    out["seconds_per_image"] = g["seconds"].mean()
    out["empty_heatmaps"] = g["heatmap_empty"].sum().astype(int)
    out["constant_heatmaps"] = g["heatmap_constant"].sum().astype(int)
    out["empty_maps"] = g["map_empty"].sum().astype(int)
    for key in CLASSIFICATION:
        out[key] = g[key].first() * 100
    out.insert(0, "method_label", g["method_label"].first())
    return out.reset_index()
