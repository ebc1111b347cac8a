"""Turn a placement into the plain-data :class:`~tilec.plan.model.Plan` the renderers read.

Everything here is bookkeeping: one :class:`Buffer` per (op, lifetime, category) and per activation
buffer, each with its tiles and half-open lifetime; the superstep table; the latency; and the memory
summary recomputed from the buffers alone (the same numbers the verifier will recompute on its own).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tilec import __version__
from tilec.costmodel import CATEGORIES, Target
from tilec.opinfo import GraphInfo
from tilec.plan.model import (
    Buffer,
    Latency,
    MemorySummary,
    ModelInfo,
    OpPlacement,
    Plan,
    Step,
    TargetInfo,
)
from tilec.plan.partition import ceil_div
from tilec.plan.place import Slot
from tilec.plan.problem import Problem


def model_info(info: GraphInfo, passes: Sequence[str]) -> ModelInfo:
    meta = dict(info.meta)
    image = meta.get("image_size")
    return ModelInfo(
        name=str(meta.get("name") or info.name), source=str(meta.get("source") or info.name),
        batch=int(meta.get("batch") or 1), image_size=list(image) if image else None,
        precision=str(meta.get("precision") or ""),
        input_shapes={k: list(v) for k, v in dict(meta.get("input_shapes") or {}).items()},
        ops=len(info.ops), params=int(info.params), macs=int(info.macs),
        weight_bytes=int(info.weight_bytes), passes=list(passes), inputs=list(info.inputs),
        outputs=list(info.outputs), precision_map=meta.get("precision_map"),
        input_dtypes={str(k): str(v) for k, v in dict(meta.get("input_dtypes") or {}).items()},
        host=meta.get("host"))


def target_info(target: Target) -> TargetInfo:
    return TargetInfo(name=target.name, tiles=int(target.tiles),
                      bytes_per_tile=int(target.bytes_per_tile),
                      reserved_bytes_per_tile=int(target.reserved_bytes_per_tile),
                      budget_per_tile=int(target.budget_per_tile),
                      grid=[int(target.grid[0]), int(target.grid[1])],
                      placement=str(target.placement), clock_hz=float(target.clock_hz),
                      io_location=str(getattr(target, "io_location", "host")))


def _ranges(pos) -> list[list[int]]:
    return [[int(a), int(b)] for a, b in pos.ranges]


def placements_and_buffers(problem: Problem, choice: Sequence[Slot]
                           ) -> tuple[list[OpPlacement], list[Buffer], list[Step]]:
    """Ops, buffers and steps of a complete choice (one slot per group)."""
    info, target = problem.info, problem.target
    steps_n = problem.steps
    tiles_all = [[0, int(target.tiles)]]
    ops: dict[str, OpPlacement] = {}
    buffers: list[Buffer] = []
    step_rows: dict[int, Step] = {}
    by_name = info.op_by_name
    for g, (oi, pos) in zip(problem.groups, choice, strict=False):
        opt = g.options[oi]
        ranges = _ranges(pos)
        for member, cand in zip(g.members, opt.cands, strict=False):
            op = by_name[member]
            s = problem.step_of[member]
            cost = cand.cost
            ops[member] = OpPlacement(
                name=member, op_type=op.op_type, kind=op.kind, step=s,
                split=cand.split.as_dict(), tiles=ranges, inputs=list(op.inputs),
                outputs=list(op.outputs),
                always={k: int(v) for k, v in sorted(cost.always.items()) if int(v)},
                step_bytes={k: int(v) for k, v in sorted(cost.step.items()) if int(v)},
                output_bytes=[int(o) for o in cand.outputs], macs=int(op.macs),
                compute_cycles=int(cost.compute_cycles),
                exchange_cycles=int(cost.exchange_cycles), activation=op.activation,
                weight_bits=op.weight_bits, act_bits=op.act_bits,
                shape=list(pos.shape) if pos.shape else None,
                spread={k: int(v) for k, v in sorted(cost.spread.items()) if int(v)},
                group=g.leader if member != g.leader else None,
                in_place=bool(cost.in_place))
            sync = int(target.cost_model.sync_cycles(opt.tiles)) if cand.cycles > 0 else 0
            step_rows[s] = Step(index=s, ops=[member], compute_cycles=int(cost.compute_cycles),
                                exchange_cycles=int(cost.exchange_cycles), sync_cycles=sync)
            for cat, v in sorted(cost.always.items()):
                if int(v):
                    buffers.append(Buffer(id=f"{member}/always/{cat}", owner=member,
                                          kind="always", category=cat, tiles=ranges,
                                          bytes=int(v), first=0, end=steps_n))
            for cat, v in sorted(cost.step.items()):
                if int(v):
                    buffers.append(Buffer(id=f"{member}/step/{cat}", owner=member, kind="step",
                                          category=cat, tiles=ranges, bytes=int(v), first=s,
                                          end=s + 1))
            for cat, v in sorted(cost.spread.items()):
                if int(v):
                    buffers.append(Buffer(id=f"{member}/spread/{cat}", owner=member,
                                          kind="spread", category=cat, tiles=tiles_all,
                                          bytes=ceil_div(int(v), int(target.tiles)), first=0,
                                          end=steps_n))
        # activation buffers held on this footprint
        io_k = 0
        for iv, b in zip(g.intervals, opt.bumps, strict=False):
            if iv.kind in ("step", "tail"):
                continue
            spec = problem.buffers[iv.owner]
            end = spec.end
            if spec.reused_by is not None and spec.root in opt.in_place:
                end -= 1  # overwritten in place at its last step
            if iv.kind == "input":
                io = opt.io[io_k]
                io_k += 1
                category = sorted(io, key=lambda c: (-io[c], c))[0] if io else "io"
                ops[spec.owner].held_inputs[spec.root] = int(b)
            else:
                category = "act_out"
            buffers.append(Buffer(
                id=f"tensor/{spec.root}", owner=spec.root, kind="tensor", category=category,
                tiles=ranges, bytes=int(b), first=spec.first, end=end,
                tensors=list(spec.tensors),
                reuses=f"tensor/{spec.reuses}" if spec.reuses in opt.in_place else None))
    ordered_ops = [ops[name] for name in problem.schedule.order]
    steps = [step_rows[s] for s in range(steps_n)]
    buffers.sort(key=lambda b: b.id)
    return ordered_ops, buffers, steps


def occupancy(buffers: Sequence[Buffer], tiles: int, steps: int) -> np.ndarray:
    """Bytes per tile at each step, ``[tiles, steps]``, from the buffers (2-D difference array)."""
    diff = np.zeros((tiles + 1, steps + 1), dtype=np.int64)
    rows, cols, vals = [], [], []
    for b in buffers:
        if b.bytes <= 0 or b.end <= b.first:
            continue
        for a, c in b.tiles:
            rows += [a, c, a, c]
            cols += [b.first, b.first, b.end, b.end]
            vals += [b.bytes, -b.bytes, -b.bytes, b.bytes]
    if rows:
        np.add.at(diff, (np.array(rows), np.array(cols)), np.array(vals, dtype=np.int64))
    return np.cumsum(np.cumsum(diff, axis=0), axis=1)[:tiles, :steps]


def memory_summary(buffers: Sequence[Buffer], tiles: int, steps: int,
                   occ: np.ndarray | None = None) -> MemorySummary:
    """Peak, per-tile peaks, and the worst tile's and the chip's timelines by category."""
    occ = occupancy(buffers, tiles, steps) if occ is None else occ
    if occ.size == 0:
        return MemorySummary(peak_bytes=0, peak_tile=0, peak_step=0, per_tile_peak=[0] * tiles,
                             worst_tile_timeline=[], chip_timeline=[])
    flat = int(np.argmax(occ))
    pt, ps = divmod(flat, steps)
    per_tile = occ.max(axis=1)
    cats = sorted({b.category for b in buffers}, key=lambda c: (
        CATEGORIES.index(c) if c in CATEGORIES else len(CATEGORIES), c))
    worst = {c: np.zeros(steps, dtype=np.int64) for c in cats}
    chip = {c: np.zeros(steps + 1, dtype=np.int64) for c in cats}
    for b in buffers:
        if b.bytes <= 0 or b.end <= b.first:
            continue
        n = sum(c - a for a, c in b.tiles)
        chip[b.category][b.first] += b.bytes * n
        chip[b.category][b.end] -= b.bytes * n
        if any(a <= pt < c for a, c in b.tiles):
            worst[b.category][b.first:b.end] += b.bytes
    chip_c = {c: np.cumsum(v)[:steps] for c, v in chip.items()}
    worst_tl = [{c: int(worst[c][s]) for c in cats if worst[c][s]} for s in range(steps)]
    chip_tl = [{c: int(chip_c[c][s]) for c in cats if chip_c[c][s]} for s in range(steps)]
    return MemorySummary(peak_bytes=int(occ[pt, ps]), peak_tile=int(pt), peak_step=int(ps),
                         per_tile_peak=[int(v) for v in per_tile],
                         worst_tile_timeline=worst_tl, chip_timeline=chip_tl,
                         by_category_at_peak=dict(worst_tl[ps]) if worst_tl else {})


def latency(steps: Sequence[Step], target: Target, info: GraphInfo, batch: int) -> Latency:
    cycles = sum(s.cycles for s in steps)
    breakdown = getattr(target.cost_model, "io_breakdown", None)
    if breakdown is not None:
        t_in, t_out = (float(x) for x in breakdown(info))
    else:  # a cost model without the optional hook: all I/O counted as input
        t_in, t_out = float(target.cost_model.io_seconds(info)), 0.0
    io = t_in + t_out
    seconds = cycles / float(target.clock_hz) + io
    return Latency(cycles=int(cycles), seconds=seconds, io_seconds=io,
                   throughput_per_s=(batch / seconds) if seconds > 0 else 0.0,
                   input_seconds=t_in, output_seconds=t_out)


def new_plan(info: GraphInfo, target: Target, passes: Sequence[str], status: str) -> Plan:
    return Plan(status=status, model=model_info(info, passes), target=target_info(target),
                tilec_version=__version__)
