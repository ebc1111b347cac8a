"""verify: an independent check of a plan, from the plan alone.

It reads nothing but the :class:`~tilec.plan.model.Plan` (typically just built, or loaded from
JSON) and shares no code with the planner beyond the data classes: occupancy, segments and overlaps
are recomputed here with their own simple algorithms, so a planner bug cannot hide behind a shared
helper. A plan is reported as fitting only if every check passes; a plan the planner built that
fails is an internal error.

Checks (each named in ``Verification.checks`` when it passes):

``structure``   every op of the model once, one per superstep, steps numbered 0..S-1;
``tiles``       each op on valid, disjoint, sorted tile ranges (a rectangle on a mesh) whose size is
                the product of its split factors;
``tensors``     every tensor an op reads or writes is held by exactly one buffer;
``dataflow``    producer before consumer; a tensor's buffer is alive when it is written and at every
                read (an in-place overwrite ends its input buffer exactly where its output starts,
                same tiles, same bytes, same addresses); model outputs live to the end;
``charges``     the buffers carry exactly the bytes the ops declare, on the ops' tiles, with the
                right lifetimes (always: whole run; step: its superstep; spread: every tile);
``budget``      at every step, every tile's live bytes are within its budget;
``layout``      every buffer has an address on each of its tiles, inside the budget, and no two
                buffers live at the same step on the same tile overlap;
``summary``     the memory summary and latency agree with the buffers and the steps.
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import numpy as np

from tilec.plan.model import Buffer, Plan, Verification

MAX_ERRORS = 25


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.failed: set[str] = set()

    def add(self, check: str, msg: str) -> None:
        self.failed.add(check)
        if len(self.items) < MAX_ERRORS:
            self.items.append(f"{check}: {msg}")


def _valid_ranges(ranges: list[list[int]], tiles: int) -> str | None:
    if not ranges:
        return "no tiles"
    prev = -1
    for r in ranges:
        if len(r) != 2:
            return f"malformed range {r}"
        a, b = r
        if not (0 <= a < b <= tiles):
            return f"range [{a}, {b}) outside 0..{tiles}"
        if a < prev:
            return "ranges not sorted or overlapping"
        prev = b
    return None


def _is_rect(ranges: list[list[int]], cols: int, shape: list[int] | None) -> bool:
    """Do the ranges form one rectangle of the mesh (full-width rows may come merged)?"""
    rows: list[tuple[int, int, int]] = []
    for a, b in ranges:
        r0, c0 = divmod(a, cols)
        if (b - a) % cols == 0 and c0 == 0 and b - a > cols:
            for k in range((b - a) // cols):
                rows.append((r0 + k, 0, cols))
        else:
            r1, c1 = divmod(b - 1, cols)
            if r1 != r0:
                return False
            rows.append((r0, c0, c1 + 1))
    if not rows:
        return False
    c0s = {(c0, c1) for _, c0, c1 in rows}
    rs = [r for r, _, _ in rows]
    ok = len(c0s) == 1 and rs == list(range(rs[0], rs[0] + len(rs)))
    if ok and shape is not None:
        (c0, c1), = c0s
        ok = [len(rs), c1 - c0] == list(shape)
    return ok


def occupancy(buffers: list[Buffer], tiles: int, steps: int) -> np.ndarray:
    """Per tile and step, the live bytes: for each distinct lifetime, a per-tile profile (by
    differences along the tiles) added over that lifetime's steps."""
    occ = np.zeros((tiles, steps), dtype=np.int64)
    by_life: dict[tuple[int, int], np.ndarray] = {}
    for b in buffers:
        if b.bytes <= 0 or b.end <= b.first:
            continue
        prof = by_life.get((b.first, b.end))
        if prof is None:
            prof = by_life[(b.first, b.end)] = np.zeros(tiles + 1, dtype=np.int64)
        for a, c in b.tiles:
            prof[a] += b.bytes
            prof[c] -= b.bytes
    for (first, end), prof in by_life.items():
        occ[:, first:end] += np.cumsum(prof)[:tiles, None]
    return occ


def _merged(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted union of half-open ranges, adjacent ones joined; None if two overlap."""
    out: list[list[int]] = []
    for a, b in sorted([int(r[0]), int(r[1])] for r in ranges):
        if out and a < out[-1][1]:
            return [[-1, -1]]  # overlapping pieces: never equal to a valid tile set
        if out and a == out[-1][1]:
            out[-1][1] = b
        else:
            out.append([a, b])
    return out


def verify(plan: Plan) -> Verification:
    """Check ``plan`` (see the module docstring); never raises on a bad plan."""
    err = _Errors()
    tiles = int(plan.target.tiles)
    budget = int(plan.target.budget_per_tile)
    steps_n = len(plan.steps)
    ops = {o.name: o for o in plan.ops}

    # ---- structure
    if len(ops) != len(plan.ops):
        err.add("structure", "an op is listed twice")
    if plan.model.ops != len(plan.ops):
        err.add("structure", f"the model has {plan.model.ops} ops, the plan places {len(ops)}")
    for i, st in enumerate(plan.steps):
        if st.index != i:
            err.add("structure", f"step {i} is numbered {st.index}")
    in_steps: dict[str, int] = {}
    for st in plan.steps:
        for name in st.ops:
            if name in in_steps:
                err.add("structure", f"op '{name}' is in two steps")
            in_steps[name] = st.index
    for o in plan.ops:
        if not 0 <= o.step < steps_n:
            err.add("structure", f"op '{o.name}' at step {o.step} outside 0..{steps_n - 1}")
        elif in_steps.get(o.name) != o.step:
            err.add("structure", f"op '{o.name}' says step {o.step}, the step table disagrees")

    # ---- tiles
    cols = int(plan.target.grid[1]) if plan.target.grid else tiles
    for o in plan.ops:
        why = _valid_ranges(o.tiles, tiles)
        if why:
            err.add("tiles", f"op '{o.name}': {why}")
            continue
        n = sum(b - a for a, b in o.tiles)
        want = prod(o.split.values()) if o.split else 1
        if n != want:
            err.add("tiles", f"op '{o.name}' runs on {n} tiles but its split has {want}")
        if plan.target.placement == "rect" and not _is_rect(o.tiles, cols, o.shape):
            err.add("tiles", f"op '{o.name}': tiles {o.tiles} are not one rectangle")
        elif plan.target.placement == "range" and len(o.tiles) != 1:
            err.add("tiles", f"op '{o.name}': tiles {o.tiles} are not one contiguous range")

    # ---- tensors
    holder: dict[str, Buffer] = {}
    for b in plan.buffers:
        if b.kind != "tensor":
            continue
        for t in b.tensors:
            if t in holder:
                err.add("tensors", f"tensor '{t}' is held by two buffers")
            holder[t] = b
    producer: dict[str, str] = {}
    readers: dict[str, list[str]] = defaultdict(list)
    for o in plan.ops:
        for t in o.outputs:
            if t in producer:
                err.add("tensors", f"tensor '{t}' is written by two ops")
            producer[t] = o.name
        for t in o.inputs:
            readers[t].append(o.name)
    for t in sorted(set(producer) | set(readers)):
        if t not in holder:
            err.add("tensors", f"tensor '{t}' has no buffer")

    # ---- dataflow
    by_id = {b.id: b for b in plan.buffers}
    if len(by_id) != len(plan.buffers):
        err.add("structure", "two buffers share an id")
    reused_by: dict[str, Buffer] = {}
    for b in plan.buffers:
        if b.reuses:
            src = by_id.get(b.reuses)
            if src is None:
                err.add("dataflow", f"buffer '{b.id}' reuses unknown buffer '{b.reuses}'")
                continue
            reused_by[src.id] = b
            if src.end != b.first or src.tiles != b.tiles or src.bytes != b.bytes:
                err.add("dataflow", f"in-place buffer '{b.id}' does not take over '{src.id}' "
                                    "exactly (tiles, bytes and lifetime must meet)")
            elif src.offsets != b.offsets:
                err.add("dataflow", f"in-place buffer '{b.id}' is not at the address of "
                                    f"'{src.id}'")
    outputs = set(plan.model.outputs)
    for o in plan.ops:
        if o.name not in ops or not 0 <= o.step < steps_n:
            continue
        s = o.step
        for t in o.inputs:
            p = producer.get(t)
            if p is not None and p in ops and ops[p].step >= s:
                err.add("dataflow", f"op '{o.name}' (step {s}) reads '{t}' written at step "
                                    f"{ops[p].step}")
            b = holder.get(t)
            if b is None:
                continue
            if b.first <= s < b.end:
                continue
            nxt = reused_by.get(b.id)
            if b.end == s and nxt is not None and nxt.first == s and any(
                    holder.get(u) is nxt for u in o.outputs):
                continue  # read while being overwritten in place by this very op
            err.add("dataflow", f"op '{o.name}' reads '{t}' at step {s}, but its buffer "
                                f"'{b.id}' lives [{b.first}, {b.end})")
        for t in o.outputs:
            b = holder.get(t)
            if b is not None and not (b.first <= s < b.end):
                err.add("dataflow", f"op '{o.name}' writes '{t}' at step {s}, but its buffer "
                                    f"'{b.id}' lives [{b.first}, {b.end})")
    for t in outputs if getattr(plan.target, "io_location", "host") == "host" else ():
        b = holder.get(t)
        if b is not None and b.end != steps_n:
            err.add("dataflow", f"model output '{t}' is freed at step {b.end} before the end")

    # ---- charges
    seen_cat: set[tuple[str, str, str]] = set()
    for b in plan.buffers:
        if b.first < 0 or b.end > steps_n or b.end <= b.first:
            err.add("charges", f"buffer '{b.id}' has lifetime [{b.first}, {b.end})")
        if b.bytes < 0:
            err.add("charges", f"buffer '{b.id}' has negative bytes")
        why = _valid_ranges(b.tiles, tiles)
        if why:
            err.add("charges", f"buffer '{b.id}': {why}")
        if b.kind in ("always", "step", "spread"):
            o = ops.get(b.owner)
            if o is None:
                err.add("charges", f"buffer '{b.id}' belongs to unknown op '{b.owner}'")
                continue
            seen_cat.add((b.owner, b.kind, b.category))
            if b.kind == "always":
                ok = (b.tiles == o.tiles and b.first == 0 and b.end == steps_n
                      and o.always.get(b.category) == b.bytes)
            elif b.kind == "step":
                ok = (b.tiles == o.tiles and b.first == o.step and b.end == o.step + 1
                      and o.step_bytes.get(b.category) == b.bytes)
            else:
                total = o.spread.get(b.category, 0)
                ok = (b.tiles == [[0, tiles]] and b.first == 0 and b.end == steps_n
                      and b.bytes == -(-total // tiles))
            if not ok:
                err.add("charges", f"buffer '{b.id}' does not match op '{o.name}' "
                                   f"({b.kind} {b.category})")
        elif b.kind == "tensor":
            p = producer.get(b.owner)
            if p is None:
                if b.owner not in set(plan.model.inputs):
                    err.add("charges", f"buffer '{b.id}' holds '{b.owner}', which no op "
                                       "writes and is not a model input")
                continue
            o = ops[p]
            k = o.outputs.index(b.owner)
            if b.tiles != o.tiles or k >= len(o.output_bytes) or o.output_bytes[k] != b.bytes:
                err.add("charges", f"buffer '{b.id}' does not match output {k} of op '{p}'")
        else:
            err.add("charges", f"buffer '{b.id}' has unknown kind '{b.kind}'")
    for o in plan.ops:
        for kind, d in (("always", o.always), ("step", o.step_bytes), ("spread", o.spread)):
            for cat, v in d.items():
                if v and (o.name, kind, cat) not in seen_cat:
                    err.add("charges", f"op '{o.name}': its {kind} {cat} bytes have no buffer")

    # ---- budget
    occ = occupancy(plan.buffers, tiles, steps_n) if steps_n else np.zeros((tiles, 0), np.int64)
    if occ.size and int(occ.max()) > budget:
        over = np.argwhere(occ > budget)
        t, s = (int(v) for v in over[0])
        err.add("budget", f"{len(over)} (tile, step) pairs over budget, e.g. tile {t} at step "
                          f"{s}: {int(occ[t, s])} > {budget} bytes")

    # ---- layout
    cuts = {0, tiles}
    for b in plan.buffers:
        if b.bytes <= 0:
            continue
        if any(len(e) != 3 for e in b.offsets) or _merged(
                [[e[0], e[1]] for e in b.offsets]) != _merged(b.tiles):
            err.add("layout", f"buffer '{b.id}' has addresses for "
                              f"{[e[:2] for e in b.offsets]}, not exactly its tiles {b.tiles}")
            continue
        for a, c, off in b.offsets:
            if off < 0 or off + b.bytes > budget:
                err.add("layout", f"buffer '{b.id}' at offset {off} on tiles [{a}, {c}) does "
                                  f"not fit the {budget}-byte budget")
            cuts.add(a)
            cuts.add(c)
    edges = sorted(cuts)
    seg_items: dict[int, list[tuple[int, int, int, int, str]]] = defaultdict(list)
    index = {e: i for i, e in enumerate(edges)}
    for b in plan.buffers:
        if b.bytes <= 0:
            continue
        for a, c, off in b.offsets:
            if a not in index or c not in index:
                continue
            for k in range(index[a], index[c]):
                seg_items[k].append((off, off + b.bytes, b.first, b.end, b.id))
    checked: set[tuple] = set()
    for k, items in seg_items.items():
        sig = tuple(sorted(items))
        if sig in checked:
            continue
        checked.add(sig)
        for i, (_lo, hi, f, e, bid) in enumerate(sig):
            for lo2, _hi2, f2, e2, bid2 in sig[i + 1:]:
                if lo2 >= hi:
                    break
                if f < e2 and f2 < e:
                    err.add("layout", f"buffers '{bid}' and '{bid2}' overlap on tiles "
                                      f"[{edges[k]}, {edges[k + 1]}) at steps "
                                      f"[{max(f, f2)}, {min(e, e2)})")

    # ---- summary
    if plan.memory is not None and occ.size:
        per_tile = occ.max(axis=1)
        if int(occ.max()) != plan.memory.peak_bytes:
            err.add("summary", f"peak {plan.memory.peak_bytes} != recomputed {int(occ.max())}")
        if [int(v) for v in per_tile] != list(plan.memory.per_tile_peak):
            err.add("summary", "per-tile peaks differ from the buffers")
    total = 0
    for st in plan.steps:
        comp = sum(ops[n].compute_cycles for n in st.ops if n in ops)
        exch = sum(ops[n].exchange_cycles for n in st.ops if n in ops)
        if comp != st.compute_cycles or exch != st.exchange_cycles:
            err.add("summary", f"step {st.index} cycles differ from its ops'")
        total += st.cycles
    if plan.latency is not None and plan.latency.cycles != total:
        err.add("summary", f"latency {plan.latency.cycles} cycles != sum of steps {total}")

    names = ["structure", "tiles", "tensors", "dataflow", "charges", "budget", "layout",
             "summary"]
    return Verification(ok=not err.failed, checks=[n for n in names if n not in err.failed],
                        errors=err.items)

