"""Labels of a table's rows (thesislib.tables.formatting)."""

import pytest

from thesislib import tables as T


def test_method_label_knows_references():
    assert T.method_label("scorecam") == "Score-CAM" and T.method_label("prior").startswith("Prior")
    with pytest.raises(ValueError, match="method"):
        T.method_label("nope")
