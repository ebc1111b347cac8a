"""The IPU cost model against hand-computed examples (conv, pooling, concat, resize, add) on a
test chip with round constants, plus the behaviours the chip must show.

The test chip starts from gc200 and overrides the fitted constants with round numbers, so these
examples stay valid whatever the calibration settles on. Inherited (cited) gc200 values used here:
fp16 AMP 64 MAC/cycle with channel grains 16/16, 4 fp16 vector lanes, 8 copy bytes per cycle,
half partials, Relu native, Mish = 13 vector ops and one output-sized temporary, AMP 0.6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tilec.targets import load_target

from tilec.costmodel import Split
from tilec.errors import InputError
from tilec.opinfo import OpInfo, WeightInfo

TEST_CHIP = """
[target]
base = "gc200"
name = "test-ipu"
description = "gc200 with round numbers for hand-computed tests"
[chip]
tiles = 64
grid = [8, 8]
clock_hz = 1e9
[memory]
bytes_per_tile = 262144
[memory.reserved]
worker_stacks = 0
vertex_code_library = 0
host_exchange = 0
[compute]
conv_efficiency = 0.5
[exchange]
superstep_cycles = 100
bytes_per_cycle_per_tile = 4
[overheads]
bytes_per_compute_set = 100
code_share = 0.2
state_share = 0.3
exchange_share = 0.5
[splits]
policy = "pareto"
"""


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    p = Path(tmp_path_factory.mktemp("chip")) / "test-ipu.toml"
    p.write_text(TEST_CHIP)
    return load_target(str(p))


def conv(*, n=1, cin=16, cout=32, hw=16, k=3, stride=1, group=1, act=None, bias=False,
         wbits=16, abits=16, name="conv") -> OpInfo:
    oh = (hw + 2 * (k // 2) - k) // stride + 1
    weights = [WeightInfo(f"{name}.w", (cout, cin // group, k, k), wbits)]
    if bias:
        weights.append(WeightInfo(f"{name}.b", (cout,), 16))
    return OpInfo(
        name=name, op_type="Conv", kind="conv", inputs=("x",), outputs=("y",),
        weights=tuple(weights),
        attrs={"kernel_shape": [k, k], "strides": [stride, stride], "pads": [k // 2] * 4,
               "group": group, **({"activation": act} if act else {})},
        macs=n * cout * oh * oh * (cin // group) * k * k, activation=act,
        weight_bits=wbits, act_bits=abits, in_shapes=((n, cin, hw, hw),),
        out_shapes=((n, cout, oh, oh),),
    )


def simple(kind, op_type, ins, outs, attrs=None, weights=(), abits=16, name="op") -> OpInfo:
    return OpInfo(name=name, op_type=op_type, kind=kind,
                  inputs=tuple(f"i{j}" for j in range(len(ins))),
                  outputs=tuple(f"o{j}" for j in range(len(outs))), weights=tuple(weights),
                  attrs=attrs or {}, macs=0, act_bits=abits, in_shapes=tuple(ins),
                  out_shapes=tuple(outs))


# ------------------------------------------------------------------------ conv, by hand
def test_conv_split_over_out_channels_and_rows(chip):
    # 3x3 conv 16 -> 32 on 16x16, bias, Relu; out_ch 2 x rows 4 = 8 tiles.
    op = conv(bias=True, act="Relu")
    c = chip.cost_model.cost(op, Split.of(out_ch=2, rows=4))
    # weights: slice = 16 out x 16 in x 9 x 2 B = 4608 + bias 16 x 2 B = 32 -> 4640; the 4 row
    # tiles of a slice store it once: total 9280 B / 8 tiles = 1160 stored, 3480 received.
    # sets: conv + bias + activation = 3 -> 300 B = code 60, state 90, exchange code 150; the
    # nx1 vertex's worklists: 6 B x 9 kernel positions x (4 rows + 5 worker boundaries) = 486
    assert c.always == {"weights": 1160, "code": 60, "state": 90 + 486, "exchange": 150}
    # input: 16 ch x (4 rows + 2 halo) x 16 cols x 2 B = 3072; partials: the tile's 16 x 4 x 16
    # outputs in half = 2048 (PopLibs' temp estimate: inputs + weights + partials)
    assert c.step == {"weights": 3480, "act_in": 3072, "temp": 2048}
    assert c.outputs == (16 * 4 * 16 * 2,)
    # MACs 1,179,648 / 8 = 147,456 at 64 x 0.5 per cycle = 4608; bias 1024/4 = 256; Relu 256;
    # two extra supersteps 200
    assert c.compute_cycles == 4608 + 256 + 256 + 200
    # exchange: the weights received, and the input slice less the half already resident
    # (1 / out_ch split of it: PopLibs' exchange estimate)
    assert c.exchange_cycles == (3480 + 3072 // 2) // 4
    assert not c.follows_input


def test_conv_split_over_input_channels_needs_partials_and_a_reduction(chip):
    # 3x3 conv 32 -> 32 on 16x16, Mish, no bias; in_ch 2 x out_ch 2 x rows 2 = 8 tiles (input
    # channels go out in whole grains of 16, so 32 of them can be split two ways)
    op = conv(cin=32, act="Mish")
    c = chip.cost_model.cost(op, Split.of(in_ch=2, out_ch=2, rows=2))
    # weights: slice 16 x 16 x 9 x 2 B = 4608, stored 18432 / 8 = 2304, received 2304
    # sets: conv + reduction + activation + non-native activation = 4 -> 400 B; worklists
    # 6 B x 9 x (8 rows + 5) = 702
    assert c.always == {"weights": 2304, "code": 80, "state": 120 + 702, "exchange": 200}
    # input 16 ch x (8 + 2) rows x 16 x 2 B = 5120.
    # temp: partials 16 x 8 x 16 = 2048 half = 4096 (the reduction's buffer, partials x result
    # type, is what PopLibs takes the max of with them: no more), Mish intermediate of the 1024
    # outputs held after the reduction 2048 -> 6144
    assert c.step == {"weights": 2304, "act_in": 5120, "temp": 6144}
    assert c.outputs == (2048,)
    # 294,912 MACs at 32 per cycle = 9216 cycles; reduction 2048/4 = 512; Mish 1024 x 13 / 4 =
    # 3328; three extra supersteps 300
    assert c.compute_cycles == 9216 + 512 + 3328 + 300
    # exchange: weights 2304, input less its resident half 2560, the other tile's partials 2048
    assert c.exchange_cycles == (2304 + 2560 + 2048) // 4


def test_low_bit_weights_are_storage_only_on_the_ipu(chip):
    # 1x1 conv 32 -> 32 on 8x8, int4 weights, fp16 activations; out_ch 2 = 2 tiles
    c4 = chip.cost_model.cost(conv(cin=32, k=1, hw=8, wbits=4), Split.of(out_ch=2))
    c16 = chip.cost_model.cost(conv(cin=32, k=1, hw=8, wbits=16), Split.of(out_ch=2))
    # stored: 16 x 32 weights at 4 bits = 256 B (fp16: 1024 B); used: a dequantized fp16 copy
    assert c4.always["weights"] == 256 and c16.always["weights"] == 1024
    # temporaries: the partials of 16 x 64 outputs (2048 B) and, at int4, the dequantized slice
    assert c4.step == {"act_in": 32 * 64 * 2, "temp": 16 * 32 * 2 + 16 * 64 * 2}
    assert c16.step == {"act_in": 32 * 64 * 2, "temp": 16 * 64 * 2}
    # one more compute set for the dequantization: 200 B of overheads instead of 100, plus the
    # worklists of 8 output rows: 6 B x (8 + 5) = 78
    assert c4.always_bytes - c4.always["weights"] == 200 + 78
    # cycles: 32,768 MACs / 32 = 1024, dequantize 512 x 2 / 4 = 256, one extra superstep 100
    assert c4.compute_cycles == 1024 + 256 + 100
    assert c16.compute_cycles == 1024


def test_native_activation_needs_no_temporary_and_mish_does(chip):
    split = Split.of(out_ch=2)
    relu = chip.cost_model.cost(conv(act="Relu"), split)
    mish = chip.cost_model.cost(conv(act="Mish"), split)
    assert relu.step["temp"] == relu.outputs[0]  # the partials only (half partials)
    assert mish.step["temp"] - relu.step["temp"] == mish.outputs[0]  # one intermediate more
    assert mish.always_bytes > relu.always_bytes  # one more compute set on every tile


def test_depthwise_conv_falls_back_to_the_vector_unit(chip):
    op = conv(cin=32, cout=32, group=32)
    c = chip.cost_model.cost(op, Split.of(groups=2))
    macs = 32 * 16 * 16 * 9 // 2
    assert c.compute_cycles == macs // 4  # vector MACs beat the AMP padded 16 x 16 times


def test_gemm_is_a_1x1_conv(chip):
    # (1, 256) x (256, 128) + bias, split over output features (out_ch 2)
    op = OpInfo(name="fc", op_type="Gemm", kind="matmul", inputs=("x",), outputs=("y",),
                weights=(WeightInfo("w", (256, 128), 16), WeightInfo("b", (128,), 16)),
                attrs={}, macs=256 * 128, act_bits=16, in_shapes=((1, 256),),
                out_shapes=((1, 128),))
    c = chip.cost_model.cost(op, Split.of(out_ch=2))
    assert c.always["weights"] == 64 * 256 * 2 + 64 * 2  # its half of the matrix and the bias
    assert c.step == {"act_in": 256 * 2, "temp": 64 * 2}  # the input row; partials of 64
    assert c.outputs == (64 * 2,)
    # 16,384 MACs at 32 per cycle = 512; bias 64 / 4 = 16; one extra superstep (bias)
    assert c.compute_cycles == 512 + 16 + 100
    # attention-style batched MatMul: the second operand is an activation, per batch element
    att = OpInfo(name="qk", op_type="MatMul", kind="matmul", inputs=("q", "k"), outputs=("s",),
                 weights=(), attrs={}, macs=4 * 16 * 16 * 32, act_bits=16,
                 in_shapes=((4, 16, 32), (4, 32, 16)), out_shapes=((4, 16, 16),))
    c = chip.cost_model.cost(att, Split.of(batch=2))
    assert "weights" not in c.always
    assert c.step == {"act_in": 2 * 16 * 32 * 2 + 2 * 32 * 16 * 2, "temp": 2 * 16 * 16 * 2}
    assert c.always["state"] == 30 + 6 * (2 * 16 + 5)  # worklists: 32 output rows


# ----------------------------------------------------------------- other kinds, by hand
def test_maxpool(chip):
    # MaxPool 5x5 stride 1 pad 2 on 1x64x16x16; channels 2 x rows 4 = 8 tiles
    op = simple("pool", "MaxPool", [(1, 64, 16, 16)], [(1, 64, 16, 16)],
                {"kernel_shape": [5, 5], "strides": [1, 1], "pads": [2, 2, 2, 2]})
    c = chip.cost_model.cost(op, Split.of(out_ch=2, rows=4))
    assert c.step == {"act_in": 32 * (4 + 4) * 16 * 2}  # 4 rows + 4 halo rows
    assert c.outputs == (32 * 4 * 16 * 2,)
    assert c.always == {"code": 20, "state": 30, "exchange": 50}
    assert c.compute_cycles == 32 * 4 * 16 * 25 // 4
    assert c.exchange_cycles == 8192 // 4


def test_concat_copy_and_in_place(chip):
    ins = [(1, 32, 8, 8), (1, 32, 8, 8)]
    op = simple("concat", "Concat", ins, [(1, 64, 8, 8)], {"axis": 1})
    c = chip.cost_model.cost(op, Split.of(elements=8))
    assert c.outputs == (4096 // 8 * 2,)
    assert c.step == {"act_in": 1024}  # its share of the inputs arrives by exchange
    assert c.compute_cycles == 1024 // 8 and c.exchange_cycles == 1024 // 4
    # in place: the producers write into its buffer; it holds the buffer and runs nothing
    in_place = simple("concat", "Concat", ins, [(1, 64, 8, 8)], {"axis": 1, "in_place": 1})
    assert chip.cost_model.splits(in_place) == chip.cost_model.splits(op)
    c = chip.cost_model.cost(in_place, Split.of(elements=8))
    assert c.outputs == (1024,)
    assert c.always_bytes == c.step_bytes == c.cycles == 0


def test_nearest_resize(chip):
    op = simple("resize", "Resize", [(1, 64, 8, 8)], [(1, 64, 16, 16)], {"mode": "nearest"})
    c = chip.cost_model.cost(op, Split.of(out_ch=4, rows=2))
    # 16 channels x 8 output rows: half_pixel nearest reads source rows 0..3 (or 4..7), x 8 cols
    assert c.step == {"act_in": 16 * 4 * 8 * 2}
    assert c.outputs == (16 * 8 * 16 * 2,)
    assert c.compute_cycles == 4096 // 8 and c.exchange_cycles == 1024 // 4
    # linear also reads the next source row (output row 7 sits at source 3.25), x 8 cols
    lin = simple("resize", "Resize", [(1, 64, 8, 8)], [(1, 64, 16, 16)], {"mode": "linear"})
    assert chip.cost_model.cost(lin, Split.of(out_ch=4, rows=2)).step == {
        "act_in": 16 * 5 * 8 * 2}


def test_add_runs_where_its_input_lives_in_place(chip):
    shape = (1, 64, 16, 16)
    op = simple("elementwise", "Add", [shape, shape], [shape])
    c = chip.cost_model.cost(op, Split.of(elements=8))
    assert c.follows_input and c.in_place
    assert c.outputs == (2048 * 2,)
    assert c.step == {"act_in": 2048 * 2}  # the second operand's share arrives
    assert c.always == {"code": 20, "state": 30, "exchange": 50}
    assert c.compute_cycles == 2048 // 4 and c.exchange_cycles == 4096 // 4
    # a per-channel operand: only the 8 + 1 channels the share touches
    bc = simple("elementwise", "Add", [shape, (1, 64, 1, 1)], [shape])
    assert chip.cost_model.cost(bc, Split.of(elements=8)).step == {"act_in": 9 * 2}


def test_a_bias_over_the_innermost_dim_is_read_whole_and_stored_once(chip):
    """A transformer's bias [C] added to [N, T, C]: each tile's contiguous share of outputs
    reads one bias element per output (up to all C), and the bias is one variable over the
    chip (poputil createBroadcastOperand), stored ceil(bytes / tiles) per tile and the rest
    received for the op -- not the whole slice kept on every tile for the whole run."""
    from tilec.targets.base import broadcast_inner, touched

    assert broadcast_inner((2, 128, 768), (768,)) == 1
    assert broadcast_inner((1, 64, 16, 16), (1, 64, 1, 1)) == 256
    assert broadcast_inner((1, 64, 16, 16), ()) == 64 * 256
    assert touched(768, 2 * 128 * 768 // 8, 2 * 128 * 768, 1) == 768
    assert touched(768, 100, 2 * 128 * 768, 1) == 101
    out = (2, 128, 768)
    bias = WeightInfo("b", (768,), 16)
    add = simple("elementwise", "Add", [out], [out], weights=[bias])
    c = chip.cost_model.cost(add, Split.of(elements=8))
    assert c.always["weights"] == 768 * 2 // 8  # its eighth of the bias, kept
    assert c.step["weights"] == 768 * 2 - 768 * 2 // 8  # the rest of it, for the op
    assert c.exchange_cycles == (768 * 2 - 768 * 2 // 8) // 4
    # a LayerNorm's gamma and beta are broadcast operands too
    ln = simple("reduce", "LayerNormalization", [out], [out],
                weights=[WeightInfo("g", (768,), 16), WeightInfo("b", (768,), 16)])
    c = chip.cost_model.cost(ln, Split.of(elements=8))
    assert c.always["weights"] == 2 * 768 * 2 // 8
    assert c.step["weights"] == 2 * (768 * 2 - 768 * 2 // 8)
    # an operand as large as the output is read where it is stored: nothing received
    full = simple("elementwise", "Add", [out], [out], weights=[WeightInfo("p", out, 16)])
    c = chip.cost_model.cost(full, Split.of(elements=8))
    assert c.always["weights"] == 2 * 128 * 768 * 2 // 8
    assert "weights" not in c.step


def test_views_cost_nothing(chip):
    op = simple("view", "Reshape", [(1, 64, 4, 4)], [(1, 1024)])
    assert chip.cost_model.splits(op) == [Split()]
    c = chip.cost_model.cost(op, Split())
    assert c.peak_bytes == 0 and c.cycles == 0 and not c.spread


def test_io_and_sync(chip):
    from tilec.opinfo import GraphInfo, TensorInfo

    x = TensorInfo("x", (1, 3, 8, 8), 16, None, ("c",), is_input=True)
    y = TensorInfo("y", (1, 10), 16, "c", (), is_output=True)
    g = GraphInfo("g", (), {"x": x, "y": y}, ("x",), ("y",), 16, 16)
    assert chip.cost_model.io_seconds(g) == pytest.approx(384 / 14.55e9 + 20 / 6.33e9)
    assert chip.cost_model.sync_cycles(64) == chip.cost_model.sync_cycles(1) == 100
    assert chip.cost_model.input_bytes(x, 4) == {"io": 96}


# --------------------------------------------------------------------- candidate splits
def test_splits_cover_one_tile_to_the_chip(chip):
    op = conv()  # small enough to fit on one tile
    splits = chip.cost_model.splits(op)
    counts = sorted({s.tiles for s in splits})
    assert counts[0] == 1 and counts[-1] == chip.tiles
    assert len(counts) >= 5  # a handful of steps in between
    assert all(s.tiles <= chip.tiles for s in splits)
    assert splits == sorted(splits, key=lambda s: (s.tiles, s.factors))
    assert splits == chip.cost_model.splits(op)  # deterministic (and cached)


def test_gc200_offers_only_what_poplar_would_choose(tmp_path):
    """Poplar plans each op for speed over the whole IPU: gc200 offers the splits within 10% of
    the fastest; the same chip with policy "pareto" offers the memory trade-offs as well."""
    t = load_target("gc200")
    op = conv(cin=128, cout=128, hw=112, k=3, act="Mish", name="mid")
    fast = t.cost_model.splits(op)
    costs = [t.cost_model.cost(op, s) for s in fast]
    best = min(c.cycles for c in costs)
    assert 1 <= len(fast) <= 3
    assert all(c.cycles <= best * 1.1 for c in costs)
    assert min(s.tiles for s in fast) >= 512  # big convs spread over (most of) the chip
    p = tmp_path / "free.toml"
    p.write_text('[target]\nbase = "gc200"\nname = "free"\n[splits]\npolicy = "pareto"\n')
    free = load_target(str(p))
    wide = free.cost_model.splits(op)
    assert set(fast) <= set(wide) and min(s.tiles for s in wide) < 512
    assert min(free.cost_model.cost(op, s).cycles for s in wide) == best
    # element-wise ops follow their producer: every tile count stays on offer
    shape = (1, 128, 112, 112)
    add = simple("elementwise", "Add", [shape, shape], [shape])
    counts = {s.tiles for s in t.cost_model.splits(add)}
    assert {368, 512, 736, 1024, 1472} <= counts and len(counts) >= 8


def test_temporaries_respect_available_memory_proportion():
    """Where some split of a tile count keeps a conv's temporaries under 0.6 of the tile, only
    such splits are offered; where none does, the one needing least (Poplar's fallback)."""
    t = load_target("gc200")
    cm = t.cost_model
    op = conv(cin=256, cout=256, hw=112, k=3, act="Mish", name="big")
    cap = 0.6 * t.bytes_per_tile
    returned = cm.splits(op)
    bound_bites = False
    for n in sorted({s.tiles for s in returned}):
        cands = [cm.cost(op, s) for s in cm._candidates(op, n)]
        mine = [cm.cost(op, s) for s in returned if s.tiles == n]
        if any(c.step_bytes <= cap for c in cands):
            assert all(c.step_bytes <= cap for c in mine)
            bound_bites |= any(c.step_bytes > cap for c in cands)
        else:
            assert [c.step_bytes for c in mine] == [min(c.step_bytes for c in cands)]
    assert bound_bites  # the example exercises the bound


def test_candidates_fit_the_tile():
    t = load_target("gc200")
    op = conv(cin=1024, cout=1024, hw=28, k=3, act="Mish", name="deep")
    splits = t.cost_model.splits(op)
    assert splits
    assert all(t.cost_model.cost(op, s).peak_bytes <= t.budget_per_tile for s in splits)
    # the whole conv cannot sit on one tile (9.4 MB of weights), so no single-tile split
    assert min(s.tiles for s in splits) > 1


def test_too_many_tiles_is_a_bug_not_a_plan(chip):
    with pytest.raises(ValueError, match="uses 128 tiles"):
        chip.cost_model.cost(conv(), Split.of(out_ch=2, rows=64))


def test_unsupported_precision_is_an_input_error(chip):
    with pytest.raises(InputError):
        chip.weight_bits("int3")
