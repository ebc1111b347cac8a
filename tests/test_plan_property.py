"""Property tests: random small DAGs on a small synthetic chip, checked by brute force.

* every plan reported as fitting passes the verifier (the pipeline raises otherwise) and, re-checked
  here with an independent occupancy computation, stays within budget;
* every "does not fit" backed by evidence (a), (b) or (c) is confirmed by exhaustive search: for (a)
  and (b) over every topological order, for (c) over the plan's schedule;
* conversely, when exhaustive search finds a placement for the plan's schedule, the planner (exact
  CP-SAT model on a chip this small) finds one too, unless the address layout is what failed.

The brute force (tests/brute_force.py) implements the charging rules from docs/planner.md on its
own (no planner code). Two generators: plain DAGs of ops with their own splits, and "rich" ones
with everything the rules treat specially -- element-wise followers on their leader's tiles
(sharing tile counts or not), in-place overwrites (also chained, also with bytes that match only
for some splits), views, in-place Concats, model inputs held in tile memory, spread bytes,
several splits with the same tile count, and targets whose I/O lives in a framebuffer (outputs
leave after their last reader).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from brute_force import feasible, feasible_any_order, topo_orders
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_fixtures import OpSpec, ToyTarget, toy_graph, toy_target

from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS
from tilec.plan.pipeline import Options, run
from tilec.plan.verify import verify

FAST = Options(settings=SolveSettings(time_limit=10, deterministic_limit=2.0, workers=1))


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


@dataclasses.dataclass(frozen=True)
class FramebufferTarget(ToyTarget):
    """A toy chip whose model I/O lives outside tile memory (NorthPole-like)."""

    io_location: str = "framebuffer"


@st.composite
def rich_problems(draw, rect: bool = False):
    """2-5 ops of every kind the planner treats specially (see the module docstring)."""
    n = draw(st.integers(2, 5))
    ops, tensors = [], ["x"]
    views, parts, kind_of, taken = {}, {}, {"x": "input"}, set()

    def table(counts):
        return {c: (draw(st.integers(0, 8)), draw(st.integers(0, 8)),
                    draw(st.integers(0, 8)), draw(st.integers(1, 50))) for c in counts}

    def counts(max_size=2):
        return draw(st.lists(st.sampled_from([1, 2, 4]), min_size=1, max_size=max_size,
                             unique=True))

    def alt():
        """Sometimes a second split at some tile counts (same footprint, other bytes)."""
        if draw(st.integers(0, 2)):
            return {}
        return {"alt": table(draw(st.lists(st.sampled_from([2, 4]), min_size=1, max_size=2,
                                           unique=True)))}

    for i in range(n):
        kind = draw(st.sampled_from(["conv", "conv", "follow", "follow", "view", "concat"]))
        out = f"t{i}"
        if kind == "concat":
            ok = [t for t in tensors if kind_of[t] in ("conv", "follow", "concat")
                  and t not in taken]
            if len(ok) < 2:
                kind = "conv"
            else:
                ins = draw(st.lists(st.sampled_from(ok), min_size=2, max_size=2, unique=True))
                for t in ins:
                    parts[t] = out
                    taken.add(t)
                ops.append(OpSpec(f"op{i}", ins, [out], table(counts()), kind="concat"))
        if kind == "view":
            src = draw(st.sampled_from(tensors))
            views[out] = src
            ops.append(OpSpec(f"op{i}", [src], [out], None, kind="view"))
        elif kind == "follow":
            # most often the newest tensor: chains of followers, in place
            first = tensors[-1] if draw(st.integers(0, 2)) else draw(st.sampled_from(tensors))
            ins = [first]
            others = [t for t in tensors if t != first]
            if others and draw(st.booleans()):
                ins.append(draw(st.sampled_from(others)))
            attrs = {"follows": True, "in_place": draw(st.integers(0, 3)) > 0, **alt()}
            ops.append(OpSpec(f"op{i}", ins, [out], table(counts(3)), kind="elementwise",
                              attrs=attrs))
        elif kind == "conv":
            k = draw(st.integers(1, min(2, len(tensors))))
            ins = draw(st.lists(st.sampled_from(tensors), min_size=k, max_size=k, unique=True))
            attrs = {"spread": draw(st.integers(1, 40))} if draw(st.integers(0, 5)) == 0 else {}
            attrs.update(alt())
            ops.append(OpSpec(f"op{i}", ins, [out], table(counts()), attrs=attrs))
        kind_of[out] = kind
        tensors.append(out)
    budget = draw(st.integers(8, 48))
    io = draw(st.booleans())
    info = toy_graph(ops, sizes={"x": draw(st.integers(1, 24))}, views=views, parts=parts)
    target = (toy_target(rect=(2, 2), budget=budget, input_io=io) if rect
              else toy_target(4, budget, input_io=io))
    if draw(st.integers(0, 3)) == 0:
        target = FramebufferTarget(**{f.name: getattr(target, f.name)
                                      for f in dataclasses.fields(ToyTarget)})
    return info, target


def _check(info, target):
    out = run(info, target, options=FAST)
    plan = out.plan
    if plan.status == STATUS_FITS:
        v = verify(plan, info, target)
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
    orders = list(topo_orders(info))
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


def _converse(info, target, plan, ev):
    order = [s.ops[0] for s in plan.steps]
    if feasible(info, target, order):
        assert plan.status == STATUS_FITS or (
            ev is not None and ev.details.get("layout_failures")), (
            f"brute force fits the schedule but the planner says {plan.status}: "
            f"{ev.summary if ev else ''}")


def test_a_placement_only_the_exact_proof_model_finds_is_the_plan():
    """Found by the generator below: a follower's second split at 2 and 4 tiles (``alt``) exists
    only among the proof options, and the only placement that fits uses it. The search said
    INFEASIBLE over its options, the exact proof model -- every split -- found the placement,
    and the planner threw it away and answered "unknown". It is now the plan (verified)."""
    ops = [OpSpec("op0", ["x"], ["t0"], None, kind="view"),
           OpSpec("op1", ["t0"], ["t1"], {1: (0, 0, 0, 1), 2: (0, 0, 0, 1), 4: (0, 0, 0, 1)},
                  kind="elementwise",
                  attrs={"follows": True, "in_place": False,
                         "alt": {2: (0, 0, 0, 1), 4: (0, 0, 0, 1)}}),
           OpSpec("op2", ["t1"], ["t2"], None, kind="view"),
           OpSpec("op3", ["t2", "x"], ["t3"], {1: (0, 0, 0, 1), 2: (0, 0, 0, 2)},
                  kind="elementwise",
                  attrs={"follows": True, "in_place": False,
                         "alt": {2: (0, 0, 4, 1), 4: (0, 0, 6, 1)}})]
    info = toy_graph(ops, sizes={"x": 9}, views={"t0": "x", "t2": "t1"})
    base = toy_target(4, 8, input_io=True)
    target = FramebufferTarget(**{f.name: getattr(base, f.name)
                                  for f in dataclasses.fields(ToyTarget)})
    assert feasible(info, target, ["op0", "op1", "op2", "op3"])
    plan, ev = _check(info, target)
    assert plan.status == STATUS_FITS, ev.summary if ev else ""
    assert plan.solver.details.get("found_by", "").startswith("the exact proof model")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rich_problems())
def test_rich_dags_line(problem):
    info, target = problem
    plan, ev = _check(info, target)
    _converse(info, target, plan, ev)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rich_problems(rect=True))
def test_rich_dags_mesh(problem):
    info, target = problem
    plan, ev = _check(info, target)
    _converse(info, target, plan, ev)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rich_problems(rect=False) | rich_problems(rect=True))
def test_aggregate_relaxation_is_sound_rich(problem):
    """As test_aggregate_relaxation_is_sound, on the rich generator."""
    from tilec.plan.geometry import Geometry
    from tilec.plan.partition import partition
    from tilec.plan.problem import build_problem
    from tilec.plan.proof import prove
    from tilec.plan.schedule import schedule

    info, target = problem
    sched = schedule(info)
    prob = build_problem(info, target, sched, partition(info, target))
    geo = Geometry(target.tiles, target.grid, target.placement, exact_limit=0)
    proof = prove(prob, geo, SolveSettings(deterministic_limit=2.0, workers=1))
    if proof.proven:
        assert not feasible(info, target, list(sched.order))


# ------------------------------------------------------------------ the audit's counterexamples
AUDIT_CASES = {
    # an in-place follower sharing no tile count with its input's producer (was: a crash)
    "in place, no common tile count": (
        [OpSpec("L", ["x"], ["tl"], {1: (0, 0, 4, 10)}),
         OpSpec("F", ["tl"], ["tf"], {2: (0, 0, 4, 1)}, kind="elementwise",
                attrs={"follows": True, "in_place": True})], toy_target(4, 40)),
    # in place possible for the 1-tile splits only (bytes match there): was "does not fit (c)"
    "in place for some splits": (
        [OpSpec("L", ["x"], ["tl"], {1: (0, 0, 4, 10), 2: (0, 0, 2, 5)}),
         OpSpec("F", ["tl"], ["tf"], {1: (0, 0, 4, 1), 2: (0, 0, 3, 1)}, kind="elementwise",
                attrs={"follows": True, "in_place": True})], toy_target(4, 4)),
    # two 2-tile splits of L: the one with fewer output bytes "dominated" the other, but only
    # the other's output can be overwritten in place by F (equal sizes): was "does not fit (c)"
    "in place needs the larger of two same-size splits": (
        [OpSpec("L", ["x"], ["tl"], {2: (0, 0, 2, 10)}, attrs={"alt": {2: (0, 0, 4, 10)}}),
         OpSpec("F", ["tl"], ["tf"], {2: (0, 0, 4, 1)}, kind="elementwise",
                attrs={"follows": True, "in_place": True})], toy_target(4, 5)),
    # an in-place output overwritten in place again: was "does not fit (c)"
    "in place chained": (
        [OpSpec("L", ["x"], ["tl"], {1: (0, 0, 4, 10)}),
         OpSpec("F", ["tl"], ["tf"], {1: (0, 0, 4, 1)}, kind="elementwise",
                attrs={"follows": True, "in_place": True}),
         OpSpec("G", ["tf"], ["tg"], {1: (0, 0, 4, 1)}, kind="elementwise",
                attrs={"follows": True, "in_place": True})], toy_target(4, 4)),
}


@pytest.mark.parametrize("name", sorted(AUDIT_CASES))
def test_audit_counterexamples_fit(name):
    ops, target = AUDIT_CASES[name]
    info = toy_graph(ops)
    plan, ev = _check(info, target)
    assert plan.status == STATUS_FITS, ev.summary if ev else plan.status
    assert feasible(info, target, [s.ops[0] for s in plan.steps])
