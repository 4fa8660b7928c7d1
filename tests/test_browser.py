"""The smoke report in a real browser: headless Chromium, driven over its DevTools protocol.

Every image decodes and has an alt text of its own (its figure's number and caption), every id is
unique, every link of the table of contents reaches its section and every heading's permalink its
heading, the console shows no error, and the page asks for nothing but itself: no network. The protocol runs over
--remote-debugging-pipe (file descriptors 3 and 4), so no client package is needed. Without
Chromium or a smoke report the test is skipped; under CI=true it fails instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WAIT_S = 600  # for any one answer or event of the browser: against a hang only, a busy machine may be slow


def _missing(reason: str) -> None:
    """Skip, but fail in CI, where the browser and the smoke report are part of the job."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true needs it (.ci/run installs Chromium, make test builds the smoke report)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    given = os.environ.get("THESISLIB_CHROMIUM")
    found = given or next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if not found:
        _missing(f"no Chromium: none of {', '.join(BROWSERS)} on PATH and THESISLIB_CHROMIUM unset "
                 "(Debian: apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def smoke_report() -> Path:
    given = os.environ.get("THESISLIB_SMOKE_REPORT")
    if not given or not Path(given).is_file():
        _missing(f"no smoke report: THESISLIB_SMOKE_REPORT is {given!r} (make test builds build/smoke/index.html "
                 "and sets it)")
    return Path(given).resolve()


def _high(fd: int) -> int:
    """The same pipe end at a descriptor >= 10, so that moving it to 3 or 4 cannot clobber the other."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class DevTools:
    """A minimal Chrome DevTools Protocol client: JSON messages ended by NUL over two pipes."""

    def __init__(self, exe: str, profile: Path):
        cmd_r, self._cmd_w = map(_high, os.pipe())
        self._evt_r, evt_w = map(_high, os.pipe())
        self._log = open(profile.parent / "chromium.log", "w+b")
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-extensions", "--disable-sync", "--mute-audio",
                "--host-resolver-rules=MAP * ~NOTFOUND",  # a request that slips through resolves nowhere
                f"--user-data-dir={profile}", "--window-size=1280,900", "--remote-debugging-pipe", "about:blank"]
        # Chromium reads commands from fd 3 and writes answers and events to fd 4 (bash: dash takes fds < 10 only)
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{evt_w}', *args],
                                     pass_fds=(cmd_r, evt_w), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        os.close(cmd_r)
        os.close(evt_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def __enter__(self) -> "DevTools":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # already gone, or hanging: killed below
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._evt_r)
        self._log.close()

    def log_tail(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._evt_r], [], [], left)[0]:
                raise TimeoutError(f"Chromium: no message within {WAIT_S} s; its log:\n{self.log_tail()}")
            chunk = os.read(self._evt_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe (exit {self.proc.poll()}); its log:\n{self.log_tail()}")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = WAIT_S) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept in `events`."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str, timeout: float = WAIT_S) -> dict:
        """The first event `method` (already received or still to come)."""
        for m in self.events:
            if m.get("method") == method:
                return m
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def evaluate(self, session: str, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                      session=session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")


IMAGES_JS = """
Promise.all(Array.from(document.images).map(img => img.decode().then(
  () => ({src: img.src.slice(0, 60), width: img.naturalWidth, alt: img.alt, error: null}),
  err => ({src: img.src.slice(0, 60), width: img.naturalWidth, alt: img.alt, error: String(err)}))))
"""

# Ids that more than one element carries, and headings' permalinks that lead elsewhere.
IDS_JS = """
(() => {
  const seen = {};
  for (const el of document.querySelectorAll('[id]')) seen[el.id] = (seen[el.id] || 0) + 1;
  const repeated = Object.keys(seen).filter(id => seen[id] > 1);
  const astray = Array.from(document.querySelectorAll('h1 a.anchor-link, h2 a.anchor-link, h3 a.anchor-link, '
      + 'h4 a.anchor-link')).filter(a => {
        const id = a.getAttribute('href').slice(1);  // as the browser: the id as written, else decoded
        return (document.getElementById(id) || document.getElementById(decodeURIComponent(id))) !== a.parentElement;
      }).map(a => a.getAttribute('href'));
  return {repeated, astray, permalinks: document.querySelectorAll('a.anchor-link').length};
})()
"""

# Each contents link is clicked; afterwards its anchor must sit at the top of the window (or the
# page be scrolled to its end) and the next h1 must be the section the link names.
CONTENTS_JS = """
(async () => {
  const frame = () => new Promise(resolve => requestAnimationFrame(() => resolve()));
  const out = [];
  for (const a of Array.from(document.querySelectorAll('table.report-contents a[href^="#sec-"]'))) {
    const href = a.getAttribute('href');
    const target = document.getElementById(decodeURIComponent(href.slice(1)));
    const row = {href, text: a.textContent.trim(), found: !!target};
    if (target) {
      window.scrollTo(0, 0);
      await frame();
      a.click();
      await frame();
      const h1 = Array.from(document.querySelectorAll('h1')).find(
        h => target.compareDocumentPosition(h) & Node.DOCUMENT_POSITION_FOLLOWING);
      Object.assign(row, {hash: location.hash, top: target.getBoundingClientRect().top, scrolled: window.scrollY,
        at_end: window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2,
        heading: h1 ? h1.textContent.trim() : null});
    }
    out.push(row);
  }
  return out;
})()
"""

# Every other in-page link (headings' permalinks, links in the text) points at an element.
DANGLING_JS = """
Array.from(document.querySelectorAll('a[href^="#"]')).map(a => a.getAttribute('href')).filter(h => h.length > 1
  && !document.getElementById(h.slice(1)) && !document.getElementById(decodeURIComponent(h.slice(1)))
  && !document.getElementsByName(decodeURIComponent(h.slice(1))).length)
"""


def _sections() -> list[str]:
    return sorted(p.stem for p in (ROOT / "params" / "smoke").glob("*.yaml") if p.stem != "shared")


def test_the_report_renders_offline_in_chromium(chromium, smoke_report, tmp_path):
    url = smoke_report.as_uri()
    with DevTools(chromium, tmp_path / "profile") as dt:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            dt.send(f"{domain}.enable", session=s)
        dt.send("Page.navigate", {"url": url}, session=s)
        dt.wait_for("Page.loadEventFired")
        images = dt.evaluate(s, IMAGES_JS)
        contents = dt.evaluate(s, CONTENTS_JS)
        dangling = dt.evaluate(s, DANGLING_JS)
        ids = dt.evaluate(s, IDS_JS)
        dt.evaluate(s, "new Promise(resolve => setTimeout(resolve, 300))")  # late requests and messages
        events = list(dt.events)

    assert images, "the report shows no image"
    broken = [i for i in images if i["error"] or not i["width"] > 0]
    assert not broken, f"{len(broken)} of {len(images)} images do not decode: {broken[:3]}"
    default = "No description has been provided for this image"  # nbconvert's alt for a plain output image
    no_alt = [i for i in images if not i["alt"].strip() or i["alt"] == default]
    assert not no_alt, f"{len(no_alt)} of {len(images)} images without an alt text of their own: {no_alt[:3]}"
    numbers = [re.match(r"Figure (\d+)\b", i["alt"]) for i in images]
    assert [int(m.group(1)) if m else None for m in numbers] == list(range(1, len(images) + 1)), \
        [i["alt"][:40] for i in images]
    assert not ids["repeated"], f"ids on more than one element: {ids['repeated'][:5]}"
    assert ids["permalinks"] and not ids["astray"], f"headings' permalinks that lead elsewhere: {ids['astray'][:5]}"

    assert [c["href"] for c in contents] == [f"#sec-{name}" for name in _sections()], contents
    for c in contents:
        assert c["found"], f"contents link {c['href']} ({c['text']}): no element with that id"
        assert c["hash"] == c["href"], c
        assert abs(c["top"]) < 2 or c["at_end"], f"contents link {c['href']}: its section is not scrolled to ({c})"
        number = c["text"].split()[0]  # "01" of "01 · Depth (RQ1)"
        assert c["heading"] and c["heading"].startswith(number), \
            f"contents link {c['href']} ({c['text']}) leads to the heading {c['heading']!r}"
    assert len({c["scrolled"] for c in contents}) == len(contents), "two contents links scroll to the same place"
    assert not dangling, f"in-page links without a target: {dangling[:5]}"

    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert url in requests, "the page load was not seen: the request check would see nothing"
    outside = sorted({u[:100] for u in requests if u != url and not u.startswith("data:")})
    assert not outside, f"the report requests {len(outside)} resources beyond itself: {outside[:5]}"

    errors = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e.get("method") == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details["text"])
        elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"{p['entry']['text']} {p['entry'].get('url', '')}".strip())
    assert not errors, f"console errors: {errors[:5]}"


# Every table at a 1,280 px wide window: the element that holds it must not scroll sideways, nor
# the page. `scrollWidth` counts what overflows even where nothing scrolls.
WIDE_TABLES_JS = """
(() => {
  const out = [];
  document.querySelectorAll('table').forEach((t, i) => {
    const box = t.parentElement;
    if (box.clientWidth === 0) return;  // not laid out (hidden)
    if (box.scrollWidth > box.clientWidth + 1) {
      const heading = Array.from(document.querySelectorAll('h1, h2, h3')).filter(
        h => h.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
      out.push({table: i, scroll: box.scrollWidth, client: box.clientWidth,
                under: heading ? heading.textContent.trim().slice(0, 80) : null,
                first_row: (t.querySelector('tr') || {textContent: ''}).textContent.trim().replace(/\\s+/g, ' ').slice(0, 80)});
    }
  });
  return {wide: out, tables: document.querySelectorAll('table').length, viewport: window.innerWidth,
          page: document.documentElement.scrollWidth};
})()
"""


def test_no_table_scrolls_sideways_at_1280_px(chromium, smoke_report, tmp_path):
    with DevTools(chromium, tmp_path / "profile") as dt:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        dt.send("Page.enable", session=s)
        dt.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                       "mobile": False}, session=s)
        dt.send("Page.navigate", {"url": smoke_report.as_uri()}, session=s)
        dt.wait_for("Page.loadEventFired")
        found = dt.evaluate(s, WIDE_TABLES_JS)
    assert found["viewport"] == 1280 and found["tables"] > 20, found
    assert not found["wide"], f"{len(found['wide'])} tables wider than their place at 1280 px: {found['wide'][:6]}"
    assert found["page"] <= found["viewport"], f"the page scrolls sideways: {found['page']} px at {found['viewport']} px"


# A long table sorts by a numeric column when its header is clicked, then the other way.
SORT_JS = """
(() => {
  const long = Array.from(document.querySelectorAll('table')).filter(
    t => t.tHead && t.tBodies[0] && t.tBodies[0].rows.length > 10);
  const num = td => parseFloat(td.textContent.trim().replace(/\\u2212/g, '-'));
  for (const t of long) {
    const heads = Array.from(t.tHead.rows[t.tHead.rows.length - 1].cells);
    const rows = () => Array.from(t.tBodies[0].rows).filter(r => r.cells.length === heads.length);
    const col = heads.findIndex((th, i) => i > 0 && rows().every(r => /^[-+\\u2212]?\\d/.test(r.cells[i].textContent.trim())));
    if (col < 0) continue;
    const before = rows().map(r => num(r.cells[col]));
    heads[col].click();
    const up = rows().map(r => num(r.cells[col]));
    heads[col].click();
    const down = rows().map(r => num(r.cells[col]));
    return {long: long.length, sortable: document.querySelectorAll('th.sortable').length, before, up, down,
            marked: heads[col].dataset.sorted};
  }
  return {long: long.length, sortable: document.querySelectorAll('th.sortable').length, before: null};
})()
"""


def test_a_long_table_sorts_by_the_column_whose_header_is_clicked(chromium, smoke_report, tmp_path):
    with DevTools(chromium, tmp_path / "profile") as dt:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        dt.send("Page.enable", session=s)
        dt.send("Page.navigate", {"url": smoke_report.as_uri()}, session=s)
        dt.wait_for("Page.loadEventFired")
        found = dt.evaluate(s, SORT_JS)
    assert found["long"] and found["sortable"], found
    assert found["before"] is not None, "no long table with a numeric column to sort"
    assert found["up"] == sorted(found["before"]) and found["down"] == sorted(found["before"], reverse=True), found
    assert found["marked"] == "down"
