"""A Chrome trace-event JSON of the schedule, for Perfetto (ui.perfetto.dev) and chrome://tracing.

Format: the "JSON Object Format" of the Trace Event Format -- ``{"traceEvents": [...], ...}`` with
complete events (``"ph": "X"``, ``ts`` and ``dur`` in microseconds), counter events (``"C"``),
instant events (``"i"``) and metadata events (``"M"``) naming processes and threads. Times are the
planner's *estimates* (cycles / clock), not measurements.

Tracks (a process is a group of tracks in the UI):

* **schedule** -- one track: a slice per superstep (``step 12: conv_37``) with three nested slices,
  its phases in the order they run: ``exchange`` (inputs and weights move to the op's tiles),
  ``compute``, ``sync`` (the barrier that ends the superstep, as in tilec.costmodel).
* **tiles** -- one track per band of neighbouring tiles (16 bands; a NorthPole band is one mesh
  row): the ops running on that band, so the picture shows which part of the chip works when.
  Ops that share a superstep and a band get extra lanes, so slices on a track never overlap.
* **memory** -- counters per superstep: bytes by category on the worst tile and over the whole
  chip, and the number of tiles busy.
* a global instant event at the worst step of a diagnosis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tilec.plan.model import OpPlacement, Plan, tiles_in
from tilec.report.data import (
    category_order,
    fmt_bytes,
    fmt_split,
    fmt_tiles,
    model_line,
    op_tile_bytes,
    placed_memory,
    verdict,
)

PID_SCHEDULE, PID_TILES, PID_MEMORY = 1, 2, 3
BANDS = 16
LANES = 64  # tid = band * LANES + lane


def write_trace(plan: Plan, path: str | Path) -> None:
    """Write the trace of ``plan`` to ``path`` (compact JSON, deterministic)."""
    text = json.dumps(trace_events(plan), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    Path(path).write_text(text + "\n")


def trace_events(plan: Plan) -> dict[str, Any]:
    """The trace as a JSON-ready dict."""
    if plan.chips is not None:  # several chips: one track per chip (tilec.report.chips_trace)
        from tilec.report.chips_trace import chips_trace_events

        return chips_trace_events(plan)
    clock = plan.target.clock_hz
    starts = [0]
    for step in plan.steps:
        starts.append(starts[-1] + step.cycles)

    def us(cycles: int) -> float:
        return round(cycles / clock * 1e6, 3)

    meta: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    label, _ = verdict(plan)
    _process(meta, PID_SCHEDULE, f"schedule · {model_line(plan)} · {label}", 0)
    _thread(meta, PID_SCHEDULE, 1, "supersteps (exchange, compute, sync)", 0)

    for step in plan.steps:
        t0 = starts[step.index]
        t_end = starts[step.index + 1]
        name = f"step {step.index}" + (f": {step.ops[0]}" if step.ops else "")
        if len(step.ops) > 1:
            name += f" (+{len(step.ops) - 1})"
        events.append(_slice(PID_SCHEDULE, 1, name, us(t0), us(t_end) - us(t0), "superstep", {
            "ops": step.ops, "cycles": step.cycles, "compute_cycles": step.compute_cycles,
            "exchange_cycles": step.exchange_cycles, "sync_cycles": step.sync_cycles}))
        t = t0
        for phase, cycles in (("exchange", step.exchange_cycles),
                              ("compute", step.compute_cycles), ("sync", step.sync_cycles)):
            if cycles > 0:
                events.append(_slice(PID_SCHEDULE, 1, phase, us(t), us(t + cycles) - us(t), phase,
                                     {"cycles": cycles}))
            t += cycles

    # ----- ops on tile bands
    tiles = plan.target.tiles
    band_size = -(-tiles // BANDS)
    if plan.target.placement == "rect" and plan.target.grid[0] <= BANDS:
        band_size = int(plan.target.grid[1])  # one band per mesh row
    bands = -(-tiles // band_size)
    if plan.ops:
        _process(meta, PID_TILES, "tiles (ops by tile band)", 1)
    used_lanes: dict[tuple[int, int], int] = {}  # (step, band) -> lanes taken
    named: set[int] = set()
    for op in sorted(plan.ops, key=lambda o: (o.step, o.name)):
        if op.step >= len(plan.steps):
            continue
        t0 = starts[op.step]
        cycles = min(op.exchange_cycles + op.compute_cycles, plan.steps[op.step].cycles)
        for band in range(bands):
            lo, hi = band * band_size, min(tiles, (band + 1) * band_size)
            here = sum(max(0, min(b, hi) - max(a, lo)) for a, b in op.tiles)
            if not here:
                continue
            lane = used_lanes.get((op.step, band), 0)
            used_lanes[(op.step, band)] = lane + 1
            tid = band * LANES + min(lane, LANES - 1)
            if tid not in named:
                named.add(tid)
                suffix = f" (lane {lane + 1})" if lane else ""
                _thread(meta, PID_TILES, tid, f"tiles {lo}-{hi - 1}{suffix}", tid)
            events.append(_slice(PID_TILES, tid, op.name, us(t0), us(t0 + cycles) - us(t0),
                                 op.kind, _op_args(plan, op, here)))

    # ----- memory counters
    mem = placed_memory(plan)
    if mem is not None and plan.steps:
        _process(meta, PID_MEMORY, "memory (bytes per superstep)", 2)
        cats = category_order(*mem.worst_tile_timeline, *mem.chip_timeline)
        busy = [0] * len(plan.steps)
        for op in plan.ops:
            if op.step < len(busy):
                busy[op.step] += tiles_in(op.tiles)
        for s in range(len(plan.steps)):
            ts = us(starts[s])
            if s < len(mem.worst_tile_timeline):
                events.append(_counter(f"tile {mem.peak_tile} (worst) bytes", ts,
                                       mem.worst_tile_timeline[s], cats))
            if s < len(mem.chip_timeline):
                events.append(_counter("chip bytes", ts, mem.chip_timeline[s], cats))
            events.append({"ph": "C", "pid": PID_MEMORY, "tid": 0, "name": "tiles busy",
                           "ts": ts, "args": {"tiles": busy[s]}})
        end = us(starts[-1])
        zero = {c: 0 for c in cats}
        events.append(_counter(f"tile {mem.peak_tile} (worst) bytes", end, zero, cats))
        events.append(_counter("chip bytes", end, zero, cats))
        events.append({"ph": "C", "pid": PID_MEMORY, "tid": 0, "name": "tiles busy", "ts": end,
                       "args": {"tiles": 0}})

    # ----- the diagnosis, as a global marker
    d = plan.diagnosis
    if d is not None:
        step = d.worst_step if d.worst_step is not None and d.worst_step < len(plan.steps) else 0
        text = f"{label}: {d.evidence.summary}"
        if d.over_by is not None and d.worst_tile is not None:
            text = f"tile {d.worst_tile} over by {fmt_bytes(d.over_by)}; " + text
        events.append({"ph": "i", "s": "g", "pid": PID_SCHEDULE, "tid": 1, "name": text,
                       "ts": us(starts[step]) if plan.steps else 0.0,
                       "args": {"evidence": d.evidence.kind, "worst_op": d.worst_op}})

    events.sort(key=lambda e: (e["pid"], e["tid"], e["ts"], -e.get("dur", 0), e["name"]))
    return {
        "traceEvents": meta + events,
        "displayTimeUnit": "ns",
        "otherData": {
            "tilec_version": plan.tilec_version, "model": plan.model.name,
            "target": plan.target.name, "batch": plan.model.batch,
            "precision": plan.model.precision, "status": plan.status,
            "clock_hz": plan.target.clock_hz,
            "latency_s": plan.latency.seconds if plan.latency else None,
            "io_s": plan.latency.io_seconds if plan.latency else None,
            "note": "times are tilec's estimates (cycles / clock), not measurements",
        },
    }


# ----------------------------------------------------------------------------------- pieces
def _process(meta: list[dict[str, Any]], pid: int, name: str, order: int) -> None:
    meta.append({"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": name}})
    meta.append({"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index",
                 "args": {"sort_index": order}})


def _thread(meta: list[dict[str, Any]], pid: int, tid: int, name: str, order: int) -> None:
    meta.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}})
    meta.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                 "args": {"sort_index": order}})


def _slice(pid: int, tid: int, name: str, ts: float, dur: float, cat: str,
           args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": ts,
            "dur": round(max(dur, 0.0), 3), "args": args}


def _counter(name: str, ts: float, values: dict[str, int], cats: list[str]) -> dict[str, Any]:
    return {"ph": "C", "pid": PID_MEMORY, "tid": 0, "name": name, "ts": ts,
            "args": {c: int(values.get(c, 0)) for c in cats}}


def _op_args(plan: Plan, op: OpPlacement, in_band: int) -> dict[str, Any]:
    return {"op_type": op.op_type, "step": op.step, "tiles": fmt_tiles(plan, op.tiles),
            "tile_count": tiles_in(op.tiles), "tiles_in_band": in_band,
            "split": fmt_split(op.split), "bytes_per_tile": op_tile_bytes(op), "macs": op.macs,
            "compute_cycles": op.compute_cycles, "exchange_cycles": op.exchange_cycles}
