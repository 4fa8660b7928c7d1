"""Semantics: a fingerprint of the code behind every stored number, so a change cannot slip past
the versions that key the runs cache.

A run directory is keyed by its config, its data's content and `SEMANTICS`; its evaluations by
their settings and `EVAL_SEMANTICS` (thesislib/study/config.py). Runs made by code whose numbers
meant something else must not be reused, so those versions are bumped with any change that alters
a stored number. To make forgetting impossible, `RECORDED` below holds a hash of the normalised
source of every module that produces stored numbers (its syntax tree without docstrings, written
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
import platform
import re
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

# --- recorded by `python -m thesislib.semantics --update`; do not edit by hand ---
RECORDED: dict[str, Any] = {
    "semantics": 2,
    "eval_semantics": 2,
    "python": "3.11.7",
    "modules": {
        "data": "dd30381a2140b903",
        "synth": "33fb3e1e7345ace3",
        "models": "6be16845bda579eb",
        "train": "0244cd88a01f2a83",
        "evaluation": "27d7d163785120e1",
        "metrics": "7c2cbcbfd61d89f3",
        "explain": "7008ff66ca8bf43d",
        "references": "3eed458d48fd95f6",
    },
}
# --- end of record ---


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
        return [f"thesislib/semantics.py: no fingerprints recorded; expected a record: run `{_COMMAND}`"]
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
    """Write `current()` into the RECORDED block of this file and return it."""
    from thesislib.atomic import atomic_write_text

    path = path or Path(__file__)
    record = current()
    lines = ["RECORDED: dict[str, Any] = {",
             f"    \"semantics\": {record['semantics']},",
             f"    \"eval_semantics\": {record['eval_semantics']},",
             f"    \"python\": \"{record['python']}\",",
             "    \"modules\": {"]
    lines += [f"        \"{m}\": \"{h}\"," for m, h in record["modules"].items()]
    lines += ["    },", "}"]
    text = path.read_text()
    block = re.compile(r"(# --- recorded by .*?---\n).*?(\n# --- end of record ---)", re.S)
    if not block.search(text):
        raise ValueError(f"{path}: the RECORDED block's markers are missing; expected them around RECORDED")
    atomic_write_text(path, block.sub(lambda m: m.group(1) + "\n".join(lines) + m.group(2), text, count=1))
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
