"""The report's summary and the README's first look, computed from a report's results, never typed.

Each notebook records its key results beside its executed copy (`thesislib.report.record`);
`facts` gathers what the summary states from those records and the report's header, and
`thesislib report` writes it as summary.json beside the HTML. `at_a_glance` is the report's first
section: the run counts, one answer per research question with a link to its section
(`answers`), the table of every claim with a link to where it is judged (`claims_table`) and the
findings beyond the thesis (`beyond`). `first_look` is the README's block between FIRST_LOOK_BEGIN
and FIRST_LOOK_END, which `thesislib readme` rewrites from a report's summary.json (and keeps in
docs/first-look.json, from which the tests re-render the block), so the README cannot state a
number its report lacks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from thesislib.atomic import atomic_write_text
from thesislib.claims import TALLY, verdict_counts
from thesislib.tables.health import learned_sentence, learned_text, run_counts

__all__ = ["SUMMARY_FILE", "FIRST_LOOK_BEGIN", "FIRST_LOOK_END", "DECIDED", "run_counts", "read_records", "facts",
           "at_a_glance", "first_look", "learned_sentence", "verdict_facts", "claim_rows", "question_rows", "answers",
           "claims_table", "beyond", "readme_block", "write_readme"]

SUMMARY_FILE = "summary.json"
DEFAULT_PARAMS = "params/default"
FIRST_LOOK_BEGIN = ("<!-- first-look: written by `thesislib readme` from the default report's summary.json "
                    "(kept in docs/first-look.json); edit the code in thesislib/summary.py, not this text -->")
FIRST_LOOK_END = "<!-- /first-look -->"
DECIDED = ("agrees", "disagrees", "equivalent", "yes", "no")  # verdicts and answers beyond the seed noise
KEY_METHOD = "scorecam"  # the explainer the thesis's tables and claims are about


def verdict_facts(judged: pd.DataFrame) -> dict[str, Any]:
    """What the summary states of a `claims.judge_all` table: the claims and the verdict counts of
    our runs and of the thesis's own numbers (`claims.verdict_counts`)."""
    return dict(claims=len(judged), ours=verdict_counts(judged, "ours"), thesis=verdict_counts(judged, "thesis"))


def claim_rows(judged: pd.DataFrame) -> list[dict[str, Any]]:
    """Each claim of a `claims.judge_all` table as the summary lists it: family, claim, the thesis's
    numbers' answer, ours, the verdict, the seeds that would decide it, and kind ("family": judged
    under its family's table; "methods": RQ3's; "correlation": RQ6's)."""
    from thesislib.claims import CLAIMS, METHOD_CLAIMS

    family, methods = {c.text for c in CLAIMS}, {c.text for c in METHOD_CLAIMS}
    return [dict(family=str(r.family), claim=str(r.claim), thesis=_text_or_none(r.thesis), ours=_text_or_none(r.ours),
                 verdict=_text_or_none(r.verdict), seeds_needed=_text_or_none(r.seeds_needed),
                 kind="family" if r.claim in family else "methods" if r.claim in methods else "correlation")
            for r in judged.itertuples()]


def question_rows(judged: pd.DataFrame) -> list[dict[str, Any]]:
    """Each of our own questions of a `questions.judge_questions` table: question, answer, seeds needed."""
    return [dict(question=str(r.question), answer=_text_or_none(r.answer), seeds_needed=_text_or_none(r.seeds_needed))
            for r in judged.itertuples()]


def _text_or_none(v) -> str | None:
    return v if isinstance(v, str) and v else None


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
    out["data_hash"] = (records.get("00_data") or {}).get("fingerprint")
    out["answers"] = answers(records)
    out["claims"] = _claims_with_sections(records)
    out["beyond"] = beyond(records)
    return out


# -- the answers, the claims and the findings beyond the thesis, from the notebooks' records ----

# notebook -> the question it answers, as the summary names it
QUESTIONS = {"01_depth": "RQ1, depth", "02_optimisation": "RQ2, epochs and batch size",
             "03_cam_methods": "RQ3, CAM methods", "04_regularisation": "RQ4, regularisation",
             "05_precode": "RQ5, PRECODE", "06_correlation": "RQ6, accuracy and explainability",
             "07_optimizers": "Beyond the thesis, optimisers",
             "08_dataset_size": "Beyond the thesis, training-set size",
             "09_shortcut": "Beyond the thesis, a shortcut"}


def _section(name: str) -> dict[str, str]:
    """The title and anchor of a notebook's section of the report."""
    from thesislib.design import TITLES

    return dict(title=TITLES.get(name, name), anchor=f"sec-{name}")


def _family_notebooks(records: dict[str, dict]) -> dict[str, str]:
    """Each family to the first notebook (in the report's order) whose runs it names."""
    out: dict[str, str] = {}
    for name in sorted(records):
        for run in records[name].get("runs") or []:
            if isinstance(run, dict) and "family" in run:
                out.setdefault(run["family"], name)
    return out


def _claims_with_sections(records: dict[str, dict]) -> list[dict[str, Any]] | None:
    """06's record of every claim, each with the section where it is judged (title, anchor)."""
    rows = (records.get("06_correlation") or {}).get("claims")
    if not rows:
        return None
    where = _family_notebooks(records)
    out = []
    for r in rows:
        name = {"methods": "03_cam_methods", "correlation": "06_correlation"}.get(r["kind"]) \
            or where.get(r["family"], "06_correlation")
        out.append({**r, "notebook": name, **_section(name)})
    return out


def _pm(row: dict) -> str:
    """"12.3 ± 4.5 %" (the sd left out where it is 0 or missing)."""
    sd = row.get("std")
    return f"{row['mean']:.1f} ± {sd:.1f} %" if sd else f"{row['mean']:.1f} %"


def _best(rows: list[dict], metric: str, method: str) -> dict | None:
    part = [r for r in rows if r["metric"] == metric and r["method"] == method and r["mean"] is not None]
    return max(part, key=lambda r: r["mean"]) if part else None


def _setting(row: dict) -> str:
    """"weight decay L1 1e-05", "depth 50"; "the baseline" (the shared no-change setting)."""
    if row["setting"] == "baseline":
        return "the baseline"
    return f"{_family_title(row['family'])} {row['setting']}"  # PRECODE stays a name


def _tally(claims: list[dict], key: str = "verdict") -> str:
    """"3 claims: 1 agrees, 2 inconclusive (seeds to decide: 5, 8)"."""
    import collections

    counts = collections.Counter(c[key] or "n/a" for c in claims)
    parts = ", ".join(f"{n} {v}" for v, n in counts.most_common())
    needed = sorted({c["seeds_needed"] for c in claims if c.get("seeds_needed")})
    return f"{parts}" + (f" (seeds that would decide: {'; '.join(needed)})" if needed else "")


def _learned_runs(record: dict) -> str:
    listed = record.get("runs")
    runs = {r["run_id"]: r["learned"] for r in listed} if isinstance(listed, list) else {}
    return f"{sum(bool(v) for v in runs.values())} of its {len(runs)} runs learned" if runs else ""


def answers(records: dict[str, dict]) -> list[dict[str, str]]:
    """One answer per research question and per notebook beyond the thesis, from the records.

    Returns:
        One {notebook, question, answer, title, anchor} per notebook that recorded its results,
        in the report's order; the answer is a sentence or two with the numbers it rests on.
    """
    from thesislib.explain import LABELS

    key = LABELS.get(KEY_METHOD, KEY_METHOD)
    claims = _claims_with_sections(records) or []
    out = []
    for name, question in QUESTIONS.items():
        record = records.get(name)
        if not record:
            continue
        mine = [c for c in claims if c["notebook"] == name]
        said = []
        if mine:
            said.append(f"The thesis's {len(mine)} claim{'s' * (len(mine) != 1)} here, judged on our runs: "
                        f"{_tally(mine)}.")
        if record.get("questions"):
            said.append("Our questions: " + "; ".join(
                f"{q['question'].rstrip('.')}: {q['answer'] or 'n/a'}" for q in record["questions"]) + ".")
        said.append(_numbers_sentence(name, record, key))
        learned = _learned_runs(record)
        text = " ".join(x for x in said if x) + (f" ({learned}.)" if learned else "")
        if text:
            out.append(dict(notebook=name, question=question, answer=text, **_section(name)))
    return out


def _numbers_sentence(name: str, record: dict, key: str) -> str:
    """The numbers an answer rests on: per family the best setting by the key explainer's IoU (A)
    and by accuracy; RQ3 the best explainer; RQ6 the correlation over all models; 09 the shortcut."""
    if name == "09_shortcut":
        return _shortcut_sentence(record, key) or ""
    if name == "06_correlation":
        rows = [r for r in record.get("correlations") or [] if r["group"] == "all" and r["y"] == "iou_area"]
        if not rows or rows[0]["spearman"] is None:
            return ""
        r = rows[0]
        return (f"Over all {r['n']} models, accuracy and {key} IoU (A) correlate with Spearman ρ = "
                f"{r['spearman']:.2f} (Pearson {r['pearson']:.2f}).")
    table = record.get("table") or []
    if name == "03_cam_methods":
        d = _depth_iou(record)
        if not d:
            return ""
        b = d["best"]
        return (f"Best explainer by IoU (A): {b['method']} on depth {b['setting']}, {_pm(b)}, against the data "
                f"prior's {d['prior']:.1f} % and the ceiling's {d['ceiling']:.1f} %.")
    learned = _settings_all_learned(record)
    compared = {f for f in dict.fromkeys(r["family"] for r in table)  # one setting (02's tracked epochs run):
                if len({r["setting"] for r in table if r["family"] == f}) > 1}  # nothing to be highest among
    table = [r for r in table if r["family"] in compared]
    eligible = [r for r in table if learned is None or (r["family"], r["setting"]) in learned]
    among = ", among the settings whose every run learned" if len(eligible) < len(table) else ""
    if table and not eligible:  # no setting's runs all learned: the numbers over every run, said so
        eligible, among = table, ", though no setting's runs all learned"
    said = _highest_by_family(eligible, key)
    acc = _best(eligible, "accuracy", "")
    return " ".join(x for x in (
        f"Highest {key} IoU (A){among}: {'; '.join(said)}." if said else "",
        f"Highest accuracy{among}: {_setting(acc)} ({_pm(acc)})." if acc else ""))


def _highest_by_family(rows: list[dict], key: str) -> list[str]:
    """Per family of `rows` its setting with the highest IoU (A) of the key explainer, "setting (mean ± sd)";
    a baseline that several families share and rank first is said once, naming them."""
    said, baselines = [], {}
    for family in dict.fromkeys(r["family"] for r in rows):
        iou = _best([r for r in rows if r["family"] == family], "iou_area", key)
        if iou and iou["setting"] == "baseline":
            baselines.setdefault(_pm(iou), []).append(_family_title(family))
        elif iou:
            said.append(f"{_setting(iou)} ({_pm(iou)})")
    return said + [f"the baseline ({pm}) in {_and(families)}" for pm, families in baselines.items()]


def _settings_all_learned(record: dict) -> set[tuple[str, str]] | None:
    """The (family, setting) pairs whose every run learned; None where the record lists no runs."""
    listed = record.get("runs")
    if not isinstance(listed, list) or not listed:
        return None
    ok: dict[tuple[str, str], bool] = {}
    for r in listed:
        key = (r["family"], r["setting"])
        ok[key] = ok.get(key, True) and bool(r["learned"])
    return {k for k, v in ok.items() if v}


def _family_title(family: str) -> str:
    """`thesislib.labels.family_label` in running text: lower case, a name (PRECODE) as it is."""
    from thesislib.labels import family_label

    title = family_label(family)
    return title if title.isupper() else title.lower()


def _and(words: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _shortcut_sentence(record: dict, key: str) -> str | None:
    """09: the cue-trained model's accuracy with and without the marker, and where its maps go."""
    from thesislib.shortcut import MARKER_MASS

    rows = record.get("table") or []
    cue, clean = record.get("cue"), record.get("clean")
    on, off = (record.get("test_sets") or [None, None])[:2]

    def cell(trained, tested, method, metric):
        return next((r for r in rows if (r["trained"], r["tested"], r["method"], r["metric"])
                     == (trained, tested, method, metric) and r["mean"] is not None), None)

    acc_on, acc_off = cell(cue, on, "", "accuracy"), cell(cue, off, "", "accuracy")
    mass, mass_clean = cell(cue, on, key, MARKER_MASS), cell(clean, on, key, MARKER_MASS)
    if not (acc_on and acc_off):
        return None
    text = (f"Trained with the marker, a model reaches {_pm(acc_on)} accuracy on test images with it and "
            f"{_pm(acc_off)} without.")
    if mass and mass_clean:
        text += (f" {key} puts {_pm(mass)} of its map on the marker, against {_pm(mass_clean)} for a model trained "
                 "without it.")
    return text


def beyond(records: dict[str, dict]) -> list[dict[str, str]]:
    """The findings beyond the thesis: the reference maps against the explainers (RQ1's models),
    the sanity checks (model randomisation, 03) and the shortcut (09)."""
    from thesislib.references import LABELS as REF

    out = []
    depth = records.get("01_depth") or {}
    d = _depth_iou(depth)
    if d:
        rows = [r for r in depth["table"] if r["metric"] == "iou_area" and r["mean"] is not None]
        sobel = next((r["mean"] for r in rows if r["method"] == REF["sobel"]), None)
        explainers = {r["method"] for r in rows if r["method"] and r["method"] not in REF.values()}
        below = {r["method"] for r in rows if r["method"] in explainers} - {
            r["method"] for r in rows if r["method"] in explainers and r["mean"] > d["prior"]}
        text = (f"On RQ1's models the data prior (the mean expert map, which ignores the image) scores "
                f"{d['prior']:.1f} % IoU (A)" + (f", the Sobel edge map {sobel:.1f} %" if sobel is not None else "")
                + f" and the ceiling {d['ceiling']:.1f} %; {len(below)} of the {len(explainers)} explainers stay "
                "below the prior at every depth.")
        out.append(dict(topic="Reference maps against the explainers", text=text, **_section("01_depth")))
    sanity = (records.get("03_cam_methods") or {}).get("sanity")
    if sanity:
        import collections

        by = collections.defaultdict(list)
        for method, finding in sanity.items():
            by[finding].append(method)
        text = ("Model randomisation (Adebayo et al.), maps once the top stages are re-initialised: "
                + "; ".join(f"{', '.join(ms)}: {f}" for f, ms in by.items()) + ".")
        out.append(dict(topic="Sanity checks", text=text, **_section("03_cam_methods")))
    shortcut = records.get("09_shortcut")
    if shortcut:
        from thesislib.explain import LABELS

        text = _shortcut_sentence(shortcut, LABELS.get(KEY_METHOD, KEY_METHOD))
        if text:
            out.append(dict(topic="A shortcut", text=text, **_section("09_shortcut")))
    return out


def claims_table(claims: list[dict[str, Any]]) -> str:
    """Markdown: every claim with the thesis's numbers' answer, ours, the verdict (bold where decided),
    the seeds that would decide it and a link to the section where it is judged."""
    dash = lambda v: v or "—"  # noqa: E731
    lines = ["### Every claim of the thesis", "",
             "| claim | thesis's numbers | our runs | verdict | seeds to decide | judged in |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in claims:
        verdict = dash(c["verdict"])
        verdict = f"**{verdict}**" if verdict in DECIDED else verdict
        lines.append(f"| {c['claim']} | {dash(c['thesis'])} | {dash(c['ours'])} | {verdict} | "
                     f"{dash(c['seeds_needed'])} | [{c['title']}](#{c['anchor']}) |")
    return "\n".join(lines)


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
        out.append(learned_text(r))
    d = f.get("depth_iou")
    if d:
        b = d["best"]
        out.append(f"On RQ1's models the data prior (the mean expert map, which ignores the image) reaches "
                   f"{d['prior']:.1f} % IoU (A) and the ceiling (the expert map at the CAM grid) {d['ceiling']:.1f} %; "
                   f"the best explainer, {b['method']} on ResNet-{b['setting']}, {b['mean']:.1f} ± {b['std']:.1f} % "
                   "(mean ± sd over seeds).")
    return out


def at_a_glance(f: dict[str, Any]) -> str:
    """Markdown for the top of the report: the counts, the answers, every claim, beyond the thesis."""
    lines = _sentences(f)
    parts = []
    if lines:
        parts.append("Computed from this report's results (the README's first look is written from the same "
                     "numbers):\n\n" + "\n".join(f"- {x}" for x in lines))
    if f.get("answers"):
        parts.append("### The answers, question by question\n\n" + "\n".join(
            f"- **{a['question']}.** {a['answer']} ([{a['title']}](#{a['anchor']}))" for a in f["answers"]))
    if f.get("claims"):
        parts.append(claims_table(f["claims"]))
    if f.get("beyond"):
        parts.append("### Beyond the thesis\n\n" + "\n".join(
            f"- **{b['topic']}.** {b['text']} ([{b['title']}](#{b['anchor']}))" for b in f["beyond"]))
    if not parts:
        return ""
    return ("## At a glance\n\n<a id='at-a-glance'></a>\n\n" + "\n\n".join(parts)
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
