"""The NorthPole cost model: layer by layer on rectangles of the 16 x 16 core array.

NorthPole runs a network fully prescheduled, one layer at a time, each layer spatially mapped onto
cores; weights and programs are stored once across the array and delivered to the running layer's
cores over the model and instruction NoCs (hardware.md, "consequence"). So, per op and split:

spread (stored once over the whole array for the whole run; the values are *totals*, not per core)
    ``weights``: all of the op's weights at their storage width; ``code``: one copy of the
    layer's program.
step (on each core of the running layer, while it runs)
    ``weights``: the core's weight slice, broadcast into its per-layer buffer -- less the share
    of this layer's weights the core itself stores, which it reads in place (:meth:`_delivered`);
    ``code``: the layer's program (only the running layer's program occupies a core);
    ``act_in``: the input slice (halo included) the activation NoC delivers;
    ``temp``: partial sums arriving over the partial-sum NoC when input channels are split.
outputs
    the core's share of the output activations.
always
    nothing: no per-layer state outlives its layer.

Cycles: the matrix unit at ``vmm_macs_per_cycle`` for the op's operand width (int8/int4/int2; a
float operand is an input error -- the matrix unit has no float mode), pipelined with the fp16
activation unit; element-wise work on the fp16 vector unit; weight delivery overlaps compute, so
only delivery beyond the compute time adds cycles.

The model's inputs and outputs live in the framebuffer (``io_location = "framebuffer"``), not in
core memory: the planner checks their total against ``framebuffer_bytes`` (see :meth:`io_bytes`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tilec.costmodel import OpCost, Split
from tilec.errors import InputError
from tilec.opinfo import GraphInfo, OpInfo, TensorInfo

from .base import (
    BaseCostModel,
    CandidateBlock,
    broadcast_inner,
    conv_blocks,
    model_io_bytes,
    nonzero,
    touched,
)
from .geometry import (
    ConvDims,
    cdiv,
    conv_candidates,
    conv_factor_rows,
    conv_share,
    conv_shares,
    nbytes,
    numel,
    weight_bytes,
)
from .spatial import (
    MapDims,
    MapShares,
    map_candidates,
    map_rows,
    map_share,
    map_shares,
    map_split,
    pool_dims,
    resize_dims,
)

if TYPE_CHECKING:
    from .target import TileTarget

_GATHERING_MOVES = frozenset({"Slice", "Split", "Gather"})


class NorthPoleCostModel(BaseCostModel):
    """NorthPole's layer-by-layer, stored-once-broadcast-per-layer model (module docstring)."""

    def __init__(self, target: TileTarget) -> None:
        super().__init__(target)
        s = self.spec
        comp = s["compute"]
        self.vmm = dict(comp["vmm_macs_per_cycle"])
        self.vector = int(comp["vector_ops_per_cycle"])
        self.act_unit = int(comp["activation_ops_per_cycle"])
        self.eff = float(comp["vmm_efficiency"])
        self.program = int(s["program"]["layer_program_bytes"])
        noc = s["noc"]
        self.anoc = float(noc["activation_bytes_per_cycle_per_core"])
        self.mnoc = float(noc["model_bytes_per_cycle_per_core"])
        self.pnoc = float(noc["partial_sum_bytes_per_cycle_per_core"])
        self.switch = int(noc["layer_switch_cycles"])
        self.framebuffer_bytes = int(s["io"]["framebuffer_bytes"])
        self.partials = {p: int(s["precision"][p]["partials_bits"])
                         for p in s["precision"]["supported"]}

    # ------------------------------------------------------------------------ protocol
    def sync_cycles(self, tiles: int) -> int:
        """Between two prescheduled layers only a pipeline drain and fill remains."""
        return self.switch if tiles > 0 else 0

    def io_bytes(self, graph: GraphInfo) -> int:
        """Bytes the framebuffer must hold: the model's inputs and outputs. More than
        ``framebuffer_bytes`` means the model cannot run on this chip as compiled."""
        inp, out = model_io_bytes(graph)
        return inp + out

    def input_bytes(self, tensor: TensorInfo, tiles: int) -> dict[str, int]:
        """Model inputs sit in the framebuffer, not in core memory: nothing per core. (The first
        layer's ``act_in`` still charges the slice each core receives while it runs.)"""
        return {}

    # ------------------------------------------------------------------------- helpers
    def _vmm_key(self, op: OpInfo, bits: int) -> str:
        for key, width in (("int2", 2), ("int4", 4), ("int8", 8)):
            if bits <= width and key in self.vmm:
                return key
        raise InputError(
            f"{op.name}: {self.target_name}'s matrix unit multiplies "
            f"{'/'.join(sorted(self.vmm, reverse=True))} operands only, but this {op.op_type} "
            f"has {bits}-bit operands (compile with --precision int8, int4 or int2 and keep the "
            f"quantize pass)")

    def _partials_bits(self, key: str) -> int:
        return self.partials.get(key, max(self.partials.values(), default=16))

    def _spread(self, op: OpInfo) -> dict[str, int]:
        return nonzero(weights=weight_bytes(op), code=self.program)

    def _delivered(self, op: OpInfo, w_slice):  # int or an int64 array (the block path)
        """The part of a core's weight slice that must be delivered into its per-layer buffer.

        The spread store holds ``ceil(weights / cores)`` bytes of this layer on *every* core.
        Modelling choice: the prescheduled compiler lays that local share out inside the slice
        the core multiplies with (always possible: each running core's slice is at least
        ``weights / running cores`` >= the local share), and the core reads it in place; only
        the rest arrives over the model NoC. Charging the whole slice again counted a large
        fully connected layer's weights twice -- VGG-16's 98 MiB fc6 on all 256 cores needs no
        buffer beyond what every core already stores.
        """
        local = -(-weight_bytes(op) // self.tiles)
        return np.maximum(w_slice - local, 0) if isinstance(w_slice, np.ndarray) else max(
            0, w_slice - local)

    def _vec(self, elements: int, ops: float, rate: int) -> int:
        return math.ceil(elements * ops / rate) if elements and ops else 0

    # -------------------------------------------------------------------- candidates
    def _candidates(self, op: OpInfo, tiles: int) -> Iterable[Split]:
        kind = op.kind
        if kind in ("conv", "matmul"):
            d = self.conv_dims(op)
            return conv_candidates(d, tiles, in_grain=1, out_grain=1,
                                   max_in_split=self.max_in_split)
        if kind in ("pool", "resize"):
            return map_candidates(self._map_dims(op), tiles)
        return [Split.of(elements=tiles)]

    def _blocks_of(self, op: OpInfo, counts: Sequence[int]) -> list[CandidateBlock] | None:
        """All conv / matmul candidates at every tile count priced at once
        (:meth:`_conv_block`), and so are a pool's or resize's (:meth:`_map_terms`); then cut
        into one block per tile count."""
        if op.kind in ("pool", "resize"):
            d = self._map_dims(op)
            per_count = map_rows(d, counts)
            t = self._map_terms(op, d, map_shares(d, np.concatenate(per_count)))
            step = t["recv"] + t["temp"] + self.program
            starts = np.cumsum([0, *(len(r) for r in per_count)])
            return conv_blocks(per_count, peak=step + t["out"], always=step * 0, step=step,
                               cycles=t["compute"] + t["exchange"],
                               cost_of=lambda k, i: self._map_cost(
                                   op, map_split(per_count[k][i]), t, int(starts[k]) + i),
                               split_of=map_split)
        if op.kind not in ("conv", "matmul"):
            return None
        d = self.conv_dims(op)
        per_count = [conv_factor_rows(d, t, in_grain=1, out_grain=1,
                                     max_in_split=self.max_in_split)
                     for t in counts]
        return self._conv_block(op, d, per_count)

    # ------------------------------------------------------------------------- costs
    def _cost(self, op: OpInfo, split: Split) -> OpCost:
        kind = op.kind
        if kind in ("conv", "matmul"):
            return self._conv(op, self.conv_dims(op), split)
        if kind == "elementwise":
            return self._elementwise(op, split)
        if kind in ("pool", "resize"):
            return self._map(op, split)
        if kind in ("concat", "movement", "reduce"):
            return self._copy_like(op, split)
        if kind in ("topk", "nms"):
            raise InputError(f"{self.target_name}: node '{op.name}' ({op.op_type}) is marked to "
                             "run on the chip, but NorthPole runs no data-dependent control "
                             "flow (slides: fully prescheduled, no data-dependent branches); "
                             "drop its tilec.on_device annotation to run it on the host")
        raise ValueError(f"{self.target_name}: no cost model for op kind '{kind}' "
                         f"(op '{op.name}')")

    def _conv(self, op: OpInfo, d: ConvDims, split: Split) -> OpCost:
        s = conv_share(d, split)
        bits = max(op.act_bits, d.kernel_bits if d.kernel_elements else d.act_kernel_bits)
        key = self._vmm_key(op, bits)
        abits = op.act_bits
        k_elems = s.kernel_elements * d.k
        if d.kernel_elements:
            w_slice = nbytes(k_elems, d.kernel_bits) + cdiv(
                d.other_weight_bytes * s.g * s.co, d.groups * d.cout_g)
            act_kernel = 0
        else:
            w_slice = 0
            act_kernel = nbytes(k_elems * (s.n if d.kernel_batched else 1), d.act_kernel_bits)
        w_slice = self._delivered(op, w_slice)
        in_recv = nbytes(s.in_elements, abits) + act_kernel
        partial = nbytes(s.out_slice, self._partials_bits(key)) if s.fi > 1 else 0
        vmm = d.macs * s.work_fraction / (self.vmm[key] * self.eff)
        act = s.out_elements * self.vops(op.activation) / self.act_unit if op.activation else 0
        acc = s.out_elements * s.fi / self.vector if s.fi > 1 else 0  # summing partial sums
        compute = math.ceil(max(vmm, act, acc))  # the three units are pipelined
        delivery = w_slice / self.mnoc  # weights stream in while the layer computes
        exchange = in_recv / self.anoc + max(0.0, delivery - compute) + partial / self.pnoc
        return OpCost(
            split=split,
            spread=self._spread(op),
            step=nonzero(weights=w_slice, act_in=in_recv, temp=partial, code=self.program),
            outputs=(nbytes(s.out_elements, abits), *(0,) * (len(op.out_shapes) - 1)),
            compute_cycles=compute,
            exchange_cycles=math.ceil(exchange),
        )

    def _conv_block(self, op: OpInfo, d: ConvDims,
                    per_count: Sequence[tuple[tuple[int, ...], ...]]
                    ) -> list[CandidateBlock] | None:
        """:meth:`_conv` of every split in ``rows`` at once, with the same integer and float
        operations in the same order (see :meth:`IpuCostModel._conv_block`)."""
        rows = [r for rs in per_count for r in rs]
        arr = np.array(rows, dtype=np.int64).reshape(len(rows), 6)
        s = conv_shares(d, arr)
        if s is None:
            return None
        bits = max(op.act_bits, d.kernel_bits if d.kernel_elements else d.act_kernel_bits)
        key = self._vmm_key(op, bits)
        abits = op.act_bits
        k_elems = s.kernel_elements * d.k
        zero = np.zeros(len(arr), dtype=np.int64)
        if d.kernel_elements:
            w_slice = -(-(k_elems * d.kernel_bits) // 8) + -(
                -(d.other_weight_bytes * s.g * s.co) // (d.groups * d.cout_g))
            act_kernel = zero
        else:
            w_slice = zero
            act_kernel = -(-(k_elems * (s.n if d.kernel_batched else 1) * d.act_kernel_bits) // 8)
        w_slice = self._delivered(op, w_slice)
        in_recv = -(-(s.in_elements * abits) // 8) + act_kernel
        split_in = s.fi > 1
        out_elements = s.out_elements
        partial = np.where(split_in, -(-(s.out_slice * self._partials_bits(key)) // 8), 0)
        vmm = d.macs * s.work_fraction / (self.vmm[key] * self.eff)
        if op.activation:
            act = out_elements * self.vops(op.activation) / self.act_unit
        else:
            act = np.zeros(len(arr))
        acc = np.where(split_in, out_elements * s.fi / self.vector, 0.0)
        compute = np.ceil(np.maximum(np.maximum(vmm, act), acc)).astype(np.int64)
        delivery = w_slice / self.mnoc
        exchange = in_recv / self.anoc + np.maximum(0.0, delivery - compute) + partial / self.pnoc
        step = w_slice + in_recv + partial + self.program
        out_bytes = -(-(out_elements * abits) // 8)
        return conv_blocks(per_count, peak=step + out_bytes, always=zero, step=step,
                           cycles=compute + np.ceil(exchange).astype(np.int64))

    def _elementwise(self, op: OpInfo, split: Split) -> OpCost:
        t = split.tiles
        total = numel(op.out_shapes[0]) if op.out_shapes else 0
        share = cdiv(total, t)
        abits = op.act_bits
        recv = 0
        out = op.out_shapes[0] if op.out_shapes else ()
        for i, shape in enumerate(op.in_shapes):
            if i == 0 and numel(shape) == total:
                continue
            recv += nbytes(touched(numel(shape), share, total, broadcast_inner(out, shape)),
                           abits)
        w_step = sum(nbytes(touched(w.elements, share, total, broadcast_inner(out, w.shape)),
                            w.bits) for w in op.weights)
        in_place = bool(op.in_shapes) and tuple(op.in_shapes[0]) == tuple(op.out_shapes[0])
        return OpCost(
            split=split,
            spread=self._spread(op),
            step=nonzero(weights=w_step, act_in=recv, code=self.program),
            outputs=tuple(nbytes(cdiv(numel(o), t), abits) for o in op.out_shapes),
            compute_cycles=self._vec(share, self.vops(op.op_type), self.vector),
            exchange_cycles=math.ceil(recv / self.anoc) if recv else 0,
            follows_input=bool(op.in_shapes),
            in_place=in_place,
        )

    def _map_dims(self, op: OpInfo) -> MapDims:
        return resize_dims(op) if op.kind == "resize" else pool_dims(op)

    def _map(self, op: OpInfo, split: Split) -> OpCost:
        """One split's price: :meth:`_map_terms` of its one share (the same code prices every
        candidate at once in :meth:`_blocks_of`)."""
        d = self._map_dims(op)
        t = self._map_terms(op, d, MapShares.of(map_share(d, split)))
        return self._map_cost(op, split, t, 0)

    def _map_cost(self, op: OpInfo, split: Split, t: dict[str, np.ndarray], i: int) -> OpCost:
        return OpCost(
            split=split,
            spread=self._spread(op),
            step=nonzero(act_in=int(t["recv"][i]), temp=int(t["temp"][i]), code=self.program),
            outputs=(int(t["out"][i]),),
            compute_cycles=int(t["compute"][i]),
            exchange_cycles=int(t["exchange"][i]),
        )

    def _map_terms(self, op: OpInfo, d: MapDims, s: MapShares) -> dict[str, np.ndarray]:
        """Pooling (vector unit) and resize (activation NoC copies) on every share of ``s``;
        a global pool split over its window sends its partial sums over the PNoC."""
        abits = op.act_bits

        def vec(elements: np.ndarray, ops) -> np.ndarray:
            return np.ceil(elements * ops / self.vector).astype(np.int64)

        def nb(elements: np.ndarray, bits: int) -> np.ndarray:
            return -(-(elements * bits) // 8)

        recv = nb(s.in_elements, abits)
        average = 1 if "Average" in op.op_type else 0
        glob = s.partials > 1
        pbits = self._partials_bits(next(
            (k for k, w in (("int2", 2), ("int4", 4), ("int8", 8)) if abits <= w), "int8"))
        final = np.where(glob, -(-s.out_elements // s.partials), s.out_elements)
        partial = np.where(glob, nb(final * (s.partials - 1), pbits), 0)
        temp = np.where(glob, nb(s.out_elements, pbits) + partial, 0)
        ops = 1 if op.kind == "resize" else d.kh * d.kw + average
        compute = np.where(glob, vec(s.in_elements, 1) + vec(final, s.partials - 1 + average),
                           vec(s.out_elements, ops))
        exchange = np.ceil(recv / self.anoc + partial / self.pnoc).astype(np.int64)
        return {"recv": recv, "temp": temp, "out": nb(final, abits), "compute": compute,
                "exchange": exchange}

    def _copy_like(self, op: OpInfo, split: Split) -> OpCost:
        t = split.tiles
        abits = op.act_bits
        outs = tuple(nbytes(cdiv(numel(o), t), abits) for o in op.out_shapes)
        in_total = sum(numel(s) for s in op.in_shapes)
        if op.kind == "concat" or (op.kind == "movement" and op.op_type in _GATHERING_MOVES):
            need = min(in_total, sum(numel(o) for o in op.out_shapes))
        else:
            need = in_total
        recv = nbytes(cdiv(need, t), abits)
        ops = self.vops(op.op_type) if op.kind == "reduce" else 1
        w_step = sum(min(w.bytes, nbytes(cdiv(w.elements, t) + 1, w.bits)) for w in op.weights)
        return OpCost(
            split=split,
            spread=self._spread(op),
            step=nonzero(weights=w_step, act_in=recv, code=self.program),
            outputs=outs,
            compute_cycles=self._vec(cdiv(max(in_total, 1), t), ops, self.vector),
            exchange_cycles=math.ceil(recv / self.anoc) if recv else 0,
        )
