"""place: pick a split and the concrete tiles for every op so every tile stays within budget.

Formulation. Each group (an op and the element-wise ops that follow it) chooses one *slot*: a group
option (a candidate split per member, see problem.py) at a position. The memory a slot puts on each
tile of its footprint at step ``s`` is the option's profile ``P[s]``: always bytes at every step
plus the step and buffer bytes over their fixed lifetimes. Feasibility: for every tile ``t`` and
step ``s``::

    sum over groups whose footprint holds t of P_slot[s]  +  spread per tile  <=  budget

Objective: latency (sum of the chosen options' cycles), then the peak (headroom).

Search, in order (:func:`place`):

1. **Greedy at tile level** (:func:`exact_search`): groups in a fixed order, each at the position
   (every start / origin, by sliding-window maxima) and option minimising its footprint's resulting
   peak plus ``mu`` x cycles; ``mu = 0`` (memory first), then the largest ``mu`` (fastest), then a
   bisection on ``mu``; then an improvement sweep (fastest slot that still fits, group by group), a
   headroom pass (same options, memory-first positions), or -- when nothing fits -- a repair local
   search at the worst tile and step. Tens of milliseconds per pass.
2. **CP-SAT on blocks** (:func:`cpsat_search`): tiles grouped into blocks (single tiles on small
   chips: the exact model), a slot charged to every block it touches (conservative: block-feasible
   means tile-feasible). Boolean slot choices ``y[g, k]``, exactly one per group; the always-live
   load per block shared through a segment tree over the blocks; spread one shared variable;
   ``always + spread + varying <= peak <= budget`` per block at the steps of a working set grown
   lazily (solve, evaluate every step, add the violated ones, re-solve). Objective
   ``cycles x (budget + 1) + peak``. Hinted with the best block-level greedy; on big chips only
   the hint's neighbourhood is offered while the hint fits. The model itself is built in
   place_model.py (shared with the proof); the search that solves and grows it is here.
3. The best plan by its exact per-tile score (:func:`evaluate_tiles`): fits, cycles, peak.

The finished plan is checked again, tile by tile, by the independent verifier (verify.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from tilec.plan.cpsat import SolveSettings, solve
from tilec.plan.geometry import Geometry, Position
from tilec.plan.place_model import add_steps, build_model, choice_from, initial_steps
from tilec.plan.problem import Group, Problem

Slot = tuple[int, Position]  # (option index, position)


@dataclass
class Placement:
    """A slot per group (``None`` only while building) and how it scores at block level."""

    choice: list[Slot]
    load: np.ndarray  # [blocks, steps] bytes per tile, conservative, including spread
    peak: int
    peak_block: int
    peak_step: int
    cycles: int
    method: str
    fits: bool = False


@dataclass
class PlaceResult:
    """The placement to build the plan from, and how it was found."""

    best: Placement
    fits: bool  # block-level feasible under the budget
    solver_status: str  # CP-SAT status name, or "greedy" when CP-SAT was not needed / not run
    objective: float | None = None
    bound: float | None = None
    infeasible_exact: bool = False  # CP-SAT proved the exact model (small chip) infeasible
    wall_clock_hit: bool = False
    details: dict = field(default_factory=dict)
    greedy_cycles: int | None = None
    greedy_peak: int | None = None
    seconds: dict = field(default_factory=dict)  # wall clock; never serialised


# ----------------------------------------------------------------------------------- slots
def make_slots(problem: Problem, geometry: Geometry, *, proof: bool = False) -> list[list[Slot]]:
    """Per group, every (option, position) offered, in a fixed order."""
    out: list[list[Slot]] = []
    for g in problem.groups:
        opts = g.proof_options if proof else g.options
        slots: list[Slot] = []
        for oi, opt in enumerate(opts):
            for pos in geometry.positions(opt.tiles, opt.shapes):
                slots.append((oi, pos))
        out.append(slots)
    return out


def spread_floor(problem: Problem) -> int:
    """Spread bytes every tile carries whatever the choice (each group at its cheapest option)."""
    return sum(min(o.spread_per_tile for o in g.options) for g in problem.groups if g.options)


def evaluate(problem: Problem, geometry: Geometry, choice: Sequence[Slot], method: str,
             budget: int | None = None) -> Placement:
    """Block-level load of a complete choice at every step (conservative, spread included)."""
    load = np.zeros((geometry.n_blocks, problem.steps), dtype=np.int64)
    sp = 0
    cycles = 0
    for g, (oi, pos) in zip(problem.groups, choice, strict=False):
        opt = g.options[oi]
        cycles += opt.cycles
        sp += opt.spread_per_tile
        if g.trivial:
            continue
        load[list(pos.blocks), :] += g.profiles[oi]
    load += sp
    if load.size:
        flat = int(np.argmax(load))
        pb, ps = divmod(flat, problem.steps)
        peak = int(load[pb, ps])
    else:
        pb = ps = peak = 0
    budget = problem.budget if budget is None else budget
    p = Placement(choice=list(choice), load=load, peak=peak, peak_block=pb, peak_step=ps,
                  cycles=cycles, method=method)
    p.fits = peak <= budget
    return p


# ----------------------------------------------------------------------------------- greedy
def _trivial_slot(problem: Problem, g: Group, slots: list[Slot],
                  choice: Sequence[Slot | None]) -> Slot:
    """A zero-byte group goes where its first input lives when it can, else the first slot."""
    info = problem.info
    op = info.op_by_name[g.leader]
    if op.inputs:
        spec = problem.buffers.get(info.root(op.inputs[0]))
        if spec is not None and spec.owner in problem.group_of:
            src = choice[problem.group_of[spec.owner]]
            if src is not None:
                for s in slots:
                    if s[1] == src[1]:
                        return min((t for t in slots if t[1] == src[1]),
                                   key=lambda t: (g.options[t[0]].cycles, t[0]))
    return min(slots, key=lambda t: (g.options[t[0]].cycles, t[0]))


def greedy(problem: Problem, geometry: Geometry, slots: list[list[Slot]], order: Sequence[int],
           mode: str, budget: int | None = None, mu: float = 0.0) -> list[Slot]:
    """One greedy pass over the offered (block-aligned) slots, charged per block: the CP-SAT
    model's hint. ``mode`` "memory": lowest resulting peak (to 1/256 of the budget), then least
    area, then fewest cycles; "lagrange": lowest ``val + mu x cycles`` among slots within budget."""
    nb, steps = geometry.n_blocks, problem.steps
    budget = problem.budget if budget is None else budget
    occ = np.zeros((nb, steps), dtype=np.int64)
    sp = spread_floor(problem)
    quantum = max(1, budget // 256)
    choice: list[Slot | None] = [None] * len(problem.groups)
    for gi in order:
        g = problem.groups[gi]
        if g.trivial:
            continue
        sp_min = min(o.spread_per_tile for o in g.options)
        best_key, best = None, None
        need_cache: dict[int, np.ndarray] = {}
        for k, (oi, pos) in enumerate(slots[gi]):
            need = need_cache.get(oi)
            if need is None:
                need = (occ + g.profiles[oi][None, :]).max(axis=1)
                need_cache[oi] = need
            opt = g.options[oi]
            val = int(need[list(pos.blocks)].max()) + sp + opt.spread_per_tile - sp_min
            area = opt.tiles * int(g.profiles[oi].max())
            if mode == "memory":
                key: tuple = (val // quantum, area, opt.cycles, val, k)
            else:  # "lagrange": price cycles in bytes (mu bytes per cycle)
                key = (val > budget, opt.cycles * mu + val, area, k)
            if best_key is None or key < best_key:
                best_key, best = key, (oi, pos)
        assert best is not None
        choice[gi] = best
        occ[list(best[1].blocks), :] += g.profiles[best[0]][None, :]
        sp += g.options[best[0]].spread_per_tile - sp_min
    for gi, g in enumerate(problem.groups):
        if choice[gi] is None:
            choice[gi] = _trivial_slot(problem, g, slots[gi], choice)
    return [c for c in choice if c is not None]


def greedy_orders(problem: Problem) -> dict[str, list[int]]:
    """Group orders tried by the greedy: biggest footprint first, and schedule order."""
    n = len(problem.groups)

    def size(gi: int) -> int:
        g = problem.groups[gi]
        return min(int(g.profiles[oi].max()) * o.tiles for oi, o in enumerate(g.options))

    return {
        "largest_first": sorted(range(n), key=lambda gi: (-size(gi), gi)),
        "schedule": list(range(n)),
    }


def greedy_search(problem: Problem, geometry: Geometry, slots: list[list[Slot]],
                  budget: int | None = None, passes: int = 6) -> tuple[Placement, list[dict]]:
    """Greedy passes; the best by (fits, cycles, peak). Returns it and a log of the passes.

    First the memory-first pass in two group orders (largest footprint first, schedule order);
    if it fits, a bisection on the price ``mu`` of a cycle in bytes looks for the fastest plan that
    still fits (a Lagrangian relaxation of "fastest plan under the budget", one pass per probe).
    """
    budget = problem.budget if budget is None else budget
    log: list[dict] = []
    results: list[Placement] = []

    def score(p: Placement) -> tuple:
        return (0, p.cycles, p.peak) if p.peak <= budget else (1, p.peak, p.cycles)

    def run(order_name: str, order: list[int], mode: str, mu: float = 0.0) -> Placement:
        ch = greedy(problem, geometry, slots, order, mode, budget=budget, mu=mu)
        p = evaluate(problem, geometry, ch, f"greedy:{mode}:{order_name}"
                     + (f":mu={mu:.3g}" if mode == "lagrange" else ""), budget)
        results.append(p)
        log.append({"pass": p.method, "peak": p.peak, "cycles": p.cycles})
        return p

    orders = greedy_orders(problem)
    mem = [(name, run(name, order, "memory")) for name, order in orders.items()]
    best_name, best_mem = min(mem, key=lambda t: (t[1].peak > budget, t[1].cycles, t[1].peak))
    if best_mem.peak <= budget and passes > 0:
        order = orders[best_name]
        lo, hi = -16.0, 4.0  # log2 of mu (bytes per cycle)
        for _ in range(passes):
            mid = (lo + hi) / 2
            p = run(best_name, order, "lagrange", 2.0 ** mid)
            if p.peak <= budget:
                lo = mid
            else:
                hi = mid
    return min(results, key=score), log


# ----------------------------------------------------------------------------------- exact greedy
def window_max(v: np.ndarray, n: int) -> np.ndarray:
    """``out[..., i] = max(v[..., i:i+n])`` for every full window along the last axis, by
    doubling (O(len log n) element operations, no Python loop over positions)."""
    out = v
    span = 1
    while span * 2 <= n:
        out = np.maximum(out[..., :-span], out[..., span:])
        span *= 2
    if span < n:
        out = np.maximum(out[..., : out.shape[-1] - (n - span)], out[..., n - span:])
    return out[..., : v.shape[-1] - n + 1]


def window_sum(v: np.ndarray, n: int) -> np.ndarray:
    """``out[..., i] = sum(v[..., i:i+n])`` along the last axis."""
    c = np.cumsum(v, axis=-1)
    c = np.concatenate((np.zeros((*v.shape[:-1], 1), dtype=c.dtype), c), axis=-1)
    return c[..., n:] - c[..., :-n]


def _load(problem: Problem, choice: Sequence[Slot]) -> tuple[np.ndarray, int]:
    """Bytes per tile at every step of a choice without the spread (``[tiles, steps]``), and
    the spread per tile: the local searches move groups in and out of the first and keep the
    second apart, because a spread byte lands on every tile whatever the position."""
    # a difference array over the tiles: each range adds its profile at its first tile and
    # takes it back after its last, one running sum gives every tile (a profile added to every
    # tile of every range one by one was ~40 ms a call on gc200's 1472 tiles)
    diff = np.zeros((int(problem.target.tiles) + 1, problem.steps), dtype=np.int64)
    sp = 0
    for g, (oi, pos) in zip(problem.groups, choice, strict=False):
        sp += g.options[oi].spread_per_tile
        if g.trivial:
            continue
        prof = g.profiles[oi]
        for a, b in pos.ranges:
            diff[a] += prof
            diff[b] -= prof
    return np.cumsum(diff[:-1], axis=0), sp


def tile_occupancy(problem: Problem, choice: Sequence[Slot]) -> np.ndarray:
    """Exact bytes per tile at every step of a choice (spread included), ``[tiles, steps]``."""
    occ, sp = _load(problem, choice)
    return occ + sp


def _best_slot(problem: Problem, geometry: Geometry, g: Group, occ: np.ndarray,
               peak: np.ndarray, sp_other: int, mu: float, budget: int,
               option: int | None = None) -> tuple[tuple, Slot] | None:
    """The best position of every option of ``g`` given the load of the others (``occ``, its
    per-tile maximum ``peak``, and ``sp_other`` = spread per tile of all other groups).

    Key (lowest wins): over budget?, ``val + mu x cycles``, load of the window, option, position;
    ``val`` is the resulting peak on the footprint. With ``mu`` huge this is "the fastest slot that
    fits", with ``mu = 0`` "the slot that keeps the peak lowest"."""
    tiles = int(problem.target.tiles)
    rows, cols = geometry.grid
    best_key, best = None, None
    for oi, opt in enumerate(g.options):
        if option is not None and oi != option:
            continue
        prof = g.profiles[oi]
        var = np.nonzero(prof > opt.base)[0]
        need = peak + opt.base
        if len(var):
            need = np.maximum(need, (occ[:, var] + prof[var]).max(axis=1))
        extra = sp_other + opt.spread_per_tile
        price = opt.cycles * mu
        if geometry.placement == "range":
            n = opt.tiles
            if n > tiles:
                continue
            val = window_max(need, n) + extra
            ws = window_sum(peak, n)
            key_arr = val + price
            over = val > budget
            st = int(np.lexsort((np.arange(len(val)), ws, key_arr, over))[0])
            key = (bool(over[st]), float(key_arr[st]), int(ws[st]), oi, st)
            if best_key is None or key < best_key:
                best_key, best = key, (oi, geometry.at((st,), n))
        else:
            grid = need.reshape(rows, cols)
            load = peak.reshape(rows, cols)
            shapes = opt.shapes if geometry.exact else opt.shapes[:3]
            for h, w in shapes:
                val = window_max(window_max(grid, w).T, h).T + extra
                ws = window_sum(window_sum(load, w).T, h).T
                key_arr = val + price
                flat = int(np.lexsort((np.arange(val.size), ws.ravel(), key_arr.ravel(),
                                       (val > budget).ravel()))[0])
                r0, c0 = divmod(flat, val.shape[1])
                key = (bool(val[r0, c0] > budget), float(key_arr[r0, c0]), int(ws[r0, c0]), oi,
                       flat)
                if best_key is None or key < best_key:
                    best_key, best = key, (oi, geometry.at((r0, c0), opt.tiles, (h, w)))
    if best is None or best_key is None:
        return None
    return best_key, best


def _add(occ: np.ndarray, peak: np.ndarray, prof: np.ndarray, pos: Position, sign: int) -> None:
    """Add (``sign`` 1) or remove (-1) a profile on ``pos``'s tiles, keeping ``peak`` the
    per-tile maximum of ``occ``. Adding raises every step by the profile's base and the steps
    of its bumps by more, so the new maximum is the old one plus the base or a bump step's load:
    only those steps are looked at (the whole row for a removal)."""
    if sign > 0:
        base = int(prof.min())
        var = np.nonzero(prof > base)[0]
        for a, b in pos.ranges:
            occ[a:b, :] += prof
            peak[a:b] += base
            if len(var):
                np.maximum(peak[a:b], occ[a:b, var].max(axis=1), out=peak[a:b])
        return
    for a, b in pos.ranges:
        occ[a:b, :] -= prof
        peak[a:b] = occ[a:b, :].max(axis=1)


def greedy_exact(problem: Problem, geometry: Geometry, order: Sequence[int], *,
                 mu: float = 0.0, budget: int | None = None,
                 only: dict[int, int] | None = None) -> list[Slot]:
    """A greedy pass at tile granularity with every start (range) or origin (rect) offered.

    The per-tile need of an option is ``max(M[t] + base, max over its varying steps of
    occ[t, s] + P[s])`` (``M`` = per-tile maximum over steps), so evaluating an option costs
    O(tiles x varying steps) rather than O(tiles x steps); the best start is a sliding-window
    maximum. Ties go to the least loaded window (spreads the always-live bytes). ``only`` fixes
    a group's option (then only its position is chosen)."""
    tiles, steps = int(problem.target.tiles), problem.steps
    budget = problem.budget if budget is None else budget
    occ = np.zeros((tiles, steps), dtype=np.int64)
    peak = np.zeros(tiles, dtype=np.int64)
    sp = spread_floor(problem)  # every group at its cheapest spread until it chooses
    choice: list[Slot | None] = [None] * len(problem.groups)
    for gi in order:
        g = problem.groups[gi]
        if g.trivial:
            continue
        sp_min = min(o.spread_per_tile for o in g.options)
        found = _best_slot(problem, geometry, g, occ, peak, sp - sp_min, mu, budget,
                           None if only is None else only.get(gi))
        assert found is not None
        oi, pos = found[1]
        choice[gi] = (oi, pos)
        _add(occ, peak, g.profiles[oi], pos, 1)
        sp += g.options[oi].spread_per_tile - sp_min
    for gi, g in enumerate(problem.groups):
        if choice[gi] is None:
            choice[gi] = _trivial_slot(problem, g, _all_slots(geometry, g), choice)
    return [c for c in choice if c is not None]


def _all_slots(geometry: Geometry, g: Group) -> list[Slot]:
    return [(oi, pos) for oi, opt in enumerate(g.options)
            for pos in geometry.positions(opt.tiles, opt.shapes)]


def repair_exact(problem: Problem, geometry: Geometry, choice: Sequence[Slot], budget: int,
                 rounds: int = 60) -> tuple[list[Slot], int]:
    """Local search on an over-budget tile-level plan: at the worst (tile, step), take out each
    group that holds bytes there (largest first) and put it back where it keeps its footprint's
    peak lowest; keep the move if the plan's (peak, number of tile-steps at the peak) drops.
    Returns the plan and its peak (possibly still over budget)."""
    tiles, steps = int(problem.target.tiles), problem.steps
    cur = list(choice)
    occ, sp = _load(problem, cur)
    peak = occ.max(axis=1) if steps else np.zeros(tiles, dtype=np.int64)

    def score() -> tuple[int, int]:
        top = int(peak.max()) if tiles else 0
        return top + sp, int((occ == top).sum())

    best = score()
    tried: set[tuple[int, int, int]] = set()
    for _ in range(rounds):
        if best[0] <= budget:
            break
        t_star = int(np.argmax(peak))
        s_star = int(np.argmax(occ[t_star]))
        holders = [gi for gi, (oi, pos) in enumerate(cur)
                   if not problem.groups[gi].trivial
                   and any(a <= t_star < b for a, b in pos.ranges)
                   and int(problem.groups[gi].profiles[oi][s_star]) > 0]
        holders.sort(key=lambda gi: (-int(problem.groups[gi].profiles[cur[gi][0]][s_star]), gi))
        moved = False
        for gi in holders:
            if (gi, t_star, s_star) in tried:
                continue
            tried.add((gi, t_star, s_star))
            g = problem.groups[gi]
            oi, pos = cur[gi]
            _add(occ, peak, g.profiles[oi], pos, -1)
            sp_other = sp - g.options[oi].spread_per_tile
            found = _best_slot(problem, geometry, g, occ, peak, sp_other, 0.0, budget)
            if found is not None:
                noi, npos = found[1]
                _add(occ, peak, g.profiles[noi], npos, 1)
                sp_new = sp_other + g.options[noi].spread_per_tile
                old_sp, sp = sp, sp_new
                now = score()
                if now < best:
                    cur[gi] = (noi, npos)
                    best = now
                    moved = True
                    break
                sp = old_sp
                _add(occ, peak, g.profiles[noi], npos, -1)
            _add(occ, peak, g.profiles[oi], pos, 1)
        if not moved:
            break
    return cur, best[0]


def improve_exact(problem: Problem, geometry: Geometry, choice: Sequence[Slot], budget: int,
                  sweeps: int = 1) -> list[Slot]:
    """Local improvement of a fitting tile-level plan: each group in turn (largest possible
    saving first) is taken out and put back at the fastest slot that still fits -- its
    footprint's peak within the budget, and a larger spread only if every tile has room."""
    tiles, steps = int(problem.target.tiles), problem.steps
    cur = list(choice)
    occ, sp = _load(problem, cur)
    peak = occ.max(axis=1) if steps else np.zeros(tiles, dtype=np.int64)

    def saving(gi: int) -> int:
        g = problem.groups[gi]
        return g.options[cur[gi][0]].cycles - min(o.cycles for o in g.options)

    order = sorted((gi for gi, g in enumerate(problem.groups) if not g.trivial),
                   key=lambda gi: (-saving(gi), gi))
    for _ in range(sweeps):
        changed = False
        for gi in order:
            if saving(gi) == 0:
                continue
            g = problem.groups[gi]
            oi, pos = cur[gi]
            _add(occ, peak, g.profiles[oi], pos, -1)
            sp_other = sp - g.options[oi].spread_per_tile
            found = _best_slot(problem, geometry, g, occ, peak, sp_other, 1e12, budget)
            new = cur[gi]
            if found is not None and not found[0][0]:
                noi, npos = found[1]
                grow = g.options[noi].spread_per_tile - g.options[oi].spread_per_tile
                if g.options[noi].cycles < g.options[oi].cycles and (
                        grow <= 0 or int(peak.max()) + sp_other
                        + g.options[noi].spread_per_tile <= budget):
                    new = (noi, npos)
            _add(occ, peak, g.profiles[new[0]], new[1], 1)
            sp += g.options[new[0]].spread_per_tile - g.options[oi].spread_per_tile
            if new != cur[gi]:
                cur[gi] = new
                changed = True
        if not changed:
            break
    return cur


def exact_search(problem: Problem, geometry: Geometry, budget: int, passes: int = 6
                 ) -> tuple[list[Slot], int, int, list[dict]]:
    """Tile-exact greedy passes: memory first, then the price of a cycle bisected while it fits.
    Returns (choice, tile peak, cycles, log)."""
    log: list[dict] = []
    results: list[tuple[tuple, list[Slot], int, int]] = []

    def run(order_name: str, order: list[int], mu: float) -> tuple[int, int]:
        ch = greedy_exact(problem, geometry, order, mu=mu, budget=budget)
        occ = tile_occupancy(problem, ch)
        pk = int(occ.max()) if occ.size else 0
        cyc = sum(g.options[oi].cycles for g, (oi, _) in zip(problem.groups, ch, strict=False))
        log.append({"pass": f"exact:{order_name}:mu={mu:.3g}", "peak": pk, "cycles": cyc})
        key = (0, cyc, pk) if pk <= budget else (1, pk, cyc)
        results.append((key, ch, pk, cyc))
        return pk, cyc

    orders = greedy_orders(problem)
    mem = {name: run(name, order, 0.0) for name, order in orders.items()}
    best_name = min(mem, key=lambda n: (mem[n][0] > budget, mem[n][1], mem[n][0]))
    if mem[best_name][0] <= budget and passes > 0:
        lo, hi = -16.0, 4.0
        pk, _ = run(best_name, orders[best_name], 2.0 ** hi)  # the fastest the greedy can do
        for _ in range(passes - 1 if pk > budget else 0):
            mid = (lo + hi) / 2
            pk, _ = run(best_name, orders[best_name], 2.0 ** mid)
            if pk <= budget:
                lo = mid
            else:
                hi = mid
    _key, ch, pk, cyc = min(results, key=lambda r: r[0])
    if pk > budget:
        fixed, fpk = repair_exact(problem, geometry, ch, budget)
        fcyc = sum(g.options[oi].cycles for g, (oi, _) in zip(problem.groups, fixed,
                                                               strict=True))
        log.append({"pass": "exact:repair", "peak": fpk, "cycles": fcyc})
        if fpk < pk:
            ch, pk, cyc = fixed, fpk, fcyc
    if pk <= budget:
        better = improve_exact(problem, geometry, ch, budget)
        occ = tile_occupancy(problem, better)
        bpk = int(occ.max()) if occ.size else 0
        bcyc = sum(g.options[oi].cycles for g, (oi, _) in zip(problem.groups, better,
                                                               strict=True))
        log.append({"pass": "exact:improve", "peak": bpk, "cycles": bcyc})
        if bpk <= budget and bcyc < cyc:
            ch, pk, cyc = better, bpk, bcyc
        # then headroom: the same options (same cycles), positions chosen memory-first
        for order_name, order in orders.items():
            fixed = greedy_exact(problem, geometry, order, budget=budget,
                                 only={gi: oi for gi, (oi, _) in enumerate(ch)})
            occ = tile_occupancy(problem, fixed)
            fpk = int(occ.max()) if occ.size else 0
            log.append({"pass": f"exact:headroom:{order_name}", "peak": fpk, "cycles": cyc})
            if fpk < pk:
                ch, pk = fixed, fpk
    return ch, pk, cyc, log


# ----------------------------------------------------------------------------------- CP-SAT
def cpsat_search(problem: Problem, geometry: Geometry, slots: list[list[Slot]], hint: Placement,
                 settings: SolveSettings, *, budget: int | None = None, rounds: int = 2,
                 progress: Callable[[str, float], None] | None = None) -> PlaceResult:
    """Improve (or find) a placement with CP-SAT, growing the step set lazily."""
    budget = problem.budget if budget is None else budget
    if geometry.exact and problem.steps * geometry.n_blocks <= 20000:
        steps = set(range(problem.steps))  # small: the complete exact model at once
    else:
        steps = initial_steps(problem, hint, budget)
    mdl = build_model(problem, geometry, slots, budget, steps, with_objective=True)
    slot_index = [{(oi, pos): k for k, (oi, pos) in enumerate(row)} for row in slots]
    best = hint if hint.peak <= budget else None
    details: dict = {"rounds": 0, "steps_modelled": 0, "booleans": sum(len(r) for r in slots)}
    status_name, obj, bound, wall_hit = "UNKNOWN", None, None, False
    first_round = SolveSettings(time_limit=settings.time_limit,
                                deterministic_limit=settings.deterministic_limit,
                                seed=settings.seed, workers=settings.workers)
    repair_round = SolveSettings(time_limit=settings.time_limit,
                                 deterministic_limit=settings.deterministic_limit / 2,
                                 seed=settings.seed, workers=settings.workers)
    current_hint = hint
    infeasible_exact = False
    for r in range(rounds):
        mdl.model.clear_hints()
        for gi, (oi, pos) in enumerate(current_hint.choice):
            k = slot_index[gi].get((oi, pos))
            if k is not None:
                for kk, v in enumerate(mdl.y[gi]):
                    mdl.model.add_hint(v, kk == k)
        out = solve(mdl.model, first_round if r == 0 else repair_round)
        sol, st = out.solver, out.status
        wall_hit = wall_hit or out.wall_clock_hit
        status_name = out.status_name
        details["rounds"] = r + 1
        details["steps_modelled"] = len(mdl.steps_in)
        if progress:
            progress("place", 0.1 + 0.9 * (r + 1) / rounds)
        if st == cp_model.INFEASIBLE:
            # Infeasible with a subset of the constraints: infeasible with all of them. It is a
            # proof about the restricted model; only on the exact geometry about the chip.
            infeasible_exact = geometry.exact
            break
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break
        obj, bound = sol.objective_value, sol.best_objective_bound
        cand = evaluate(problem, geometry, choice_from(mdl, sol, slots), "cp-sat", budget)
        violated = {int(s) for s in np.nonzero(cand.load.max(axis=0) > budget)[0]}
        if not violated:
            if best is None or (cand.cycles, cand.peak) < (best.cycles, best.peak):
                best = cand
            break  # its peak term saw only the modelled steps; the exact score decides later
        add_steps(problem, geometry, slots, mdl, violated)
        current_hint = best if best is not None else cand
    result_best = best if best is not None else hint
    return PlaceResult(best=result_best, fits=result_best.peak <= budget,
                       solver_status=status_name, objective=obj, bound=bound,
                       infeasible_exact=infeasible_exact, wall_clock_hit=wall_hit,
                       details=details)


# ----------------------------------------------------------------------------------- driver
def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def snap(choice: Sequence[Slot], slots: list[list[Slot]]) -> list[Slot]:
    """Each group's offered slot closest to a tile-level choice: same option, nearest origin."""
    out = []
    for (oi, pos), row in zip(choice, slots, strict=False):
        same = [s for s in row if s[0] == oi] or row
        out.append(min(same, key=lambda s, pos=pos: (_distance(s[1].origin, pos.origin),
                                                     s[1].origin)))
    return out


def neighbourhood(slots: list[list[Slot]], hint: Sequence[Slot], reach: int = 2
                  ) -> list[list[Slot]]:
    """Per group, the slots near the hint: every option at the hint's origin (when offered), and
    the hint's option at the ``reach`` nearest other origins. Keeps the CP-SAT model small enough
    to improve within a second on big chips (a large-neighbourhood restriction)."""
    out = []
    for row, (oi, pos) in zip(slots, hint, strict=False):
        keep = [s for s in row if s[1].origin == pos.origin or (s[0] == oi and s[1] == pos)]
        same = sorted((s for s in row if s[0] == oi and s not in keep),
                      key=lambda s, pos=pos: (_distance(s[1].origin, pos.origin),
                                              s[1].origin))
        keep += same[:reach]
        if not any(s[0] == oi and s[1] == pos for s in keep):
            keep.append((oi, pos))
        out.append(sorted(keep, key=lambda s: (s[0], s[1].origin)))
    return out


def evaluate_tiles(problem: Problem, choice: Sequence[Slot], method: str, budget: int
                   ) -> Placement:
    """Exact (per-tile) score of a complete choice."""
    occ = tile_occupancy(problem, choice)
    if occ.size:
        flat = int(np.argmax(occ))
        pt, ps = divmod(flat, problem.steps)
        peak = int(occ[pt, ps])
    else:
        pt = ps = peak = 0
    cycles = sum(g.options[oi].cycles for g, (oi, _) in zip(problem.groups, choice, strict=False))
    return Placement(choice=list(choice), load=occ, peak=peak, peak_block=pt, peak_step=ps,
                     cycles=cycles, method=method, fits=peak <= budget)


def place(problem: Problem, geometry: Geometry, settings: SolveSettings, *,
          budget: int | None = None, use_cpsat: bool = True, greedy_passes: int = 5,
          progress: Callable[[str, float], None] | None = None) -> PlaceResult:
    """Greedy passes (block and tile level), CP-SAT from the best block-level one, and the best of
    all by their exact per-tile score: (fits, cycles, peak)."""
    budget = problem.budget if budget is None else budget
    t0 = time.perf_counter()
    slots = make_slots(problem, geometry)
    hint, log = greedy_search(problem, geometry, slots, budget,
                              passes=greedy_passes if geometry.exact else 0)
    candidates: list[Placement] = [evaluate_tiles(problem, hint.choice, hint.method, budget)]
    if not geometry.exact:
        ch, _pk, _cyc, log2 = exact_search(problem, geometry, budget, passes=greedy_passes)
        log += log2
        candidates.append(evaluate_tiles(problem, ch, "greedy:tile", budget))
        snapped = evaluate(problem, geometry, snap(ch, slots), "greedy:tile-snapped", budget)
        log.append({"pass": snapped.method, "peak": snapped.peak, "cycles": snapped.cycles})
        if (snapped.peak > budget, snapped.cycles if snapped.peak <= budget else snapped.peak) < (
                hint.peak > budget, hint.cycles if hint.peak <= budget else hint.peak):
            hint = snapped
    if progress:
        progress("place", 0.2)
    t1 = time.perf_counter()
    details = {"greedy": log, "geometry": geometry.describe(),
               "groups": len(problem.groups), "slots": sum(len(s) for s in slots)}
    res: PlaceResult
    if use_cpsat and not all(g.trivial for g in problem.groups):
        model_slots = (slots if geometry.exact or hint.peak > budget
                       else neighbourhood(slots, hint.choice))
        details["cp_sat_slots"] = sum(len(r) for r in model_slots)
        res = cpsat_search(problem, geometry, model_slots, hint, settings, budget=budget,
                           progress=progress)
        if res.best is not hint:
            candidates.append(evaluate_tiles(problem, res.best.choice, "cp-sat", budget))
    else:
        res = PlaceResult(best=hint, fits=hint.peak <= budget, solver_status="greedy")
    best = min(candidates, key=lambda p: (0, p.cycles, p.peak) if p.fits else (1, p.peak,
                                                                                p.cycles))
    greedy_best = min(candidates[:2], key=lambda p: (0, p.cycles, p.peak) if p.fits
                      else (1, p.peak, p.cycles))
    res.details = {**details, **res.details, "kept": best.method}
    res.best, res.fits = best, best.fits
    res.greedy_cycles, res.greedy_peak = greedy_best.cycles, greedy_best.peak
    res.seconds = {"greedy": t1 - t0, "cp-sat": time.perf_counter() - t1}
    return res
