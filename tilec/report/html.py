"""One self-contained HTML page of a Plan: tile heatmap, memory over supersteps, ops, diagnosis.

Self-contained means no network at all: the CSS (``report.css``), the script (``report.js``) and
the data are inlined, and every chart is inline SVG drawn here in Python, so the page shows
everything even with scripts off. The script only adds interaction: details of a tile on hover,
the heatmap at any superstep (a slider), step details on the charts, a sortable op table whose rows
highlight their tiles.

Sections: summary cards; the headroom answers (a plan that fits, compiled with ``--what-if``);
the diagnosis (when there is one); the heatmap of per-tile peak bytes laid
out as the chip (:func:`tilec.report.data.display_grid`) on a colour scale relative to the per-tile
budget, with the fullest tiles; bytes by category over the supersteps for the worst tile and for
the whole chip; the worst tile's memory map (buffers at their offsets over time); the per-op table;
the plan's notes.

Size: everything scales with tiles + ops + buffers, not tiles × steps (the per-step heatmap is
recomputed in the browser from the buffers), so a 1472-tile, 300-step plan stays well under a few
MB.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from tilec.plan.model import STATUS_FITS, Plan, tiles_in
from tilec.report.data import (
    BAND_TITLE,
    EVIDENCE_TITLES,
    HEADROOM_TITLE,
    WHAT_IF_TITLES,
    band_lines,
    band_setting_row,
    band_tag,
    category_order,
    display_grid,
    fmt_answer,
    fmt_bytes,
    fmt_count,
    fmt_num,
    fmt_pct,
    fmt_seconds,
    fmt_split,
    fmt_tiles,
    io_labels,
    model_line,
    op_at_step,
    op_tile_bytes,
    placed_memory,
    spot,
    tile_details,
    top_tile_groups,
    verdict,
)

# Colour scale of the heatmap: fraction of the per-tile budget, 0 -> 1 (viridis, sampled at 9
# points; perceptually uniform and readable with colour-vision deficiencies). Above the budget a
# tile is red; a tile that holds nothing is light grey. report.js uses the same stops.
SCALE = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30",
         "#fde725")
OVER = ("#fb6a4a", "#cb181d", "#67000d")  # over budget: 100 % -> 200 % and beyond (reds)
UNUSED = "#e4e4e4"
CATEGORY_COLOURS = {
    "weights": "#4e79a7", "act_in": "#f28e2b", "act_out": "#e15759", "temp": "#76b7b2",
    "code": "#59a14f", "state": "#edc948", "exchange": "#b07aa1", "io": "#9c755f",
}
EXTRA_COLOURS = ("#ff9da7", "#bab0ac", "#17becf", "#bcbd22")

CHART_W, CHART_H = 920, 250
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 78, 16, 14, 34


def write_html(plan: Plan, path: str | Path) -> None:
    """Write the report page of ``plan`` to ``path``."""
    if plan.chips is not None:  # several chips: each chip's page side by side
        from tilec.report.chips_html import render_chips_html

        Path(path).write_text(render_chips_html(plan), encoding="utf-8")
        return
    Path(path).write_text(render_html(plan), encoding="utf-8")


def render_html(plan: Plan) -> str:
    """The page as a string (deterministic for a given plan)."""
    e = html.escape
    label, style = verdict(plan)
    cats = _categories(plan)
    details = tile_details(plan)
    body = [
        f'<header><h1>tilec <span class="sub">{e(model_line(plan))}</span></h1>',
        f'<div class="verdict {style}" id="verdict">{e(label)}'
        + (f' <span class="band-tag">{e(band_tag(plan) or "")}</span>' if band_tag(plan) else "")
        + "</div>",
        f'<p class="source">source <code>{e(plan.model.source)}</code>'
        + (f' · passes <code>{e(", ".join(plan.model.passes))}</code>'
           if plan.model.passes else "") + "</p></header>",
        _cards(plan),
    ]
    if plan.band is not None:
        body.append(_band(plan))
    if plan.what_if:
        body.append(_headroom(plan))
    if plan.diagnosis is not None:
        body.append(_diagnosis(plan))
    body.append(_heatmap_section(plan, details))
    body.append(_memory_section(plan, cats))
    body.append(_memory_map(plan, cats))
    body.append(_ops_section(plan))
    if plan.notes:
        body.append('<section><h2>Notes</h2><ul>'
                    + "".join(f"<li>{e(n)}</li>" for n in plan.notes) + "</ul></section>")
    body.append(f'<footer>tilec {e(plan.tilec_version)} · {e(plan.schema)} v{plan.version} · '
                'all figures are estimates of tilec\'s cost model; this page needs no network'
                '</footer>')
    data = _page_data(plan, cats, details)
    css = _asset("report.css")
    js = _asset("report.js")
    title = f"tilec · {model_line(plan)} · {label}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # No network, ever: the policy forbids anything that is not inline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{e(title)}</title><style>{css}</style></head><body>\n"
        + "\n".join(body)
        + f'\n<div id="tip" class="tip" hidden></div>'
        f'\n<script type="application/json" id="tilec-data">{_json_for_script(data)}</script>'
        f"\n<script>{js}</script>\n</body></html>\n"
    )


# ----------------------------------------------------------------------------------- helpers
def _asset(name: str) -> str:
    return resources.files("tilec.report").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    """JSON that cannot end the <script> element early ("<" only occurs inside strings)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).replace(
        "<", "\\u003c")


def _categories(plan: Plan) -> list[str]:
    maps: list[dict[str, int]] = []
    if plan.memory is not None:
        maps += plan.memory.worst_tile_timeline + plan.memory.chip_timeline
        maps.append(plan.memory.by_category_at_peak)
    maps += [{b.category: 0} for b in plan.buffers]
    return category_order(*maps)


def _colour_of_category(cat: str, cats: list[str]) -> str:
    if cat in CATEGORY_COLOURS:
        return CATEGORY_COLOURS[cat]
    extra = [c for c in cats if c not in CATEGORY_COLOURS]
    return EXTRA_COLOURS[extra.index(cat) % len(EXTRA_COLOURS)]


def heat_colour(fraction: float | None) -> str:
    """Colour of a tile filled to ``fraction`` of its budget (None or 0: unused)."""
    if fraction is None or fraction <= 0:
        return UNUSED
    scale, pos = SCALE, fraction * (len(SCALE) - 1)
    if fraction > 1:
        scale, pos = OVER, min(fraction - 1, 1.0) * (len(OVER) - 1)
    i = min(int(pos), len(scale) - 2)
    t = pos - i
    a, b = scale[i], scale[i + 1]
    rgb = [round(int(a[k:k + 2], 16) * (1 - t) + int(b[k:k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _num(x: float) -> str:
    """Compact SVG coordinate."""
    r = round(x, 1)
    return str(int(r)) if r == int(r) else str(r)


def _nice_ticks(vmax: float, n: int = 5) -> tuple[list[float], float]:
    """Tick values from 0 covering ``vmax`` with a 1/2/2.5/5 × 10^k step (in the given unit)."""
    if vmax <= 0:
        return [0.0, 1.0], 1.0
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    top = math.ceil(vmax / step - 1e-9) * step
    ticks = [i * step for i in range(round(top / step) + 1)]
    return ticks, top


def _byte_unit(vmax: float) -> tuple[str, int]:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if vmax >= 2 * scale:
            return unit, scale
    return "B", 1


# ----------------------------------------------------------------------------------- sections
def _cards(plan: Plan) -> str:
    e = html.escape
    cards: list[tuple[str, str, str]] = []
    budget = plan.target.budget_per_tile
    mem = placed_memory(plan)
    if mem is not None:
        head = budget - mem.peak_bytes
        where = f"tile {mem.peak_tile}, step {mem.peak_step}"
        op = op_at_step(plan, mem.peak_step, mem.peak_tile)
        if op:
            where += f" ({op})"
        partial = "" if plan.status == STATUS_FITS else " (partial placement)"
        cards.append((f"peak tile{partial}", f"{fmt_bytes(mem.peak_bytes)}",
                      f"{fmt_pct(mem.peak_bytes, budget)} of {fmt_bytes(budget)} · {where}"))
        cards.append(("headroom" if head >= 0 else "over budget", fmt_bytes(abs(head)),
                      f"{fmt_pct(abs(head), budget)} of the per-tile budget"))
        used = sum(1 for p in mem.per_tile_peak if p > 0)
        cards.append(("tiles used", f"{used:,} / {plan.target.tiles:,}",
                      f"{plan.target.grid[0]}×{plan.target.grid[1]} {plan.target.placement} "
                      "placement"))
    else:
        cards.append(("budget per tile", fmt_bytes(budget),
                      f"{plan.target.bytes_per_tile:,} B less "
                      f"{plan.target.reserved_bytes_per_tile:,} B reserved"))
    lat = plan.latency
    if lat is not None and plan.status == STATUS_FITS:
        cards.append(("latency", fmt_seconds(lat.seconds),
                      f"per batch of {plan.model.batch} (estimate): {io_labels(plan)[0]} "
                      f"{fmt_seconds(lat.input_seconds)} + device "
                      f"{fmt_seconds(lat.device_seconds)} + {io_labels(plan)[1]} "
                      f"{fmt_seconds(lat.output_seconds)}"))
        unit = "images" if plan.model.image_size else "inferences"
        cards.append(("throughput", f"{lat.throughput_per_s:,.0f}/s", f"{unit} per second"))
    m = plan.model
    cards.append(("model", f"{m.ops} ops", f"{fmt_count(m.params)} params · "
                  f"{fmt_count(m.macs, 'MAC')} · weights {fmt_bytes(m.weight_bytes)}"))
    if m.host:  # what capture cut off to the host (tilec/capture/host.py)
        kinds = ", ".join(f"{op} ×{n}" for op, n in m.host["op_types"].items())
        cards.append(("on the host", f"{m.host['head_ops'] + m.host['tail_ops']} ops",
                      f"{kinds}; {len(m.host['to_device'])} tensor(s) in, "
                      f"{len(m.host['to_host'])} out at the cut, transfer in the latency"))
    if plan.steps:
        cards.append(("supersteps", str(len(plan.steps)), "BSP steps of the schedule"))
    if plan.solver is not None:
        s = plan.solver
        gap = f"gap {100 * s.gap:.1f} %" if s.gap is not None else "no gap reported"
        cards.append(("solver", s.status, gap))
    if plan.verification is not None:
        v = plan.verification
        if plan.status == STATUS_FITS:
            cards.append(("verifier", "passed" if v.ok else "FAILED",
                          f"{len(v.checks)} checks" + (f", {len(v.errors)} errors" if v.errors
                                                        else "")))
        else:  # what the verifier says of a placement that is known not to fit
            cards.append(("placement shown", "partial",
                          f"the verifier finds {len(v.errors)} errors in it" if v.errors else
                          "best partial placement"))
    return '<section class="cards">' + "".join(
        f'<div class="card"><div class="k">{e(k)}</div><div class="v">{e(v)}</div>'
        f'<div class="d">{e(d)}</div></div>' for k, v, d in cards) + "</section>"


def _diagnosis(plan: Plan) -> str:
    e = html.escape
    d = plan.diagnosis
    assert d is not None
    ev = d.evidence
    budget = plan.target.budget_per_tile
    cls = "bad" if plan.status != STATUS_FITS and ev.kind != "search_limit" else "warn"
    letter = ev.letter if ev.kind in EVIDENCE_TITLES else "?"
    title = "Why no placement was found" if ev.kind == "search_limit" else "Why it does not fit"
    out = [f'<section class="diagnosis {cls}" id="diagnosis"><h2>{title}</h2>',
           f'<p class="evidence"><b>evidence ({e(letter)})'
           f' {e(ev.kind.replace("_", " "))}</b> — {e(EVIDENCE_TITLES.get(ev.kind, ""))}'
           + (' · <span class="ok">re-checked independently</span>' if ev.rechecked else "")
           + "</p>", f'<p class="summary">{e(ev.summary)}</p>', "<dl>"]
    if d.worst_tile is not None or d.worst_op is not None:
        where = []
        if d.worst_tile is not None:
            where.append(f"tile {d.worst_tile}")
        if d.worst_step is not None:
            where.append(f"step {d.worst_step}")
        if d.worst_op:
            where.append(f"op {d.worst_op}")
        out.append(f"<dt>worst</dt><dd>{e(', '.join(where))}</dd>")
    if d.bytes_needed is not None:
        out.append(f"<dt>needs</dt><dd>{fmt_bytes(d.bytes_needed)} ({d.bytes_needed:,} B) per "
                   f"tile; budget {fmt_bytes(budget)}</dd>")
    if d.over_by is not None:
        out.append(f"<dt>over by</dt><dd>{fmt_bytes(d.over_by)} ({d.over_by:,} B)</dd>")
    if d.by_category:
        total = sum(d.by_category.values())
        out.append("<dt>by category</dt><dd>" + " · ".join(
            f'<span class="sw" style="background:{_colour_of_category(c, list(d.by_category))}">'
            f"</span>{e(c)} {fmt_bytes(d.by_category[c])} ({fmt_pct(d.by_category[c], total)})"
            for c in category_order(d.by_category) if d.by_category.get(c)) + "</dd>")
    here = spot(plan, d.worst_tile, d.worst_step)

    def listed(items: list[tuple[str, int | None]], shown: int = 12) -> str:
        def one(name: str, b: int | None) -> str:
            return f"<code>{e(name)}</code>" + (f" {fmt_bytes(b)}" if b is not None else "")
        text = ", ".join(one(n, b) for n, b in items[:shown])
        rest = items[shown:]
        if rest:  # a big network has hundreds: the rest folds away
            text += (f'<details><summary>{len(rest)} more</summary>'
                     + ", ".join(one(n, b) for n, b in rest) + "</details>")
        return text

    if here is not None:  # the same three groups as the terminal panel; they add up
        if here.running:
            out.append(f"<dt>running there</dt><dd>{listed(list(here.running))}</dd>")
        if here.resident:
            out.append(f"<dt>always-live there</dt><dd>{fmt_bytes(here.resident_bytes)} from "
                       f"{len(here.resident)} other ops (weights, code, state kept for the whole "
                       f"run): {listed(list(here.resident))}</dd>")
    elif d.live_ops:
        out.append(f"<dt>ops holding bytes there ({len(d.live_ops)})</dt>"
                   f"<dd>{listed([(o, None) for o in d.live_ops])}</dd>")
    if ev.details:
        out.append("<dt>evidence data</dt><dd>" + _evidence_details(ev.details) + "</dd>")
    out.append("</dl>")
    if d.live_tensors:
        out.append("<h3>Tensors held on the worst tile at the worst step</h3>")
        out.append(_dict_table(sorted(d.live_tensors, key=lambda t: -int(t.get("bytes") or 0)),
                               first=("name", "bytes")))
    if d.top_tiles:
        out.append("<h3>Fullest tiles</h3>")
        out.append(_dict_table(d.top_tiles, first=("tile", "bytes")))
    if d.what_if:
        out.append("<h3>What would fit</h3>" + _what_if_table(d.what_if))
    out.append("</section>")
    return "".join(out)


def _evidence_details(details: dict[str, Any]) -> str:
    """The evidence's machine-readable fields (as in the JSON), folded away: one row each,
    integers with thousands separators, anything nested as compact JSON."""
    e = html.escape

    def value(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return e(json.dumps(v))
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, (str, float)):
            return e(str(v))
        return f"<code>{e(json.dumps(v, sort_keys=True))}</code>"

    rows = "".join(f'<tr><td>{e(str(k))}</td><td class="note">{value(v)}</td></tr>'
                   for k, v in sorted(details.items()))
    return (f"<details><summary>{len(details)} fields</summary>"
            f'<table class="whatif">{rows}</table></details>')


def _what_if_table(answers: list, none: str = "none in the searched range") -> str:
    """The what-if answers with the probes each search tried (terminal: answers only)."""
    e = html.escape
    out = ['<table class="whatif"><thead><tr><th>question</th><th>answer</th><th>status</th>'
           "<th>note</th><th>probes</th></tr></thead><tbody>"]
    for w in answers:
        out.append(f"<tr><td>{e(WHAT_IF_TITLES.get(w.question, w.question))}</td>"
                   f"<td><b>{e(fmt_answer(w.question, w.answer, none, w.status))}</b></td>"
                   f'<td>{e(w.status)}</td><td class="note">{e(w.note)}</td>'
                   f'<td class="small">{_probe_list(w.probes)}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _probe_list(probes: list[dict]) -> str:
    """The probes of one search, in the order they ran, folded away (one line each): the value,
    what it came to, and how it was decided -- a long run stays readable and in its column."""
    if not probes:
        return ""
    e = html.escape
    items = []
    for p in probes:
        value = p.get("value")
        value = "×".join(map(str, value)) if isinstance(value, list) else value
        how = p.get("by", "")
        if p.get("evidence"):
            how += f", {p['evidence']}"
        if p.get("peak_bytes") is not None:
            how += f", peak {fmt_bytes(int(p['peak_bytes']))}"
        items.append(f"<li>{e(str(value))}: {e(str(p.get('result', '')))} ({e(how)})</li>")
    n = len(probes)
    return (f"<details><summary>{n} probe{'s' if n != 1 else ''}</summary><ol>"
            + "".join(items) + "</ol></details>")


def _band(plan: Plan) -> str:
    """The verdict over the target's constant ranges: the terminal's lines, the ranges, and every
    setting evaluated (folded away)."""
    e = html.escape
    b = plan.band
    assert b is not None
    cls = "borderline" if b.status == "borderline" else b.status
    title = BAND_TITLE[0].upper() + BAND_TITLE[1:]
    lines = "".join(f"<li>{e(line)}</li>" for line in band_lines(plan))
    out = [f'<section id="band" class="band {e(cls)}"><h2>{e(title)}</h2><ul>{lines}</ul>']
    if b.ranges:
        out.append('<table class="band-ranges"><thead><tr><th>constant</th><th>nominal</th>'
                   "<th>range</th><th>memory-pessimistic end</th></tr></thead><tbody>")
        for k, (lo, hi) in b.ranges.items():
            pess = b.pessimistic.get(k)
            nom = b.nominal.get(k)
            out.append(f"<tr><td><code>{e(k)}</code></td>"
                       f"<td>{e(fmt_num(nom)) if nom is not None else '-'}</td>"
                       f"<td>{e(fmt_num(lo))} .. {e(fmt_num(hi))}</td>"
                       f"<td>{e(fmt_num(pess)) if pess is not None else 'none measured'}</td></tr>")
        out.append("</tbody></table>")
    if b.settings:
        n = len(b.settings)
        out.append(f"<details><summary>{n} setting{'s' if n != 1 else ''} evaluated</summary>"
                   '<table class="band-settings"><thead><tr><th>setting</th>'
                   "<th>constants moved</th><th>result</th><th>decided by</th></tr></thead>"
                   "<tbody>")
        for st in b.settings:
            out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in band_setting_row(st))
                       + "</tr>")
        out.append("</tbody></table></details>")
    out.append("</section>")
    return "".join(out)


def _headroom(plan: Plan) -> str:
    """A fitting plan's what-if answers (``--what-if``): how far it can grow."""
    e = html.escape
    m = plan.model
    at = f"batch {m.batch}" + (f", {m.image_size[0]}×{m.image_size[1]}" if m.image_size else "")
    return (f'<section id="headroom"><h2>{e(HEADROOM_TITLE[0].upper() + HEADROOM_TITLE[1:])}'
            f"</h2><p>At {e(at)}, {e(m.precision)}, one knob at a time; every answer that fits "
            "is a plan the verifier accepted.</p>"
            + _what_if_table(plan.what_if, none="not searched") + "</section>")


def _dict_table(rows: list[dict[str, Any]], first: tuple[str, ...]) -> str:
    e = html.escape
    keys = [k for k in first if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    out = ["<table><thead><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys)
           + "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            text = f"{fmt_bytes(v)} ({v:,} B)" if k == "bytes" and isinstance(v, int) else str(v)
            cells.append(f'<td{" class=num" if isinstance(v, (int, float)) else ""}>'
                         f"{e(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _heatmap_section(plan: Plan, details: Any) -> str:
    e = html.escape
    mem = placed_memory(plan)
    out = ['<section id="heatmap-section"><h2>Tiles: peak bytes per tile</h2>']
    if mem is None or not mem.per_tile_peak:
        out.append("<p>No placement was made, so there is no per-tile picture.</p></section>")
        return "".join(out)
    rows, cols = display_grid(plan)
    tiles = plan.target.tiles
    budget = plan.target.budget_per_tile
    cell = max(8, min(36, 1080 // cols))  # at most ~1.1k px wide: 11 px for gc200's 92 columns
    gap = 1 if cell < 20 else 2
    left, top = 56, 18
    width, height = left + cols * cell + 4, top + rows * cell + 4
    grid_note = ("the target's grid" if list(plan.target.grid) == [rows, cols] else
                 f"drawn as {rows} rows × {cols} columns in tile-id order (a display grid, not "
                 "the physical floorplan)")
    out.append(f'<p class="small">{tiles:,} tiles, {grid_note}; colour = a tile\'s highest '
               f"occupancy over the run as a share of the {fmt_bytes(budget)} budget. Hover a "
               "tile for details; click an op in the table below to outline its tiles.</p>")
    out.append('<div class="heat-wrap"><div>')
    out.append(f'<div class="controls"><label>show <select id="heat-mode"><option value="peak">'
               f"peak over the run</option><option value=\"step\">one superstep</option></select>"
               f'</label> <input type="range" id="heat-step" min="0" '
               f'max="{max(len(plan.steps) - 1, 0)}" value="{mem.peak_step}" disabled> '
               f'<span id="heat-step-label" class="small"></span></div>')
    svg = [f'<svg id="heatmap" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="tile heatmap">']
    step_label = 1 if rows <= 16 else 4 if rows <= 64 else 8
    for r in range(0, rows, step_label):  # a mesh's row number; else the row's first tile id
        svg.append(f'<text class="ax" x="{left - 4}" y="{_num(top + r * cell + cell * 0.72)}" '
                   f'text-anchor="end">{r if plan.target.placement == "rect" else r * cols}'
                   "</text>")
    col_label = 1 if cols <= 16 else 5 if cols <= 80 else 10
    for c in range(0, cols, col_label):
        svg.append(f'<text class="ax" x="{_num(left + c * cell + cell / 2)}" y="{top - 5}" '
                   f'text-anchor="middle">{c}</text>')
    svg.append('<g id="tiles">')
    peak_step = details.peak_step if details is not None else None
    for t in range(tiles):
        r, c = divmod(t, cols)
        p = int(mem.per_tile_peak[t])
        frac = p / budget if budget else None
        tip = f"tile {t} (row {r}, col {c}): peak {fmt_bytes(p)} ({fmt_pct(p, budget)})"
        if peak_step is not None and p:
            tip += f" at step {int(peak_step[t])}"
        svg.append(f'<rect x="{left + c * cell}" y="{top + r * cell}" width="{cell - gap}" '
                   f'height="{cell - gap}" fill="{heat_colour(frac)}"><title>{e(tip)}</title>'
                   "</rect>")
    svg.append("</g>")
    pr, pc = divmod(mem.peak_tile, cols)
    svg.append(f'<rect class="mark" x="{left + pc * cell - 1}" y="{top + pr * cell - 1}" '
               f'width="{cell - gap + 2}" height="{cell - gap + 2}"><title>peak tile '
               f"{mem.peak_tile}</title></rect>")
    svg.append('<g id="outline"></g></svg>')
    out.append("".join(svg))
    out.append(_legend(budget))
    out.append('</div><div class="side"><div id="tile-info" class="tile-info">'
               f"<b>tile {mem.peak_tile}</b> holds the peak: {fmt_bytes(mem.peak_bytes)} "
               f"({fmt_pct(mem.peak_bytes, budget)} of budget).<br><span class=small>Hover a "
               "tile for its own peak, bytes by category there and the ops it runs.</span></div>")
    out.append("<h3>Fullest tiles</h3><table><thead><tr><th>tiles</th><th>peak</th>"
               "<th>of budget</th><th>headroom</th></tr></thead><tbody>")
    for start, stop, peak in top_tile_groups(plan, 10):
        cls = ' class="over"' if peak > budget else ""
        out.append(f"<tr{cls}><td>{e(fmt_tiles(plan, [[start, stop]]))}"
                   + (f" <span class=small>({stop - start})</span>" if stop - start > 1 else "")
                   + f'</td><td class="num">{fmt_bytes(peak)}</td><td class="num">'
                   f'{fmt_pct(peak, budget)}</td><td class="num">{fmt_bytes(budget - peak)}</td>'
                   "</tr>")
    out.append("</tbody></table></div></div></section>")
    return "".join(out)


def _legend(budget: int) -> str:
    w = 320
    stops = "".join(f'<stop offset="{i / (len(SCALE) - 1):.3f}" stop-color="{c}"/>'
                    for i, c in enumerate(SCALE))
    ticks = "".join(
        f'<line x1="{_num(10 + w * f)}" x2="{_num(10 + w * f)}" y1="20" y2="25" class="tick"/>'
        f'<text class="ax" x="{_num(10 + w * f)}" y="36" text-anchor="middle">{int(f * 100)} %'
        "</text>" for f in (0, 0.25, 0.5, 0.75, 1.0))
    ow = 90
    over = "".join(f'<stop offset="{i / (len(OVER) - 1):.3f}" stop-color="{c}"/>'
                   for i, c in enumerate(OVER))
    total = w + ow + 110
    return (f'<svg class="legend" width="{total}" height="42" viewBox="0 0 {total} 42">'
            f'<defs><linearGradient id="heat-grad">{stops}</linearGradient>'
            f'<linearGradient id="over-grad">{over}</linearGradient></defs>'
            f'<rect x="10" y="6" width="{w}" height="14" fill="url(#heat-grad)"/>{ticks}'
            f'<rect x="{w + 12}" y="6" width="{ow}" height="14" fill="url(#over-grad)"/>'
            f'<text class="ax" x="{w + 12 + ow}" y="36" text-anchor="end">≥ 200 %</text>'
            f'<rect x="{w + ow + 30}" y="6" width="14" height="14" fill="{UNUSED}"/>'
            f'<text class="ax" x="{w + ow + 48}" y="17">empty</text>'
            f'<title>share of the {fmt_bytes(budget)} budget</title></svg>')


def _memory_section(plan: Plan, cats: list[str]) -> str:
    mem = placed_memory(plan)
    if mem is None or not mem.worst_tile_timeline:
        return ""
    budget = plan.target.budget_per_tile
    out = ['<section id="memory-section"><h2>Memory over supersteps, by category</h2>',
           _category_legend(cats, mem.worst_tile_timeline + mem.chip_timeline),
           f"<h3>Worst tile: tile {mem.peak_tile}</h3>",
           _stacked_chart("chart-tile", mem.worst_tile_timeline, cats, budget,
                          f"per-tile budget {fmt_bytes(budget)}", mem.peak_step)]
    if mem.chip_timeline:
        capacity = budget * plan.target.tiles
        out.append(f"<h3>Whole chip: {plan.target.tiles:,} tiles</h3>")
        out.append(_stacked_chart("chart-chip", mem.chip_timeline, cats, capacity,
                                  f"chip capacity {fmt_bytes(capacity)}", mem.peak_step,
                                  limit_optional=True))
    out.append("</section>")
    return "".join(out)


def _category_legend(cats: list[str], timeline: list[dict[str, int]]) -> str:
    used = [c for c in cats if any(d.get(c) for d in timeline)]
    return '<p class="cats">' + " ".join(
        f'<span class="sw" style="background:{_colour_of_category(c, cats)}"></span>'
        f"{html.escape(c)}" for c in used) + "</p>"


def _stacked_chart(chart_id: str, timeline: list[dict[str, int]], cats: list[str],
                   limit: int, limit_label: str, peak_step: int,
                   limit_optional: bool = False) -> str:
    """Stacked step-area chart of bytes by category per superstep, with a limit line."""
    steps = len(timeline)
    totals = [sum(d.values()) for d in timeline]
    vmax = max(totals, default=0)
    # The limit line sets the scale unless it would squash the data into the bottom of the chart
    # (a small model on a big chip); then it is named, off scale.
    show_limit = limit <= (1.6 if limit_optional else 2.5) * max(vmax, 1)
    unit, scale = _byte_unit(max(vmax, limit if show_limit else 0))
    ticks, top = _nice_ticks(max(vmax, limit if show_limit else 0) / scale)
    pw = CHART_W - MARGIN_L - MARGIN_R
    ph = CHART_H - MARGIN_T - MARGIN_B

    def x(s: float) -> float:
        return MARGIN_L + pw * s / max(steps, 1)

    def y(v: float) -> float:
        return MARGIN_T + ph * (1 - v / (top * scale)) if top else MARGIN_T + ph

    out = [f'<svg id="{chart_id}" class="chart" width="{CHART_W}" height="{CHART_H}" '
           f'viewBox="0 0 {CHART_W} {CHART_H}" role="img">']
    for tv in ticks:
        yy = _num(y(tv * scale))
        out.append(f'<line class="grid" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{yy}" '
                   f'y2="{yy}"/><text class="ax" x="{MARGIN_L - 6}" y="{yy}" dy="4" '
                   f'text-anchor="end">{tv:g} {unit}</text>')
    xt, _ = _nice_ticks(max(steps - 1, 1), 10)
    for s in xt:
        if s <= steps - 1 and s == int(s):
            xx = _num(x(s + 0.5))
            out.append(f'<text class="ax" x="{xx}" y="{CHART_H - MARGIN_B + 14}" '
                       f'text-anchor="middle">{int(s)}</text>')
    out.append(f'<text class="ax" x="{MARGIN_L + pw / 2}" y="{CHART_H - 4}" '
               'text-anchor="middle">superstep</text>')
    base = [0] * steps
    for cat in cats:
        vals = [int(d.get(cat, 0)) for d in timeline]
        if not any(vals):
            continue
        upper = [b + v for b, v in zip(base, vals, strict=True)]
        path = [f"M{_num(x(0))} {_num(y(upper[0]))}"]
        for s in range(steps):
            path.append(f"H{_num(x(s + 1))}")
            if s + 1 < steps:
                path.append(f"V{_num(y(upper[s + 1]))}")
        path.append(f"V{_num(y(base[-1]))}")
        for s in range(steps - 1, -1, -1):
            path.append(f"H{_num(x(s))}")
            if s > 0:
                path.append(f"V{_num(y(base[s - 1]))}")
        path.append("Z")
        out.append(f'<path d="{"".join(path)}" fill="{_colour_of_category(cat, cats)}">'
                   f"<title>{html.escape(cat)}</title></path>")
        base = upper
    if show_limit:
        ly = _num(y(limit))
        out.append(f'<line class="limit" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{ly}" '
                   f'y2="{ly}"/><text class="limit-label" x="{CHART_W - MARGIN_R - 4}" '
                   f'y="{ly}" dy="-4" text-anchor="end">{html.escape(limit_label)}</text>')
    else:
        out.append(f'<text class="limit-label" x="{CHART_W - MARGIN_R - 4}" y="{MARGIN_T + 10}" '
                   f'text-anchor="end">{html.escape(limit_label)} (off scale)</text>')
    if 0 <= peak_step < steps:
        px = _num(x(peak_step + 0.5))
        out.append(f'<line class="peak" x1="{px}" x2="{px}" y1="{MARGIN_T}" '
                   f'y2="{MARGIN_T + ph}"/>')
    out.append(f'<line class="cursor" x1="0" x2="0" y1="{MARGIN_T}" y2="{MARGIN_T + ph}" '
               'visibility="hidden"/>')
    out.append(f'<rect class="hover" x="{MARGIN_L}" y="{MARGIN_T}" width="{pw}" height="{ph}" '
               'fill="transparent"/></svg>')
    return "".join(out)


def _memory_map(plan: Plan, cats: list[str]) -> str:
    """The worst tile's buffers at their offsets over time (when the plan has a layout)."""
    mem = placed_memory(plan)
    if mem is None or not plan.buffers or not plan.steps:
        return ""
    tile = mem.peak_tile
    boxes = []
    for b in plan.buffers:
        for start, stop, offset in b.offsets:
            if start <= tile < stop and b.bytes > 0:
                boxes.append((b, offset))
    if not boxes:
        return ""
    steps = len(plan.steps)
    budget = plan.target.budget_per_tile
    top_used = max(o + b.bytes for b, o in boxes)
    show_budget = budget <= 2.5 * top_used  # else the boxes would be squashed: budget off scale
    vmax = max(top_used, budget) if show_budget else top_used
    unit, scale = _byte_unit(vmax)
    ticks, top = _nice_ticks(vmax / scale)
    pw = CHART_W - MARGIN_L - MARGIN_R
    ph = 300
    height = ph + MARGIN_T + MARGIN_B

    def x(s: float) -> float:
        return MARGIN_L + pw * s / steps

    def y(v: float) -> float:
        return MARGIN_T + ph * (1 - v / (top * scale))

    out = ['<section id="memory-map-section"><h2>Memory map of tile '
           f"{tile}</h2><p class=small>Each box is one buffer: from the superstep it becomes live "
           "to the one it dies (x), at its address on this tile (y). Hover for its owner.</p>",
           f'<svg id="memory-map" class="chart" width="{CHART_W}" height="{height}" '
           f'viewBox="0 0 {CHART_W} {height}" role="img">']
    for tv in ticks:
        yy = _num(y(tv * scale))
        out.append(f'<line class="grid" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{yy}" '
                   f'y2="{yy}"/><text class="ax" x="{MARGIN_L - 6}" y="{yy}" dy="4" '
                   f'text-anchor="end">{tv:g} {unit}</text>')
    for b, offset in sorted(boxes, key=lambda bo: (bo[0].first, bo[1], bo[0].id)):
        x0, x1 = x(b.first), x(min(b.end, steps))
        y0, y1 = y(offset + b.bytes), y(offset)
        tip = (f"{b.owner} · {b.kind} {b.category} · {fmt_bytes(b.bytes)} at offset "
               f"{offset:,} · steps {b.first}-{b.end - 1}")
        out.append(f'<rect x="{_num(x0)}" y="{_num(y0)}" width="{_num(max(x1 - x0 - 0.5, 0.5))}"'
                   f' height="{_num(max(y1 - y0, 0.5))}" '
                   f'fill="{_colour_of_category(b.category, cats)}" class="buf">'
                   f"<title>{html.escape(tip)}</title></rect>")
    xt, _ = _nice_ticks(max(steps - 1, 1), 10)
    for s in xt:
        if s <= steps - 1 and s == int(s):
            out.append(f'<text class="ax" x="{_num(x(s + 0.5))}" y="{MARGIN_T + ph + 14}" '
                       f'text-anchor="middle">{int(s)}</text>')
    if show_budget:
        ly = _num(y(budget))
        out.append(f'<line class="limit" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{ly}" '
                   f'y2="{ly}"/><text class="limit-label" x="{CHART_W - MARGIN_R - 4}" '
                   f'y="{ly}" dy="-4" text-anchor="end">budget {fmt_bytes(budget)}</text>')
    else:
        out.append(f'<text class="limit-label" x="{CHART_W - MARGIN_R - 4}" y="{MARGIN_T + 10}" '
                   f'text-anchor="end">budget {fmt_bytes(budget)} (off scale)</text>')
    out.append(f'<text class="ax" x="{MARGIN_L + pw / 2}" y="{height - 4}" '
               'text-anchor="middle">superstep</text></svg></section>')
    return "".join(out)


def _ops_section(plan: Plan) -> str:
    e = html.escape
    if not plan.ops:
        return ""
    out = [f'<section id="ops-section"><h2>Ops ({len(plan.ops)})</h2>'
           "<p class=small>Bytes are per tile while the op runs (always-live + step + outputs). "
           "Click a header to sort, a row to outline the op's tiles on the heatmap.</p>"
           '<div class="scroll"><table id="ops" class="sortable"><thead><tr>']
    heads = [("step", "num"), ("op", ""), ("type", ""), ("kind", ""), ("tiles", "num"),
             ("where", ""), ("split", ""), ("bytes/tile", "num"), ("always", "num"),
             ("step bytes", "num"), ("outputs", "num"), ("MACs", "num"),
             ("compute cycles", "num"), ("exchange cycles", "num")]
    out.append("".join(f'<th data-type="{"num" if c else "text"}">{e(h)}</th>'
                       for h, c in heads))
    out.append("</tr></thead><tbody>")
    for i, op in enumerate(sorted(plan.ops, key=lambda o: (o.step, o.name))):
        always, step_b, outs = (sum(op.always.values()), sum(op.step_bytes.values()),
                                sum(op.output_bytes))
        cells = [
            (op.step, str(op.step)), (None, op.name), (None, op.op_type), (None, op.kind),
            (tiles_in(op.tiles), str(tiles_in(op.tiles))), (None, fmt_tiles(plan, op.tiles)),
            (None, fmt_split(op.split)), (op_tile_bytes(op), fmt_bytes(op_tile_bytes(op))),
            (always, fmt_bytes(always)), (step_b, fmt_bytes(step_b)), (outs, fmt_bytes(outs)),
            (op.macs, fmt_count(op.macs)), (op.compute_cycles, f"{op.compute_cycles:,}"),
            (op.exchange_cycles, f"{op.exchange_cycles:,}"),
        ]
        out.append(f'<tr data-op="{i}">' + "".join(
            f'<td class="num" data-v="{v}">{e(text)}</td>' if v is not None
            else f"<td>{e(text)}</td>" for v, text in cells) + "</tr>")
    out.append("</tbody></table></div></section>")
    return "".join(out)


# ----------------------------------------------------------------------------------- script data
def _page_data(plan: Plan, cats: list[str], details: Any) -> dict[str, Any]:
    """What report.js needs: small arrays, not tiles × steps."""
    rows, cols = display_grid(plan)
    mem = placed_memory(plan)
    ops = sorted(plan.ops, key=lambda o: (o.step, o.name))
    data: dict[str, Any] = {
        "tiles": plan.target.tiles, "cols": cols, "rows": rows,
        "budget": plan.target.budget_per_tile, "placement": plan.target.placement,
        "scale": list(SCALE), "over": list(OVER), "unused": UNUSED,
        "cats": cats, "colours": [_colour_of_category(c, cats) for c in cats],
        "steps": [s.ops for s in plan.steps],
        "ops": [[o.name, o.op_type, o.step, o.tiles, op_tile_bytes(o)] for o in ops],
        "peak": list(mem.per_tile_peak) if mem is not None else [],
        "peak_step": mem.peak_step if mem is not None else None,
    }
    if details is not None:
        index = {c: i for i, c in enumerate(details.categories)}
        order = [index.get(c) for c in cats]
        data["tile_step"] = [int(s) for s in details.peak_step]
        data["tile_cats"] = [[int(details.by_category[i][t]) if i is not None else 0
                              for i in order] for t in range(plan.target.tiles)]
        cat_index = {c: i for i, c in enumerate(cats)}
        data["buffers"] = [[b.first, b.end, b.bytes, cat_index[b.category], b.tiles]
                           for b in plan.buffers if b.bytes > 0 and b.end > b.first]
    if mem is not None:
        data["timeline_tile"] = [[int(d.get(c, 0)) for c in cats]
                                 for d in mem.worst_tile_timeline]
        data["timeline_chip"] = [[int(d.get(c, 0)) for c in cats] for d in mem.chip_timeline]
    data["chart_x"] = [MARGIN_L, CHART_W - MARGIN_L - MARGIN_R]
    return data


__all__ = ["heat_colour", "render_html", "write_html"]
