"""Pools and resizes split like convolutions (issue 12, item 1).

Candidates are independent per-axis factors whose product is at most the tiles the op is given
(popnn PoolPlan.cpp), not products forced onto a tile-count list with the spatial factor given
to rows first; and the busiest tile's share is exact. Exactness is checked against referees that
share no code with ``targets/spatial.py``: a pool's windows enumerated tap by tap from the ONNX
definition, a resize's source rows read off onnxruntime itself (one input row set at a time).
"""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from tilec.targets import load_target
from tilec.targets.geometry import divisors
from tilec.targets.spatial import MapDims, map_candidates, map_share, pool_dims, resize_dims

from tilec.costmodel import Split
from tilec.opinfo import OpInfo


def op_of(kind: str, op_type: str, ins, outs, attrs=None, bits: int = 16) -> OpInfo:
    return OpInfo(name="op", op_type=op_type, kind=kind, inputs=("x",), outputs=("y",),
                  weights=(), attrs=attrs or {}, macs=0, act_bits=bits, in_shapes=(ins,),
                  out_shapes=(outs,))


def pool_out(n: int, k: int, s: int, p0: int, p1: int, dil: int, ceil: bool) -> int:
    span = n + p0 + p1 - ((k - 1) * dil + 1)
    return (-(-span // s) if ceil else span // s) + 1


# ------------------------------------------------------------------ pools: tap-by-tap referee
def pool_referee(h: int, w: int, oh: int, ow: int, k: tuple, s: tuple, p: tuple, dil: tuple,
                 fr: int, fc: int) -> tuple[int, int]:
    """(most input elements, most output elements) of one channel on any tile, the output
    cut into blocks of ceil(oh / fr) x ceil(ow / fc)."""
    br, bc = -(-oh // fr), -(-ow // fc)
    most_in = most_out = 0
    for r0 in range(0, oh, br):
        for c0 in range(0, ow, bc):
            read = set()
            outs = 0
            for y in range(r0, min(r0 + br, oh)):
                for x in range(c0, min(c0 + bc, ow)):
                    outs += 1
                    for ky in range(k[0]):
                        for kx in range(k[1]):
                            r = y * s[0] - p[0] + ky * dil[0]
                            c = x * s[1] - p[1] + kx * dil[1]
                            if 0 <= r < h and 0 <= c < w:
                                read.add((r, c))
            most_in, most_out = max(most_in, len(read)), max(most_out, outs)
    return most_in, most_out


POOLS = [  # (h, w, kernel, strides, pads begin, pads end, dilations, ceil_mode)
    (16, 16, (5, 5), (1, 1), (2, 2), (2, 2), (1, 1), False),  # YOLO's SPP
    (13, 11, (13, 13), (1, 1), (6, 6), (6, 6), (1, 1), False),
    (17, 15, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), False),  # ResNet's stem pool, odd sizes
    (15, 12, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1), True),  # ceil mode: a clipped last window
    (14, 14, (3, 2), (2, 3), (0, 1), (1, 0), (2, 1), False),  # dilated, asymmetric pads
]


@pytest.mark.parametrize("h,w,k,s,p0,p1,dil,ceil", POOLS)
def test_pool_share_is_exact(h, w, k, s, p0, p1, dil, ceil) -> None:
    oh = pool_out(h, k[0], s[0], p0[0], p1[0], dil[0], ceil)
    ow = pool_out(w, k[1], s[1], p0[1], p1[1], dil[1], ceil)
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": [*p0, *p1],
             "dilations": list(dil)}
    d = pool_dims(op_of("pool", "MaxPool", (2, 12, h, w), (2, 12, oh, ow), attrs))
    for fr, fc in itertools.product(range(1, oh + 1), range(1, ow + 1)):
        share = map_share(d, Split.of(batch=2, out_ch=3, rows=fr, cols=fc))
        most_in, most_out = pool_referee(h, w, oh, ow, k, s, p0, dil, fr, fc)
        assert (share.n, share.c) == (1, 4)
        assert share.ih * share.iw == most_in, (fr, fc)
        assert share.oh * share.ow == most_out, (fr, fc)


def test_pool_edge_blocks_read_less_than_the_old_estimate() -> None:
    """Two blocks of a 5 x 5 SPP pool are both edge blocks: each reads its rows plus one side's
    halo (10 of 16 rows), where ``(rows - 1) * stride + kernel`` charged 12."""
    op = op_of("pool", "MaxPool", (1, 8, 16, 16), (1, 8, 16, 16),
               {"kernel_shape": [5, 5], "strides": [1, 1], "pads": [2, 2, 2, 2]})
    s = map_share(pool_dims(op), Split.of(rows=2))
    assert (s.oh, s.ih, s.iw) == (8, 10, 16)


def test_auto_pad_same_puts_the_odd_pad_where_onnx_does() -> None:
    upper = pool_dims(op_of("pool", "MaxPool", (1, 1, 8, 8), (1, 1, 4, 4),
                            {"kernel_shape": [4, 4], "strides": [2, 2], "auto_pad": "SAME_UPPER"}))
    lower = pool_dims(op_of("pool", "MaxPool", (1, 1, 8, 8), (1, 1, 4, 4),
                            {"kernel_shape": [4, 4], "strides": [2, 2], "auto_pad": "SAME_LOWER"}))
    assert (upper.ph, lower.ph) == (1, 1)  # total pad 2: even, one each side
    odd = pool_dims(op_of("pool", "MaxPool", (1, 1, 9, 9), (1, 1, 5, 5),
                          {"kernel_shape": [4, 4], "strides": [2, 2], "auto_pad": b"SAME_LOWER"}))
    assert odd.ph == 2  # total pad 3: SAME_LOWER puts the extra one first


# --------------------------------------------------------------- resizes: onnxruntime referee
def ort_sources(h: int, oh: int, mode: str, coord: str, nearest: str) -> list[set[int]]:
    """For each output row, the input rows it depends on, measured by onnxruntime: each input
    row set to one (the others zero) in turn."""
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = nearest
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, h, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, oh, 1])],
        [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, oh, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    deps: list[set[int]] = [set() for _ in range(oh)]
    for r in range(h):
        x = np.zeros((1, 1, h, 1), dtype=np.float32)
        x[0, 0, r, 0] = 1.0
        y = sess.run(None, {"x": x})[0][0, 0, :, 0]
        for j in np.nonzero(y)[0]:
            deps[int(j)].add(r)
    return deps


RESIZES = [  # (input rows, output rows, mode, coordinate_transformation_mode, nearest_mode)
    (8, 16, "nearest", "half_pixel", "round_prefer_floor"),  # ONNX's defaults, x2
    (8, 16, "nearest", "asymmetric", "floor"),  # PyTorch's nearest upsample (YOLO's)
    (5, 15, "nearest", "align_corners", "round_prefer_ceil"),
    (7, 16, "nearest", "pytorch_half_pixel", "ceil"),
    (16, 8, "nearest", "half_pixel", "round_prefer_floor"),  # downsampling skips rows
    (12, 8, "nearest", "tf_half_pixel_for_nn", "round_prefer_floor"),
    (8, 16, "linear", "half_pixel", ""),
    (6, 15, "linear", "align_corners", ""),
    (8, 16, "linear", "asymmetric", ""),
    (12, 8, "linear", "pytorch_half_pixel", ""),
]


@pytest.mark.parametrize("h,oh,mode,coord,nearest", RESIZES)
def test_resize_share_is_exact(h, oh, mode, coord, nearest) -> None:
    deps = ort_sources(h, oh, mode, coord, nearest)
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if nearest:
        attrs["nearest_mode"] = nearest
    d = resize_dims(op_of("resize", "Resize", (1, 4, h, 3), (1, 4, oh, 3), attrs))
    for fr in range(1, oh + 1):
        b = -(-oh // fr)
        most = max(len(set().union(*deps[r0:r0 + b])) for r0 in range(0, oh, b))
        share = map_share(d, Split.of(rows=fr))
        assert share.ih == most, (fr, b)
        assert share.oh == b and share.iw == 3


# ------------------------------------------------------------------- candidates, not rows first
def rows_first(n: int, c: int, oh: int, ow: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """The old enumeration: exactly ``tiles`` tiles, batch and channel divisors first, then the
    spatial factor to rows as far as they take it (one option per factor)."""
    out = []
    for fb in divisors(tiles):
        for fch in divisors(tiles // fb):
            sp = tiles // fb // fch
            if fb > n or fch > c:
                continue
            for fr in reversed(divisors(sp)):
                if fr <= oh and sp // fr <= ow:
                    out.append((fb, fch, fr, sp // fr))
                    break
    return out


def test_candidates_include_splits_rows_first_never_made() -> None:
    """448 x 448 outputs of one channel on 1472 tiles: rows first could only offer rows 368 x
    cols 4 (2 x 112 outputs on the busiest tile); the balanced search offers e.g. rows 45 x
    cols 32 (10 x 14)."""
    d = MapDims(1, 1, 448, 448, 448, 448, 3, 3, 1, 1, 1, 1)
    old = rows_first(1, 1, 448, 448, 1472)
    assert [(r, c) for _, _, r, c in old] == [(368, 4)]
    new = map_candidates(d, 1472)
    assert Split.of(rows=45, cols=32, span=1472) in new
    assert all(s.work_tiles <= 1472 for s in new)
    old_best = min(-(-448 // r) * -(-448 // c) for _, _, r, c in old)
    new_best = min(map_share(d, s).out_elements for s in new)
    assert old_best == 2 * 112 and new_best < old_best


def test_pool_candidates_are_maximal_under_each_cap() -> None:
    """No candidate leaves an axis able to take its next efficient factor within the cap."""
    from tilec.targets.geometry import efficient_factors

    d = MapDims(2, 48, 40, 40, 20, 20, 3, 3, 2, 2, 1, 1)
    for cap in (16, 368, 1472):
        for s in map_candidates(d, cap, grain=4):
            f = s.as_dict()
            assert s.work_tiles <= cap and s.tiles == cap
            for axis, extent, grain in (("batch", 2, 1), ("out_ch", 48, 4), ("rows", 20, 1),
                                        ("cols", 20, 1)):
                fs = efficient_factors(extent, grain)
                have = f.get(axis, 1)
                assert have in fs
                nxt = [x for x in fs if x > have]
                assert not nxt or s.work_tiles // have * nxt[0] > cap, (s, axis)


# -------------------------------------------------------------------------------- monotone
def cheapest(model, op) -> dict[int, tuple[int, int]]:
    """Per cap: (least peak bytes, fewest cycles) over every candidate the cost model prices."""
    counts = model.tile_counts(op)
    blocks = model._blocks_of(op, counts)
    assert blocks is not None  # pools and resizes are priced vectorised
    return {c: (int(b.peak.min()), int(b.cycles.min())) for c, b in zip(counts, blocks,
                                                                       strict=True)}


@pytest.mark.parametrize("name", ["gc200", "northpole"])
def test_more_rows_never_cheaper(name: str) -> None:
    model = load_target(name).cost_model
    bits = 16 if name == "gc200" else 8

    def spp(rows: int) -> OpInfo:
        return op_of("pool", "MaxPool", (1, 256, rows, 40), (1, 256, rows, 40),
                     {"kernel_shape": [5, 5], "strides": [1, 1], "pads": [2, 2, 2, 2]}, bits)

    def down(rows: int) -> OpInfo:
        oh = pool_out(rows, 3, 2, 1, 1, 1, False)
        return op_of("pool", "MaxPool", (2, 64, rows, 56), (2, 64, oh, 28),
                     {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, bits)

    def up(rows: int) -> OpInfo:
        return op_of("resize", "Resize", (1, 128, rows, 28), (1, 128, 2 * rows, 56),
                     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                      "nearest_mode": "floor"}, bits)

    for make in (spp, down, up):
        prev: dict[int, tuple[int, int]] = {}
        for rows in range(4, 120, 3):
            now = cheapest(model, make(rows))
            # the least peak over every candidate never falls; nor do the fewest cycles on the
            # same tiles (a larger op may be given more tiles -- min_elements_per_tile -- and
            # run faster on them: that is not a cheaper split of the same tiles)
            assert min(p for p, _ in now.values()) >= min((p for p, _ in prev.values()),
                                                          default=0), (make.__name__, rows)
            for cap in set(now) & set(prev):
                assert now[cap][1] >= prev[cap][1], (make.__name__, rows, cap)
                assert now[cap][0] >= prev[cap][0], (make.__name__, rows, cap)
            prev = now


@pytest.mark.parametrize("name", ["gc200", "northpole"])
def test_vectorised_prices_match_the_scalar_ones(name: str) -> None:
    """Every candidate's vectorised price equals its scalar price (spot-checked: every 7th)."""
    model = load_target(name).cost_model
    bits = 16 if name == "gc200" else 8
    ops = [op_of("pool", "AveragePool", (2, 40, 30, 30), (2, 40, 15, 15),
                 {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, bits),
           op_of("pool", "GlobalAveragePool", (1, 8, 320, 320), (1, 8, 1, 1), {}, bits),
           op_of("resize", "Resize", (1, 24, 20, 20), (1, 24, 40, 40), {"mode": "linear"}, bits)]
    for op in ops:
        blocks = model._blocks_of(op, model.tile_counts(op))
        for blk in blocks:
            for i in range(0, len(blk), 7):
                c = model._uncached(op, blk.split(i))
                assert (c.peak_bytes, c.always_bytes, c.step_bytes, c.cycles) == (
                    int(blk.peak[i]), int(blk.always[i]), int(blk.step[i]),
                    int(blk.cycles[i])), (op.op_type, blk.split(i))
                assert blk.cost_of is not None and blk.cost_of(i) == c


# ------------------------------------------------------------------------------------ caps
def test_the_ops_own_limit_is_a_cap() -> None:
    """Caps are upper limits; the most tiles an op's work allows is one of them, not rounded
    down onto the powers of two (1000 tiles' worth of work was given at most 512)."""
    from tilec.targets.geometry import tile_counts

    assert tile_counts(1472, (1, 1472), False, 1000)[-1] == 1000
    assert tile_counts(1472, (1, 1472), False, 10**6)[-3:] == [736, 1024, 1472]
    assert tile_counts(256, (16, 16), True, 200)[-1] == 196  # the largest rectangle: 14 x 14
    model = load_target("gc200").cost_model
    add = op_of("elementwise", "Add", (1, 1, 125, 128), (1, 1, 125, 128))  # 16,000 elements
    assert max(s.tiles for s in model.splits(add)) <= 1000
    assert max(model.tile_counts(add)) == 1000


def test_exact_count_spatial_options_are_not_rows_first() -> None:
    """NorthPole's exact-count conv enumeration offers every undominated rows x cols pair."""
    from tilec.targets.geometry import spatial_pairs

    pairs = spatial_pairs(1472, 448, 448)
    # rows first offered only (368, 4): 2 x 112 outputs per tile; (46, 32) leaves 10 x 14
    assert (368, 4) in pairs and (46, 32) in pairs and len(pairs) > 2
    for fr, fc in pairs:  # none dominated by another
        e = (-(-448 // fr), -(-448 // fc))
        assert not any((-(-448 // a), -(-448 // b)) != e and -(-448 // a) <= e[0]
                       and -(-448 // b) <= e[1] for a, b in pairs)
    assert spatial_pairs(16, 4, 8) == ((2, 8), (4, 4))
