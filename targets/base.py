"""What the two cost models share: caching, candidate enumeration and Pareto selection.

A subclass says what one split of one op costs (:meth:`BaseCostModel._cost`) and which splits are
worth trying at a given tile count (:meth:`BaseCostModel._candidates`). This class turns that into
the contract's :meth:`splits`: for each candidate tile count -- a *cap*
(:func:`geometry.tile_counts`: the most tiles the op's work allows, and below it the powers of
two and the chip's half and quarter; a balanced split's product is at most its cap, a flat split
takes exactly it) -- every pruned factorisation is costed and only the Pareto-best few by
(peak bytes per tile, always-live bytes per tile, cycles) are kept. Results are cached by op
signature, because a network repeats the same shapes many times (YOLOv4-P5's CSP stages do) and
the planner asks again for every what-if.

Speed without changing a result. A what-if search re-partitions the network at many shapes and
SRAM sizes, so enumerating and pricing candidates is the hot path (~10^4 candidates per network):

* a subclass may price all candidates of one tile count at once (:meth:`_block`, numpy arrays
  computed with the same integer and float operations as its scalar :meth:`_cost`); only the few
  kept are built as :class:`OpCost` by the scalar code, and their numbers are checked against the
  arrays (a mismatch is an internal error, never a silently different plan);
* the selection (:meth:`_select_block`) works on the arrays: the same filters, the same Pareto
  front (all pairs compared at once), the same picks with the same tie-breaks (``split`` order);
* what does not depend on the SRAM size -- every enumerated candidate's price -- is shared by all
  cost models of the same chip description that differ only in ``bytes_per_tile``
  (:func:`_shared_store`), so a search over SRAM sizes prices each op shape once.

``tests/test_partition_speed.py`` checks the fast path against the straightforward one
(:meth:`BaseCostModel.reference_splits`) on hand-built ops and zoo networks.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FunctionType
from typing import TYPE_CHECKING, Any

import numpy as np

from tilec.costmodel import OpCost, Split
from tilec.errors import InternalError
from tilec.opinfo import GraphInfo, OpInfo

from .geometry import (
    ConvDims,
    cdiv,
    conv_dims,
    conv_split,
    freeze,
    matmul_dims,
    numel,
    signature,
    tile_counts,
)
from .spatial import pool_dims

if TYPE_CHECKING:
    from .target import TileTarget

_MAX_CACHED = 100_000  # cached OpCosts per cost model (~100 MB at worst)
_MAX_BLOCKS = 4_000  # op shapes whose priced candidates are kept
_BLOCK_BYTES = 64 * 2**20
"""Bytes of priced candidates kept over every chip description together (least recently used
dropped) -- modelling choice of the implementation, not of the chip: a convolution's candidates
grow with the batch (every batch split multiplies them: ~0.4 MB per conv shape at batch 1, ~2 MB
at batch 8 on the IPU), so a bound in entries per description let a what-if search or a band
(a new description per setting) hold ~0.9 GB at batch 8. One plan of a large detector at batch 8
prices ~60 MB of them once each; what is dropped is priced again if asked, never wrong."""
_MAX_STORES = 8  # chip descriptions whose prices are kept (a what-if search uses one or two)


@dataclass(frozen=True, eq=False)
class CandidateBlock:
    """Every enumerated candidate of one op at one tile count, priced: the numbers the selection
    needs as int64 arrays, and a way to name candidate ``i``'s split.

    Either ``costs`` holds the scalar :class:`OpCost` of each candidate (ops with few candidates),
    or ``split_of`` builds the split of candidate ``i`` (vectorised convolutions: the OpCost is
    built only for the candidates kept)."""

    peak: np.ndarray
    always: np.ndarray
    step: np.ndarray
    cycles: np.ndarray
    costs: tuple[OpCost, ...] | None = None
    split_of: Callable[[int], Split] | None = None
    cost_of: Callable[[int], OpCost] | None = None
    """Builds candidate ``i``'s OpCost from the arrays it was priced in (vectorised blocks that
    offer it); else the cost model prices the split again and checks it against the block."""

    def __len__(self) -> int:
        return len(self.peak)

    def held(self) -> tuple:
        """What holds this block's arrays (for :func:`held_bytes`): its four arrays and the
        functions whose closures keep the priced rows (``costs`` holds plain numbers)."""
        return (self.peak, self.always, self.step, self.cycles, self.split_of, self.cost_of)


    def follows(self, i: int) -> bool:
        """Does candidate ``i`` follow its input (:attr:`OpCost.follows_input`)? Vectorised
        blocks are convolutions, pools and resizes, which never do."""
        return bool(self.costs[i].follows_input) if self.costs is not None else False

    def split(self, i: int) -> Split:
        if self.costs is not None:
            return self.costs[i].split
        assert self.split_of is not None
        return self.split_of(i)

    @staticmethod
    def of_costs(costs: Sequence[OpCost]) -> CandidateBlock:
        def arr(values: Iterable[int]) -> np.ndarray:
            return np.fromiter(values, dtype=np.int64, count=len(costs))

        return CandidateBlock(peak=arr(c.peak_bytes for c in costs),
                              always=arr(c.always_bytes for c in costs),
                              step=arr(c.step_bytes for c in costs),
                              cycles=arr(c.cycles for c in costs), costs=tuple(costs))


_HOLDERS = (np.ndarray, dict, tuple, list, FunctionType, CandidateBlock)
"""What :func:`held_bytes` walks into."""


def held_bytes(obj: object) -> int:
    """Bytes of the numpy arrays ``obj`` holds -- through tuples, lists, dicts, the closures of
    functions (a vectorised block's ``cost_of`` keeps its priced arrays) and the arrays a
    :class:`CandidateBlock` names (``held``) -- each array (or the base it views) counted once.
    Other objects (OpCosts, OpInfos, cost models) hold no priced arrays and are not walked: a
    block of scalar OpCosts is counted in microseconds."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = o.base
            if not isinstance(base, np.ndarray):
                total += o.nbytes  # owns its data (or views a non-numpy buffer)
            elif id(base) not in seen:
                stack.append(base)  # a view: its base holds the bytes
        elif isinstance(o, dict):
            stack.extend(v for v in o.values() if isinstance(v, _HOLDERS))
        elif isinstance(o, (tuple, list)):
            stack.extend(v for v in o if isinstance(v, _HOLDERS))
        elif isinstance(o, CandidateBlock):
            stack.extend(o.held())
        elif isinstance(o, FunctionType):
            cells = [c.cell_contents for c in o.__closure__ or ()]
            stack.extend(v for v in (*cells, *(o.__defaults__ or ())) if isinstance(v, _HOLDERS))
    return total


class BytesLRU:
    """A cache bounded by the bytes its values hold (:func:`held_bytes`) and by a count, least
    recently used dropped first. Cost models cache priced arrays whose size grows with the
    batch; a bound in entries alone let memory grow with the batch too."""

    def __init__(self, max_bytes: int, max_items: int) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.bytes = 0
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None:
            return None
        self._data.move_to_end(key)
        return hit[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        size = held_bytes(value)
        self._data[key] = (value, size)
        self.bytes += size
        while len(self._data) > 1 and (self.bytes > self.max_bytes
                                       or len(self._data) > self.max_items):
            _, (_, dropped) = self._data.popitem(last=False)
            self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Any) -> bool:
        return key in self._data

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0


def conv_blocks(per_count: Sequence[Sequence[Sequence[int]]], *, peak: np.ndarray,
                always: np.ndarray, step: np.ndarray, cycles: np.ndarray,
                cost_of: Callable[[int, int], OpCost] | None = None,
                split_of: Callable[[Sequence[int]], Split] = conv_split) -> list[CandidateBlock]:
    """Cut arrays priced over the concatenated factor rows of several tile counts into one
    :class:`CandidateBlock` per tile count (splits built on demand by ``split_of``, a
    convolution's :func:`conv_split` unless told; ``cost_of(block, i)``, when given, builds
    candidate ``i`` of a block's OpCost)."""
    out = []
    a = 0
    for k, rows in enumerate(per_count):
        b = a + len(rows)
        out.append(CandidateBlock(
            peak=peak[a:b], always=always[a:b], step=step[a:b], cycles=cycles[a:b],
            split_of=lambda i, rows=rows: split_of(rows[i]),
            cost_of=None if cost_of is None else (lambda i, k=k: cost_of(k, i))))
        a = b
    return out


def nonzero(**cats: int) -> dict[str, int]:
    """A category dict without zero entries (reports stay readable)."""
    return {k: int(v) for k, v in cats.items() if v}


def touched(elements: int, share: int, total: int, inner: int) -> int:
    """Elements of a broadcast operand (a bias, a per-channel scale) one tile's share touches.

    ``inner``: how many consecutive output elements (row-major) read one operand element
    (:func:`broadcast_inner`); a contiguous share of ``share`` outputs then reads at most
    ``ceil(share / inner) + 1`` operand elements (one more where the share straddles a
    boundary). A bias over the innermost dim (a transformer's ``[C]`` over ``[N, T, C]``,
    ``inner = 1``) is read once per output element of the share, up to all of it."""
    if total <= 0 or elements >= total:
        return min(elements, share)
    return min(elements, cdiv(share, max(1, inner)) + 1)


def broadcast_inner(out_shape: Sequence[int], operand_shape: Sequence[int]) -> int:
    """Consecutive output elements that read one element of an operand broadcast (NumPy
    rules, right-aligned) to ``out_shape``: the product of the output dims after the operand's
    innermost dim larger than 1 (all of them for a scalar)."""
    out = [int(d) for d in out_shape]
    ops = [int(d) for d in operand_shape][-len(out):] if out else []
    ops = [1] * (len(out) - len(ops)) + ops
    last = max((i for i, d in enumerate(ops) if d > 1), default=-1)
    return math.prod(out[last + 1:])


def model_io_bytes(graph: GraphInfo) -> tuple[int, int]:
    """(bytes of the model's inputs, bytes of its outputs): what crosses the host link."""
    inp = sum(graph.tensors[n].bytes for n in graph.inputs if n in graph.tensors)
    out = sum(graph.tensors[n].bytes for n in graph.outputs if n in graph.tensors)
    return inp, out


class _Shelf:
    """One chip description's part of a cache shared by all of them (keys prefixed)."""

    def __init__(self, cache: BytesLRU, tag: int) -> None:
        self.cache = cache
        self.tag = tag

    def get(self, key: Any) -> Any:
        return self.cache.get((self.tag, key))

    def __setitem__(self, key: Any, value: Any) -> None:
        self.cache[(self.tag, key)] = value


_BLOCKS = BytesLRU(_BLOCK_BYTES, _MAX_BLOCKS)
_STORES_MADE: list[None] = []  # one tag per store ever made (tags are never reused)


class _Store:
    """Prices that do not depend on the SRAM size, shared by every cost model of one chip
    description (same spec except ``memory.bytes_per_tile``)."""

    def __init__(self) -> None:
        self.costs: dict[tuple, OpCost] = {}
        self.blocks = _Shelf(_BLOCKS, len(_STORES_MADE))
        _STORES_MADE.append(None)
        self.dims: dict[tuple, ConvDims] = {}


_STORES: OrderedDict[tuple, _Store] = OrderedDict()
_SIGS: dict[int, tuple[OpInfo, tuple]] = {}


def _shared_store(kind: str, target: TileTarget, *, sram_priced: bool = False) -> _Store:
    """The price store of ``target``'s chip description (least recently used ones dropped).

    ``bytes_per_tile`` is left out of the key unless ``sram_priced``: a cost model whose
    candidate *set* depends on the SRAM size (the IPU's serial splits are added to meet
    ``availableMemoryProportion`` of the tile) must not share prices across sizes."""
    spec = dict(target.spec)
    if not sram_priced:
        spec["memory"] = {k: v for k, v in dict(spec.get("memory", {})).items()
                          if k != "bytes_per_tile"}
    key = (kind, int(target.tiles), tuple(target.grid), str(target.placement), freeze(spec))
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = _Store()
        while len(_STORES) > _MAX_STORES:
            _STORES.popitem(last=False)
    else:
        _STORES.move_to_end(key)
    return store


def _nondominated(metrics: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``metrics`` ``[n, d]`` that no other row dominates (no larger anywhere
    and different somewhere); equal rows are all kept. All pairs at once, in chunks of rows."""
    n = len(metrics)
    if n <= 1:
        return np.ones(n, dtype=bool)
    out = np.ones(n, dtype=bool)
    chunk = max(1, 4_000_000 // (n * metrics.shape[1]))
    for a in range(0, n, chunk):
        y = metrics[a:a + chunk]  # candidates that may be dominated
        le = (metrics[:, None, :] <= y[None, :, :]).all(axis=2)  # le[x, y]
        ne = (metrics[:, None, :] != y[None, :, :]).any(axis=2)
        out[a:a + chunk] = ~(le & ne).any(axis=0)
    return out


class BaseCostModel:
    """Caching and candidate selection; subclasses supply :meth:`_cost` and :meth:`_candidates`."""

    sram_priced = False
    """True when the candidates a subclass enumerates depend on the tile's bytes (then priced
    candidates are not shared across SRAM sizes)."""

    stores_whole_tensors = True
    """Every split's tiles hold the op's weights and outputs whole (``tilec.costmodel``): the
    subclasses' stored weight shares and output shares are ``ceil(bytes / tiles)`` or more per
    tile (IPU: ``w_store``, ``out_bytes``; NorthPole: spread weights, ``cdiv`` output slices) --
    checked term by term against (a)'s minima on the zoo in tests/test_ceiling.py."""

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
        store = _shared_store(type(self).__name__, target, sram_priced=self.sram_priced)
        self._costs: dict[tuple, OpCost] = store.costs
        self._blocks: _Shelf = store.blocks  # key -> tuple[CandidateBlock, ...]
        self._sigs = _SIGS
        self._dims: dict[tuple, ConvDims] = store.dims
        io = self.spec["io"]
        self.h2d = float(io["host_to_device_bytes_per_s"])
        self.d2h = float(io["device_to_host_bytes_per_s"])

    # ----------------------------------------------------------------------- the contract
    def io_seconds(self, graph: GraphInfo) -> float:
        """Inputs cross the host link host->device, outputs device->host, at the target's rates."""
        return sum(self.io_breakdown(graph))

    def io_breakdown(self, graph: GraphInfo) -> tuple[float, float]:
        """(input seconds, output seconds) of :meth:`io_seconds` (optional hook)."""
        inp, out = model_io_bytes(graph)
        return inp / self.h2d, out / self.d2h

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
            # the same steps as reference_splits, on (peak, cycles, block, index) of the picks;
            # an OpCost is built only for the splits that remain
            blocks = self._blocks_cached(op, key)
            filtered = [self._filtered(op, blk) for blk in blocks]
            if self.policy == "fastest" and all(b.costs is None for b in blocks):
                # Vectorised ops (convs, pools, resizes) never follow their input, so the
                # fastest policy will keep only picks within the slack of the fastest pick --
                # and each tile count's fastest pick is its fastest candidate left by the
                # filters. A tile count whose fastest
                # fitting candidate is already too slow contributes nothing: skip its front.
                fastest = [int(blk.cycles[idx].min()) for blk, (idx, fits) in
                           zip(blocks, filtered, strict=True) if fits and len(idx)]
                if fastest:
                    limit = min(fastest) * (1.0 + self.slack)
                    filtered = [(idx, fits) if fits and len(idx) and
                                int(blk.cycles[idx].min()) <= limit else (idx[:0], fits)
                                for blk, (idx, fits) in zip(blocks, filtered, strict=True)]
            picks: list[tuple[int, int, CandidateBlock, int]] = []
            for blk, (idx, _fits) in zip(blocks, filtered, strict=True):
                picks.extend((int(blk.peak[i]), int(blk.cycles[i]), blk, i)
                             for i in self._picks(blk, idx))
            fit = [p for p in picks if p[0] <= self.budget]
            if not fit and picks:
                fit = [min(picks, key=lambda p: (p[0], p[1], p[2].split(p[3])))]
            follows = any(p[2].follows(p[3]) for p in fit)
            if self.policy == "fastest" and fit and not follows:
                best = min(p[1] for p in fit)
                near = [p for p in fit if p[1] <= best * (1.0 + self.slack)]
                near.sort(key=lambda p: (p[1], p[0], p[2].split(p[3])))
                fit = near[: self.keep]
            kept = [self._materialise(op, key, blk, i) for _, _, blk, i in fit]
            result = tuple(sorted({c.split for c in kept}, key=lambda s: (s.tiles, s.factors)))
            result = result or (Split(),)
        self._splits[key] = result
        return list(result)

    def cost(self, op: OpInfo, split: Split) -> OpCost:
        """Bytes per tile (by lifetime and category) and cycles of ``op`` on ``split``."""
        return self._cost_keyed(op, self._signature(op), split)

    def reference_splits(self, op: OpInfo) -> list[Split]:
        """:meth:`splits` the straightforward way -- every candidate priced one by one with
        :meth:`_cost`, selected by :meth:`_select` -- uncached. The reference the fast path is
        tested against; the planner never calls it."""
        if op.kind == "view":
            return [Split()]
        picks: list[OpCost] = []
        for t in self.tile_counts(op):
            picks.extend(self._select(op, [self._uncached(op, s) for s in
                                           self._candidates(op, t)]))
        fit = [c for c in picks if c.peak_bytes <= self.budget]
        if not fit and picks:
            fit = [min(picks, key=lambda c: (c.peak_bytes, c.cycles, c.split))]
        if self.policy == "fastest" and fit and not any(c.follows_input for c in fit):
            fit = self._fastest(fit)
        result = sorted({c.split for c in fit}, key=lambda s: (s.tiles, s.factors))
        return result or [Split()]

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
        objects many times; keeping a reference keeps ``id`` unique). The memo is shared by
        every cost model: a signature depends on the op alone, and the band and the what-if
        ask many targets about the same ops."""
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
        """Tile counts worth trying: no tile gets fewer than ``min_elements_per_tile`` outputs
        -- or, for a reduction (a Reduce* op, a global pool), inputs: its work is its input, and
        counting its few outputs kept a whole 320 x 320 map on two tiles; for a matrix product,
        weights."""
        shapes = op.out_shapes
        if op.kind == "reduce" or (op.kind == "pool" and pool_dims(op).is_global):
            shapes = op.in_shapes[:1]
        elif op.kind in ("topk", "nms"):  # a top-k / NMS works on all of its inputs, and
            # Poplar spreads them over the chip (BitonicTopK.cpp allocate; nms.cpp maps them
            # linearly): its few outputs would keep it on a handful of tiles
            shapes = op.in_shapes
        work = max((numel(s) for s in shapes), default=1)
        if op.kind == "matmul":  # a classifier head (100,352 -> 10) is its weights, not its
            # 10 outputs: splitting it over input channels needs the tiles to hold them
            work = max([work, *(w.elements for w in op.weights)])
        return tile_counts(self.tiles, self.grid, self._rect, work // self.min_elems)

    def conv_dims(self, op: OpInfo) -> ConvDims:
        """The op's convolution extents (a matmul as a 1x1 conv), computed once per shape."""
        key = self._signature(op)
        d = self._dims.get(key)
        if d is None:
            d = conv_dims(op) if op.kind == "conv" else matmul_dims(op)
            if len(self._dims) >= _MAX_CACHED:
                self._dims.clear()
            self._dims[key] = d
        return d

    def vops(self, name: str | None) -> float:
        if not name:
            return 0.0
        return float(self.vector_ops.get(name, self.vector_ops.get("default", 1.0)))

    def _step_cap(self, op: OpInfo) -> int | None:
        """Largest step (temporary) bytes a candidate may use, or None (no bound)."""
        return None

    def _relaxed_bounds(self, cap: int) -> list[int]:
        """The temporary-memory bounds tried in turn until some candidate meets one: ``cap``,
        then doubled while within twice the tile's bytes (PopLibs, poplin ConvPlan.cpp
        createPlan: "unable to meet memory target" -> the bound is doubled up to 2 x
        bytesPerTile, then dropped). The last entry admits every candidate."""
        out = [cap]
        while out[-1] * 2 <= 2 * self.bytes_per_tile:
            out.append(out[-1] * 2)
        out.append(np.iinfo(np.int64).max)
        return out

    # --------------------------------------------------------------- fast selection
    def _blocks_cached(self, op: OpInfo, key: tuple) -> tuple[CandidateBlock, ...]:
        """The priced candidates of ``op``, one block per tile count of :meth:`tile_counts`."""
        hit = self._blocks.get(key)
        if hit is None:
            counts = self.tile_counts(op)
            blocks = self._blocks_of(op, counts)
            if blocks is None:
                blocks = [CandidateBlock.of_costs([self._cost_keyed(op, key, s)
                                                   for s in self._candidates(op, t)])
                          for t in counts]
            hit = tuple(blocks)
            self._blocks[key] = hit
        return hit

    def _blocks_of(self, op: OpInfo, counts: Sequence[int]) -> list[CandidateBlock] | None:
        """Every candidate of ``op`` at each of ``counts`` priced at once, or None (then each is
        priced by :meth:`_cost`). Subclasses vectorise the ops with many candidates
        (convolutions)."""
        return None

    def _argmin(self, blk: CandidateBlock, idx: np.ndarray, keys: Sequence[np.ndarray]) -> int:
        """The candidate of ``idx`` with the lexicographically smallest ``keys``, ties broken by
        split order -- ``min(..., key=lambda c: (*keys, c.split))``."""
        sub = [k[idx] for k in keys]
        order = np.lexsort(tuple(reversed(sub)))
        first = order[0]
        tied = np.ones(len(idx), dtype=bool)
        for k in sub:
            tied &= k == k[first]
        ties = idx[tied]
        if len(ties) == 1:
            return int(ties[0])
        return int(min(ties, key=lambda i: blk.split(int(i))))

    def _select_block(self, op: OpInfo, blk: CandidateBlock) -> list[int]:
        """:meth:`_select` on a priced block: the same filters, front and picks (as indices)."""
        return self._picks(blk, self._filtered(op, blk)[0])

    def _filtered(self, op: OpInfo, blk: CandidateBlock) -> tuple[np.ndarray, bool]:
        """The candidates :meth:`_select`'s filters keep (under the temporary-memory bound if
        any is, then within the tile if any is), and whether any was within the tile."""
        idx = np.arange(len(blk))
        if len(blk) <= 1:  # every filter keeps a lone candidate
            return idx, bool(len(blk)) and int(blk.peak[0]) <= self.budget
        cap = self._step_cap(op)
        if cap is not None:
            for bound in self._relaxed_bounds(cap):
                under = idx[blk.step <= bound]
                if len(under):
                    idx = under
                    break
        fit = idx[blk.peak[idx] <= self.budget]
        if len(fit):
            return fit, True
        return np.array([self._argmin(blk, idx, (blk.peak, blk.cycles))]), False

    def _picks(self, blk: CandidateBlock, idx: np.ndarray) -> list[int]:
        """:meth:`_select`'s picks among the filtered candidates ``idx``: of the Pareto front on
        (peak, always, cycles), the fastest, the smallest, the least always-live and the least
        peak x cycles, ties broken by split order.

        Found without building the front: each pick minimises a key that only grows under
        domination (a candidate dominating another has no larger key), so the pick's rivals --
        the candidates with the minimal key -- contain every candidate that could dominate
        them; the front's part of that (usually one) candidate set is found among them alone.
        The same picks as :meth:`_select` (tested against it), in O(candidates) instead of the
        all-pairs front."""
        if len(idx) <= 1:
            return idx.tolist()
        peak, always, cycles = blk.peak[idx], blk.always[idx], blk.cycles[idx]
        c1 = np.maximum(cycles, 1)
        if int(peak.max()) * int(c1.max()) < 2**62:
            product = peak * c1
        else:  # exact products on Python ints
            product = np.array([int(p) * int(c) for p, c in zip(peak, c1, strict=True)],
                               dtype=object)
        picks: list[int] = []
        for keys in ((cycles, peak), (peak, cycles), (always, cycles), (product,)):
            tied = np.ones(len(idx), dtype=bool)
            for k in keys:
                low = k[tied].min()
                tied &= k == low
            rivals = np.nonzero(tied)[0]
            if len(rivals) > 1:
                rivals = rivals[_nondominated(np.stack(
                    (peak[rivals], always[rivals], cycles[rivals]), axis=1))]
            ties = idx[rivals].tolist()
            best = ties[0] if len(ties) == 1 else min(ties, key=blk.split)
            if best not in picks:
                picks.append(best)
            if len(picks) >= self.keep:
                break
        return picks

    def _materialise(self, op: OpInfo, key: tuple, blk: CandidateBlock, i: int) -> OpCost:
        """The OpCost of candidate ``i`` (cached); for a vectorised block, read off its arrays
        (``cost_of``) or else built by the scalar :meth:`_cost` and checked against the block's
        numbers."""
        if blk.costs is not None:
            c = blk.costs[i]
            self._remember((key, c.split), c)
            return c
        if blk.cost_of is not None:
            ck = (key, blk.split(i))
            c = self._costs.get(ck)
            if c is None:
                c = blk.cost_of(i)
                self._remember(ck, c)
            return c
        c = self._cost_keyed(op, key, blk.split(i))
        if (c.peak_bytes, c.always_bytes, c.step_bytes, c.cycles) != (
                int(blk.peak[i]), int(blk.always[i]), int(blk.step[i]), int(blk.cycles[i])):
            raise InternalError(f"{self.target_name}: the vectorised price of op '{op.name}' on "
                                f"{c.split} differs from its scalar price")
        return c

    def _select(self, op: OpInfo, costs: Iterable[OpCost]) -> list[OpCost]:
        """Keep the few Pareto-best candidates of one tile count.

        First the hard preferences: under the temporary-memory bound if any candidate is (else
        under the first relaxed bound any candidate meets, as PopLibs relaxes it), and within
        the tile's bytes if any candidate is (else the smallest, so the planner can still report
        the op as too large). Then the Pareto front on (peak, always, cycles), of which the fastest,
        the smallest and the least always-live are kept.
        """
        costs = list(costs)
        if not costs:
            return []
        cap = self._step_cap(op)
        if cap is not None:
            for bound in self._relaxed_bounds(cap):
                under = [c for c in costs if c.step_bytes <= bound]
                if under:
                    costs = under
                    break
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
