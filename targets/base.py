"""What the two cost models share: caching, candidate enumeration and Pareto selection.

A subclass says what one split of one op costs (:meth:`BaseCostModel._cost`) and which splits are
worth trying at a given tile count (:meth:`BaseCostModel._candidates`). This class turns that into
the contract's :meth:`splits`: for each candidate tile count (powers of two, the full chip and its
half and quarter), every pruned factorisation is costed and only the Pareto-best few by
(peak bytes per tile, always-live bytes per tile, cycles) are kept. Results are cached by op
signature, because a network repeats the same shapes many times (YOLOv4-P5's CSP stages do) and
the planner asks again for every what-if.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tilec.costmodel import OpCost, Split
from tilec.opinfo import OpInfo

from .geometry import (
    ConvDims,
    cdiv,
    conv_dims,
    matmul_dims,
    numel,
    signature,
    tile_counts,
)

if TYPE_CHECKING:
    from .target import TileTarget

_MAX_CACHED = 100_000  # cached OpCosts per cost model (~100 MB at worst)


class BaseCostModel:
    """Caching and candidate selection; subclasses supply :meth:`_cost` and :meth:`_candidates`."""

    def __init__(self, target: TileTarget) -> None:
        self.target_name = target.name
        self.tiles = target.tiles
        self.grid = target.grid
        self.bytes_per_tile = target.bytes_per_tile
        self.budget = target.budget_per_tile
        self.spec: dict[str, Any] = target.spec
        splits = self.spec["splits"]
        self.keep = int(splits["max_per_tile_count"])
        self.max_in_split = int(splits["max_in_channel_split"])
        self.min_elems = int(splits["min_elements_per_tile"])
        self.policy = str(splits["policy"])
        self.slack = float(splits["fastest_slack"])
        self.vector_ops: dict[str, float] = dict(self.spec["vector_ops"])
        self._rect = target.placement == "rect"
        self._splits: dict[tuple, tuple[Split, ...]] = {}
        self._costs: dict[tuple, OpCost] = {}
        self._sigs: dict[int, tuple[OpInfo, tuple]] = {}
        self._dims: dict[tuple, ConvDims] = {}

    # ----------------------------------------------------------------------- the contract
    def splits(self, op: OpInfo) -> Sequence[Split]:
        """Candidate splits for ``op``: a few per tile count, sorted by (tiles, split).

        Candidates that exceed the tile's budget are dropped when any candidate fits; if none
        fits at any tile count, the single smallest one is returned, so the planner can report
        the op as too large with the best split there is. Under the ``fastest`` policy only the
        splits within ``fastest_slack`` of the fastest remain (ops that follow their input keep
        every tile count: their producer decides).
        """
        key = self._signature(op)
        hit = self._splits.get(key)
        if hit is not None:
            return list(hit)
        if op.kind == "view":
            result: tuple[Split, ...] = (Split(),)
        else:
            picks: list[OpCost] = []
            for t in self.tile_counts(op):
                # enumerated candidates are not cached (most are discarded); the kept ones are
                costs = [self._uncached(op, s) for s in self._candidates(op, t)]
                picks.extend(self._select(op, costs))
            fit = [c for c in picks if c.peak_bytes <= self.budget]
            if not fit and picks:
                fit = [min(picks, key=lambda c: (c.peak_bytes, c.cycles, c.split))]
            if self.policy == "fastest" and fit and not any(c.follows_input for c in fit):
                fit = self._fastest(fit)
            result = tuple(sorted({c.split for c in fit}, key=lambda s: (s.tiles, s.factors)))
            result = result or (Split(),)
            for c in fit:
                self._remember((key, c.split), c)
        self._splits[key] = result
        return list(result)

    def cost(self, op: OpInfo, split: Split) -> OpCost:
        """Bytes per tile (by lifetime and category) and cycles of ``op`` on ``split``."""
        return self._cost_keyed(op, self._signature(op), split)

    def _cost_keyed(self, op: OpInfo, key: tuple, split: Split) -> OpCost:
        ck = (key, split)
        hit = self._costs.get(ck)
        if hit is not None:
            return hit
        result = self._uncached(op, split)
        self._remember(ck, result)
        return result

    def _uncached(self, op: OpInfo, split: Split) -> OpCost:
        if split.tiles > self.tiles:
            raise ValueError(f"{self.target_name}: split {split} of op '{op.name}' uses "
                             f"{split.tiles} tiles; the chip has {self.tiles}")
        if op.kind == "view":
            return OpCost(split=split)
        if self.in_place_concat(op):
            return self._in_place_concat(op, split)
        return self._cost(op, split)

    def _remember(self, key: tuple, cost: OpCost) -> None:
        """Cache a cost; the cache is bounded (what-if searches re-plan at many shapes)."""
        if len(self._costs) >= _MAX_CACHED:
            self._costs.clear()
        self._costs[key] = cost

    def _signature(self, op: OpInfo) -> tuple:
        """The op's cache key, memoised per op object (the planner asks about the same OpInfo
        objects many times; keeping a reference keeps ``id`` unique)."""
        hit = self._sigs.get(id(op))
        if hit is not None and hit[0] is op:
            return hit[1]
        sig = signature(op)
        if len(self._sigs) >= _MAX_CACHED:
            self._sigs.clear()
        self._sigs[id(op)] = (op, sig)
        return sig

    # -------------------------------------------------------------------------- helpers
    @staticmethod
    def in_place_concat(op: OpInfo) -> bool:
        """A concat whose inputs are written straight into slices of its buffer (the
        ``concat-in-place`` pass). Recognised by an ``in_place`` attribute on the op; ``GraphInfo``
        also marks its inputs through ``TensorInfo.part_of``."""
        return op.kind == "concat" and bool(op.attrs.get("in_place"))

    def _in_place_concat(self, op: OpInfo, split: Split) -> OpCost:
        """An in-place concat runs nothing (on the IPU ``poplar::concat`` is a view; on NorthPole
        it is where the activation NoC puts the parts) but its tiles hold the whole buffer, which
        the planner charges to this op's ``outputs``; its producers write into it."""
        t = split.tiles
        return OpCost(split=split, outputs=tuple(
            cdiv(numel(o) * op.act_bits, 8 * t) for o in op.out_shapes))

    def tile_counts(self, op: OpInfo) -> list[int]:
        """Tile counts worth trying: no tile gets fewer than ``min_elements_per_tile`` outputs."""
        work = max((numel(s) for s in op.out_shapes), default=1)
        return tile_counts(self.tiles, self.grid, self._rect, work // self.min_elems)

    def conv_dims(self, op: OpInfo) -> ConvDims:
        """The op's convolution extents (a matmul as a 1x1 conv), computed once per shape."""
        key = self._signature(op)
        d = self._dims.get(key)
        if d is None:
            d = conv_dims(op) if op.kind == "conv" else matmul_dims(op)
            self._dims[key] = d
        return d

    def vops(self, name: str | None) -> float:
        if not name:
            return 0.0
        return float(self.vector_ops.get(name, self.vector_ops.get("default", 1.0)))

    def _step_cap(self, op: OpInfo) -> int | None:
        """Largest step (temporary) bytes a candidate may use, or None (no bound)."""
        return None

    def _select(self, op: OpInfo, costs: Iterable[OpCost]) -> list[OpCost]:
        """Keep the few Pareto-best candidates of one tile count.

        First the hard preferences: under the temporary-memory bound if any candidate is (else the
        one needing least -- what Poplar's planner does when no plan meets the bound), and within
        the tile's bytes if any candidate is (else the smallest, so the planner can still report
        the op as too large). Then the Pareto front on (peak, always, cycles), of which the fastest,
        the smallest and the least always-live are kept.
        """
        costs = list(costs)
        if not costs:
            return []
        cap = self._step_cap(op)
        if cap is not None:
            under = [c for c in costs if c.step_bytes <= cap]
            costs = under or [min(costs, key=lambda c: (c.step_bytes, c.cycles, c.split))]
        fit = [c for c in costs if c.peak_bytes <= self.budget]
        costs = fit or [min(costs, key=lambda c: (c.peak_bytes, c.cycles, c.split))]

        def metrics(c: OpCost) -> tuple[int, int, int]:
            return (c.peak_bytes, c.always_bytes, c.cycles)

        front = []
        for c in costs:
            m = metrics(c)
            dominated = any(
                all(a <= b for a, b in zip(metrics(o), m, strict=True)) and metrics(o) != m
                for o in costs
            )
            if not dominated:
                front.append(c)
        picks: list[OpCost] = []
        for key in (
            lambda c: (c.cycles, c.peak_bytes, c.split),
            lambda c: (c.peak_bytes, c.cycles, c.split),
            lambda c: (c.always_bytes, c.cycles, c.split),
            lambda c: (c.peak_bytes * max(c.cycles, 1), c.split),
        ):
            best = min(front, key=key)
            if best not in picks:
                picks.append(best)
            if len(picks) >= self.keep:
                break
        return picks

    def _fastest(self, costs: list[OpCost]) -> list[OpCost]:
        """The ``fastest`` policy: what a compiler that plans each op for speed alone would pick
        (PopLibs plans every convolution over the whole IPU for minimum cycles under its
        temporary-memory bound; element-wise tensors are mapped linearly over all tiles). Our
        cycle estimates are not PopLibs', so every split within ``fastest_slack`` of the fastest
        is an equally plausible choice and stays; at most ``max_per_tile_count`` of them, the
        fastest first."""
        best = min(c.cycles for c in costs)
        near = [c for c in costs if c.cycles <= best * (1.0 + self.slack)]
        near.sort(key=lambda c: (c.cycles, c.peak_bytes, c.split))
        return near[: self.keep]

    def _cost(self, op: OpInfo, split: Split) -> OpCost:  # pragma: no cover - abstract
        raise NotImplementedError

    def _candidates(self, op: OpInfo, tiles: int) -> Iterable[Split]:  # pragma: no cover
        raise NotImplementedError
