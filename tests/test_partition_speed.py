"""The fast candidate path changes no result.

``BaseCostModel.splits`` prices the candidates of a convolution all at once with numpy, selects on
arrays, skips tile counts the ``fastest`` policy cannot keep, and shares prices between cost
models that differ only in ``bytes_per_tile``; ``partition`` shares one result between ops with
the same priced splits. Each test compares that path with the straightforward one on the same
ops: ``reference_splits`` (every candidate priced one by one with the scalar ``_cost`` and selected
by ``_select``), the scalar price of every enumerated candidate, and a partition computed op by op
without the memo.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tilec.targets import load_target
from tilec.targets.base import BaseCostModel
from tilec.targets.spec import BUILTIN_DIR

from tilec.costmodel import OpCost
from tilec.opinfo import OpInfo, WeightInfo
from tilec.plan import partition as part_mod
from tilec.plan.partition import partition

PARETO_IPU = """
[target]
base = "gc200"
name = "gc200-pareto"
[splits]
policy = "pareto"
"""


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    p = Path(tmp_path_factory.mktemp("t")) / "gc200-pareto.toml"
    p.write_text(PARETO_IPU)
    # Loaded afresh, not the cached built-ins: price stores are kept least-recently-used
    # (targets/base.py), and a test that derives many chip descriptions (the uncertainty band)
    # may have evicted the cached targets' stores, so a new SRAM-size variant would not share.
    gc200 = load_target(str(BUILTIN_DIR / "gc200.toml"))
    npole = load_target(str(BUILTIN_DIR / "northpole.toml"))
    return {
        "gc200": gc200, "gc2": load_target("gc2"), "northpole": npole,
        "gc200-pareto": load_target(str(p)),
        # SRAM sizes change the filters (budget, temporary-memory bound), not the prices
        "gc200@300k": gc200.with_bytes_per_tile(300_000),
        "gc200@2m": gc200.with_bytes_per_tile(2_000_000),
        "northpole@200k": npole.with_bytes_per_tile(200_000),
    }


def conv(*, n=1, cin=64, cout=64, hw=32, k=3, stride=1, group=1, act=None, bias=True,
         wbits=16, abits=16, transpose=False, name="c") -> OpInfo:
    if transpose:
        oh = hw * stride
        wshape = (cin, cout // group, k, k)
    else:
        oh = (hw + 2 * (k // 2) - k) // stride + 1
        wshape = (cout, cin // group, k, k)
    weights = [WeightInfo(f"{name}.w", wshape, wbits)]
    if bias:
        weights.append(WeightInfo(f"{name}.b", (cout,), 32))
    return OpInfo(
        name=name, op_type="ConvTranspose" if transpose else "Conv", kind="conv",
        inputs=("x",), outputs=("y",), weights=tuple(weights),
        attrs={"kernel_shape": [k, k], "strides": [stride, stride], "pads": [k // 2] * 4,
               "group": group},
        macs=n * cout * oh * oh * (cin // group) * k * k, activation=act, weight_bits=wbits,
        act_bits=abits, in_shapes=((n, cin, hw, hw),), out_shapes=((n, cout, oh, oh),))


def gemm(m=64, k=256, n=512, wbits=16, abits=16) -> OpInfo:
    return OpInfo(name="fc", op_type="Gemm", kind="matmul", inputs=("x",), outputs=("y",),
                  weights=(WeightInfo("fc.w", (k, n), wbits), WeightInfo("fc.b", (n,), 32)),
                  attrs={}, macs=m * k * n, weight_bits=wbits, act_bits=abits,
                  in_shapes=((m, k),), out_shapes=((m, n),))


def batched_matmul(b=8, m=64, k=32, n=64, abits=16) -> OpInfo:
    """Both operands are activations (the kernel arrives by exchange, one slice per batch)."""
    return OpInfo(name="bmm", op_type="MatMul", kind="matmul", inputs=("a", "b"),
                  outputs=("y",), weights=(), attrs={}, macs=b * m * k * n, act_bits=abits,
                  weight_bits=abits, in_shapes=((b, m, k), (b, k, n)), out_shapes=((b, m, n),))


def simple(kind, op_type, ins, outs, attrs=None, weights=(), abits=16) -> OpInfo:
    return OpInfo(name=op_type.lower(), op_type=op_type, kind=kind,
                  inputs=tuple(f"i{j}" for j in range(len(ins))),
                  outputs=tuple(f"o{j}" for j in range(len(outs))), weights=tuple(weights),
                  attrs=attrs or {}, macs=0, act_bits=abits, weight_bits=abits,
                  in_shapes=tuple(ins), out_shapes=tuple(outs))


def ops_for(family: str) -> list[OpInfo]:
    """Hand-built ops covering every branch of the convolution price: grouped and depthwise,
    strided, transposed, 1x1 to 7x7, with and without bias, native and composed activations,
    input-channel splits (partial sums), low-bit weights (dequantised copies on the IPU), fp32,
    batched inputs, a matmul with and without weights; and the scalar-priced kinds."""
    if family == "ipu":
        bits = [(16, 16), (32, 32), (8, 16), (4, 16), (2, 16)]
    else:
        bits = [(8, 8), (4, 4), (2, 2), (4, 8)]
    out = []
    for i, (wb, ab) in enumerate(bits):
        out += [
            conv(wbits=wb, abits=ab, act="Mish" if i % 2 else "Relu", name=f"c{i}"),
            conv(n=2, cin=3, cout=32, hw=96, k=3, stride=2, wbits=wb, abits=ab, bias=False),
            conv(cin=256, cout=512, hw=13, k=1, wbits=wb, abits=ab, act="LeakyRelu"),
            conv(cin=1024, cout=1024, hw=19, k=3, wbits=wb, abits=ab, act="Mish"),
            conv(cin=96, cout=96, hw=28, k=3, group=96, wbits=wb, abits=ab, act="Relu"),
            conv(cin=64, cout=128, hw=20, k=5, group=2, n=8, wbits=wb, abits=ab),
            conv(cin=128, cout=64, hw=16, k=2, stride=2, transpose=True, wbits=wb, abits=ab),
            conv(cin=32, cout=64, hw=224, k=7, stride=2, wbits=wb, abits=ab, act="SiLU"),
            gemm(wbits=wb, abits=ab),
        ]
    out.append(batched_matmul(abits=bits[0][1]))
    ab = bits[0][1]
    out += [
        simple("pool", "MaxPool", [(1, 256, 19, 19)], [(1, 256, 19, 19)],
               {"kernel_shape": [5, 5], "strides": [1, 1]}, abits=ab),
        simple("pool", "GlobalAveragePool", [(2, 512, 7, 7)], [(2, 512, 1, 1)], abits=ab),
        simple("resize", "Resize", [(1, 128, 38, 38)], [(1, 128, 76, 76)], abits=ab),
        simple("elementwise", "Add", [(1, 64, 76, 76), (1, 64, 76, 76)], [(1, 64, 76, 76)],
               abits=ab),
        simple("concat", "Concat", [(1, 64, 38, 38), (1, 128, 38, 38)], [(1, 192, 38, 38)],
               {"axis": 1}, abits=ab),
        simple("movement", "Transpose", [(1, 85, 3, 19, 19)], [(1, 3, 19, 19, 85)], abits=ab),
        simple("reduce", "Softmax", [(1, 1000)], [(1, 1000)], abits=ab),
    ]
    return out


def numbers(c: OpCost) -> tuple:
    return (c.split, dict(c.always), dict(c.step), c.outputs, dict(c.spread), c.compute_cycles,
            c.exchange_cycles, c.follows_input, c.in_place)


# the IPU's reference path prices each of its ~10^4 balanced candidates one by one (~1 min per
# IPU description): gc200 stays in the quick suite, its variants run with the slow tests
_SLOW = pytest.mark.slow


@pytest.mark.parametrize("name", ["gc200", pytest.param("gc2", marks=_SLOW), "northpole",
                                  pytest.param("gc200-pareto", marks=_SLOW),
                                  pytest.param("gc200@300k", marks=_SLOW),
                                  pytest.param("gc200@2m", marks=_SLOW), "northpole@200k"])
def test_splits_and_costs_equal_the_reference(targets, name):
    target = targets[name]
    model = target.cost_model
    assert isinstance(model, BaseCostModel)
    family = "ipu" if name.startswith("gc") else "northpole"
    for op in ops_for(family):
        fast = list(model.splits(op))
        assert fast == model.reference_splits(op), (name, op.name, op.op_type)
        for s in fast:
            assert numbers(model.cost(op, s)) == numbers(model._uncached(op, s))


@pytest.mark.parametrize("name", ["gc200", "northpole", pytest.param("gc200@300k", marks=_SLOW)])
def test_every_vectorised_price_equals_the_scalar_one(targets, name):
    """Not only the kept candidates: every enumerated one, so a wrong price that would have
    changed a pick cannot hide behind the picks."""
    target = targets[name]
    model = target.cost_model
    family = "ipu" if name.startswith("gc") else "northpole"
    checked = 0
    for op in ops_for(family):
        if op.kind not in ("conv", "matmul"):
            continue
        counts = model.tile_counts(op)
        blocks = model._blocks_of(op, counts)
        assert blocks is not None and len(blocks) == len(counts)
        for t, blk in zip(counts, blocks, strict=True):
            splits = list(model._candidates(op, t))
            assert [blk.split(i) for i in range(len(blk))] == splits
            for i, s in enumerate(splits):
                c = model._cost(op, s)
                assert (int(blk.peak[i]), int(blk.always[i]), int(blk.step[i]),
                        int(blk.cycles[i])) == (c.peak_bytes, c.always_bytes, c.step_bytes,
                                                c.cycles), (op.name, s)
                checked += 1
    assert checked > 1000


@st.composite
def random_convs(draw, family: str):
    group = draw(st.sampled_from([1, 1, 2, 4]))
    cin = group * draw(st.sampled_from([1, 3, 8, 16, 24, 64, 160]))
    cout = group * draw(st.sampled_from([1, 8, 16, 48, 128, 255]))
    k = draw(st.sampled_from([1, 3, 5]))
    if family == "ipu":
        wb, ab = draw(st.sampled_from([(16, 16), (32, 32), (8, 16), (4, 16)]))
    else:
        wb, ab = draw(st.sampled_from([(8, 8), (4, 4), (2, 2)]))
    return conv(n=draw(st.sampled_from([1, 2, 3, 8])), cin=cin, cout=cout,
                hw=draw(st.sampled_from([5, 13, 38, 52, 100])), k=k,
                stride=draw(st.sampled_from([1, 2])), group=group,
                act=draw(st.sampled_from([None, "Relu", "Mish"])),
                bias=draw(st.booleans()), wbits=wb, abits=ab)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_convolutions_equal_the_reference(targets, data):
    for name in ("gc200", "northpole", "gc200-pareto"):
        target = targets[name]
        op = data.draw(random_convs("northpole" if name == "northpole" else "ipu"))
        assert list(target.cost_model.splits(op)) == target.cost_model.reference_splits(op)


def test_prices_are_shared_across_sram_sizes_only(targets):
    """Cost models of one chip description share prices whatever their SRAM size -- unless its
    candidates depend on the SRAM size (the IPU adds serial splits to meet a bound proportional
    to the tile, ``sram_priced``); another description (different constants) has its own."""
    gc200, other = targets["gc200"], targets["gc200@2m"]
    assert gc200.cost_model.sram_priced
    assert gc200.cost_model._costs is not other.cost_model._costs
    npole = targets["northpole"]
    assert not npole.cost_model.sram_priced
    assert npole.cost_model._costs is targets["northpole@200k"].cost_model._costs
    assert gc200.cost_model._costs is not targets["gc2"].cost_model._costs
    assert gc200.cost_model._costs is not targets["gc200-pareto"].cost_model._costs


def test_partition_memo_gives_each_op_its_own_candidates(targets):
    """Ops with the same shapes share one partition result, renamed: the same numbers as when
    every op is partitioned on its own, and each candidate names its op."""
    from tilec.opinfo import GraphInfo, TensorInfo

    target = targets["gc200"]
    ops = []
    tensors = {"x": TensorInfo("x", (1, 64, 32, 32), 16, producer=None, consumers=("c0",),
                               is_input=True)}
    prev = "x"
    for i in range(4):
        op = replace(conv(name=f"c{i}", act="Mish"), inputs=(prev,), outputs=(f"t{i}",))
        ops.append(op)
        tensors[f"t{i}"] = TensorInfo(f"t{i}", (1, 64, 32, 32), 16, producer=f"c{i}",
                                      consumers=(f"c{i + 1}",) if i < 3 else (),
                                      is_output=i == 3)
        prev = f"t{i}"
    info = GraphInfo(name="rep", ops=tuple(ops), tensors=tensors, inputs=("x",),
                     outputs=("t3",), weight_bits=16, act_bits=16)
    together = partition(info, target)
    for op in ops:
        alone = partition(info, target, ops=[op]).ops[op.name]
        got = together.ops[op.name]
        for lst in ("search", "proof"):
            a, b = getattr(alone, lst), getattr(got, lst)
            assert [(c.split, c.always, c.step, c.outputs, c.cycles) for c in a] == [
                (c.split, c.always, c.step, c.outputs, c.cycles) for c in b]
            assert all(c.op == op.name for c in b)
        assert got.finest.op == op.name and got.op == op.name


def test_pareto_with_cached_footprints_matches_all_pairs():
    """partition.pareto on a mesh uses cached rectangle containment: the same front as the
    definition (every pair compared with footprint_within's own loops)."""
    grid = (16, 16)
    rng = np.random.default_rng(0)
    cands = []
    for i, t in enumerate([1, 2, 4, 8, 16, 32, 64, 128, 256, 4, 16, 64]):
        shapes = part_mod.rect_shapes(t, grid)
        v = rng.integers(0, 5, size=4).tolist()
        cands.append(part_mod.Candidate(
            op="x", split=part_mod.Split.of(elements=t) if t > 1 else part_mod.Split(),
            cost=OpCost(split=part_mod.Split()), tiles=t, shapes=shapes, always=v[0],
            step=v[1], outputs=(v[2],), spread=0, spread_per_tile=0, cycles=v[3] * 10 + i))
    for with_cycles in (False, True):
        got = part_mod.pareto(cands, (True,), "rect", with_cycles=with_cycles)

        def dominates(x, y, with_cycles=with_cycles):
            vx = (x.always, x.step, x.spread_per_tile, x.outputs[0], x.tiles) + (
                (x.cycles,) if with_cycles else ())
            vy = (y.always, y.step, y.spread_per_tile, y.outputs[0], y.tiles) + (
                (y.cycles,) if with_cycles else ())
            fit = all(any(hx <= hy and wx <= wy for hx, wx in x.shapes) for hy, wy in y.shapes)
            le = all(a <= b for a, b in zip(vx, vy, strict=True)) and fit
            return le and vx != vy

        want = [y for j, y in enumerate(cands)
                if not any(dominates(x, y) for x in cands)
                and not any(x.always == y.always and x.step == y.step and x.outputs == y.outputs
                            and x.tiles == y.tiles and x.shapes == y.shapes
                            and (not with_cycles or x.cycles == y.cycles)
                            for x in cands[:j])]
        assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("model,target", [("yolov4-tiny", "gc200"), ("yolov4-tiny", "northpole"),
                                          ("resnet50", "gc2")])
def test_zoo_networks_equal_the_reference(model, target):
    """Every op of a zoo network: the fast splits and prices equal the reference ones."""
    from tilec.compile import CompileOptions, compile_model

    _plan, lowered = compile_model(model, target, CompileOptions(what_if=False))
    cm = lowered.target.cost_model
    for op in lowered.info.ops:
        splits = list(cm.splits(op))
        assert splits == cm.reference_splits(op), op.name
        for s in splits:
            assert numbers(cm.cost(op, s)) == numbers(cm._uncached(op, s))
