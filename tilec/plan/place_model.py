"""The CP-SAT block model of placement (step 2 of :func:`tilec.plan.place.place`).

Tiles are grouped into blocks (single tiles on small chips: then the model is exact); a slot is
charged to every block it touches, so a block-feasible choice is tile-feasible. Boolean slot choices
``y[g, k]``, exactly one per group; the always-live load per block is shared through a segment tree
over the blocks (:func:`cover_nodes`, :func:`block_paths`); spread is one shared variable; and
``always + spread + varying <= peak <= budget`` holds per block at the steps of a working set that
the search grows lazily (:func:`initial_steps`, :func:`add_steps`). :func:`build_model` is shared
with the proof (proof.py), which asks the same model for infeasibility.

The search that solves it, reads the solution back (:func:`choice_from`) and re-solves with the
violated steps added is :func:`tilec.plan.place.cpsat_search`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from ortools.sat.python import cp_model

from tilec.plan.geometry import Geometry
from tilec.plan.problem import Group, Problem

if TYPE_CHECKING:
    from tilec.plan.place import Placement, Slot


def cover_nodes(geometry: Geometry, blocks: tuple[int, ...]) -> list[int]:
    """Nodes of the coverage tree whose union is exactly ``blocks``.

    On a line the blocks a footprint touches are contiguous, so a segment tree over the blocks
    decomposes them into O(log G) canonical nodes; a block's load is the sum over the nodes on its
    root-to-leaf path. This keeps the always-live load per block at O(slots log G) terms instead of
    O(slots x blocks). On a mesh the nodes are the blocks themselves.
    """
    nb = geometry.n_blocks
    if geometry.placement != "range" or len(blocks) <= 2:
        return list(blocks)
    lo, hi = blocks[0], blocks[-1] + 1
    out: list[int] = []

    def rec(node: int, a: int, b: int) -> None:
        if hi <= a or b <= lo:
            return
        if lo <= a and b <= hi:
            out.append(node)
            return
        mid = (a + b) // 2
        rec(2 * node + 1, a, mid)
        rec(2 * node + 2, mid, b)

    rec(0, 0, nb)
    return [nb + v for v in out]  # tree nodes numbered after the leaf blocks


def block_paths(geometry: Geometry) -> list[list[int]]:
    """Per block, the nodes whose load it carries: itself and (on a line) its tree ancestors."""
    nb = geometry.n_blocks
    if geometry.placement != "range":
        return [[j] for j in range(nb)]
    paths: list[list[int]] = [[j] for j in range(nb)]

    def rec(node: int, a: int, b: int, anc: list[int]) -> None:
        here = [*anc, nb + node]
        if b - a == 1:
            paths[a].extend(here)
            return
        mid = (a + b) // 2
        rec(2 * node + 1, a, mid, here)
        rec(2 * node + 2, mid, b, here)

    if nb > 0:
        rec(0, 0, nb, [])
    return paths


@dataclass
class _Model:
    model: cp_model.CpModel
    y: list[list[cp_model.IntVar]]
    a: list[cp_model.LinearExprT]  # always-live load per block
    sp: cp_model.LinearExprT
    z: cp_model.IntVar
    cycles: cp_model.LinearExprT
    steps_in: set[int]
    step_lits: dict[int, cp_model.IntVar]
    live: list[list[int]]
    nodes: list[list[list[int]]]  # per group, per slot: cover nodes
    paths: list[list[int]]


def _varying(problem: Problem, options_of: Callable[[Group], Sequence]) -> list[list[int]]:
    """Per step, the groups whose profile varies there (some option has a bump at that step)."""
    live: list[list[int]] = [[] for _ in range(problem.steps)]
    for gi, g in enumerate(problem.groups):
        if g.trivial:
            continue
        opts = options_of(g)
        prof = np.stack([_profile(g, oi, opts, problem.steps) for oi in range(len(opts))])
        base = np.array([o.base for o in opts], dtype=np.int64)[:, None]
        active = np.nonzero((prof - base).max(axis=0) > 0)[0]
        for s in active:
            live[int(s)].append(gi)
    return live


def _node_sum(m: cp_model.CpModel, terms: dict[int, tuple[list, list]], ub: int, name: str
              ) -> dict[int, cp_model.LinearExprT]:
    """One expression per node: an integer variable when it has several terms."""
    out: dict[int, cp_model.LinearExprT] = {}
    for v, (vars_, coefs) in terms.items():
        if len(vars_) == 1:
            out[v] = vars_[0] * coefs[0]
        else:
            x = m.new_int_var(0, ub, f"{name}{v}")
            m.add(x == cp_model.LinearExpr.weighted_sum(vars_, coefs))
            out[v] = x
    return out


def build_model(problem: Problem, geometry: Geometry, slots: list[list[Slot]], budget: int,
                steps: set[int], *, with_objective: bool, step_literals: bool = False,
                options_of: Callable[[Group], Sequence] | None = None) -> _Model:
    """The slot-choice model with the block constraints of the given steps."""
    opts_of = options_of or (lambda g: g.options)
    m = cp_model.CpModel()
    y: list[list[cp_model.IntVar]] = []
    nodes: list[list[list[int]]] = []
    for gi, _g in enumerate(problem.groups):
        row = [m.new_bool_var(f"y{gi}_{k}") for k in range(len(slots[gi]))]
        m.add_exactly_one(row)
        y.append(row)
        nodes.append([cover_nodes(geometry, pos.blocks) for _, pos in slots[gi]])
    paths = block_paths(geometry)
    nb = geometry.n_blocks
    sp_terms = [(y[gi][k], opts_of(g)[oi].spread_per_tile)
                for gi, g in enumerate(problem.groups) for k, (oi, _) in enumerate(slots[gi])
                if opts_of(g)[oi].spread_per_tile]
    sp: cp_model.LinearExprT = 0
    if sp_terms:  # one variable, so the many block constraints share it
        sp = m.new_int_var(0, budget, "spread")
        m.add(sp == cp_model.LinearExpr.weighted_sum([v for v, _ in sp_terms],
                                                     [c for _, c in sp_terms]))
    terms: dict[int, tuple[list, list]] = {}
    for gi, g in enumerate(problem.groups):
        opts = opts_of(g)
        for k, (oi, _pos) in enumerate(slots[gi]):
            base = opts[oi].base
            if base:
                for v in nodes[gi][k]:
                    t = terms.setdefault(v, ([], []))
                    t[0].append(y[gi][k])
                    t[1].append(base)
    node_a = _node_sum(m, terms, budget, "A")
    a: list[cp_model.LinearExprT] = []
    for j in range(nb):
        parts = [node_a[v] for v in paths[j] if v in node_a]
        a.append(sum(parts) if parts else 0)
    z = m.new_int_var(0, budget, "peak")
    for j in range(nb):
        m.add(a[j] + sp <= z)
    mdl = _Model(model=m, y=y, a=a, sp=sp, z=z, cycles=0, steps_in=set(), step_lits={},
                 live=_varying(problem, opts_of), nodes=nodes, paths=paths)
    add_steps(problem, geometry, slots, mdl, steps, step_literals=step_literals,
              options_of=opts_of)
    if with_objective:
        cyc_vars, cyc_coefs = [], []
        for gi, g in enumerate(problem.groups):
            opts = opts_of(g)
            for k, (oi, _) in enumerate(slots[gi]):
                if opts[oi].cycles:
                    cyc_vars.append(y[gi][k])
                    cyc_coefs.append(opts[oi].cycles)
        mdl.cycles = (cp_model.LinearExpr.weighted_sum(cyc_vars, cyc_coefs) if cyc_vars else 0)
        m.minimize(mdl.cycles * (budget + 1) + z)
    return mdl


def add_steps(problem: Problem, geometry: Geometry, slots: list[list[Slot]], mdl: _Model,
              steps: set[int], *, step_literals: bool = False,
              options_of: Callable[[Group], Sequence] | None = None) -> None:
    """Add the per-block constraints of ``steps`` (those not in the model yet)."""
    opts_of = options_of or (lambda g: g.options)
    nb = geometry.n_blocks
    extras: dict[int, np.ndarray] = {}  # per group: [options, steps] bytes above the base

    def extra_of(gi: int) -> np.ndarray:
        if gi not in extras:
            g = problem.groups[gi]
            opts = opts_of(g)
            prof = np.stack([_profile(g, oi, opts, problem.steps) for oi in range(len(opts))])
            extras[gi] = prof - np.array([o.base for o in opts], dtype=np.int64)[:, None]
        return extras[gi]

    for s in sorted(steps - mdl.steps_in):
        terms: dict[int, tuple[list, list]] = {}
        for gi in mdl.live[s]:
            ex = extra_of(gi)[:, s]
            for k, (oi, _pos) in enumerate(slots[gi]):
                extra = int(ex[oi])
                if extra:
                    for v in mdl.nodes[gi][k]:
                        t = terms.setdefault(v, ([], []))
                        t[0].append(mdl.y[gi][k])
                        t[1].append(extra)
        node_v = _node_sum(mdl.model, terms, problem.budget * 4 + 1, f"V{s}_")
        lit = None
        if step_literals:
            lit = mdl.model.new_bool_var(f"step{s}")
            mdl.step_lits[s] = lit
        for j in range(nb):
            parts = [node_v[v] for v in mdl.paths[j] if v in node_v]
            if not parts:
                continue
            ct = mdl.model.add(mdl.a[j] + mdl.sp + sum(parts) <= mdl.z)
            if lit is not None:
                ct.only_enforce_if(lit)
        mdl.steps_in.add(s)


def _profile(g: Group, oi: int, opts: Sequence, steps: int) -> np.ndarray:
    if opts is g.options and g.profiles is not None:
        return g.profiles[oi]
    return opts[oi].profile(g.intervals, steps)


def choice_from(mdl: _Model, s: cp_model.CpSolver, slots: list[list[Slot]]) -> list[Slot]:
    """The slot per group that the solved model chose."""
    out = []
    for gi, row in enumerate(mdl.y):
        k = next(i for i, v in enumerate(row) if s.boolean_value(v))
        out.append(slots[gi][k])
    return out


def initial_steps(problem: Problem, hint: Placement, budget: int, limit: int = 24) -> set[int]:
    """Steps the CP-SAT model starts with: where the hint is tightest, and where the varying
    demand is largest."""
    col_peak = hint.load.max(axis=0)
    tight = set(int(s) for s in np.argsort(-col_peak, kind="stable")[:limit])
    tight |= {int(s) for s in np.nonzero(col_peak > budget * 0.9)[0]}
    return tight
