import numpy as np
import pandas as pd

from thesislib import labels as L
from thesislib.layout import CLASSES


def test_keys_become_the_words_a_reader_sees():
    assert L.family_label("weight_decay") == "Weight decay" and L.family_label("Depth") == "Depth"
    assert [L.class_name(i) for i in (0, 1)] == ["non-glaucoma", "glaucoma"]
    assert [L.class_name(c) for c in CLASSES] == ["non-glaucoma", "glaucoma"]  # the data's folders
    assert (L.yes_no(True), L.yes_no(np.bool_(False))) == ("yes", "no")
    assert L.value_label("correct", True) == "correctly classified" and L.value_label("norm", "batch") == "BatchNorm"
    assert L.value_label("setting", 0.5) == 0.5  # numbers stay numbers


def test_readable_relabels_index_columns_and_values():
    frame = pd.DataFrame({"family": ["weight_decay", "batch_norm"], "pred": [0, 1], "flagged": [True, False],
                          "non_glaucoma": [3, 4], "value": [1.25, 2.5]}).set_index("family")
    out = L.readable(frame)
    assert list(out.index) == ["Weight decay", "Batch normalisation"] and out.index.name == "family"
    assert list(out.columns) == ["predicted class", "never learned", "non-glaucoma", "value"]
    assert out["predicted class"].tolist() == ["non-glaucoma", "glaucoma"]
    assert out["never learned"].tolist() == ["yes", "no"] and out["value"].tolist() == [1.25, 2.5]
    pairs = L.readable(frame.reset_index().set_index(["family", "pred"]))
    assert list(pairs.index) == [("Weight decay", "non-glaucoma"), ("Batch normalisation", "glaucoma")]
    assert pairs.index.names == ["family", "predicted class"]
