"""The planner's view of a graph: plain, immutable facts about each op and tensor.

The planner and the targets' cost models never touch onnx-graphsurgeon objects. They see a
:class:`GraphInfo`, built once from the lowered graph by :func:`build_graph_info`: ops in schedule-
ready topological order, each with its activation inputs and outputs (concrete shapes, storage bit
widths), its weights, its attributes as plain Python values, and its MAC count. This is the small
"what does this op need" interface of the design: targets answer it, passes know nothing of it.

What is *not* an op here:
* constants and everything computed only from constants (shape arithmetic an exporter left behind,
  ``DequantizeLinear`` of a quantized weight) -- their values become weights of the consuming op;
* nothing else: every other node is planned, so an unsupported op type is an input error.

Aliases: a view op (Reshape, Flatten, Squeeze, ...) produces no new buffer, its output *aliases* its
input; an in-place Concat (annotated by the ``concat-in-place`` pass) has no buffer of its own, its
inputs are *parts* of its output. :meth:`GraphInfo.root` resolves a tensor to the buffer holding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from tilec.errors import InputError
from tilec.ir import FUSED_DOMAIN, get_ann, is_concrete, split_fused_op

# ONNX op type -> op kind. The kind is what a cost model dispatches on.
OP_KINDS: dict[str, str] = {
    # dense compute
    "Conv": "conv",
    "ConvTranspose": "conv",
    "Gemm": "matmul",
    "MatMul": "matmul",
    # pooling
    "MaxPool": "pool",
    "AveragePool": "pool",
    "GlobalAveragePool": "pool",
    "GlobalMaxPool": "pool",
    # per-element (unary, binary, per-channel affine)
    **{
        op: "elementwise"
        for op in (
            "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus", "Mish", "Exp", "Log", "Add",
            "Sub", "Mul", "Div", "Pow", "Sqrt", "Clip", "HardSwish", "HardSigmoid", "Neg",
            "Abs", "Erf", "Gelu", "Elu", "Selu", "PRelu", "Max", "Min", "Sum", "Mean",
            "Reciprocal", "Floor", "Ceil", "Round", "Softsign", "Cast", "BatchNormalization",
            "QuantizeLinear", "DequantizeLinear", "Where", "Equal", "Less", "Greater", "Not",
            "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor",
        )
    },
    # channel concatenation
    "Concat": "concat",
    # spatial resampling
    "Resize": "resize",
    "Upsample": "resize",
    # data movement that copies
    **{
        op: "movement"
        for op in (
            "Slice", "Split", "Transpose", "Pad", "Gather", "Tile", "Expand", "DepthToSpace",
            "SpaceToDepth",
        )
    },
    # zero-copy views of the first input
    **{op: "view" for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")},
    # reductions
    **{
        op: "reduce"
        for op in (
            "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "Softmax", "LogSoftmax",
            "ArgMax", "ArgMin", "LayerNormalization",
            # GroupNorm as PyTorch exports it (Reshape -> InstanceNormalization -> Reshape ->
            # Mul -> Add); F.normalize (ReduceL2 -> Clip -> Expand -> Div, or LpNormalization)
            "InstanceNormalization", "ReduceL2", "ReduceL1", "ReduceSumSquare",
            "LpNormalization",
        )
    },
    # detection post-processing a chip can run (the IPU: PopLibs' bitonic top-k, Graphcore's NMS
    # custom op). By default capture still sends them to the host; a node annotated
    # ``tilec.on_device`` (the zoo's measured pipeline, ``yolov4-p5-nms``) stays on the chip
    "TopK": "topk",
    "NonMaxSuppression": "nms",
    # a contraction: costed as the (batched) matrix product the equation denotes
    "Einsum": "matmul",
    # recurrent layers: every step's gate GEMM, weights resident (see _recurrent_view)
    "LSTM": "matmul",
    "GRU": "matmul",
    "RNN": "matmul",
}

RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}
"""Recurrent op types and their gate count (the gate GEMM's width is gates x hidden_size)."""
"""Every op type tilec can plan, by kind. Anything else is rejected at capture."""

# Ops allowed in the graph only when they compute from constants (folded away, never planned).
CONSTANT_ONLY_OPS = frozenset(
    {"Shape", "Size", "ConstantOfShape", "Range", "Constant", "NonZero", "CumSum", "Mod"}
)

# Ops whose constant inputs after the first configure the op rather than hold trained values.
CONFIG_INPUT_OPS = frozenset({
    "Resize", "Upsample", "Clip", "Pad", "Reshape", "Slice", "Split", "Tile", "Expand",
    "Squeeze", "Unsqueeze", "Gather", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum",
    "ReduceL2", "ReduceL1", "ReduceSumSquare", "TopK", "NonMaxSuppression",
})


def supported_ops() -> list[str]:
    """Sorted list of the op types tilec plans (for error messages and ``tilec passes``)."""
    return sorted(OP_KINDS)


def float_bits(dtype: Any) -> int:
    """Storage bits of a numpy dtype."""
    return int(np.dtype(dtype).itemsize * 8)


class _Sized:
    """Element and byte counts of anything with a ``shape`` and storage ``bits``."""

    shape: tuple[int, ...]
    bits: int

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def bytes(self) -> int:
        """Storage bytes, rounded up to whole bytes (sub-byte widths pack)."""
        return (self.elements * self.bits + 7) // 8


@dataclass(frozen=True)
class TensorInfo(_Sized):
    """An activation tensor (graph input, graph output or intermediate)."""

    name: str
    shape: tuple[int, ...]
    bits: int
    producer: str | None  # op name; None for graph inputs
    consumers: tuple[str, ...]
    is_input: bool = False
    is_output: bool = False
    alias_of: str | None = None  # view output: the tensor whose buffer it shares
    part_of: str | None = None  # input of an in-place concat: the concat output it is a slice of


@dataclass(frozen=True)
class WeightInfo(_Sized):
    """A constant an op reads (conv kernel, bias, BN scale, ...)."""

    name: str
    shape: tuple[int, ...]
    bits: int
    statistic: bool = False
    """Not a trained parameter, though stored and charged like any weight: a BatchNormalization
    running mean or variance, or an operand that configures an op (a Resize's scales, a Clip's
    bounds, a Reshape's shape). Parameter counts, as papers quote them, leave these out."""


@dataclass(frozen=True)
class OpInfo:
    """One op as the planner and the cost models see it."""

    name: str
    op_type: str  # canonical ONNX type; a fused ConvMish is op_type "Conv" with activation "Mish"
    kind: str  # see OP_KINDS
    inputs: tuple[str, ...]  # activation tensor names (constants excluded)
    outputs: tuple[str, ...]
    weights: tuple[WeightInfo, ...]
    attrs: Mapping[str, Any]
    macs: int
    activation: str | None = None
    weight_bits: int = 16
    act_bits: int = 16
    in_shapes: tuple[tuple[int, ...], ...] = ()
    out_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def weight_bytes(self) -> int:
        return sum(w.bytes for w in self.weights)

    @property
    def params(self) -> int:
        """Trained parameters (BatchNormalization running statistics excluded)."""
        return sum(w.elements for w in self.weights if not w.statistic)


@dataclass(frozen=True)
class GraphInfo:
    """The whole graph as plain data: ops in topological order and the activation tensors."""

    name: str
    ops: tuple[OpInfo, ...]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weight_bits: int
    act_bits: int
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def op_by_name(self) -> dict[str, OpInfo]:
        return {op.name: op for op in self.ops}

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def weight_bytes(self) -> int:
        return sum(op.weight_bytes for op in self.ops)

    def root(self, tensor: str) -> str:
        """The tensor whose buffer holds ``tensor`` (following views and in-place concats)."""
        seen = set()
        while tensor not in seen:
            seen.add(tensor)
            info = self.tensors[tensor]
            nxt = info.alias_of or info.part_of
            if nxt is None:
                return tensor
            tensor = nxt
        return tensor


# ----------------------------------------------------------------------------------- building
def _plain(value: Any) -> Any:
    """Convert a gs attribute value to plain Python (lists, ints, floats, str)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, gs.Constant):
        return value.values.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _conv_macs(node: gs.Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
               w_shape: tuple[int, ...], transpose: bool) -> int:
    # Conv: every output element needs (Cin/group) * prod(kernel) MACs.
    # ConvTranspose: every *input* element is multiplied into Cout/group * prod(kernel) outputs.
    kernel = int(np.prod(w_shape[2:], dtype=np.int64)) if len(w_shape) > 2 else 1
    if transpose:
        return int(np.prod(in_shape, dtype=np.int64)) * int(w_shape[1]) * kernel
    return int(np.prod(out_shape, dtype=np.int64)) * int(w_shape[1]) * kernel


def _matmul_macs(op_type: str, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...],
                 attrs: Mapping[str, Any]) -> int:
    a = in_shapes[0]
    transposed = op_type == "Gemm" and attrs.get("transA", 0)
    k = a[0] if transposed else a[-1]
    return int(np.prod(out_shape, dtype=np.int64)) * int(k)


@dataclass(frozen=True)
class EinsumMatmul:
    """An Einsum equation as the batched matrix product it denotes: shapes for the cost model.

    Letters in both operands and the output are batch dimensions, in the first operand and the
    output only rows (M), in the second and the output only columns (N), in both operands but
    not the output the contraction (K). The transposes the equation implies are layout, which
    tilec's matmul cost does not charge separately (as for MatMul).
    """

    batch: int
    m: int
    n: int
    k: int
    swapped: bool  # the constant (weight) operand came first: costed as (B^T A^T)^T

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.n * self.k


def einsum_as_matmul(equation: str, shapes: list[tuple[int, ...]], weight_first: bool,
                     where: str) -> EinsumMatmul:
    """Classify ``equation``'s letters (see :class:`EinsumMatmul`); an equation that is no matrix
    product (one operand, a diagonal, an ellipsis, a letter summed within one operand) is an input
    error naming ``where``."""
    text = equation.replace(" ", "")
    lhs, arrow, out = text.partition("->")
    terms = lhs.split(",")
    if (not arrow or len(terms) != 2 or "." in text
            or any(len(set(t)) != len(t) for t in (*terms, out))
            or any(len(t) != len(s) for t, s in zip(terms, shapes, strict=False))):
        raise InputError(f"{where}: Einsum '{equation}' is not a matrix product of two operands "
                         "with an explicit output; tilec costs only those")
    a, b = terms
    size: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        for letter, dim in zip(term, shape, strict=True):
            size[letter] = max(size.get(letter, 1), int(dim))
    if set(out) - set(a) - set(b) or (set(a) ^ set(b)) - set(out):
        raise InputError(f"{where}: Einsum '{equation}' sums a dimension of one operand only "
                         "(or outputs one of neither); tilec costs only matrix products")

    def prod(letters: set[str]) -> int:
        return int(np.prod([size[c] for c in sorted(letters)], dtype=np.int64))

    sa, sb, so = set(a), set(b), set(out)
    batch, k = prod(sa & sb & so), prod((sa & sb) - so)
    m, n = prod((sa - sb) & so), prod((sb - sa) & so)
    if weight_first:
        m, n = n, m
    return EinsumMatmul(batch=batch, m=m, n=n, k=k, swapped=weight_first)


def _is_constant(tensor: gs.Tensor, const_nodes: set[int]) -> bool:
    if isinstance(tensor, gs.Constant):
        return True
    return bool(tensor.inputs) and id(tensor.inputs[0]) in const_nodes


def _weight_bits_of(tensor: gs.Tensor, default: int) -> int:
    """Storage bits of a weight: the integer width behind a DequantizeLinear, else ``default``."""
    node = tensor.inputs[0] if (not isinstance(tensor, gs.Constant) and tensor.inputs) else None
    if node is not None and node.op == "DequantizeLinear":
        ann = get_ann(node, "bits")
        if ann:
            return int(ann)
        src = node.inputs[0]
        dtype = getattr(src, "export_dtype", None) or getattr(src, "dtype", None)
        try:
            return float_bits(dtype)
        except TypeError:
            return default
    return default


def _einsum_view(node: gs.Node, attrs: dict[str, Any], weights: list[WeightInfo], source: str
                 ) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...],
                            list[WeightInfo]]:
    """An Einsum's shapes as the matmul cost model reads them: activation ``(batch, M, K)``, a
    second activation ``(batch, K, N)`` or a weight ``(K, N)``, output ``(batch, M, N)``.

    Element counts are the real tensors' (every letter is in exactly the shapes it spans), so the
    bytes a cost model charges are the operands' own. A weight that carries batch letters is kept
    at its real shape (only the weight total and the MACs then hold exactly). ``attrs`` gains
    ``einsum``: the classification, for reports and tests.
    """
    operands = [t for t in node.inputs if t.name]
    shapes = [tuple(int(d) for d in t.shape) for t in operands]
    weight_names = {w.name for w in weights}
    weight_first = bool(operands) and operands[0].name in weight_names and not (
        len(operands) > 1 and operands[1].name in weight_names)
    where = f"{source}: node '{node.name}'"
    mm = einsum_as_matmul(str(attrs.get("equation", "")), shapes, weight_first, where)
    attrs["einsum"] = {"batch": mm.batch, "m": mm.m, "n": mm.n, "k": mm.k, "macs": mm.macs,
                       "swapped": mm.swapped}
    act = [(mm.batch, mm.m, mm.k)]
    if not weights:
        act.append((mm.batch, mm.k, mm.n))
    kept = []
    for w in weights:  # a weight without batch letters is exactly the K x N matrix
        whole = int(np.prod(w.shape, dtype=np.int64))
        shape = (mm.k, mm.n) if whole == mm.k * mm.n else w.shape
        kept.append(WeightInfo(w.name, shape, w.bits, statistic=w.statistic))
    return tuple(act[: max(1, 2 - len(weights))]), ((mm.batch, mm.m, mm.n),), kept


def _recurrent_view(node: gs.Node, attrs: dict[str, Any],
                    in_shapes: tuple[tuple[int, ...], ...],
                    out_shapes: tuple[tuple[int, ...], ...], weights: list[WeightInfo],
                    source: str) -> tuple[tuple[tuple[int, ...], ...],
                                          tuple[tuple[int, ...], ...], list[WeightInfo]]:
    """An LSTM / GRU / RNN unrolled over its sequence, as the matmul cost model reads it.

    Every step of every direction multiplies ``[x_t, h_{t-1}]`` (I + H values per sequence) by
    the gate weights ``[W; R]`` (gates x H outputs): over the run that is one GEMM of
    ``T * B`` rows, ``K = gates * (I + H)`` and ``N = directions * H``, which keeps the MACs, the
    resident weights (``W`` and ``R`` as one ``K x N`` kernel) and the output ``Y`` exact. Not
    modelled: the gate non-linearities (a few vector ops per output, small next to the GEMM)
    and the steps' order -- the cost model may spread the rows over tiles as if all steps ran at
    once, so latency is optimistic for long sequences (memory is not).
    """
    where = f"{source}: node '{node.name}' ({node.op})"
    gates = RECURRENT[node.op]
    if not in_shapes or len(in_shapes[0]) != 3:
        raise InputError(f"{where}: its input X must be a rank-3 activation (seq, batch, input)")
    hidden = int(attrs.get("hidden_size") or 0)
    if hidden <= 0:
        raise InputError(f"{where}: needs a positive hidden_size attribute")
    dirs = 2 if str(attrs.get("direction", "forward")) == "bidirectional" else 1
    x = in_shapes[0]
    steps, batch, features = (x[1], x[0], x[2]) if int(attrs.get("layout", 0)) else x
    rows, k, n = steps * batch, gates * (features + hidden), dirs * hidden
    attrs["recurrent"] = {"steps": steps, "batch": batch, "input": features, "hidden": hidden,
                          "directions": dirs, "gates": gates, "macs": rows * k * n}
    kept: list[WeightInfo] = []
    kernel = [w for w in weights[:2]]  # W, R (the constant inputs 1 and 2, in that order)
    if len(kernel) == 2:
        bits = kernel[0].bits
        kept.append(WeightInfo(f"{kernel[0].name}+{kernel[1].name}", (k, n), bits))
        rest = weights[2:]
    else:
        rest = weights
    kept.extend(rest)  # bias, peepholes; initial states and sequence lengths when constant
    used = [shape for shape in out_shapes]
    if len(used) > 1:
        raise InputError(f"{where}: more than one of its outputs (Y, Y_h, Y_c) is read; tilec "
                         "costs a recurrent layer whose sequence output or final state alone "
                         "is used")
    out = (1, rows, n) if not used or len(used[0]) == 4 else (1, batch, n)
    return ((1, rows if out[1] == rows else batch, k),), (out,), kept


def build_graph_info(graph: gs.Graph, *, weight_bits: int = 16, act_bits: int = 16,
                     source: str = "model", meta: Mapping[str, Any] | None = None) -> GraphInfo:
    """Build the planner's view of ``graph`` (which must have concrete shapes).

    ``weight_bits`` and ``act_bits`` are the storage widths of float weights and float activations
    (fp16 on gc200, int8 on northpole, ...). Per-node annotations written by the quantize pass
    (``tilec.weight_bits`` / ``tilec.act_bits``) override them, as does the integer type behind a
    ``DequantizeLinear`` weight.
    """
    # 1. Nodes computing only from constants fold away.
    const_nodes: set[int] = set()
    for node in graph.nodes:
        if node.op == "Constant" or (
            node.inputs and all(_is_constant(t, const_nodes) for t in node.inputs if t.name)
        ):
            const_nodes.add(id(node))

    graph_inputs = {t.name for t in graph.inputs}
    graph_outputs = [t.name for t in graph.outputs]
    ops: list[OpInfo] = []
    producer_of: dict[str, str] = {}
    consumers: dict[str, list[str]] = {}
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}
    alias: dict[str, str] = {}
    part: dict[str, str] = {}

    def act_tensor(t: gs.Tensor, bits: int) -> None:
        if not is_concrete(t.shape):
            raise InputError(f"{source}: tensor '{t.name}' has no concrete shape ({t.shape})")
        if t.name not in shapes:
            dt = t.dtype
            is_float = dt is not None and np.issubdtype(np.dtype(dt), np.floating)
            shapes[t.name] = (tuple(int(d) for d in t.shape), bits if is_float or dt is None
                              else float_bits(dt))

    for t in graph.inputs:
        act_tensor(t, act_bits)

    for node in graph.nodes:
        if id(node) in const_nodes:
            continue
        name = node.name
        if not name:
            raise InputError(f"{source}: a '{node.op}' node has no name (capture names every node)")
        fused = split_fused_op(node.op) if node.domain == FUSED_DOMAIN else None
        if fused is not None:
            op_type, activation = fused
        elif node.op in OP_KINDS:
            op_type, activation = node.op, None
        else:
            raise InputError(
                f"{source}: node '{name}' has op type '{node.op}', which tilec cannot plan; "
                f"supported: {', '.join(supported_ops())}"
            )
        kind = OP_KINDS[op_type]
        if op_type == "BatchNormalization" and int(node.attrs.get("training_mode", 0) or 0):
            kind = "reduce"  # batch statistics over N, H, W first, then the affine map
        n_wbits = int(get_ann(node, "weight_bits", 0) or 0)
        n_abits = int(get_ann(node, "act_bits", 0) or act_bits)
        inputs, weights = [], []
        for index, t in enumerate(node.inputs):
            if not t.name:
                continue
            if _is_constant(t, const_nodes):
                if not is_concrete(t.shape):
                    raise InputError(f"{source}: constant '{t.name}' of node '{name}' has no shape")
                bits = n_wbits or _weight_bits_of(t, weight_bits)
                dt = getattr(t, "dtype", None)
                if dt is not None and not np.issubdtype(np.dtype(dt), np.floating) and not n_wbits:
                    bits = float_bits(dt)  # integer shape/index constants keep their width
                stat = (op_type == "BatchNormalization" and index in (3, 4)) or (
                    op_type in RECURRENT and index in (4, 5, 6)) or (  # lengths, initial states
                    op_type in CONFIG_INPUT_OPS and index >= 1)
                weights.append(WeightInfo(t.name, tuple(int(d) for d in t.shape), bits,
                                          statistic=stat))
            else:
                act_tensor(t, act_bits)
                inputs.append(t.name)
                consumers.setdefault(t.name, []).append(name)
        outputs = []
        for t in node.outputs:
            if op_type in RECURRENT and not t.outputs and t.name not in graph_outputs:
                continue  # an LSTM's Y_h / Y_c that nothing reads: never stored
            if not t.name:
                continue
            act_tensor(t, n_abits)
            outputs.append(t.name)
            producer_of[t.name] = name
        in_shapes = tuple(shapes[n][0] for n in inputs)
        out_shapes = tuple(shapes[n][0] for n in outputs)
        attrs = {k: _plain(v) for k, v in node.attrs.items() if not k.startswith("tilec.")}
        if op_type == "Einsum":
            in_shapes, out_shapes, weights = _einsum_view(node, attrs, weights, source)
        elif op_type in RECURRENT:
            in_shapes, out_shapes, weights = _recurrent_view(node, attrs, in_shapes, out_shapes,
                                                             weights, source)
        if activation:
            attrs["activation"] = activation
        macs = 0
        if kind == "conv" and weights and in_shapes and out_shapes:
            macs = _conv_macs(node, in_shapes[0], out_shapes[0], weights[0].shape,
                              op_type == "ConvTranspose")
        elif kind == "matmul" and out_shapes:
            k_shapes = list(in_shapes) + [w.shape for w in weights]
            macs = _matmul_macs(op_type, k_shapes, out_shapes[0], attrs)
            if op_type == "Einsum":
                macs = attrs["einsum"]["macs"]
            elif op_type in RECURRENT:
                macs = attrs["recurrent"]["macs"]
        if kind == "view" and inputs and outputs:
            alias[outputs[0]] = inputs[0]
        if kind == "concat" and get_ann(node, "in_place") and outputs:
            attrs["in_place"] = True  # cost models see it on the op, the planner via part_of
            for n in inputs:
                part.setdefault(n, outputs[0])
        ops.append(OpInfo(
            name=name, op_type=op_type, kind=kind, inputs=tuple(inputs), outputs=tuple(outputs),
            weights=tuple(weights), attrs=attrs, macs=int(macs), activation=activation,
            weight_bits=n_wbits or (weights[0].bits if weights else weight_bits),
            act_bits=n_abits, in_shapes=in_shapes, out_shapes=out_shapes,
        ))

    tensors = {
        n: TensorInfo(
            name=n, shape=shape, bits=bits, producer=producer_of.get(n),
            consumers=tuple(consumers.get(n, ())), is_input=n in graph_inputs,
            is_output=n in graph_outputs, alias_of=alias.get(n), part_of=part.get(n),
        )
        for n, (shape, bits) in shapes.items()
    }
    return GraphInfo(
        name=graph.name or source, ops=tuple(ops), tensors=tensors,
        inputs=tuple(t.name for t in graph.inputs), outputs=tuple(graph_outputs),
        weight_bits=weight_bits, act_bits=act_bits, meta=dict(meta or {}),
    )
