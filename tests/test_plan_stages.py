"""Unit tests of the planner's stages: schedule, partition, geometry, bounds."""

from __future__ import annotations

from plan_fixtures import OpSpec, chain, toy_graph, toy_target

from tilec.costmodel import Split
from tilec.plan.bounds import chip_bound, op_bound
from tilec.plan.geometry import Geometry
from tilec.plan.partition import partition, rect_shapes
from tilec.plan.schedule import check_topological, live_profile, schedule


# ----------------------------------------------------------------------------------- schedule
def branches():
    # two branches, each a big tensor (10 B) consumed at once into a small one (1 B), joined
    big, small = {1: (0, 0, 10, 1)}, {1: (0, 0, 1, 1)}
    return toy_graph(
        [OpSpec("p1", ["x"], ["P1"], big), OpSpec("q1", ["x"], ["Q1"], big),
         OpSpec("p2", ["P1"], ["P2"], small), OpSpec("q2", ["Q1"], ["Q2"], small),
         OpSpec("j", ["P2", "Q2"], ["J"], small)],
        sizes={"x": 1, "P1": 10, "Q1": 10, "P2": 1, "Q2": 1, "J": 1})


def test_live_profile_by_hand():
    info = branches()
    given = tuple(op.name for op in info.ops)  # p1 q1 p2 q2 j: both big tensors live together
    assert live_profile(info, given) == [11, 21, 21, 12, 3]
    better = ("p1", "p2", "q1", "q2", "j")
    assert live_profile(info, better) == [11, 12, 12, 12, 3]


def test_schedule_keeps_the_live_set_small():
    info = branches()
    s = schedule(info)
    check_topological(info, s.order)
    assert s.scores["given"] == 21
    assert s.live_peak == 12 and s.method != "given"
    assert s.step_of[s.order[0]] == 0


# ----------------------------------------------------------------------------------- partition
def test_pareto_pruning_and_finest():
    info = toy_graph([OpSpec("a", ["x"], ["ta"],
                             {1: (10, 0, 10, 5), 2: (5, 0, 5, 8), 4: (6, 0, 6, 10)})])
    part = partition(info, toy_target(4, 100))
    oc = part.ops["a"]
    # the 4-tile split is worse than the 2-tile one in every respect: dropped everywhere
    assert [c.tiles for c in oc.search] == [1, 2]
    assert [c.tiles for c in oc.proof] == [1, 2]
    assert oc.finest.tiles == 2 and oc.finest.charged_peak(part.charged["a"]) == 10
    assert oc.all_count == 3


def test_memory_only_list_drops_slower_but_leaner_twins():
    # same bytes and tiles, different cycles: both in nothing but the fastest survives anywhere
    class CM(toy_target().cost_model.__class__):
        def splits(self, op):
            return [Split.of(out_ch=2), Split.of(rows=2)]

        def cost(self, op, split):
            from tilec.costmodel import OpCost

            cyc = 5 if split.factor("out_ch") == 2 else 9
            return OpCost(split=split, always={"code": 1}, outputs=(2,), compute_cycles=cyc)

    t = toy_target(4, 100)
    t = t.__class__(**{**t.__dict__, "cost_model": CM()})
    part = partition(toy_graph([OpSpec("a", ["x"], ["ta"])]), t)
    oc = part.ops["a"]
    assert [str(c.split) for c in oc.search] == ["out_ch2"]
    assert len(oc.proof) == 1


def test_rect_shapes_squarest_first():
    assert rect_shapes(4, (4, 4)) == ((2, 2), (1, 4), (4, 1))
    assert rect_shapes(8, (2, 8)) == ((2, 4), (1, 8))
    assert rect_shapes(17, (16, 16)) == ()


def test_impossible_splits_are_dropped_with_a_reason():
    info = toy_graph([OpSpec("a", ["x"], ["ta"], {3: (1, 0, 1, 1), 4: (1, 0, 1, 1)})])
    part = partition(info, toy_target(rect=(2, 2), budget=10))
    assert [c.tiles for c in part.ops["a"].search] == [4]
    assert any("no rectangle" in d for d in part.ops["a"].dropped)


# ----------------------------------------------------------------------------------- geometry
def test_small_chips_are_exact():
    g = Geometry(8, (1, 8), "range")
    assert g.exact and g.n_blocks == 8
    assert [p.origin[0] for p in g.positions(3)] == [0, 1, 2, 3, 4, 5]


def test_big_line_uses_equal_blocks():
    g = Geometry(1472, (1, 1472), "range", max_blocks=32)
    assert not g.exact and g.n_blocks == 32 and g.block_size == (1, 46)
    pos = g.positions(736)
    assert all(p.ranges[0][0] % 46 == 0 and p.tiles == 736 for p in pos)
    assert pos[0].blocks == tuple(range(16))
    p = g.at((50,), 100)
    assert p.ranges == ((50, 150),) and p.blocks == (1, 2, 3)


def test_mesh_positions_and_blocks():
    g = Geometry(256, (16, 16), "rect", max_blocks=64)
    assert g.block_size == (2, 2) and g.n_blocks == 64
    p = g.at((3, 5), 8, (2, 4))
    assert p.ranges == ((53, 57), (69, 73))
    assert set(p.blocks) == {r * 8 + c for r in (1, 2) for c in (2, 3, 4)}  # cols 5-8
    full = g.at((0, 0), 32, (2, 16))
    assert full.ranges == ((0, 32),)


# ----------------------------------------------------------------------------------- bounds
def test_op_bound_uses_the_finest_split():
    info = chain(2, {1: (50, 0, 0, 1), 2: (30, 5, 2, 1)})
    part = partition(info, toy_target(4, 20))
    b = op_bound(info, part, toy_target(4, 20))
    assert b.holds and b.needed == 37 and b.details["tiles"] == 2


def test_chip_bound_counts_what_any_order_keeps_live():
    table = {4: (0, 0, 10, 1)}
    info = toy_graph([OpSpec("a", ["x"], ["ta"], table), OpSpec("b", ["x"], ["tb"], table),
                      OpSpec("c", ["ta", "tb"], ["tc"], table)])
    t = toy_target(4, 100)
    b = chip_bound(info, partition(info, t), t)
    # at c: ta and tb (read by c) and tc (its output) are live in any order: 3 x 40 bytes
    assert b.op == "c" and b.needed == 120 and not b.holds
    live = {d["tensor"] for d in b.details["live_buffers"]}
    assert live == {"ta", "tb", "tc"}
