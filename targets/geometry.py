"""Op geometry shared by the cost models: what one tile's share of an op is, for a given split.

Both chips divide an op the same way -- a factor per axis (:class:`tilec.costmodel.Split`) -- and
differ only in what the share costs. So the shapes live here: a convolution (or a matmul seen as a
1x1 convolution) becomes :class:`ConvDims`; a split of it becomes :class:`ConvShare`, the per-tile
extents (rounded *up*: the busiest tile is the one that sets the step's memory and time) with the
input halo a spatial split needs. Candidate splits are enumerated here too.

Two enumerations exist, because the two chips' compilers differ:

* **balanced** (:func:`balanced_rows`, the IPU): what PopLibs' convolution planner searches -- an
  independent factor per axis (batch, conv groups, output- and input-channel groups in grain
  units, rows, columns) whose product is *at most* the tiles the op is given, not exactly one of
  a few tile counts. Per axis only the *efficient* factors are kept (the smallest factor for each
  distinct busiest-tile extent: splitting 448 rows 300 ways leaves 2 rows on the busiest tile,
  exactly as 224 ways does), and of their combinations only the *maximal* ones (no axis can take
  its next efficient factor without exceeding the tiles): a non-maximal one leaves tiles idle that
  could take work off the busiest tile. The busiest tile's share is the product of the per-axis
  ceilings, which one tile really holds, so it is priced exactly.
* **exact-count** (:func:`conv_factor_rows`, NorthPole's convolutions): factorisations whose
  product is exactly a tile count that forms a rectangle of the mesh, the spatial factor split
  into every undominated rows x cols pair (:func:`spatial_pairs`).

Pools and resizes (``targets/spatial.py``) use the balanced search on both chips, through the
shared :func:`balanced_factor_rows`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tilec.costmodel import NON_TILE_AXES, Split
from tilec.opinfo import OpInfo


def cdiv(a: int, b: int) -> int:
    """Ceiling division for non-negative ints."""
    return -(-a // b)


def round_up(a: int, grain: int) -> int:
    return cdiv(a, grain) * grain


def nbytes(elements: int, bits: int) -> int:
    """Bytes of ``elements`` values of ``bits`` each (sub-byte widths pack)."""
    return cdiv(elements * bits, 8)


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


@lru_cache(maxsize=4096)
def divisors(n: int) -> tuple[int, ...]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


@lru_cache(maxsize=65536)
def efficient_factors(extent: int, grain: int = 1, limit: int = 0) -> tuple[int, ...]:
    """Split factors of an axis of ``extent`` elements held in grains of ``grain``: for each
    distinct busiest-tile extent (``ceil(ceil(extent / grain) / f) * grain``), the smallest factor
    giving it, ascending; at most ``limit`` when ``limit`` > 0. O(sqrt(units)) factors."""
    units = max(1, cdiv(extent, grain))
    out = []
    f = 1
    while f <= units and (limit <= 0 or f <= limit):
        out.append(f)
        per = cdiv(units, f)
        if per == 1:
            break
        f = cdiv(units, per - 1)
    return tuple(out)


def axis_share(extent: int, factor: int, grain: int = 1) -> int:
    """The busiest tile's extent of an axis split ``factor`` ways in grains of ``grain`` (PopLibs
    hands channels out in whole groups: a tile holds ``ceil(groups / factor)`` of them)."""
    if grain <= 1:
        return cdiv(extent, factor)
    return min(extent, cdiv(cdiv(extent, grain), factor) * grain)


def tile_counts(tiles: int, grid: tuple[int, int], rect: bool, limit: int) -> list[int]:
    """The caps an op is given: the most tiles its work allows (``limit``: no tile gets fewer
    than ``min_elements_per_tile``; the whole chip when the op is large enough), and below it,
    for the planner's benefit (running small ops side by side), the powers of two and the
    chip's half and quarter. These are *upper limits* of a balanced split's product, not
    products it must hit; a flat split takes exactly its cap. The op's own limit is a cap
    itself -- rounding it down onto the list left an op of 1000 tiles' work on 512. On a
    mesh (``rect``) only counts that form a rectangle inside the grid are kept (the limit
    becomes the largest rectangle within it)."""
    top = min(tiles, max(1, limit))
    while rect and top > 1 and not rect_shape(top, grid):  # the largest rectangle within it
        top -= 1
    counts = {1 << k for k in range(tiles.bit_length()) if (1 << k) <= top}
    counts |= {tiles // d for d in (1, 2, 4) if tiles % d == 0 and tiles // d <= top}
    counts.add(top)
    out = [t for t in sorted(counts) if not rect or rect_shape(t, grid)]
    return out or [1]


def rect_shape(t: int, grid: tuple[int, int]) -> tuple[int, int] | None:
    """The squarest (h, w) with h * w == t that fits the grid, or None."""
    rows, cols = grid
    best = None
    for h in divisors(t):
        w = t // h
        if h <= rows and w <= cols and (best is None or abs(h - w) < abs(best[0] - best[1])):
            best = (h, w)
    return best


def freeze(value: Any) -> Any:
    """A hashable copy of plain data (for cache keys)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def without_fields(spec: dict[str, Any], drop: dict[str, tuple[str, ...] | None]) -> dict:
    """``spec`` (a chip description's sections) without the fields ``drop`` names: per section,
    the keys to leave out, or None for the whole section. For cache keys and comparisons that
    must ignore some fields."""
    out = {}
    for section, value in spec.items():
        skip = drop.get(section, ())
        if skip is None:
            continue
        out[section] = ({k: v for k, v in value.items() if k not in skip}
                        if isinstance(value, dict) else value)
    return out


def signature(op: OpInfo) -> tuple:
    """Everything a cost depends on, hashable; identical convs share one cache entry."""
    return (op.kind, op.op_type, op.activation, op.in_shapes, op.out_shapes,
            tuple((w.shape, w.bits) for w in op.weights), op.weight_bits, op.act_bits,
            op.macs, freeze(dict(op.attrs)))


def _ints(value: Any, n: int, default: int) -> list[int]:
    if value is None:
        return [default] * n
    vals = [int(v) for v in value]
    return (vals + [default] * n)[:n] if len(vals) < n else vals[:n]


def _rows_cols(shape: Sequence[int]) -> tuple[int, int]:
    """Spatial extent as (rows, cols): dim 2 is rows; the rest collapse into cols."""
    sp = list(shape[2:])
    if not sp:
        return 1, 1
    return int(sp[0]), int(numel(sp[1:]))


# ------------------------------------------------------------------------ convolution / matmul
@dataclass(frozen=True)
class ConvDims:
    """A convolution's extents (a matmul is a 1x1 convolution: rows = M, cin = K, cout = N)."""

    n: int
    groups: int
    cin_g: int  # input channels per group
    cout_g: int  # output channels per group
    ih: int
    iw: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    transpose: bool = False
    kernel_bits: int = 16
    kernel_elements: int = 0  # elements of the kernel weight (0: the kernel is an activation input)
    other_weight_bytes: int = 0  # bias and any other constants, scaled with output channels
    act_kernel_bits: int = 0  # bits of a kernel that is an activation input (batched matmul)
    kernel_batched: bool = False  # an activation kernel with its own slice per batch element
    macs: int = 0
    weight_bytes: int = 0  # all of the op's weights at their storage widths

    @property
    def k(self) -> int:
        return self.kh * self.kw


def conv_dims(op: OpInfo) -> ConvDims:
    """Extents of a Conv / ConvTranspose op (fused activations included)."""
    x = op.in_shapes[0]
    y = op.out_shapes[0]
    group = int(op.attrs.get("group", 1) or 1)
    transpose = op.op_type == "ConvTranspose"
    if op.weights:
        w = op.weights[0]
        kshape = w.shape
        kernel_bits, kernel_elements = w.bits, numel(w.shape)
        other = sum(nbytes(numel(x.shape), x.bits) for x in op.weights[1:])
        act_kbits = 0
    else:  # the kernel arrives as an activation input
        kshape = op.in_shapes[1] if len(op.in_shapes) > 1 else (y[1], x[1] // group, 1, 1)
        kernel_bits, kernel_elements, other, act_kbits = op.act_bits, 0, 0, op.act_bits
    nsp = max(len(x) - 2, 1)
    kernel = _ints(op.attrs.get("kernel_shape") or list(kshape[2:]), nsp, 1)
    strides = _ints(op.attrs.get("strides"), nsp, 1)
    dil = _ints(op.attrs.get("dilations"), nsp, 1)
    ih, iw = _rows_cols(x)
    oh, ow = _rows_cols(y)
    kh, kw = kernel[0], numel(kernel[1:])
    sh, sw = strides[0], (strides[1] if len(strides) > 1 else 1)
    dh, dw = dil[0], (dil[1] if len(dil) > 1 else 1)
    cin, cout = int(x[1]), int(y[1])
    return ConvDims(
        n=int(x[0]), groups=group, cin_g=max(1, cin // group), cout_g=max(1, cout // group),
        ih=ih, iw=iw, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
        transpose=transpose, kernel_bits=kernel_bits, kernel_elements=kernel_elements,
        other_weight_bytes=other, act_kernel_bits=act_kbits, macs=op.macs,
        weight_bytes=weight_bytes(op),
    )


def weight_bytes(op: OpInfo) -> int:
    """All of the op's weights at their storage widths (math.prod: numpy is slow per call)."""
    return sum(nbytes(numel(w.shape), w.bits) for w in op.weights)


def matmul_dims(op: OpInfo) -> ConvDims:
    """A Gemm / MatMul as a 1x1 convolution: batch dims -> n, M -> rows, K -> cin, N -> cout."""
    y = op.out_shapes[0]
    a = op.in_shapes[0]
    m, ncols = (int(y[-2]) if len(y) >= 2 else 1), int(y[-1])
    trans_a = op.op_type == "Gemm" and bool(op.attrs.get("transA", 0))
    k = int(a[0] if trans_a else a[-1])
    batch = numel(y[:-2])
    if op.weights:
        w = op.weights[0]
        kernel_bits, kernel_elements = w.bits, numel(w.shape)
        other, act_kbits = sum(nbytes(numel(x.shape), x.bits) for x in op.weights[1:]), 0
    else:
        kernel_bits, kernel_elements, other, act_kbits = op.act_bits, 0, 0, op.act_bits
    b = op.in_shapes[1] if len(op.in_shapes) > 1 else ()
    batched = not op.weights and len(b) > 2 and numel(b[:-2]) > 1
    return ConvDims(
        n=batch, groups=1, cin_g=k, cout_g=ncols, ih=m, iw=1, oh=m, ow=1, kh=1, kw=1, sh=1, sw=1,
        dh=1, dw=1, kernel_bits=kernel_bits, kernel_elements=kernel_elements,
        other_weight_bytes=other, act_kernel_bits=act_kbits, kernel_batched=batched,
        macs=op.macs or batch * m * ncols * k, weight_bytes=weight_bytes(op),
    )


@dataclass(frozen=True)
class ConvShare:
    """One tile's share of a convolution under a split (extents rounded up)."""

    n: int
    g: int
    co: int
    ci: int
    oh: int
    ow: int
    ih: int  # input rows incl. halo
    iw: int
    fi: int  # input-channel split factor (partial sums to reduce when > 1)
    spatial: int  # batch x rows x cols factor: tiles that need the same weight slice
    tiles: int
    work_fraction: float  # this tile's share of the op's MACs (unpadded)

    @property
    def out_slice(self) -> int:
        """Output elements this tile computes (partial sums of them when fi > 1)."""
        return self.n * self.g * self.co * self.oh * self.ow

    @property
    def out_elements(self) -> int:
        """Output elements this tile holds when the op is done (after any reduction)."""
        return cdiv(self.out_slice, self.fi)

    @property
    def in_elements(self) -> int:
        return self.n * self.g * self.ci * self.ih * self.iw

    @property
    def kernel_elements(self) -> int:
        return self.g * self.co * self.ci


CONV_AXES = ("batch", "groups", "out_ch", "in_ch", "rows", "cols")


def conv_share(d: ConvDims, split: Split, in_grain: int = 1, out_grain: int = 1) -> ConvShare:
    """The busiest tile's share of ``d`` under ``split`` (channels handed out in whole grains)."""
    f = {a: v for a, v in split.as_dict().items() if a not in NON_TILE_AXES}
    unknown = set(f) - set(CONV_AXES)
    if unknown:
        raise ValueError(f"split {split} has axes {sorted(unknown)} a convolution cannot use "
                         f"(axes: {', '.join(CONV_AXES)})")
    fb, fg, fo, fi = f.get("batch", 1), f.get("groups", 1), f.get("out_ch", 1), f.get("in_ch", 1)
    fr, fc = f.get("rows", 1), f.get("cols", 1)
    n, g = cdiv(d.n, fb), cdiv(d.groups, fg)
    co, ci = axis_share(d.cout_g, fo, out_grain), axis_share(d.cin_g, fi, in_grain)
    oh, ow = cdiv(d.oh, fr), cdiv(d.ow, fc)
    if d.transpose:  # each output row needs ~1/stride input rows plus the kernel's reach
        ih = min(d.ih, cdiv(oh, d.sh) + cdiv((d.kh - 1) * d.dh + 1, d.sh))
        iw = min(d.iw, cdiv(ow, d.sw) + cdiv((d.kw - 1) * d.dw + 1, d.sw))
    else:
        ih = min(d.ih, (oh - 1) * d.sh + (d.kh - 1) * d.dh + 1)
        iw = min(d.iw, (ow - 1) * d.sw + (d.kw - 1) * d.dw + 1)
    total = d.n * d.groups * d.cout_g * d.cin_g * d.oh * d.ow
    frac = (n * g * co * ci * oh * ow) / total if total else 0.0
    return ConvShare(n=n, g=g, co=co, ci=ci, oh=oh, ow=ow, ih=ih, iw=iw, fi=fi,
                     spatial=fb * fr * fc, tiles=split.work_tiles,
                     work_fraction=min(1.0, frac))


def conv_candidates(d: ConvDims, tiles: int, *, in_grain: int, out_grain: int,
                    max_in_split: int) -> Iterator[Split]:
    """Splits of ``d`` over exactly ``tiles`` tiles, pruned the way PopLibs' planner prunes.

    Channel axes are not split below their grain; the spatial factor is split into every
    undominated (rows, cols) pair (:func:`spatial_pairs`); input channels are split at most
    ``max_in_split`` ways (each such split costs a reduction).
    """
    for row in conv_factor_rows(d, tiles, in_grain=in_grain, out_grain=out_grain,
                                max_in_split=max_in_split):
        yield conv_split(row)


def conv_factor_rows(d: ConvDims, tiles: int, *, in_grain: int, out_grain: int,
                     max_in_split: int) -> tuple[tuple[int, ...], ...]:
    """The factors of :func:`conv_candidates`, one ``(batch, groups, out_ch, in_ch, rows, cols)``
    row per split, in the same order -- plain ints, so the cost models can price every candidate
    at once with numpy and build :class:`Split` objects only for the few they keep."""
    return _conv_factor_rows(tiles, d.n, d.groups, d.cout_g, d.cin_g, d.oh, d.ow,
                             in_grain, out_grain, max_in_split)


@lru_cache(maxsize=65536)
def _conv_factor_rows(tiles: int, n: int, groups: int, cout_g: int, cin_g: int, oh: int,
                      ow: int, in_grain: int, out_grain: int, max_in_split: int
                      ) -> tuple[tuple[int, ...], ...]:
    max_fo = max(1, cout_g // out_grain) if cout_g >= out_grain else 1
    max_fi = min(max_in_split, max(1, cin_g // in_grain) if cin_g >= in_grain else 1)
    rows: list[tuple[int, ...]] = []
    for fb, fg, fo, fi, s in _channel_factors(tiles, n, groups, max_fo, max_fi):
        for fr, fc in spatial_pairs(s, oh, ow):
            rows.append((fb, fg, fo, fi, fr, fc))
    return tuple(rows)


@lru_cache(maxsize=65536)
def _channel_factors(tiles: int, n: int, groups: int, max_fo: int, max_fi: int
                     ) -> tuple[tuple[int, int, int, int, int], ...]:
    """(batch, groups, out_ch, in_ch, spatial) factors of ``tiles`` in :func:`conv_candidates`'
    order (independent of the spatial extent, so shared by every image size)."""
    out = []
    for fb in divisors(tiles):
        if fb > n:
            continue
        r1 = tiles // fb
        for fg in divisors(r1):
            if fg > groups:
                continue
            r2 = r1 // fg
            for fo in divisors(r2):
                if fo > max_fo:
                    continue
                r3 = r2 // fo
                for fi in divisors(r3):
                    if fi > max_fi:
                        continue
                    out.append((fb, fg, fo, fi, r3 // fi))
    return tuple(out)


_CONV_ROW_AXES = ("batch", "groups", "out_ch", "in_ch", "rows", "cols")
_CONV_ROW_ORDER = sorted(range(6), key=lambda i: _CONV_ROW_AXES[i])  # Split keeps axes sorted


SPLIT_COLUMNS = ("batch", "groups", "out_ch", "in_ch", "rows", "cols", "span", "serial_out",
                 "serial_in")
"""Columns of a candidate row as the IPU cost model prices it: the balanced factors, the span
(0: none) and the serial factors over output and input channels (1: none)."""
_SPLIT_ORDER = sorted(range(len(SPLIT_COLUMNS)), key=lambda i: SPLIT_COLUMNS[i])


def conv_split(row: Sequence[int]) -> Split:
    """``Split.of(batch=row[0], groups=row[1], out_ch=row[2], in_ch=row[3], rows=row[4],
    cols=row[5][, span=row[6], serial_out=row[7], serial_in=row[8]])`` without the argument
    checks (the factors come from :func:`conv_factor_rows` or the IPU's candidate rows)."""
    if len(row) > 6:
        n = len(row)
        return Split(tuple((SPLIT_COLUMNS[i], int(row[i])) for i in _SPLIT_ORDER
                           if i < n and row[i] > 1))
    return Split(tuple((_CONV_ROW_AXES[i], int(row[i])) for i in _CONV_ROW_ORDER if row[i] > 1))


@dataclass(frozen=True)
class ConvShares:
    """:class:`ConvShare` of many splits at once: every field is an int64 array (``work_fraction``
    float64), element ``j`` equal to ``conv_share(d, split_j)``'s field."""

    n: np.ndarray
    g: np.ndarray
    co: np.ndarray
    ci: np.ndarray
    oh: np.ndarray
    ow: np.ndarray
    ih: np.ndarray
    iw: np.ndarray
    fi: np.ndarray
    spatial: np.ndarray
    tiles: np.ndarray
    work_fraction: np.ndarray

    @property
    def out_slice(self) -> np.ndarray:
        return self.n * self.g * self.co * self.oh * self.ow

    @property
    def out_elements(self) -> np.ndarray:
        return -(-self.out_slice // self.fi)

    @property
    def in_elements(self) -> np.ndarray:
        return self.n * self.g * self.ci * self.ih * self.iw

    @property
    def kernel_elements(self) -> np.ndarray:
        return self.g * self.co * self.ci


EXACT_FLOAT = 2 ** 53  # integers below this convert to float64 exactly (same as Python's int/int)


def conv_shares(d: ConvDims, rows: np.ndarray, in_grain: int = 1, out_grain: int = 1, *,
                exact: bool = True) -> ConvShares | None:
    """:func:`conv_share` for every row of ``rows`` (``[k, 6]`` factors as from
    :func:`conv_factor_rows`) with the same integer and float arithmetic, element by element.

    Returns None when an intermediate could leave the range where int64 and float64 reproduce
    Python's exact integers and correctly rounded ``int / int`` (the caller then prices the
    splits one by one)."""
    total = d.n * d.groups * d.cout_g * d.cin_g * d.oh * d.ow
    big = max(total, d.macs, d.weight_bytes, d.kernel_elements, d.other_weight_bytes * d.groups
              * d.cout_g, d.n * d.groups * d.cin_g * d.ih * d.iw,
              d.n * d.groups * d.cout_g * d.cin_g * d.kh * d.kw, 1)
    if exact and big * 256 >= EXACT_FLOAT:
        return None  # (``exact=False``: object arrays of Python ints, no limit)
    fb, fg, fo, fi, fr, fc = (rows[:, i] for i in range(6))
    n, g = -(-d.n // fb), -(-d.groups // fg)
    co, ci = _axis_shares(d.cout_g, fo, out_grain), _axis_shares(d.cin_g, fi, in_grain)
    oh, ow = -(-d.oh // fr), -(-d.ow // fc)
    if d.transpose:
        ih = np.minimum(d.ih, -(-oh // d.sh) + cdiv((d.kh - 1) * d.dh + 1, d.sh))
        iw = np.minimum(d.iw, -(-ow // d.sw) + cdiv((d.kw - 1) * d.dw + 1, d.sw))
    else:
        ih = np.minimum(d.ih, (oh - 1) * d.sh + (d.kh - 1) * d.dh + 1)
        iw = np.minimum(d.iw, (ow - 1) * d.sw + (d.kw - 1) * d.dw + 1)
    work = n * g * co * ci * oh * ow
    frac = np.minimum(1.0, work / total) if total else np.zeros(len(rows))
    return ConvShares(n=n, g=g, co=co, ci=ci, oh=oh, ow=ow, ih=ih, iw=iw, fi=fi,
                      spatial=fb * fr * fc, tiles=fb * fg * fo * fi * fr * fc,
                      work_fraction=frac)


def _axis_shares(extent: int, factors: np.ndarray, grain: int) -> np.ndarray:
    """:func:`axis_share` of every factor at once."""
    if grain <= 1:
        return -(-extent // factors)
    return np.minimum(extent, -(-cdiv(extent, grain) // factors) * grain)


BALANCED_COLUMNS = 7
"""Columns of a :func:`balanced_rows` row: batch, groups, out_ch, in_ch, rows, cols, span."""



def balanced_rows(d: ConvDims, caps: Sequence[int], *, in_grain: int, out_grain: int,
                  max_in_split: int) -> tuple[np.ndarray, ...]:
    """The balanced candidates of ``d`` (see the module docstring), one int64 array
    ``[k, 7]`` per cap: the factors ``(batch, groups, out_ch, in_ch, rows, cols)`` and the span
    (the cap, when the factors multiply to fewer tiles -- the op occupies all of them -- else
    0). A row is in cap ``c``'s array when its factors multiply to at most ``c`` and no axis can
    take its next efficient factor within ``c``; rows are in lexicographic factor order."""
    return _balanced_rows(tuple(int(c) for c in caps), d.n, d.groups, d.cout_g, d.cin_g, d.oh,
                          d.ow, in_grain, out_grain, max_in_split)


_BALANCED: OrderedDict[tuple, tuple[np.ndarray, ...]] = OrderedDict()
_BALANCED_BYTES = [0]
BALANCED_CACHE_BYTES = 32 * 2**20
"""Bytes of balanced rows kept (least recently used dropped) -- modelling choice of the
implementation: rows multiply with the batch (every batch split), and a cache of 16,384 entries
held ~0.3 GB at batch 16 after a what-if search; the cost model caches what it derives from them
(targets/ipu.py ``_ROWS``), so these are asked again only for a new op shape or chip."""


def _balanced_rows(caps: tuple[int, ...], n: int, groups: int, cout_g: int, cin_g: int,
                   oh: int, ow: int, in_grain: int, out_grain: int, max_in_split: int
                   ) -> tuple[np.ndarray, ...]:
    """The balanced rows of a convolution (:func:`balanced_factor_rows` over its six axes),
    remembered within :data:`BALANCED_CACHE_BYTES`."""
    key = (caps, n, groups, cout_g, cin_g, oh, ow, in_grain, out_grain, max_in_split)
    hit = _BALANCED.get(key)
    if hit is not None:
        _BALANCED.move_to_end(key)
        return hit
    out = balanced_factor_rows(caps, (
        efficient_factors(n), efficient_factors(groups), efficient_factors(cout_g, out_grain),
        efficient_factors(cin_g, in_grain, max_in_split), efficient_factors(oh),
        efficient_factors(ow)))
    for a in out:
        a.flags.writeable = False  # shared by every caller
    _BALANCED[key] = out
    _BALANCED_BYTES[0] += sum(a.nbytes for a in out)
    while len(_BALANCED) > 1 and _BALANCED_BYTES[0] > BALANCED_CACHE_BYTES:
        _, dropped = _BALANCED.popitem(last=False)
        _BALANCED_BYTES[0] -= sum(a.nbytes for a in dropped)
    return out


def balanced_factor_rows(caps: tuple[int, ...], axes: tuple[tuple[int, ...], ...]
                         ) -> tuple[np.ndarray, ...]:
    """The balanced combinations of independent per-axis factors (``axes``: each axis's
    efficient factors, ascending, starting at 1), one int64 array ``[k, len(axes) + 1]`` per cap:
    the factors, then the span (the cap when they multiply to fewer tiles, else 0). A row is in
    cap ``c``'s array when its factors multiply to at most ``c`` and no axis can take its next
    efficient factor within ``c``; rows in lexicographic factor order. Shared by convolutions
    (:func:`balanced_rows`, which caches them within a byte budget) and pools / resizes
    (``targets/spatial.py``, whose rows are few). Not cached here: rows grow with the batch."""
    width = len(axes) + 1
    top = max(caps) if caps else 1
    combos = np.ones((1, 0), dtype=np.int64)
    prods = np.ones(1, dtype=np.int64)
    for fs in axes:  # the cartesian product, pruned to products within the largest cap
        f = np.asarray(fs, dtype=np.int64)
        p = prods[:, None] * f[None, :]
        i, j = np.nonzero(p <= top)
        combos = np.concatenate([combos[i], f[j][:, None]], axis=1)
        prods = p[i, j]
    # the fewest tiles any single-axis step up would need: maximal under cap c iff
    # prods <= c < grow
    big = np.iinfo(np.int64).max // 4
    grow = np.full(len(prods), big, dtype=np.int64)
    for a, fs in enumerate(axes):
        f = np.asarray(fs, dtype=np.int64)
        nxt = np.append(f[1:], big)
        step = nxt[np.searchsorted(f, combos[:, a])]
        up = np.where(step >= big, big, prods // combos[:, a] * np.minimum(step, big // top))
        grow = np.minimum(grow, up)
    out = []
    for c in caps:
        keep = (prods <= c) & (grow > c)
        rows = combos[keep]
        span = np.where(prods[keep] < c, c, 0)[:, None]
        out.append(np.concatenate([rows, span], axis=1) if len(rows)
                   else np.zeros((0, width), dtype=np.int64))
    return tuple(out)


@lru_cache(maxsize=65536)
def spatial_pairs(s: int, rows: int, cols: int) -> tuple[tuple[int, int], ...]:
    """Every way to split a spatial factor ``s`` exactly into (rows, cols) factors that is not
    dominated: no other pair leaves the busiest tile at most as many rows *and* columns
    (``ceil(rows / fr)``, ``ceil(cols / fc)``). Ascending in the rows factor; empty if ``s``
    cannot be split within the extents. (The exact-count enumeration's spatial options -- no
    preference for rows: 448 x 448 outputs over 1472 tiles offer 46 x 32, 2 x 112 per tile
    being worse than 10 x 14.)"""
    opts = [(fr, s // fr) for fr in divisors(s) if fr <= rows and s // fr <= cols]
    ext = [(cdiv(rows, fr), cdiv(cols, fc)) for fr, fc in opts]
    out, seen = [], set()
    for (fr, fc), e in zip(opts, ext, strict=True):
        dominated = any(o != e and o[0] <= e[0] and o[1] <= e[1] for o in ext)
        if not dominated and e not in seen:  # equal extents: the fewest row splits stays
            seen.add(e)
            out.append((fr, fc))
    return tuple(out)


def flat_to_axes(split: Split, axes: list[tuple[str, int]]) -> dict[str, int]:
    """Interpret a flat ``elements`` split on a structured op: hand its factor out to ``axes``
    in order (outermost first), each taking the largest divisor it can hold. Other factors pass
    through unchanged. Used when the planner costs a follows-input op on its producer's split."""
    f = split.as_dict()
    e = f.pop("elements", 1)
    for axis, size in axes:
        if e == 1:
            break
        have = f.get(axis, 1)
        room = max(1, size // have)
        take = max(d for d in divisors(e) if d <= room)
        if take > 1:
            f[axis] = have * take
            e //= take
    if e > 1:  # cannot be absorbed exactly: the last axis takes the rest (some tiles idle)
        last = axes[-1][0]
        f[last] = f.get(last, 1) * e
    return f
