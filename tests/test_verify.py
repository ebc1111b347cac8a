"""The verifier rejects every kind of corrupted plan (and accepts the planner's)."""

from __future__ import annotations

import copy
import json

import pytest
from plan_fixtures import OpSpec, toy_graph, toy_target

from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_FITS, Plan
from tilec.plan.pipeline import Options, run
from tilec.plan.verify import verify


@pytest.fixture(scope="module")
def good() -> Plan:
    info = toy_graph([
        OpSpec("a", ["x"], ["ta"], {2: (3, 2, 4, 10)}),
        OpSpec("b", ["ta"], ["tb"], {2: (2, 1, 3, 10)}),
        OpSpec("c", ["ta"], ["tc"], {2: (2, 1, 3, 10)}),
        OpSpec("d", ["tb", "tc"], ["td"], {2: (1, 1, 2, 10)}),
        OpSpec("e", ["td", "x"], ["te"], {2: (1, 0, 2, 5)},
               attrs={"follows": True, "in_place": True}),
    ])
    plan = run(info, toy_target(4, 40),
               options=Options(settings=SolveSettings(deterministic_limit=0.5, workers=1))).plan
    assert plan.status == STATUS_FITS
    return plan


def fresh(plan: Plan) -> Plan:
    return Plan.from_dict(json.loads(plan.to_json()))


def buf(plan: Plan, bid: str):
    return next(b for b in plan.buffers if b.id == bid)


def op(plan: Plan, name: str):
    return next(o for o in plan.ops if o.name == name)


def test_accepts_the_planner_plan(good):
    v = verify(fresh(good))
    assert v.ok, v.errors
    assert v.checks == ["structure", "tiles", "tensors", "dataflow", "charges", "budget",
                        "layout", "summary"]


def _drop_op(p):
    p.ops = [o for o in p.ops if o.name != "c"]


def _consumer_first(p):
    op(p, "b").step, op(p, "a").step = op(p, "a").step, op(p, "b").step
    for s in p.steps:
        s.ops = ["b" if n == "a" else "a" if n == "b" else n for n in s.ops]


def _over_budget(p):
    b = buf(p, "a/always/code")
    b.bytes = p.target.budget_per_tile + 1
    op(p, "a").always["code"] = b.bytes


def _overlap(p):
    a, b = buf(p, "a/always/code"), buf(p, "b/always/code")
    # move b onto a's address on a tile they share, or make them share tiles at one address
    b.tiles = a.tiles
    op(p, "b").tiles = a.tiles
    b.offsets = copy.deepcopy(a.offsets)


def _missing_tensor(p):
    p.buffers = [b for b in p.buffers if b.id != "tensor/tb"]


def _short_lifetime(p):
    b = buf(p, "tensor/ta")
    b.end = b.first + 1  # freed before c reads it


def _wrong_tile_count(p):
    o = op(p, "a")
    o.tiles = [[o.tiles[0][0], o.tiles[0][0] + 1]]


def _tiles_out_of_range(p):
    o = op(p, "d")
    o.tiles = [[p.target.tiles - 1, p.target.tiles + 1]]


def _bytes_mismatch(p):
    buf(p, "b/step/temp").bytes += 1


def _summary_mismatch(p):
    p.memory.peak_bytes += 1


def _latency_mismatch(p):
    p.latency.cycles += 1


def _step_cycles_mismatch(p):
    p.steps[0].compute_cycles += 1


def _in_place_moved(p):
    out = next(b for b in p.buffers if b.reuses)
    out.offsets = [[a, c, o + 1] for a, c, o in out.offsets]


def _no_address(p):
    buf(p, "tensor/tc").offsets = []


def _output_freed_early(p):
    b = buf(p, "tensor/te")
    b.end -= 1


def _duplicate_step(p):
    p.steps[1].ops.append(p.steps[0].ops[0])


def _spread_wrong(p):
    o = op(p, "a")
    o.spread = {"weights": 40}  # declares spread bytes without a buffer


CORRUPTIONS = {
    "an op missing": (_drop_op, "structure"),
    "consumer before producer": (_consumer_first, "dataflow"),
    "a tile over budget": (_over_budget, "budget"),
    "two live buffers overlap": (_overlap, "layout"),
    "a tensor without a buffer": (_missing_tensor, "tensors"),
    "a buffer freed before its last read": (_short_lifetime, "dataflow"),
    "tiles differ from the split": (_wrong_tile_count, "tiles"),
    "tiles outside the chip": (_tiles_out_of_range, "tiles"),
    "buffer bytes differ from the op": (_bytes_mismatch, "charges"),
    "memory summary wrong": (_summary_mismatch, "summary"),
    "latency wrong": (_latency_mismatch, "summary"),
    "step cycles wrong": (_step_cycles_mismatch, "summary"),
    "in-place output at another address": (_in_place_moved, "dataflow"),
    "a buffer without an address": (_no_address, "layout"),
    "a model output freed early": (_output_freed_early, "dataflow"),
    "an op in two steps": (_duplicate_step, "structure"),
    "spread bytes without a buffer": (_spread_wrong, "charges"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_rejects_corrupted_plan(good, name):
    corrupt, check = CORRUPTIONS[name]
    p = fresh(good)
    corrupt(p)
    v = verify(p)
    assert not v.ok, f"verifier accepted a plan with {name}"
    assert check not in v.checks, (check, v.errors)
    assert any(e.startswith(check) for e in v.errors), v.errors


def test_errors_are_bounded_and_plan_untouched(good):
    p = fresh(good)
    for b in p.buffers:
        b.offsets = []
    before = p.to_json()
    v = verify(p)
    assert not v.ok and len(v.errors) <= 25
    assert p.to_json() == before
