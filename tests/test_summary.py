"""The report's summary and the README's first look come from a report's results, never typed."""

import html as htmlmod
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from thesislib import summary as S
from thesislib.claims import TALLY
from thesislib.cli import main

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")


def _text(html: str) -> str:
    text = re.sub(r"<style.*?</style>|<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", htmlmod.unescape(re.sub(r"<[^>]+>", " ", text)))


def _numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def _facts(**changes) -> dict:
    f = dict(params="params/default", commit="0123456789abcdef", dirty=False, machine="Linux x86_64, 2 CPU cores",
             date="2026-12-03 12:00 UTC", wall_min=24.4,
             notebooks={"00_data": dict(ok=True, seconds=20), "01_depth": dict(ok=True, seconds=150)},
             verdicts=dict(claims=30, ours={"agrees": 3, "disagrees": 1, "equivalent": 2, "inconclusive": 20,
                                            "did not learn": 0, "untestable": 3, "n/a": 1},
                           thesis={"agrees": 16, "disagrees": 1, "equivalent": 0, "inconclusive": 7,
                                   "did not learn": 0, "untestable": 6}),
             runs=dict(runs=90, not_learned=6, shuffled=3, shuffled_not_learned=3),
             depth_iou=dict(prior=33.71, ceiling=59.46, best=dict(method="EigenCAM", setting="50", mean=27.84,
                                                                   std=6.66)))
    f.update(changes)
    return f


def test_the_first_look_states_the_facts_it_is_given():
    text = S.first_look(_facts())
    assert "commit 0123456, params params/default, 2026-12-03 12:00 UTC: 24.4 min on Linux x86_64" in text
    assert "(per notebook: 00 20 s, 01 150 s)" in text
    assert "our runs could be judged on 26: 3 agrees, 1 disagrees, 2 equivalent, 20 inconclusive, 0 did not learn " \
           "(3 untestable and 1 n/a stand apart)" in text
    assert "support 16 of them and leave 7 inconclusive" in text
    assert "84 of the 87 runs that should learn did (97 %)" in text
    assert "33.7 % IoU (A)" in text and "59.5 %" in text and "EigenCAM on ResNet-50, 27.8 ± 6.7 %" in text
    # a part without data is left out, not printed as None
    assert "None" not in S.first_look(_facts(verdicts=None, runs=None, depth_iou=None))


def test_run_counts_leave_the_shuffled_label_runs_aside():
    df = pd.DataFrame(dict(run_id=["a", "a", "b", "c", "d"], learned=[True, True, False, False, True],
                           family=["x", "x", "x", "shuffled_labels", "y"]))
    assert S.run_counts(df) == dict(runs=4, not_learned=2, shuffled=1, shuffled_not_learned=1)
    assert S.learned_sentence(df).startswith("2 of the 3 runs that should learn did (67 %)")


def test_the_readme_first_look_is_the_block_rendered_from_the_stored_report_summary():
    """docs/first-look.json is what `thesislib readme` kept of the default report's summary.json;
    the README's block must be exactly what it renders (edit the code, not the README)."""
    stored = ROOT / "docs" / "first-look.json"
    facts = json.loads(stored.read_text())
    readme = (ROOT / "README.md").read_text()
    assert readme.count(S.FIRST_LOOK_BEGIN) == 1 and readme.count(S.FIRST_LOOK_END) == 1
    block = readme[readme.index(S.FIRST_LOOK_BEGIN): readme.index(S.FIRST_LOOK_END) + len(S.FIRST_LOOK_END)]
    assert block == S.readme_block(facts)
    assert facts["params"] == "params/default" and not facts["dirty"]


def test_readme_command_rewrites_only_the_block_and_refuses_other_reports(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{S.FIRST_LOOK_BEGIN}\nold 1.0\n{S.FIRST_LOOK_END}\n\nafter 2.0\n")
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(_facts()))
    assert main(["readme", "--summary", str(summary), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter 2.0\n") and "old 1.0" not in text
    assert S.first_look(_facts()) in text
    assert json.loads((tmp_path / "docs" / "first-look.json").read_text()) == _facts()
    summary.write_text(json.dumps(_facts(params="params/smoke")))
    with pytest.raises(ValueError, match=r"summary\.json: a report of params 'params/smoke'.*expected params "
                                         r"'params/default'"):
        S.write_readme(summary, readme, tmp_path / "store.json")
    with pytest.raises(FileNotFoundError, match=r"nothing\.json: no report summary"):
        S.write_readme(tmp_path / "nothing.json", readme, tmp_path / "store.json")
    readme.write_text("no block\n")
    summary.write_text(json.dumps(_facts()))
    with pytest.raises(ValueError, match="README.md: expected one first-look block"):
        S.write_readme(summary, readme, tmp_path / "store.json")


def test_every_number_of_the_first_look_is_in_the_smoke_report_outside_its_summary(smoke_report):
    """The smoke report's summary.json, rendered as the README renders it: every number it states
    stands in the report's sections too (the header, the contents, 01's and 06's tables)."""
    facts = json.loads((smoke_report.parent / S.SUMMARY_FILE).read_text())
    assert facts["verdicts"] and facts["runs"] and facts["depth_iou"], facts
    html = smoke_report.read_text()
    glance = re.search(r"id=[\"']at-a-glance[\"']", html).start()
    end = re.search(r"id=[\"']at-a-glance-end[\"']", html).start()
    assert glance < end < html.index("<th>git commit</th>"), "the summary comes first, before the header"
    sections = _text(html[:glance]) + " " + _text(html[end:])
    text = S.first_look(facts).replace(facts["machine"], "").replace(facts["commit"][:7], "")
    missing = sorted(_numbers(text) - _numbers(sections) - _numbers(facts["machine"] + " " + facts["date"]))
    assert not missing, f"numbers of the first look not in the report's sections: {missing}"
    assert facts["machine"] in sections and facts["date"] in sections
    # and each where it comes from: the header, the contents, 01's tables, 06's verdicts and run health
    def section(name: str) -> str:
        start = re.search(rf"id=[\"']sec-{name}[\"']", html).start()
        nxt = re.search(r"id=[\"']sec-\d\d_", html[start + 10:])
        return _text(html[start: start + 10 + nxt.start()] if nxt else html[start:])

    head = _text(html[end: html.index(">Contents<")])
    assert f"wall time {facts['wall_min']:.1f} min" in head
    contents = _text(html[html.index(">Contents<"): re.search(r"id=[\"']sec-00_data", html).start()])
    for name, o in facts["notebooks"].items():
        assert re.search(rf"{name[:2]} · .*? ok {o['seconds']} s", contents), name
    depth, study = section("01_depth"), section("06_correlation")
    d = facts["depth_iou"]
    # the prior and the ceiling do not vary by seed: their cells show the value once, without "± 0.0"
    for value in (f"{d['prior']:.1f} ", f"{d['ceiling']:.1f} ", f"{d['best']['mean']:.1f} ± {d['best']['std']:.1f}"):
        assert value in depth, value
    v = facts["verdicts"]
    tallied = sum(v["ours"].get(k, 0) for k in TALLY)
    assert f"{v['claims']} claims" in study and f"Tallied: the {tallied} claims" in study
    row = " ".join(f"{k} {v['ours'].get(k, 0)} {v['thesis'].get(k, 0)}" for k in ("agrees", "disagrees"))
    assert row in study, row
    assert S.learned_text(facts["runs"]) in study


@pytest.fixture(scope="module")
def smoke_report():
    import os

    given = os.environ.get("THESISLIB_SMOKE_REPORT")
    if not given or not Path(given).is_file():
        pytest.skip(f"no smoke report: THESISLIB_SMOKE_REPORT is {given!r} (make test builds one)")
    return Path(given)


def test_verdict_facts_count_the_judged_claims_for_both_sides():
    judged = pd.DataFrame(dict(verdict=["agrees", "inconclusive", "n/a", "did not learn"],
                               thesis=["yes", "inconclusive", "yes", None]))
    f = S.verdict_facts(judged)
    assert f["claims"] == 4
    assert f["ours"] == {"agrees": 1, "disagrees": 0, "equivalent": 0, "inconclusive": 1, "did not learn": 1, "n/a": 1}
    assert f["thesis"]["agrees"] == 2 and f["thesis"]["inconclusive"] == 1


def _records() -> dict:
    """Records as the notebooks write them, cut down to what the summary reads."""
    def table(family, rows):
        return [dict(family=family, setting=s, method=m, metric=k, mean=v, std=sd, n=3) for s, m, k, v, sd in rows]

    depth = table("depth", [("18", "", "accuracy", 80.0, 1.0), ("50", "", "accuracy", 84.0, 2.0),
                            ("18", "Score-CAM", "iou_area", 20.0, 3.0), ("50", "Score-CAM", "iou_area", 25.0, 4.0),
                            ("18", "Prior (mean expert map)", "iou_area", 30.0, 0.0),
                            ("18", "Sobel edges", "iou_area", 12.0, 0.0),
                            ("18", "Ceiling (expert map at CAM grid)", "iou_area", 60.0, 0.0)])
    runs = [dict(family="depth", setting="18", seed=0, run_id="a", eval_id="e", learned=True),
            dict(family="depth", setting="50", seed=0, run_id="b", eval_id="e", learned=False)]
    claim = dict(thesis="yes", ours="inconclusive", verdict="inconclusive", seeds_needed="8 seeds")
    return {
        "00_data": dict(fingerprint="abc123"),
        "01_depth": dict(runs=runs, table=depth),
        "03_cam_methods": dict(runs=runs, table=depth, sanity={"Grad-CAM": "passes", "CAM": "passes",
                                                               "Score-CAM": "insensitive: maps barely change"}),
        "06_correlation": dict(correlations=[dict(group="all", y="iou_area", n=6, pearson=0.4, spearman=0.5)],
                               claims=[dict(family="depth", claim="ResNet-50 has the highest accuracy", kind="family",
                                            **{**claim, "ours": "yes", "verdict": "agrees", "seeds_needed": None}),
                                       dict(family="methods", claim="CAM has the lowest IoU (A) in most settings",
                                            kind="methods", **claim),
                                       dict(family="depth", claim="Accuracy and IoU rise together", kind="correlation",
                                            **claim)]),
        "07_optimizers": dict(runs=[], table=[], questions=[dict(question="Some other optimiser beats Adam",
                                                                 answer="no", seeds_needed=None)]),
        "09_shortcut": dict(clean="no cue", cue="cue 1", test_sets=["cue on", "cue off"], table=[
            dict(trained="cue 1", tested="cue on", method="", metric="accuracy", mean=99.0, std=1.0, n=3),
            dict(trained="cue 1", tested="cue off", method="", metric="accuracy", mean=55.0, std=2.0, n=3),
            dict(trained="cue 1", tested="cue on", method="Score-CAM", metric="marker_mass", mean=40.0, std=5.0, n=3),
            dict(trained="no cue", tested="cue on", method="Score-CAM", metric="marker_mass", mean=3.0, std=1.0,
                 n=3)]),
    }


def test_each_question_is_answered_from_its_records_with_a_link_to_its_section():
    answers = {a["notebook"]: a for a in S.answers(_records())}
    assert list(answers) == ["01_depth", "03_cam_methods", "06_correlation", "07_optimizers", "09_shortcut"]
    depth = answers["01_depth"]
    assert depth["anchor"] == "sec-01_depth" and depth["question"] == "RQ1, depth"
    assert "1 claim here, judged on our runs: 1 agrees." in depth["answer"]
    # depth 50's run did not learn: the highest are among the settings whose every run learned
    assert "Highest Score-CAM IoU (A), among the settings whose every run learned: depth 18 (20.0 ± 3.0 %)" \
        in depth["answer"]
    assert "Highest accuracy, among the settings whose every run learned: depth 18 (80.0 ± 1.0 %)" in depth["answer"]
    assert "1 of its 2 runs learned" in depth["answer"]
    assert "1 inconclusive (seeds that would decide: 8 seeds)" in answers["03_cam_methods"]["answer"]
    assert "Spearman ρ = 0.50" in answers["06_correlation"]["answer"]
    assert "Some other optimiser beats Adam: no" in answers["07_optimizers"]["answer"]
    assert "99.0 ± 1.0 % accuracy on test images with it and 55.0 ± 2.0 % without" in answers["09_shortcut"]["answer"]
    assert "40.0 ± 5.0 % of its map on the marker, against 3.0 ± 1.0 %" in answers["09_shortcut"]["answer"]


def test_the_highest_settings_say_a_shared_baseline_once_and_skip_a_family_of_one_setting():
    def rows(family, values):
        return [dict(family=family, setting=s, method=m, metric=k, mean=v, std=1.0, n=3)
                for s, v in values for m, k in (("Score-CAM", "iou_area"), ("", "accuracy"))]

    table = (rows("dropout", [("baseline", 30.0), ("0.5", 20.0)]) + rows("batch_norm", [("baseline", 30.0),
             ("BatchNorm", 25.0)]) + rows("weight_decay", [("baseline", 30.0), ("L2 1e-05", 35.0)])
             + rows("epochs", [("batch 16", 50.0)]))
    runs = [dict(family=r["family"], setting=r["setting"], seed=0, run_id="x", eval_id="e", learned=True)
            for r in table]
    said = S._numbers_sentence("04_regularisation", dict(table=table, runs=runs), "Score-CAM")
    assert said == ("Highest Score-CAM IoU (A): weight decay L2 1e-05 (35.0 ± 1.0 %); the baseline (30.0 ± 1.0 %) "
                    "in dropout and batch normalisation. Highest accuracy: weight decay L2 1e-05 (35.0 ± 1.0 %).")
    runs[-1]["learned"] = False  # a family of one setting is never "highest", learned or not
    assert "epochs" not in S._numbers_sentence("04_regularisation", dict(table=table, runs=runs), "Score-CAM")
    for r in runs:  # nothing learned: the numbers over every run, and the sentence says so
        r["learned"] = False
    said = S._numbers_sentence("04_regularisation", dict(table=table, runs=runs), "Score-CAM")
    assert said.startswith("Highest Score-CAM IoU (A), though no setting's runs all learned: weight decay L2 1e-05 "
                           "(35.0 ± 1.0 %)"), said


def test_every_claim_is_listed_with_the_section_that_judges_it_and_only_decided_verdicts_in_bold():
    f = S.facts(_records(), dict(params="params/smoke", commit="c", dirty=False, machine="m", date="d", wall=60))
    where = {c["claim"]: c["anchor"] for c in f["claims"]}
    assert where == {"ResNet-50 has the highest accuracy": "sec-01_depth",
                     "CAM has the lowest IoU (A) in most settings": "sec-03_cam_methods",
                     "Accuracy and IoU rise together": "sec-06_correlation"}
    table = S.claims_table(f["claims"])
    row = "| ResNet-50 has the highest accuracy | yes | yes | **agrees** | — | [01 · Depth (RQ1)](#sec-01_depth) |"
    assert row in table
    assert "| inconclusive | 8 seeds |" in table and "**inconclusive**" not in table
    glance = S.at_a_glance(f)
    assert glance.index("### The answers") < glance.index("### Every claim") < glance.index("### Beyond the thesis")
    assert f["data_hash"] == "abc123"


def test_the_findings_beyond_the_thesis_name_the_reference_maps_the_sanity_checks_and_the_shortcut():
    found = {b["topic"]: b for b in S.beyond(_records())}
    assert list(found) == ["Reference maps against the explainers", "Sanity checks", "A shortcut"]
    refs = found["Reference maps against the explainers"]["text"]
    assert "30.0 % IoU (A), the Sobel edge map 12.0 % and the ceiling 60.0 %" in refs
    assert "1 of the 1 explainers stay below the prior at every depth" in refs
    assert "Grad-CAM, CAM: passes; Score-CAM: insensitive: maps barely change" in found["Sanity checks"]["text"]
    assert found["Sanity checks"]["anchor"] == "sec-03_cam_methods"
