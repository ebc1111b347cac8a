"""The sweep's HTML page in headless Chromium: it loads with no console error, fetches nothing,
and its three plots are painted (not blank). The DevTools client and the Chromium fixture are the
plan report's (tests/test_report_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_browser import Browser, chromium, colour_stats  # noqa: F401 - fixture

from tilec.sweep import Grid, Request, ResultCache, sweep
from tilec.sweep.page import write_page
from tilec.sweep.plots import render_plots
from tilec.sweep.work import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sweep_page_in_chromium(chromium: str, tmp_path: Path) -> None:  # noqa: F811
    req = Request(model="repvgg-a0", target="gc200",
                  grid=Grid(((32, 32), (64, 64)), (1, 2), ("fp16", "fp32")),
                  settings=Settings(cap=2))
    result, _ = sweep(req, ResultCache(tmp_path / "cache"))
    page = write_page(result, tmp_path / "sweep.html", render_plots(result))
    browser = Browser(chromium)
    try:
        browser.open(page.resolve().as_uri())
        facts = browser.eval("""(() => ({
            figures: document.querySelectorAll('figure svg').length,
            rows: document.querySelectorAll('table')[1].querySelectorAll('tbody tr').length,
            title: document.title}))()""")
        assert facts["figures"] == 3
        assert facts["rows"] == len(result.points)
        assert "repvgg-a0" in facts["title"]
        for fid in ("frontier", "latency_vs_size", "batch"):
            x, y, w, h = browser.eval(f"""(() => {{ const e = document.getElementById('{fid}');
                e.scrollIntoView({{block: 'start'}}); const b = e.getBoundingClientRect();
                return [b.x + scrollX, b.y + scrollY, b.width, b.height]; }})()""")
            assert w > 200 and h > 100, (fid, w, h)
            colours, ink = colour_stats(browser.screenshot(
                {"x": x, "y": y, "width": w, "height": h}, scale=0.5))
            assert colours >= 4 and 0.01 < ink < 0.6, (fid, colours, ink)
        browser.drain()
        assert browser.problems() == [], browser.problems()
        url = page.resolve().as_uri()
        foreign = [u for u in browser.requests() if u != url and not u.startswith("data:")]
        assert foreign == [], f"the page must not fetch anything: {foreign}"
    finally:
        browser.close()
