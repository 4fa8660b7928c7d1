"""The HTML page: header, contents and every executed notebook's text, tables and figures, without code."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import nbformat

from thesislib.report.methods import THESIS_SECTIONS


def _anchor(name: str) -> str:
    return f"sec-{name}"


def _link(path: str | os.PathLike, links_from: Path | None) -> str:
    """An href to `path`: relative to the folder `links_from` when given, with forward slashes."""
    from urllib.parse import quote

    path = Path(path)
    if links_from is not None:
        path = Path(os.path.relpath(Path(path).resolve(), Path(links_from).resolve()))
    return quote(path.as_posix())


def _header_rows(header: dict) -> str:
    """The header table's rows: what ran, from which commit and command, with what, where and when."""
    rows = [("params", _esc(header["params"])), ("data", _esc(header["data"]))]
    if header.get("data_hash"):
        rows.append(("data hash", f"<code>{_esc(header['data_hash'])}</code>"))
    dirty = header.get("dirty")
    state = {True: " <b>(dirty: uncommitted changes or untracked files)</b>", False: " (clean)"}.get(dirty, "")
    rows.append(("git commit", _esc(header["commit"]) + state))
    if header.get("command"):
        rows.append(("command", f"<code>{_esc(header['command'])}</code>"))
    if header.get("packages"):
        rows.append(("packages", ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in header["packages"].items())))
    rows += [("date", _esc(header["date"])), ("machine", _esc(header["machine"])),
             ("wall time", f"{header['wall'] / 60:.1f} min")]
    return "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)


def _files(o: dict, links_from: Path | None) -> str:
    """Links to a section's executed notebook and params file, as table cells."""
    cells = f"<td><a href='{_link(o['path'], links_from)}'>{_esc(Path(o['path']).name)}</a></td>"
    params = o.get("params")
    cells += f"<td><a href='{_link(params, links_from)}'>{_esc(Path(params).name)}</a></td>" if params else "<td></td>"
    return cells


def stitch(outcomes: list[dict], header: dict, *, links_from: str | os.PathLike | None = None,
           glance: str = "", methods: str = "", scope: str = "") -> str:
    """One HTML page from executed notebooks: header, contents, sections; no code, no logs.

    Args:
        outcomes: one dict per notebook: name, ok, failure, seconds, path (the executed
            notebook) and optionally params (its params file).
        header: params, data, commit, date, machine, wall (seconds); optionally dirty (bool),
            command (str) and packages ({name: version}).
        links_from: the report's folder: links to executed notebooks and params files are
            relative to it (default: the paths as given).
        glance: Markdown of the summary shown first (`thesislib.summary.at_a_glance`).
        methods: Markdown of the methods, after the contents (`thesislib.report.methods`).
        scope: HTML of the scope box, at the top of every section that compares with the thesis
            (`methods.THESIS_SECTIONS`).

    Returns:
        The HTML page, self-contained (figures embedded, nothing fetched).
    """
    from nbconvert import HTMLExporter

    links_from = Path(links_from) if links_from is not None else None
    numbered = 0  # figures so far
    book = nbformat.v4.new_notebook()
    book.metadata["title"] = "thesislib report"
    per_nb = "".join(f"<tr><td><a href='#{_anchor(o['name'])}'>{_titles().get(o['name'], o['name'])}</a></td>"
                     f"<td>{'ok' if o['ok'] else '<b>failed</b>'}</td><td>{o['seconds']:.0f} s</td>"
                     f"{_files(o, links_from)}</tr>"
                     for o in outcomes)
    book.cells.append(nbformat.v4.new_markdown_cell(
        "# Influences on class-activation explainability: the report\n\n"
        "Which training choices change how well CAM explanations of a glaucoma classifier agree with "
        "where experts look, and does a more accurate model explain itself better? Each section answers one "
        "research question of the thesis, with the thesis's published numbers beside ours.\n\n"
        + (glance + "\n\n" if glance else "")
        + f"<table>{_header_rows(header)}</table>\n\n"
        f"## Contents\n\n<table class='report-contents'><tr><th>section</th><th>status</th><th>time</th>"
        f"<th>executed notebook</th>"
        f"<th>params</th></tr>{per_nb}</table>" + (f"\n\n{methods}" if methods else "")))
    for o in outcomes:
        book.cells.append(nbformat.v4.new_markdown_cell(
            f"<a id='{_anchor(o['name'])}'></a>\n\n<small>executed notebook: "
            f"<a href='{_link(o['path'], links_from)}'>{_esc(Path(o['path']).name)}</a>"
            + (f" · params: <a href='{_link(o['params'], links_from)}'>{_esc(Path(o['params']).name)}</a>"
               if o.get("params") else "") + "</small>"
            + (f"\n\n{scope}" if scope and o["name"] in THESIS_SECTIONS else "")))
        if not o["ok"]:
            book.cells.append(nbformat.v4.new_markdown_cell(
                f"# {_titles().get(o['name'], o['name'])}\n\n"
                f"<div style='border:2px solid #c00;padding:8px'><b>This notebook failed</b>: {_esc(o['failure'])}. "
                f"The executed notebook, with the error, is kept at <code>{_esc(str(o['path']))}</code>.</div>"))
        if not Path(o["path"]).is_file():
            continue
        nb = nbformat.read(o["path"], as_version=4)
        said: set[str] = set()  # explanatory notes already shown in this section
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                continue
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                # progress and warnings go to stderr: logs, not results
                cell.outputs = [x for x in cell.get("outputs", []) if not (x.get("output_type") == "stream"
                                                                           and x.get("name") == "stderr")]
                for x in cell.outputs:
                    _drop_repeated_notes(x, said)
                if not cell.outputs:
                    continue
                numbered = _number_figures(cell.outputs, numbered, _titles().get(o["name"], o["name"]))
            book.cells.append(cell)
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(book)
    # offline: drop scripts and stylesheets fetched from the network (require.js, MathJax)
    body = re.sub(r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>", "", body)
    body = re.sub(r"<link[^>]*\shref=[\"']https?://[^>]*>", "", body)
    body = unique_heading_ids(body)
    body = body.replace("</body>", f"<script>{SORT_SCRIPT}</script>\n</body>", 1)
    return body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)


# Tables longer than SORTABLE_ROWS sort by a column when its header is clicked (again: the other
# way): by the number a cell starts with ("12.3 ± 0.4", "−1.2", "85 %"), else by its text; cells
# without a value ("—", empty) stay last. Offline, a few lines, no library.
SORTABLE_ROWS = 10
SORT_SCRIPT = """
(() => {
  const value = td => {
    const text = td.textContent.trim().replace(/\u2212/g, '-');
    const m = text.match(/^[-+]?\\d+(\\.\\d+)?/);
    return m ? {num: parseFloat(m[0])} : {text: text && text !== '\u2014' ? text.toLowerCase() : null};
  };
  const cmp = (a, b) => {
    const x = a.num ?? a.text, y = b.num ?? b.text;
    if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
    if (y === null || y === undefined) return -1;
    if (typeof x === typeof y) return x < y ? -1 : x > y ? 1 : 0;
    return typeof x === 'number' ? -1 : 1;
  };
  document.querySelectorAll('table').forEach(table => {
    const body = table.tBodies[0], head = table.tHead;
    if (!body || !head || body.rows.length <= %d) return;
    const cells = Array.from(head.rows[head.rows.length - 1].cells);
    cells.forEach((th, col) => {
      th.classList.add('sortable');
      th.title = 'sort by this column (click again: the other way)';
      th.addEventListener('click', () => {
        const down = th.dataset.sorted === 'up';
        cells.forEach(c => delete c.dataset.sorted);
        th.dataset.sorted = down ? 'down' : 'up';
        const rows = Array.from(body.rows).filter(r => r.cells.length === cells.length);
        rows.sort((a, b) => {
          const x = value(a.cells[col]), y = value(b.cells[col]);
          const c = cmp(x, y);
          const missing = (x.num ?? x.text) == null || (y.num ?? y.text) == null;
          return down && !missing ? -c : c;
        });
        rows.forEach(r => body.appendChild(r));
      });
    });
  });
})();
""" % SORTABLE_ROWS


# A number never breaks over two lines ("12.3 ± 0.4"), text wraps; a table wider than its column
# still scrolls rather than overflow the page. The report's tables are meant to fit 1,200 px.
STYLE = (".jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th {white-space: normal;} "
         ".jp-RenderedHTMLCommon .num {white-space: nowrap;} "
         ".jp-OutputArea-output {overflow-x: auto;} "
         ".jp-RenderedHTMLCommon p.note {margin-top: 0.2em;} "
         "figure.report-figure {margin: 0 0 1em 0;} "
         "figure.report-figure figcaption {max-width: 60em; font-size: 0.9em; color: #333;} "
         "th.sortable {cursor: pointer;} th.sortable[data-sorted=up]::after {content: ' ▲';} "
         "th.sortable[data-sorted=down]::after {content: ' ▼';} "
         ".scope-box {border-left: 4px solid #b80; background: #fff8e6; padding: 6px 10px; margin: 0.5em 0 1em 0; "
         "max-width: 60em;}")


_NOTE = re.compile(r'<p class="note">.*?</p>\s*', re.S)


def _drop_repeated_notes(output: dict, said: set[str]) -> None:
    """Remove from a cell output's HTML or Markdown the explanatory notes (`<p class="note">`) that
    `said` holds, and add the others to it: a note is read once per section, under its first table."""
    data = output.get("data") or {}
    for mime in ("text/html", "text/markdown"):
        text = data.get(mime)
        if text is None:
            continue
        text = "".join(text) if isinstance(text, list) else text

        def once(m: re.Match) -> str:
            key = " ".join(re.sub(r"<[^>]+>", "", m.group(0)).split())
            if key in said:
                return ""
            said.add(key)
            return m.group(0)

        data[mime] = _NOTE.sub(once, text)


def _number_figures(outputs: list, before: int, section: str) -> int:
    """Turn each PNG output into a numbered figure: the image, its caption beneath, the caption as alt.

    The caption is the one `thesislib.figures` attached to the figure (display metadata
    figures.CAPTION_KEY); a figure without one still gets its number, and an alt text naming it.

    Args:
        outputs: a code cell's outputs, changed in place.
        before: figures numbered before this cell.
        section: the section's title, for the alt text of a figure without a caption.

    Returns:
        The number of figures up to and including this cell's.
    """
    from thesislib.figures import CAPTION_KEY

    n = before
    for out in outputs:
        png = out.get("data", {}).get("image/png") if out.get("output_type") in ("display_data", "execute_result") \
            else None
        if not png:
            continue
        n += 1
        caption = (out.get("metadata", {}).get(CAPTION_KEY) or {}).get("caption") or ""
        alt = f"Figure {n}. {caption}" if caption else f"Figure {n} of section {section}"
        out["data"] = {"text/html": (
            f"<figure class='report-figure' id='figure-{n}'><img src='data:image/png;base64,{''.join(png.split())}' "
            f"alt='{_esc(alt)}'><figcaption><b>Figure {n}.</b> {_esc(caption)}</figcaption></figure>")}
        out["metadata"] = {}
    return n


_HEADING = re.compile(r"<h([1-6])([^>]*?)\sid=\"([^\"]+)\"([^>]*)>")


_ID = re.compile(r"\sid=(?:\"([^\"]*)\"|'([^']*)')")


_SECTION = re.compile(r"\sid=[\"']sec-([^\"']+)[\"']")


def unique_heading_ids(body: str) -> str:
    """`body` with every heading id that occurs more than once renamed "<section>-<id>".

    The section is the one the heading stands in (the latest `sec-<notebook>` anchor before it,
    "report" before any); a number is appended where that still repeats. Each heading's permalink
    follows its id, and an in-page link to a renamed id goes to the heading of its own section
    (the first of them where its section has none).
    """
    import collections

    counts = collections.Counter(a or b for a, b in _ID.findall(body))
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(body)]

    def section_at(pos: int) -> str:
        return next((name for start, name in reversed(sections) if start < pos), "report")

    taken, renamed = set(counts), collections.defaultdict(dict)  # old id -> {section: new id}
    out, last = [], 0
    for m in _HEADING.finditer(body):
        old = m.group(3)
        if counts[old] < 2:
            continue
        section = section_at(m.start())
        new, k = f"{section}-{old}", 2
        while new in taken:
            new, k = f"{section}-{old}-{k}", k + 1
        taken.add(new)
        renamed[old].setdefault(section, new)
        out.append(body[last:m.start()] + f'<h{m.group(1)}{m.group(2)} id="{new}"{m.group(4)}>')
        last = m.end()
    body = "".join(out) + body[last:]

    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(body)]  # where they are now

    def relink(m: re.Match) -> str:
        quote, old = ('"', m.group(1)) if m.group(1) is not None else ("'", m.group(2))
        if old not in renamed:
            return m.group(0)
        targets = renamed[old]
        return f"href={quote}#{targets.get(section_at(m.start()), next(iter(targets.values())))}{quote}"

    return re.sub(r"href=(?:\"#([^\"]+)\"|'#([^']+)')", relink, body) if renamed else body


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))


def _titles() -> dict[str, str]:
    """Each notebook's section title, by name."""
    from thesislib.design import TITLES

    return TITLES
