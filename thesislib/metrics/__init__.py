"""Metrics: pure, batched torch functions (batch first); no I/O, no state.

    from thesislib import metrics as M
    M.otsu_ious(heatmaps, expert_maps)["iou_area"]   # every public name is here

One module per job:

    registry        what each metric is, which group computes it and which option turns it on
                    (`Metric`, `REGISTRY`, `registered`, `in_set`, `active`)
    maps            shape checks and boolean counts shared by the others (`is_empty`)
    otsu            Otsu's threshold and foreground, as scikit-image's `threshold_otsu`
    kernels         the compiled CPU code (numba) behind otsu and localisation, and its switch
                    `kernels.USE_NUMBA` (set it there: the metrics read it from that module)
    localisation    IoU by area and by box, pointing game, relevance mass
    unthresholded   rank accuracy, top-k intersection, pixel AUROC, the IoU curve (`threshold_free`)
    faithfulness    Average Drop, Increase in Confidence, deletion/insertion, ROAD (a model needed)
    classification  accuracy, ROC AUC, F1, confusion matrix

Per-image metrics are fractions in [0, 1]; tables multiply by 100. Empty foregrounds give 0,
never NaN; callers flag them with `is_empty`.
"""

from thesislib.metrics.registry import (GROUPS, KINDS, OPTIONS, REGISTRY, SETS, Metric, active, in_set, per_image,
                                        registered)
from thesislib.metrics.maps import is_empty
from thesislib.metrics.otsu import binarize, otsu_threshold
from thesislib.metrics.localisation import (box_iou, boxes, iou_area, iou_bbox, otsu_ious, pointing_game,
                                            relevance_mass)
from thesislib.metrics.unthresholded import (CURVE_FIXED, CURVE_TOP, TOP_K, average_ranks, curve_columns, iou_curve,
                                             pixel_auroc, relevance_rank_accuracy, threshold_free, top_k_intersection,
                                             top_share_mask)
from thesislib.metrics.faithfulness import (CONVENTIONS, ROAD_NOISE, average_drop, confidences, deletion_insertion,
                                            drop_in_confidence, increase_in_confidence, masked_confidence,
                                            masked_inputs, road, road_impute, target_confidence)
from thesislib.metrics.classification import accuracy, confusion_matrix, f1_score, roc_auc

__all__ = [
    "Metric", "REGISTRY", "registered", "KINDS", "GROUPS", "OPTIONS", "SETS", "in_set", "per_image", "active",
    "otsu_threshold", "binarize", "is_empty", "iou_area", "boxes", "box_iou", "iou_bbox", "otsu_ious",
    "pointing_game", "relevance_mass", "CONVENTIONS", "masked_inputs", "target_confidence",
    "masked_confidence", "confidences", "average_drop", "drop_in_confidence",
    "increase_in_confidence", "deletion_insertion", "accuracy", "roc_auc", "f1_score",
    "confusion_matrix", "TOP_K", "relevance_rank_accuracy", "top_k_intersection", "pixel_auroc",
    "CURVE_FIXED", "CURVE_TOP", "curve_columns", "threshold_free", "top_share_mask", "iou_curve", "ROAD_NOISE",
    "road_impute", "road", "average_ranks",
]
