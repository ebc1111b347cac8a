"""(c): CP-SAT proves that no placement exists for the chosen schedule, and names why.

Two models, both over every memory-non-dominated candidate of every op (partition.py: dropping a
dominated candidate loses no feasible plan), so an infeasibility holds for all the cost model's
splits:

``exact``      (small chips, single-tile blocks, every start and every rectangle): the placement
               model itself (place.py) -- every tile at every step within budget. INFEASIBLE means
               no choice of splits and tiles fits this schedule.
``aggregate``  (big chips): a relaxation of the exact model, so its infeasibility implies the exact
               model's. Per step, the chip total of the chosen options (per-tile bytes x tiles, plus
               spread) within ``tiles x budget``; each option's own per-tile need within the budget;
               and, on a line of tiles, the bytes of options wider than half the chip -- which cover
               the middle tile wherever they start -- within one tile's budget (likewise the centre
               tile for rectangles taller and wider than half the mesh).

Each step's constraints are guarded by an assumption literal. When CP-SAT answers INFEASIBLE it
returns a subset of the assumptions that is already infeasible; we shrink it further by deletion
(drop a step, re-solve, keep it dropped if still infeasible) within a small budget, then re-check
the final set twice: a fresh copy of this model containing only those steps' constraints, no
assumptions, solved from scratch (against a wrong core), and the model of
:mod:`~tilec.plan.recheck`, built for those steps with none of this module's code (against a wrong
model). Both must be INFEASIBLE; only then is the certificate reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from tilec.plan.cpsat import SolveSettings, hit_wall_clock, solver
from tilec.plan.geometry import Geometry
from tilec.plan.place import Slot, make_slots
from tilec.plan.place_model import build_model, choice_from
from tilec.plan.problem import Problem
from tilec.plan.recheck import recheck


@dataclass
class Proof:
    """Outcome of a proof attempt."""

    proven: bool
    scope: str  # "exact" | "aggregate"
    status: str  # CP-SAT status of the full model
    steps: list[int] = field(default_factory=list)  # the conflicting steps (minimised core)
    rechecked: bool = False
    recheck_status: str = ""
    complete: bool = True  # the option lists cover every split (else no proof is claimed)
    notes: list[str] = field(default_factory=list)
    independent_status: str = ""  # recheck.py's model, built with none of this module's code
    wall_clock_hit: bool = False  # the wall-clock limit stopped a solve (may not reproduce)
    # The exact model (small chips) is the placement model itself over every split: when it is
    # satisfiable, its solution is a placement that fits, a slot per group with the option index
    # into ``Group.proof_options`` (see problem.with_proof_options). None otherwise.
    witness: list[Slot] | None = None


def _proof_options(g):
    return g.proof_options


def _aggregate_model(problem: Problem, geometry: Geometry, steps: list[int],
                     literals: bool) -> tuple[cp_model.CpModel, dict[int, cp_model.IntVar]]:
    tiles = int(problem.target.tiles)
    budget = problem.budget
    m = cp_model.CpModel()
    x: list[list[cp_model.IntVar]] = []
    spread_floor = sum(min(o.spread_per_tile for o in g.proof_options)
                       for g in problem.groups if g.proof_options)
    profiles: list[np.ndarray] = []
    for gi, g in enumerate(problem.groups):
        row = [m.new_bool_var(f"x{gi}_{k}") for k in range(len(g.proof_options))]
        m.add_exactly_one(row)
        x.append(row)
        prof = np.stack([o.profile(g.intervals, problem.steps) for o in g.proof_options])
        profiles.append(prof)
        for k, o in enumerate(g.proof_options):
            own = int(prof[k].max()) + spread_floor - min(
                oo.spread_per_tile for oo in g.proof_options) + o.spread_per_tile
            if own > budget:
                m.add(row[k] == 0)  # this option alone overflows its own tiles
    rows, cols = int(problem.target.grid[0]), int(problem.target.grid[1])

    def covers_centre(o) -> bool:
        """Does every placement of this option cover the centre tile?"""
        if problem.target.placement == "rect":
            hmin = max(rows - rows // 2, rows // 2 + 1)
            wmin = max(cols - cols // 2, cols // 2 + 1)
            return bool(o.shapes) and all(h >= hmin and w >= wmin for h, w in o.shapes)
        mid = tiles // 2
        return o.tiles >= max(tiles - mid, mid + 1)

    lits: dict[int, cp_model.IntVar] = {}
    # Parts common to every step are shared variables: the always-live total over the chip and
    # on the centre tile, and the spread (total, and per tile).
    at_v, at_c, ac_v, ac_c, sp_v, sp_tot, sp_pt = [], [], [], [], [], [], []
    for gi, g in enumerate(problem.groups):
        for k, o in enumerate(g.proof_options):
            if o.base:
                at_v.append(x[gi][k])
                at_c.append(o.base * o.tiles)
                if covers_centre(o):
                    ac_v.append(x[gi][k])
                    ac_c.append(o.base)
            if o.spread:
                sp_v.append(x[gi][k])
                sp_tot.append(o.spread)
                sp_pt.append(o.spread_per_tile)
    cap = tiles * budget
    at = m.new_int_var(0, cap, "always_total")
    m.add(at == cp_model.LinearExpr.weighted_sum(at_v + sp_v, at_c + sp_tot))
    ac = m.new_int_var(0, budget, "always_centre")
    m.add(ac == cp_model.LinearExpr.weighted_sum(ac_v + sp_v, ac_c + sp_pt))
    varying: dict[int, list[tuple[int, int, int]]] = {}
    for gi, g in enumerate(problem.groups):
        for k, o in enumerate(g.proof_options):
            extra = profiles[gi][k] - o.base
            for st in np.nonzero(extra > 0)[0]:
                varying.setdefault(int(st), []).append((gi, k, int(extra[st])))
    for st in steps:
        vs, cs, wv, wc = [], [], [], []
        for gi, k, e in varying.get(st, []):
            o = problem.groups[gi].proof_options[k]
            vs.append(x[gi][k])
            cs.append(e * o.tiles)
            if covers_centre(o):
                wv.append(x[gi][k])
                wc.append(e)
        lit = m.new_bool_var(f"step{st}") if literals else None
        if lit is not None:
            lits[st] = lit
        c1 = m.add(at + cp_model.LinearExpr.weighted_sum(vs, cs) <= cap)
        c2 = m.add(ac + cp_model.LinearExpr.weighted_sum(wv, wc) <= budget)
        if lit is not None:
            c1.only_enforce_if(lit)
            c2.only_enforce_if(lit)
    return m, lits


def _exact_model(problem: Problem, geometry: Geometry, steps: list[int], literals: bool
                 ) -> tuple[cp_model.CpModel, dict[int, cp_model.IntVar]]:
    model, lits, _ = _exact_model_with_witness(problem, geometry, steps, literals)
    return model, lits


def _exact_model_with_witness(problem: Problem, geometry: Geometry, steps: list[int],
                              literals: bool
                              ) -> tuple[cp_model.CpModel, dict[int, cp_model.IntVar],
                                         Callable[[cp_model.CpSolver], list[Slot]]]:
    slots = make_slots(problem, geometry, proof=True)
    mdl = build_model(problem, geometry, slots, problem.budget, set(steps),
                      with_objective=False, step_literals=literals,
                      options_of=_proof_options)
    return mdl.model, mdl.step_lits, lambda s: choice_from(mdl, s, slots)


def prove(problem: Problem, geometry: Geometry, settings: SolveSettings, *,
          progress: Callable[[str, float], None] | None = None,
          minimise_budget: int = 12) -> Proof:
    """Try to prove that ``problem`` has no placement (see the module docstring)."""
    scope = "exact" if geometry.exact else "aggregate"
    # A group without proof options would make every model trivially infeasible ("exactly one of
    # nothing"): the options do not cover its splits, so nothing can be proven.
    if not all(g.proof_complete for g in problem.groups):
        return Proof(proven=False, scope=scope, status="NOT_RUN", complete=False,
                     notes=["an op has too many candidate combinations to enumerate; no "
                            "infeasibility proof is attempted"])
    if not all(g.proof_options for g in problem.groups):
        return Proof(proven=False, scope=scope, status="NOT_RUN", complete=False,
                     notes=["an op group has no complete option list; no infeasibility proof "
                            "is attempted"])
    build = _exact_model if geometry.exact else _aggregate_model
    all_steps = list(range(problem.steps))
    witness_of = None
    if geometry.exact:
        model, lits, witness_of = _exact_model_with_witness(problem, geometry, all_steps, True)
    else:
        model, lits = build(problem, geometry, all_steps, True)
    model.add_assumptions([lits[s] for s in all_steps])
    s = solver(settings)
    st = s.solve(model)
    status = s.status_name(st)
    wall = hit_wall_clock(s, settings)
    if st != cp_model.INFEASIBLE:
        witness = (witness_of(s) if witness_of is not None
                   and st in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None)
        return Proof(proven=False, scope=scope, status=status, wall_clock_hit=wall,
                     witness=witness)
    by_index = {v.index: k for k, v in lits.items()}
    core = sorted(by_index[i] for i in s.sufficient_assumptions_for_infeasibility()
                  if i in by_index)
    if progress:
        progress("prove", 0.3)
    # deletion-based shrinking (bounded number of re-solves)
    small = SolveSettings(time_limit=settings.time_limit,
                          deterministic_limit=max(0.05, settings.deterministic_limit / 4),
                          seed=settings.seed, workers=1)
    for tries, step in enumerate(list(core)):
        if tries >= minimise_budget or len(core) <= 1:
            break
        rest = [c for c in core if c != step]
        m2, _ = build(problem, geometry, rest, False)
        s2 = solver(small)
        if s2.solve(m2) == cp_model.INFEASIBLE:
            core = rest
        wall = wall or hit_wall_clock(s2, small)
    if progress:
        progress("prove", 0.8)
    m3, _ = build(problem, geometry, core, False)
    s3 = solver(settings)
    st3 = s3.solve(m3)
    wall = wall or hit_wall_clock(s3, settings)
    other, other_status, other_wall = (recheck(problem, geometry.exact, core, settings)
                                       if st3 == cp_model.INFEASIBLE
                                       else (False, "NOT_RUN", False))
    wall = wall or other_wall
    ok = st3 == cp_model.INFEASIBLE and other
    notes = [] if ok or st3 != cp_model.INFEASIBLE else [
        f"the independent re-check did not confirm the proof ({other_status}); none is claimed"]
    return Proof(proven=ok, scope=scope, status=status, steps=core, rechecked=ok,
                 recheck_status=s3.status_name(st3), independent_status=other_status,
                 wall_clock_hit=wall, notes=notes)
