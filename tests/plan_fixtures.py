"""Synthetic targets and hand-built graphs for the planner's tests.

* :class:`ToyTarget` / :class:`ToyCostModel`: a small chip whose costs are written into each op
  (``op.attrs["toy"]``: per tile count, the always / step / output bytes per tile and cycles), so a
  test can check every number by hand.
* :func:`chain`, :func:`toy_graph`: hand-built :class:`GraphInfo` objects (no ONNX).
* :class:`SynthIPU`: a GC200-like cost model from op shapes (code per tile, weights split by output
  channels, activations by rows), and :func:`csp_network`: a CSP-style network with hundreds of ops,
  for scale tests before (and independently of) the real targets and zoo.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tilec.costmodel import OpCost, Split
from tilec.opinfo import GraphInfo, OpInfo, TensorInfo, WeightInfo


# ----------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class ToyCostModel:
    """Costs from ``op.attrs["toy"]``: ``{tiles: (always, step, out, cycles)}``.

    Optional per-op attrs: ``follows`` (follows_input), ``in_place``, ``spread`` (total bytes),
    ``cat`` (category of the always bytes, default "code"), ``alt`` (a second table, for splits
    along ``rows``, tile counts >= 2: two splits with the same tile count).
    """

    sync: int = 10
    default: tuple[tuple[int, tuple[int, int, int, int]], ...] = ((1, (0, 0, 0, 1)),)
    input_io: bool = False  # charge model inputs (bytes per tile = ceil(bytes / tiles))
    sram_independent: bool = True  # the costs ignore the tile's size (tilec.costmodel)
    bounds_monotone: bool = False  # (a)/(b) only grow with batch / image size (whatif.py)

    def table(self, op: OpInfo) -> dict[int, tuple[int, int, int, int]]:
        t = op.attrs.get("toy")
        return {int(k): tuple(v) for k, v in (t.items() if t else self.default)}

    @staticmethod
    def alt(op: OpInfo) -> dict[int, tuple[int, int, int, int]]:
        t = op.attrs.get("alt")
        return {int(k): tuple(v) for k, v in t.items() if int(k) > 1} if t else {}

    def splits(self, op: OpInfo) -> list[Split]:
        return [Split.of(elements=n) for n in sorted(self.table(op))] + [
            Split.of(rows=n) for n in sorted(self.alt(op))]

    def cost(self, op: OpInfo, split: Split) -> OpCost:
        table = self.alt(op) if split.factor("rows") > 1 else self.table(op)
        a, s, o, c = table[split.tiles]
        spread = op.attrs.get("spread", 0)
        return OpCost(
            split=split, always={op.attrs.get("cat", "code"): a} if a else {},
            step={"temp": s} if s else {}, outputs=tuple(o for _ in op.outputs),
            spread={"weights": spread} if spread else {}, compute_cycles=c,
            follows_input=bool(op.attrs.get("follows", False)),
            in_place=bool(op.attrs.get("in_place", False)),
        )

    def sync_cycles(self, tiles: int) -> int:
        return self.sync

    def io_seconds(self, graph: GraphInfo) -> float:
        return 0.0

    def input_bytes(self, tensor: TensorInfo, tiles: int) -> dict[str, int]:
        if not self.input_io:
            return {}
        return {"io": -(-tensor.bytes // tiles)}


@dataclass(frozen=True)
class ToyTarget:
    """A small chip implementing the Target protocol."""

    name: str = "toy"
    tiles: int = 4
    bytes_per_tile: int = 100
    reserved_bytes_per_tile: int = 0
    grid: tuple[int, int] = (1, 4)
    placement: str = "range"
    clock_hz: float = 1e9
    precisions: tuple[str, ...] = ("fp16", "int8")
    default_precision: str = "fp16"
    cost_model: Any = field(default_factory=ToyCostModel)

    @property
    def budget_per_tile(self) -> int:
        return self.bytes_per_tile - self.reserved_bytes_per_tile

    def weight_bits(self, precision: str) -> int:
        return {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4, "int2": 2}[precision]

    def act_bits(self, precision: str) -> int:
        return self.weight_bits(precision)

    def default_passes(self, precision: str) -> list[str]:
        return []

    def with_bytes_per_tile(self, bytes_per_tile: int) -> ToyTarget:
        return dataclasses.replace(self, bytes_per_tile=int(bytes_per_tile))


def toy_target(tiles: int = 4, budget: int = 100, *, rect: tuple[int, int] | None = None,
               **cm: Any) -> ToyTarget:
    if rect is not None:
        return ToyTarget(tiles=rect[0] * rect[1], bytes_per_tile=budget, grid=rect,
                         placement="rect", cost_model=ToyCostModel(**cm))
    return ToyTarget(tiles=tiles, bytes_per_tile=budget, grid=(1, tiles),
                     cost_model=ToyCostModel(**cm))


# ----------------------------------------------------------------------------------- graphs
@dataclass
class OpSpec:
    name: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    toy: Mapping[int, tuple[int, int, int, int]] | None = None
    kind: str = "conv"
    attrs: Mapping[str, Any] = field(default_factory=dict)


def toy_graph(ops: Sequence[OpSpec], *, inputs: Sequence[str] = ("x",),
              outputs: Sequence[str] | None = None, sizes: Mapping[str, int] | None = None,
              views: Mapping[str, str] | None = None, parts: Mapping[str, str] | None = None,
              name: str = "toy", meta: Mapping[str, Any] | None = None) -> GraphInfo:
    """A GraphInfo from op specs; tensor sizes in bytes (``sizes``, default 1 byte).

    ``views``: tensor -> the tensor it aliases; ``parts``: tensor -> the concat output it is a
    slice of (in-place concat).
    """
    sizes = dict(sizes or {})
    views = dict(views or {})
    parts = dict(parts or {})
    producer: dict[str, str] = {}
    consumers: dict[str, list[str]] = {}
    op_infos = []
    for spec in ops:
        attrs = dict(spec.attrs)
        if spec.toy is not None:
            attrs["toy"] = {int(k): tuple(v) for k, v in spec.toy.items()}
        for t in spec.inputs:
            consumers.setdefault(t, []).append(spec.name)
        for t in spec.outputs:
            producer[t] = spec.name
        op_infos.append(OpInfo(
            name=spec.name, op_type={"view": "Reshape", "elementwise": "Add",
                                     "concat": "Concat"}.get(spec.kind, "Conv"),
            kind=spec.kind, inputs=tuple(spec.inputs), outputs=tuple(spec.outputs), weights=(),
            attrs=attrs, macs=0,
            in_shapes=tuple((sizes.get(t, 1),) for t in spec.inputs),
            out_shapes=tuple((sizes.get(t, 1),) for t in spec.outputs)))
    names = list(dict.fromkeys([*inputs, *(t for s in ops for t in (*s.inputs, *s.outputs))]))
    if outputs is None:
        outputs = [t for t in names if t not in consumers and t not in inputs]
    tensors = {
        t: TensorInfo(name=t, shape=(sizes.get(t, 1),), bits=8, producer=producer.get(t),
                      consumers=tuple(consumers.get(t, ())), is_input=t in inputs,
                      is_output=t in outputs, alias_of=views.get(t), part_of=parts.get(t))
        for t in names
    }
    return GraphInfo(name=name, ops=tuple(op_infos), tensors=tensors, inputs=tuple(inputs),
                     outputs=tuple(outputs), weight_bits=8, act_bits=8,
                     meta=dict(meta or {"name": name, "source": name, "batch": 1,
                                        "image_size": None, "precision": "fp16", "stride": None,
                                        "input_shapes": {}}))


def chain(n: int, toy: Mapping[int, tuple[int, int, int, int]], *, size: int = 1) -> GraphInfo:
    """x -> op0 -> t0 -> op1 -> ... -> t{n-1}, every op with the same cost table."""
    ops, prev = [], "x"
    for i in range(n):
        ops.append(OpSpec(f"op{i}", [prev], [f"t{i}"], toy))
        prev = f"t{i}"
    return toy_graph(ops, sizes={f"t{i}": size for i in range(n)} | {"x": size})


# ----------------------------------------------------------------------------------- at scale
@dataclass(frozen=True)
class SynthIPU:
    """A GC200-like cost model from op shapes. Modelling choices of this fixture only:

    code 3 KiB + state 512 B per op per tile; weights split by the output-channel factor;
    activations by all factors; a conv's receive buffers ~ its input slice x 1.25 (halo);
    fp32 partials = 2 x its output slice; 64 MACs per cycle per tile; 4 bytes per cycle exchange.
    Element-wise ops follow their input in place.
    """

    tiles: int = 1472
    code: int = 3072
    state: int = 512
    sram_independent: bool = True  # the costs ignore the tile's size (tilec.costmodel)
    bounds_monotone: bool = False  # (a)/(b) only grow with batch / image size (whatif.py)

    def _factors(self, op: OpInfo) -> list[tuple[int, int]]:
        cout = op.out_shapes[0][1] if op.out_shapes and len(op.out_shapes[0]) > 1 else 1
        rows = op.out_shapes[0][2] if op.out_shapes and len(op.out_shapes[0]) > 2 else 1
        out = []
        for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 736, 1024, 1472):
            best = None
            for oc in (1, 2, 4, 8, 16, 23, 32, 46, 64, 92, 128, 256, 512, 1024):
                if n % oc == 0 and oc <= cout and n // oc <= rows:
                    best = (oc, n // oc)
            if best is not None:
                out.append(best)
        return out

    def splits(self, op: OpInfo) -> list[Split]:
        if op.kind in ("elementwise", "view", "concat"):
            return [Split.of(elements=n) for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 736,
                                                   1024, 1472)]
        return [Split.of(out_ch=a, rows=b) for a, b in self._factors(op)]

    def cost(self, op: OpInfo, split: Split) -> OpCost:
        n = split.tiles
        out_b = [(-(-_bytes(s, op.act_bits) // n)) for s in op.out_shapes]
        in_b = sum(_bytes(s, op.act_bits) for s in op.in_shapes)
        if op.kind == "view":
            return OpCost(split=split, outputs=tuple(0 for _ in out_b), follows_input=True)
        if op.kind == "concat":
            return OpCost(split=split, always={"code": 256}, outputs=tuple(out_b),
                          compute_cycles=sum(out_b) // 8 + 10)
        if op.kind in ("elementwise", "pool", "resize", "movement", "reduce"):
            follows = op.kind == "elementwise"
            step = {} if follows else {"act_in": -(-in_b // n)}
            return OpCost(split=split, always={"code": 512, "state": 128}, step=step,
                          outputs=tuple(out_b), compute_cycles=sum(out_b) // 4 + 20,
                          exchange_cycles=0 if follows else (-(-in_b // n)) // 4,
                          follows_input=follows, in_place=follows)
        oc = split.factor("out_ch")
        w = -(-op.weight_bytes // oc)
        recv = int(-(-in_b // max(1, split.factor("rows"))) * 1.25) // max(1, oc)
        macs = -(-op.macs // n)
        return OpCost(split=split, always={"code": self.code, "state": self.state, "weights": w},
                      step={"act_in": recv, "temp": 2 * sum(out_b)}, outputs=tuple(out_b),
                      compute_cycles=macs // 64 + 50, exchange_cycles=recv // 4)

    def sync_cycles(self, tiles: int) -> int:
        return 150

    def io_seconds(self, graph: GraphInfo) -> float:
        return sum(graph.tensors[t].bytes for t in graph.inputs) / 14.55e9

    def input_bytes(self, tensor: TensorInfo, tiles: int) -> dict[str, int]:
        return {"io": -(-tensor.bytes // tiles)}


def _bytes(shape: Sequence[int], bits: int) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return (n * bits + 7) // 8


def synth_ipu_target(bytes_per_tile: int = 638_976) -> ToyTarget:
    return ToyTarget(name="synth-ipu", tiles=1472, bytes_per_tile=bytes_per_tile,
                     reserved_bytes_per_tile=12_288, grid=(1, 1472), placement="range",
                     clock_hz=1.33e9, precisions=("fp32", "fp16"), default_precision="fp16",
                     cost_model=SynthIPU())


class _Net:
    """Builds a CSP-like network op by op with NCHW shapes."""

    def __init__(self, batch: int, size: int, bits: int) -> None:
        self.ops: list[OpInfo] = []
        self.shapes: dict[str, tuple[int, ...]] = {"images": (batch, 3, size, size)}
        self.producer: dict[str, str] = {}
        self.consumers: dict[str, list[str]] = {}
        self.bits = bits
        self.n = 0

    def _add(self, kind: str, op_type: str, inputs: list[str], out_shape: tuple[int, ...],
             weights: tuple[WeightInfo, ...] = (), macs: int = 0) -> str:
        name = f"{op_type.lower()}_{self.n}"
        self.n += 1
        out = f"{name}:0"
        self.shapes[out] = out_shape
        self.producer[out] = name
        for t in inputs:
            self.consumers.setdefault(t, []).append(name)
        self.ops.append(OpInfo(
            name=name, op_type=op_type, kind=kind, inputs=tuple(inputs), outputs=(out,),
            weights=weights, attrs={}, macs=macs, weight_bits=self.bits, act_bits=self.bits,
            in_shapes=tuple(self.shapes[t] for t in inputs), out_shapes=(out_shape,)))
        return out

    def conv(self, x: str, cout: int, k: int = 1, stride: int = 1) -> str:
        b, cin, h, w = self.shapes[x]
        ho, wo = -(-h // stride), -(-w // stride)
        wt = WeightInfo(f"w{self.n}", (cout, cin, k, k), self.bits)
        return self._add("conv", "Conv", [x], (b, cout, ho, wo), (wt,),
                         b * cout * ho * wo * cin * k * k)

    def add(self, a: str, b: str) -> str:
        return self._add("elementwise", "Add", [a, b], self.shapes[a])

    def concat(self, xs: list[str]) -> str:
        b, _, h, w = self.shapes[xs[0]]
        return self._add("concat", "Concat", xs, (b, sum(self.shapes[x][1] for x in xs), h, w))

    def pool(self, x: str) -> str:
        return self._add("pool", "MaxPool", [x], self.shapes[x])

    def up(self, x: str) -> str:
        b, c, h, w = self.shapes[x]
        return self._add("resize", "Resize", [x], (b, c, 2 * h, 2 * w))

    def info(self, outputs: list[str], name: str, meta: dict) -> GraphInfo:
        tensors = {
            t: TensorInfo(name=t, shape=s, bits=self.bits, producer=self.producer.get(t),
                          consumers=tuple(self.consumers.get(t, ())), is_input=t == "images",
                          is_output=t in outputs)
            for t, s in self.shapes.items()
        }
        return GraphInfo(name=name, ops=tuple(self.ops), tensors=tensors, inputs=("images",),
                         outputs=tuple(outputs), weight_bits=self.bits, act_bits=self.bits,
                         meta=meta)


def csp_network(batch: int = 1, size: int = 896, *, bits: int = 16, width: int = 64,
                blocks: Sequence[int] = (1, 3, 15, 15, 7), name: str = "csp-synth") -> GraphInfo:
    """A Scaled-YOLOv4-P5-like CSP network (backbone + a small FPN head), ~400 ops at defaults."""
    net = _Net(batch, size, bits)
    x = net.conv("images", width // 2, 3)
    feats = []
    c = width
    for i, nblk in enumerate(blocks):
        x = net.conv(x, c, 3, 2)
        a = net.conv(x, c // 2)
        b = net.conv(x, c // 2)
        for _ in range(nblk):
            r = net.conv(b, c // 2)
            r = net.conv(r, c // 2, 3)
            b = net.add(b, r)
        b = net.conv(b, c // 2)
        x = net.conv(net.concat([b, a]), c)
        if i >= 2:
            feats.append(x)
        c = min(c * 2, 1024)
    outs = []
    y = net.conv(feats[-1], 512)
    y = net.concat([net.pool(y), y])
    y = net.conv(y, 512)
    for f in reversed(feats[:-1]):
        u = net.up(net.conv(y, net.shapes[f][1] // 2))
        y = net.conv(net.concat([u, net.conv(f, net.shapes[f][1] // 2)]), net.shapes[f][1] // 2)
        y = net.conv(y, net.shapes[f][1] // 2, 3)
        outs.append(net.conv(y, 255))
    outs.append(net.conv(net.conv(feats[-1], 512, 3), 255))
    meta = {"name": name, "source": name, "batch": batch, "image_size": [size, size],
            "precision": "fp16" if bits == 16 else "fp32", "stride": 32,
            "input_shapes": {"images": [batch, 3, size, size]}}
    return net.info(outs, name, meta)
