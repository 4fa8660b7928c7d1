"""Where the data comes from: `resolve_root`, and the synthetic sets' names (`synth_spec`, `synth_name`).

`resolve_root` turns a folder, a synthetic set's name or nothing into a data folder, generating a
synthetic set on first use.
"""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

from thesislib.data.folder import DataError
from thesislib.paths import data_dir
from thesislib.synth import SynthSpec, synthesize

__all__ = ["resolve_root", "synth_spec", "synth_name", "DEFAULT_SYNTH"]

DEFAULT_SYNTH = dict(n=1000, size=128, seed=0)  # the embedded default data set


def resolve_root(data: str | os.PathLike | None = None) -> Path:
    """The data folder to use.

    Args:
        data: a LAG-layout folder; or a synthetic set named "synthetic" or
            "synthetic-n400-s96-seed1[-label_noise0.1][-spurious0.9]..." (n images, s pixels, and
            any other SynthSpec field by name), generated under <project>/data on first use; or
            None: $THESISLIB_DATA if set, else the embedded synthetic set (1,000 images, 128 px).
    """
    if data is None or str(data) == "":
        data = os.environ.get("THESISLIB_DATA") or "synthetic"
    text = os.path.expandvars(str(data))
    if "$" in text:
        raise DataError(f"data: {str(data)!r} names an environment variable that is not set; "
                        "pass --data DIR or set it (e.g. THESISLIB_DATA=/path/to/LAG)")
    if not text.startswith("synthetic"):
        return Path(text).expanduser().resolve()
    spec = synth_spec(text)
    root = data_dir() / synth_name(spec)
    if not root.is_dir():
        synthesize(root, spec)
    return root


_SHORT = {"n": "n", "s": "size"}


def synth_spec(text: str) -> SynthSpec:
    """"synthetic-n240-s64-label_noise0.2" -> SynthSpec(n=240, size=64, label_noise=0.2, ...)."""
    names = {f.name for f in fields(SynthSpec)}
    parts = text.split("-")
    if parts[0] != "synthetic":
        raise DataError(f"data: expected a folder or 'synthetic[-n<images>-s<pixels>-seed<k>...]', found {text!r}")
    values: dict = dict(DEFAULT_SYNTH)
    given: set[str] = set()
    for token in parts[1:]:
        m = re.fullmatch(r"([a-z_]+)([0-9][0-9.e+]*)", token)
        key = _SHORT.get(m.group(1), m.group(1)) if m else None
        if key not in names:
            raise DataError(f"data: {text!r}: cannot read {token!r}; expected n<images>, s<pixels> or a SynthSpec "
                            f"field followed by its value ({', '.join(sorted(names))}), e.g. spurious0.95")
        if key in given:
            raise DataError(f"data: {text!r}: {key} is given twice; expected each field once")
        given.add(key)
        whole = key in ("n", "size", "seed", "map_size", "quality")
        try:
            values[key] = int(m.group(2)) if whole else float(m.group(2))
        except ValueError:
            raise DataError(f"data: {text!r}: cannot read {m.group(2)!r} as the value of {key}; expected "
                            f"{'a whole number' if whole else 'a number'} after {m.group(1)!r}") from None
    try:
        return SynthSpec(**values)
    except ValueError as err:
        raise DataError(f"data: {text!r}: {err}") from None


def synth_name(spec: SynthSpec) -> str:
    """The canonical name of a synthetic set (also its folder name under <project>/data)."""
    defaults = SynthSpec()
    extra = "".join(f"-{k}{v}" for k, v in sorted(vars(spec).items())
                    if k not in ("n", "size", "seed") and v != getattr(defaults, k))
    return f"synthetic-n{spec.n}-s{spec.size}-seed{spec.seed}{extra}"
