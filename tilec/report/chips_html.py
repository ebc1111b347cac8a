"""The HTML page of a multi-chip plan: the chip table, then every chip's own report side by side.

Each chip's page is the single-chip report (:func:`tilec.report.html.render_html` of its stage
plan: heatmap, memory over supersteps, per-op table), embedded whole in an ``<iframe srcdoc>``, so
the page stays one self-contained file and each chip's page works exactly as it does alone.
The cut is drawn as a strip over the schedule: one coloured segment per chip, proportional to its
ops, named by its first and last op.
"""

from __future__ import annotations

import html

from tilec.plan.model import Plan
from tilec.report.data import fmt_bytes, fmt_pct, fmt_seconds, model_line, verdict

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7")


def render_chips_html(plan: Plan) -> str:
    """The page as a string (deterministic for a given plan)."""
    from tilec.report.html import render_html

    cs = plan.chips
    assert cs is not None
    e = html.escape
    label, _ = verdict(plan)
    sysd = cs.system
    rows = []
    for st in cs.stages:
        rows.append(
            "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
                st.chip, f"[{st.start}, {st.end})" if cs.mode != "replicate" else "whole model",
                f"{st.first_op} .. {st.last_op}", st.ops, st.batch, fmt_bytes(st.peak_bytes),
                fmt_pct(st.peak_bytes or 0, plan.target.budget_per_tile),
                fmt_bytes(st.headroom_bytes), fmt_seconds(st.stage_seconds),
                fmt_bytes(st.recv_bytes), fmt_bytes(st.send_bytes))) + "</tr>")
    total = max(1, sum(st.ops for st in cs.stages)) if cs.mode != "replicate" else 1
    strip = "".join(
        f'<div class="seg" style="flex:{st.ops if cs.mode != "replicate" else 1};background:'
        f'{COLOURS[st.chip % len(COLOURS)]}" title="chip {st.chip}: {e(st.first_op)} .. '
        f'{e(st.last_op)}">chip {st.chip}<br><small>{e(st.first_op)}</small></div>'
        for st in cs.stages)
    frames = []
    for st in cs.stages:
        src = cs.stages[st.same_as].plan if st.same_as is not None else st.plan
        if src is None:
            continue
        page = render_html(Plan.from_dict(src))
        frames.append(f'<div class="chip"><h2>chip {st.chip}</h2><iframe title="chip {st.chip}" '
                      f'srcdoc="{e(page, quote=True)}"></iframe></div>')
    timing = (f"interval {fmt_seconds(cs.interval_seconds)} · latency "
              f"{fmt_seconds(cs.latency_seconds)} · "
              f"{cs.throughput_per_s or 0:,.1f} images/s" if cs.interval_seconds else "")
    head = ("<tr>" + "".join(f"<th>{h}</th>" for h in (
        "chip", "stage", "ops from .. to", "ops", "batch", "peak", "of budget", "headroom",
        "stage time", "link in", "link out")) + "</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>tilec · {e(model_line(plan))} · {e(sysd['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 8px; text-align: right; }}
.strip {{ display: flex; width: 100%; height: 3em; margin: 1em 0; color: white;
  font-size: 0.8em; }} .seg {{ overflow: hidden; padding: 2px 4px; border-right: 2px solid white; }}
.chips {{ display: flex; gap: 8px; overflow-x: auto; }}
.chip {{ flex: 0 0 {max(32, 96 // max(1, len(frames)))}vw; }}
.chip iframe {{ width: 100%; height: 90vh; border: 1px solid #ccc; }}
</style></head><body>
<h1>{e(model_line(plan))} on {e(sysd['name'])} ({sysd['chips']} x {e(sysd['chip'])}) ·
{e(cs.mode)}</h1>
<p><b>{e(label)}</b> on {cs.chips} of {sysd['chips']} chips · cut {e(cs.optimality)} ·
{e(timing)}</p>
<p>{e(cs.note)}</p>
<div class="strip" title="the schedule of {total} ops, cut into stages">{strip}</div>
<table>{head}{''.join(rows)}</table>
<div class="chips">{''.join(frames)}</div>
</body></html>
"""
