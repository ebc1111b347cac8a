"""Lower bounds: the certificates (a) and (b), and the bound plan quality is measured against.

(a) ``chip_capacity`` -- schedule-independent. At op ``i``, in *any* topological order, these bytes
    are on the chip at once: every op's always-live bytes (each at its minimum total over all its
    splits: per-tile bytes x tiles), the spread bytes, op ``i``'s own step bytes (at their minimum),
    and every buffer some writer of which is an ancestor of ``i`` (or ``i`` itself) and some reader
    of which is ``i`` or a descendant of ``i`` (or which is a model output) -- each at its minimum
    total. A buffer ``i`` may overwrite in place is left out. If that sum exceeds
    ``tiles x budget``, no order and no placement can fit. Each term is minimised on its own, so
    the sum is a lower bound whatever the coupling between them.
(b) ``op_too_large`` -- an op whose smallest per-tile need over *all* its splits (always + step +
    the outputs its tiles hold) plus the spread bytes every tile carries exceeds the per-tile
    budget: it cannot run anywhere.

Both grow with the batch and the image size only when the cost model's offered splits allow it:
each split's bytes growing with the shape is not enough when *which* splits are offered depends on
the shape (gc200's ``fastest`` window, NorthPole's batch factors up to the batch). A cost model
that guarantees it declares ``CostModel.bounds_monotone``; the built-in ones do not (measured by
benchmarks/bounds_monotone.py; docs/planner.md, "Do the bounds grow with the shape?").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo
from tilec.plan.partition import Partition
from tilec.plan.problem import input_hosts, io_input_bytes, outputs_stay
from tilec.plan.schedule import buffer_uses


@dataclass
class Bound:
    """One lower-bound computation and whether it proves the model cannot fit."""

    kind: str  # "chip_capacity" | "op_too_large"
    holds: bool  # needed > capacity: a proof
    op: str | None
    needed: int
    capacity: int
    details: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.needed / self.capacity if self.capacity else float("inf")


def spread_floor(partition: Partition) -> int:
    """Spread bytes every tile carries at least (each op at its cheapest split)."""
    return sum(min(c.spread_per_tile for c in oc.proof) for oc in partition.ops.values())


def op_bound(info: GraphInfo, partition: Partition, target: Target) -> Bound:
    """(b): the op with the largest minimal per-tile need; holds if it exceeds the budget."""
    floor = spread_floor(partition)
    budget = int(target.budget_per_tile)
    worst, worst_need, worst_cand = None, -1, None
    for op in info.ops:
        oc = partition.ops[op.name]
        need = oc.finest.charged_peak(partition.charged[op.name]) + floor
        if need > worst_need:
            worst, worst_need, worst_cand = op.name, need, oc.finest
    if worst is None:
        return Bound("op_too_large", False, None, 0, budget)
    c = worst_cand
    assert c is not None
    return Bound(
        kind="op_too_large", holds=worst_need > budget, op=worst, needed=worst_need,
        capacity=budget,
        details={"split": str(c.split), "tiles": c.tiles, "always": dict(c.cost.always),
                 "step": dict(c.cost.step), "outputs": list(c.outputs),
                 "spread_per_tile": floor, "splits_considered": partition.ops[worst].all_count})


def _closure(info: GraphInfo) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Bit index per op, and ancestor / descendant bitsets (Python ints)."""
    bit = {op.name: i for i, op in enumerate(info.ops)}
    preds: dict[str, set[str]] = {op.name: set() for op in info.ops}
    for op in info.ops:
        for t in op.inputs:
            p = info.tensors[t].producer
            if p is not None and p in bit:
                preds[op.name].add(p)
    anc: dict[str, int] = {}
    for op in info.ops:  # topological order
        m = 0
        for p in preds[op.name]:
            m |= anc[p] | (1 << bit[p])
        anc[op.name] = m
    succs: dict[str, set[str]] = {op.name: set() for op in info.ops}
    for n, ps in preds.items():
        for p in ps:
            succs[p].add(n)
    desc: dict[str, int] = {}
    for op in reversed(info.ops):
        m = 0
        for s in succs[op.name]:
            m |= desc[s] | (1 << bit[s])
        desc[op.name] = m
    return bit, anc, desc


def use_masks(u, bit: dict[str, int]) -> tuple[int, int]:
    """A buffer's writers and readers as bit masks over the ops' positions (``bit``)."""
    w = 0
    for x in u.writers:
        w |= 1 << bit[x]
    rd = 0
    for x in u.readers:
        rd |= 1 << bit[x]
    return w, rd


def buffer_min_totals(info: GraphInfo, partition: Partition, target: Target) -> dict[str, int]:
    """Per buffer (root), its smallest total bytes over the chip across the holder's splits."""
    out: dict[str, int] = {}
    for root, use in buffer_uses(info).items():
        t = info.tensors[root]
        if use.is_input:
            best = None
            for r in input_hosts(info, use.readers):
                for c in partition.ops[r].proof:
                    v = sum(io_input_bytes(target, t, c.tiles).values()) * c.tiles
                    best = v if best is None else min(best, v)
            out[root] = best or 0
            continue
        p = t.producer
        if p is None or p not in partition.ops:
            continue
        idx = info.op_by_name[p].outputs.index(root)
        out[root] = min(c.outputs[idx] * c.tiles if c.outputs else 0
                        for c in partition.ops[p].proof)
    return out


def chip_bound(info: GraphInfo, partition: Partition, target: Target) -> Bound:
    """(a): the op at which the necessarily-live bytes are largest; holds above the chip."""
    capacity = int(target.tiles) * int(target.budget_per_tile)
    if not info.ops:
        return Bound("chip_capacity", False, None, 0, capacity)
    bit, anc, desc = _closure(info)
    uses = buffer_uses(info)
    stay = outputs_stay(target)
    totals = buffer_min_totals(info, partition, target)
    always = sum(min(c.always * c.tiles + c.spread for c in oc.proof)
                 for oc in partition.ops.values())
    masks = {}
    for r, u in uses.items():
        if r not in totals:
            continue
        w, rd = use_masks(u, bit)
        masks[r] = (w, rd, u.is_input, u.is_output)
    best: Bound | None = None
    for op in info.ops:
        i = op.name
        me = 1 << bit[i]
        oc = partition.ops[i]
        skip = None
        if oc.in_place and oc.follows_input and op.inputs:
            skip = info.root(op.inputs[0])
        live: list[tuple[str, int]] = []
        for r, (w, rd, is_in, is_out) in masks.items():
            written = is_in or bool(w & (anc[i] | me))
            if not written:
                continue
            read_later = bool(rd & (desc[i] | me)) or (stay and is_out
                                                        and bool(w & (anc[i] | me)))
            if not read_later:
                continue
            if r == skip and not (rd & desc[i]) and not (stay and is_out):
                continue
            live.append((r, totals[r]))
        step = min(c.step * c.tiles for c in oc.proof)
        needed = always + step + sum(v for _, v in live)
        if best is None or needed > best.needed:
            live.sort(key=lambda t: (-t[1], t[0]))
            best = Bound(kind="chip_capacity", holds=needed > capacity, op=i, needed=needed,
                         capacity=capacity,
                         details={"always_total": always, "step_total": step,
                                  "live_buffers": [{"tensor": r, "bytes": v} for r, v in live],
                                  "live_total": sum(v for _, v in live)})
    assert best is not None
    return best


def quality_lower_bound(problem) -> dict:
    """The benchmark's lower bound on the peak bytes per tile, for the plan's schedule:

    * ``spread``: at the worst step, every byte necessarily live (each at its minimum total over
      the chip, as in (a) but with the schedule's actual live set) divided evenly over all tiles;
    * ``single_op``: the largest single op's minimum per-tile need (as in (b)).
    The bound is the larger of the two.
    """
    info, target = problem.info, problem.target
    tiles = int(target.tiles)
    part = problem.partition
    always = sum(min(c.always * c.tiles + c.spread for c in oc.proof)
                 for oc in part.ops.values())
    totals = buffer_min_totals(info, part, target)
    steps = problem.steps
    diff = [0] * (steps + 1)
    for root, spec in problem.buffers.items():
        v = totals.get(root, 0)
        end = spec.end - 1 if spec.reused_by is not None else spec.end  # may end in place
        diff[spec.first] += v
        diff[end] -= v
    worst, worst_step, acc = 0, 0, 0
    for s, name in enumerate(problem.schedule.order):
        acc += diff[s]
        oc = part.ops[name]
        total = always + acc + min(c.step * c.tiles for c in oc.proof)
        if total > worst:
            worst, worst_step = total, s
    spread_bound = -(-worst // tiles)
    ob = op_bound(info, part, target)
    return {"per_tile": max(spread_bound, ob.needed), "spread": spread_bound,
            "spread_step": worst_step, "single_op": ob.needed, "single_op_name": ob.op}
