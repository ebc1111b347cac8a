"""Exhaustive placement search on tiny instances, written from docs/planner.md's charging rules
alone (no planner code): the referee of the planner's property tests.

Rules implemented here (docs/planner.md, "What is charged, and where"):

* an op's ``always`` bytes on each of its tiles for the whole run, ``step`` bytes during its
  superstep, ``spread`` totals as ``ceil(total / tiles)`` per category on every tile;
* one buffer per *root* tensor (views alias their input, in-place Concat inputs are slices of its
  output), on the tiles of the root's producer with its ``outputs[k]`` bytes per tile, from the
  first step writing it (views write nothing) to the last step reading it or an alias; model
  outputs to the end unless the target's I/O is a framebuffer;
* a model input on the tiles of its first reader that is not a view, from step 0 to its last read,
  at the cost model's ``input_bytes``;
* an op whose cost ``follows_input`` runs on the tiles of the op owning its first input's buffer
  (when that op ran earlier), with the same tile count -- unless the two never share a tile count,
  when it runs where it likes;
* in place (the *semantics* of ``OpCost.in_place``, not the planner's conservative rule): a
  follower that may work in place, is the last reader of its first input's buffer (which is no
  model output kept to the end, and was written before), and whose output is a buffer of its own
  with exactly the input buffer's bytes per tile for the splits chosen, writes into it: the input
  buffer ends at the follower's step.

The search is depth-first over the ops in schedule order, each choosing a split and a footprint,
pruned as soon as a tile overflows (every charge only adds bytes, so pruning is exact).
"""

from __future__ import annotations

import math

import numpy as np


def topo_orders(info):
    """Every topological order of ``info``'s ops."""
    preds = {op.name: {info.tensors[t].producer for t in op.inputs
                       if info.tensors[t].producer} for op in info.ops}
    names = [op.name for op in info.ops]

    def rec(done, rest):
        if not rest:
            yield list(done)
            return
        for n in rest:
            if preds[n] <= set(done):
                yield from rec([*done, n], [r for r in rest if r != n])

    yield from rec([], names)


def footprints(target, tiles):
    """Every tile set a footprint of ``tiles`` tiles may occupy (sorted tuples)."""
    if target.placement == "range":
        return [tuple(range(a, a + tiles)) for a in range(target.tiles - tiles + 1)]
    rows, cols = target.grid
    out = []
    for h in range(1, rows + 1):
        if tiles % h or tiles // h > cols:
            continue
        w = tiles // h
        for r0 in range(rows - h + 1):
            for c0 in range(cols - w + 1):
                out.append(tuple(sorted(r * cols + c for r in range(r0, r0 + h)
                                        for c in range(c0, c0 + w))))
    return out


def _root(info, t):
    seen = set()
    while t not in seen:
        seen.add(t)
        ti = info.tensors[t]
        nxt = ti.alias_of or ti.part_of
        if nxt is None:
            return t
        t = nxt
    return t


def feasible(info, target, order) -> bool:
    """Is there a choice of split and tiles per op keeping every tile within budget at every
    superstep of ``order``? (The rules in the module docstring.)"""
    model = target.cost_model
    n_tiles, steps, budget = target.tiles, len(order), target.budget_per_tile
    pos = {n: i for i, n in enumerate(order)}
    ops = {op.name: op for op in info.ops}
    views = {n for n, op in ops.items() if op.kind == "view"}
    stay = getattr(target, "io_location", "host") != "framebuffer"
    in_hook = getattr(model, "input_bytes", None)

    # ---- buffers (roots)
    writers, readers, is_in, is_out = {}, {}, {}, {}
    for name, t in info.tensors.items():
        r = _root(info, name)
        writers.setdefault(r, set())
        readers.setdefault(r, set())
        is_in[r] = is_in.get(r, False) or t.is_input
        is_out[r] = is_out.get(r, False) or t.is_output
        if t.producer is not None and t.producer not in views:
            writers[r].add(t.producer)
        readers[r].update(t.consumers)
    life, holder = {}, {}
    for r in writers:
        if is_in[r]:
            if not readers[r]:
                continue
            first = 0
            real = [x for x in readers[r] if x not in views] or list(readers[r])
            holder[r] = min(real, key=lambda x: (pos[x], x))
        else:
            if not writers[r]:
                continue
            first = min(pos[w] for w in writers[r])
            holder[r] = info.tensors[r].producer
        last = max([pos[x] for x in readers[r]] + [first])
        life[r] = (first, steps if (is_out[r] and stay) else last + 1)

    # ---- options per op: (tiles, cost)
    cands = {}
    for name in order:
        op = ops[name]
        cands[name] = [(s.tiles, model.cost(op, s)) for s in model.splits(op)
                       if s.tiles <= n_tiles]
    follows = {n: any(c.follows_input for _, c in cands[n]) for n in order}

    # ---- groups: a follower runs on its leader's footprint (leader placed earlier)
    leader = {}
    for name in order:
        op = ops[name]
        if not follows[name] or not op.inputs:
            continue
        r = _root(info, op.inputs[0])
        if is_in.get(r) or r not in holder:
            continue
        lead = holder[r]
        if lead != name and pos[lead] < pos[name]:
            leader[name] = lead
    # a group whose members never share a tile count runs free (the planner's fallback)
    def top(n):
        while n in leader:
            n = leader[n]
        return n
    groups = {}
    for n in order:
        groups.setdefault(top(n), []).append(n)
    for lead, members in groups.items():
        common = set.intersection(*({t for t, c in cands[m] if m == lead or c.follows_input}
                                    for m in members))
        if not common:
            for m in members:
                leader.pop(m, None)

    # ---- in place candidates: follower f may overwrite buffer r_in at its step
    maybe_in_place = {}  # f -> r_in
    for f in order:
        op = ops[f]
        if f not in leader or not op.inputs or not op.outputs:
            continue
        if not all(c.in_place and c.follows_input for _, c in cands[f]):
            continue
        r_in, r_out = _root(info, op.inputs[0]), op.outputs[0]
        if r_in not in life or r_out not in life or _root(info, r_out) != r_out:
            continue
        first, end = life[r_in]
        if (is_out[r_in] and stay) or end != pos[f] + 1 or first >= pos[f]:
            continue
        if top(holder[r_in]) != top(f) or holder[r_out] != f:
            continue
        maybe_in_place[f] = r_in
    deferred = {r: f for f, r in maybe_in_place.items()}

    occ = np.zeros((n_tiles, steps), dtype=np.int64)
    chosen = {}  # op -> (footprint, tiles, cost)

    def out_bytes(name, r):
        _fp, _, cost = chosen[name]
        k = ops[name].outputs.index(r)
        return int(cost.outputs[k]) if cost.outputs else 0

    def charges(name):
        """(footprint, first, end, bytes) items op ``name`` adds once placed."""
        fp, n, cost = chosen[name]
        s = pos[name]
        items = [(fp, 0, steps, sum(cost.always.values())), (fp, s, s + 1,
                                                             sum(cost.step.values()))]
        for r in ops[name].outputs:
            if r in life and holder[r] == name and not is_in[r]:
                first, end = life[r]
                if r in deferred:
                    items.append((fp, first, end - 1, out_bytes(name, r)))
                else:
                    items.append((fp, first, end, out_bytes(name, r)))
        for r, h in holder.items():
            if h == name and is_in[r] and in_hook is not None:
                first, end = life[r]
                got = sum(int(v) for v in dict(in_hook(info.tensors[r], n)).values())
                items.append((fp, first, end, got))
        r_in = maybe_in_place.get(name)
        if r_in is not None:
            owner = holder[r_in]
            same = out_bytes(owner, r_in) == (int(cost.outputs[0]) if cost.outputs else 0)
            if not same:  # not in place after all: the input buffer lives through this step
                first, end = life[r_in]
                items.append((chosen[owner][0], end - 1, end, out_bytes(owner, r_in)))
        return [i for i in items if i[3] and i[1] < i[2]]

    def options(name):
        lead = leader.get(name)
        for n, cost in cands[name]:
            if lead is not None:
                if not cost.follows_input or n != chosen[lead][1]:
                    continue
                yield chosen[lead][0], n, cost
            else:
                for fp in footprints(target, n):
                    yield fp, n, cost

    def dfs(i, spread):
        if i == len(order):
            return True
        name = order[i]
        for fp, n, cost in options(name):
            sp = sum(math.ceil(int(v) / n_tiles) for v in cost.spread.values())
            chosen[name] = (fp, n, cost)
            items = charges(name)
            for tiles_, a, b, v in items:
                occ[list(tiles_), a:b] += v
            ok = int(occ.max(initial=0)) + spread + sp <= budget
            if ok and dfs(i + 1, spread + sp):
                for tiles_, a, b, v in items:
                    occ[list(tiles_), a:b] -= v
                del chosen[name]
                return True
            for tiles_, a, b, v in items:
                occ[list(tiles_), a:b] -= v
            del chosen[name]
        return False

    return dfs(0, 0)


def feasible_any_order(info, target) -> bool:
    return any(feasible(info, target, order) for order in topo_orders(info))


__all__ = ["feasible", "feasible_any_order", "footprints", "topo_orders"]
