"""A setting's name (thesislib.study.settings): short, stable, and the one the thesis's tables use."""

from thesislib.study.settings import setting_label


def test_setting_labels_of_the_thesis_families():
    assert setting_label("depth", {}) == "baseline" and setting_label("depth", {"depth": 50}) == "50"
    assert setting_label("depth", {"depth": 50, "stem_channels": 16}) == "50"  # the scale's stem, not a setting
    assert setting_label("batch_size", {"batch_size": 256, "epochs": 63}) == "256"  # equal steps: a schedule
    assert setting_label("epochs", {"batch_size": 16}) == "batch 16"
    assert setting_label("weight_decay", {"penalty": "l1", "penalty_lambda": 1e-4}) == "L1 1e-04"
    assert setting_label("group_norm", {"norm": "group", "groups": 64}) == "64"
    assert setting_label("precode", {"precode_k": 512}) == "β=1e-03, k=512"  # the default β, shown
    assert setting_label("precode_long", {"epochs": 30}) == "baseline"
    assert setting_label("dropout", {"dropout": 0.5, "depth": 34}) == "depth=34, dropout=0.5"  # not a rate alone


def test_setting_labels_of_the_new_families():
    assert setting_label("optimizer", {"optimizer": "sgd", "lr": 0.01}) == "SGD, lr 0.01"
    assert setting_label("optimizer", {"optimizer": "adam"}) == "Adam, lr 0.001"
    assert setting_label("train_fraction", {"train_fraction": 0.25, "epochs": 40}) == "25 %"
    assert setting_label("train_fraction", {"train_fraction": 1.0}) == "100 %"
    assert setting_label("shortcut", {"data": "synthetic-n240-s64"}) == "no cue"
    assert setting_label("shortcut", {"data": "synthetic-n240-s64-spurious0.95"}) == "cue 0.95"
