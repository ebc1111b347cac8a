"""Operator-quantized ONNX (QOperator format, integer ops) rewritten to QDQ form at capture.

onnxruntime's quantization tools write a quantized network in two spellings besides QDQ: static
quantization in *QOperator* format (``QLinearConv``, ``QLinearMatMul``, ``com.microsoft``'s
``QGemm``, ``QLinearAdd``, ``QLinearGlobalAveragePool``, ...; the classic ONNX Model Zoo's int8
files are this format) and dynamic quantization (``DynamicQuantizeLinear`` -> ``ConvInteger`` /
``MatMulInteger`` -> ``Cast`` -> ``Mul`` by the scales). Both are the same network as the QDQ
spelling tilec plans: the integer tensors an op reads, the float op it computes, the integer
tensor it writes. This module turns each such op into exactly that:

* ``QLinearConv(x, xs, xz, w, ws, wz, ys, yz[, B])`` -> ``DequantizeLinear(x, xs, xz)``,
  ``DequantizeLinear(w, ws, wz)`` (``axis=0`` when ``ws`` is per output channel), the int32 bias
  as ``DequantizeLinear(B, xs * ws)`` (its scale by the operator's definition; computed as a
  constant), ``Conv`` with the node's attributes, ``QuantizeLinear(y, ys, yz)``;
* ``QLinearMatMul`` and ``com.microsoft.QGemm`` likewise (``MatMul``; ``Gemm`` with the int32
  ``C`` dequantized at ``alpha * a_scale * b_scale``, QGemm's definition of C's scale with its
  implicit ``beta = 1``; a QGemm without ``y_scale`` writes float and gets no QuantizeLinear);
* ``ConvInteger(x, w, xz, wz)`` / ``MatMulInteger(a, b, az, bz)`` -> ``Conv`` / ``MatMul`` of
  ``DequantizeLinear(x, 1, xz)`` and ``DequantizeLinear(w, 1, wz)``: the integer ``x - xz`` and
  ``w - wz``, so the float result is the int32 one while its partial sums stay below 2^24
  (float32's exact-integer range). A sum of K products of up to 255 x 128 can pass it (K = 4608,
  a 3x3x512 conv, reaches 1.5e8 at worst), and then float32 rounds it to 24 significant bits --
  a relative error below 6e-8, far under the 8-bit scale the Cast / Mul dynamic quantization
  writes after it applies. Measured: a dynamically quantized ResNet-18's 20 ConvInteger results
  are bit-identical after the rewrite (largest sum 391,772), and its MatMulInteger equals the
  exact int64 product, which onnxruntime's AVX2 kernel misses by up to 8,512 (its u8 x s8 pair
  sums saturate int16; docs/coverage.md, "Quantized files"). The file's ``Cast`` to float then
  reads a float (its own op, kept); any other reader of the int32 result gets a ``Cast`` back to
  int32, so every tensor keeps the file's type;
* ``DynamicQuantizeLinear(x)`` -> the ops its definition spells out: ``ReduceMin`` / ``ReduceMax``
  over the tensor, widened to include 0, ``scale = (max - min) / 255``, ``zero_point =
  Cast(Round(-min / scale), uint8)``, ``QuantizeLinear(x, scale, zero_point)`` (tilec has no op
  kind for the fused form; these are two reductions over the tensor, scalar arithmetic and one
  element-wise op, all of which it plans);
* ``com.microsoft``'s ``MatMulIntegerToFloat`` / ``DynamicQuantizeMatMul`` (onnxruntime's fused
  forms of dynamic quantization's MatMulInteger -> Cast -> Mul [-> Add], in optimized transformer
  files) -> ``MatMul`` of the dequantized operands (A quantized dynamically as above for the
  latter), plus the float bias;
* ``com.microsoft`` element-wise / pooling ops -- ``QLinearAdd``, ``QLinearMul``,
  ``QLinearSigmoid``, ``QLinearLeakyRelu``, ``QLinearConcat``, ``QLinearGlobalAveragePool``,
  ``QLinearAveragePool`` (NCHW only) -> ``DequantizeLinear`` of each input, the float op,
  ``QuantizeLinear``.

Weights keep their integer tensors behind a ``DequantizeLinear``, so the planner charges them at
their stored width (8 bits), as for a QDQ file. What is not rewritten (a channels-last pool,
``QAttention``, a per-row activation scale) stays in the graph and is refused by the op-support
check, naming it (``tilec.capture.host.DENSE_OPS`` keeps such a dense op from being cut to the
host). Numerics: the QDQ graph computes what the QOperator one does up to the requantization's
rounding (onnxruntime's QLinear kernels requantize the int32 accumulator their own way, the QDQ
form in float), so an 8-bit value may differ by 1 LSB; checked with onnxruntime in
tests/test_capture_qoperator.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tilec.errors import InputError
from tilec.ir import from_onnx, to_onnx

MS = "com.microsoft"

_DEFAULT = ("", "ai.onnx")

QDQ_OPSET = 13
"""Oldest default-domain opset whose DequantizeLinear takes a per-axis scale (``axis``); a file
at opset 11-12 with operator-quantized ops is converted to it first (onnx.version_converter)."""


def _node_label(node: gs.Node) -> str:
    return f"node '{node.name}' ({node.op})"


class _Rewriter:
    """Builds the replacement nodes for one graph; names never collide with existing ones."""

    def __init__(self, graph: gs.Graph, source: str) -> None:
        self.graph = graph
        self.source = source
        self.names = {n.name for n in graph.nodes}  # node names
        self.tensor_names = set(graph.tensors())
        self.new: list[gs.Node] = []  # replacement nodes for the node being rewritten

    # ---------------------------------------------------------------------------- building
    def _name(self, base: str, taken: set[str] | None = None) -> str:
        taken = self.names if taken is None else taken
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}__{k}"
        taken.add(name)
        return name

    def op(self, op: str, base: str, inputs: list[gs.Tensor], dtype: Any,
           attrs: dict[str, Any] | None = None, out: gs.Variable | None = None) -> gs.Variable:
        """Append one ``op`` node named ``base`` (made unique); returns its output, a new float /
        integer tensor of ``dtype`` unless ``out`` (the replaced node's own output) is given."""
        if out is None:
            out = gs.Variable(self._name(f"{base}:0", self.tensor_names), dtype=dtype)
        node = gs.Node(op, name=self._name(base), attrs=dict(attrs or {}), inputs=inputs,
                       outputs=[out])
        self.new.append(node)
        return out

    def const(self, base: str, value: np.ndarray) -> gs.Constant:
        return gs.Constant(self._name(base, self.tensor_names), np.asarray(value))

    def dequantize(self, base: str, x: gs.Tensor, scale: gs.Tensor, zero: gs.Tensor | None,
                   axis: int | None = None) -> gs.Variable:
        inputs = [x, scale] + ([zero] if zero is not None and zero.name else [])
        return self.op("DequantizeLinear", base, inputs, np.float32,
                       {"axis": axis} if axis is not None else None)

    def quantize(self, base: str, y: gs.Tensor, scale: gs.Tensor, zero: gs.Tensor | None,
                 out: gs.Variable) -> None:
        inputs = [y, scale] + ([zero] if zero is not None and zero.name else [])
        self.op("QuantizeLinear", base, inputs, None, out=out)

    # ---------------------------------------------------------------------------- reading
    def bad(self, node: gs.Node, why: str) -> InputError:
        return InputError(f"{self.source}: {_node_label(node)} {why}")

    def arity(self, node: gs.Node, low: int, high: int | None = None) -> list[gs.Tensor | None]:
        """The node's inputs, padded with None for absent optional ones; checks the count."""
        present = len(node.inputs)
        if present < low or (high is not None and present > high):
            want = (f"at least {low}" if high is None else f"{low}" if high == low
                    else f"{low} to {high}")
            raise self.bad(node, f"has {present} inputs, its definition takes {want}")
        ins: list[gs.Tensor | None] = [t if t.name else None for t in node.inputs]
        return ins + [None] * ((high or present) - present)

    def required(self, node: gs.Node, ins: list[gs.Tensor | None], *index: int) -> None:
        for i in index:
            if ins[i] is None:
                raise self.bad(node, f"has no input {i}, which its definition requires")


def _values(t: gs.Tensor) -> np.ndarray | None:
    """The value of an initializer or of a ``Constant`` node's output (exporters write scales as
    either), else None."""
    if isinstance(t, gs.Constant):
        return np.asarray(t.values)
    node = t.inputs[0] if t.inputs else None
    if node is not None and node.op == "Constant":
        value = node.attrs.get("value")
        if isinstance(value, gs.Constant):
            return np.asarray(value.values)
        for key in ("value_float", "value_int"):
            if key in node.attrs:
                return np.asarray(node.attrs[key])
    return None


def _shape(t: gs.Tensor) -> tuple[int, ...] | None:
    if t.shape is not None and all(isinstance(d, int) for d in t.shape):
        return tuple(int(d) for d in t.shape)
    value = _values(t)
    return None if value is None else value.shape


def _size(t: gs.Tensor | None) -> int | None:
    """Elements of ``t`` when its shape is known (scales and zero points: from the file)."""
    if t is None:
        return 0
    shape = _shape(t)
    return None if shape is None else int(np.prod(shape, dtype=np.int64))


def _rank(t: gs.Tensor) -> int | None:
    shape = _shape(t)
    return None if shape is None else len(shape)


def _per_tensor(*ts: gs.Tensor | None) -> bool:
    return all(_size(t) in (0, 1) for t in ts)


def _axis(scale: gs.Tensor, zero: gs.Tensor | None, axis: int | None) -> int | bool | None:
    """The DequantizeLinear axis for a weight scale: None (per tensor), ``axis`` (1-D, more than
    one element), or False when the layout is one tilec does not rewrite."""
    n = _size(scale)
    if n == 1 and _size(zero) in (0, 1):
        return None
    if n is None or _rank(scale) != 1 or (zero is not None and _size(zero) != n) or axis is None:
        return False
    return axis


def _scaled_bias(rw: _Rewriter, node: gs.Node, bias: gs.Tensor, scales: list[gs.Tensor],
                 factor: float, axis: int | None) -> gs.Variable:
    """``DequantizeLinear(bias, factor * prod(scales))``: an int32 bias at the accumulator's
    scale. The scale is one constant when the scales are; otherwise a run-time Mul of them."""
    values = [_values(s) for s in scales]
    if all(v is not None for v in values):
        value = np.float32(factor)
        for v in values:
            value = value * np.asarray(v, dtype=np.float32)
        scale: gs.Tensor = rw.const(f"{node.name}/bias_scale", np.asarray(value, np.float32))
    else:
        scale = scales[0]
        for i, s in enumerate(scales[1:]):
            scale = rw.op("Mul", f"{node.name}/bias_scale{i}", [scale, s], np.float32)
        if factor != 1.0:
            scale = rw.op("Mul", f"{node.name}/bias_alpha", [
                scale, rw.const(f"{node.name}/alpha", np.float32(factor))], np.float32)
    per_axis = any(_size(s) not in (0, 1) for s in scales)
    return rw.dequantize(f"{node.name}/bias_dequantize", bias, scale, None,
                         axis if per_axis else None)


# ---------------------------------------------------------------------------------- the ops
def _qlinear_conv(rw: _Rewriter, node: gs.Node) -> bool:
    x, xs, xz, w, ws, wz, ys, yz, b = rw.arity(node, 8, 9)
    rw.required(node, [x, xs, xz, w, ws, wz, ys, yz], 0, 1, 3, 4, 6)
    axis = _axis(ws, wz, 0)
    if axis is False or not _per_tensor(xs, xz, ys, yz):
        return False
    xf = rw.dequantize(f"{node.name}/x_dequantize", x, xs, xz)
    wf = rw.dequantize(f"{node.name}/w_dequantize", w, ws, wz, axis)
    ins = [xf, wf]
    if b is not None:
        ins.append(_scaled_bias(rw, node, b, [xs, ws], 1.0, 0))
    y = rw.op("Conv", node.name, ins, np.float32, node.attrs)
    rw.quantize(f"{node.name}/quantize", y, ys, yz, node.outputs[0])
    return True


def _qlinear_matmul(rw: _Rewriter, node: gs.Node) -> bool:
    a, as_, az, b, bs, bz, ys, yz = rw.arity(node, 8, 8)
    rw.required(node, [a, as_, az, b, bs, bz, ys, yz], 0, 1, 3, 4, 6)
    rank = _rank(b)
    axis = _axis(bs, bz, rank - 1 if rank else None)
    if axis is False or not _per_tensor(as_, az, ys, yz):
        return False
    af = rw.dequantize(f"{node.name}/a_dequantize", a, as_, az)
    bf = rw.dequantize(f"{node.name}/b_dequantize", b, bs, bz, axis)
    y = rw.op("MatMul", node.name, [af, bf], np.float32)
    rw.quantize(f"{node.name}/quantize", y, ys, yz, node.outputs[0])
    return True


def _qgemm(rw: _Rewriter, node: gs.Node) -> bool:
    a, as_, az, b, bs, bz, c, ys, yz = rw.arity(node, 6, 9)
    rw.required(node, [a, as_, az, b, bs, bz], 0, 1, 3, 4)
    trans_b = int(node.attrs.get("transB", 0))
    axis = _axis(bs, bz, 0 if trans_b else 1)
    if axis is False or not _per_tensor(as_, az, ys, yz) or (_rank(b) not in (None, 2)):
        return False
    alpha = float(node.attrs.get("alpha", 1.0))
    af = rw.dequantize(f"{node.name}/a_dequantize", a, as_, az)
    bf = rw.dequantize(f"{node.name}/b_dequantize", b, bs, bz, axis)
    ins = [af, bf]
    if c is not None:
        c_rank = _rank(c)
        if _size(bs) != 1 and c_rank is None:
            return False
        ins.append(_scaled_bias(rw, node, c, [as_, bs], alpha, (c_rank or 1) - 1))
    attrs = {"alpha": alpha, "beta": 1.0, "transA": int(node.attrs.get("transA", 0)),
             "transB": trans_b}
    if ys is None:  # float output: the Gemm writes it
        rw.op("Gemm", node.name, ins, np.float32, attrs, out=node.outputs[0])
        node.outputs[0].dtype = np.float32
        return True
    y = rw.op("Gemm", node.name, ins, np.float32, attrs)
    rw.quantize(f"{node.name}/quantize", y, ys, yz, node.outputs[0])
    return True


def _integer(op: str) -> Callable[[_Rewriter, gs.Node], bool]:
    """ConvInteger / MatMulInteger: the float op of the zero-point-shifted integers."""

    def rewrite(rw: _Rewriter, node: gs.Node) -> bool:
        x, w, xz, wz = rw.arity(node, 2, 4)
        rw.required(node, [x, w], 0, 1)
        if op == "Conv":
            w_axis = _axis_of_ones(wz, 0)
        else:
            rank = _rank(w)
            w_axis = _axis_of_ones(wz, rank - 1 if rank else None)
        if w_axis is False or not _per_tensor(xz):
            return False
        one = rw.const(f"{node.name}/unit_scale", np.float32(1.0))
        w_scale = one if w_axis is None else rw.const(
            f"{node.name}/unit_scales", np.ones(_size(wz) or 1, np.float32))
        xf = rw.dequantize(f"{node.name}/x_dequantize", x, one, xz)
        wf = rw.dequantize(f"{node.name}/w_dequantize", w, w_scale, wz, w_axis)
        out = node.outputs[0]
        readers = list(out.outputs)
        graph_output = any(t is out for t in rw.graph.outputs)
        if readers and not graph_output and all(
                r.op == "Cast" and int(r.attrs.get("to", 0)) == onnx.TensorProto.FLOAT
                for r in readers):
            rw.op(op, node.name, [xf, wf], np.float32, node.attrs if op == "Conv" else None,
                  out=out)
            out.dtype = np.float32  # the file's Cast to float reads it as before
        else:
            y = rw.op(op, node.name, [xf, wf], np.float32, node.attrs if op == "Conv" else None)
            rw.op("Cast", f"{node.name}/to_int32", [y], None, {"to": onnx.TensorProto.INT32},
                  out=out)
        return True

    return rewrite


def _axis_of_ones(zero: gs.Tensor | None, axis: int | None) -> int | bool | None:
    """The axis for a weight zero point under a unit scale (per-tensor: None)."""
    n = _size(zero)
    if n in (0, 1):
        return None
    if n is None or zero is None or _rank(zero) != 1 or axis is None:
        return False
    return axis


def _quantize_dynamically(rw: _Rewriter, base: str, x: gs.Tensor, y: gs.Variable | None = None,
                          scale_out: gs.Variable | None = None,
                          zero_out: gs.Variable | None = None
                          ) -> tuple[gs.Variable, gs.Variable, gs.Variable]:
    """DynamicQuantizeLinear's definition as plain ops (uint8, scale from the range widened to
    hold 0, zero point rounded half to even); returns (quantized, scale, zero point), written
    into ``y`` / ``scale_out`` / ``zero_out`` when given."""
    f32 = np.float32
    zero_c = rw.const(f"{base}/zero", f32(0.0))
    lo = rw.op("ReduceMin", f"{base}/min", [x], f32, {"keepdims": 0})
    hi = rw.op("ReduceMax", f"{base}/max", [x], f32, {"keepdims": 0})
    lo = rw.op("Min", f"{base}/min0", [lo, zero_c], f32)
    hi = rw.op("Max", f"{base}/max0", [hi, zero_c], f32)
    span = rw.op("Sub", f"{base}/range", [hi, lo], f32)
    scale = rw.op("Div", f"{base}/scale", [span, rw.const(f"{base}/qrange", f32(255.0))], f32,
                  out=scale_out)
    neg = rw.op("Neg", f"{base}/neg_min", [lo], f32)
    zf = rw.op("Div", f"{base}/zero_point_f", [neg, scale], f32)
    # no saturating Clip: with min <= 0 <= max, -min / scale lies in [0, 255] up to float32
    # rounding far below 0.5, so Round lands in [0, 255] already (one op less per quantization)
    zf = rw.op("Round", f"{base}/zero_point_round", [zf], f32)
    zp = rw.op("Cast", f"{base}/zero_point", [zf], np.uint8, {"to": onnx.TensorProto.UINT8},
               out=zero_out)
    q = rw.op("QuantizeLinear", f"{base}/quantize", [x, scale, zp], np.uint8, out=y)
    return q, scale, zp


def _dynamic_quantize(rw: _Rewriter, node: gs.Node) -> bool:
    (x,) = rw.arity(node, 1, 1)
    rw.required(node, [x], 0)
    y, scale_out, zero_out = [*node.outputs, None, None][:3]
    kept = []
    for t in (scale_out, zero_out):  # scalars by definition (files rarely record their shapes)
        if t is not None and t.name and t.shape is None:
            t.shape = []
        kept.append(t if t is not None and t.name else None)
    _quantize_dynamically(rw, node.name, x, y, *kept)
    return True


def _integer_to_float(dynamic: bool) -> Callable[[_Rewriter, gs.Node], bool]:
    """com.microsoft MatMulIntegerToFloat(A, B, a_scale, b_scale[, a_zp, b_zp, bias]) and
    DynamicQuantizeMatMul(A, B, b_scale[, b_zp, bias]) (A float, quantized as
    DynamicQuantizeLinear does): MatMul of the dequantized operands, plus the float bias."""

    def rewrite(rw: _Rewriter, node: gs.Node) -> bool:
        if dynamic:
            a, b, bs, bz, bias = rw.arity(node, 3, 5)
            rw.required(node, [a, b, bs], 0, 1, 2)
            as_ = az = None
        else:
            a, b, as_, bs, az, bz, bias = rw.arity(node, 4, 7)
            rw.required(node, [a, b, as_, bs], 0, 1, 2, 3)
            if not _per_tensor(as_, az):
                return False
        rank = _rank(b)
        axis = _axis(bs, bz, rank - 1 if rank else None)
        if axis is False:
            return False
        if dynamic:
            a, as_, az = _quantize_dynamically(rw, f"{node.name}/a_quantize", a)
        af = rw.dequantize(f"{node.name}/a_dequantize", a, as_, az)
        bf = rw.dequantize(f"{node.name}/b_dequantize", b, bs, bz, axis)
        out = node.outputs[0]
        if bias is None:
            rw.op("MatMul", node.name, [af, bf], np.float32, out=out)
        else:
            y = rw.op("MatMul", node.name, [af, bf], np.float32)
            rw.op("Add", f"{node.name}/bias", [y, bias], np.float32, out=out)
        return True

    return rewrite


def _elementwise(op: str, n_in: int) -> Callable[[_Rewriter, gs.Node], bool]:
    """com.microsoft QLinear<op> with ``n_in`` quantized inputs (each x, scale, zero point)
    followed by the output's scale and zero point."""

    def rewrite(rw: _Rewriter, node: gs.Node) -> bool:
        count = 3 * n_in + 2
        ins = rw.arity(node, count - 1, count)  # the output zero point is optional
        rw.required(node, ins, *[3 * i for i in range(n_in)], *[3 * i + 1 for i in
                                                                  range(n_in)], count - 2)
        if not _per_tensor(*[t for i, t in enumerate(ins) if i % 3 or i >= 3 * n_in]):
            return False
        if op in ("GlobalAveragePool", "AveragePool") and int(
                node.attrs.get("channels_last", 0)):
            return False  # NHWC: the float op would need transposes round it
        floats = [rw.dequantize(f"{node.name}/dequantize{i}", ins[3 * i], ins[3 * i + 1],
                                ins[3 * i + 2]) for i in range(n_in)]
        attrs = {k: v for k, v in node.attrs.items() if k != "channels_last"}
        y = rw.op(op, node.name, floats, np.float32, attrs)
        rw.quantize(f"{node.name}/quantize", y, ins[count - 2], ins[count - 1], node.outputs[0])
        return True

    return rewrite


def _qlinear_concat(rw: _Rewriter, node: gs.Node) -> bool:
    ins = rw.arity(node, 5)
    if (len(ins) - 2) % 3:
        raise rw.bad(node, f"has {len(ins)} inputs; its definition takes the output's scale and "
                           "zero point, then (tensor, scale, zero point) per input")
    rw.required(node, ins, 0, *range(2, len(ins), 3), *range(3, len(ins), 3))
    if not _per_tensor(*[t for i, t in enumerate(ins) if i < 2 or (i - 2) % 3]):
        return False
    floats = [rw.dequantize(f"{node.name}/dequantize{i}", ins[j], ins[j + 1], ins[j + 2])
              for i, j in enumerate(range(2, len(ins), 3))]
    y = rw.op("Concat", node.name, floats, np.float32, node.attrs)
    rw.quantize(f"{node.name}/quantize", y, ins[0], ins[1], node.outputs[0])
    return True


REWRITES: dict[tuple[str, str], Callable[[_Rewriter, gs.Node], bool]] = {
    ("", "QLinearConv"): _qlinear_conv,
    ("", "QLinearMatMul"): _qlinear_matmul,
    ("", "ConvInteger"): _integer("Conv"),
    ("", "MatMulInteger"): _integer("MatMul"),
    ("", "DynamicQuantizeLinear"): _dynamic_quantize,
    (MS, "QGemm"): _qgemm,
    (MS, "MatMulIntegerToFloat"): _integer_to_float(dynamic=False),
    (MS, "DynamicQuantizeMatMul"): _integer_to_float(dynamic=True),
    (MS, "QLinearAdd"): _elementwise("Add", 2),
    (MS, "QLinearMul"): _elementwise("Mul", 2),
    (MS, "QLinearSigmoid"): _elementwise("Sigmoid", 1),
    (MS, "QLinearLeakyRelu"): _elementwise("LeakyRelu", 1),
    (MS, "QLinearGlobalAveragePool"): _elementwise("GlobalAveragePool", 1),
    (MS, "QLinearAveragePool"): _elementwise("AveragePool", 1),
    (MS, "QLinearConcat"): _qlinear_concat,
}
"""(domain, op type) -> rewrite; a rewrite returns False to leave a node it does not take."""


def _key(domain: str, op: str) -> tuple[str, str]:
    return ("" if domain in _DEFAULT else domain, op)


def _default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in _DEFAULT), None)


def _at_qdq_opset(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """An opset 11-12 file raised to :data:`QDQ_OPSET` (per-axis DequantizeLinear), or None when
    onnx.version_converter cannot (the file is then left as it is, and refused naming its ops)."""
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, QDQ_OPSET)
    except Exception:  # the converter's many failure types
        return None
    return converted if _default_opset(converted) == QDQ_OPSET else None


def rewrite_qoperator(model: onnx.ModelProto, source: str) -> str | None:
    """Rewrite the model's operator-quantized and integer ops to QDQ form, in place.

    Returns the note for the report ("capture: N QOperator ops rewritten to QDQ (...)"), or None
    when the file has none. Nodes a rewrite does not take stay as they are (and are refused by the
    op-support check, naming them). Raises :class:`InputError` for a node whose inputs do not
    match its definition.
    """
    if not any(_key(n.domain, n.op_type) in REWRITES for n in model.graph.node):
        return None
    opset = _default_opset(model)
    upgraded = ""
    work = model
    if opset is not None and opset < QDQ_OPSET:
        work = _at_qdq_opset(model)
        if work is None:
            return None
        upgraded = f"; opset {opset} converted to {QDQ_OPSET} for per-axis DequantizeLinear"
    graph = from_onnx(work)
    rw = _Rewriter(graph, source)
    nodes: list[gs.Node] = []
    done: Counter[str] = Counter()
    for node in graph.nodes:
        rewrite = REWRITES.get(_key(node.domain or "", node.op))
        rw.new = []
        rw.names.discard(node.name)  # the float op takes the node's name (reports, maps)
        if rewrite is None or not rewrite(rw, node):
            for partial in rw.new:  # a rewrite that gave up part way: unhook what it built
                partial.inputs.clear()
                partial.outputs.clear()
            rw.names.add(node.name)
            nodes.append(node)
            continue
        nodes.extend(rw.new)
        done[node.op] += 1
        node.inputs.clear()
        node.outputs.clear()
    if not done:
        return None
    graph.nodes = nodes
    rewritten = to_onnx(graph)
    _keep_header(rewritten, work)
    model.CopyFrom(rewritten)
    kinds = ", ".join(f"{op} x{n}" for op, n in sorted(done.items()))
    total = sum(done.values())
    return (f"capture: {total} QOperator/integer op{'s' if total > 1 else ''} rewritten to QDQ "
            f"({kinds}); weights stay at their stored integer width{upgraded}")


def _keep_header(new: onnx.ModelProto, old: onnx.ModelProto) -> None:
    """What graphsurgeon's export does not carry over: the file's IR version and metadata."""
    new.ir_version = max(new.ir_version, old.ir_version)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(new, field, getattr(old, field))
    del new.metadata_props[:]
    new.metadata_props.extend(old.metadata_props)
