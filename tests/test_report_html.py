"""The HTML report without a browser: self-contained, well-formed, complete, small, deterministic.
(test_report_browser.py loads it in Chromium.)"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fixtures import (
    all_plans,
    build_plan,
    does_not_fit_plan,
    gc200_plan,
    gc200_target,
    northpole_plan,
    op_too_large_plan,
)

from tilec.plan.model import Plan
from tilec.report.data import fmt_bytes, top_tile_groups
from tilec.report.html import heat_colour, render_html, write_html

VOID = {"meta", "link", "br", "input", "img", "hr", "wbr", "source", "col", "area", "base"}


class Collector(HTMLParser):
    """Checks nesting and gathers what the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.rect_fills: dict[str, list[str]] = {}
        self._in_script = False
        self._svg: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"] or "")
        for key in ("src", "href", "xlink:href"):
            if a.get(key):
                self.urls.append(a[key] or "")
        if tag == "svg":
            self._svg.append(a.get("id") or "")
        if tag == "rect" and self._svg and a.get("fill"):
            self.rect_fills.setdefault(self._svg[-1], []).append(a["fill"] or "")
        self._in_script = tag == "script"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()
        self._in_script = False

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag == "svg":
            self._svg.pop()
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    return c


@pytest.mark.parametrize("name", sorted(all_plans()))
def test_page_is_well_formed_and_self_contained(name: str) -> None:
    plan = all_plans()[name]
    page = render_html(plan)
    doc = parse(page)
    assert doc.errors == [] and doc.stack == [], (doc.errors, doc.stack)
    assert len(doc.ids) == len(set(doc.ids)), "duplicate ids"
    # nothing to fetch: no src/href attributes at all, no url() but fragment references
    assert doc.urls == []
    assert re.findall(r"url\((?!#)", page) == []
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # the embedded data is valid JSON and the script is inlined
    data_script = re.search(r'<script type="application/json" id="tilec-data">(.*?)</script>',
                            page, re.S)
    assert data_script is not None
    data = json.loads(data_script.group(1))
    assert data["tiles"] == plan.target.tiles
    assert any("function heat(" in s for s in doc.scripts)


def test_fitting_page_content() -> None:
    plan = gc200_plan()
    mem = plan.memory
    assert mem is not None
    page = render_html(plan)
    doc = parse(page)
    assert '<div class="verdict green" id="verdict">FITS</div>' in page
    # one rect per tile, coloured by its peak relative to the budget
    fills = doc.rect_fills["heatmap"][:plan.target.tiles]
    budget = plan.target.budget_per_tile
    assert fills == [heat_colour(p / budget) for p in mem.per_tile_peak]
    # stacked memory charts for the worst tile and the chip, a memory map, an op table
    for section in ("heatmap-section", "memory-section", "chart-tile", "chart-chip",
                    "memory-map", "ops"):
        assert section in doc.ids, section
    assert page.count("<tr data-op=") == len(plan.ops)
    for op in plan.ops:
        assert f"<td>{op.name}</td>" in page
    start, stop, peak = top_tile_groups(plan, 1)[0]
    assert f"{start}-{stop - 1}" in page and fmt_bytes(peak) in page
    assert f"budget {fmt_bytes(budget)}" in page
    assert "diagnosis" not in doc.ids


def test_heat_colour_scale() -> None:
    assert heat_colour(0) == heat_colour(None) == "#e4e4e4"
    assert heat_colour(1e-9) == "#440154" and heat_colour(1.0) == "#fde725"
    assert heat_colour(1.0001) == "#fb6a4a"  # just over: light red
    assert heat_colour(2.0) == heat_colour(5.0) == "#67000d"  # far over: dark red
    # monotone in brightness below the budget
    def lum(c: str) -> float:
        r, g, b = (int(c[i:i + 2], 16) for i in (1, 3, 5))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    values = [lum(heat_colour(f / 20)) for f in range(1, 21)]
    assert values == sorted(values)


def test_diagnosis_page() -> None:
    plan = does_not_fit_plan()
    d = plan.diagnosis
    assert d is not None
    page = render_html(plan)
    doc = parse(page)
    assert "diagnosis" in doc.ids
    assert "DOES NOT FIT (a: chip capacity)" in page
    assert d.evidence.summary in page
    assert "re-checked independently" in page
    assert "largest batch that fits" in page and "<b>224×224</b>" in page
    assert f"{d.over_by:,} B" in page
    # the evidence's fields, one row each, integers grouped
    assert f"<summary>{len(d.evidence.details)} fields</summary>" in page
    for k, v in d.evidence.details.items():
        if isinstance(v, int) and not isinstance(v, bool):
            assert f"<tr><td>{k}</td><td class=\"note\">{v:,}</td></tr>" in page
    for t in d.live_tensors:
        assert f"<td>{t['name']}</td>" in page
    # over-budget tiles are drawn in reds
    budget = plan.target.budget_per_tile
    over = [t for t, p in enumerate(plan.memory.per_tile_peak) if p > budget]  # type: ignore
    fills = doc.rect_fills["heatmap"]
    assert over and all(fills[t] == heat_colour(plan.memory.per_tile_peak[t] / budget)  # type: ignore
                        for t in over)
    assert all(int(fills[t][1:3], 16) > 0x60 and int(fills[t][3:5], 16) < 0x70 for t in over)


def test_page_without_a_placement() -> None:
    page = render_html(op_too_large_plan())
    doc = parse(page)
    assert doc.errors == []
    assert "No placement was made" in page
    assert "heatmap" not in doc.ids and "chart-tile" not in doc.ids and "ops" not in doc.ids
    assert "fc1" in page


def test_northpole_mesh_labels_rows() -> None:
    page = render_html(northpole_plan())
    assert "the target's grid" in page
    assert "rows " in page and " × cols " in page  # rectangles in the op table
    assert page.count('<rect x="') >= 256


def test_deterministic_and_round_trip(tmp_path: Path) -> None:
    plan = gc200_plan()
    again = Plan.from_dict(json.loads(plan.to_json()))
    write_html(plan, tmp_path / "a.html")
    write_html(again, tmp_path / "b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_escapes_names() -> None:
    plan = gc200_plan()
    plan.ops[0].name = "</script><script>alert(1)</script>"
    plan.notes.append("<b>bold?</b>")
    page = render_html(plan)
    assert "<script>alert(1)" not in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert parse(page).errors == []


@pytest.mark.slow
def test_large_plan_stays_small_and_fast() -> None:
    """1472 tiles × 300 supersteps: a few MB at most, rendered in well under a second or two."""
    import time

    from report_fixtures import _conv_specs

    specs = _conv_specs(300, 1472, seed=7, width=32, image=416, batch=2, bytes_per_weight=2)
    plan = build_plan(specs, gc200_target(), name="big", source="big.onnx", batch=2,
                      image_size=[416, 416], precision="fp16")
    t0 = time.perf_counter()
    page = render_html(plan)
    seconds = time.perf_counter() - t0
    assert len(plan.steps) >= 290
    assert len(page.encode()) < 3_000_000, len(page)
    assert seconds < 5, seconds
