"""Settings of the thesis that a params scale does not train, and why.

A scale may leave out a setting whose runs measurably cannot learn there (they would inform no
verdict and cost compute). The params file says so under `not_trained`, one entry per family:

    not_trained:
      batch_size:
        settings: [{batch_size: 128}, {batch_size: 256}]
        reason: At 10 epochs of 600 images these take 50 and 30 optimiser steps; ...

The notebook prints the entry under the family's table, and the tests check that the grid and
these entries together still hold every level of the thesis.
"""

from __future__ import annotations

from typing import Any

from thesislib.study.config import ConfigError
from thesislib.study.settings import setting_label

__all__ = ["left_out", "left_out_labels"]

_NOUNS = {"batch_size": "batch size ", "depth": "ResNet-", "dropout": "dropout ", "group_norm": "GroupNorm with groups "}


def _entry(not_trained: dict[str, Any] | None, family: str, source: str) -> dict[str, Any] | None:
    if not not_trained:
        return None
    if not isinstance(not_trained, dict):
        raise ConfigError(f"{source}: not_trained: expected a mapping of family to {{settings, reason}}, "
                          f"found {not_trained!r}")
    entry = not_trained.get(family)
    if entry is None:
        return None
    if (not isinstance(entry, dict) or set(entry) != {"settings", "reason"}
            or not isinstance(entry["settings"], list) or not all(isinstance(s, dict) for s in entry["settings"])
            or not isinstance(entry["reason"], str) or not entry["reason"].strip()):
        raise ConfigError(f"{source}: not_trained: {family}: expected {{settings: [mappings of run settings], "
                          f"reason: text}}, found {entry!r}")
    return entry


def left_out_labels(not_trained: dict[str, Any] | None, *, source: str = "params") -> set[tuple[str, str]]:
    """(family, setting label) of every setting `not_trained` names."""
    out = set()
    for family in (not_trained or {}):
        entry = _entry(not_trained, family, source)
        out |= {(family, setting_label(family, s)) for s in entry["settings"]}
    return out


def left_out(not_trained: dict[str, Any] | None, family: str, *, source: str = "params") -> str:
    """Markdown naming the settings of `family` this scale does not train, with the measured reason;
    "" where it trains them all."""
    entry = _entry(not_trained, family, source)
    if entry is None:
        return ""
    names = ", ".join(setting_label(family, s) for s in entry["settings"])
    what = _NOUNS.get(family, "")
    return (f"**Not trained at this scale: {what}{names}.** {entry['reason'].strip()} Claims that name "
            "them read \"n/a\" here, and claims over every setting are judged on those trained; the "
            "thesis-scale params (params/thesis) train them all.")
