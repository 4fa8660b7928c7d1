"""The code behind stored numbers cannot change without SEMANTICS / EVAL_SEMANTICS being considered."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest

from thesislib import semantics as S

COMMAND = "python -m thesislib.semantics --update"


def test_the_code_behind_stored_numbers_matches_its_record():
    recorded = S.RECORDED.get("python", "")
    if recorded and recorded.rsplit(".", 1)[0] != platform.python_version().rsplit(".", 1)[0]:
        pytest.skip(f"recorded with Python {recorded}; another Python may write the same code out differently")
    found = S.problems()
    assert not found, "\n".join(found)


def test_comments_docstrings_and_layout_do_not_count_but_code_does():
    src = 'def f(x):\n    """Twice x."""\n    return x * 2  # why: doubling\n'
    same = 'def f( x ):\n    """Another docstring."""\n\n    # a comment\n    return (x*2)\n'
    assert S.fingerprint_source(src) == S.fingerprint_source(same)
    assert S.fingerprint_source(src) != S.fingerprint_source(src.replace("x * 2", "x * 3"))
    assert S.fingerprint_source(src) != S.fingerprint_source(src.replace("return", "y = 1\n    return"))


def test_a_change_to_a_covered_module_without_a_bump_names_it_the_version_and_the_command(tmp_path, monkeypatch):
    package = Path(S.__file__).parent
    for name in S.TRAINING_MODULES + S.EVALUATION_MODULES:
        if (package / name).is_dir():  # a package, e.g. metrics or data
            shutil.copytree(package / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(package / f"{name}.py", tmp_path / f"{name}.py")
    monkeypatch.setattr(S, "_PACKAGE", tmp_path)
    recorded = S.current()
    assert S.problems(recorded) == []
    train = tmp_path / "train.py"
    train.write_text(train.read_text() + "\n\nLEARNING_RATE_SCALE = 2.0\n")
    [found] = S.problems(recorded)
    assert found.startswith("thesislib/train.py changed since the record, but SEMANTICS did not")
    assert "bump SEMANTICS in thesislib/study/config.py" in found and COMMAND in found
    train.write_text(train.read_text().replace("LEARNING_RATE_SCALE = 2.0", "# LEARNING_RATE_SCALE = 2.0"))
    assert S.problems(recorded) == []  # a comment is not code
    metrics = tmp_path / "metrics" / "localisation.py"  # any module of a covered package counts
    metrics.write_text(metrics.read_text() + "\n\nEPS = 1e-9\n")
    [found] = S.problems(recorded)
    assert found.startswith("thesislib/metrics/ changed") and "bump EVAL_SEMANTICS" in found
    # bumped: the record must follow
    monkeypatch.setattr("thesislib.study.config.EVAL_SEMANTICS", recorded["eval_semantics"] + 1)
    [found] = S.problems(recorded)
    assert found.startswith(f"EVAL_SEMANTICS is {recorded['eval_semantics'] + 1} but the record was made at "
                            f"{recorded['eval_semantics']}") and COMMAND in found


def test_a_changed_or_new_file_in_a_covered_package_is_named_as_the_package(tmp_path, monkeypatch):
    shutil.copytree(Path(S.__file__).parent / "data", tmp_path / "data", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(S, "_PACKAGE", tmp_path)
    monkeypatch.setattr(S, "TRAINING_MODULES", ("data",))
    monkeypatch.setattr(S, "EVALUATION_MODULES", ())
    recorded = S.current()
    assert S.problems(recorded) == []
    stratify = tmp_path / "data" / "stratify.py"
    original = stratify.read_text()
    stratify.write_text(original.replace("manual_seed(seed)", "manual_seed(seed + 1)"))
    [found] = S.problems(recorded)
    assert found.startswith("thesislib/data/ changed since the record, but SEMANTICS did not"), found
    stratify.write_text(original)
    assert S.problems(recorded) == []
    (tmp_path / "data" / "extra.py").write_text("SHIFT = 1\n")
    [found] = S.problems(recorded)
    assert found.startswith("thesislib/data/ changed"), found


def test_update_records_the_current_code(tmp_path):
    copy = tmp_path / "semantics.json"
    record = S.update(copy)
    assert S._read_record(copy) == record and S.problems(record) == []
    assert S._read_record(tmp_path / "absent.json") == {}
    assert S.problems({}) and "tests/data/semantics.json" in S.problems({})[0]
    assert set(record["modules"]) == set(S.TRAINING_MODULES + S.EVALUATION_MODULES)
