"""Synthetic but internally consistent Plans for the report tests.

Until real plans exist every renderer is tested on these; afterwards they still cover cases a zoo
model may not produce (a rectangle placement, an over-budget partial placement, a diagnosis made
before any placement). They are built the way a planner would build them -- ops placed on tile
ranges, buffers with lifetimes, then the memory summary *computed from the buffers* (with a plain
slice-and-add here, independent of tilec.report.data's difference arrays) -- so the numbers in a
report are consistent with each other and a renderer bug shows up as a mismatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from tilec.costmodel import CATEGORIES
from tilec.plan.model import (
    STATUS_DOES_NOT_FIT,
    STATUS_FITS,
    STATUS_UNKNOWN,
    Buffer,
    Diagnosis,
    Evidence,
    Latency,
    MemorySummary,
    ModelInfo,
    OpPlacement,
    Plan,
    SolverInfo,
    Step,
    TargetInfo,
    Verification,
    WhatIf,
)

GC200_BYTES = 638_976  # Poplar's OOM message: "tiles only have 638976 bytes of memory"
GC200_RESERVED = 26_624  # fixture value (a modelling choice of the fixture, not of a target)
NP_BYTES = 768 * 1024  # NorthPole "768KB / core", taken as KiB for the fixture
NP_RESERVED = 16_384


@dataclass
class OpSpec:
    """One op to place: what a planner would know of it, plus where the fixture puts it."""

    name: str
    op_type: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    tiles: list[list[int]]
    split: dict[str, int]
    always: dict[str, int]
    step_bytes: dict[str, int]
    output_bytes: list[int]
    macs: int
    params: int = 0
    step: int | None = None  # default: its position in the list (one op per superstep)
    activation: str | None = None
    spread: dict[str, int] = field(default_factory=dict)  # total bytes over the whole array


def gc200_target(bytes_per_tile: int = GC200_BYTES, grid: list[int] | None = None) -> TargetInfo:
    return TargetInfo(name="gc200", tiles=1472, bytes_per_tile=bytes_per_tile,
                      reserved_bytes_per_tile=GC200_RESERVED,
                      budget_per_tile=bytes_per_tile - GC200_RESERVED,
                      grid=grid or [16, 92], placement="range", clock_hz=1.33e9)


def northpole_target() -> TargetInfo:
    return TargetInfo(name="northpole", tiles=256, bytes_per_tile=NP_BYTES,
                      reserved_bytes_per_tile=NP_RESERVED, budget_per_tile=NP_BYTES - NP_RESERVED,
                      grid=[16, 16], placement="rect", clock_hz=400e6)


# ----------------------------------------------------------------------------------- building
def build_plan(specs: list[OpSpec], target: TargetInfo, *, name: str, source: str, batch: int,
               image_size: list[int] | None, precision: str, status: str = STATUS_FITS,
               passes: list[str] | None = None, notes: list[str] | None = None,
               diagnosis: Diagnosis | None = None, solver: SolverInfo | None = None) -> Plan:
    """Place ``specs`` as given, derive buffers, steps, the memory summary and the latency."""
    steps_of = [s.step if s.step is not None else i for i, s in enumerate(specs)]
    n_steps = max(steps_of) + 1 if specs else 0
    producer = {out: (i, k) for i, s in enumerate(specs) for k, out in enumerate(s.outputs)}
    last_read: dict[str, int] = {}
    for i, s in enumerate(specs):
        for t in s.inputs:
            if t in producer:
                last_read[t] = max(last_read.get(t, -1), steps_of[i])

    ops, buffers = [], []
    for i, s in enumerate(specs):
        step = steps_of[i]
        ops.append(OpPlacement(
            name=s.name, op_type=s.op_type, kind=s.kind, step=step, split=dict(s.split),
            tiles=[list(r) for r in s.tiles], inputs=list(s.inputs), outputs=list(s.outputs),
            always=dict(s.always), step_bytes=dict(s.step_bytes),
            output_bytes=list(s.output_bytes), macs=s.macs,
            compute_cycles=max(1, s.macs // (128 * _count(s.tiles))) if s.macs else 200,
            exchange_cycles=sum(s.step_bytes.values()) // 8 + 100, activation=s.activation,
            weight_bits=16 if precision == "fp16" else 8, act_bits=16 if precision == "fp16" else 8,
        ))
        for cat, b in sorted(s.always.items()):
            buffers.append(Buffer(id=f"{s.name}/always/{cat}", owner=s.name, kind="always",
                                  category=cat, tiles=_copy(s.tiles), bytes=b, first=0,
                                  end=n_steps))
        for cat, b in sorted(s.step_bytes.items()):
            buffers.append(Buffer(id=f"{s.name}/step/{cat}", owner=s.name, kind="step",
                                  category=cat, tiles=_copy(s.tiles), bytes=b, first=step,
                                  end=step + 1))
        for k, out in enumerate(s.outputs):
            end = max(last_read.get(out, step), step) + 1
            if out.startswith("output"):
                end = n_steps  # graph outputs stay until the run ends
            buffers.append(Buffer(id=f"{out}", owner=out, kind="tensor", category="act_out",
                                  tiles=_copy(s.tiles), bytes=s.output_bytes[k], first=step,
                                  end=end))
        for cat, total in sorted(s.spread.items()):
            buffers.append(Buffer(id=f"{s.name}/spread/{cat}", owner=s.name, kind="spread",
                                  category=cat, tiles=[[0, target.tiles]],
                                  bytes=-(-total // target.tiles), first=0, end=n_steps))
    _lay_out(buffers, target.tiles)

    steps = []
    for st in range(n_steps):
        here = [op for op in ops if op.step == st]
        tiles = sum(_count(op.tiles) for op in here)
        steps.append(Step(index=st, ops=[op.name for op in here],
                          compute_cycles=max((op.compute_cycles for op in here), default=0),
                          exchange_cycles=max((op.exchange_cycles for op in here), default=0),
                          sync_cycles=150 + tiles // 8))
    memory = summarize(buffers, n_steps, target.tiles) if buffers else None
    cycles = sum(s.cycles for s in steps)
    io = 2.0e-4 * batch
    seconds = cycles / target.clock_hz + io
    latency = Latency(cycles=cycles, seconds=seconds, io_seconds=io,
                      throughput_per_s=batch / seconds) if steps else None
    fits = status == STATUS_FITS
    return Plan(
        status=status,
        model=ModelInfo(name=name, source=source, batch=batch, image_size=image_size,
                        precision=precision, input_shapes={"images": [batch, 3, *image_size]}
                        if image_size else {"input": [batch, 16]},
                        ops=len(specs), params=sum(s.params for s in specs),
                        macs=sum(s.macs for s in specs),
                        weight_bytes=sum(s.params for s in specs) * (2 if precision == "fp16"
                                                                      else 1),
                        passes=list(passes or [])),
        target=target, steps=steps, ops=ops, buffers=buffers, memory=memory,
        latency=latency,
        solver=solver or SolverInfo(status="OPTIMAL", objective=float(cycles),
                                    bound=float(cycles), gap=0.0, time_limit=10.0),
        verification=Verification(ok=True, checks=["capacity", "lifetimes", "offsets",
                                                    "coverage"]) if fits else None,
        diagnosis=diagnosis, notes=list(notes or []), tilec_version="0.1.0",
    )


def summarize(buffers: list[Buffer], steps: int, tiles: int) -> MemorySummary:
    """Per tile and step occupancy by plain slicing (independent of tilec.report.data)."""
    cats = list(CATEGORIES)
    occ = np.zeros((steps, tiles, len(cats)), dtype=np.int64)
    for b in buffers:
        for start, stop in b.tiles:
            occ[b.first:b.end, start:stop, cats.index(b.category)] += b.bytes
    total = occ.sum(axis=2)
    per_tile_peak = total.max(axis=0)
    peak_bytes = int(per_tile_peak.max())
    # first (step, tile) in step-major order reaching the peak
    flat = int(np.flatnonzero(total.reshape(-1) == peak_bytes)[0])
    peak_step, peak_tile = divmod(flat, tiles)
    worst = [{c: int(occ[s, peak_tile, i]) for i, c in enumerate(cats)} for s in range(steps)]
    chip = [{c: int(occ[s, :, i].sum()) for i, c in enumerate(cats)} for s in range(steps)]
    at_peak = {c: int(occ[peak_step, peak_tile, i]) for i, c in enumerate(cats)
               if occ[peak_step, peak_tile, i]}
    return MemorySummary(peak_bytes=peak_bytes, peak_tile=peak_tile, peak_step=peak_step,
                         per_tile_peak=[int(x) for x in per_tile_peak],
                         worst_tile_timeline=worst, chip_timeline=chip,
                         by_category_at_peak=at_peak)


def _lay_out(buffers: list[Buffer], tiles: int) -> None:
    """Give every buffer one offset: first fit against the buffers it meets in time and space.

    Simple and valid by construction (no two buffers that share a tile and a superstep overlap
    in addresses), which is all the fixture needs: the memory-map view draws these offsets.
    """
    placed: list[tuple[Buffer, int]] = []
    for b in sorted(buffers, key=lambda b: (b.first, -b.bytes, b.id)):
        busy = sorted((o, o + p.bytes) for p, o in placed
                      if p.first < b.end and b.first < p.end and _meet(p.tiles, b.tiles))
        offset = 0
        for lo, hi in busy:
            if offset + b.bytes <= lo:
                break
            offset = max(offset, hi)
        placed.append((b, offset))
        b.offsets = [[start, stop, offset] for start, stop in b.tiles]


def _meet(a: list[list[int]], b: list[list[int]]) -> bool:
    return any(x0 < y1 and y0 < x1 for x0, x1 in a for y0, y1 in b)


def _count(ranges: list[list[int]]) -> int:
    return sum(b - a for a, b in ranges)


def _copy(ranges: list[list[int]]) -> list[list[int]]:
    return [list(r) for r in ranges]


# ----------------------------------------------------------------------------------- the plans
_ACTS = ["LeakyRelu", "Mish", "Relu", "SiLU"]


def _conv_specs(n: int, tiles: int, *, seed: int, width: int, image: int, batch: int,
                bytes_per_weight: int, rect_grid: tuple[int, int] | None = None,
                spread_weights: bool = False, scale: float = 1.0) -> list[OpSpec]:
    """A YOLO-like chain: convs with stride-2 downsampling, a concat every few layers."""
    rng = np.random.default_rng(seed)
    specs: list[OpSpec] = []
    prev = "images"
    hw = image
    ch = 3
    branch: str | None = None
    load = np.zeros(tiles, dtype=np.int64)  # always-live bytes per tile so far
    for i in range(n):
        if i % 7 == 6 and branch is not None:
            name = f"neck.concat{i}"
            out = f"t{i}"
            t = _place(i, tiles, 64, rng, rect_grid, load)
            per_tile = int(scale * batch * ch * 2 * hw * hw * 2 // _count(t) // 4)
            specs.append(OpSpec(name=name, op_type="Concat", kind="concat", inputs=[prev, branch],
                                outputs=[out], tiles=t, split={"out_ch": _count(t)},
                                always={"code": 1_024, "state": 256},
                                step_bytes={"act_in": per_tile // 2}, output_bytes=[per_tile],
                                macs=0))
            ch *= 2
            prev, branch = out, None
            continue
        stride2 = i % 4 == 1 and hw > 13
        out_ch = min(512, max(width, ch * (2 if stride2 else 1)))
        new_hw = hw // 2 if stride2 else hw
        k = 3 if i % 3 != 2 else 1
        params = out_ch * ch * k * k + out_ch
        macs = batch * out_ch * ch * k * k * new_hw * new_hw
        # enough tiles for the work, and for the activations to take at most ~1/3 of a tile
        act_total = scale * batch * (ch * hw * hw + out_ch * new_hw * new_hw) * 2
        want = max(macs / 4e6, act_total / 150_000, params * bytes_per_weight / 40_000, 16)
        n_tiles = int(min(tiles, 2 ** int(np.ceil(np.log2(want)))))
        t = _place(i, tiles, n_tiles, rng, rect_grid, load)
        count = _count(t)
        out_bytes = int(scale * batch * out_ch * new_hw * new_hw * 2 // count)
        in_bytes = int(scale * batch * ch * hw * hw * 2 // count * (1.3 if k == 3 else 1.0))
        weights = params * bytes_per_weight
        always = {"code": int(rng.integers(2_000, 6_000)), "state": int(rng.integers(300, 1_500)),
                  "exchange": int(rng.integers(500, 2_000))}
        spread = {}
        step_b = {"act_in": in_bytes, "temp": int(out_bytes * 0.5)}
        if spread_weights:
            spread = {"weights": weights}
            step_b["code"] = int(rng.integers(4_000, 12_000))
            del always["code"]
        else:
            always["weights"] = -(-weights // count)
        for a, b in t:
            load[a:b] += sum(always.values())
        name = f"backbone.conv{i}" if i < n * 0.6 else f"head.conv{i}"
        out = f"t{i}" if i < n - 1 else "output0"
        specs.append(OpSpec(name=name, op_type=f"Conv{_ACTS[i % 4]}", kind="conv",
                            inputs=[prev], outputs=[out], tiles=t, split=_split_for(count, i),
                            always=always, step_bytes=step_b,
                            output_bytes=[out_bytes], macs=macs, params=params,
                            activation=_ACTS[i % 4], spread=spread))
        if i % 7 == 3:
            branch = out
        prev, hw, ch = out, new_hw, out_ch
    return specs


def _split_for(count: int, i: int) -> dict[str, int]:
    if count == 1:
        return {}
    if i % 2 == 0 or count < 4:
        return {"out_ch": count}
    return {"out_ch": count // 4, "rows": 4}


def _place(i: int, tiles: int, n_tiles: int, rng: np.random.Generator,
           rect_grid: tuple[int, int] | None, load: np.ndarray) -> list[list[int]]:
    """Contiguous range (IPU) or an h × w rectangle of the mesh (NorthPole)."""
    if rect_grid is None:
        # greedy balance, as a planner would: the 16-aligned window whose fullest tile holds the
        # least always-live bytes so far (ties broken by a seeded draw)
        n_tiles = min(n_tiles, tiles)
        starts = np.arange(0, tiles - n_tiles + 1, 16)
        worst = np.array([load[s:s + n_tiles].max() for s in starts])
        best = starts[worst == worst.min()]
        start = int(best[rng.integers(0, len(best))])
        return [[start, start + n_tiles]]
    rows, cols = rect_grid
    side = max(1, int(np.sqrt(n_tiles)))
    h = min(rows, side)
    w = min(cols, max(1, n_tiles // h))
    r0 = int(rng.integers(0, rows - h + 1))
    c0 = int(rng.integers(0, cols - w + 1))
    return [[(r0 + r) * cols + c0, (r0 + r) * cols + c0 + w] for r in range(h)]


def _build_gc200_plan() -> Plan:
    """A fitting YOLO-like plan on all 1472 GC200 tiles, ~60 supersteps, two ops sharing a step."""
    specs = _conv_specs(60, 1472, seed=7, width=32, image=416, batch=2, bytes_per_weight=2)
    specs[11].step = 10  # two independent ops on one superstep (different tiles)
    specs[11].inputs = list(specs[9].outputs)
    for j in range(11, len(specs)):
        specs[j].step = j - 1
    return build_plan(specs, gc200_target(), name="yolo-synth", source="yolo-synth.onnx",
                      batch=2, image_size=[416, 416], precision="fp16",
                      passes=["canonicalize", "fold-bn", "fuse-activation", "concat-in-place"],
                      notes=["precision: fp16 is the gc200 default (--precision to change)"])


def _build_northpole_plan() -> Plan:
    """A fitting NorthPole plan: 16×16 mesh rectangles, weights spread over the whole array."""
    specs = _conv_specs(24, 256, seed=3, width=16, image=224, batch=1, bytes_per_weight=1,
                        rect_grid=(16, 16), spread_weights=True, scale=0.5)
    return build_plan(specs, northpole_target(), name="yolo-np", source="yolo-np.onnx", batch=1,
                      image_size=[224, 224], precision="int8", passes=["canonicalize", "quantize"])


def _build_does_not_fit_plan() -> Plan:
    """Batch 16 on the GC200: the best partial placement overflows; diagnosis with what-ifs."""
    specs = _conv_specs(40, 1472, seed=11, width=32, image=416, batch=16, bytes_per_weight=2,
                        scale=1.0)
    budget = GC200_BYTES - GC200_RESERVED
    draft = build_plan(specs, gc200_target(), name="yolo-synth", source="yolo-synth.onnx",
                       batch=16, image_size=[416, 416], precision="fp16",
                       status=STATUS_DOES_NOT_FIT)
    mem = draft.memory
    assert mem is not None and mem.peak_bytes > budget, "fixture must overflow"
    worst_op = draft.steps[mem.peak_step].ops[0]
    live = sorted((b for b in draft.buffers if b.first <= mem.peak_step < b.end
                   and any(a <= mem.peak_tile < z for a, z in b.tiles)),
                  key=lambda b: (-b.bytes, b.id))
    over = [(t, p) for t, p in enumerate(mem.per_tile_peak) if p > budget]
    over.sort(key=lambda tp: (-tp[1], tp[0]))
    chip_live = sum(sum(d.values()) for d in mem.chip_timeline[mem.peak_step:mem.peak_step + 1])
    diagnosis = Diagnosis(
        evidence=Evidence(
            kind="chip_capacity",
            summary=f"at step {mem.peak_step} ({worst_op}) the tensors that must be live need "
                    f"{chip_live:,} B over the chip; no placement can fit batch 16",
            details={"step": mem.peak_step, "live_bytes": chip_live,
                     "chip_bytes": budget * 1472},
            rechecked=True),
        worst_tile=mem.peak_tile, worst_step=mem.peak_step, worst_op=worst_op,
        bytes_needed=mem.peak_bytes, over_by=mem.peak_bytes - budget,
        by_category=dict(mem.by_category_at_peak),
        top_tiles=[{"tile": t, "bytes": p} for t, p in over[:5]],
        live_ops=sorted({b.owner for b in live if b.kind != "tensor"}),
        live_tensors=[{"name": b.owner, "bytes": b.bytes, "first": b.first, "end": b.end,
                       "category": b.category} for b in live if b.kind == "tensor"][:8],
        what_if=[
            WhatIf(question="max_batch", answer=4, status="exact",
                   probes=[{"batch": 8, "fits": False}, {"batch": 4, "fits": True},
                           {"batch": 6, "fits": False}, {"batch": 5, "fits": False}]),
            WhatIf(question="max_image_size", answer=[224, 224], status="exact",
                   note="at batch 16; multiples of the stride 32"),
            WhatIf(question="min_precision", answer=None, status="exact",
                   note="gc200 computes in fp16 at the lowest"),
            WhatIf(question="min_bytes_per_tile", answer=1_310_720, status="bound",
                   note="within 16 KiB"),
        ],
    )
    draft.diagnosis = diagnosis
    draft.verification = None
    draft.notes = ["the placement shown is the best partial one; tiles above 100 % overflow"]
    return draft


def _build_unknown_plan() -> Plan:
    """The search limit was reached: 'unknown' with the best partial result and the gap."""
    specs = _conv_specs(20, 1472, seed=5, width=32, image=320, batch=4, bytes_per_weight=2)
    solver = SolverInfo(status="FEASIBLE", objective=1.2e6, bound=0.9e6, gap=0.25,
                        time_limit=10.0, deterministic_limit=None)
    plan = build_plan(specs, gc200_target(), name="yolo-synth", source="yolo-synth.onnx",
                      batch=4, image_size=[320, 320], precision="fp16", status=STATUS_UNKNOWN,
                      solver=solver)
    mem = plan.memory
    assert mem is not None
    plan.diagnosis = Diagnosis(
        evidence=Evidence(kind="search_limit",
                          summary="no placement found within 10 s and none ruled out; "
                                  "raise --time-limit",
                          details={"time_limit": 10.0, "gap": 0.25}),
        worst_tile=None, worst_step=None, worst_op=None, bytes_needed=None, over_by=None)
    return plan


def _build_op_too_large_plan() -> Plan:
    """A diagnosis made before any placement: no steps, ops, buffers or memory summary."""
    target = gc200_target()
    return Plan(
        status=STATUS_DOES_NOT_FIT,
        model=ModelInfo(name="huge-fc", source="huge-fc.onnx", batch=1, image_size=None,
                        precision="fp32", input_shapes={"x": [1, 65536]}, ops=2,
                        params=65536 * 65536, macs=65536 * 65536, weight_bytes=65536 * 65536 * 4),
        target=target,
        diagnosis=Diagnosis(
            evidence=Evidence(kind="op_too_large",
                              summary="fc1 (MatMul 65536×65536, fp32) needs 16.0 GiB of weights; "
                                      "the chip holds 860 MiB",
                              details={"op": "fc1", "finest_split_bytes_per_tile": 11_670_000},
                              rechecked=True),
            worst_tile=None, worst_step=None, worst_op="fc1", bytes_needed=11_670_000,
            over_by=11_670_000 - target.budget_per_tile,
            by_category={"weights": 11_660_000, "code": 10_000},
            what_if=[WhatIf(question="min_bytes_per_tile", answer=None, status="unknown",
                            note="beyond the searched 64 MiB per tile")]),
        notes=[], tilec_version="0.1.0",
    )


_BUILDERS = {"gc200": _build_gc200_plan, "northpole": _build_northpole_plan,
             "does_not_fit": _build_does_not_fit_plan, "unknown": _build_unknown_plan,
             "op_too_large": _build_op_too_large_plan}


@cache
def _saved(name: str) -> str:
    return _BUILDERS[name]().to_json()


def plan_named(name: str) -> Plan:
    """A fresh copy (callers may change it) of a fixture plan, built once per test session."""
    return Plan.from_dict(json.loads(_saved(name)))


def gc200_plan() -> Plan:
    """A fitting YOLO-like plan on all 1472 GC200 tiles, ~60 supersteps, two ops sharing a step."""
    return plan_named("gc200")


def northpole_plan() -> Plan:
    """A fitting NorthPole plan: 16×16 mesh rectangles, weights spread over the whole array."""
    return plan_named("northpole")


def does_not_fit_plan() -> Plan:
    """Batch 16 on the GC200: the best partial placement overflows; diagnosis with what-ifs."""
    return plan_named("does_not_fit")


def unknown_plan() -> Plan:
    """The search limit was reached: 'unknown' with the best partial result and the gap."""
    return plan_named("unknown")


def op_too_large_plan() -> Plan:
    """A diagnosis made before any placement: no steps, ops, buffers or memory summary."""
    return plan_named("op_too_large")


def all_plans() -> dict[str, Plan]:
    return {name: plan_named(name) for name in _BUILDERS}
