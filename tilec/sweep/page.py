"""The sweep's HTML page: one self-contained file (the plan report's stylesheet inlined, the
plots inlined as SVG, no script, no external resource), rendered from the results alone."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import Any

from tilec.sweep.result import SweepResult


def _inline(svg: str) -> str:
    return svg[svg.index("<svg"):]  # drop the XML prologue and DOCTYPE: inline SVG


def _num(x: Any, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def render(result: SweepResult, plots: dict[str, tuple[bytes, str]],
           comparison: list[dict[str, Any]] | None = None) -> str:
    """The page; ``plots`` from :func:`tilec.sweep.plots.render_plots` (their SVGs inlined)."""
    e = html.escape
    css = resources.files("tilec.report").joinpath("report.css").read_text()
    title = f"tilec sweep: {result.model['name']} on {result.target['name']}"
    g = result.grid
    sizes = g["image_sizes"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{css}</style></head><body>",
        f"<header><h1>{e(result.model['name'])} <span class='sub'>on "
        f"{e(result.target['name'])} · sweep</span></h1>",
        f"<p class='source'>{len(sizes)} image sizes ({sizes[0][0]}–{sizes[-1][0]} px), "
        f"batches {e(_batches(g['batches']))}, {e(', '.join(g['precisions']))}; "
        f"largest batch searched up to {result.settings['cap']}; tilec "
        f"{e(result.tilec_version)}</p></header>",
        "<h2>Plots</h2>",
    ]
    for name, (_png, svg) in plots.items():
        parts.append(f"<figure id='{name}'>{_inline(svg)}</figure>")
    parts.append("<h2>Fit frontier</h2><p>The largest batch that fits at each image size "
                 "(exact: every larger batch was proven not to fit; bound: a fitting batch, "
                 "with larger ones not all decided — see the note) and how the next batch "
                 "fails.</p>")
    parts.append(_table(
        ["image", "precision", "max batch", "status", "next batch", "fails by", "note"],
        [[_size(f), f["precision"], str(f["max_batch"] or "none"), f["status"],
          _num(f["fail_batch"], "d"), f["fail_kind"] or "", f["note"]]
         for f in result.frontier]))
    if comparison:
        parts.append("<h2>Predicted vs measured</h2>")
        parts.append(_table(
            ["image", "batch", "precision", "measured", "predicted", "agree", "measured ms",
             "predicted ms", "error"],
            [[_size(r), str(r["batch"]), r["precision"], r["measured"],
              f"{r['predicted']} ({r['source']})" if r["predicted"] else "not decided",
              "" if r["agree"] is None else ("yes" if r["agree"] else "NO"),
              _num(r["measured_ms"], ".3f"), _num(r["predicted_ms"], ".3f"),
              "" if r["error_pct"] is None else f"{r['error_pct']:+.1f} %"]
             for r in comparison]))
    parts.append("<h2>Every configuration</h2>")
    parts.append(_table(
        ["image", "precision", "batch", "status", "evidence", "latency ms", "images/s",
         "peak tile"],
        [[_size(p), p["precision"], str(p["batch"]), p["status"], p["evidence"] or "",
          _num(p["latency_ms"], ".3f"), _num(p["throughput_per_s"], ".1f"),
          "" if p["peak_pct"] is None else f"{p['peak_pct']:.1f} %"]
         for p in result.points]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _size(row: dict[str, Any]) -> str:
    h, w = row["image_h"], row["image_w"]
    return str(h) if h == w else f"{h}×{w}"


def _batches(bs: list[int]) -> str:
    if len(bs) > 2 and bs == list(range(bs[0], bs[-1] + 1)):
        return f"{bs[0]}..{bs[-1]}"
    return ",".join(map(str, bs))


def _table(head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    out = ["<table><thead><tr>", *(f"<th>{e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def write_page(result: SweepResult, path: Path, plots: dict[str, tuple[bytes, str]],
               comparison: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(render(result, plots, comparison))
    return path
