"""The sweep in the terminal: the progress bar while it runs, then one rich table per sweep and
the predicted-vs-measured table of ``--compare``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tilec.plan.whatif_search import LETTER
from tilec.sweep.result import SweepResult


@contextlib.contextmanager
def progress_bar(console: Console | None
                 ) -> Iterator[Callable[[int, int, str], None] | None]:
    """``update(done, total, stage)`` drawing configurations done / total, the ETA and the stage
    (None: silent)."""
    if console is None:
        yield None
        return
    bar = Progress(TextColumn("sweep: {task.description:<15}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("configurations"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=console, transient=True)
    task = None
    with bar:
        def update(done: int, total: int, stage: str = "") -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(stage, total=total)
            bar.update(task, completed=done, total=total, description=stage)
        yield update


def _kind(kind: str | None) -> str:
    if not kind:
        return ""
    return f"{kind} ({LETTER[kind]})" if kind in LETTER else kind


def print_sweep(result: SweepResult, console: Console) -> None:
    batch = min(result.grid["batches"])
    t = Table(title=f"tilec sweep: {result.model['name']} on {result.target['name']} "
                    f"(largest batch searched up to {result.settings['cap']})")
    for col, just in (("image", "right"), ("precision", "left"), ("max batch", "right"),
                      ("status", "left"), ("next batch fails by", "left"),
                      (f"latency b{batch} ms", "right"), (f"images/s b{batch}", "right"),
                      (f"peak tile b{batch}", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    points = {(p["precision"], p["image_h"], p["image_w"], p["batch"]): p
              for p in result.points}
    for f in result.frontier:
        h, w = f["image_h"], f["image_w"]
        p = points.get((f["precision"], h, w, batch)) or {}
        lat, thr, peak = p.get("latency_ms"), p.get("throughput_per_s"), p.get("peak_pct")
        status = p.get("status", "")
        t.add_row(str(h) if h == w else f"{h}×{w}", f["precision"],
                  str(f["max_batch"] or "none"), f["status"],
                  _kind(f["fail_kind"]) + (f" at {f['fail_batch']}" if f["fail_batch"] else ""),
                  f"{lat:.3f}" if lat is not None else status.replace("_", " "),
                  f"{thr:.1f}" if thr is not None else "",
                  f"{peak:.1f} %" if peak is not None else "")
    console.print(t)
    if len(result.grid["batches"]) > 1:
        fits = sum(p["status"] == "fits" for p in result.points)
        console.print(f"{len(result.points)} grid points ({fits} fit); every one in the CSV/JSON")


def _predicted(r: dict[str, Any]) -> str:
    if not r["predicted"]:
        return "not decided"
    return f"{r['predicted'].replace('_', ' ')} ({r['source']})"


def print_comparison(rows: list[dict[str, Any]], console: Console) -> None:
    t = Table(title="predicted vs measured")
    for col in ("image", "batch", "precision", "measured", "predicted", "agree", "measured ms",
                "predicted ms", "error"):
        t.add_column(col)
    for r in rows:
        h, w = r["image_h"], r["image_w"]
        t.add_row(str(h) if h == w else f"{h}×{w}", str(r["batch"]), r["precision"],
                  r["measured"].replace("_", " "),
                  _predicted(r),
                  "" if r["agree"] is None else ("yes" if r["agree"] else "NO"),
                  f"{r['measured_ms']:.3f}" if r["measured_ms"] else "",
                  f"{r['predicted_ms']:.3f}" if r["predicted_ms"] is not None else "",
                  f"{r['error_pct']:+.1f} %" if r["error_pct"] is not None else "")
    console.print(t)
