"""Geometry of the ops that keep channels apart -- pooling and resize -- and their candidates.

Candidates are searched the way PopLibs' pooling planner searches them (popnn ``PoolPlan.cpp``,
``constructModel``): an independent split per axis -- batch, channel groups and each dimension of
the output field -- whose product is *at most* the tiles the op is given (``usedTiles <=
numTiles``), every per-tile size a ceiling division. As for convolutions
(:func:`geometry.balanced_factor_rows`), only each axis's efficient factors (the smallest factor
for each busiest-tile extent) and only the maximal combinations under a cap are kept. A global
pool (one window covering the whole input) splits its *input* window instead of its one output
row and column, and reduces the partial results across the tiles after.

The busiest tile's share is exact. Its outputs are the product of the per-axis ceilings; its
input rows (columns likewise) are the most rows any tile's block of output rows reads, counted
from the op's own definition: a pool's window at each output row (kernel, stride, dilation --
a dilated window skips rows --, leading pad, clipped to the input: an edge block's window is cut
short by the padding), a resize's
source rows (ONNX ``coordinate_transformation_mode`` and ``nearest_mode``; ``linear`` reads the
rows either side of the source coordinate with a non-zero weight, ``cubic`` four rows). Blocks
are ``[k * b, (k + 1) * b)`` for ``b = ceil(rows / factor)``, as PopLibs cuts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tilec.costmodel import NON_TILE_AXES, Split
from tilec.opinfo import OpInfo

from .geometry import (
    _ints,
    _rows_cols,
    axis_share,
    balanced_factor_rows,
    cdiv,
    efficient_factors,
    flat_to_axes,
    numel,
)

RESIZE_DEFAULT = ("nearest", "half_pixel", "round_prefer_floor")
"""ONNX Resize's defaults (mode, coordinate_transformation_mode, nearest_mode)."""


@dataclass(frozen=True)
class MapDims:
    """A spatial op that keeps channels apart (pooling, resize): n x c x rows x cols."""

    n: int
    c: int
    ih: int
    iw: int
    oh: int
    ow: int
    kh: int = 1  # window (pooling)
    kw: int = 1
    sh: int = 1
    sw: int = 1
    ph: int = 0  # leading pad rows / columns (pooling)
    pw: int = 0
    dh: int = 1  # dilation (pooling)
    dw: int = 1
    resize: tuple[str, ...] = ()
    """A resize's (mode, coordinate_transformation_mode, nearest_mode); empty for a pool."""

    @property
    def is_global(self) -> bool:
        """A pool whose one window is the whole input (GlobalAveragePool, or a k x k pool of a
        k x k map): its rows/cols factors split the *input* window, each tile reduces its part
        and the partial results are then reduced across the tiles (:attr:`MapShare.partials`)."""
        return (not self.resize and self.oh == 1 and self.ow == 1 and self.kh == self.ih
                and self.kw == self.iw and self.ih * self.iw > 1)

    def window(self, axis: str) -> tuple:
        """The hashable description of what output rows (``axis="rows"``) or columns read, for
        :func:`window_extent`."""
        if axis == "rows":
            out, inp, k, s, p, dil = self.oh, self.ih, self.kh, self.sh, self.ph, self.dh
        else:
            out, inp, k, s, p, dil = self.ow, self.iw, self.kw, self.sw, self.pw, self.dw
        if self.resize:
            return ("resize", out, inp, *self.resize)
        return ("pool", out, inp, k, s, p, dil)


MAP_AXES = ("batch", "out_ch", "rows", "cols")
MAP_COLUMNS = 5
"""Columns of a :func:`map_rows` row: batch, out_ch, rows, cols, span."""


def _text(value: object, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _leading_pads(op: OpInfo, nsp: int, ins: Sequence[int], outs: Sequence[int],
                  k: Sequence[int], s: Sequence[int], dil: Sequence[int]) -> list[int]:
    """Leading pad per spatial dim: ``pads`` (ONNX: all begins, then all ends), or what
    ``auto_pad`` SAME_UPPER / SAME_LOWER puts before the input (the odd pad goes after for
    UPPER, before for LOWER)."""
    auto = _text(op.attrs.get("auto_pad"), "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i in range(nsp):
            total = max(0, (outs[i] - 1) * s[i] + (k[i] - 1) * dil[i] + 1 - ins[i])
            out.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
        return out
    if auto == "VALID":
        return [0] * nsp
    return _ints(op.attrs.get("pads"), nsp, 0)


def pool_dims(op: OpInfo) -> MapDims:
    x, y = op.in_shapes[0], op.out_shapes[0]
    ih, iw = _rows_cols(x)
    oh, ow = _rows_cols(y)
    if op.op_type.startswith("Global"):
        return MapDims(int(x[0]), int(x[1]), ih, iw, oh, ow, ih, iw, ih, iw)
    nsp = max(len(x) - 2, 1)
    k = _ints(op.attrs.get("kernel_shape"), nsp, 1)
    s = _ints(op.attrs.get("strides"), nsp, 1)
    dil = _ints(op.attrs.get("dilations"), nsp, 1)
    pads = _leading_pads(op, nsp, [int(v) for v in x[2:]] or [1], [int(v) for v in y[2:]] or [1],
                         k, s, dil)
    # more than two spatial dims collapse into columns (as for convolutions): the columns'
    # window is then the collapsed kernel with stride, pad and dilation of the second dim
    return MapDims(int(x[0]), int(x[1]), ih, iw, oh, ow, k[0], numel(k[1:]), s[0],
                   s[1] if nsp > 1 else 1, pads[0], pads[1] if nsp > 1 else 0, dil[0],
                   dil[1] if nsp > 1 else 1)


def resize_dims(op: OpInfo) -> MapDims:
    x, y = op.in_shapes[0], op.out_shapes[0]
    ih, iw = _rows_cols(x)
    oh, ow = _rows_cols(y)
    if op.op_type == "Upsample":  # opset 7-9: nearest or linear, x_original = y / scale
        mode = (_text(op.attrs.get("mode"), "nearest"), "asymmetric", "floor")
    else:
        mode = (_text(op.attrs.get("mode"), RESIZE_DEFAULT[0]),
                _text(op.attrs.get("coordinate_transformation_mode"), RESIZE_DEFAULT[1]),
                _text(op.attrs.get("nearest_mode"), RESIZE_DEFAULT[2]))
    return MapDims(int(x[0]), int(x[1]) if len(x) > 1 else 1, ih, iw, oh, ow, resize=mode)


# ------------------------------------------------------------------ what a block of rows reads
def _floor_div(a: np.ndarray, b: int) -> np.ndarray:
    return a // b


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


@lru_cache(maxsize=4096)
def _bounds(spec: tuple) -> tuple[np.ndarray, np.ndarray]:
    """First and last input index each output index reads (``lo > hi``: none), both
    non-decreasing in the output index. ``spec``: :meth:`MapDims.window`."""
    kind, out, inp = spec[0], int(spec[1]), int(spec[2])
    y = np.arange(out, dtype=np.int64)
    if kind == "pool":
        k, s, p, dil = (int(v) for v in spec[3:7])
        lo = y * s - p
        hi = lo + (k - 1) * dil
    else:
        mode, coord, nearest = spec[3:6]
        # the source coordinate num / den, exactly (the scale is out / in: the sizes the graph
        # has; a scales input whose product with the input is not whole is not modelled)
        if coord == "align_corners":
            num, den = y * (inp - 1), max(1, out - 1)
            if out == 1:
                num = y * 0
        elif coord == "asymmetric":
            num, den = y * inp, out
        elif coord == "tf_half_pixel_for_nn":
            num, den = (2 * y + 1) * inp, 2 * out
        elif coord == "pytorch_half_pixel" and out == 1:
            num, den = y * 0, 1
        else:  # half_pixel, pytorch_half_pixel (and, as a modelling choice, any other mode)
            num, den = (2 * y + 1) * inp - out, 2 * out
        if mode == "nearest":
            if nearest == "floor":
                idx = _floor_div(num, den)
            elif nearest == "ceil":
                idx = _ceil_div(num, den)
            elif nearest == "round_prefer_ceil":  # floor(x + 1/2)
                idx = _floor_div(2 * num + den, 2 * den)
            else:  # round_prefer_floor: ceil(x - 1/2)
                idx = _ceil_div(2 * num - den, 2 * den)
            lo = hi = np.clip(idx, 0, inp - 1)
        elif mode == "cubic":  # four taps around floor(x), indices clamped to the input
            f = _floor_div(num, den)
            lo, hi = np.clip(f - 1, 0, inp - 1), np.clip(f + 2, 0, inp - 1)
        else:  # linear: x clamped to the input, then the taps floor(x) .. ceil(x)
            num = np.clip(num, 0, (inp - 1) * den)
            lo, hi = _floor_div(num, den), _ceil_div(num, den)
    return np.maximum(lo, 0), np.minimum(hi, inp - 1)


@lru_cache(maxsize=65536)
def window_extent(spec: tuple, factor: int) -> int:
    """The most input rows any tile reads when the output rows are cut into blocks of
    ``ceil(out / factor)`` (rows read: the union of the windows of the block's rows, counted
    exactly; the windows' ends never decrease, so each row adds what lies past its
    predecessor's window)."""
    if spec[0] == "pool" and int(spec[6]) > 1 and int(spec[3]) > 1:
        return _dilated_extent(spec, factor)
    lo, hi = _bounds(spec)
    out = len(lo)
    if out == 0:
        return 0
    b = cdiv(out, max(1, factor))
    first = np.maximum(hi - lo + 1, 0)  # a block's first row: its whole window
    prev = np.concatenate([[-1], hi[:-1]])
    new = np.maximum(hi - np.maximum(lo - 1, prev), 0)  # rows no earlier row of a block read
    cum = np.concatenate([[0], np.cumsum(new)])
    starts = np.arange(0, out, b)
    ends = np.minimum(starts + b, out)
    return int((first[starts] + cum[ends] - cum[starts + 1]).max())


def _dilated_extent(spec: tuple, factor: int) -> int:
    """:func:`window_extent` of a dilated pool, whose windows skip rows: the taps of each block
    counted one by one (rare; a block's taps are few)."""
    _, out, inp, k, s, p, dil = (int(v) if i else v for i, v in enumerate(spec))
    if out == 0:
        return 0
    taps = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * dil
    b = cdiv(out, max(1, factor))
    most = 0
    for start in range(0, out, b):
        t = taps[start:start + b].ravel()
        most = max(most, len(np.unique(t[(t >= 0) & (t < inp)])))
    return most


# ------------------------------------------------------------------------------ one tile's share
@dataclass(frozen=True)
class MapShare:
    n: int
    c: int
    oh: int
    ow: int
    ih: int
    iw: int
    partials: int = 1
    """Tiles that each hold a partial result of the same outputs (a global pool split over its
    window): the ``out_elements`` here are partials, reduced over ``partials`` tiles after."""

    @property
    def out_elements(self) -> int:
        return self.n * self.c * self.oh * self.ow

    @property
    def in_elements(self) -> int:
        return self.n * self.c * self.ih * self.iw


def _field(d: MapDims, resize: bool) -> tuple[bool, int, int]:
    """(split the input window?, rows, cols the rows / cols factors divide)."""
    glob = d.is_global and not resize
    return (glob, d.ih, d.iw) if glob else (glob, d.oh, d.ow)


def map_share(d: MapDims, split: Split, *, resize: bool = False, grain: int = 1) -> MapShare:
    """The busiest tile's share of ``d`` under ``split`` (channels handed out in whole groups of
    ``grain``). A flat ``elements`` factor (the planner's follows-input splits) is handed out to
    batch, channels, rows, columns in turn (:func:`geometry.flat_to_axes`)."""
    if resize and not d.resize:
        d = MapDims(d.n, d.c, d.ih, d.iw, d.oh, d.ow, resize=RESIZE_DEFAULT)
    resize = bool(d.resize)
    glob, rows, cols = _field(d, resize)
    f = flat_to_axes(split, [("batch", d.n), ("out_ch", d.c), ("rows", rows), ("cols", cols)])
    f = {a: v for a, v in f.items() if a not in NON_TILE_AXES}
    unknown = set(f) - set(MAP_AXES)
    if unknown:
        raise ValueError(f"split {split} has axes {sorted(unknown)} this op cannot use "
                         f"(axes: {', '.join(MAP_AXES)})")
    n, c = cdiv(d.n, f.get("batch", 1)), axis_share(d.c, f.get("out_ch", 1), grain)
    fr, fc = f.get("rows", 1), f.get("cols", 1)
    if glob:  # the window is split: each tile sums its rows x cols block of the input
        return MapShare(n=n, c=c, oh=1, ow=1, ih=cdiv(d.ih, fr), iw=cdiv(d.iw, fc),
                        partials=fr * fc)
    return MapShare(n=n, c=c, oh=cdiv(d.oh, fr), ow=cdiv(d.ow, fc),
                    ih=window_extent(d.window("rows"), fr), iw=window_extent(d.window("cols"), fc))


# --------------------------------------------------------------------------------- candidates
def map_rows(d: MapDims, caps: Sequence[int], *, resize: bool = False, grain: int = 1
             ) -> tuple[np.ndarray, ...]:
    """The balanced candidates of a pool / resize, one int64 array ``[k, 5]`` per cap (columns
    :data:`MAP_COLUMNS`: batch, out_ch, rows, cols, span; see the module docstring)."""
    _, rows, cols = _field(d, resize or bool(d.resize))
    return balanced_factor_rows(tuple(int(c) for c in caps), (
        efficient_factors(d.n), efficient_factors(d.c, grain), efficient_factors(rows),
        efficient_factors(cols)))


def map_split(row: Sequence[int]) -> Split:
    """The :class:`Split` of a :func:`map_rows` row (factors of 1 and a zero span dropped)."""
    return Split.of(batch=int(row[0]), out_ch=int(row[1]), rows=int(row[2]), cols=int(row[3]),
                    span=int(row[4]) or 1)


def map_candidates(d: MapDims, tiles: int, *, resize: bool = False, grain: int = 1
                   ) -> list[Split]:
    """The balanced candidates of a pool / resize given ``tiles`` tiles (products at most
    ``tiles``; a split over fewer records the ``span``)."""
    return [map_split(r) for r in map_rows(d, [tiles], resize=resize, grain=grain)[0]]


# ------------------------------------------------------------------------ many splits at once
@dataclass(frozen=True)
class MapShares:
    """:class:`MapShare` of many splits at once: every field an int64 array."""

    n: np.ndarray
    c: np.ndarray
    oh: np.ndarray
    ow: np.ndarray
    ih: np.ndarray
    iw: np.ndarray
    partials: np.ndarray

    @property
    def out_elements(self) -> np.ndarray:
        return self.n * self.c * self.oh * self.ow

    @property
    def in_elements(self) -> np.ndarray:
        return self.n * self.c * self.ih * self.iw

    @staticmethod
    def of(s: MapShare) -> MapShares:
        """One share as one-element arrays (the scalar price goes through the array code)."""
        def one(v: int) -> np.ndarray:
            return np.array([v], dtype=np.int64)

        return MapShares(n=one(s.n), c=one(s.c), oh=one(s.oh), ow=one(s.ow), ih=one(s.ih),
                         iw=one(s.iw), partials=one(s.partials))


def _extents(spec: tuple, factors: np.ndarray) -> np.ndarray:
    """:func:`window_extent` of every factor (few distinct ones: each computed once)."""
    uniq, inv = np.unique(factors, return_inverse=True)
    vals = np.array([window_extent(spec, int(f)) for f in uniq], dtype=np.int64)
    return vals[inv.reshape(-1)]


def map_shares(d: MapDims, rows: np.ndarray, *, resize: bool = False, grain: int = 1
               ) -> MapShares:
    """:func:`map_share` of every row of ``rows`` (``[k, >= 4]``: batch, out_ch, rows, cols
    factors, as from :func:`map_rows`)."""
    if resize and not d.resize:
        d = MapDims(d.n, d.c, d.ih, d.iw, d.oh, d.ow, resize=RESIZE_DEFAULT)
    glob, _, _ = _field(d, bool(d.resize))
    fb, fch, fr, fc = (rows[:, i].astype(np.int64) for i in range(4))
    n = -(-d.n // fb)
    c = -(-d.c // fch) if grain <= 1 else np.minimum(d.c, -(-cdiv(d.c, grain) // fch) * grain)
    if glob:
        one = np.ones(len(rows), dtype=np.int64)
        return MapShares(n=n, c=c, oh=one, ow=one, ih=-(-d.ih // fr), iw=-(-d.iw // fc),
                         partials=fr * fc)
    return MapShares(n=n, c=c, oh=-(-d.oh // fr), ow=-(-d.ow // fc),
                     ih=_extents(d.window("rows"), fr), iw=_extents(d.window("cols"), fc),
                     partials=np.ones(len(rows), dtype=np.int64))
