"""The contract between the planner and a target: what an op costs on a given split.

A target (``targets/*.toml`` plus, where needed, one Python cost model) answers two questions for
every :class:`~tilec.opinfo.OpInfo`:

* :meth:`CostModel.splits` -- the candidate ways to divide the op's work over tiles;
* :meth:`CostModel.cost` -- for one split, the bytes per tile by category *and by lifetime*, and the
  cycles.

Lifetimes are what make a tiled-SRAM chip different from a GPU, so they are explicit:

``always``  bytes on each of the op's tiles for the whole run (on the IPU: vertex code and state,
            exchange code, the weights the tile computes with).
``step``    bytes on each of the op's tiles during the op's superstep only (receive buffers for
            inputs and weights, partial sums, rearrangement copies; on NorthPole the layer's
            program and its broadcast weights).
``outputs`` bytes on each of the op's tiles per output tensor, from the op's superstep to the last
            superstep that reads it (or a view or in-place concat of it).
``spread``  bytes stored once over the *whole* array for the whole run, independent of where the
            op runs (NorthPole's weights: "stored once, broadcast per layer"). These values are
            *totals* over the array; the planner charges ``ceil(total / tiles)`` of each category
            on every tile.

Categories name what the bytes are for (:data:`CATEGORIES`); reports break memory down by them.
The planner adds nothing of its own: every byte it charges comes from an :class:`OpCost` -- or, for
the model's inputs and outputs, from the optional I/O hooks below.

Optional I/O hooks (looked up with ``getattr``; a target without them keeps I/O out of tile
memory and has no framebuffer):

* ``CostModel.input_bytes(tensor, tiles) -> {category: bytes per tile}``: what holding model input
  ``tensor`` costs on each of the ``tiles`` tiles of its first reader that is not a view (the IPU:
  the host streams it into a variable mapped over those tiles). It is live from step 0 to its
  last read.
* ``Target.io_location``: ``"host"`` (default; model outputs stay in tile memory until the end of
  the run, when the host reads them) or ``"framebuffer"`` (inputs and outputs live in an on-chip
  I/O buffer outside tile memory; an output leaves tile memory after its last reader).
* ``Target.framebuffer_bytes`` and ``CostModel.io_bytes(graph) -> int``: the framebuffer's size
  and the bytes the model's inputs plus outputs need there; more is evidence (a).

Optional declaration (``getattr``, default False):

* ``CostModel.sram_independent``: True when neither :meth:`CostModel.splits` nor
  :meth:`CostModel.cost` depends on the target's bytes per tile. Then every question about the
  model is monotone in the SRAM size (same candidates, same schedule, a smaller budget), so the
  what-if "smallest SRAM per tile" is exact once one grain below its answer is proven not to fit.
  A cost model that drops or prefers splits by the tile's budget must not declare it.
* ``CostModel.bounds_monotone``: True when the lower bounds (a) and (b) can only grow with the
  batch and the image size (every op's bytes at its cheapest split grow with its shapes). Then
  the what-if headroom search may rule out every value above the first one the bounds rule out.
  A cost model that picks splits by speed (the ``fastest`` policy: the chosen split, and its
  temporaries, change with the shape) must not declare it. Neither built-in model does: gc200's
  (a) falls between YOLOv4-P5 batch 12 and 13 at 320 px (the ``fastest`` window admits splits
  with less vertex state at 13), NorthPole's (b) between batch 3 and 4 (a batch factor is at most
  the batch, and tile counts divide 256). ``benchmarks/bounds_monotone.py`` measures a cost model
  before it declares; ``docs/planner.md`` ("Do the bounds grow with the shape?") has the figures.
* ``CostModel.stores_whole_tensors``: True when, under every split, an op's tiles together hold
  each of its weights and each of its outputs whole, at least at their storage bits (a share per
  tile of ``ceil(bytes / tiles)`` or more), and a model input held in tile memory likewise. Then
  the monotone certificate (m) (``tilec/plan/ceiling.py``: weights plus the activations
  necessarily live at an op, at storage bytes) is a lower bound on any plan, and the what-if may
  close its batch and image-size searches on it. A cost model that keeps a tensor partly off
  the tiles, or prices bytes other than the tensors', must not declare it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Literal, Protocol, runtime_checkable

from tilec.opinfo import GraphInfo, OpInfo

CATEGORIES: tuple[str, ...] = (
    "weights",  # parameters (stored share, or a received/broadcast copy while computing)
    "act_in",  # received slices of input activations (exchange receive buffers)
    "act_out",  # output activations
    "temp",  # partial sums, rearrangement copies, dequantized weights, activation intermediates
    "code",  # vertex / layer program code
    "state",  # vertex instance state, descriptors, control
    "exchange",  # exchange code and exchange buffers not counted above
    "io",  # host / framebuffer I/O buffers held in tile memory
)

AXES: tuple[str, ...] = ("batch", "out_ch", "in_ch", "rows", "cols", "groups", "elements",
                         "serial_out", "serial_in", "span")
"""Axes an op's work may be divided along. ``elements`` is a flat split of an element-wise op.

Two entries are not parallel axes and do not multiply into :attr:`Split.tiles`:

``serial_out``, ``serial_in``
            the op runs as this many slices one after another on the same tiles (PopLibs'
            serial splits of the output / input channels -- a matmul's N / K: a convolution
            whose temporaries exceed ``availableMemoryProportion`` computes slice by slice, so
            each slice's temporaries live only while that slice runs);
``span``    the tiles the op occupies when its parallel factors multiply to fewer (a balanced
            factorisation of 1472 tiles, e.g. rows 64 x cols 23, need not use every tile; the op
            is still planned over -- and placed on -- the whole span, the rest of it idle).
"""

NON_TILE_AXES: frozenset[str] = frozenset({"serial_out", "serial_in", "span"})


@dataclass(frozen=True, order=True)
class Split:
    """How an op's work is divided across tiles: a factor per axis; ``tiles`` is their product.

    Factors are stored as a sorted tuple of ``(axis, factor)`` pairs with factor > 1, so equal
    splits compare and hash equal and sort deterministically.
    """

    factors: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(**factors: int) -> Split:
        """``Split.of(out_ch=4, rows=8)``; factors of 1 are dropped."""
        for axis, f in factors.items():
            if axis not in AXES:
                raise ValueError(f"unknown split axis {axis!r}; axes: {', '.join(AXES)}")
            if f < 1:
                raise ValueError(f"split factor for {axis} must be >= 1, got {f}")
        return Split(tuple(sorted((a, int(f)) for a, f in factors.items() if f > 1)))

    @property
    def tiles(self) -> int:
        """Tiles the op occupies: its ``span`` when given, else the product of its parallel
        factors."""
        for axis, f in self.factors:
            if axis == "span":
                return f
        return self.work_tiles

    @property
    def work_tiles(self) -> int:
        """Tiles that hold a share of the work: the product of the parallel factors (serial
        factors and ``span`` excluded)."""
        return prod(f for a, f in self.factors if a not in NON_TILE_AXES) if self.factors else 1

    def factor(self, axis: str) -> int:
        return dict(self.factors).get(axis, 1)

    def as_dict(self) -> dict[str, int]:
        return dict(self.factors)

    def __str__(self) -> str:
        return "x".join(f"{a}{f}" for a, f in self.factors) or "single"


@dataclass(frozen=True)
class OpCost:
    """What one op costs on one split: bytes per tile by lifetime and category, and cycles."""

    split: Split
    always: Mapping[str, int] = field(default_factory=dict)
    step: Mapping[str, int] = field(default_factory=dict)
    outputs: tuple[int, ...] = ()
    spread: Mapping[str, int] = field(default_factory=dict)
    compute_cycles: int = 0
    exchange_cycles: int = 0
    follows_input: bool = False
    """The op runs on the tiles that hold its first input, with the producer's tile count, reading
    that input where it lies (element-wise ops on the IPU). The planner places it accordingly."""
    in_place: bool = False
    """The output may overwrite the first input when this op is that input's last reader (the
    planner then charges one buffer, not two)."""

    @property
    def tiles(self) -> int:
        return self.split.tiles

    @property
    def always_bytes(self) -> int:
        return sum(self.always.values())

    @property
    def step_bytes(self) -> int:
        return sum(self.step.values())

    @property
    def output_bytes(self) -> int:
        return sum(self.outputs)

    @property
    def peak_bytes(self) -> int:
        """Per-tile bytes of this op alone while it runs (always + step + its outputs)."""
        return self.always_bytes + self.step_bytes + self.output_bytes

    @property
    def cycles(self) -> int:
        return self.compute_cycles + self.exchange_cycles


@runtime_checkable
class CostModel(Protocol):
    """Answers "what does this op need" for one target."""

    def splits(self, op: OpInfo) -> Sequence[Split]:
        """Candidate splits for ``op`` (each with ``tiles`` <= the target's tile count)."""
        ...

    def cost(self, op: OpInfo, split: Split) -> OpCost:
        """Bytes per tile and cycles of ``op`` on ``split``."""
        ...

    def sync_cycles(self, tiles: int) -> int:
        """Cycles of the synchronisation that ends a superstep spanning ``tiles`` tiles."""
        ...

    def io_seconds(self, graph: GraphInfo) -> float:
        """Time to move the model's inputs in and outputs out (host link or framebuffer)."""
        ...


@runtime_checkable
class Target(Protocol):
    """What the planner needs to know of a chip (``targets/`` implements it from TOML)."""

    name: str
    tiles: int
    bytes_per_tile: int
    reserved_bytes_per_tile: int
    grid: tuple[int, int]  # (rows, cols); rows * cols == tiles
    placement: Literal["range", "rect"]  # contiguous tile ranges (IPU) or mesh rectangles
    clock_hz: float
    precisions: tuple[str, ...]  # supported, from highest to lowest
    default_precision: str
    cost_model: CostModel

    @property
    def budget_per_tile(self) -> int:
        """Bytes of a tile the planner may fill (bytes_per_tile - reserved_bytes_per_tile)."""
        ...

    def weight_bits(self, precision: str) -> int:
        """Storage bits of float weights compiled at ``precision``."""
        ...

    def act_bits(self, precision: str) -> int:
        """Storage bits of activations compiled at ``precision``."""
        ...

    def default_passes(self, precision: str) -> list[str]:
        """The lowering pipeline this target suggests."""
        ...

    def with_bytes_per_tile(self, bytes_per_tile: int) -> Target:
        """The same chip with a different SRAM size per tile (for what-if questions)."""
        ...
