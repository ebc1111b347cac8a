"""The HTML report in a real browser: headless Chromium loads it with no console error, makes no
network request, draws a heatmap that is not blank, and its script reacts to the mouse.

The browser is driven over the DevTools protocol on ``--remote-debugging-pipe`` (a tiny client
below, no extra dependency): that gives console messages, exceptions, every network request and
screenshots directly, without parsing log output. Chromium comes from Debian's ``chromium``
package (``/usr/bin/chromium``); when it is missing and we are root with apt-get, the test installs
it, and it is skipped, with the reason, only where it cannot be had.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import does_not_fit_plan, gc200_plan, northpole_plan

from tilec.plan.model import Plan
from tilec.report.html import heat_colour, write_html

pytestmark = [pytest.mark.browser]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio",
         "--hide-scrollbars", "--window-size=1400,1000", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    """$TILEC_CHROMIUM, else a Chromium on PATH, else install Debian's package (root only)."""
    env = os.environ.get("TILEC_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env_vars = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-q", "chromium"],
                    ["sh", "-c", "apt-get update -q && apt-get install -y -q chromium"]):
            try:
                subprocess.run(cmd, env=env_vars, capture_output=True, timeout=900, check=False)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if shutil.which("chromium"):
                return shutil.which("chromium")
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium: not on PATH, $TILEC_CHROMIUM unset, and Debian's 'chromium' "
                    "package cannot be installed here (needs root and apt-get)")
    return path


# ----------------------------------------------------------------------------------- CDP client
class Browser:
    """Headless Chromium with one page, driven over the DevTools pipe (fd 3 in, fd 4 out)."""

    def __init__(self, executable: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="tilec-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the protocol wants exactly fds 3 and 4
            # park both above 9 first, so that neither overwrites the other on the way
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
            # close_fds=False: the fds dup2'd to 3 and 4 in wire() must survive into exec
            preexec_fn=wire, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _write(self, msg: dict[str, Any]) -> None:
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe:\n" + self.log())
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if not browser and self.session:
            msg["sessionId"] = self.session
        self._write(msg)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline - time.monotonic())
            if reply is None:
                raise TimeoutError(f"no reply to {method}")
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline - time.monotonic())
            if msg is None:
                raise TimeoutError(f"no {method} event")
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)
        self.session = self.call("Target.attachToTarget", {"targetId": target["targetId"],
                                                           "flatten": True},
                                 browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def drain(self, seconds: float = 0.3) -> None:
        """Collect events that arrive within ``seconds`` (late console messages)."""
        deadline = time.monotonic() + seconds
        while (msg := self._read(max(deadline - time.monotonic(), 0))) is not None:
            if "method" in msg:
                self.events.append(msg)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, browser log errors."""
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')} "
                           f"{p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error", "assert", "warning"):
                out.append(f"console.{p['type']}: "
                           + " ".join(str(a.get("value", a.get("description")))
                                      for a in p.get("args", [])))
            elif ev["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
        return out

    def requests(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events
                if ev["method"] == "Network.requestWillBeSent"]

    def screenshot(self, clip: dict[str, float] | None = None, scale: float = 1.0) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": scale}
        return base64.b64decode(self.call("Page.captureScreenshot", params)["data"])

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", browser=True, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# ----------------------------------------------------------------------------------- PNG pixels
def png_pixels(png: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows) of an 8-bit RGB/RGBA PNG, unfiltered (RFC 2083)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unsupported PNG (depth {depth}, {colour})"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for r in range(height):
        ftype = raw[r * (stride + 1)]
        line = bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def colour_stats(png: bytes) -> tuple[int, float]:
    """(distinct colours, fraction of pixels that are not near-white)."""
    width, height, ch, rows = png_pixels(png)
    colours = set()
    ink = 0
    for row in rows:
        for i in range(0, width * ch, ch):
            px = row[i:i + 3]
            colours.add(px)
            if min(px) < 235:
                ink += 1
    return len(colours), ink / max(width * height, 1)


def test_png_decoder_roundtrip() -> None:
    """The decoder the blank check relies on, on a PNG with every filter type."""
    width, height = 7, 5
    pixels = [bytes((x * 30 + y * 7) % 256 for x in range(width * 3)) for y in range(height)]
    raw = b""
    prev = bytes(width * 3)
    for y, line in enumerate(pixels):
        ftype = y % 5
        out = bytearray()
        for i, v in enumerate(line):
            a = line[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            p = a + b - c
            pred = [0, a, b, (a + b) // 2,
                    a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c)
                    else b if abs(p - b) <= abs(p - c) else c][ftype]
            out.append((v - pred) & 255)
        raw += bytes([ftype]) + bytes(out)
        prev = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                            0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    w, h, ch, rows = png_pixels(png)
    assert (w, h, ch) == (width, height, 3)
    assert rows == pixels


# ----------------------------------------------------------------------------------- the test
def _check_page(chromium: str, plan: Plan, tmp_path: Path, name: str) -> dict[str, Any]:
    page = tmp_path / f"{name}.html"
    write_html(plan, page)
    browser = Browser(chromium)
    try:
        browser.open(page.resolve().as_uri())
        assert browser.eval("document.documentElement.getAttribute('data-ready')") == "1", \
            "report.js did not run to the end"
        facts = browser.eval("""(() => {
            const r = document.querySelectorAll('#tiles rect');
            return {rects: r.length, fills: new Set([...r].map(x => x.getAttribute('fill'))).size,
                    verdict: document.getElementById('verdict').textContent,
                    charts: document.querySelectorAll('svg.chart path').length,
                    rows: document.querySelectorAll('#ops tbody tr').length,
                    scrollHeight: document.documentElement.scrollHeight};
        })()""")
        assert facts["rects"] == plan.target.tiles
        mem = plan.memory
        assert mem is not None
        budget = plan.target.budget_per_tile
        assert facts["fills"] == len({heat_colour(p / budget) for p in mem.per_tile_peak})
        assert facts["charts"] >= 4, "stacked areas in the memory charts"
        assert facts["rows"] == len(plan.ops)

        # the heatmap, as painted: colourful, not blank (scrolled into view first: a diagnosis
        # above it can push it below the first screen)
        x, y, w, h = browser.eval("""(() => { const e = document.getElementById('heatmap');
            e.scrollIntoView({block: 'start'}); const b = e.getBoundingClientRect();
            return [b.x + scrollX, b.y + scrollY, b.width, b.height]; })()""")  # page coords
        heat_png = browser.screenshot({"x": x, "y": y, "width": w, "height": h}, scale=0.5)
        colours, ink = colour_stats(heat_png)
        assert colours >= 4 and ink > 0.3, (colours, ink)
        # the whole first screen: not blank either
        browser.eval("window.scrollTo(0, 0)")
        full = browser.screenshot({"x": 0, "y": 0, "width": 1400, "height": 1000}, scale=0.25)
        colours, ink = colour_stats(full)
        assert colours >= 20 and ink > 0.05, (colours, ink)
        (tmp_path / f"{name}.png").write_bytes(browser.screenshot())

        # interaction: hover the peak tile, look at one superstep, click an op row
        peak = browser.eval(f"""(() => {{
            const t = document.querySelectorAll('#tiles rect')[{mem.peak_tile}];
            t.scrollIntoView({{block: 'center'}});
            const r = t.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        }})()""")
        browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": peak[0],
                                                  "y": peak[1]})
        info = browser.eval("document.getElementById('tile-info').textContent")
        # the hover text (not the default text, which names the peak tile too)
        r, c = divmod(mem.peak_tile, browser.eval("JSON.parse(document.getElementById("
                                                  "'tilec-data').textContent).cols"))
        assert f"tile {mem.peak_tile} (row {r}, col {c})" in info and "runs" in info, info
        assert browser.eval("document.getElementById('tip').hidden") is False
        before = browser.eval("[...document.querySelectorAll('#tiles rect')].map("
                              "r => r.getAttribute('fill')).join()")
        # the emptiest step of the run: its colours differ from the per-tile peaks even when
        # every op spans the whole chip and the peaks colour every tile alike
        quiet = min(range(len(mem.chip_timeline)),
                    key=lambda i: (sum(mem.chip_timeline[i].values()), i))
        browser.eval("""(() => { const s = document.getElementById('heat-mode');
            s.value = 'step'; s.dispatchEvent(new Event('change'));
            const r = document.getElementById('heat-step'); r.value = 'QUIET';
            r.dispatchEvent(new Event('input')); })()""".replace("QUIET", str(quiet)))
        after = browser.eval("[...document.querySelectorAll('#tiles rect')].map("
                             "r => r.getAttribute('fill')).join()")
        assert after != before, f"showing step {quiet} should recolour the heatmap"
        browser.eval("document.querySelector('#ops tbody tr').click()")
        assert browser.eval("document.querySelectorAll('#outline rect').length") >= 1
        browser.eval("document.querySelectorAll('#ops th')[7].click()")  # sort by bytes/tile

        browser.drain()
        assert browser.problems() == [], browser.problems()
        page_url = page.resolve().as_uri()
        foreign = [u for u in browser.requests() if u != page_url and not u.startswith("data:")]
        assert foreign == [], f"the page must not fetch anything: {foreign}"
        return facts
    finally:
        browser.close()


def test_gc200_page_in_chromium(chromium: str, tmp_path: Path) -> None:
    plan = Plan.from_dict(json.loads(gc200_plan().to_json()))
    facts = _check_page(chromium, plan, tmp_path, "gc200")
    assert facts["verdict"] == "FITS"


def test_northpole_and_diagnosis_pages_in_chromium(chromium: str, tmp_path: Path) -> None:
    _check_page(chromium, northpole_plan(), tmp_path, "northpole")
    facts = _check_page(chromium, does_not_fit_plan(), tmp_path, "oom")
    assert facts["verdict"].startswith("DOES NOT FIT")
