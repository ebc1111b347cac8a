"""recheck: a second, independently built model for every infeasibility proof (c).

proof.py finds a set of steps that CP-SAT says no placement can satisfy and solves it again on a
fresh copy of the *same* model: that guards against a wrong assumption core, not against a wrong
model. This module builds the model a second time with none of the code the first one used --
no ``GroupOption.profile`` / ``bumps``, no block geometry, no segment tree, no assumption literals,
no closed-form "covers the centre" test -- from the groups' candidates, the buffers' lifetimes
and the target alone:

* every option's bytes per tile at each step are summed here from its candidates (always, step at
  the member's step, each buffer it holds over its lifetime -- less the last step where the
  option overwrites it in place --, each model input it holds at the target's ``input_bytes``), and
  its spread per tile from the candidates' spread totals;
* ``exact`` (small chips): one Boolean per option and footprint, footprints enumerated from the
  grid (every start on a line, every rectangle on a mesh), every tile at every step of the proof
  within the budget, plus every tile's always-live bytes;
* ``aggregate``: one Boolean per option; per step the chip total within ``tiles x budget``; each
  option's own peak (with every other group's least spread) within the budget; and the options
  whose every footprint -- enumerated, not derived -- holds the centre tile within one tile.

Both are relaxations of (or equal to) the placement problem of the proof's schedule, so INFEASIBLE
here, too, means no placement exists; the proof is reported only when both models agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from ortools.sat.python import cp_model

from tilec.plan.cpsat import SolveSettings, hit_wall_clock, solver
from tilec.plan.problem import Group, Problem

MAX_TERMS = 4_000_000
"""Largest exact model built here (sum of terms over its constraints); above it the re-check
declines and no proof is claimed (modelling choice: exact scope is for chips of <= 64 tiles, where
real networks stay far below this)."""


def option_bytes(problem: Problem, g: Group, opt) -> tuple[np.ndarray, int, int, int]:
    """(bytes per tile at each step, always-live bytes per tile, spread per tile, spread total)
    of one option, summed from its candidates."""
    steps = problem.steps
    tiles = int(problem.target.tiles)
    by_op = dict(zip(g.members, opt.cands, strict=True))
    base = sum(int(c.cost.always_bytes) for c in opt.cands)
    prof = np.full(steps, base, dtype=np.int64)
    for m, c in by_op.items():
        prof[problem.step_of[m]] += int(c.cost.step_bytes)
    hook = getattr(problem.target.cost_model, "input_bytes", None)
    n = opt.cands[0].split.tiles
    for spec in problem.buffers.values():
        if spec.owner not in by_op:
            continue
        if spec.is_input:
            if hook is None:
                continue
            v = sum(int(b) for b in dict(hook(problem.info.tensors[spec.root], n)).values())
            prof[spec.first:spec.end] += v
            continue
        outs = by_op[spec.owner].cost.outputs
        v = int(outs[spec.out_index]) if outs and spec.out_index is not None else 0
        end = spec.end
        f = spec.reused_by
        if f is not None and f in by_op:
            f_outs = by_op[f].cost.outputs
            if f_outs and int(f_outs[0]) == v:
                end -= 1
        prof[spec.first:end] += v
    spread_total = sum(int(v) for c in opt.cands for v in c.cost.spread.values())
    spread_pt = sum(-(-int(v) // tiles) for c in opt.cands for v in c.cost.spread.values()
                    if int(v))
    return prof, base, spread_pt, spread_total


def footprints(problem: Problem, n: int) -> list[tuple[int, ...]]:
    """Every set of ``n`` tiles an op may occupy: a range on a line, a rectangle on a mesh."""
    tiles = int(problem.target.tiles)
    if problem.target.placement != "rect":
        return [tuple(range(a, a + n)) for a in range(tiles - n + 1)]
    cols = int(problem.target.grid[1])
    return [tuple(r * cols + c for r in range(r0, r0 + h) for c in range(c0, c0 + w))
            for r0, c0, h, w in _rectangles(problem, n)]


def _rectangles(problem: Problem, n: int) -> Iterator[tuple[int, int, int, int]]:
    """Every ``(row, col, height, width)`` rectangle of ``n`` tiles on the target's mesh."""
    rows, cols = int(problem.target.grid[0]), int(problem.target.grid[1])
    for h in range(1, rows + 1):
        if n % h or n // h > cols:
            continue
        w = n // h
        for r0 in range(rows - h + 1):
            for c0 in range(cols - w + 1):
                yield r0, c0, h, w


def recheck(problem: Problem, exact: bool, steps: Sequence[int], settings: SolveSettings
            ) -> tuple[bool, str, bool]:
    """(INFEASIBLE?, CP-SAT status, stopped by the wall clock?) of the independent model over
    ``steps``."""
    build = _exact if exact else _aggregate
    model = build(problem, sorted(set(steps)))
    if model is None:
        return False, "TOO_LARGE", False
    s = solver(settings)
    st = s.solve(model)
    return st == cp_model.INFEASIBLE, s.status_name(st), hit_wall_clock(s, settings)


def _options(problem: Problem):
    for gi, g in enumerate(problem.groups):
        yield gi, g, [option_bytes(problem, g, o) for o in g.proof_options]


def _exact(problem: Problem, steps: list[int]) -> cp_model.CpModel | None:
    tiles = int(problem.target.tiles)
    budget = int(problem.budget)
    m = cp_model.CpModel()
    cover: list[list[tuple[cp_model.IntVar, int, np.ndarray]]] = [[] for _ in range(tiles)]
    spread_v, spread_c = [], []
    terms = 0
    for gi, g, opts in _options(problem):
        row = []
        for k, (prof, base, sp, _tot) in enumerate(opts):
            n = g.proof_options[k].cands[0].split.tiles
            for fp in footprints(problem, n):
                v = m.new_bool_var(f"x{gi}_{k}_{fp[0]}_{len(row)}")
                row.append(v)
                if sp:
                    spread_v.append(v)
                    spread_c.append(sp)
                for t in fp:
                    cover[t].append((v, base, prof))
                terms += len(fp) * (len(steps) + 1)
        if terms > MAX_TERMS:
            return None
        m.add_exactly_one(row)
    spread = cp_model.LinearExpr.weighted_sum(spread_v, spread_c) if spread_v else 0
    for t in range(tiles):
        items = cover[t]
        m.add(cp_model.LinearExpr.weighted_sum([v for v, _, _ in items],
                                               [b for _, b, _ in items]) + spread <= budget)
        for s in steps:
            vs = [(v, int(p[s])) for v, _, p in items if int(p[s])]
            if vs:
                m.add(cp_model.LinearExpr.weighted_sum([v for v, _ in vs], [c for _, c in vs])
                      + spread <= budget)
    return m


def _aggregate(problem: Problem, steps: list[int]) -> cp_model.CpModel:
    tiles = int(problem.target.tiles)
    budget = int(problem.budget)
    cap = tiles * budget
    centre = _centre(problem)
    held: dict[int, bool] = {}
    m = cp_model.CpModel()
    groups = list(_options(problem))
    least_spread = [min((o[2] for o in opts), default=0) for _, _, opts in groups]
    floor = sum(least_spread)
    total_v, total_c, centre_v, centre_c, spread_v, spread_c = [], [], [], [], [], []
    step_total: dict[int, tuple[list, list]] = {s: ([], []) for s in steps}
    step_centre: dict[int, tuple[list, list]] = {s: ([], []) for s in steps}
    for (gi, g, opts), least in zip(groups, least_spread, strict=True):
        row = []
        for k, (prof, base, sp, tot) in enumerate(opts):
            v = m.new_bool_var(f"x{gi}_{k}")
            row.append(v)
            n = g.proof_options[k].cands[0].split.tiles
            if int(prof.max(initial=base)) + floor - least + sp > budget:
                m.add(v == 0)  # this option alone overflows its own tiles
            total_v.append(v)
            total_c.append(base * n + tot)
            if sp:
                spread_v.append(v)
                spread_c.append(sp)
            holds_centre = _holds(problem, n, centre, held)
            if holds_centre:
                centre_v.append(v)
                centre_c.append(base)
            for s in steps:
                step_total[s][0].append(v)
                step_total[s][1].append(int(prof[s]) * n + tot)
                if holds_centre:
                    step_centre[s][0].append(v)
                    step_centre[s][1].append(int(prof[s]))
        m.add_exactly_one(row)
    spread = cp_model.LinearExpr.weighted_sum(spread_v, spread_c) if spread_v else 0
    m.add(cp_model.LinearExpr.weighted_sum(total_v, total_c) <= cap)
    m.add(cp_model.LinearExpr.weighted_sum(centre_v, centre_c) + spread <= budget)
    for s in steps:
        m.add(cp_model.LinearExpr.weighted_sum(*step_total[s]) <= cap)
        m.add(cp_model.LinearExpr.weighted_sum(*step_centre[s]) + spread <= budget)
    return m


def _holds(problem: Problem, n: int, tile: int, memo: dict[int, bool]) -> bool:
    """Does every footprint of ``n`` tiles hold ``tile``? (Every position tried; no tuples.)"""
    if n in memo:
        return memo[n]
    tiles = int(problem.target.tiles)
    if problem.target.placement != "rect":
        starts = range(tiles - n + 1)
        ok = len(starts) > 0 and all(a <= tile < a + n for a in starts)
    else:
        r, c = divmod(tile, int(problem.target.grid[1]))
        seen = False
        ok = True
        for r0, c0, h, w in _rectangles(problem, n):
            seen = True
            if not (r0 <= r < r0 + h and c0 <= c < c0 + w):
                ok = False
                break
        ok = ok and seen
    memo[n] = ok
    return ok


def _centre(problem: Problem) -> int:
    """The centre tile: the middle of the line, or the middle row's middle column of the mesh."""
    tiles = int(problem.target.tiles)
    if problem.target.placement != "rect":
        return tiles // 2
    rows, cols = int(problem.target.grid[0]), int(problem.target.grid[1])
    return (rows // 2) * cols + cols // 2
