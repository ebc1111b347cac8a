"""The IPU cost model (gc200, gc2, bow): what an op costs when Poplar maps it onto tiles.

Poplar compiles everything ahead of time into bulk-synchronous supersteps (compute, sync,
exchange) and keeps, on every tile, the code and state of every compute set that tile takes part
in for the whole run. The model follows that, category by category (constants: the target TOML):

always (whole run, on each of the op's tiles)
    ``code`` / ``state`` / ``exchange``: ``bytes_per_compute_set`` per compute set the op runs,
    split by the vendor-measured shares of control code, vertex state and exchange code.
    ``weights``: the tile's share of the op's weights -- weights live where they are used. A split
    over output / input channels or groups gives each tile exactly the slice it computes with;
    a batch or spatial split stores the weights once across the op's tiles (1/tiles each).
step (during the op's supersteps only)
    ``act_in``: the input slice the tile reads, halo rows included, received by exchange (this is
    also Poplar's rearrangement copy into the layout the conv vertices want).
    ``weights``: under a batch/spatial split, the rest of the tile's weight slice, received.
    ``temp``: partial sums when input channels are split (in the target's partial-sum precision)
    and the reduction's receive buffer; the cast buffer when partials are wider than outputs; an
    fp16 copy of the weight slice when weights are stored in fewer bits (the IPU computes in
    fp16/fp32 only); one output-sized intermediate for an activation without a native in-place
    vertex (Mish, SiLU, HardSwish).
    A conv's step bytes are bounded by ``available_memory_proportion`` of the tile.
outputs
    the tile's share of each output tensor.

Cycles: a conv runs on the AMP at ``macs_per_cycle`` with channels padded to the AMP grain and a
sustained ``conv_efficiency``, or on the vector unit if that is faster (depthwise); element-wise
work on the SIMD path; every compute set beyond the first costs one more fixed superstep; exchange
moves received bytes at ``bytes_per_cycle_per_tile``.

Element-wise ops run where their first input lives (``follows_input``) and in place when shapes
allow (``in_place``), as Poplar's in-place element-wise ops do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tilec.costmodel import OpCost, Split
from tilec.opinfo import OpInfo, TensorInfo

from .base import BaseCostModel, CandidateBlock, conv_blocks, nonzero, touched
from .geometry import (
    ConvDims,
    cdiv,
    conv_candidates,
    conv_factor_rows,
    conv_share,
    conv_shares,
    map_candidates,
    map_share,
    nbytes,
    numel,
    pool_dims,
    resize_dims,
    round_up,
)

if TYPE_CHECKING:
    from .target import TileTarget

_DATAPATH_BITS = {"fp16": 16, "fp32": 32}
_GATHERING_MOVES = frozenset({"Slice", "Split", "Gather"})  # read only what they output


class IpuCostModel(BaseCostModel):
    """Poplar-style cost model (see the module docstring)."""

    def __init__(self, target: TileTarget) -> None:
        super().__init__(target)
        s = self.spec
        comp = s["compute"]
        self.macs_per_cycle = dict(comp["macs_per_cycle"])
        self.in_grain = dict(comp["in_channel_grain"])
        self.out_grain = dict(comp["out_channel_grain"])
        self.lanes = dict(comp["vector_lanes"])
        self.copy_bpc = int(comp["copy_bytes_per_cycle"])
        self.eff = float(comp["conv_efficiency"])
        self.native = frozenset(s["activations"]["native"])
        self.nonnative_temps = int(s["activations"]["nonnative_temps"])
        self.xbpc = float(s["exchange"]["bytes_per_cycle_per_tile"])
        self.superstep = int(s["exchange"]["superstep_cycles"])
        ov = s["overheads"]
        self.set_bytes = int(ov["bytes_per_compute_set"])
        self.shares = (float(ov["code_share"]), float(ov["state_share"]),
                       float(ov["exchange_share"]))
        self.sets = dict(ov["compute_sets"])
        self.amp = float(s["temporaries"]["available_memory_proportion"])
        # partial-sum bits per datapath: from the precisions that compute on it
        self.partials: dict[str, int] = {}
        for p in s["precision"]["supported"]:
            entry = s["precision"][p]
            self.partials.setdefault(entry["compute"], int(entry["partials_bits"]))

    # ------------------------------------------------------------------------ protocol
    def sync_cycles(self, tiles: int) -> int:
        """One superstep's fixed cost. The IPU's sync is a chip-wide hardware barrier, so its
        cost does not grow with the number of tiles that take part."""
        return self.superstep if tiles > 0 else 0

    def input_bytes(self, tensor: TensorInfo, tiles: int) -> dict[str, int]:
        """Bytes per tile of holding model input ``tensor`` on ``tiles`` tiles (optional in the
        contract; the planner asks it). Poplar streams host data straight into the input variable,
        mapped over the tiles that first read it: each holds its share, as ``io``."""
        return nonzero(io=cdiv(tensor.bytes, max(1, tiles)))

    # ------------------------------------------------------------------------- helpers
    def datapath(self, act_bits: int) -> str:
        """The narrowest float datapath at least as wide as the activations (fp16 or fp32)."""
        fitting = sorted((b, n) for n, b in _DATAPATH_BITS.items()
                         if n in self.macs_per_cycle and b >= act_bits)
        if fitting:
            return fitting[0][1]
        return max((b, n) for n, b in _DATAPATH_BITS.items() if n in self.macs_per_cycle)[1]

    def overhead(self, sets: int) -> dict[str, int]:
        """Always-live code, state and exchange bytes of ``sets`` compute sets on one tile."""
        total = sets * self.set_bytes
        code = round(total * self.shares[0])
        state = round(total * self.shares[1])
        return {"code": code, "state": state, "exchange": total - code - state}

    def _step_cap(self, op: OpInfo) -> int | None:
        if op.kind in ("conv", "matmul"):
            return int(self.amp * self.bytes_per_tile)
        return None

    def _vector_cycles(self, elements: int, ops: float, dp: str) -> int:
        return math.ceil(elements * ops / self.lanes[dp]) if elements and ops else 0

    def _xcycles(self, received: int) -> int:
        return math.ceil(received / self.xbpc) if received else 0

    # -------------------------------------------------------------------- candidates
    def _candidates(self, op: OpInfo, tiles: int) -> Iterable[Split]:
        kind = op.kind
        if kind in ("conv", "matmul"):
            d = self.conv_dims(op)
            dp = self.datapath(op.act_bits)
            return conv_candidates(d, tiles, in_grain=self.in_grain[dp],
                                   out_grain=self.out_grain[dp], max_in_split=self.max_in_split)
        if kind == "pool":
            return map_candidates(pool_dims(op), tiles)
        if kind == "resize":
            return map_candidates(resize_dims(op), tiles)
        return [Split.of(elements=tiles)]

    def _blocks_of(self, op: OpInfo, counts: Sequence[int]) -> list[CandidateBlock] | None:
        """All conv / matmul candidates at every tile count priced at once
        (:meth:`_conv_block`), then cut into one block per tile count."""
        if op.kind not in ("conv", "matmul"):
            return None
        d = self.conv_dims(op)
        dp = self.datapath(op.act_bits)
        per_count = [conv_factor_rows(d, t, in_grain=self.in_grain[dp],
                                     out_grain=self.out_grain[dp], max_in_split=self.max_in_split)
                     for t in counts]
        return self._conv_block(op, d, per_count)

    # ------------------------------------------------------------------------- costs
    def _cost(self, op: OpInfo, split: Split) -> OpCost:
        kind = op.kind
        if kind in ("conv", "matmul"):
            return self._conv(op, self.conv_dims(op), split)
        if kind == "elementwise":
            return self._elementwise(op, split)
        if kind == "pool":
            return self._pool(op, split)
        if kind == "resize":
            return self._resize(op, split)
        if kind in ("concat", "movement", "reduce"):
            return self._copy_like(op, split)
        raise ValueError(f"{self.target_name}: no cost model for op kind '{kind}' "
                         f"(op '{op.name}')")

    def _conv(self, op: OpInfo, d: ConvDims, split: Split) -> OpCost:
        s = conv_share(d, split)
        dp = self.datapath(op.act_bits)
        dp_bits = _DATAPATH_BITS[dp]
        abits, pbits = op.act_bits, self.partials.get(dp, dp_bits)
        k_elems = s.kernel_elements * d.k
        # weights: the slice this tile computes with; stored once over the tiles sharing it
        if d.kernel_elements:
            w_slice = nbytes(k_elems, d.kernel_bits) + cdiv(
                d.other_weight_bytes * s.g * s.co, d.groups * d.cout_g)
            if s.spatial > 1:
                w_store = cdiv(d.weight_bytes, split.tiles)
                w_recv = max(0, w_slice - w_store)
            else:
                w_store, w_recv = w_slice, 0
            dequant = nbytes(k_elems, dp_bits) if d.kernel_bits < dp_bits else 0
            act_kernel = 0
        else:  # a kernel that is an activation arrives like an input
            w_store = w_recv = dequant = 0
            act_kernel = nbytes(k_elems * (s.n if d.kernel_batched else 1), d.act_kernel_bits)
        in_recv = nbytes(s.in_elements, abits) + act_kernel
        out_bytes = nbytes(s.out_elements, abits)
        # temporaries
        red_recv = 0
        if s.fi > 1:  # partial sums of the whole slice, then a reduction over fi tiles
            red_recv = nbytes(s.out_slice - s.out_elements, pbits)
            temp = nbytes(s.out_slice, pbits) + red_recv
        elif pbits != abits:  # wider partials are cast to the output type
            temp = nbytes(s.out_slice, pbits)
        else:
            temp = 0
        nonnative = bool(op.activation) and op.activation not in self.native
        temp += dequant + (self.nonnative_temps * out_bytes if nonnative else 0)
        has_bias = d.other_weight_bytes > 0
        sets = (self.sets["conv" if op.kind == "conv" else "matmul"] + (s.fi > 1) + has_bias
                + bool(op.activation) + nonnative + (dequant > 0))
        # cycles
        gi, go = self.in_grain[dp], self.out_grain[dp]
        macs_t = d.macs * s.work_fraction
        pad = (round_up(s.ci, gi) / s.ci) * (round_up(s.co, go) / s.co)
        amp = macs_t * pad / (self.macs_per_cycle[dp] * self.eff)
        vec = macs_t / self.lanes[dp]  # vector MACs (what a depthwise conv falls back to)
        cycles = math.ceil(min(amp, vec))
        if s.fi > 1:
            cycles += self._vector_cycles(s.out_elements * s.fi, 1, dp)
        elif pbits != abits:
            cycles += self._vector_cycles(s.out_slice, 1, dp)
        if has_bias:
            cycles += self._vector_cycles(s.out_elements, 1, dp)
        if op.activation:
            cycles += self._vector_cycles(s.out_elements, self.vops(op.activation), dp)
        if dequant:
            cycles += self._vector_cycles(k_elems, 2, dp)  # unpack + scale
        cycles += (sets - 1) * self.superstep
        return OpCost(
            split=split,
            always=nonzero(weights=w_store, **self.overhead(sets)),
            step=nonzero(weights=w_recv, act_in=in_recv, temp=temp),
            outputs=(out_bytes, *(0,) * (len(op.out_shapes) - 1)),
            compute_cycles=cycles,
            exchange_cycles=self._xcycles(w_recv + in_recv + red_recv),
        )

    def _conv_block(self, op: OpInfo, d: ConvDims,
                    per_count: Sequence[tuple[tuple[int, ...], ...]]
                    ) -> list[CandidateBlock] | None:
        """:meth:`_conv` of every split in ``rows`` at once: the same integer and float
        operations in the same order, element by element (numpy float64 is IEEE like Python's
        float, and every integer stays below 2**53). Only the totals the selection needs."""
        rows = [r for rs in per_count for r in rs]
        arr = np.array(rows, dtype=np.int64).reshape(len(rows), 6)
        s = conv_shares(d, arr)
        if s is None:
            return None
        dp = self.datapath(op.act_bits)
        dp_bits = _DATAPATH_BITS[dp]
        abits, pbits = op.act_bits, self.partials.get(dp, dp_bits)
        k_elems = s.kernel_elements * d.k
        zero = np.zeros(len(arr), dtype=np.int64)
        if d.kernel_elements:
            w_slice = -(-(k_elems * d.kernel_bits) // 8) + -(
                -(d.other_weight_bytes * s.g * s.co) // (d.groups * d.cout_g))
            spatial = s.spatial > 1
            w_store = np.where(spatial, -(-d.weight_bytes // s.tiles), w_slice)
            w_recv = np.where(spatial, np.maximum(0, w_slice - w_store), 0)
            dequant = -(-(k_elems * dp_bits) // 8) if d.kernel_bits < dp_bits else zero
            act_kernel = zero
        else:
            w_store = w_recv = dequant = zero
            act_kernel = -(-(k_elems * (s.n if d.kernel_batched else 1) * d.act_kernel_bits) // 8)
        in_recv = -(-(s.in_elements * abits) // 8) + act_kernel
        out_elements = s.out_elements
        out_bytes = -(-(out_elements * abits) // 8)
        out_slice = s.out_slice
        split_in = s.fi > 1
        red_recv = np.where(split_in, -(-((out_slice - out_elements) * pbits) // 8), 0)
        cast = -(-(out_slice * pbits) // 8)
        if pbits != abits:
            temp = np.where(split_in, cast + red_recv, cast)
        else:
            temp = np.where(split_in, cast + red_recv, 0)
        nonnative = bool(op.activation) and op.activation not in self.native
        temp = temp + dequant + (self.nonnative_temps * out_bytes if nonnative else 0)
        has_bias = d.other_weight_bytes > 0
        sets = (self.sets["conv" if op.kind == "conv" else "matmul"] + split_in.astype(np.int64)
                + has_bias + bool(op.activation) + nonnative + (dequant > 0).astype(np.int64))
        gi, go = self.in_grain[dp], self.out_grain[dp]
        lanes = self.lanes[dp]
        macs_t = d.macs * s.work_fraction
        pad = ((-(-s.ci // gi) * gi) / s.ci) * ((-(-s.co // go) * go) / s.co)
        amp = macs_t * pad / (self.macs_per_cycle[dp] * self.eff)
        vec = macs_t / lanes
        cycles = np.ceil(np.minimum(amp, vec)).astype(np.int64)

        def vcyc(elements: np.ndarray, ops: float) -> np.ndarray:
            """_vector_cycles, element-wise (``ops`` > 0; zero elements give zero)."""
            return np.ceil(elements * ops / lanes).astype(np.int64)

        if pbits != abits:
            cycles = cycles + np.where(split_in, vcyc(out_elements * s.fi, 1), vcyc(out_slice, 1))
        else:
            cycles = cycles + np.where(split_in, vcyc(out_elements * s.fi, 1), 0)
        if has_bias:
            cycles = cycles + vcyc(out_elements, 1)
        act_ops = self.vops(op.activation)
        if op.activation and act_ops:
            cycles = cycles + vcyc(out_elements, act_ops)
        cycles = cycles + np.where(dequant > 0, vcyc(k_elems, 2), 0)
        cycles = cycles + (sets - 1) * self.superstep
        received = w_recv + in_recv + red_recv
        exchange = np.where(received > 0, np.ceil(received / self.xbpc), 0).astype(np.int64)
        always = w_store + sets * self.set_bytes
        step = w_recv + in_recv + temp
        return conv_blocks(per_count, peak=always + step + out_bytes, always=always, step=step,
                           cycles=cycles + exchange)

    def _elementwise(self, op: OpInfo, split: Split) -> OpCost:
        t = split.tiles
        total = numel(op.out_shapes[0]) if op.out_shapes else 0
        share = cdiv(total, t)
        abits = op.act_bits
        dp = self.datapath(abits)
        recv = 0
        for i, shape in enumerate(op.in_shapes):
            if i == 0 and numel(shape) == total:
                continue  # the first input is where the op runs
            recv += nbytes(touched(numel(shape), share, total), abits)
        w_store = sum(nbytes(touched(w.elements, share, total), w.bits) for w in op.weights)
        sets = self.sets["elementwise"]
        in_place = (bool(op.in_shapes) and tuple(op.in_shapes[0]) == tuple(op.out_shapes[0])
                    and op.op_type != "Cast")
        return OpCost(
            split=split,
            always=nonzero(weights=w_store, **self.overhead(sets)),
            step=nonzero(act_in=recv),
            outputs=tuple(nbytes(cdiv(numel(o), t), abits) for o in op.out_shapes),
            compute_cycles=self._vector_cycles(share, self.vops(op.op_type), dp)
            + (sets - 1) * self.superstep,
            exchange_cycles=self._xcycles(recv),
            follows_input=bool(op.in_shapes),
            in_place=in_place,
        )

    def _pool(self, op: OpInfo, split: Split) -> OpCost:
        d = pool_dims(op)
        s = map_share(d, split)
        abits = op.act_bits
        dp = self.datapath(abits)
        recv = nbytes(s.in_elements, abits)
        average = 1 if "Average" in op.op_type else 0
        sets = self.sets["pool"]
        if s.partials > 1:  # a global pool split over its window: reduce the partials after
            # like a convolution's input-channel split: each tile keeps its share of the outputs
            # and receives the other tiles' partials of that share (in the partials' width)
            pbits = self.partials.get(dp, _DATAPATH_BITS[dp])
            final = cdiv(s.out_elements, s.partials)
            red_recv = nbytes(final * (s.partials - 1), pbits)
            sets += 1
            return OpCost(
                split=split,
                always=nonzero(**self.overhead(sets)),
                step=nonzero(act_in=recv, temp=nbytes(s.out_elements, pbits) + red_recv),
                outputs=(nbytes(final, abits),),
                compute_cycles=self._vector_cycles(s.in_elements, 1, dp)
                + self._vector_cycles(final, s.partials - 1 + average, dp)
                + (sets - 1) * self.superstep,
                exchange_cycles=self._xcycles(recv + red_recv),
            )
        ops = d.kh * d.kw + average
        return OpCost(
            split=split,
            always=nonzero(**self.overhead(sets)),
            step=nonzero(act_in=recv),
            outputs=(nbytes(s.out_elements, abits),),
            compute_cycles=self._vector_cycles(s.out_elements, ops, dp)
            + (sets - 1) * self.superstep,
            exchange_cycles=self._xcycles(recv),
        )

    def _resize(self, op: OpInfo, split: Split) -> OpCost:
        d = resize_dims(op)
        s = map_share(d, split, resize=True)
        abits = op.act_bits
        dp = self.datapath(abits)
        recv = nbytes(s.in_elements, abits)
        out = nbytes(s.out_elements, abits)
        mode = str(op.attrs.get("mode", "nearest"))
        compute = (cdiv(out, self.copy_bpc) if mode == "nearest"
                   else self._vector_cycles(s.out_elements, 4, dp))
        sets = self.sets["resize"]
        return OpCost(
            split=split,
            always=nonzero(**self.overhead(sets)),
            step=nonzero(act_in=recv),
            outputs=(out,),
            compute_cycles=compute + (sets - 1) * self.superstep,
            exchange_cycles=self._xcycles(recv),
        )

    def _copy_like(self, op: OpInfo, split: Split) -> OpCost:
        """Concat (when it copies), data movement and reductions: flat over elements."""
        t = split.tiles
        abits = op.act_bits
        dp = self.datapath(abits)
        outs = tuple(nbytes(cdiv(numel(o), t), abits) for o in op.out_shapes)
        in_total = sum(numel(s) for s in op.in_shapes)
        if op.kind == "concat":
            need = sum(numel(o) for o in op.out_shapes)
        elif op.kind == "movement" and op.op_type in _GATHERING_MOVES:
            need = min(in_total, sum(numel(o) for o in op.out_shapes))
        elif op.kind == "movement" and op.op_type in ("Tile", "Expand"):
            need = min(in_total, cdiv(sum(numel(o) for o in op.out_shapes), t) * t)
        else:
            need = in_total
        recv = nbytes(cdiv(need, t), abits)
        # index / shape constants: small ones on every tile, large ones (Gather tables) split
        w_store = sum(nbytes(cdiv(w.elements, t), w.bits) if w.elements >= t * self.min_elems
                      else w.bytes for w in op.weights)
        sets = self.sets[op.kind]
        if op.kind == "reduce":
            compute = self._vector_cycles(cdiv(in_total, t), self.vops(op.op_type), dp)
        else:
            compute = cdiv(sum(outs), self.copy_bpc)
        return OpCost(
            split=split,
            always=nonzero(weights=w_store, **self.overhead(sets)),
            step=nonzero(act_in=recv),
            outputs=outs,
            compute_cycles=compute + (sets - 1) * self.superstep,
            exchange_cycles=self._xcycles(recv),
        )
