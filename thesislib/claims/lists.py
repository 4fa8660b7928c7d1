"""The thesis's claims, per research question: its families' claims (RQ1, RQ2, RQ4, RQ5), RQ3's
method claims and RQ6's correlation claims, each written once over setting and method keys.
"""

from __future__ import annotations

from thesislib.claims.evidence import BASELINE, S
from thesislib.claims.statements import (Claim, all_others_worse, best_method_is, best_setting_is, better_than,
                                         lower_than, lowest_setting_is, some_setting_better, trend)
from thesislib.metrics import REGISTRY

__all__ = ["CLAIMS", "METHOD_CLAIMS", "METHOD_FAMILIES", "CORRELATION_FAMILIES", "correlation_claims"]

METHOD_FAMILIES = ("depth", "epochs", "batch_size")  # the thesis's Tables 5.2-5.4: RQ3's scope

_WD = [S(penalty=p, penalty_lambda=v) for p in ("l1", "l2") for v in (1e-05, 1e-04, 1e-03)]
_PRECODE = [S(precode_beta=b, precode_k=k) for b in (0.001, 0.0001) for k in (128, 256, 512)]

CLAIMS: list[Claim] = [
    Claim("ResNet-50 has the highest accuracy", "depth", best_setting_is(S(depth=50), "accuracy")),
    Claim("ResNet-50 has the highest Score-CAM IoU (A)", "depth", best_setting_is(S(depth=50), "iou_area", "scorecam")),
    Claim("Score-CAM has the highest IoU (A) at every depth", "depth", best_method_is("scorecam", "iou_area")),
    Claim("Score-CAM has the lowest Average Drop at every depth", "depth", best_method_is("scorecam", "average_drop")),
    Claim("Score-CAM has the highest IoU (A) after long training", "epochs", best_method_is("scorecam", "iou_area")),
    Claim("Batch size 256 has the highest accuracy", "batch_size", best_setting_is(S(batch_size=256), "accuracy")),
    Claim("Batch size 256 has the highest Score-CAM IoU (A)", "batch_size",
          best_setting_is(S(batch_size=256), "iou_area", "scorecam")),
    Claim("Score-CAM has the highest IoU (A) at every batch size", "batch_size", best_method_is("scorecam", "iou_area")),
    Claim("Every weight-decay setting lowers Score-CAM IoU (A) below the baseline", "weight_decay",
          all_others_worse(BASELINE, "iou_area", "scorecam")),
    Claim("L1 with λ = 1e-4 has the best Score-CAM IoU (A) of the weight-decay settings", "weight_decay",
          best_setting_is(S(penalty="l1", penalty_lambda=1e-04), "iou_area", "scorecam", among=_WD)),
    Claim("Every dropout rate lowers Score-CAM IoU (A) below the baseline", "dropout",
          all_others_worse(BASELINE, "iou_area", "scorecam")),
    Claim("Dropout 0.75 has the lowest Score-CAM IoU (A)", "dropout",
          lowest_setting_is(S(dropout=0.75), "iou_area", "scorecam")),
    Claim("BatchNorm raises Score-CAM IoU (A) over the baseline", "batch_norm",
          better_than(S(norm="batch"), BASELINE, "iou_area", "scorecam")),
    Claim("BatchNorm lowers accuracy (a trade-off)", "batch_norm", lower_than(S(norm="batch"), BASELINE, "accuracy")),
    Claim("GroupNorm with 64 groups has the best Score-CAM IoU (A) of the group sizes", "group_norm",
          best_setting_is(S(groups=64, norm="group"), "iou_area", "scorecam",
                          among=[S(groups=g, norm="group") for g in (16, 32, 64)])),
    Claim("GroupNorm with 64 groups raises Score-CAM IoU (A) over the baseline", "group_norm",
          better_than(S(groups=64, norm="group"), BASELINE, "iou_area", "scorecam")),
    Claim("β = 1e-3, k = 512 has the best Score-CAM IoU (A) of the PRECODE settings", "precode",
          best_setting_is(S(precode_beta=0.001, precode_k=512), "iou_area", "scorecam", among=_PRECODE)),
    Claim("Some PRECODE setting raises Score-CAM IoU (A) over the baseline", "precode",
          some_setting_better(BASELINE, "iou_area", "scorecam")),
]

METHOD_CLAIMS: list[Claim] = [
    Claim("Score-CAM has the highest IoU (A) in most settings", "methods",
          best_method_is("scorecam", "iou_area", every_setting=False)),
    Claim("Score-CAM has the highest IoU (BB) in most settings", "methods",
          best_method_is("scorecam", "iou_bbox", every_setting=False)),
    Claim("Score-CAM has the lowest Average Drop in most settings", "methods",
          best_method_is("scorecam", "average_drop", every_setting=False)),
    Claim("Score-CAM has the highest Increase in Confidence in most settings", "methods",
          best_method_is("scorecam", "increase_in_confidence", every_setting=False)),
    Claim("CAM has the lowest IoU (A) in most settings", "methods",
          best_method_is("cam", "iou_area", every_setting=False, lowest=True)),
]

CORRELATION_FAMILIES = {"depth": +1, "batch_size": -1, "weight_decay": -1, "dropout": -1, "batch_norm": -1,
                        "group_norm": -1, "precode": -1}
_FAMILY_WORDS = {"depth": "depths", "batch_size": "batch sizes", "weight_decay": "weight-decay settings",
                 "dropout": "dropout rates", "batch_norm": "baseline vs BatchNorm",
                 "group_norm": "group sizes", "precode": "PRECODE settings"}


def correlation_claims(metric: str = "iou_area", method: str = "scorecam", label: str = "Score-CAM") -> list[Claim]:
    """The thesis's RQ6 conclusion per family: accuracy and `method`'s `metric` rise together across
    depths and trade off elsewhere (Spearman's rho over the settings' means, exact permutation test)."""
    words = REGISTRY[metric].label
    return [Claim(f"Accuracy and {label} {words} {'rise together' if sign > 0 else 'trade off'} across "
                  f"{_FAMILY_WORDS[fam]}", fam, trend(sign, metric, method))
            for fam, sign in CORRELATION_FAMILIES.items()]
