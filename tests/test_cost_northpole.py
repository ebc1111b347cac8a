"""The NorthPole cost model against hand-computed examples, on a test chip with round constants.

Inherited (cited) northpole values used here: matrix unit 1024 / 2048 / 4096 MACs per cycle at
int8 / int4 / int2, vector unit 256 and activation unit 32 ops per cycle, fp16 partial sums.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tilec.targets import load_target

from tilec.costmodel import Split
from tilec.errors import InputError
from tilec.opinfo import GraphInfo, OpInfo, TensorInfo, WeightInfo

TEST_CHIP = """
[target]
base = "northpole"
name = "test-np"
description = "northpole with round numbers for hand-computed tests"
[chip]
tiles = 16
grid = [4, 4]
[compute]
vmm_efficiency = 0.5
[program]
layer_program_bytes = 1000
[noc]
activation_bytes_per_cycle_per_core = 10
model_bytes_per_cycle_per_core = 10
partial_sum_bytes_per_cycle_per_core = 10
layer_switch_cycles = 50
[io]
framebuffer_bytes = 100000
"""


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    p = Path(tmp_path_factory.mktemp("chip")) / "test-np.toml"
    p.write_text(TEST_CHIP)
    return load_target(str(p))


def conv(*, cin=16, cout=32, hw=16, k=3, act="Relu", bits=8, bias_bits=32,
         name="conv") -> OpInfo:
    weights = [WeightInfo(f"{name}.w", (cout, cin, k, k), bits)]
    if bias_bits:
        weights.append(WeightInfo(f"{name}.b", (cout,), bias_bits))
    return OpInfo(
        name=name, op_type="Conv", kind="conv", inputs=("x",), outputs=("y",),
        weights=tuple(weights),
        attrs={"kernel_shape": [k, k], "strides": [1, 1], "pads": [k // 2] * 4, "group": 1},
        macs=cout * hw * hw * cin * k * k, activation=act, weight_bits=bits, act_bits=bits,
        in_shapes=((1, cin, hw, hw),), out_shapes=((1, cout, hw, hw),),
    )


def test_conv_weights_stored_once_and_broadcast_per_layer(chip):
    c = chip.cost_model.cost(conv(), Split.of(out_ch=2, rows=4))
    # stored once over the array, whatever the split: 32 x 16 x 9 int8 + 32 int32 biases,
    # and one copy of the layer's program
    assert c.spread == {"weights": 4608 + 128, "code": 1000}
    assert c.always == {}
    # during the layer each core holds its weight slice (16 x 16 x 9 B + 16 biases x 4 B),
    # its input rows (4 + 2 halo) x 16 cols x 16 ch at 1 B, and the layer's program
    # (less the ceil(4736 / 16) bytes of this layer every core already stores and reads in place)
    assert c.step == {"weights": 2304 + 64 - 296, "act_in": 16 * 6 * 16, "code": 1000}
    assert c.outputs == (16 * 4 * 16,)
    # 147,456 MACs at 1024 x 0.5 = 288 cycles; Relu 1024 / 32 = 32 runs pipelined alongside
    assert c.compute_cycles == 288
    # input 1536 B at 10 B/cycle; the 2368 B of weights arrive within the 288 compute cycles
    assert c.exchange_cycles == 154
    assert not c.follows_input


def test_conv_input_channel_split_uses_partial_sums(chip):
    c = chip.cost_model.cost(conv(), Split.of(in_ch=2, out_ch=2, rows=2))
    # partial sums of the core's 16 x 8 x 16 outputs at fp16 arrive over the PNoC
    assert c.step == {"weights": 16 * 8 * 9 + 64 - 296, "act_in": 8 * 10 * 16, "temp": 2048 * 2,
                      "code": 1000}
    assert c.outputs == (1024,)
    assert c.compute_cycles == 288
    assert c.exchange_cycles == 128 + 410  # 1280 B input + 4096 B partial sums at 10 B/cycle


def test_lower_precision_is_faster_and_smaller(chip):
    s = Split.of(out_ch=2, rows=4)
    c8, c4, c2 = (chip.cost_model.cost(conv(bits=b), s) for b in (8, 4, 2))
    assert c8.compute_cycles == 2 * c4.compute_cycles == 4 * c2.compute_cycles
    assert c8.spread["weights"] - 128 == 2 * (c4.spread["weights"] - 128)


def test_float_operands_are_rejected(chip):
    with pytest.raises(InputError, match="matrix unit multiplies int8/int4/int2"):
        chip.cost_model.cost(conv(bits=16), Split.of(out_ch=2))


def test_add_pool_resize_concat(chip):
    shape = (1, 64, 16, 16)
    add = OpInfo("add", "Add", "elementwise", ("a", "b"), ("y",), (), {}, 0, act_bits=8,
                 in_shapes=(shape, shape), out_shapes=(shape,))
    c = chip.cost_model.cost(add, Split.of(elements=8))
    assert c.follows_input and c.in_place
    assert c.step == {"act_in": 2048, "code": 1000} and c.outputs == (2048,)
    assert c.spread == {"code": 1000}
    assert c.compute_cycles == 2048 // 256 and c.exchange_cycles == 205

    pool = OpInfo("pool", "MaxPool", "pool", ("a",), ("y",), (),
                  {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 0,
                  act_bits=8, in_shapes=(shape,), out_shapes=((1, 64, 8, 8),))
    c = chip.cost_model.cost(pool, Split.of(out_ch=4, rows=2))
    # 16 channels x 4 output rows need (4 - 1) x 2 + 3 = 9 input rows; all 16 columns (8
    # output columns span 17 padded positions, capped at the 16 real ones)
    assert c.step == {"act_in": 16 * 9 * 16, "code": 1000}
    assert c.outputs == (16 * 4 * 8,)
    assert c.compute_cycles == 16 * 4 * 8 * 9 // 256

    up = OpInfo("up", "Resize", "resize", ("a",), ("y",), (), {"mode": "nearest"}, 0,
                act_bits=8, in_shapes=((1, 64, 8, 8),), out_shapes=(shape,))
    c = chip.cost_model.cost(up, Split.of(out_ch=4, rows=2))
    # 8 output rows of a half_pixel nearest x2 read exactly 4 source rows
    assert c.step == {"act_in": 16 * 4 * 8, "code": 1000} and c.outputs == (16 * 8 * 16,)

    cat = OpInfo("cat", "Concat", "concat", ("a", "b"), ("y",), (), {"axis": 1}, 0, act_bits=8,
                 in_shapes=((1, 32, 8, 8), (1, 32, 8, 8)), out_shapes=((1, 64, 8, 8),))
    c = chip.cost_model.cost(cat, Split.of(elements=4))
    assert c.outputs == (1024,) and c.step == {"act_in": 1024, "code": 1000}


def test_io_lives_in_the_framebuffer(chip):
    x = TensorInfo("x", (1, 3, 100, 100), 8, None, ("c",), is_input=True)
    y = TensorInfo("y", (1, 255, 10, 10), 8, "c", (), is_output=True)
    g = GraphInfo("g", (), {"x": x, "y": y}, ("x",), ("y",), 8, 8)
    assert chip.framebuffer_bytes == 100000 and chip.io_location == "framebuffer"
    assert chip.cost_model.io_bytes(g) == 30000 + 25500
    assert chip.cost_model.input_bytes(x, 16) == {}  # not in core memory
    assert chip.cost_model.io_seconds(g) == pytest.approx(55500 / 8e9)
    assert chip.cost_model.sync_cycles(16) == 50


def test_splits_are_rectangles_of_the_mesh(chip):
    splits = chip.cost_model.splits(conv())
    counts = sorted({s.tiles for s in splits})
    assert counts == [1, 2, 4, 8, 16]
    real = load_target("northpole")
    counts = sorted({s.tiles for s in real.cost_model.splits(conv(cin=64, cout=64, hw=64))})
    assert counts[-1] == 256 and all(256 % n == 0 for n in counts)


def test_a_large_fc_layer_is_not_charged_twice():
    """VGG-16's fc6 (25088 x 4096 int8, 98 MiB): stored once over the array; a core running it
    reads its stored share in place, so spread + slice is about one copy per core, not two."""
    from tilec.targets import load_target

    np_chip = load_target("northpole")
    k, n = 25088, 4096
    op = OpInfo(
        name="fc6", op_type="Gemm", kind="matmul", inputs=("x",), outputs=("y",),
        weights=(WeightInfo("w", (n, k), 8), WeightInfo("b", (n,), 32)), attrs={"transB": 1},
        macs=k * n, weight_bits=8, act_bits=8, in_shapes=((1, k),), out_shapes=((1, n),))
    total = k * n + 4 * n
    cores = np_chip.tiles
    best = min((np_chip.cost_model.cost(op, s) for s in np_chip.cost_model.splits(op)
                if s.tiles == cores), key=lambda c: c.step.get("weights", 0))
    stored = -(-best.spread["weights"] // cores)
    assert best.spread["weights"] == total
    assert stored + best.step.get("weights", 0) <= -(-total // cores) + 4 * n  # ~ one copy
    assert stored + best.step.get("weights", 0) < np_chip.budget_per_tile
