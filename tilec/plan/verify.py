"""verify: an independent check of a plan, from the plan alone.

It reads nothing but the :class:`~tilec.plan.model.Plan` (typically just built, or loaded from
JSON) and shares no code with the planner beyond the data classes: occupancy, segments and overlaps
are recomputed here with their own simple algorithms, so a planner bug cannot hide behind a shared
helper. Nothing the planner summarised (memory summary, step cycles) is trusted: it is recomputed
and compared. A plan is reported as fitting only if every check passes; a plan the planner built
that fails is an internal error.

Checks (each named in ``Verification.checks`` when it passes):

``structure``   every op of the model once, exactly one per superstep, steps numbered 0..S-1;
``tiles``       each op on valid, disjoint, sorted tile ranges (a rectangle on a mesh) whose size is
                the product of its parallel split factors (or its ``span``, which that product
                may not exceed; serial slices share the tiles); an op of a group on its
                group's tiles;
``tensors``     every tensor an op reads or writes is held by exactly one buffer; a tensor nobody
                writes is a model input; a buffer holds its owner and, besides it, only aliases
                the plan itself justifies (the output of a view of a tensor in it, an input of a
                Concat whose output is in it), and every view's output shares its input's buffer;
``dataflow``    producer before consumer; a tensor's buffer is alive when it is written and at every
                read (an in-place overwrite ends its input buffer exactly where its output starts,
                same tiles, same bytes, same addresses, by an op that may work in place and reads
                that buffer first); model outputs live to the end;
``charges``     the buffers carry exactly the bytes the ops declare, on the ops' tiles, with the
                right lifetimes (always: whole run; step: its superstep; spread: every tile; a model
                input: from step 0 on the tiles of the op that declares holding it);
``budget``      at every step, every tile's live bytes are within its budget;
``layout``      every buffer has an address on each of its tiles, inside the budget, and no two
                buffers live at the same step on the same tile overlap;
``summary``     the memory summary and latency agree with the buffers and the steps.

With the model (:class:`~tilec.opinfo.GraphInfo`) and the target at hand (the pipeline passes them),
one more check re-derives what the plan *declares* from their sources:

``costs``       the plan's chip is the target's; its ops are the model's ops (types, inputs,
                outputs); every op's split is one the target's cost model offers, and the bytes,
                cycles and flags the op declares are what the cost model says for that split (and
                its ``input_bytes`` hook for the inputs it holds); every tensor sits in the buffer
                of its root (views, in-place concats); sync cycles and the framebuffer, too.
                Without this, a plan whose op declarations and buffers were shrunk together would
                pass the plan-only checks.
"""

from __future__ import annotations

from collections import defaultdict
from math import isclose, prod
from typing import Any

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


CHECKS = ("structure", "tiles", "tensors", "dataflow", "charges", "budget", "layout", "summary")


def verify(plan: Plan, info: Any = None, target: Any = None) -> Verification:
    """Check ``plan`` (see the module docstring); never raises on a bad plan.

    ``info`` (the :class:`~tilec.opinfo.GraphInfo` planned) and ``target`` add the ``costs``
    check, which asks the target's cost model again for what every op declares."""
    err = _Errors()
    tiles = int(plan.target.tiles)
    budget = int(plan.target.budget_per_tile)
    steps_n = len(plan.steps)
    ops = {o.name: o for o in plan.ops}

    # ---- structure
    chip = plan.target
    if not 0 <= chip.budget_per_tile <= chip.bytes_per_tile - chip.reserved_bytes_per_tile:
        err.add("structure", f"budget {chip.budget_per_tile} per tile is not the tile's "
                             f"{chip.bytes_per_tile} bytes less {chip.reserved_bytes_per_tile} "
                             "reserved")
    if not chip.grid or int(chip.grid[0]) * int(chip.grid[1]) != tiles:
        err.add("structure", f"grid {chip.grid} does not hold {tiles} tiles")
    if len(ops) != len(plan.ops):
        err.add("structure", "an op is listed twice")
    if plan.model.ops != len(plan.ops):
        err.add("structure", f"the model has {plan.model.ops} ops, the plan places {len(ops)}")
    if steps_n != len(plan.ops):
        err.add("structure", f"{steps_n} steps for {len(plan.ops)} ops (one op per superstep)")
    for i, st in enumerate(plan.steps):
        if st.index != i:
            err.add("structure", f"step {i} is numbered {st.index}")
        if len(st.ops) != 1:
            err.add("structure", f"step {st.index} runs {len(st.ops)} ops (one per superstep)")
    in_steps: dict[str, int] = {}
    for st in plan.steps:
        for name in st.ops:
            if name not in ops:
                err.add("structure", f"step {st.index} runs unknown op '{name}'")
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
        work = prod(int(f) for a, f in o.split.items()
                    if a not in ("serial_out", "serial_in", "span"))
        want = int(o.split.get("span", work))
        if n != want:
            err.add("tiles", f"op '{o.name}' runs on {n} tiles but its split has {want}")
        if work > want:
            err.add("tiles", f"op '{o.name}': its split's factors need {work} tiles, more than "
                             f"its span of {want}")
        if plan.target.placement == "rect" and not _is_rect(o.tiles, cols, o.shape):
            err.add("tiles", f"op '{o.name}': tiles {o.tiles} are not one rectangle")
        elif plan.target.placement == "range" and len(o.tiles) != 1:
            err.add("tiles", f"op '{o.name}': tiles {o.tiles} are not one contiguous range")
        if o.group is not None:
            lead = ops.get(o.group)
            if lead is None:
                err.add("tiles", f"op '{o.name}' is in the group of unknown op '{o.group}'")
            elif _merged(lead.tiles) != _merged(o.tiles):
                err.add("tiles", f"op '{o.name}' runs on {o.tiles}, not on the tiles "
                                 f"{lead.tiles} of its group '{o.group}'")

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
    model_inputs, outputs = set(plan.model.inputs), set(plan.model.outputs)
    for t in sorted(set(producer) | set(readers)):
        if t not in holder:
            err.add("tensors", f"tensor '{t}' has no buffer")
        if t not in producer and t not in model_inputs:
            err.add("tensors", f"tensor '{t}' is read but no op writes it and it is not a "
                               "model input")
        if t in producer and t in model_inputs:
            err.add("tensors", f"model input '{t}' is written by op '{producer[t]}'")
    for t in sorted(outputs - set(producer) - model_inputs):
        err.add("tensors", f"model output '{t}' is written by no op")
    _check_aliases(plan, ops, producer, holder, err)

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
            if src.id in reused_by:
                err.add("dataflow", f"buffer '{src.id}' is taken over by two buffers")
            reused_by[src.id] = b
            if src.end != b.first or src.tiles != b.tiles or src.bytes != b.bytes:
                err.add("dataflow", f"in-place buffer '{b.id}' does not take over '{src.id}' "
                                    "exactly (tiles, bytes and lifetime must meet)")
            elif src.offsets != b.offsets:
                err.add("dataflow", f"in-place buffer '{b.id}' is not at the address of "
                                    f"'{src.id}'")
            w = ops.get(producer.get(b.owner, ""))
            if w is None or not w.in_place or w.step != b.first or not w.inputs or \
                    holder.get(w.inputs[0]) is not src:
                err.add("dataflow", f"in-place buffer '{b.id}' is not written, at its first "
                                    f"step, by an in-place op whose first input '{src.id}' "
                                    "holds")
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
    hosts: dict[str, list[str]] = defaultdict(list)  # model input -> ops declaring to hold it
    for o in plan.ops:
        for t in o.held_inputs:
            hosts[t].append(o.name)
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
                if b.owner not in model_inputs:
                    err.add("charges", f"buffer '{b.id}' holds '{b.owner}', which no op "
                                       "writes and is not a model input")
                    continue
                held = hosts.get(b.owner, [])
                if len(held) != 1:
                    err.add("charges", f"model input '{b.owner}' is declared held by "
                                       f"{len(held)} ops (one expected)")
                    continue
                h = ops[held[0]]
                if not any(holder.get(t) is b for t in h.inputs):
                    err.add("charges", f"op '{h.name}' holds model input '{b.owner}' but "
                                       "does not read it")
                if b.tiles != h.tiles or b.bytes != h.held_inputs[b.owner] or b.first != 0:
                    err.add("charges", f"buffer '{b.id}' does not match what op '{h.name}' "
                                       f"declares for model input '{b.owner}' (its tiles, "
                                       f"{h.held_inputs[b.owner]} bytes per tile, from step 0)")
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
        for x in o.held_inputs:
            b = holder.get(x)
            if x not in model_inputs:
                err.add("charges", f"op '{o.name}' declares holding '{x}', not a model input")
            elif b is None or b.owner != x:
                err.add("charges", f"op '{o.name}' declares holding model input '{x}', which "
                                   "has no buffer of its own")

    # ---- budget
    occ = occupancy(plan.buffers, tiles, steps_n) if steps_n else np.zeros((tiles, 0), np.int64)
    if occ.size and int(occ.max()) > budget:
        over = np.argwhere(occ > budget)
        t, s = (int(v) for v in over[0])
        err.add("budget", f"{len(over)} (tile, step) pairs over budget, e.g. tile {t} at step "
                          f"{s}: {int(occ[t, s])} > {budget} bytes")

    _check_layout(plan, tiles, budget, err)
    _check_summary(plan, ops, occ, err)

    names = list(CHECKS)
    if info is not None and target is not None:
        names.append("costs")
        _check_costs(plan, info, target, holder, err)
    return Verification(ok=not err.failed, checks=[n for n in names if n not in err.failed],
                        errors=err.items)


def _check_aliases(plan: Plan, ops: dict[str, Any], producer: dict[str, str],
                   holder: dict[str, Buffer], err: _Errors) -> None:
    """A buffer holds its owner and only aliases the plan justifies; a view's output is in its
    input's buffer. (Without this, a tensor listed in some other buffer would lose its bytes.)"""
    concat_of: dict[str, list[str]] = defaultdict(list)  # tensor -> outputs of Concats reading it
    for c in plan.ops:
        if c.kind == "concat":
            for t in c.inputs:
                concat_of[t].extend(c.outputs)
    for b in plan.buffers:
        if b.kind != "tensor":
            continue
        if b.owner not in b.tensors:
            err.add("tensors", f"buffer '{b.id}' does not hold its owner '{b.owner}'")
        p = ops.get(producer.get(b.owner, ""))
        if p is not None and p.kind == "view":
            err.add("tensors", f"buffer '{b.id}' is owned by '{b.owner}', the output of view "
                               f"'{p.name}' (a view has no buffer of its own)")
        held = set(b.tensors)
        for t in b.tensors:
            if t == b.owner:
                continue
            w = ops.get(producer.get(t, ""))
            as_view = w is not None and w.kind == "view" and bool(w.inputs) and (
                w.inputs[0] in held)
            as_part = any(u in held for u in concat_of.get(t, ()))
            if not (as_view or as_part):
                err.add("tensors", f"buffer '{b.id}' holds '{t}', which is neither a view of "
                                   "a tensor in it nor a slice of a Concat whose output is in it")
    for o in plan.ops:
        if o.kind != "view" or not o.inputs:
            continue
        src = holder.get(o.inputs[0])
        for t in o.outputs:
            if src is not None and holder.get(t) is not src:
                err.add("tensors", f"view '{o.name}': its output '{t}' is not in the buffer of "
                                   f"its input '{o.inputs[0]}'")


def _check_layout(plan: Plan, tiles: int, budget: int, err: _Errors) -> None:
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
        if not _any_overlap(sig):
            continue  # the pairwise scan below would find nothing (it names what it finds)
        for i, (_lo, hi, f, e, bid) in enumerate(sig):
            for lo2, _hi2, f2, e2, bid2 in sig[i + 1:]:
                if lo2 >= hi:
                    break
                if f < e2 and f2 < e:
                    err.add("layout", f"buffers '{bid}' and '{bid2}' overlap on tiles "
                                      f"[{edges[k]}, {edges[k + 1]}) at steps "
                                      f"[{max(f, f2)}, {min(e, e2)})")


def _any_overlap(items: tuple[tuple[int, int, int, int, str], ...], chunk: int = 512) -> bool:
    """Do two of ``items`` (address lo, hi, live first, end, id) overlap in both address and time?
    The same condition as the pairwise scan in :func:`_check_layout` -- half-open intervals, a
    buffer never against itself -- which runs only where this says yes, to name the pairs.

    Sorted by address, the items an item can overlap in address are the ones after it that
    start below its end (a ``searchsorted``); only those pairs are tested, with numpy. On a tile
    group of ~1,500 buffers (a dynamically quantized MobileNetV2) the all-pairs test was 6 s of
    the verifier; a layout with many buffers at shared addresses still has fewer candidate pairs
    than all pairs, and past ``chunk`` per item on average the all-pairs blocks are used."""
    n = len(items)
    if n < 2:
        return False
    a = np.array([it[:4] for it in items], dtype=np.int64)
    a = a[np.argsort(a[:, 0], kind="stable")]
    lo, hi, f, e = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    ends = np.searchsorted(lo, hi, side="left")  # items after i start below hi[i] up to here
    counts = np.maximum(0, ends - np.arange(n) - 1)
    total = int(counts.sum())
    if total == 0:
        return False
    if total <= chunk * n:
        i = np.repeat(np.arange(n), counts)
        j = i + 1 + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        return bool(((lo[i] < hi[j]) & (lo[j] < hi[i]) & (f[i] < e[j]) & (f[j] < e[i])).any())
    for s in range(0, n, chunk):
        rows = slice(s, min(n, s + chunk))
        both = ((lo[rows, None] < hi[None, :]) & (lo[None, :] < hi[rows, None])
                & (f[rows, None] < e[None, :]) & (f[None, :] < e[rows, None]))
        idx = np.arange(rows.start, rows.stop)
        both[idx - s, idx] = False  # not against itself
        if both.any():
            return True
    return False


def _check_summary(plan: Plan, ops: dict[str, Any], occ: np.ndarray, err: _Errors) -> None:
    """The memory summary and the latency are the planner's own numbers: recompute them."""
    mem = plan.memory
    if mem is not None and occ.size:
        per_tile = occ.max(axis=1)
        peak = int(occ.max())
        if peak != mem.peak_bytes:
            err.add("summary", f"peak {mem.peak_bytes} != recomputed {peak}")
        if [int(v) for v in per_tile] != list(mem.per_tile_peak):
            err.add("summary", "per-tile peaks differ from the buffers")
        t, s = mem.peak_tile, mem.peak_step
        if not (0 <= t < occ.shape[0] and 0 <= s < occ.shape[1]) or int(occ[t, s]) != peak:
            err.add("summary", f"the peak is not at tile {t}, step {s}")
        else:
            col = [int(v) for v in occ[t]]
            if [sum(d.values()) for d in mem.worst_tile_timeline] != col:
                err.add("summary", f"the timeline of tile {t} differs from the buffers")
            if mem.by_category_at_peak and sum(mem.by_category_at_peak.values()) != peak:
                err.add("summary", "the bytes by category at the peak do not add up to it")
        chip = [int(v) for v in occ.sum(axis=0)]
        if mem.chip_timeline and [sum(d.values()) for d in mem.chip_timeline] != chip:
            err.add("summary", "the chip timeline differs from the buffers")
    total = 0
    for st in plan.steps:
        comp = sum(ops[n].compute_cycles for n in st.ops if n in ops)
        exch = sum(ops[n].exchange_cycles for n in st.ops if n in ops)
        if comp != st.compute_cycles or exch != st.exchange_cycles:
            err.add("summary", f"step {st.index} cycles differ from its ops'")
        if st.sync_cycles < 0:
            err.add("summary", f"step {st.index} has negative sync cycles")
        total += st.cycles
    lat = plan.latency
    if lat is not None:
        if lat.cycles != total:
            err.add("summary", f"latency {lat.cycles} cycles != sum of steps {total}")
        clock = float(plan.target.clock_hz)
        want = total / clock + lat.io_seconds if clock > 0 else lat.seconds
        if not (isclose(lat.seconds, want, rel_tol=1e-9, abs_tol=1e-15)
                and isclose(lat.io_seconds, lat.input_seconds + lat.output_seconds,
                            rel_tol=1e-9, abs_tol=1e-15)):
            err.add("summary", f"latency {lat.seconds} s != {total} cycles at {clock:g} Hz + "
                               f"{lat.io_seconds} s of I/O (= input + output)")
        thr = plan.model.batch / lat.seconds if lat.seconds > 0 else 0.0
        if not isclose(lat.throughput_per_s, thr, rel_tol=1e-9, abs_tol=1e-12):
            err.add("summary", f"throughput {lat.throughput_per_s} != batch / latency {thr}")


def _check_costs(plan: Plan, info: Any, target: Any, holder: dict[str, Buffer],
                 err: _Errors) -> None:
    """What the plan declares, asked again of its sources: the target, the model, the cost
    model (see the module docstring). Reads the cost model through the contract only."""
    from tilec.costmodel import AXES, Split

    model = target.cost_model
    t = plan.target
    chip = (int(target.tiles), int(target.budget_per_tile), [int(v) for v in target.grid],
            str(target.placement), str(getattr(target, "io_location", "host")))
    got = (int(t.tiles), int(t.budget_per_tile), list(t.grid), t.placement, t.io_location)
    if chip != got:
        err.add("costs", f"the plan's chip {got} is not the target's {chip}")
        return
    if list(plan.model.inputs) != list(info.inputs) or list(plan.model.outputs) != list(
            info.outputs):
        err.add("costs", "the plan's model inputs or outputs are not the model's")
    by_name = {op.name: op for op in info.ops}
    placed = {o.name for o in plan.ops}
    for name in sorted(set(by_name) - placed):
        err.add("costs", f"op '{name}' of the model is not placed")
    for name in sorted(placed - set(by_name)):
        err.add("costs", f"op '{name}' is not in the model")
    for o in plan.ops:
        op = by_name.get(o.name)
        if op is None:
            continue
        if (o.op_type, o.kind, list(o.inputs), list(o.outputs)) != (
                op.op_type, op.kind, list(op.inputs), list(op.outputs)):
            err.add("costs", f"op '{o.name}': type, inputs or outputs differ from the model")
            continue
        split = Split.of(**o.split) if all(
            a in AXES for a in o.split) and all(int(f) >= 1 for f in o.split.values()) else None
        if split is None or split not in list(model.splits(op)):
            err.add("costs", f"op '{o.name}': split {o.split} is not one the cost model offers")
            continue
        c = model.cost(op, split)
        outs = [int(v) for v in c.outputs] or [0] * len(op.outputs)
        declared = (_nz(o.always), _nz(o.step_bytes), list(o.output_bytes), _nz(o.spread),
                    int(o.compute_cycles), int(o.exchange_cycles))
        priced = (_nz(c.always), _nz(c.step), outs, _nz(c.spread), int(c.compute_cycles),
                  int(c.exchange_cycles))
        if declared != priced:
            err.add("costs", f"op '{o.name}' declares {declared}, the cost model says "
                             f"{priced} for split {split}")
        if o.in_place and not c.in_place:
            err.add("costs", f"op '{o.name}' claims to work in place; the cost model says not")
        if o.group is not None and not c.follows_input:
            err.add("costs", f"op '{o.name}' shares the tiles of '{o.group}', but the cost "
                             "model does not run it where its input lies")
        sync = int(model.sync_cycles(split.tiles)) if c.compute_cycles + c.exchange_cycles \
            else 0
        st = plan.steps[o.step] if 0 <= o.step < len(plan.steps) else None
        if st is not None and st.sync_cycles != sync:
            err.add("costs", f"step {o.step}: {st.sync_cycles} sync cycles, the cost model "
                             f"says {sync}")
        hook = getattr(model, "input_bytes", None)
        for x, v in o.held_inputs.items():
            want = 0
            if hook is not None and x in info.tensors:
                want = sum(int(b) for b in dict(hook(info.tensors[x], split.tiles)).values())
            if int(v) != want:
                err.add("costs", f"op '{o.name}' holds model input '{x}' at {v} bytes per "
                                 f"tile; the target's input_bytes says {want}")
    for name in info.tensors:
        b = holder.get(name)
        if b is None:
            continue
        root = info.root(name)
        if b.owner != root:
            err.add("costs", f"tensor '{name}' is in the buffer of '{b.owner}', not of its "
                             f"root '{root}'")
    fb = int(getattr(target, "framebuffer_bytes", 0) or 0)
    io_fn = getattr(model, "io_bytes", None)
    if fb > 0 and io_fn is not None and t.io_location == "framebuffer":
        need = int(io_fn(info))
        if need > fb:
            err.add("costs", f"the model's I/O needs {need} bytes of the {fb}-byte framebuffer")



def _nz(d: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(d).items() if int(v)}
