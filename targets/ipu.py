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

from .base import (
    BaseCostModel,
    BytesLRU,
    CandidateBlock,
    broadcast_inner,
    conv_blocks,
    nonzero,
    touched,
)
from .geometry import (
    SPLIT_COLUMNS,
    ConvDims,
    balanced_rows,
    cdiv,
    conv_shares,
    conv_split,
    efficient_factors,
    freeze,
    nbytes,
    numel,
    without_fields,
)
from .ipu_postprocess import nms_cost, topk_cost
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

_DATAPATH_BITS = {"fp16": 16, "fp32": 32}
_GATHERING_MOVES = frozenset({"Slice", "Split", "Gather"})  # read only what they output
# poplin ConvVertices.cpp (createConvPartialAmpVertex): a worklist entry is {outOffset,
# numFieldElems, inOffset}, 16 bits each in the limited vertex
WORKLIST_ENTRY_BYTES = 6
# hw: "worker threads 6 per tile"; the rows are divided among them
# (poplin ConvUtilInternal.cpp partitionConvPartialByWorker)
WORKERS = 6

# Fields that only weigh the priced quantities (cycles per MAC, per superstep, per exchanged
# byte, bytes per compute set, the fastest policy's slack, the reserved bytes that shrink the
# budget): the candidate rows of a conv -- which serial splits meet availableMemoryProportion --
# never read them, so chip descriptions that differ only here (the uncertainty band's settings)
# share their rows.
_PRICE_ONLY = {
    "compute": ("conv_efficiency", "copy_bytes_per_cycle"),
    "exchange": ("superstep_cycles", "bytes_per_cycle_per_tile"),
    "overheads": ("bytes_per_compute_set",),
    "splits": ("fastest_slack",),
    "memory": ("reserved", "reserved_bytes_per_tile"),
    "io": ("host_to_device_bytes_per_s", "device_to_host_bytes_per_s"),
}
_ROWS = BytesLRU(128 * 2**20, 8192)
"""Candidate rows per (rows fingerprint, op shape, tile counts), least recently used dropped
beyond 128 MB (modelling choice of the implementation: rows grow with the batch, ~0.2 MB per conv
shape at batch 1, ~0.9 MB at batch 8; the priced blocks hold the same arrays, so keeping them
costs little more, and re-deriving them prices every candidate again: at 24 (64) MB the band of
YOLOv4-P5 at batch 8 priced 7x (4x) the terms in 3x (1.5x) the time)."""
_RAW = BytesLRU(32 * 2**20, 400)
"""Unweighed conv terms per (rows fingerprint, op shape, tile counts), least recently used
dropped beyond 32 MB (modelling choice of the implementation: ~0.3 MB per shape at batch 1,
~1.3 MB at batch 8; the band and the what-if re-weigh them for each description they try;
dropped ones are priced again)."""


def _rows_fingerprint(spec: dict) -> tuple:
    """The part of a chip description a conv's candidate rows depend on (all but
    :data:`_PRICE_ONLY` and the band's ``[ranges]``), hashable."""
    return freeze(without_fields(spec, {**_PRICE_ONLY, "ranges": None}))


def _take(raw: dict, idx: np.ndarray) -> dict:
    """Rows ``idx`` of :meth:`IpuCostModel._conv_raw`'s terms (its scalars kept as they are)."""
    return {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim == 1 else v)
            for k, v in raw.items()}


def _concat_raw(parts: list[dict]) -> dict:
    """:meth:`IpuCostModel._conv_raw` terms of several row sets, stacked in order (a term that
    is a scalar in one part is broadcast to that part's rows)."""
    sizes = [len(p["w_store"]) for p in parts]
    out: dict = {}
    for k, v in parts[0].items():
        if k in ("dp", "obj"):
            out[k] = v
            continue
        out[k] = np.concatenate([
            p[k] if isinstance(p[k], np.ndarray) and p[k].ndim == 1
            else np.full(n, p[k], dtype=object if parts[0]["obj"] else None)
            for p, n in zip(parts, sizes, strict=True)])
    return out


class IpuCostModel(BaseCostModel):
    """Poplar-style cost model (see the module docstring)."""

    sram_priced = True  # serial splits are added to meet a bound proportional to the tile

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
        # loop iterations an on-device NMS is priced at (data-dependent; ipu_postprocess.py)
        self.nms_iterations = int(comp.get("nms_iterations", 1 << 30))
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
        self._rows_key = _rows_fingerprint(s)
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

    def _always(self, weights: int, state: int, sets: int) -> dict[str, int]:
        """Always-live bytes: stored weights, the compute sets' overheads and extra vertex
        state (a conv's worklists)."""
        cats = self.overhead(sets)
        cats["state"] += state
        return nonzero(weights=weights, **cats)

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
            return [conv_split(r) for r in self._conv_rows(op, [tiles])[0]]
        if kind in ("pool", "resize"):
            d, grain = self._map_dims(op)
            return map_candidates(d, tiles, grain=grain)
        return [Split.of(elements=tiles)]

    def pool_grain(self, op: OpInfo) -> int:
        """Channels a pool hands out together: 8 bytes of its datapath type (popnn
        PoolPlan.cpp getPlan: ``chanGrainSize = 8 / typeSize``, 4 halves or 2 floats)."""
        return max(1, 64 // _DATAPATH_BITS[self.datapath(op.act_bits)])

    def _blocks_of(self, op: OpInfo, counts: Sequence[int]) -> list[CandidateBlock] | None:
        """All conv / matmul candidates at every tile count priced at once
        (:meth:`_conv_block`), and so are a pool's or resize's (:meth:`_map_terms`); then cut
        into one block per tile count."""
        if op.kind in ("pool", "resize"):
            d, grain = self._map_dims(op)
            per_count = map_rows(d, counts, grain=grain)
            t = self._map_terms(op, d, map_shares(d, np.concatenate(per_count), grain=grain))
            always = t["sets"] * self.set_bytes
            step = t["recv"] + t["temp"]
            starts = np.cumsum([0, *(len(r) for r in per_count)])
            return conv_blocks(per_count, peak=always + step + t["out"], always=always,
                               step=step, cycles=t["compute"] + t["exchange"],
                               cost_of=lambda k, i: self._map_cost(
                                   map_split(per_count[k][i]), t, int(starts[k]) + i),
                               split_of=map_split)
        if op.kind not in ("conv", "matmul"):
            return None
        return self._conv_block(op, self.conv_dims(op), self._conv_rows(op, counts),
                                (self._rows_key, self._signature(op), tuple(counts)))

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
        if kind == "topk":
            return topk_cost(self, op, split)
        if kind == "nms":
            return nms_cost(self, op, split)
        raise ValueError(f"{self.target_name}: no cost model for op kind '{kind}' "
                         f"(op '{op.name}')")

    def _conv(self, op: OpInfo, d: ConvDims, split: Split) -> OpCost:
        """One split's price: :meth:`_conv_terms` of its one row (the same code prices every
        candidate at once in :meth:`_conv_block`, so the two cannot disagree)."""
        f = split.as_dict()
        row = np.array([[f.get(a, 1) if a != "span" else f.get(a, 0) for a in SPLIT_COLUMNS]],
                       dtype=np.int64)
        t = self._conv_terms(op, d, row)
        if t is None:  # beyond int64-exact range: the same arithmetic on Python ints
            t = self._conv_terms(op, d, row.astype(object))
        assert t is not None
        return self._conv_cost(op, split, t, 0)

    def _conv_cost(self, op: OpInfo, split: Split, t: dict[str, np.ndarray], i: int) -> OpCost:
        """The OpCost of row ``i`` of priced terms ``t``."""
        g = {k: int(v[i]) for k, v in t.items()}
        return OpCost(
            split=split,
            always=self._always(g["w_store"], g["worklists"], g["sets"]),
            step=nonzero(weights=g["w_recv"], act_in=g["in_recv"], temp=g["temp"]),
            outputs=(g["out_bytes"], *(0,) * (len(op.out_shapes) - 1)),
            compute_cycles=g["compute"],
            exchange_cycles=g["exchange"],
        )

    def _conv_terms(self, op: OpInfo, d: ConvDims, rows: np.ndarray
                    ) -> dict[str, np.ndarray] | None:
        """Bytes and cycles of every row of ``rows`` (``[k, 9]``, columns :data:`SPLIT_COLUMNS`)
        at once, as arrays; None when an int64 could overflow (the caller retries on Python
        ints, ``rows.astype(object)``). :meth:`_conv_raw` weighed by :meth:`_conv_price`."""
        raw = self._conv_raw(op, d, rows)
        return None if raw is None else self._conv_price(raw)

    def _conv_raw(self, op: OpInfo, d: ConvDims, rows: np.ndarray) -> dict | None:
        """Bytes of every row of ``rows`` and the quantities its cycles are weighed from (the
        MACs the AMP does, grain padding included; vector work; supersteps; bytes received),
        none of them depending on :data:`_PRICE_ONLY` fields.

        Memory follows PopLibs' own per-tile estimate of a convolution's temporaries
        (poplin ConvModel.cpp, ``addConvTempMemoryEstimate``): the tile's input slice with its
        halo, its weight slice and its partial sums, each for one serial slice only (a serial
        split's temporaries "should not outlive an iteration of the loop"), plus, for a serial
        input-channel split, an in-place accumulator of the tile's outputs (``addInPlaceTemp``).
        The reduction of a parallel input-channel split (``reduceTemp``, partials x result type)
        is taken in a max with that sum by PopLibs, and it never exceeds it, so it adds nothing.
        """
        obj = rows.dtype == object

        def ceil_int(x) -> np.ndarray:
            """Ceiling of a float array as ints (Python ints on the object path)."""
            if obj:
                return np.array([math.ceil(float(v)) for v in np.ravel(x)], dtype=object)
            return np.ceil(x).astype(np.int64)

        fo, fi = rows[:, 2], rows[:, 3]
        so, si = rows[:, 7], rows[:, 8]
        serial = so * si
        dp = self.datapath(op.act_bits)
        gi, go = self.in_grain[dp], self.out_grain[dp]
        par = rows.copy()[:, :6]
        tile = conv_shares(d, par, gi, go, exact=not obj)  # the tile's whole share
        if bool((serial == 1).all()):
            sl = tile  # no serial split: one slice is the whole share
        else:
            par[:, 2] = fo * so
            par[:, 3] = fi * si
            sl = conv_shares(d, par, gi, go, exact=not obj)  # one serial slice of it
        if tile is None or sl is None:
            return None
        dp_bits = _DATAPATH_BITS[dp]
        abits, pbits = op.act_bits, self.partials.get(dp, dp_bits)
        k_tile = tile.kernel_elements * d.k
        k_slice = sl.kernel_elements * d.k
        zero = rows[:, 0] * 0
        if d.kernel_elements:
            def wbytes(k_elems, sh):
                return -(-(k_elems * d.kernel_bits) // 8) + -(
                    -(d.other_weight_bytes * sh.g * sh.co) // (d.groups * d.cout_g))
            spatial = tile.spatial > 1
            w_tile = wbytes(k_tile, tile)
            # stored once over the tiles that share the slice (batch / spatial splits), else the
            # tile's own slice (created in the plan's layout, poplin createWeights)
            w_store = np.where(spatial, -(-d.weight_bytes // tile.tiles), w_tile)
            # received per serial slice: what of the slice is not already on the tile
            w_recv = np.where(spatial, np.maximum(0, wbytes(k_slice, sl) - -(-w_store // serial)),
                              0)
            dequant = (-(-(k_slice * dp_bits) // 8) if d.kernel_bits < dp_bits else zero)
            act_kernel = zero
        else:  # a kernel that is an activation (batched matmul) arrives like an input
            w_store = w_recv = dequant = zero
            act_kernel = -(-(k_slice * (sl.n if d.kernel_batched else 1) * d.act_kernel_bits) // 8)
        in_recv = -(-(sl.in_elements * abits) // 8) + act_kernel
        out_elements = tile.out_elements
        out_bytes = -(-(out_elements * abits) // 8)
        partials = -(-(sl.out_slice * pbits) // 8)
        accumulate = np.where(si > 1, -(-(tile.out_slice * pbits) // 8), 0)
        nonnative = bool(op.activation) and op.activation not in self.native
        temp = partials + accumulate + dequant + (self.nonnative_temps * out_bytes if nonnative
                                                  else 0)
        split_in = (fi > 1) * 1
        has_bias = d.other_weight_bytes > 0
        sets = (self.sets["conv" if op.kind == "conv" else "matmul"] + split_in + has_bias
                + bool(op.activation) + nonnative + (dequant > 0) * 1)
        # vertex state that grows with the tile's share: the AMP nx1 vertex's worklists, one
        # entry of three 16-bit values per kernel position, per output row of the tile and per
        # worker boundary (poplin ConvVertices.cpp createConvPartialAmpVertex; up to 5 extra
        # segments where 6 workers share the rows), per serial slice
        worklists = np.where((d.k > 1) | (sl.n * sl.oh > 1),
                             WORKLIST_ENTRY_BYTES * d.k * (sl.n * sl.oh + WORKERS - 1) * serial, 0)
        # cycles of one slice, times the slices: the AMP's share priced by _conv_price (it is
        # weighed by conv_efficiency); the vector work and the superstep count here
        macs_t = d.macs * sl.work_fraction
        pad = ((-(-sl.ci // gi) * gi) / sl.ci) * ((-(-sl.co // go) * go) / sl.co)
        lanes = self.lanes[dp]

        def vcyc(elements, ops: float):
            return ceil_int(elements * ops / lanes)

        vector = zero
        if pbits != abits:
            vector = vector + np.where(fi > 1, vcyc(out_elements * fi, 1),
                                       vcyc(tile.out_slice, 1))
        else:
            vector = vector + np.where(fi > 1, vcyc(out_elements * fi, 1), 0)
        if has_bias:
            vector = vector + vcyc(out_elements, 1)
        act_ops = self.vops(op.activation)
        if op.activation and act_ops:
            vector = vector + vcyc(out_elements, act_ops)
        vector = vector + np.where(dequant > 0, vcyc(k_slice, 2) * serial, 0)
        supersteps = sets - 1 + (serial - 1) * (1 + (dequant > 0) * 1)
        # exchange: what is not already resident -- an input slice is already on the tile for
        # 1 / outChanSplit of its elements (poplin ConvModel.cpp addExchangeCycleEstimates)
        in_moved = in_recv - -(-(in_recv - act_kernel) // (fo * so))
        red_recv = np.where(fi > 1, -(-((tile.out_slice - out_elements) * pbits) // 8), 0)
        received = (w_recv + in_moved) * serial + red_recv
        return {"w_store": w_store, "w_recv": w_recv, "in_recv": in_recv, "temp": temp,
                "out_bytes": out_bytes, "sets": sets, "worklists": worklists,
                "amp_work": macs_t * pad, "vec": macs_t / lanes, "serial": serial,
                "vector": vector, "supersteps": supersteps, "received": received,
                "dp": dp, "obj": obj}

    def _conv_price(self, raw: dict) -> dict[str, np.ndarray]:
        """Cycles of :meth:`_conv_raw`'s quantities under this description's weights
        (``conv_efficiency``, ``superstep_cycles``, the exchange rate): the only part of a
        conv's price that the uncertainty band's settings change, so rows shared across them
        (:data:`_RAW`) are re-weighed, not re-derived."""
        def ceil_int(x) -> np.ndarray:
            if raw["obj"]:
                return np.array([math.ceil(float(v)) for v in np.ravel(x)], dtype=object)
            return np.ceil(x).astype(np.int64)

        amp = raw["amp_work"] / (self.macs_per_cycle[raw["dp"]] * self.eff)
        compute = (ceil_int(np.minimum(amp, raw["vec"])) * raw["serial"] + raw["vector"]
                   + raw["supersteps"] * self.superstep)
        out = {k: raw[k] for k in ("w_store", "w_recv", "in_recv", "temp", "out_bytes", "sets",
                                   "worklists")}
        out["compute"] = compute
        out["exchange"] = ceil_int(raw["received"] / self.xbpc)
        return out

    def _conv_rows(self, op: OpInfo, caps: Sequence[int]) -> tuple[np.ndarray, ...]:
        """Candidate rows (:data:`SPLIT_COLUMNS`) of a conv / matmul at each cap, cached per
        op shape: the balanced parallel splits (:func:`geometry.balanced_rows`), and for each
        one whose temporaries exceed ``availableMemoryProportion`` its smallest serial split
        over output channels and over input channels that meets it, as PopLibs' planner adds
        serial splits to meet its memory bound (never both at once: ConvModel.cpp)."""
        key = (self._rows_key, self._signature(op), tuple(caps))
        hit = _ROWS.get(key)
        if hit is not None:
            return hit
        d = self.conv_dims(op)
        dp = self.datapath(op.act_bits)
        gi, go = self.in_grain[dp], self.out_grain[dp]
        cap = int(self.amp * self.bytes_per_tile)
        bases = balanced_rows(d, caps, in_grain=gi, out_grain=go, max_in_split=self.max_in_split)
        # every cap's rows priced together (a few large numpy calls, not a few per cap)
        rows = np.concatenate([np.concatenate([b, np.ones((len(b), 2), dtype=np.int64)], axis=1)
                               for b in bases], axis=0)
        owner = np.repeat(np.arange(len(bases)), [len(b) for b in bases])
        raw = self._conv_raw(op, d, rows) if len(rows) else None
        if raw is None and len(rows) and len(caps) > 1:
            # beyond int64 for some cap: each cap on its own (as exact as one cap can be)
            return self._remember_rows(key, tuple(self._conv_rows(op, [c])[0] for c in caps))
        extra_rows, extra_owner, extra_raw = [rows], [owner], [raw]
        if raw is not None:
            # the memory terms decide the serial splits: no price weights needed
            over = np.nonzero((raw["w_recv"] + raw["in_recv"] + raw["temp"]) > cap)[0]
            for col, extent, grain, par in ((7, d.cout_g, go, 2), (8, d.cin_g, gi, 3)):
                if not len(over):
                    break
                # every (over-bound row, serial factor) pair priced in one call; each row keeps
                # its smallest factor that meets the bound
                factors = np.asarray(efficient_factors(extent, grain)[1:], dtype=np.int64)
                if not len(factors):
                    continue
                grains = -(-extent // grain)
                units = -(-grains // rows[over, par])  # grains on the tile
                ri, fj = np.nonzero(units[:, None] >= factors[None, :])
                if not len(ri):
                    continue
                cand = rows[over[ri]].copy()
                cand[:, col] = factors[fj]
                craw = self._conv_raw(op, d, cand)
                if craw is None:
                    continue
                # serial rows' memory: w_recv + in_recv + temp (no price weights involved)
                meets = (craw["w_recv"] + craw["in_recv"] + craw["temp"]) <= cap
                # pairs are ordered by row then factor: the first meeting pair of each row
                ok = np.nonzero(meets)[0]
                if len(ok):
                    first = ok[np.unique(ri[ok], return_index=True)[1]]
                    extra_rows.append(cand[first])
                    extra_owner.append(owner[over[ri[first]]])
                    extra_raw.append(_take(craw, first))
        every = np.concatenate(extra_rows, axis=0)
        whose = np.concatenate(extra_owner)
        # each cap's rows in lexicographic order: one sort, by cap first (the balanced rows
        # come sorted, cap by cap: only serial rows added to them need one)
        if len(extra_rows) == 1:
            order = np.arange(len(every))
        else:
            order = np.lexsort((*(every[:, j] for j in reversed(range(every.shape[1]))), whose))
        ends = np.cumsum(np.bincount(whose, minlength=len(bases)))
        sorted_rows = every[order]
        out = tuple(np.split(sorted_rows, ends[:-1]))
        if raw is not None and len(every):
            # the unweighed terms of the final rows, in their order: _conv_block reads them
            # instead of deriving them a second time
            _RAW[key] = _take(_concat_raw(extra_raw), order)
        return self._remember_rows(key, out)

    def _remember_rows(self, key: tuple, rows: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        _ROWS[key] = rows
        return rows

    def _conv_block(self, op: OpInfo, d: ConvDims, per_count: Sequence[np.ndarray],
                    key: tuple) -> list[CandidateBlock] | None:
        """Every candidate of every cap priced at once: :meth:`_conv_raw` (shared by every
        description with the same rows, :data:`_RAW`) weighed by :meth:`_conv_price`. The kept
        candidates' OpCosts are read off the same arrays (:meth:`_conv_cost`), so the block and
        the plan cannot disagree; :meth:`_conv` prices a single split through the same code."""
        raw = _RAW.get(key)
        if raw is None:
            raw = self._conv_raw(op, d, np.concatenate(per_count, axis=0))
            if raw is None:
                return None
            _RAW[key] = raw
        t = self._conv_price(raw)
        always = t["w_store"] + t["worklists"] + t["sets"] * self.set_bytes
        step = t["w_recv"] + t["in_recv"] + t["temp"]
        starts = np.cumsum([0, *(len(r) for r in per_count)])

        def cost_of(block: int, i: int) -> OpCost:
            return self._conv_cost(op, conv_split(per_count[block][i]), t,
                                   int(starts[block]) + i)

        return conv_blocks(per_count, peak=always + step + t["out_bytes"], always=always,
                           step=step, cycles=t["compute"] + t["exchange"], cost_of=cost_of)

    def _elementwise(self, op: OpInfo, split: Split) -> OpCost:
        t = split.tiles
        total = numel(op.out_shapes[0]) if op.out_shapes else 0
        share = cdiv(total, t)
        abits = op.act_bits
        dp = self.datapath(abits)
        recv = 0
        out = op.out_shapes[0] if op.out_shapes else ()
        for i, shape in enumerate(op.in_shapes):
            if i == 0 and numel(shape) == total:
                continue  # the first input is where the op runs
            recv += nbytes(touched(numel(shape), share, total, broadcast_inner(out, shape)),
                           abits)
        w_store, w_recv = self._broadcast_weights(op, share, total, t)
        sets = self.sets["elementwise"]
        in_place = (bool(op.in_shapes) and tuple(op.in_shapes[0]) == tuple(op.out_shapes[0])
                    and op.op_type != "Cast")
        return OpCost(
            split=split,
            always=nonzero(weights=w_store, **self.overhead(sets)),
            step=nonzero(act_in=recv, weights=w_recv),
            outputs=tuple(nbytes(cdiv(numel(o), t), abits) for o in op.out_shapes),
            compute_cycles=self._vector_cycles(share, self.vops(op.op_type), dp)
            + (sets - 1) * self.superstep,
            exchange_cycles=self._xcycles(recv + w_recv),
            follows_input=bool(op.in_shapes),
            in_place=in_place,
        )

    def _broadcast_weights(self, op: OpInfo, share: int, total: int, tiles: int
                           ) -> tuple[int, int]:
        """(stored, received) bytes per tile of the constants an element-wise op or a
        normalisation reads (a bias, a scale, LayerNorm's gamma and beta).

        Poplar creates such an operand once, as one variable of its own elements, each mapped
        to one of the tiles that use it (poplibs lib/poputil/TileMapping.cpp
        ``createBroadcastOperand``: ``addVariable(type, {numDimElems})`` mapped by use,
        ``ConstrainMappingToUsedTiles``; PopART makes it the creator of an Add's broadcast
        input). So a tile stores ``ceil(bytes / tiles)`` of it for the whole run and, during
        the op, receives the rest of what its share reads (:func:`touched`) -- as a conv
        under a batch / spatial split stores its weights once and receives its slice. An
        operand as large as the output is read where it is stored: nothing is received.
        (Charging every tile the whole touched slice for the whole run made 25 LayerNorms of
        768 channels hold 77 KB on *every* tile of GPT-2 small: their weights 1,472 times.)"""
        out = op.out_shapes[0] if op.out_shapes else ()
        stored = received = 0
        for w in op.weights:
            mine = cdiv(w.bytes, max(1, tiles))
            reads = nbytes(touched(w.elements, share, total, broadcast_inner(out, w.shape)),
                           w.bits)
            stored += mine
            received += max(0, reads - mine)
        return stored, received

    def _map_dims(self, op: OpInfo) -> tuple[MapDims, int]:
        """A pool's / resize's extents and the channels it hands out together (a resize is
        Poplar copies, not a popnn pooling plan: no grain)."""
        if op.kind == "resize":
            return resize_dims(op), 1
        return pool_dims(op), self.pool_grain(op)

    def _pool(self, op: OpInfo, split: Split) -> OpCost:
        return self._map(op, split)

    def _resize(self, op: OpInfo, split: Split) -> OpCost:
        return self._map(op, split)

    def _map(self, op: OpInfo, split: Split) -> OpCost:
        """One split's price: :meth:`_map_terms` of its one share (the same code prices every
        candidate at once in :meth:`_blocks_of`, so the two cannot disagree)."""
        d, grain = self._map_dims(op)
        t = self._map_terms(op, d, MapShares.of(map_share(d, split, grain=grain)))
        return self._map_cost(split, t, 0)

    def _map_cost(self, split: Split, t: dict[str, np.ndarray], i: int) -> OpCost:
        return OpCost(
            split=split,
            always=nonzero(**self.overhead(int(t["sets"][i]))),
            step=nonzero(act_in=int(t["recv"][i]), temp=int(t["temp"][i])),
            outputs=(int(t["out"][i]),),
            compute_cycles=int(t["compute"][i]),
            exchange_cycles=int(t["exchange"][i]),
        )

    def _map_terms(self, op: OpInfo, d: MapDims, s: MapShares) -> dict[str, np.ndarray]:
        """Bytes and cycles of a pool / resize on every share of ``s`` at once.

        Pool: the input slice with its window halo is received (``act_in``); ``kernel`` vector
        ops per output (+1 for an average). A global pool split over its window reduces the
        partial results after, like a convolution's input-channel split: each tile keeps its
        share of the outputs and receives the other tiles' partials of it (in the partials'
        width), one more compute set. Resize: the source rows and columns its outputs read are
        received; nearest is a copy at ``copy_bytes_per_cycle``, other modes 4 vector ops per
        output."""
        abits = op.act_bits
        dp = self.datapath(abits)
        lanes = self.lanes[dp]

        def vc(elements: np.ndarray, ops) -> np.ndarray:
            return np.ceil(elements * ops / lanes).astype(np.int64)

        def nb(elements: np.ndarray, bits: int) -> np.ndarray:
            return -(-(elements * bits) // 8)

        recv = nb(s.in_elements, abits)
        zero = recv * 0
        red = zero
        if op.kind == "resize":
            out = nb(s.out_elements, abits)
            temp = zero
            compute = (-(-out // self.copy_bpc) if d.resize[0] == "nearest"
                       else vc(s.out_elements, 4))
            sets = zero + self.sets["resize"]
        else:
            average = 1 if "Average" in op.op_type else 0
            glob = s.partials > 1
            pbits = self.partials.get(dp, _DATAPATH_BITS[dp])
            final = np.where(glob, -(-s.out_elements // s.partials), s.out_elements)
            red = np.where(glob, nb(final * (s.partials - 1), pbits), 0)
            temp = np.where(glob, nb(s.out_elements, pbits) + red, 0)
            out = nb(final, abits)
            compute = np.where(glob, vc(s.in_elements, 1) + vc(final, s.partials - 1 + average),
                               vc(s.out_elements, d.kh * d.kw + average))
            sets = self.sets["pool"] + glob * 1
        return {"recv": recv, "temp": temp, "out": out, "sets": sets,
                "compute": compute + (sets - 1) * self.superstep,
                "exchange": np.ceil((recv + red) / self.xbpc).astype(np.int64)}

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
        w_recv = 0
        if op.kind == "reduce":  # a normalisation's scale and shift: broadcast operands
            first = numel(op.out_shapes[0]) if op.out_shapes else 0
            w_store, w_recv = self._broadcast_weights(op, cdiv(first, t), first, t)
        else:  # index / shape constants: small ones on every tile, large ones (Gather) split
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
            step=nonzero(act_in=recv, weights=w_recv),
            outputs=outs,
            compute_cycles=compute + (sets - 1) * self.superstep,
            exchange_cycles=self._xcycles(recv + w_recv),
        )
