"""The HTML report: built from the smoke params (by `make test`, or here if it was not)."""

import base64
import collections
import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from thesislib.report import build_report, stitch

ROOT = Path(__file__).resolve().parents[1]
from thesislib.study import NOTEBOOKS as SECTIONS  # noqa: E402  every notebook is a section


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory):
    given = os.environ.get("THESISLIB_SMOKE_REPORT")
    if given and Path(given).is_file():
        return Path(given)
    out = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "THESISLIB_RUNS": str(out / "runs")}
    subprocess.run([sys.executable, "-m", "thesislib", "report", "--params", "params/smoke", "--out",
                    str(out / "index.html"), "--workdir", str(out / "notebooks")], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    return out / "index.html"


@pytest.fixture(scope="session")
def html(smoke_report):
    return smoke_report.read_text()


def test_every_section_and_a_table_of_contents(html):
    for name in SECTIONS:
        assert f"id='sec-{name}'" in html or f'id="sec-{name}"' in html
        assert f"#sec-{name}" in html
    assert html.count(">ok<") == len(SECTIONS) and "failed" not in html.lower().split("contents")[1][:3000]


def test_header_says_what_ran_where(html):
    for field in ("params", "data", "git commit", "date", "machine", "wall time"):
        assert f"<th>{field}</th>" in html
    assert "params/smoke" in html and "synthetic-n240-s64" in html


def test_every_thesis_table_with_the_thesis_values_beside_ours(html):
    for table in ("Table 5.2", "Table 5.3", "Table 5.4", "Table 5.6", "Table 5.7", "Table 5.8", "Table 5.9", "Table 5.10"):
        assert table in html
    # thesis values of Tables 5.2 (ResNet-18 accuracy), 5.4 (Score-CAM IoU (BB) at 256), 5.8 and 5.10 (k=128)
    for value in ("82.2 ± 1.2", "39.2 ± 0.7", "34.8 ± 0.3", "89.5 ± 0.5"):
        assert value in html, value
    assert html.count(">ours<") >= 8 and html.count(">thesis<") >= 8


def test_claims_are_computed_rows_under_the_tables(html):
    outcomes = "yes|no|equivalent|inconclusive|did not learn|untestable|—"
    verdicts = "agrees|disagrees|equivalent|inconclusive|did not learn|untestable|n/a"
    rows = re.findall(rf"<tr>\s*<td>([^<]+)</td>\s*<td>({outcomes})</td>\s*<td>({outcomes})</td>\s*"
                      rf"<td>(?:<strong>)?({verdicts})", html)
    claims = {claim for claim, *_ in rows}
    assert len(claims) >= 30  # every claim, in its section and in the table of every claim
    assert "Verdicts at 95 %" in html
    # the thesis's own numbers are judged too: some of its claims hold beyond its seed noise
    assert any(t == "yes" for _, t, _, _ in rows)
    said = {"yes": "agrees", "no": "disagrees", "—": "n/a"}
    for _, _, ours, verdict in rows:  # the verdict is what our runs say of the claim
        assert verdict == said.get(ours, ours)
    # only a decided verdict is bold
    bold = re.findall(rf"<td><strong>({verdicts})</strong>", html)
    assert bold is not None and not set(bold) - {"agrees", "disagrees", "equivalent"}, sorted(set(bold))
    assert re.search(r"<td>(inconclusive|did not learn|untestable|n/a)", html)


def test_reference_rows_and_the_ceiling_stand_beside_the_explainers(html):
    for label in ("Prior (mean expert map)", "Ceiling (expert map at CAM grid)", "Centred Gaussian", "Sobel edges",
                  "Pixel noise (uniform)", "Noise at CAM grid (uniform)"):
        assert label in html, label
    assert "strongest reference" in html and "% of ceiling" in html


DEFAULT_ALT = "No description has been provided for this image"


class Page(HTMLParser):
    """What the report's tests read of a page: ids, images' alt texts, figure captions, in-page
    links and headings, each with the section (`sec-<notebook>` anchor) it stands in."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.ids, self.alts, self.captions, self.links, self.headings = [], [], [], [], []
        self.section, self._caption, self._heading = "report", None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
            if attrs["id"].startswith("sec-"):
                self.section = attrs["id"][4:]
        if tag == "img":
            self.alts.append(attrs.get("alt"))
        elif tag == "figcaption":
            self._caption = ""
        elif re.fullmatch(r"h[1-6]", tag) and "id" in attrs:
            self._heading = attrs["id"]
            self.headings.append((attrs["id"], self.section))
        elif tag == "a" and (attrs.get("href") or "").startswith("#"):
            self.links.append((attrs["href"][1:], self.section, self._heading, attrs.get("class")))

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self.captions.append(self._caption.strip())
            self._caption = None
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = None

    def handle_data(self, data):
        if self._caption is not None:
            self._caption += data


def check_figures_and_ids(page: Page) -> None:
    """Every image a numbered figure (1..N in order) with a real alt text; every id unique; every
    in-page link lands on an id, a heading's permalink on its own heading, a link to a repeated
    heading on the one of its own section."""
    assert page.alts, "no image"
    assert all(alt and alt.strip() and alt != DEFAULT_ALT for alt in page.alts), page.alts
    numbers = [int(m.group(1)) for c in page.captions if (m := re.match(r"Figure (\d+)\.", c))]
    assert numbers == list(range(1, len(page.alts) + 1)), page.captions
    assert all(alt.startswith(f"Figure {n}") for n, alt in zip(numbers, page.alts)), page.alts
    repeated = [i for i, k in collections.Counter(page.ids).items() if k > 1]
    assert not repeated, f"ids repeat: {repeated[:5]}"
    headings = dict(page.headings)  # id -> the section it stands in
    for target, section, heading, cls in page.links:
        assert target in page.ids, f"link to #{target} in {section}: no such id"
        if cls == "anchor-link":
            assert target == heading, f"the permalink of {heading} points at {target}"
        elif target in headings and headings[target] != section:
            base = target.removeprefix(f"{headings[target]}-")
            assert f"{section}-{base}" not in headings, f"a link in {section} leaves for {target}"


def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def test_stitch_numbers_the_figures_and_keeps_every_id_unique(tmp_path):
    from thesislib.figures import CAPTION_KEY

    png = _png()

    def figure(caption=None):
        return nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"},
                                      metadata={CAPTION_KEY: {"caption": caption}} if caption else {})

    outcomes = []
    for name, captions in (("01_depth", ["Depth: n = 3 seeds.", None]), ("02_optimisation", ["Epochs."])):
        cell = nbformat.v4.new_code_cell("figures.by_setting(...)")
        cell.outputs = [figure(c) for c in captions]
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name}\n\n## Against a trivial answer\n\n"
                                          "See [the comparison](#Against-a-trivial-answer)."), cell])
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        outcomes.append(dict(name=name, ok=True, failure=None, seconds=1.0, path=tmp_path / f"{name}.ipynb"))
    html = stitch(outcomes, dict(params="p", data="d", commit="c", date="today", machine="m", wall=1.0))
    page = Page(html)
    check_figures_and_ids(page)
    assert page.captions == ["Figure 1. Depth: n = 3 seeds.", "Figure 2.", "Figure 3. Epochs."]
    assert page.alts == ["Figure 1. Depth: n = 3 seeds.", "Figure 2 of section 01 · Depth (RQ1)", "Figure 3. Epochs."]
    assert [h for h, _ in page.headings if "trivial" in h] == ["01_depth-Against-a-trivial-answer",
                                                               "02_optimisation-Against-a-trivial-answer"]
    text_links = [(target, section) for target, section, _, cls in page.links
                  if cls != "anchor-link" and "trivial" in target]
    assert text_links == [("01_depth-Against-a-trivial-answer", "01_depth"),
                          ("02_optimisation-Against-a-trivial-answer", "02_optimisation")]


def test_every_figure_is_numbered_with_a_caption_and_every_id_is_unique(html):
    page = Page(html)
    check_figures_and_ids(page)
    assert len(page.alts) >= 15
    # each caption says what it shows, beyond its number (figures.py attaches one to every figure)
    assert all(len(c.split(".", 1)[1].strip()) > 20 for c in page.captions), page.captions
    assert sum("standard deviation" in c or "interquartile" in c or "95 %" in c for c in page.captions) >= 8
    for section in ("01_depth", "09_shortcut"):  # the heading every study notebook shares, once per section
        assert f"{section}-Against-a-trivial-and-the-best-possible-answer" in page.ids


def test_figures_are_embedded_and_nothing_is_fetched(html):
    assert html.count("data:image/png;base64") >= 15
    assert not re.search(r"<(script|img|link)[^>]*(src|href)=[\"']https?://", html)


def test_no_code_and_no_logs(html):
    assert "study.grid(" not in html and "import " not in html
    assert "runs cached" not in html and "Traceback" not in html


def test_a_failing_notebook_is_named_with_its_cell_and_kept(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params" / "p").mkdir(parents=True)
    ok = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Data"),
                                         nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print('fine', x)")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                          nbformat.v4.new_code_cell("y = 2"),
                                          nbformat.v4.new_code_cell("raise ValueError('the data is odd')")])
    for nb in (ok, bad):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(ok, tmp_path / "notebooks" / "00_data.ipynb")
    nbformat.write(bad, tmp_path / "notebooks" / "01_depth.ipynb")
    for name in ("00_data", "01_depth"):
        (tmp_path / "params" / "p" / f"{name}.yaml").write_text("x: 2\n")
    monkeypatch.chdir(tmp_path)
    assert build_report("params/p", out=tmp_path / "r.html", workdir=tmp_path / "executed") is False
    page = (tmp_path / "r.html").read_text()
    assert "This notebook failed" in page and "ValueError: the data is odd" in page
    assert "code cell 3 (`raise ValueError('the data is odd')`)" in page
    assert "fine 2" in page  # the other notebook ran, with the params file's value
    kept = nbformat.read(tmp_path / "executed" / "01_depth.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in kept.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_missing_params_folder_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "thesislib", "report", "--params", str(tmp_path / "nope")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "params folder not found" in r.stderr


class _Text(HTMLParser):
    """The text a reader sees: every text node outside scripts and styles, and each table cell's text."""

    def __init__(self):
        super().__init__()
        self.text, self.cells, self._skip, self._cell = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)
            if self._cell is not None:
                self._cell.append(data)


@pytest.fixture(scope="session")
def shown(html):
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.text).split()), parser.cells


def test_no_python_repr_or_key_in_what_a_reader_sees(shown):
    from thesislib.metrics import REGISTRY
    from thesislib.study import FAMILIES

    text, cells = shown
    for repr_ in ("('", "['", "{'", "np.float", "dtype"):
        assert repr_ not in text, f"a Python repr {repr_!r} in the report: ...{text[text.find(repr_) - 80:][:200]}..."
    raw = sorted({c for c in cells if c in ("True", "False", "None", "nan", "NaN", "<NA>")})
    assert not raw, f"table cells that read like Python values: {raw}"
    long = sorted(set(re.findall(r"(?<![\w.])-?\d+\.\d{4,}\b", " ".join(cells))))
    assert not long, f"numbers with four or more decimals in tables: {long[:10]}"
    keys = [k for k in [*FAMILIES, *REGISTRY, "n_flagged", "run_id", "method_label", "thesis_rho", "ours_rho",
                        "non_glaucoma", "suspicious_glaucoma", "shuffle_labels", "penalty_lambda"] if "_" in k]
    leaked = sorted({k for k in keys if re.search(rf"(?<![\w/.-]){re.escape(k)}(?![\w.])", text)})
    assert not leaked, f"snake_case keys in the report's text: {leaked}"


def test_cells_show_mean_and_sd_with_the_interval_in_the_hover(html, shown):
    _, cells = shown
    assert not [c for c in cells if re.search(r"± \d+\.\d+ \[", c)], "an interval printed in a cell"
    assert re.search(r'<span class="num" title="95 % interval -?\d+\.\d to -?\d+\.\d, \d+ seeds">', html)
    assert "<b>" in html  # the best explainer of a column is marked


def test_an_explanation_is_shown_once_per_section_and_facts_under_every_table():
    from thesislib.report import _drop_repeated_notes

    said: set[str] = set()
    note = '<p class="note"><small>† marks a cell whose seeds include runs that never learned.</small></p>'
    first = {"data": {"text/html": f"<table></table><p><small>2 runs never learned.</small></p>{note}"}}
    second = {"data": {"text/html": f"<table></table><p><small>2 runs never learned.</small></p>{note}",
                       "text/plain": "kept as it is"}}
    verdicts = {"data": {"text/markdown": '<p class="note">Verdicts at 95 %.</p>\n\n| a |\n| --- |'}}
    again = {"data": {"text/markdown": ['<p class="note">Verdicts at 95 %.</p>\n\n', "| b |\n| --- |"]}}
    for output in (first, second, verdicts, again):
        _drop_repeated_notes(output, said)
    assert note in first["data"]["text/html"] and note not in second["data"]["text/html"]
    assert second["data"]["text/html"].count("2 runs never learned") == 1  # a fact stays under its table
    assert "Verdicts" in verdicts["data"]["text/markdown"] and again["data"]["text/markdown"] == "| b |\n| --- |"
    _drop_repeated_notes(fresh := {"data": {"text/html": note}}, set())  # the next section says it again
    assert fresh["data"]["text/html"] == note


# -- the summary first, the methods and the scope, the data and where everything comes from ------

def _between(html: str, start_id: str, end_id: str) -> str:
    start = re.search(rf"id=[\"']{start_id}[\"']", html).start()
    return html[start: re.search(rf"id=[\"']{end_id}[\"']", html[start:]).start() + start]


def _section_html(html: str, name: str) -> str:
    start = re.search(rf"id=[\"']sec-{name}[\"']", html).start()
    nxt = re.search(r"id=[\"']sec-\d\d_", html[start + 10:])
    return html[start: start + 10 + nxt.start()] if nxt else html[start:]


def _summary(smoke_report) -> dict:
    import json

    from thesislib.summary import SUMMARY_FILE

    return json.loads((smoke_report.parent / SUMMARY_FILE).read_text())


def test_every_question_has_an_answer_with_its_numbers_and_a_working_link(html):
    from thesislib.summary import QUESTIONS

    glance = _between(html, "at-a-glance", "at-a-glance-end")
    ids = set(Page(html).ids)
    for name, question in QUESTIONS.items():
        m = re.search(rf"<li><strong>{re.escape(question)}\.</strong>(.*?)</li>", glance, re.S)
        assert m, f"no answer for {question}"
        answer = m.group(1)
        links = re.findall(r"href=[\"']#([^\"']+)[\"']", answer)
        assert links == [f"sec-{name}"] and links[0] in ids, (question, links)
        text = re.sub(r"<[^>]+>", " ", answer)
        assert re.search(r"\d+\.\d %|ρ = -?\d\.\d\d", text), f"{question}: no number in {text!r}"


def test_the_table_of_every_claim_links_each_to_the_section_that_judges_it(html, smoke_report):
    facts = _summary(smoke_report)
    claims = facts["claims"]
    assert len(claims) == facts["verdicts"]["claims"] >= 30
    glance = _between(html, "at-a-glance", "at-a-glance-end")
    ids = set(Page(html).ids)
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>(.*?)</tr>", glance, re.S)
    linked = {claim.strip(): re.findall(r"href=[\"']#([^\"']+)[\"']", rest) for claim, rest in rows}
    for c in claims:
        assert c["claim"] in linked, f"claim missing from the table: {c['claim']}"
        target = linked[c["claim"]]
        assert target == [c["anchor"]] and target[0] in ids, (c["claim"], target)
        assert c["claim"] in _section_html(html, c["notebook"]), f"{c['claim']} is not judged in {c['notebook']}"


def test_the_csv_files_exist_are_linked_and_hold_the_tables_numbers(html, smoke_report):
    import pandas as pd

    folder = smoke_report.parent
    for name in ("results.csv", "per_image.csv"):
        assert (folder / "data" / name).is_file(), name
        assert re.search(rf"href=[\"']data/{name}[\"']", html), f"{name} is not linked"
    tidy = pd.read_csv(folder / "data" / "results.csv")
    images = pd.read_csv(folder / "data" / "per_image.csv")
    assert {"notebook", "family", "setting", "seed", "run_id", "learned", "method", "iou_area", "accuracy"} <= set(tidy)
    assert set(tidy["notebook"]) >= {"01_depth", "02_optimisation", "03_cam_methods", "04_regularisation",
                                     "05_precode", "07_optimizers", "08_dataset_size", "09_shortcut"}
    # a run's summary is the mean of its per-image rows
    per_run = images.groupby(["notebook", "run_id", "method"])["iou_area"].mean() * 100
    joined = tidy.set_index(["notebook", "run_id", "method"])["iou_area"].dropna()
    common = joined.index.intersection(per_run.index)
    assert len(common) >= 50
    assert (joined[common] - per_run[common]).abs().max() < 1e-6
    # and the mean ± sd over seeds of 01's Score-CAM IoU (A) is what its table shows
    depth = tidy[(tidy["notebook"] == "01_depth") & (tidy["method"] == "scorecam")]
    section = _section_html(html, "01_depth")
    for setting, g in depth.groupby("setting"):
        value = f"{g['iou_area'].mean():.1f} ± {g['iou_area'].std():.1f}"
        assert value in section, f"depth {setting}: {value} not in 01's tables"


def test_the_methods_name_the_data_hash_the_header_names_and_link_the_protocol(html, smoke_report):
    head = re.search(r"<th>data hash</th><td><code>([0-9a-f]{8,})</code>", html)
    assert head, "the header names no data hash"
    methods = _between(html, "methods", "sec-00_data")
    assert f"<code>{head.group(1)}</code>" in methods
    for word in ("Otsu", "IoU (A)", "IoU (BB)", "Average Drop", "Increase in Confidence", "Pointing game",
                 "ResNet-18", "paired t-test"):
        assert word in methods, word
    protocol = re.search(r"href=[\"']([^\"']*PROTOCOL\.md)[\"']", methods)
    assert protocol and (smoke_report.parent / protocol.group(1)).resolve().is_file(), protocol


def test_a_scope_box_beside_every_thesis_comparison(html):
    from thesislib.study import BEYOND

    compared = [n for n in SECTIONS if n not in BEYOND and n != "00_data"]  # 01-06 set the thesis beside ours
    for name in SECTIONS:
        section = _section_html(html, name)
        boxes = section.count("class='scope-box'") + section.count('class="scope-box"')
        assert boxes == (name in compared), (name, boxes)
    assert "cannot confirm or refute the thesis's numbers" in html


def test_the_scope_box_warns_except_at_the_thesis_scale_on_real_data():
    from thesislib.report.methods import at_thesis_scale, scope_box

    real = dict(params="params/thesis", data="/data/LAG")
    assert at_thesis_scale(real) and "like-for-like" in scope_box(real) and "cannot" not in scope_box(real)
    for header in (dict(params="params/thesis", data="synthetic-n2000-s224"), dict(params="params/default",
                                                                                 data="/data/LAG")):
        assert not at_thesis_scale(header) and "cannot confirm" in scope_box(header)


def test_the_header_and_each_section_say_where_everything_comes_from(html, smoke_report):
    packages = re.search(r"<th>packages</th><td>(.*?)</td>", html).group(1)
    for name in ("torch", "torchvision", "grad-cam", "numpy"):
        assert re.search(rf"(^|, ){re.escape(name)} \d", packages), name
    assert re.search(r"<th>git commit</th><td>[0-9a-f]{40} (<b>)?\((dirty|clean)", html)
    assert re.search(r"<th>command</th><td><code>[^<]*thesislib[^<]* report [^<]*--params params/smoke", html)
    for name in SECTIONS:
        hrefs = re.findall(r"href=[\"']([^\"'#]+\.(?:ipynb|yaml))[\"']", _section_html(html, name)[:3000])
        assert {Path(h).suffix for h in hrefs} == {".ipynb", ".yaml"}, (name, hrefs)
        for h in hrefs:
            assert (smoke_report.parent / h).resolve().is_file(), f"{name}: {h} does not resolve"


def test_the_report_package_keeps_each_module_under_500_lines():
    folder = ROOT / "thesislib" / "report"
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"__init__.py", "build.py", "page.py", "params.py", "execute.py", "records.py"} <= set(sizes)
    assert max(sizes.values()) <= 500, sizes
    import thesislib.report as report

    for name in ("build_report", "stitch", "record", "key_numbers", "params_for", "apply_sets", "TITLES"):
        assert hasattr(report, name), name
