"""Registry: the declaration of every metric (`Metric`: name, label, direction, kind, unit, bounds).

Tables, figures and claims read these declarations instead of keeping their own lists of metrics
or their own idea of which value is better.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "Metric", "REGISTRY", "registered"]


KINDS = ("localisation", "faithfulness", "classification", "randomisation")


@dataclass(frozen=True)
class Metric:
    """What a metric is, beside what computes it: the one place tables, figures and claims read.

    name: the column in evaluation tables (per-image values are fractions; tables show x100).
    label: how tables and figures name it. higher: True if higher is better. kind: one of KINDS.
    unit: of the table value ("%" for fractions x100). on_request: computed only when an
    evaluation asks for it (it costs extra forward passes or a sort per map), never while
    tracking training. bounds: the range of the table value (intervals are kept inside it).
    margin: the smallest difference, in the table's unit, that counts as an effect worth the name;
    a verdict says "equivalent" where a difference is shown to lie within +-margin
    (`thesislib.inference`).
    """

    name: str
    label: str
    higher: bool
    kind: str
    unit: str = "%"
    on_request: bool = False
    bounds: tuple[float, float] = (0.0, 100.0)
    margin: float = 2.0

    @property
    def arrow(self) -> str:
        return "↑" if self.higher else "↓"

    def better(self, a: float, b: float) -> bool:
        """True if value a is strictly better than value b."""
        return a > b if self.higher else a < b


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("iou_area", "IoU (A)", True, "localisation"),
    Metric("iou_bbox", "IoU (BB)", True, "localisation"),
    Metric("pointing_game", "Pointing game", True, "localisation"),
    Metric("relevance_mass", "Relevance mass", True, "localisation"),
    # input x map on the normalised tensor (masked pixels become the data mean), as pytorch-grad-cam
    Metric("average_drop", "AD", False, "faithfulness"),
    Metric("increase_in_confidence", "IiC", True, "faithfulness"),
    # the image x map before normalisation (black outside the map)
    Metric("average_drop_black", "AD (black)", False, "faithfulness"),
    Metric("increase_in_confidence_black", "IiC (black)", True, "faithfulness"),
    # threshold-free: Quantus's definitions, ties shared in expectation (see `unthresholded._expected_hits`);
    # a sort of every map, so computed on request (`threshold_free`)
    Metric("relevance_rank_accuracy", "Rank accuracy", True, "localisation", on_request=True),
    Metric("top_k_intersection", "Top-2 % ∩", True, "localisation", on_request=True),
    Metric("pixel_auroc", "AUROC (pixels)", True, "localisation", on_request=True),
    Metric("deletion_auc", "Deletion AUC", False, "faithfulness", on_request=True),
    Metric("insertion_auc", "Insertion AUC", True, "faithfulness", on_request=True),
    # (LeRF - MoRF) / 2 of the explained class's probability, as pytorch-grad-cam's ROADCombined
    Metric("road", "ROAD", True, "faithfulness", on_request=True, bounds=(-50.0, 50.0)),
    # model-randomisation sanity check (thesislib.sanity): original vs randomised maps; lower is
    # better, as a map that depends on the model changes when the model does
    Metric("spearman", "Rank correlation", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1),
    Metric("ssim", "SSIM", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1),
    Metric("hog", "HOG similarity", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1),
    Metric("accuracy", "Acc", True, "classification"),
    Metric("roc_auc", "ROC AUC", True, "classification"),
    Metric("f1", "F1 score", True, "classification"),
)}


def registered(kind: str | None = None) -> list[Metric]:
    """The registered metrics of one kind (all if None), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    return [m for m in REGISTRY.values() if kind is None or m.kind == kind]
