"""The report's summary and the README's first look, computed from a report's results, never typed.

Each notebook records its key results beside its executed copy (`thesislib.report.record`);
`facts` gathers what the summary states from those records and the report's header, and
`thesislib report` writes it as summary.json beside the HTML. `at_a_glance` is the report's first
section; `first_look` is the README's block between FIRST_LOOK_BEGIN and FIRST_LOOK_END, which
`thesislib readme` rewrites from a report's summary.json (and keeps in docs/first-look.json, from
which the tests re-render the block), so the README cannot state a number its report lacks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from thesislib.atomic import atomic_write_text
from thesislib.claims import TALLY, verdict_counts

__all__ = ["SUMMARY_FILE", "FIRST_LOOK_BEGIN", "FIRST_LOOK_END", "run_counts", "read_records", "facts",
           "at_a_glance", "first_look", "learned_sentence", "verdict_facts", "readme_block", "write_readme"]

SUMMARY_FILE = "summary.json"
DEFAULT_PARAMS = "params/default"
FIRST_LOOK_BEGIN = ("<!-- first-look: written by `thesislib readme` from the default report's summary.json "
                    "(kept in docs/first-look.json); edit the code in thesislib/summary.py, not this text -->")
FIRST_LOOK_END = "<!-- /first-look -->"


def run_counts(results: pd.DataFrame) -> dict[str, int]:
    """Runs of `results` (one row per run and method): all, those that never learned, and those
    trained on shuffled labels (which must not learn)."""
    if results.empty:
        return dict(runs=0, not_learned=0, shuffled=0, shuffled_not_learned=0)
    runs = results.drop_duplicates("run_id")
    learned = runs["learned"].fillna(False).astype(bool)
    shuffled = runs["family"].eq("shuffled_labels")
    return dict(runs=int(len(runs)), not_learned=int((~learned).sum()), shuffled=int(shuffled.sum()),
                shuffled_not_learned=int((shuffled & ~learned).sum()))


def verdict_facts(judged: pd.DataFrame) -> dict[str, Any]:
    """What the summary states of a `claims.judge_all` table: the claims and the verdict counts of
    our runs and of the thesis's own numbers (`claims.verdict_counts`)."""
    return dict(claims=len(judged), ours=verdict_counts(judged, "ours"), thesis=verdict_counts(judged, "thesis"))


def _learned_text(r: dict[str, int]) -> str:
    should = r["runs"] - r["shuffled"]
    bad = r["not_learned"] - r["shuffled_not_learned"]
    share = f" ({100 * (should - bad) / should:.0f} %)" if should else ""
    shuffled = (f"; the {r['shuffled']} trained on shuffled labels, which should not, left aside" if r["shuffled"]
                else "")
    return f"{should - bad} of the {should} runs that should learn did{share}{shuffled}."


def learned_sentence(results: pd.DataFrame) -> str:
    """"84 of the 87 runs that should learn did (97 %); ..." for `results`."""
    return _learned_text(run_counts(results))


def read_records(folder: str | os.PathLike) -> dict[str, dict]:
    """{notebook name: its record} of the <name>.results.json files in `folder`."""
    out = {}
    for path in sorted(Path(folder).glob("*.results.json")):
        try:
            out[path.name[: -len(".results.json")]] = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read the notebook's record ({err}); expected the JSON that "
                             "thesislib.report.record writes") from None
    return out


def _depth_iou(record: dict | None) -> dict[str, Any] | None:
    """RQ1's IoU (A): the prior, the ceiling and the best explainer (mean and sd over seeds)."""
    from thesislib.references import LABELS as REF

    if not record or not record.get("table"):
        return None
    rows = [r for r in record["table"] if r["metric"] == "iou_area" and r["mean"] is not None]
    refs = {r["method"]: r for r in rows if r["method"] in REF.values()}
    explainers = [r for r in rows if r["method"] and r["method"] not in REF.values()]
    if REF["prior"] not in refs or REF["ceiling"] not in refs or not explainers:
        return None
    best = max(explainers, key=lambda r: r["mean"])
    return dict(prior=refs[REF["prior"]]["mean"], ceiling=refs[REF["ceiling"]]["mean"],
                best=dict(method=best["method"], setting=best["setting"], mean=best["mean"], std=best["std"]))


def facts(records: dict[str, dict], header: dict, outcomes: list[dict] | None = None) -> dict[str, Any]:
    """What the summary states, from the notebooks' records and the report's header.

    Args:
        records: `read_records` of the executed notebooks' folder.
        header: the report's header (params, commit, dirty, machine, wall in seconds, date).
        outcomes: the notebooks' {name, ok, seconds}, for the time each took.
    """
    out: dict[str, Any] = dict(params=header.get("params"), commit=header.get("commit"),
                               dirty=bool(header.get("dirty")), machine=header.get("machine"),
                               date=header.get("date"), wall_min=round(float(header["wall"]) / 60, 1))
    out["notebooks"] = {o["name"]: dict(ok=bool(o["ok"]), seconds=int(round(o["seconds"]))) for o in outcomes or []}
    study = records.get("06_correlation") or {}
    out["verdicts"] = study.get("verdicts")
    out["runs"] = study.get("runs")
    out["depth_iou"] = _depth_iou(records.get("01_depth"))
    return out


def _sentences(f: dict[str, Any]) -> list[str]:
    out = []
    v = f.get("verdicts")
    if v:
        ours, thesis = v["ours"], v["thesis"]
        tallied = sum(ours.get(k, 0) for k in TALLY)
        parts = ", ".join(f"{ours.get(k, 0)} {k}" for k in TALLY)
        apart = " and ".join(f"{ours[k]} {k}" for k in ("untestable", "n/a") if ours.get(k))
        out.append(f"Of the {v['claims']} claims of the thesis judged in the report, our runs could be judged on "
                   f"{tallied}: {parts}" + (f" ({apart} stand apart)" if apart else "") + ". "
                   f"The thesis's own tables, through the same judge, support {thesis.get('agrees', 0)} of them "
                   f"and leave {thesis.get('inconclusive', 0)} inconclusive.")
    r = f.get("runs")
    if r:
        out.append(_learned_text(r))
    d = f.get("depth_iou")
    if d:
        b = d["best"]
        out.append(f"On RQ1's models the data prior (the mean expert map, which ignores the image) reaches "
                   f"{d['prior']:.1f} % IoU (A) and the ceiling (the expert map at the CAM grid) {d['ceiling']:.1f} %; "
                   f"the best explainer, {b['method']} on ResNet-{b['setting']}, {b['mean']:.1f} ± {b['std']:.1f} % "
                   "(mean ± sd over seeds).")
    return out


def at_a_glance(f: dict[str, Any]) -> str:
    """Markdown for the top of the report."""
    lines = _sentences(f)
    if not lines:
        return ""
    return ("## At a glance\n\n<a id='at-a-glance'></a>\n\nComputed from this report's results (the README's "
            "first look is written from the same numbers):\n\n" + "\n".join(f"- {x}" for x in lines)
            + "\n\n<a id='at-a-glance-end'></a>")


def first_look(f: dict[str, Any]) -> str:
    """The README's first-look paragraph (without the markers)."""
    times = ", ".join(f"{name[:2]} {o['seconds']} s" for name, o in f.get("notebooks", {}).items())
    head = (f"From the report of commit {f['commit'][:7] if f.get('commit') else 'unknown'}"
            f"{' (uncommitted changes)' if f.get('dirty') else ''}, params {f['params']}, "
            f"{f['date']}: {f['wall_min']:.1f} min on {f['machine']}"
            + (f" (per notebook: {times})" if times else "") + ".")
    return "\n\n".join([head] + _sentences(f))


def readme_block(f: dict[str, Any]) -> str:
    return f"{FIRST_LOOK_BEGIN}\n{first_look(f)}\n{FIRST_LOOK_END}"


def write_readme(summary: str | os.PathLike, readme: str | os.PathLike, store: str | os.PathLike) -> str:
    """Rewrite the first-look block of `readme` from a report's summary.json and keep the facts in
    `store` (docs/first-look.json); returns the block."""
    summary, readme = Path(summary), Path(readme)
    if not summary.is_file():
        raise FileNotFoundError(f"{summary}: no report summary; expected the summary.json that "
                                "`thesislib report` writes beside the report (run `make report` first)")
    f = json.loads(summary.read_text())
    if f.get("params") != DEFAULT_PARAMS:
        raise ValueError(f"{summary}: a report of params {f.get('params')!r}; the README's first look is the "
                         f"default report's (expected params {DEFAULT_PARAMS!r}, without --set)")
    text = readme.read_text()
    if text.count(FIRST_LOOK_BEGIN) != 1 or text.count(FIRST_LOOK_END) != 1:
        raise ValueError(f"{readme}: expected one first-look block between {FIRST_LOOK_BEGIN!r} and "
                         f"{FIRST_LOOK_END!r}")
    start = text.index(FIRST_LOOK_BEGIN)
    end = text.index(FIRST_LOOK_END) + len(FIRST_LOOK_END)
    block = readme_block(f)
    atomic_write_text(readme, text[:start] + block + text[end:])
    atomic_write_text(Path(store), json.dumps(f, indent=1, sort_keys=True) + "\n")
    return block
