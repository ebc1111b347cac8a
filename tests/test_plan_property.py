"""Property tests: random small DAGs on a small synthetic chip, checked by brute force.

* every plan reported as fitting passes the verifier (the pipeline raises otherwise) and, re-checked
  here with an independent occupancy computation, stays within budget;
* every "does not fit" backed by evidence (a), (b) or (c) is confirmed by exhaustive search: for (a)
  and (b) over every topological order, for (c) over the plan's schedule;
* conversely, when exhaustive search finds a placement for the plan's schedule, the planner (exact
  CP-SAT model on a chip this small) finds one too, unless the address layout is what failed.

The brute force implements the charging rules from docs/planner.md on its own (no planner code).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_fixtures import OpSpec, toy_graph, toy_target

from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS
from tilec.plan.pipeline import Options, run
from tilec.plan.verify import verify

FAST = Options(settings=SolveSettings(time_limit=10, deterministic_limit=2.0, workers=1))


# ----------------------------------------------------------------------------------- brute force
def _topo_orders(info):
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


def _footprints(target, tiles):
    """Every tile set a footprint of ``tiles`` tiles may occupy."""
    if target.placement == "range":
        return [frozenset(range(a, a + tiles)) for a in range(target.tiles - tiles + 1)]
    rows, cols = target.grid
    out = []
    for h in range(1, rows + 1):
        if tiles % h or tiles // h > cols:
            continue
        w = tiles // h
        for r0 in range(rows - h + 1):
            for c0 in range(cols - w + 1):
                out.append(frozenset(r * cols + c for r in range(r0, r0 + h)
                                     for c in range(c0, c0 + w)))
    return out


def feasible(info, target, order) -> bool:
    """Is there any choice of split and tiles per op keeping every tile within budget at every
    step of ``order``? Depth-first with pruning; our own charging rules."""
    model = target.cost_model
    steps = len(order)
    pos = {n: i for i, n in enumerate(order)}
    budget = target.budget_per_tile
    ops = {op.name: op for op in info.ops}
    # buffer lifetimes (roots; the random graphs have no views or in-place concats)
    life = {}
    for t in info.tensors.values():
        if t.producer is None:
            continue
        first = pos[t.producer]
        last = max([pos[c] for c in t.consumers] + [first])
        life[t.name] = (first, steps if t.is_output else last + 1)
    choices = []
    for name in order:
        op = ops[name]
        opts = []
        for split in model.splits(op):
            cost = model.cost(op, split)
            spread = sum(math.ceil(v / target.tiles) for v in cost.spread.values())
            prof = np.zeros(steps, dtype=np.int64)
            prof += sum(cost.always.values())
            prof[pos[name]] += sum(cost.step.values())
            for t, o in zip(op.outputs, cost.outputs, strict=True):
                a, b = life[t]
                prof[a:b] += o
            for fp in _footprints(target, split.tiles):
                opts.append((fp, prof, spread))
        choices.append(opts)
    occ = np.zeros((target.tiles, steps), dtype=np.int64)

    def dfs(i: int, spread: int) -> bool:
        if i == len(choices):
            return True
        for fp, prof, sp in choices[i]:
            idx = sorted(fp)
            occ[idx] += prof
            ok = int(occ.max()) + spread + sp <= budget
            if ok and dfs(i + 1, spread + sp):
                occ[idx] -= prof
                return True
            occ[idx] -= prof
        return False

    return dfs(0, 0)


def feasible_any_order(info, target) -> bool:
    return any(feasible(info, target, order) for order in _topo_orders(info))


# ----------------------------------------------------------------------------------- graphs
@st.composite
def small_problems(draw, rect: bool = False):
    n = draw(st.integers(2, 4))
    ops, tensors = [], ["x"]
    for i in range(n):
        k = draw(st.integers(1, min(2, len(tensors))))
        ins = draw(st.lists(st.sampled_from(tensors), min_size=k, max_size=k, unique=True))
        counts = draw(st.lists(st.sampled_from([1, 2, 4]), min_size=1, max_size=2, unique=True))
        table = {c: (draw(st.integers(0, 12)), draw(st.integers(0, 12)),
                     draw(st.integers(0, 12)), draw(st.integers(1, 50))) for c in counts}
        attrs = {}
        if draw(st.integers(0, 5)) == 0:
            attrs["spread"] = draw(st.integers(1, 40))
        ops.append(OpSpec(f"op{i}", ins, [f"t{i}"], table, attrs=attrs))
        tensors.append(f"t{i}")
    budget = draw(st.integers(8, 40))
    target = toy_target(rect=(2, 2), budget=budget) if rect else toy_target(4, budget)
    return toy_graph(ops), target


def _check(info, target):
    out = run(info, target, options=FAST)
    plan = out.plan
    if plan.status == STATUS_FITS:
        v = verify(plan)
        assert v.ok, v.errors
        # independent occupancy check: every tile, every step
        occ = np.zeros((target.tiles, len(plan.steps)), dtype=np.int64)
        for b in plan.buffers:
            for a, c in b.tiles:
                occ[a:c, b.first:b.end] += b.bytes
        assert int(occ.max(initial=0)) <= target.budget_per_tile
        return plan, None
    ev = plan.diagnosis.evidence
    if plan.status == STATUS_DOES_NOT_FIT:
        assert ev.kind in ("chip_capacity", "op_too_large", "solver_infeasible")
        assert ev.rechecked
        if ev.kind == "solver_infeasible":
            order = [s.ops[0] for s in plan.steps]
            assert not feasible(info, target, order), "claimed infeasible, brute force fits"
        else:
            assert not feasible_any_order(info, target), f"claimed ({ev.kind}), brute force fits"
    else:
        assert ev.kind == "search_limit"
    return plan, ev


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_random_dags_line(problem):
    info, target = problem
    plan, ev = _check(info, target)
    order = [s.ops[0] for s in plan.steps]
    if feasible(info, target, order):
        assert plan.status == STATUS_FITS or (
            ev is not None and ev.details.get("layout_failures")), (
            f"brute force fits the schedule but the planner says {plan.status}: "
            f"{ev.summary if ev else ''}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(rect=True))
def test_random_dags_mesh(problem):
    info, target = problem
    plan, ev = _check(info, target)
    order = [s.ops[0] for s in plan.steps]
    if feasible(info, target, order):
        assert plan.status == STATUS_FITS or (ev is not None
                                              and ev.details.get("layout_failures"))


def test_brute_force_itself():
    """The checker agrees with a case worked by hand: two always-live ops of 3 bytes on a
    2-tile-wide footprint each fit a 4-tile chip of 5 bytes only side by side."""
    table = {2: (3, 0, 0, 1)}
    info = toy_graph([OpSpec("a", ["x"], ["ta"], table), OpSpec("b", ["ta"], ["tb"], table)])
    assert feasible(info, toy_target(4, 5), ["a", "b"])
    assert feasible(info, toy_target(4, 5), ["a", "b"]) is not False
    info3 = toy_graph([OpSpec("a", ["x"], ["ta"], {3: (3, 0, 0, 1)}),
                       OpSpec("b", ["ta"], ["tb"], {3: (3, 0, 0, 1)})])
    assert not feasible(info3, toy_target(4, 5), ["a", "b"])  # 3-wide ranges overlap on 4 tiles


@pytest.mark.parametrize("order", list(itertools.permutations(["b", "c"])))
def test_orders_enumerated(order):
    info = toy_graph([OpSpec("a", ["x"], ["ta"], {1: (0, 0, 1, 1)}),
                      OpSpec("b", ["ta"], ["tb"], {1: (0, 0, 1, 1)}),
                      OpSpec("c", ["ta"], ["tc"], {1: (0, 0, 1, 1)})])
    orders = list(_topo_orders(info))
    assert ["a", *order] in orders and len(orders) == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(rect=False) | small_problems(rect=True))
def test_aggregate_relaxation_is_sound(problem):
    """The big-chip proof model (chip totals, own tiles, centre tile) forced onto a small chip:
    whenever it claims infeasibility, exhaustive search agrees."""
    from tilec.plan.geometry import Geometry
    from tilec.plan.partition import partition
    from tilec.plan.problem import build_problem
    from tilec.plan.proof import prove
    from tilec.plan.schedule import schedule

    info, target = problem
    sched = schedule(info)
    prob = build_problem(info, target, sched, partition(info, target))
    geo = Geometry(target.tiles, target.grid, target.placement, exact_limit=0)
    assert not geo.exact
    proof = prove(prob, geo, SolveSettings(deterministic_limit=2.0, workers=1))
    if proof.proven:
        assert proof.scope == "aggregate" and proof.rechecked
        assert not feasible(info, target, list(sched.order))
