"""Where an op may go: tile blocks and the positions a footprint may take.

The chip's tiles are numbered 0..T-1 row-major in the target's grid. Two placement geometries:

``range``  an op occupies a contiguous range of tiles (the IPU: Poplar maps a compute set onto a
           tile range);
``rect``   an op occupies an ``h x w`` rectangle of the mesh (NorthPole's 16 x 16 cores), stored as
           ``h`` ranges of width ``w``.

Tractability choice: on big chips the placer does not consider every start tile. The tiles are cut
into *blocks* (equal ranges on a line, equal sub-rectangles on a mesh) and a footprint starts at a
block boundary. The placer accounts memory per block, charging an item to every block it touches
(conservative: a block's charge bounds every tile in it), so a plan feasible at block level is
feasible tile by tile. The price is the unused remainder of a partly covered block and the starts
not offered. On small chips (at most ``exact_limit`` tiles) blocks are single tiles and every start
is offered: the block model *is* the exact per-tile model, which is what lets CP-SAT prove
infeasibility there.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt


@dataclass(frozen=True)
class Position:
    """One concrete footprint: its tile ranges and the blocks it touches."""

    ranges: tuple[tuple[int, int], ...]
    blocks: tuple[int, ...]
    origin: tuple[int, ...]  # (start,) on a line, (row, col) on a mesh
    shape: tuple[int, int] | None  # (h, w) on a mesh

    @property
    def tiles(self) -> int:
        return sum(b - a for a, b in self.ranges)


def _evenly(items: list, limit: int) -> list:
    """At most ``limit`` items, evenly spaced, always keeping the first and last."""
    if limit <= 0 or len(items) <= limit:
        return items
    if limit == 1:
        return items[:1]
    idx = sorted({round(k * (len(items) - 1) / (limit - 1)) for k in range(limit)})
    return [items[i] for i in idx]


class Geometry:
    """Blocks of a target and the positions offered for a footprint."""

    def __init__(self, tiles: int, grid: tuple[int, int], placement: str, *,
                 max_blocks: int = 32, exact_limit: int = 64, max_positions: int = 6,
                 max_shapes: int = 3) -> None:
        if placement not in ("range", "rect"):
            raise ValueError(f"unknown placement geometry {placement!r}")
        self.tiles = int(tiles)
        self.grid = (int(grid[0]), int(grid[1]))
        self.placement = placement
        self.exact = self.tiles <= exact_limit
        self.max_positions = 0 if self.exact else max_positions
        self.max_shapes = 0 if self.exact else max_shapes
        self._cache: dict[tuple, tuple[Position, ...]] = {}
        if placement == "range":
            g = 1 if self.exact else _block_size(self.tiles, max_blocks)
            self.block_size = (1, g)
            bounds = [*list(range(0, self.tiles, g)), self.tiles]
            self.bounds = bounds
            self.block_ranges: list[tuple[tuple[int, int], ...]] = [
                ((bounds[k], bounds[k + 1]),) for k in range(len(bounds) - 1)]
        else:
            rows, cols = self.grid
            if rows * cols != self.tiles:
                raise ValueError(f"grid {rows}x{cols} does not hold {self.tiles} tiles")
            if self.exact:
                bh = bw = 1
            else:
                side = max(1, isqrt(max_blocks))
                bh, bw = -(-rows // side), -(-cols // side)
            self.block_size = (bh, bw)
            self.brows, self.bcols = -(-rows // bh), -(-cols // bw)
            self.block_ranges = []
            for br in range(self.brows):
                for bc in range(self.bcols):
                    c0, c1 = bc * bw, min(cols, (bc + 1) * bw)
                    self.block_ranges.append(tuple(
                        (r * cols + c0, r * cols + c1)
                        for r in range(br * bh, min(rows, (br + 1) * bh))))
        self.n_blocks = len(self.block_ranges)
        self.block_tiles = [sum(b - a for a, b in rs) for rs in self.block_ranges]

    def describe(self) -> str:
        if self.exact:
            return f"exact: single-tile blocks, all {self.tiles} tiles, every start"
        if self.placement == "range":
            return (f"{self.n_blocks} blocks of {self.block_size[1]} tiles, "
                    f"up to {self.max_positions} starts per footprint")
        return (f"{self.brows}x{self.bcols} blocks of {self.block_size[0]}x{self.block_size[1]} "
                f"tiles, up to {self.max_positions} origins per rectangle")

    # ------------------------------------------------------------------------------ positions
    def positions(self, tiles: int, shapes: tuple[tuple[int, int], ...] = ()
                  ) -> tuple[Position, ...]:
        """Positions offered for a footprint of ``tiles`` tiles (these rectangles on a mesh)."""
        key = (tiles, shapes)
        if key not in self._cache:
            if self.placement == "range":
                self._cache[key] = self._range_positions(tiles)
            else:
                self._cache[key] = self._rect_positions(shapes)
        return self._cache[key]

    def at(self, origin: tuple[int, ...], tiles: int, shape: tuple[int, int] | None = None
           ) -> Position:
        """The position of a footprint at an arbitrary tile (``(start,)``) or mesh origin
        (``(row, col)``): used by the tile-exact greedy, which is not limited to block starts."""
        if self.placement == "range":
            a = int(origin[0])
            b = a + int(tiles)
            k0 = max(0, _bisect_right(self.bounds, a) - 1)
            k1 = max(k0, _bisect_right(self.bounds, b - 1) - 1)
            return Position(ranges=((a, b),), blocks=tuple(range(k0, k1 + 1)), origin=(a,),
                            shape=None)
        assert shape is not None
        return self._rect(int(origin[0]), int(origin[1]), *shape)

    def _rect(self, r0: int, c0: int, h: int, w: int) -> Position:
        """The ``h`` x ``w`` rectangle at mesh origin ``(r0, c0)``: its tile ranges (one per row,
        or one in all when it spans whole rows) and the blocks it touches."""
        cols = self.grid[1]
        bh, bw = self.block_size
        if w == cols:
            ranges: tuple[tuple[int, int], ...] = ((r0 * cols, (r0 + h) * cols),)
        else:
            ranges = tuple((r * cols + c0, r * cols + c0 + w) for r in range(r0, r0 + h))
        blocks = tuple(br * self.bcols + bc
                       for br in range(r0 // bh, (r0 + h - 1) // bh + 1)
                       for bc in range(c0 // bw, (c0 + w - 1) // bw + 1))
        return Position(ranges=ranges, blocks=blocks, origin=(r0, c0), shape=(h, w))

    def _range_positions(self, n: int) -> tuple[Position, ...]:
        if n > self.tiles or n < 1:
            return ()
        starts = [k for k, b in enumerate(self.bounds[:-1]) if b + n <= self.tiles]
        if not self.exact:
            m = max(1, -(-n // self.block_size[1]))
            stride = max(1, m // 2)
            chosen = [k for k in starts if k % stride == 0]
            if starts and starts[-1] not in chosen:
                chosen.append(starts[-1])
            starts = _evenly(chosen, self.max_positions)
        out = []
        for k in starts:
            a = self.bounds[k]
            b = a + n
            last = k
            while self.bounds[last + 1] < b:
                last += 1
            out.append(Position(ranges=((a, b),), blocks=tuple(range(k, last + 1)),
                                origin=(a,), shape=None))
        return tuple(out)

    def _rect_positions(self, shapes: tuple[tuple[int, int], ...]) -> tuple[Position, ...]:
        rows, cols = self.grid
        bh, bw = self.block_size
        use = shapes if not self.max_shapes else shapes[: self.max_shapes]
        out: list[Position] = []
        for h, w in use:
            if h > rows or w > cols:
                continue
            r_opts = list(range(0, rows - h + 1, bh))
            c_opts = list(range(0, cols - w + 1, bw))
            if not self.exact:
                mh, mw = max(1, -(-h // bh)), max(1, -(-w // bw))
                r_opts = [r for r in r_opts if (r // bh) % max(1, mh // 2) == 0]
                c_opts = [c for c in c_opts if (c // bw) % max(1, mw // 2) == 0]
            origins = [(r, c) for r in r_opts for c in c_opts]
            if not self.exact:
                per_shape = max(1, self.max_positions // max(1, len(use)))
                origins = _evenly(origins, per_shape)
            out.extend(self._rect(r0, c0, h, w) for r0, c0 in origins)
        return tuple(out)


def _bisect_right(xs: list[int], x: int) -> int:
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < xs[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _block_size(tiles: int, max_blocks: int) -> int:
    """The smallest block size giving at most ``max_blocks`` blocks, a divisor of ``tiles`` if one
    is within a factor 1.5 (equal blocks keep the per-block accounting uniform)."""
    g0 = -(-tiles // max_blocks)
    for g in range(g0, int(g0 * 1.5) + 1):
        if tiles % g == 0:
            return g
    return g0
