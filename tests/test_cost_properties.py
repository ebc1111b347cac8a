"""Properties every split's bytes must have, on random convolutions, for both cost models:
the shares cover the op (no byte of weights, inputs or outputs is lost by splitting), dividing
an axis further never makes a tile's share larger, and the candidates respect the chip."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tilec.targets import load_target

from tilec.costmodel import Split
from tilec.opinfo import OpInfo, WeightInfo

GC200 = load_target("gc200")
NP = load_target("northpole")


@st.composite
def convs(draw, bits: int):
    cin = draw(st.sampled_from([3, 8, 16, 32, 64, 96]))
    cout = draw(st.sampled_from([8, 16, 32, 64, 128]))
    hw = draw(st.sampled_from([7, 8, 13, 16, 28, 32]))
    k = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.sampled_from([1, 2])) if k > 1 else 1
    n = draw(st.sampled_from([1, 2]))
    act = draw(st.sampled_from([None, "Relu", "Mish"]))
    oh = (hw + 2 * (k // 2) - k) // stride + 1
    weights = (WeightInfo("w", (cout, cin, k, k), bits), WeightInfo("b", (cout,), 32))
    return OpInfo(
        name="c", op_type="Conv", kind="conv", inputs=("x",), outputs=("y",), weights=weights,
        attrs={"kernel_shape": [k, k], "strides": [stride, stride], "pads": [k // 2] * 4,
               "group": 1},
        macs=n * cout * oh * oh * cin * k * k, activation=act, weight_bits=bits, act_bits=bits,
        in_shapes=((n, cin, hw, hw),), out_shapes=((n, cout, oh, oh),),
    )


def total_bytes(shape, bits):
    return math.ceil(math.prod(shape) * bits / 8)


def check_cover(target, op, split):
    c = target.cost_model.cost(op, split)
    t = split.tiles
    assert t <= target.tiles
    for life in (c.always, c.step, c.spread):
        assert all(v >= 0 for v in life.values())
    assert c.compute_cycles >= 0 and c.exchange_cycles >= 0
    assert c.outputs[0] * t >= total_bytes(op.out_shapes[0], op.act_bits)
    assert c.step.get("act_in", 0) * t >= total_bytes(op.in_shapes[0], op.act_bits) / (
        op.attrs["strides"][0] ** 2)  # a strided 1x1 conv reads only every s-th row and column
    weights = sum(w.bytes for w in op.weights)
    if target.family == "ipu":
        assert c.always["weights"] * t >= weights  # weights live where they are used
        assert not c.spread
    else:
        assert c.spread["weights"] == weights  # stored once over the array
        local = -(-weights // target.tiles)  # the layer's share every core stores, read in place
        assert (c.step.get("weights", 0) + local) * t >= weights  # each core has what it needs
        assert not c.always
    return c


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convs(16))
def test_ipu_splits_cover_the_op(op):
    splits = GC200.cost_model.splits(op)
    assert splits
    for s in splits:
        check_cover(GC200, op, s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convs(8))
def test_northpole_splits_cover_the_op(op):
    splits = NP.cost_model.splits(op)
    assert splits
    for s in splits:
        check_cover(NP, op, s)


@settings(max_examples=40, deadline=None)
@given(convs(16), st.sampled_from(["out_ch", "rows", "batch"]))
def test_splitting_an_axis_further_never_grows_a_share(op, axis):
    size = {"out_ch": op.out_shapes[0][1], "rows": op.out_shapes[0][2],
            "batch": op.out_shapes[0][0]}[axis]
    if size < 2:
        return
    a = GC200.cost_model.cost(op, Split.of(**{axis: 1}))
    b = GC200.cost_model.cost(op, Split.of(**{axis: 2}))
    assert b.outputs[0] <= a.outputs[0]
    assert b.always["weights"] <= a.always["weights"]
    assert b.step.get("act_in", 0) <= a.step.get("act_in", 0)
    assert b.compute_cycles <= a.compute_cycles


@settings(max_examples=30, deadline=None)
@given(convs(16))
def test_input_channel_split_charges_partial_sums(op):
    cin = op.in_shapes[0][1]
    if cin < 32:
        return
    c = GC200.cost_model.cost(op, Split.of(in_ch=2))
    assert c.step.get("temp", 0) >= c.outputs[0] * 2  # partials of the slice + reduction buffer
