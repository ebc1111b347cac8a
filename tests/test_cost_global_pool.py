"""Global pools and reductions split over their input, on both cost models.

A global average pool (``x.mean((2, 3))`` in an SE block, a classifier's GAP) has one output per
channel. Tile counts used to be chosen from the outputs and a global pool could only be split
over channels, so 8 channels of a 320 x 320 map stayed on two tiles with 800 KB each: a tiny
network on a 900 MB chip came out "does not fit (b: op too large)" -- with a "proof". Now the
window is split over rows and columns of the input and the partial sums are reduced across tiles.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tilec.targets import load_target
from tilec.targets.spatial import MapDims, map_candidates, map_share, pool_dims

from tilec.costmodel import Split
from tilec.opinfo import OpInfo


def gap(n: int = 1, c: int = 8, hw: int = 320, bits: int = 16) -> OpInfo:
    return OpInfo(name="gap", op_type="GlobalAveragePool", kind="pool", inputs=("x",),
                  outputs=("y",), weights=(), attrs={}, macs=0, act_bits=bits,
                  in_shapes=((n, c, hw, hw),), out_shapes=((n, c, 1, 1),))


def test_geometry_splits_the_window_of_a_global_pool() -> None:
    d = pool_dims(gap())
    assert d.is_global and not MapDims(1, 8, 16, 16, 8, 8, 2, 2, 2, 2).is_global
    s = map_share(d, Split.of(out_ch=2, rows=4, cols=2))
    assert (s.n, s.c, s.ih, s.iw, s.oh, s.ow, s.partials) == (1, 4, 80, 160, 1, 1, 8)
    assert s.in_elements == 4 * 80 * 160 and s.out_elements == 4  # partials of 4 channels
    splits = set(map_candidates(d, 64))
    assert Split.of(out_ch=8, rows=8) in splits  # the input's rows, not the output's one row
    # an ordinary pool still splits its output rows
    ordinary = MapDims(1, 8, 16, 16, 8, 8, 2, 2, 2, 2)
    assert map_share(ordinary, Split.of(rows=4)).partials == 1


@pytest.mark.parametrize("name", ["gc200", "northpole"])
def test_global_pool_of_a_wide_map_spreads_over_the_chip(name: str) -> None:
    target = load_target(name)
    model = target.cost_model
    op = gap(bits=16 if name == "gc200" else 8)
    budget = target.budget_per_tile
    counts = model.tile_counts(op)
    assert max(counts) == target.tiles  # 819,200 input elements: work for every tile
    best = min((model.cost(op, s) for s in model.splits(op)), key=lambda c: c.peak_bytes)
    assert best.split.tiles >= 64
    assert best.peak_bytes < budget // 10, best  # was ~800 KB per tile on 2 tiles
    whole = op.in_shapes[0][1] * 320 * 320 * op.act_bits // 8
    assert best.step["act_in"] * best.split.tiles >= whole  # every input byte lands somewhere
    # the reduction is charged: partial sums held and received, one output share per tile
    split = Split.of(out_ch=2, rows=4, cols=2)
    c = model.cost(op, split)
    assert c.step.get("temp", 0) > 0
    assert c.outputs[0] * split.tiles >= 8 * op.act_bits // 8


def test_unsplit_global_pool_costs_as_before() -> None:
    """Channel-only splits (ResNet's GAP) keep the old charges: no partials, no temp."""
    model = load_target("gc200").cost_model
    op = gap(n=2, c=512, hw=7)
    c = model.cost(op, Split.of(out_ch=32))
    assert "temp" not in c.step and c.step["act_in"] == 2 * 16 * 49 * 2
    assert c.outputs == (2 * 16 * 2,)


def test_reduce_tile_counts_follow_the_input() -> None:
    model = load_target("gc200").cost_model
    op = OpInfo(name="r", op_type="ReduceMean", kind="reduce", inputs=("x",), outputs=("y",),
                weights=(), attrs={"axes": [2, 3]}, macs=0, act_bits=16,
                in_shapes=((1, 8, 320, 320),), out_shapes=((1, 8, 1, 1),))
    assert max(model.tile_counts(op)) == 1472


def test_se_block_at_320_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: an SE-style network (a few thousand parameters) at 320 px fits on gc200 and
    on NorthPole (it was "does not fit (b)" on both)."""
    from tilec.cli import main

    src = tmp_path / "se.py"
    src.write_text(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "class SE(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.stem = nn.Conv2d(3, 8, 3, 1, 1)\n"
        "        self.fc = nn.Conv2d(8, 8, 1)\n"
        "    def forward(self, x):\n"
        "        y = F.relu(self.stem(x))\n"
        "        return y * torch.sigmoid(self.fc(y.mean((2, 3), keepdim=True)))\n"
        "def make():\n"
        "    return SE()\n")
    for target in ("gc200", "northpole"):
        code = main(["compile", f"{src}:make", "--input-shape", "1,3,320,320", "-t", target,
                     "-q", "--no-what-if"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert " FITS " in out


@pytest.mark.parametrize("name", ["gc200", "northpole"])
def test_classifier_head_tile_counts_follow_its_weights(name: str) -> None:
    """Linear(100,352 -> 10): 10 outputs allowed one tile, so its 2 MB of weights could not be
    split over input channels -- "does not fit (b)" for a 2-op network."""
    from tilec.opinfo import WeightInfo

    model = load_target(name).cost_model
    bits = 16 if name == "gc200" else 8
    fc = OpInfo(name="fc", op_type="Gemm", kind="matmul", inputs=("x",), outputs=("y",),
                weights=(WeightInfo("w", (10, 100352), bits), WeightInfo("b", (10,), bits)),
                attrs={"transB": 1}, macs=1003520, act_bits=bits, in_shapes=((1, 100352),),
                out_shapes=((1, 10),))
    assert max(model.tile_counts(fc)) >= 64
    best = min((model.cost(fc, s) for s in model.splits(fc)), key=lambda c: c.peak_bytes)
    assert best.split.factor("in_ch") > 1
    assert best.peak_bytes < load_target(name).budget_per_tile
    # a product of two activations (no weights) still works
    att = OpInfo(name="qk", op_type="MatMul", kind="matmul", inputs=("q", "k"), outputs=("s",),
                 weights=(), attrs={}, macs=4 * 16 * 16 * 32, act_bits=bits,
                 in_shapes=((4, 16, 32), (4, 32, 16)), out_shapes=((4, 16, 16),))
    assert model.tile_counts(att)
