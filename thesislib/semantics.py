"""Semantics: a fingerprint of the code behind every stored number, so a change cannot slip past
the versions that key the runs cache.

A run directory is keyed by its config, its data's content and `SEMANTICS`; its evaluations by
their settings and `EVAL_SEMANTICS` (thesislib/study/config.py). Runs made by code whose numbers
meant something else must not be reused, so those versions are bumped with any change that alters
a stored number. To make forgetting impossible, the record (tests/data/semantics.json, read as
`RECORDED`) holds a hash of the normalised source of every module that produces stored numbers (its syntax tree without docstrings, written
back out: comments, docstrings and formatting do not count), together with the versions it was
recorded at (a covered package: of each of its modules, together). tests/test_semantics.py fails
when the code differs from the record. Then decide:

- the change alters a stored number (a weight, a history column, a map, a metric): bump
  SEMANTICS (training modules) or EVAL_SEMANTICS (evaluation modules), then record;
- it does not (a refactor, a new option off by default): just record:

    python -m thesislib.semantics --update
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["TRAINING_MODULES", "EVALUATION_MODULES", "RECORDED", "normalised_source", "fingerprint_source",
           "current", "problems", "update"]

# what each version covers: the modules whose code decides the numbers stored per run / per evaluation
TRAINING_MODULES = ("data", "synth", "models", "train")
EVALUATION_MODULES = ("evaluation", "metrics", "explain", "references")
_PACKAGE = Path(__file__).resolve().parent
_COMMAND = "python -m thesislib.semantics --update"

# the record: what `python -m thesislib.semantics --update` wrote; only tests/test_semantics.py and
# that command read it, so a new module, metric or option off by default changes no file of the package
RECORD = _PACKAGE.parent / "tests" / "data" / "semantics.json"


def _read_record(path: Path = RECORD) -> dict[str, Any]:
    """The recorded versions and fingerprints; empty when the file is absent (an installed package)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); expected the record `{_COMMAND}` writes") from None


RECORDED: dict[str, Any] = _read_record()


def normalised_source(text: str) -> str:
    """Source without comments, docstrings or formatting: the syntax tree written back out."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@functools.lru_cache(maxsize=64)
def fingerprint_source(text: str) -> str:
    """Short sha256 of `normalised_source(text)`."""
    return hashlib.sha256(normalised_source(text).encode()).hexdigest()[:16]


def current() -> dict[str, Any]:
    """The versions in thesislib/study/config.py and the fingerprint of every covered module."""
    from thesislib.study.config import EVAL_SEMANTICS, SEMANTICS

    modules = {m: _fingerprint_module(m) for m in TRAINING_MODULES + EVALUATION_MODULES}
    return {"semantics": SEMANTICS, "eval_semantics": EVAL_SEMANTICS, "python": platform.python_version(),
            "modules": modules}


def _fingerprint_module(name: str) -> str:
    """`fingerprint_source` of thesislib/<name>.py; of a package thesislib/<name>/, a short sha256 of
    its modules' paths and fingerprints."""
    folder = _PACKAGE / name
    if not folder.is_dir():
        return fingerprint_source((_PACKAGE / f"{name}.py").read_text())
    parts = [f"{p.relative_to(folder).as_posix()} {fingerprint_source(p.read_text())}"
             for p in sorted(folder.rglob("*.py"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _shown(name: str) -> str:
    """How messages name a covered module: thesislib/<name>.py, or thesislib/<name>/ for a package."""
    return f"thesislib/{name}/" if (_PACKAGE / name).is_dir() else f"thesislib/{name}.py"


def problems(recorded: dict[str, Any] | None = None, now: dict[str, Any] | None = None) -> list[str]:
    """What differs between the record and the code, each with what to do; empty if nothing.

    Args:
        recorded: the record (default `RECORDED`).
        now: the code's state (default `current()`).
    """
    recorded = RECORDED if recorded is None else recorded
    now = current() if now is None else now
    if not recorded.get("modules"):
        return [f"{RECORD.relative_to(_PACKAGE.parent).as_posix()}: no fingerprints recorded; expected a record: run `{_COMMAND}`"]
    old, new = recorded["modules"], now["modules"]
    changed = sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))
    out = []
    for key, name, covered in (("semantics", "SEMANTICS", TRAINING_MODULES),
                               ("eval_semantics", "EVAL_SEMANTICS", EVALUATION_MODULES)):
        mine = [_shown(m) for m in changed if m in covered]
        bumped = now[key] != recorded[key]
        if mine and not bumped:
            out.append(f"{', '.join(mine)} changed since the record, but {name} did not (still {now[key]}). "
                       f"If the change alters any stored number, bump {name} in thesislib/study/config.py so "
                       f"cached runs are recomputed; either way, record the new code with `{_COMMAND}`")
        elif bumped:
            out.append(f"{name} is {now[key]} but the record was made at {recorded[key]}; expected the record "
                       f"to follow the bump: run `{_COMMAND}`")
    return out


def update(path: Path | None = None) -> dict[str, Any]:
    """Write `current()` to the record (tests/data/semantics.json) and return it."""
    from thesislib.atomic import atomic_write_text

    path = path or RECORD
    record = current()
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thesislib.semantics",
                                     description="Check (default) or record the fingerprint of the code behind "
                                                 "stored numbers against SEMANTICS / EVAL_SEMANTICS.")
    parser.add_argument("--update", action="store_true", help="record the current code and versions")
    args = parser.parse_args(argv)
    if args.update:
        before = dict(RECORDED.get("modules", {}))
        record = update()
        changed = [m for m, h in record["modules"].items() if before.get(m) != h]
        print(f"recorded SEMANTICS {record['semantics']}, EVAL_SEMANTICS {record['eval_semantics']}; "
              f"changed since the last record: {', '.join(changed) or 'nothing'}")
        return 0
    found = problems()
    for p in found:
        print(p, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
