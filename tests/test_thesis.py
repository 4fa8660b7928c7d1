"""The thesis's published numbers (thesislib.thesis)."""

from thesislib.thesis import reference


def test_reference_is_the_thesis_tables():
    ref = reference()
    assert len(ref) == 339
    cell = ref[(ref["family"] == "depth") & (ref["setting"] == "50") & (ref["method"] == "Score-CAM")
               & (ref["metric"] == "iou_area")]
    assert cell[["mean", "std"]].values.tolist() == [[21.0, 0.33]]
    assert set(ref["setting"][ref["family"] == "weight_decay"]) == {"baseline", "L1 1e-05", "L1 1e-04", "L1 1e-03",
                                                                    "L2 1e-05", "L2 1e-04", "L2 1e-03"}
    assert set(ref["setting"][ref["family"] == "precode"]) >= {"baseline", "β=1e-03, k=512"}
