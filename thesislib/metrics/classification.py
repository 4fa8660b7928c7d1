"""Classification metrics of a model's predictions on a split: accuracy, ROC AUC, F1, confusion matrix."""

from __future__ import annotations

import torch

__all__ = ["accuracy", "roc_auc", "f1_score", "confusion_matrix"]


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of correct predictions."""
    return (pred == labels).double().mean().item()


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` for labels == 1 (Mann-Whitney U with average ranks).

    Raises:
        ValueError: labels hold a single class (the AUC is undefined).
    """
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc: labels: expected both classes, found {n_pos} positive and {n_neg} negative")
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    counts = counts.double()
    ranks = (counts.cumsum(0) - counts + (counts + 1) / 2)[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return (u / (n_pos * n_neg)).item()


def f1_score(pred: torch.Tensor, labels: torch.Tensor, positive: int = 1) -> float:
    """F1 of the positive class (glaucoma); 0 when there are no positives predicted or present."""
    p, l = pred == positive, labels == positive  # noqa: E741
    tp = (p & l).sum().item()
    denom = 2 * tp + (p & ~l).sum().item() + (~p & l).sum().item()
    return 2 * tp / denom if denom else 0.0


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, classes: int = 2) -> torch.Tensor:
    """int64 [classes, classes]: rows are true classes, columns predicted (scikit-learn's layout)."""
    return torch.bincount(labels.long() * classes + pred.long(), minlength=classes * classes).view(classes, classes)
