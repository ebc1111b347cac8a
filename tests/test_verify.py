"""The verifier rejects every kind of corrupted plan (and accepts the planner's).

Corruptions come from a "consistent forger": after changing a plan it recomputes the memory
summary from the changed buffers (``build.memory_summary``), so no corruption is caught merely
because the planner's own summary no longer matches -- the verifier must find it from first
principles. Those marked ``model`` can only be caught with the model and the target at hand
(``verify(plan, info, target)``, as the pipeline calls it): the plan alone is self-consistent.
"""

from __future__ import annotations

import copy
import json

import pytest
from plan_fixtures import OpSpec, toy_graph, toy_target

from tilec.plan.build import memory_summary
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_FITS, Plan
from tilec.plan.pipeline import Options, run
from tilec.plan.verify import verify

OPTS = Options(settings=SolveSettings(deterministic_limit=0.5, workers=1))


def _model():
    info = toy_graph([
        OpSpec("a", ["x"], ["ta"], {2: (3, 2, 4, 10)}),
        OpSpec("b", ["ta"], ["tb"], {2: (2, 1, 3, 10)}),
        OpSpec("c", ["ta"], ["tc"], {2: (2, 1, 3, 10)}),
        OpSpec("d", ["tb", "tc"], ["td"], {2: (1, 1, 2, 10)}),
        OpSpec("e", ["td", "x"], ["te"], {2: (1, 0, 2, 5)},
               attrs={"follows": True, "in_place": True}),
    ], sizes={"x": 6})
    return info, toy_target(4, 40, input_io=True)


def _model_aliases():
    """A view and an in-place Concat: buffers holding several tensors."""
    info = toy_graph([
        OpSpec("a", ["x"], ["ta"], {2: (1, 1, 4, 10)}),
        OpSpec("v", ["ta"], ["tv"], kind="view"),
        OpSpec("b", ["tv"], ["tb"], {2: (1, 1, 2, 10)}),
        OpSpec("c", ["ta"], ["tc"], {2: (1, 1, 2, 10)}),
        OpSpec("k", ["tb", "tc"], ["tk"], {2: (1, 0, 4, 1)}, kind="concat"),
        OpSpec("d", ["tk"], ["td"], {2: (1, 1, 2, 10)}),
    ], views={"tv": "ta"}, parts={"tb": "tk", "tc": "tk"})
    return info, toy_target(4, 40)


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def good(model) -> Plan:
    plan = run(*model, options=OPTS).plan
    assert plan.status == STATUS_FITS
    return plan


@pytest.fixture(scope="module")
def aliases():
    info, target = _model_aliases()
    plan = run(info, target, options=OPTS).plan
    assert plan.status == STATUS_FITS
    return info, target, plan


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


def _input_shrunk(p):
    buf(p, "tensor/x").bytes = 0


def _input_moved(p):
    b, host = buf(p, "tensor/x"), op(p, "a")
    other = [[0, 2]] if host.tiles != [[0, 2]] else [[2, 4]]
    b.tiles = other
    b.offsets = [[*other[0], p.target.budget_per_tile - b.bytes]]


def _input_host_denied(p):
    op(p, "a").held_inputs = {}


def _tensor_hidden(p):
    # tc's bytes vanish into tb's buffer, which is alive whenever tc is
    p.buffers = [b for b in p.buffers if b.id != "tensor/tc"]
    buf(p, "tensor/tb").tensors.append("tc")


def _two_ops_one_step(p):
    p.steps[0].ops.append("ghost")


def _unwritten_read(p):
    op(p, "d").inputs.append("ghost")
    buf(p, "tensor/tb").tensors.append("ghost")


def _reuse_not_in_place(p):
    op(p, "e").in_place = False


def _reuse_wrong_writer(p):
    # te "overwrites" td in place, but td is not what e reads first (x is)
    o = op(p, "e")
    o.inputs = ["x", "td"]


def _follower_elsewhere(p):
    e, leader = op(p, "e"), op(p, "d")
    e.group = "b" if op(p, "b").tiles != leader.tiles else "c"


def _latency_seconds(p):
    p.latency.seconds *= 2


def _timeline_wrong(p):
    p.memory.worst_tile_timeline[0] = {"code": 1}


def _shrunk_together(p):
    o = op(p, "a")
    o.always["code"] = 1
    buf(p, "a/always/code").bytes = 1


def _budget_inflated(p):
    p.target.budget_per_tile += 1000
    p.target.bytes_per_tile += 1000


def _split_not_offered(p):
    o = op(p, "b")
    o.split = {"elements": 1}
    o.tiles = [[o.tiles[0][0], o.tiles[0][0] + 1]]
    for b in p.buffers:
        if b.owner in ("b", "tb"):
            b.tiles = o.tiles
            b.offsets = [[*o.tiles[0], b.offsets[0][2]]]


def _cycles_cut(p):
    o = op(p, "a")
    o.compute_cycles -= 5
    st = p.steps[o.step]
    st.compute_cycles -= 5
    p.latency.cycles -= 5
    p.latency.seconds = p.latency.cycles / p.target.clock_hz + p.latency.io_seconds
    p.latency.throughput_per_s = p.model.batch / p.latency.seconds


def _op_not_in_model(p):
    op(p, "b").op_type = "Relu"


def _reserve_ignored(p):
    p.target.budget_per_tile = p.target.bytes_per_tile  # as if nothing were reserved
    p.target.reserved_bytes_per_tile = 1


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
    # found by the audit: each slipped through before
    "a model input's buffer shrunk": (_input_shrunk, "charges"),
    "a model input held off its reader's tiles": (_input_moved, "charges"),
    "a model input no op declares holding": (_input_host_denied, "charges"),
    "a tensor hidden in another buffer": (_tensor_hidden, "tensors"),
    "two ops in one step": (_two_ops_one_step, "structure"),
    "a tensor nobody writes": (_unwritten_read, "tensors"),
    "in-place reuse by an op that cannot": (_reuse_not_in_place, "dataflow"),
    "in-place reuse of what the op does not read first": (_reuse_wrong_writer,
                                                        "dataflow"),
    "a follower off its group's tiles": (_follower_elsewhere, "tiles"),
    "latency seconds wrong": (_latency_seconds, "summary"),
    "worst-tile timeline wrong": (_timeline_wrong, "summary"),
    "the reserved bytes spent": (_reserve_ignored, "structure"),
}
MODEL_CORRUPTIONS = {
    "op declaration and buffer shrunk together": (_shrunk_together, "costs"),
    "the plan's budget inflated": (_budget_inflated, "costs"),
    "a split the cost model does not offer": (_split_not_offered, "costs"),
    "cycles cut everywhere consistently": (_cycles_cut, "costs"),
    "an op's type differs from the model": (_op_not_in_model, "costs"),
}


def forge(p: Plan, corrupt) -> Plan:
    """Apply ``corrupt``, then make the memory summary agree with the corrupted buffers."""
    corrupt(p)
    if p.memory is not None and p.steps:
        keep = p.memory.peak_bytes
        p.memory = memory_summary(p.buffers, p.target.tiles, len(p.steps))
        if corrupt is _summary_mismatch:
            p.memory.peak_bytes = keep
        if corrupt is _timeline_wrong:
            corrupt(p)
    return p


def test_accepts_the_planner_plan_with_the_model(good, model):
    v = verify(fresh(good), *model)
    assert v.ok, v.errors
    assert v.checks[-1] == "costs"


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_rejects_corrupted_plan(good, model, name):
    corrupt, check = CORRUPTIONS[name]
    for args in ((), model):  # plan alone, and as the pipeline calls it
        p = forge(fresh(good), corrupt)
        v = verify(p, *args)
        assert not v.ok, f"verifier accepted a plan with {name}"
        assert check not in v.checks, (check, v.errors)
        assert any(e.startswith(check) for e in v.errors), v.errors


@pytest.mark.parametrize("name", sorted(MODEL_CORRUPTIONS))
def test_rejects_plan_contradicting_the_model(good, model, name):
    corrupt, check = MODEL_CORRUPTIONS[name]
    p = forge(fresh(good), corrupt)
    v = verify(p, *model)
    assert not v.ok, f"verifier accepted a plan with {name}"
    assert any(e.startswith(check) for e in v.errors), v.errors


def test_alias_buffers_accepted_and_checked(aliases):
    info, target, plan = aliases
    assert verify(fresh(plan), info, target).ok
    tk = buf(plan, "tensor/tk")
    assert sorted(tk.tensors) == ["tb", "tc", "tk"]
    assert sorted(buf(plan, "tensor/ta").tensors) == ["ta", "tv"]

    # a view's output in a zero-byte buffer of its own: its readers would read freed memory
    p = fresh(plan)
    buf(p, "tensor/ta").tensors.remove("tv")
    p.buffers.append(copy.deepcopy(buf(p, "tensor/ta")))
    p.buffers[-1].id, p.buffers[-1].owner, p.buffers[-1].tensors = "tensor/tv", "tv", ["tv"]
    p.buffers[-1].bytes = 0
    v = verify(p)
    assert not v.ok and any("view 'v'" in e or "view" in e for e in v.errors), v.errors

    # a slice of the concat moved out of its buffer into an unrelated one
    p = fresh(plan)
    buf(p, "tensor/tk").tensors.remove("tc")
    buf(p, "tensor/ta").tensors.append("tc")
    v = verify(p)
    assert not v.ok and any(e.startswith("tensors") for e in v.errors), v.errors

    # with the model: a tensor not in its root's buffer (an in-place concat "undone" on paper)
    p = fresh(plan)
    buf(p, "tensor/tk").tensors.remove("tb")
    p.buffers.append(copy.deepcopy(buf(p, "tensor/tk")))
    nb = p.buffers[-1]
    nb.id, nb.owner, nb.tensors, nb.bytes, nb.offsets = "tensor/tb", "tb", ["tb"], 0, []
    nb.tiles = op(p, "b").tiles
    op(p, "b").output_bytes = [0]
    v = verify(p, info, target)
    assert not v.ok and any(e.startswith("costs") for e in v.errors), v.errors


def test_errors_are_bounded_and_plan_untouched(good):
    p = fresh(good)
    for b in p.buffers:
        b.offsets = []
    before = p.to_json()
    v = verify(p)
    assert not v.ok and len(v.errors) <= 25
    assert p.to_json() == before


def test_vectorised_overlap_test_agrees_with_the_pairwise_scan() -> None:
    """The layout check's all-pairs numpy test (which decides whether the pairwise scan runs)
    says yes exactly when two buffers share both an address and a step."""
    import random

    from tilec.plan.verify import _any_overlap

    rng = random.Random(0)
    for trial in range(400):
        n = rng.randint(0, 12)
        items = []
        for i in range(n):
            lo = rng.randint(0, 60)
            f = rng.randint(0, 20)
            items.append((lo, lo + rng.randint(1, 15), f, f + rng.randint(1, 6), f"b{i}"))
        sig = tuple(sorted(items))
        brute = any(a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]
                    for i, a in enumerate(sig) for b in sig[i + 1:])
        assert _any_overlap(sig, chunk=rng.choice([1, 3, 512])) == brute, (trial, sig)


def test_the_overlap_precheck_agrees_with_all_pairs_on_random_layouts():
    """The verifier's sorted pre-check (and its all-pairs fallback, ``chunk=1``) says "overlap"
    exactly when some pair of buffers overlaps in address and time -- zero-size buffers, equal
    starts and touching intervals included."""
    import random

    from tilec.plan.verify import _any_overlap

    def brute(items):
        return any(a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]
                   for x, a in enumerate(items) for y, b in enumerate(items) if x != y)

    rng = random.Random(0)
    for _ in range(2000):
        items = []
        for k in range(rng.randint(0, 12)):
            lo, first = rng.randint(0, 20), rng.randint(0, 10)
            items.append((lo, lo + rng.choice([0, 1, 2, 3, 5]), first,
                          first + rng.randint(0, 4), str(k)))
        assert _any_overlap(tuple(items)) == brute(items), items
        assert _any_overlap(tuple(items), chunk=1) == brute(items), items


def test_greedy_by_size_never_overlaps_and_keeps_windows():
    import random

    from tilec.plan.layout import Item, greedy_by_size

    rng = random.Random(1)
    for _ in range(500):
        items = []
        for k in range(rng.randint(1, 30)):
            lower = rng.randint(0, 10)
            items.append(Item(str(k), lower, lower + rng.randint(1, 5),
                              rng.choice([1, 4, 7, 16, 33]), rng.choice([1, 4, 8]),
                              rng.choice([0, 0, 8])))
        off = greedy_by_size(items)
        for it in items:
            assert off[it.id] >= it.lo and off[it.id] % it.align == 0
        for x in items:
            for y in items:
                if x.id < y.id and x.lower < y.upper and y.lower < x.upper:
                    assert (off[x.id] + x.size <= off[y.id]
                            or off[y.id] + y.size <= off[x.id]), (x, y, off)
