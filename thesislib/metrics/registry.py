"""Registry: the declaration of every metric (`Metric`: name, label, direction, kind, unit, bounds,
the compute group that fills it, the run option that turns it on, the named sets it belongs to).

Tables, figures and claims read these declarations instead of keeping their own lists of metrics
or their own idea of which value is better; `thesislib.evaluation.evaluate` computes the groups of
the metrics a run's options turn on (`active`). A new per-image metric of a map and the expert
mask is one function in `thesislib.metrics.localisation` and one record here (group "expert").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["KINDS", "GROUPS", "OPTIONS", "SETS", "Metric", "REGISTRY", "registered", "in_set", "active",
           "per_image"]


KINDS = ("localisation", "faithfulness", "classification", "randomisation", "shortcut")
GROUPS = ("otsu", "expert", "masking", "masking_black", "deletion", "road", "threshold_free")
"""The compute groups of `thesislib.evaluation.evaluate`, each filling its metrics from one pass
(one Otsu binarisation, one masked forward, ...); "expert": f(heatmaps, expert masks) -> [N], the
function of the metric's name in `thesislib.metrics.localisation`."""
OPTIONS = ("deletion_steps", "road_percentiles", "threshold_free", "metric_sets")
"""The run options (`thesislib.study.config.EvalSpec` fields, `evaluate` arguments) that turn
metrics on; "metric_sets" turns on the metrics of the named sets it lists."""


@dataclass(frozen=True)
class Metric:
    """What a metric is, beside what computes it: the one place tables, figures and claims read.

    name: the column in evaluation tables (per-image values are fractions; tables show x100).
    label: how tables and figures name it. higher: True if higher is better. kind: one of KINDS.
    unit: of the table value ("%" for fractions x100). bounds: the range of the table value
    (intervals are kept inside it).
    margin: the smallest difference, in the table's unit, that counts as an effect worth the name;
    a verdict says "equivalent" where a difference is shown to lie within +-margin
    (`thesislib.inference`). group: the compute group of `evaluate` that fills it (one of GROUPS),
    None where another module computes it (classification, `thesislib.sanity`,
    `thesislib.shortcut`). option: the run option that turns it on (one of OPTIONS), None if always
    on; a metric with an option is computed on request only (it costs extra forward passes or a
    sort per map), never while tracking training. sets: the named sets it belongs to (SETS).
    """

    name: str
    label: str
    higher: bool
    kind: str
    unit: str = "%"
    bounds: tuple[float, float] = (0.0, 100.0)
    margin: float = 2.0
    group: str | None = None
    option: str | None = None
    sets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field, value, allowed in (("kind", self.kind, KINDS), ("group", self.group, (None, *GROUPS)),
                                      ("option", self.option, (None, *OPTIONS))):
            if value not in allowed:
                raise ValueError(f"Metric {self.name!r}: {field}: expected one of {allowed}, found {value!r}")
        if self.option == "metric_sets" and not self.sets:
            raise ValueError(f"Metric {self.name!r}: option 'metric_sets' needs the sets that turn it on")

    @property
    def on_request(self) -> bool:
        """Computed only when a run option asks for it."""
        return self.option is not None

    def on(self, options: Mapping[str, Any]) -> bool:
        """Whether the run options (option name -> value, e.g. `EvalSpec.to_dict()`) turn it on."""
        if self.option is None:
            return True
        value = options.get(self.option)
        if self.option == "metric_sets":
            return bool(set(self.sets) & set(value or ()))
        return bool(value)

    @property
    def arrow(self) -> str:
        return "↑" if self.higher else "↓"

    def better(self, a: float, b: float) -> bool:
        """True if value a is strictly better than value b."""
        return a > b if self.higher else a < b


_THESIS = ("thesis",)  # the thesis's method tables: IoU by area and box, AD and IiC
_FAITHFUL = ("faithfulness",)
_FREE = ("threshold-free",)
_PANEL = ("reliability",)  # the report's reliability panel (thesislib.reliability): the default per-image metrics

REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("iou_area", "IoU (A)", True, "localisation", group="otsu", sets=(*_THESIS, *_PANEL)),
    Metric("iou_bbox", "IoU (BB)", True, "localisation", group="otsu", sets=(*_THESIS, *_PANEL)),
    Metric("pointing_game", "Pointing game", True, "localisation", group="expert", sets=_PANEL),
    Metric("relevance_mass", "Relevance mass", True, "localisation", group="expert", sets=_PANEL),
    # input x map on the normalised tensor (masked pixels become the data mean), as pytorch-grad-cam
    Metric("average_drop", "AD", False, "faithfulness", group="masking", sets=(*_THESIS, *_FAITHFUL, *_PANEL)),
    Metric("increase_in_confidence", "IiC", True, "faithfulness", group="masking",
           sets=(*_THESIS, *_FAITHFUL, *_PANEL)),
    # the image x map before normalisation (black outside the map)
    Metric("average_drop_black", "AD (black)", False, "faithfulness", group="masking_black", sets=_FAITHFUL),
    Metric("increase_in_confidence_black", "IiC (black)", True, "faithfulness", group="masking_black",
           sets=_FAITHFUL),
    # threshold-free: Quantus's definitions, ties shared in expectation (see `unthresholded._expected_hits`);
    # a sort of every map, so computed on request (`threshold_free`)
    Metric("relevance_rank_accuracy", "Rank accuracy", True, "localisation", group="threshold_free",
           option="threshold_free", sets=_FREE),
    Metric("top_k_intersection", "Top-2 % ∩", True, "localisation", group="threshold_free",
           option="threshold_free", sets=_FREE),
    Metric("pixel_auroc", "AUROC (pixels)", True, "localisation", group="threshold_free", option="threshold_free",
           sets=_FREE),
    # centre of mass of the map vs of the expert mask, in % of the image diagonal; on request
    Metric("centroid_distance", "Centre distance", False, "localisation", group="expert", option="metric_sets",
           sets=("geometry",)),
    # the energy-based pointing game: the map's share inside the expert mask's box; on request
    Metric("energy_in_box", "Energy in box", True, "localisation", group="expert", option="metric_sets",
           sets=("geometry",)),
    Metric("deletion_auc", "Deletion AUC", False, "faithfulness", group="deletion", option="deletion_steps",
           sets=(*_FAITHFUL, *_FREE)),
    Metric("insertion_auc", "Insertion AUC", True, "faithfulness", group="deletion", option="deletion_steps",
           sets=(*_FAITHFUL, *_FREE)),
    # (LeRF - MoRF) / 2 of the explained class's probability, as pytorch-grad-cam's ROADCombined
    Metric("road", "ROAD", True, "faithfulness", bounds=(-50.0, 50.0), group="road", option="road_percentiles",
           sets=_FAITHFUL),
    # model-randomisation sanity check (thesislib.sanity): original vs randomised maps; lower is
    # better, as a map that depends on the model changes when the model does
    Metric("spearman", "Rank correlation", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1,
           sets=("randomisation",)),
    Metric("ssim", "SSIM", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1, sets=("randomisation",)),
    Metric("hog", "HOG similarity", False, "randomisation", unit="", bounds=(-1.0, 1.0), margin=0.1,
           sets=("randomisation",)),
    # the shortcut study (thesislib.shortcut): the share of a map's mass in the marker's corner;
    # lower is better, as the marker is not the evidence
    Metric("marker_mass", "Mass in the marker corner", False, "shortcut", sets=("shortcut",)),
    Metric("accuracy", "Acc", True, "classification", sets=_THESIS),
    Metric("roc_auc", "ROC AUC", True, "classification", sets=_THESIS),
    Metric("f1", "F1 score", True, "classification", sets=_THESIS),
)}
SETS = tuple(dict.fromkeys(s for m in REGISTRY.values() for s in m.sets))
"""The named sets of metrics, in order of first appearance."""


def registered(kind: str | None = None) -> list[Metric]:
    """The registered metrics of one kind (all if None), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    return [m for m in REGISTRY.values() if kind is None or m.kind == kind]


def in_set(name: str) -> list[Metric]:
    """The metrics of the named set `name` (one of SETS), in registry order."""
    if name not in SETS:
        raise ValueError(f"name: expected a metric set, one of {', '.join(SETS)}, found {name!r}")
    return [m for m in REGISTRY.values() if name in m.sets]


def per_image() -> list[Metric]:
    """The metrics `evaluate` computes per image (those of a compute group): localisation first,
    then faithfulness, each in registry order (the column order of every stored evaluation)."""
    return [m for kind in ("localisation", "faithfulness") for m in registered(kind) if m.group is not None]


def active(options: Mapping[str, Any]) -> list[Metric]:
    """The per-image metrics (`per_image`) that the run options (option name -> value) turn on."""
    return [m for m in per_image() if m.on(options)]
