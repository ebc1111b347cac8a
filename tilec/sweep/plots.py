"""The sweep's static plots, drawn with matplotlib (Agg: no display needed).

Three figures, each written as PNG and SVG -- the plots of the published GC200 study of
Scaled-YOLOv4-P5, for any model and target:

* ``frontier``: the largest batch that fits against the image size, one line per precision;
* ``latency_vs_size``: latency at the grid's smallest batch against the image size, log scale;
* ``batch``: latency and throughput against the batch at a few image sizes.

Measured points (``--compare``) are drawn over them: filled where they fit, crosses where they
did not. SVGs carry no date and a fixed hash salt, so the same sweep gives the same file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from tilec.sweep.compare import Measured
from tilec.sweep.result import SweepResult

COLOURS = {"fp32": "#1f77b4", "fp16": "#d62728", "int8": "#2ca02c", "int4": "#9467bd",
           "int2": "#8c564b"}
SIZES_PER_BATCH_PLOT = 4
"""Image sizes the latency/throughput-vs-batch plot draws (evenly spaced over the grid)."""


def _size_label(h: int, w: int) -> str:
    return str(h) if h == w else f"{h}×{w}"


def _render(fig: Any) -> tuple[bytes, str]:
    """(PNG bytes, SVG text) of ``fig``, which is closed."""
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Software": None})
    with plt.rc_context({"svg.hashsalt": "tilec-sweep"}):
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png.getvalue(), svg.getvalue()


def frontier_figure(result: SweepResult, measured: list[Measured] | None = None) -> Any:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="tight")
    for prec in result.grid["precisions"]:
        rows = [f for f in result.frontier if f["precision"] == prec]
        xs = [f["image_h"] for f in rows]
        ys = [f["max_batch"] or 0 for f in rows]
        ax.step(xs, ys, where="mid", color=COLOURS.get(prec), label=f"{prec} (predicted)")
        ax.plot(xs, ys, "o", ms=3, color=COLOURS.get(prec))
        bound = [(f["image_h"], f["max_batch"] or 0) for f in rows if f["status"] != "exact"]
        if bound and len(bound) < len(rows):
            ax.plot(*zip(*bound, strict=True), "o", ms=6, mfc="none", color=COLOURS.get(prec))
    _overlay(ax, measured, lambda m: (m.image_size[0], m.batch))
    ax.axhline(result.settings["cap"], color="grey", ls="--", lw=0.8,
               label=f"search limit (batch {result.settings['cap']})")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("image size (px)")
    ax.set_ylabel("largest batch that fits")
    ax.set_title(f"{result.model['name']} on {result.target['name']}: fit frontier")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def latency_figure(result: SweepResult, measured: list[Measured] | None = None) -> Any:
    batch = min(result.grid["batches"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="tight")
    for prec in result.grid["precisions"]:
        pts = [p for p in result.points if p["precision"] == prec and p["batch"] == batch
               and p["latency_ms"] is not None]
        ax.plot([p["image_h"] for p in pts], [p["latency_ms"] for p in pts], "o-", ms=3,
                color=COLOURS.get(prec), label=f"{prec} (predicted)")
    ms = [m for m in measured or [] if m.batch == batch and m.latency_ms]
    _overlay(ax, ms, lambda m: (m.image_size[0], m.latency_ms), fits_only=True)
    ax.set_yscale("log")
    ax.set_xlabel("image size (px)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"{result.model['name']} on {result.target['name']}: latency at batch {batch}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def batch_figure(result: SweepResult, measured: list[Measured] | None = None) -> Any:
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4.2), layout="tight")
    sizes = sorted({(p["image_h"], p["image_w"]) for p in result.points
                    if p["latency_ms"] is not None})
    if len(sizes) > SIZES_PER_BATCH_PLOT:
        n = SIZES_PER_BATCH_PLOT
        sizes = [sizes[round(i * (len(sizes) - 1) / (n - 1))] for i in range(n)]
    styles = ["-", "--", ":", "-."]
    for prec in result.grid["precisions"]:
        for i, hw in enumerate(sizes):
            pts = [p for p in result.points if p["precision"] == prec and p["latency_ms"]
                   is not None and (p["image_h"], p["image_w"]) == hw]
            if not pts:
                continue
            label = f"{prec} {_size_label(*hw)} px"
            kw = {"color": COLOURS.get(prec), "ls": styles[i % len(styles)], "marker": "o",
                  "ms": 3, "label": label}
            lat.plot([p["batch"] for p in pts], [p["latency_ms"] for p in pts], **kw)
            thr.plot([p["batch"] for p in pts], [p["throughput_per_s"] for p in pts], **kw)
    ms = [m for m in measured or [] if m.latency_ms]
    _overlay(lat, ms, lambda m: (m.batch, m.latency_ms), fits_only=True)
    _overlay(thr, ms, lambda m: (m.batch, 1e3 * m.batch / m.latency_ms), fits_only=True)
    lat.set_xlabel("batch")
    lat.set_ylabel("latency (ms)")
    thr.set_xlabel("batch")
    thr.set_ylabel("throughput (images/s)")
    lat.set_title("latency vs batch")
    thr.set_title("throughput vs batch")
    for ax in (lat, thr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if len(result.grid["batches"]) == 1:
        for ax in (lat, thr):
            ax.text(0.5, 0.95, "one batch on the grid: --batch 1,2,4 (or 1..8) draws curves",
                    transform=ax.transAxes, ha="center", va="top", fontsize=8, color="grey")
    fig.suptitle(f"{result.model['name']} on {result.target['name']}")
    return fig


def _overlay(ax: Any, measured: list[Measured] | None, xy: Any, fits_only: bool = False) -> None:
    if not measured:
        return
    ok = [xy(m) for m in measured if m.result == "fits"]
    bad = [xy(m) for m in measured if m.result != "fits" and not fits_only]
    if ok:
        ax.plot(*zip(*ok, strict=True), "D", color="black", ms=6, label="measured (fits)")
    if bad:
        ax.plot(*zip(*bad, strict=True), "X", color="black", ms=7,
                label="measured (does not fit)")


FIGURES = {"frontier": frontier_figure, "latency_vs_size": latency_figure,
           "batch": batch_figure}


def render_plots(result: SweepResult, measured: list[Measured] | None = None
                 ) -> dict[str, tuple[bytes, str]]:
    """Every figure, rendered once: name -> (PNG bytes, SVG text)."""
    return {name: _render(make(result, measured)) for name, make in FIGURES.items()}


def write_plots(rendered: dict[str, tuple[bytes, str]], out: Path) -> list[Path]:
    """``out/<name>.png`` and ``out/<name>.svg`` for every rendered figure."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (png, svg) in rendered.items():
        (out / f"{name}.png").write_bytes(png)
        (out / f"{name}.svg").write_text(svg)
        paths += [out / f"{name}.png", out / f"{name}.svg"]
    return paths
