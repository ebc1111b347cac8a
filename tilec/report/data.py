"""What every renderer derives from a :class:`~tilec.plan.model.Plan`, computed in one place.

Renderers read only the Plan (usually one just loaded from JSON), so anything they show that is not
a field of it is derived here, from the Plan alone: number formatting, the display grid of the
heatmap, and the per-tile breakdown by category at each tile's own peak (from the buffers).
Keeping this in one module is what makes the terminal, the HTML page and the trace agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt
from typing import Any

import numpy as np

from tilec.costmodel import CATEGORIES
from tilec.plan.model import (
    EVIDENCE_KINDS,
    STATUS_DOES_NOT_FIT,
    STATUS_FITS,
    MemorySummary,
    OpPlacement,
    Plan,
    Ranges,
)

EVIDENCE_TITLES = {
    "chip_capacity": "the live set exceeds the whole chip",
    "op_too_large": "an op does not fit even at its finest split",
    "solver_infeasible": "the solver proved no placement exists",
    "search_limit": "search limit reached: no placement found, none ruled out",
}

WHAT_IF_TITLES = {
    "max_batch": "largest batch that fits",
    "max_image_size": "largest image size that fits",
    "min_precision": "highest precision that fits",
    "min_bytes_per_tile": "smallest SRAM per tile that fits",
    "chips_needed": "chips needed (pipeline or sharded)",
}


# ----------------------------------------------------------------------------------- formatting
def fmt_bytes(n: int | float | None) -> str:
    """Binary units, three significant figures: ``598.0 KiB``; exact below 1 KiB."""
    if n is None:
        return "-"
    n = float(n)
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1024:
        return f"{sign}{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            digits = 2 if n < 10 else 1
            return f"{sign}{n:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def fmt_count(n: int | float | None, unit: str = "") -> str:
    """Decimal SI prefixes for counts (parameters, MACs): ``3.49 G``."""
    if n is None:
        return "-"
    n = float(n)
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            digits = 2 if abs(value) < 10 else 1
            return f"{value:.{digits}f} {prefix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def fmt_seconds(s: float | None) -> str:
    """``3.21 ms``, ``412 µs``; three significant figures."""
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale or unit == "ns":
            value = s / scale
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def fmt_pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def fmt_ranges(ranges: Ranges, limit: int = 4) -> str:
    """Half-open tile ranges as inclusive text: ``[[0, 368], [400, 416]]`` -> ``0-367, 400-415``."""
    parts = [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in ranges]
    if len(parts) > limit:
        parts = [*parts[: limit - 1], f"... ({len(ranges) - limit + 1} more)", parts[-1]]
    return ", ".join(parts) if parts else "-"


def fmt_split(split: dict[str, int]) -> str:
    """Same spelling as :class:`tilec.costmodel.Split`'s ``str``: ``out_ch4xrows8``."""
    return "x".join(f"{a}{f}" for a, f in sorted(split.items()) if f > 1) or "single"


HEADROOM_TITLE = "headroom: what would still fit"
"""The title of a fitting plan's what-if answers (``Plan.what_if``), in every renderer."""


def fmt_answer(question: str, answer: object, none: str = "none in the searched range",
               status: str | None = None) -> str:
    """A what-if answer in the unit of its question (``none`` when there is no answer: for a
    headroom question, nothing was searched -- the compiled configuration itself fits). No answer
    with status ``exact`` means every value was proven not to fit: plainly "none"."""
    if answer is None:
        return "none" if status == "exact" else none
    if question == "max_image_size" and isinstance(answer, (list, tuple)) and len(answer) == 2:
        return f"{answer[0]}×{answer[1]}"
    if question == "min_bytes_per_tile" and isinstance(answer, (int, float)):
        return f"{fmt_bytes(answer)} ({int(answer):,} B)"
    return str(answer)


def verdict(plan: Plan) -> tuple[str, str]:
    """``(label, style)``: FITS / DOES NOT FIT / UNKNOWN, with the evidence letter when known."""
    if plan.status == STATUS_FITS:
        return "FITS", "green"
    label = "DOES NOT FIT" if plan.status == STATUS_DOES_NOT_FIT else "UNKNOWN"
    style = "red" if plan.status == STATUS_DOES_NOT_FIT else "yellow"
    if plan.diagnosis is not None:
        kind = plan.diagnosis.evidence.kind
        letter = EVIDENCE_KINDS.get(kind, "?")
        label += f" ({letter}: {kind.replace('_', ' ')})"
    return label, style


def model_line(plan: Plan) -> str:
    """``yolov4-tiny on gc200 · batch 2 · 416×416 · fp16``."""
    m, t = plan.model, plan.target
    parts = [f"{m.name} on {t.name}", f"batch {m.batch}"]
    if m.image_size:
        parts.append(f"{m.image_size[0]}×{m.image_size[1]}")
    parts.append(f"{m.precision} + per-layer map" if m.precision_map else m.precision)
    return " · ".join(parts)


def op_tile_bytes(op: OpPlacement) -> int:
    """Bytes per tile of one op while it runs: always + step + its outputs."""
    return sum(op.always.values()) + sum(op.step_bytes.values()) + sum(op.output_bytes)


def category_order(*maps: dict[str, int]) -> list[str]:
    """The known categories in contract order, then any others a plan uses, sorted."""
    seen = set()
    for m in maps:
        seen.update(m)
    extra = sorted(seen - set(CATEGORIES))
    return [*CATEGORIES, *extra]


# ----------------------------------------------------------------------------------- the chip
def tile_coords(tile: int, grid: list[int] | tuple[int, int]) -> tuple[int, int]:
    """(row, column) of ``tile`` in a row-major grid."""
    cols = int(grid[1])
    return tile // cols, tile % cols


def display_grid(plan: Plan) -> tuple[int, int]:
    """(rows, cols) to draw the tiles in, row-major in tile-id order.

    The target's own grid whenever it is a rectangle no more than 8 times wider than high (or
    high than wide): NorthPole's 16×16 mesh, the GC200's 16×92 (which its target file chooses for
    heatmaps; the IPU exchange is all-to-all, so the arrangement carries no distance). Otherwise --
    a one-row "grid", or a shape far from square -- the factorisation of the tile count closest to
    a 3:2 landscape rectangle (1472 tiles: 32 rows × 46 columns). Either way tiles run row-major
    in tile-id order; for the IPU it is a display grid, not the physical floorplan.
    """
    tiles = plan.target.tiles
    grid = plan.target.grid
    if len(grid) == 2 and grid[0] * grid[1] == tiles and grid[0] >= 1 and grid[1] >= 1:
        rows, cols = int(grid[0]), int(grid[1])
        if max(rows, cols) <= 8 * min(rows, cols):
            return rows, cols
    best = (1, tiles)
    best_score = float("inf")
    for rows in range(1, isqrt(tiles) + 1):
        if tiles % rows:
            continue
        cols = tiles // rows
        score = abs(np.log(cols / rows) - np.log(1.5))
        if score < best_score:
            best, best_score = (rows, cols), score
    if best[0] == 1 and tiles > 64:  # a prime tile count: a ragged last row beats one long row
        cols = int(np.ceil(np.sqrt(tiles * 1.5)))
        return int(np.ceil(tiles / cols)), cols
    return best


@dataclass
class TileDetail:
    """Per tile: the step of its own peak and the bytes by category there (from the buffers)."""

    categories: list[str]
    peak: np.ndarray  # [T] bytes at the tile's peak step
    peak_step: np.ndarray  # [T]
    by_category: np.ndarray  # [C, T] bytes by category at the tile's peak step


def tile_details(plan: Plan) -> TileDetail | None:
    """Recompute every tile's occupancy over the supersteps from ``plan.buffers``.

    Uses 2-D difference arrays (a buffer is a rectangle in (step, tile)), so the cost is
    O(ranges + steps × tiles) whatever the buffer count: milliseconds for 1472 tiles × 300 steps.
    Returns None when the plan has no buffers (a diagnosis made before any placement).
    """
    if not plan.buffers:
        return None
    tiles = plan.target.tiles
    steps = max(len(plan.steps), max(b.end for b in plan.buffers), 1)
    cats = category_order({b.category: 0 for b in plan.buffers})
    cat_index = {c: i for i, c in enumerate(cats)}
    rows: list[tuple[int, int, int, int, int, int]] = []  # (cat, first, end, start, stop, bytes)
    for b in plan.buffers:
        if b.bytes <= 0 or b.end <= b.first:
            continue
        for start, stop in b.tiles:
            rows.append((cat_index[b.category], b.first, b.end, start, stop, b.bytes))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 6)
    total = _occupancy(arr, steps, tiles)
    peak_step = np.argmax(total, axis=0) if steps else np.zeros(tiles, dtype=np.int64)
    peak = total[peak_step, np.arange(tiles)]
    by_cat = np.zeros((len(cats), tiles), dtype=np.int64)
    for ci in range(len(cats)):
        sel = arr[arr[:, 0] == ci]
        if len(sel):
            occ = _occupancy(sel, steps, tiles)
            by_cat[ci] = occ[peak_step, np.arange(tiles)]
    return TileDetail(categories=cats, peak=peak, peak_step=peak_step, by_category=by_cat)


def _occupancy(arr: np.ndarray, steps: int, tiles: int) -> np.ndarray:
    """[steps, tiles] bytes from rows (cat, first, end, start, stop, bytes)."""
    diff = np.zeros((steps + 1, tiles + 1), dtype=np.int64)
    first, end, start, stop, size = arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5]
    np.add.at(diff, (first, start), size)
    np.add.at(diff, (first, stop), -size)
    np.add.at(diff, (end, start), -size)
    np.add.at(diff, (end, stop), size)
    return np.cumsum(np.cumsum(diff, axis=0), axis=1)[:steps, :tiles]


def placed_memory(plan: Plan) -> MemorySummary | None:
    """The plan's memory summary when there is a placement to summarise, else None.

    A diagnosis made before any placement may still carry an all-zero summary; renderers treat it
    as no placement (no "peak tile 0 at step 0: 0 B" lines).
    """
    mem = plan.memory
    if mem is None or not mem.per_tile_peak or (mem.peak_bytes <= 0 and not plan.buffers):
        return None
    return mem


def op_at_step(plan: Plan, step: int | None, tile: int | None = None) -> str | None:
    """A short label of what runs at ``step``: its op, or ``"a (+2 more)"``.

    With ``tile``, an op running on that tile comes first (a label next to "tile 448 at step 1"
    must not name an op that runs elsewhere); if none runs there, ``"a, not on this tile"``.
    """
    if step is None or not (0 <= step < len(plan.steps)):
        return None
    ops = list(plan.steps[step].ops)
    if not ops:
        return None
    suffix = ""
    if tile is not None:
        where = {o.name: o.tiles for o in plan.ops if o.step == step}
        on = [n for n in ops if _on_tile(where.get(n, []), tile)]
        if on:
            ops = on + [n for n in ops if n not in on]
        elif where:  # ops without a placement (none recorded) say nothing either way
            suffix = ", not on this tile"
    label = ops[0] if len(ops) == 1 else f"{ops[0]} (+{len(ops) - 1} more)"
    return label + suffix


def _on_tile(ranges: Ranges, tile: int) -> bool:
    return any(a <= tile < b for a, b in ranges)


@dataclass
class Spot:
    """What occupies one tile at one superstep, grouped the way a user asks about it.

    ``running``: ops computing there at that step, each with its bytes on the tile (its step
    buffers -- inputs received, temporaries, weight slices in flight -- and its always-live
    bytes); ``tensors``: activation tensors held there (name, bytes), largest first;
    ``resident``: the always-live and spread bytes (weights, code, state, exchange) of every
    *other* op, which stay on the tile for the whole run, as (op, bytes), largest first.
    """

    tile: int
    step: int
    total: int
    running: list[tuple[str, int]]
    tensors: list[tuple[str, int]]
    resident: list[tuple[str, int]]

    @property
    def resident_bytes(self) -> int:
        return sum(b for _, b in self.resident)


def spot(plan: Plan, tile: int | None, step: int | None) -> Spot | None:
    """The :class:`Spot` at (``tile``, ``step``) from the plan's buffers; None without them."""
    if tile is None or step is None or not plan.buffers:
        return None
    running_names = {o.name for o in plan.ops if o.step == step and _on_tile(o.tiles, tile)}
    running: dict[str, int] = {}
    resident: dict[str, int] = {}
    tensors: dict[str, int] = {}
    total = 0
    for b in plan.buffers:
        if b.bytes <= 0 or not (b.first <= step < b.end) or not _on_tile(b.tiles, tile):
            continue
        total += b.bytes
        if b.kind == "tensor":
            tensors[b.owner] = tensors.get(b.owner, 0) + b.bytes
        elif b.owner in running_names or b.kind not in ("always", "spread"):
            running[b.owner] = running.get(b.owner, 0) + b.bytes
        else:
            resident[b.owner] = resident.get(b.owner, 0) + b.bytes

    def ranked(d: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))

    return Spot(tile=tile, step=step, total=total, running=ranked(running),
                tensors=ranked(tensors), resident=ranked(resident))


def top_tile_groups(plan: Plan, n: int = 5) -> list[tuple[int, int, int]]:
    """The ``n`` fullest groups of tiles as (start, stop, peak bytes), fullest first.

    Neighbouring tiles with the same peak are one group (a planner spreads an op evenly over a
    range, so "tiles 1296-1311" says more than five lines of equal numbers).
    """
    if plan.memory is None or not plan.memory.per_tile_peak:
        return []
    peaks = plan.memory.per_tile_peak
    groups: list[tuple[int, int, int]] = []
    start = 0
    for t in range(1, len(peaks) + 1):
        if t == len(peaks) or peaks[t] != peaks[start]:
            groups.append((start, t, int(peaks[start])))
            start = t
    groups.sort(key=lambda g: (-g[2], g[0]))
    return groups[:n]


def fmt_tiles(plan: Plan, ranges: Ranges, limit: int = 4) -> str:
    """Tile ranges as a user thinks of them: ``0-367`` on the IPU, ``rows 3-6 × cols 8-11`` for a
    rectangle on a mesh target."""
    if plan.target.placement == "rect" and ranges:
        cols = int(plan.target.grid[1])
        (a0, b0) = ranges[0]
        width = b0 - a0
        r0, c0 = divmod(a0, cols)
        is_rect = c0 + width <= cols and all(
            b - a == width and a == (r0 + i) * cols + c0 for i, (a, b) in enumerate(ranges))
        if is_rect:
            rows = f"row {r0}" if len(ranges) == 1 else f"rows {r0}-{r0 + len(ranges) - 1}"
            cs = f"col {c0}" if width == 1 else f"cols {c0}-{c0 + width - 1}"
            return f"{rows} × {cs}"
    return fmt_ranges(ranges, limit)


__all__ = [
    "EVIDENCE_TITLES",
    "HEADROOM_TITLE",
    "WHAT_IF_TITLES",
    "Spot",
    "TileDetail",
    "category_order",
    "display_grid",
    "fmt_answer",
    "fmt_bytes",
    "fmt_count",
    "fmt_pct",
    "fmt_ranges",
    "fmt_seconds",
    "fmt_split",
    "fmt_tiles",
    "model_line",
    "op_at_step",
    "op_tile_bytes",
    "placed_memory",
    "spot",
    "tile_coords",
    "tile_details",
    "top_tile_groups",
    "verdict",
]


# ------------------------------------------------------------------------------------- band
BAND_TITLE = "uncertainty band"
BAND_WORDS = {"robust": "robust", "borderline": "BORDERLINE", "incomplete": "band incomplete",
              "none": "no band"}


def band_tag(plan: Plan) -> str | None:
    """A few words for the verdict line: ``robust across the band``, ``BORDERLINE``; None when
    no band was computed (``--band off`` or an older plan)."""
    b = plan.band
    if b is None:
        return None
    return {"robust": "robust across the band", "borderline": "BORDERLINE (see band)",
            "incomplete": "band incomplete"}.get(b.status)


def band_lines(plan: Plan) -> list[str]:
    """What the terminal and the HTML say about the band, one line each: the summary, each flip,
    the latency range, the notes."""
    b = plan.band
    if b is None:
        return []
    lines = []
    if b.status == "borderline":
        lines.append(f"borderline: {'fits' if b.verdict == 'fits' else 'does not fit'} at the "
                     f"nominal constants, not everywhere in the band")
        lines.extend(f"flips: {f.text}" for f in b.flips)
    else:
        lines.append(b.summary)
    if b.ranges:
        n = len(b.settings)
        lines.append(f"checked {n} setting{'s' if n != 1 else ''} of {len(b.ranges)} constants "
                     f"(the target's [ranges]; seed {b.seed})")
    if b.latency_min_seconds is not None and b.latency_max_seconds is not None:
        lines.append(f"latency over the band: {fmt_seconds(b.latency_min_seconds)} .. "
                     f"{fmt_seconds(b.latency_max_seconds)} (settings that fit)")
    lines.extend(f"note: {n}" for n in b.notes)
    return lines


def band_setting_row(s) -> tuple[str, str, str, str]:
    """(setting, values moved, result, how) of one band evaluation, as text."""
    moved = ", ".join(f"{k}={fmt_num(v)}" for k, v in s.values.items())
    result = s.result.replace("_", " ")
    how = s.by + (f" ({s.evidence})" if s.evidence else "")
    if s.peak_bytes is not None:
        how += f", peak {fmt_bytes(s.peak_bytes)}"
    return s.label, moved, result, how


def fmt_num(v: float) -> str:
    """``150``, ``0.05``, ``5.718``: integers plain, other values to four significant figures."""
    return f"{int(v)}" if float(v).is_integer() else f"{v:.4g}"


def io_labels(plan: Any) -> tuple[str, str]:
    """What the latency's I/O terms are: the host link's two directions (host->device: the model's
    inputs, e.g. uint8 images; device->host: its outputs, e.g. detections after an on-chip NMS),
    or a framebuffer's input and output."""
    if getattr(plan.target, "io_location", "host") == "host":
        return "host→device", "device→host"
    return "input", "output"
