"""quantize: per-output-channel symmetric weight quantization to int8 / int4 / int2, per layer.

For a layer's weight ``W`` and output channel ``o`` with ``b`` bits: ``qmax = 2^(b-1) - 1``
(127, 7, 1), ``q = clip(round(W / s[o]), -qmax, qmax)`` and the dequantized weight
``W~ = s[o] q``. int8 uses ``s[o] = max|W[o]| / qmax``; int4 and int2 fit ``s[o]`` to minimise
``|W[o] - W~[o]|^2`` (a clipped start refined by least squares, never worse than max-abs -- see
:func:`quantize_rows`). Symmetric
(no zero point) because that is what accelerators with integer MACs implement cheaply; per channel
because one outlier channel would otherwise cost every channel its resolution. int2 is therefore
ternary, ``{-s, 0, s}``. Each layer's signal-to-quantization-noise ratio
``10 log10(sum W^2 / sum (W - W~)^2)`` is reported.

In ONNX the integer weight is stored as an INT8 / INT4 / INT2 initializer read by a per-axis
``DequantizeLinear`` (INT4 needs opset 21, INT2 opset 25: the graph's opset is raised when needed;
onnxruntime 1.31 runs all three, which is checked once per process on a tiny model). Where
onnxruntime cannot run that form (a grouped ConvTranspose, whose output channels are not one weight
axis, or an older onnxruntime), the layer keeps a float *fake-quantized* copy ``W~`` -- numerically
identical -- and the node records ``weight_bits`` for the planner.

Precision per layer comes from ``--precision`` or a ``--precision-map`` (see
:mod:`tilec.passes._precision`); fp16/fp32 layers are not changed (the target charges their storage
width), except that a float layer whose precision differs from the compile precision records its
``weight_bits``. Every quantized layer records ``act_bits``, the width of its output activations
(the layer's bits, or what the caller's ``act_bits(precision)`` says the target stores -- gc200
keeps fp16 activations under int weights). With calibration inputs (``--calibration``) activations
are also quantized: per-tensor symmetric ``QuantizeLinear`` / ``DequantizeLinear`` after each
quantized layer, scale from the largest magnitude seen on the calibration set (run with the
quantized weights).

Not exact: the pipeline measures the model's output error after this pass instead of requiring
equality.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from tilec import numerics
from tilec.errors import InputError
from tilec.ir import FUSED_DOMAIN, set_ann, split_fused_op, to_onnx

from . import _fused, _graph
from ._precision import BITS, INT_PRECISIONS

if TYPE_CHECKING:
    from tilec.passes import PassContext

NAME = "quantize"
SUMMARY = "per-channel symmetric int8/int4/int2 weights (QDQ), per layer; SQNR per layer"
EXACT = False

ONNX_TYPE = {8: onnx.TensorProto.INT8, 4: onnx.TensorProto.INT4, 2: onnx.TensorProto.INT2}
MIN_OPSET = {8: 13, 4: 21, 2: 25}
"""Oldest opset whose DequantizeLinear takes per-axis INT8 (13), INT4 (21), INT2 (25) inputs."""
HALF_OPSET = 19
"""Oldest opset whose QuantizeLinear / DequantizeLinear take float16 scales (and a float16 input
to quantize): a half-precision model's weights dequantize to float16 -- a float32 scale would
make a float32 weight beside float16 activations, which no Conv accepts."""


def _scale_dtype(dtype: np.dtype) -> np.dtype:
    """The scale's type for a tensor of ``dtype``: float16 for a half-precision graph (its
    dequantized values must be float16 too), else float32."""
    return np.dtype(np.float16) if np.dtype(dtype) == np.float16 else np.dtype(np.float32)


def _raise_opset(graph: gs.Graph, want: int, why: str, ctx: PassContext) -> None:
    if int(graph.opset) < want:
        old = int(graph.opset)
        _fused.set_opset(graph, want)
        ctx.note(f"opset raised from {old} to {want} for {why}")


# ----------------------------------------------------------------------------------- the maths
def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


CLIP_START = {4: 2.5, 2: 1.0}
"""Starting clip (in RMS units of the channel) for 4- and 2-bit scales -- modelling choice: near the
MSE-optimal clip of Gaussian weights; the least-squares refinement below and the per-channel
comparison with max-abs make the result insensitive to the exact value."""
REFINE_STEPS = 3


def quantize_rows(rows: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize each row of ``rows`` (channels x elements) symmetrically.

    Returns ``(q, scale, err)``: int8 codes, float32 scales and each row's squared error
    ``|w - s q|^2`` (for the SQNR, without a second pass over the weights).

    8 bits: ``s = max|w| / qmax`` (no clipping: at 255 levels the max-abs grid is already close
    to MSE-optimal). 4 and 2 bits: max-abs wastes most levels on rare large weights (int2 would
    round almost every weight to 0), so the scale is instead fitted -- start from a clipped range,
    then alternate ``q = clip(round(w / s))`` and the least-squares ``s = <w, q> / <q, q>``, each
    step lowering the squared error -- and each channel keeps whichever of the two scales gives the
    smaller error.
    """
    qm = qmax(bits)
    rows = np.asarray(rows, dtype=np.float32)
    amax = np.max(np.abs(rows), axis=1) if rows.size else np.zeros(rows.shape[0], np.float32)
    s_max = np.where(amax > 0, amax / qm, 1.0).astype(np.float32)
    q_max = np.clip(np.rint(rows / s_max[:, None]), -qm, qm)
    err_max = _row_err(rows, q_max, s_max)
    if bits >= 8 or rows.shape[1] == 0:
        return q_max.astype(np.int8), s_max, err_max
    rms = np.sqrt(np.einsum("ij,ij->i", rows, rows) / rows.shape[1])
    s = np.where(amax > 0, np.minimum(amax, CLIP_START[bits] * rms) / qm, 1.0).astype(np.float32)
    q = np.clip(np.rint(rows / s[:, None]), -qm, qm)
    for _ in range(REFINE_STEPS):
        den = np.einsum("ij,ij->i", q, q)
        num = np.einsum("ij,ij->i", rows, q)
        s = np.where(den > 0, num / np.maximum(den, 1e-30), s).astype(np.float32)
        s = np.where(s > 0, s, s_max)
        q = np.clip(np.rint(rows / s[:, None]), -qm, qm)
    err_fit = _row_err(rows, q, s)
    better = err_fit < err_max
    q = np.where(better[:, None], q, q_max)
    s = np.where(better, s, s_max).astype(np.float32)
    return q.astype(np.int8), s, np.where(better, err_fit, err_max)


def _row_err(rows: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    d = rows - q * s[:, None]
    return np.einsum("ij,ij->i", d, d).astype(np.float64)


def sqnr_from(rows: np.ndarray, err: np.ndarray) -> float:
    """SQNR in dB of a whole weight from its rows and per-row squared errors."""
    noise = float(np.sum(err))
    signal = float(np.einsum("ij,ij->", rows, rows, dtype=np.float64))
    if noise == 0.0:
        return float("inf")
    return 10.0 * math.log10(signal / noise) if signal > 0 else float("-inf")


def pack(q: np.ndarray, bits: int) -> bytes:
    """ONNX packing of sub-byte integers: element ``i`` in bits ``(i % k) * bits`` of byte
    ``i // k`` (``k = 8 / bits``), low bits first, two's complement."""
    per = 8 // bits
    u = (q.astype(np.int16).reshape(-1) & ((1 << bits) - 1)).astype(np.uint8)
    pad = (-u.size) % per
    if pad:
        u = np.concatenate([u, np.zeros(pad, np.uint8)])
    u = u.reshape(-1, per)
    out = np.zeros(u.shape[0], np.uint8)
    for i in range(per):
        out |= u[:, i] << np.uint8(i * bits)
    return out.tobytes()


def int_constant(name: str, q: np.ndarray, bits: int) -> gs.Constant:
    """An INT8/INT4/INT2 initializer holding ``q`` (packed for sub-byte types)."""
    if bits == 8:
        return gs.Constant(name, q.astype(np.int8))
    proto = onnx.TensorProto()
    proto.name = name
    proto.data_type = ONNX_TYPE[bits]
    proto.dims.extend(int(d) for d in q.shape)
    proto.raw_data = pack(q, bits)
    return gs.Constant(name, LazyValues(proto))


@functools.cache
def ort_runs_dequantize(bits: int) -> bool:
    """Does this onnxruntime run a per-axis DequantizeLinear of ``bits``-bit weights into a Conv?"""
    from onnx import helper as h

    q = np.array([[[[1]]], [[[-1]]]], dtype=np.int8)
    w = int_constant("w", q, bits)
    proto = (onnx.numpy_helper.from_array(q, "w") if bits == 8 else w._values.tensor)
    graph = h.make_graph(
        [h.make_node("DequantizeLinear", ["w", "s"], ["wf"], axis=0),
         h.make_node("Conv", ["x", "wf"], ["y"])], "probe",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 2, 2])],
        [proto, onnx.numpy_helper.from_array(np.array([0.5, 2.0], np.float32), "s")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", MIN_OPSET[bits])])
    model.ir_version = 10
    try:
        y = numerics.run(model, {"x": np.ones((1, 1, 2, 2), np.float32)})["y"]
    except Exception:
        return False
    return bool(np.allclose(y[0, 0], 0.5) and np.allclose(y[0, 1], -2.0))


# ----------------------------------------------------------------------------------- layers
@dataclass
class Layer:
    node: gs.Node
    index: int  # weight input
    axis: int | None  # output-channel axis of the weight (None: not a single axis)


def _layer(node: gs.Node) -> Layer | None:
    """``node`` as a layer with a float constant weight, or None."""
    plain = (node.domain or "") in ("", "ai.onnx")
    fused = split_fused_op(node.op) if node.domain == FUSED_DOMAIN else None
    if not (plain or fused):
        return None
    op = fused[0] if fused else node.op
    idx, axis = None, None
    if op == "Conv":
        idx, axis = 1, 0
    elif op == "ConvTranspose":
        idx, axis = 1, (1 if int(node.attrs.get("group", 1)) == 1 else None)
    elif op == "Gemm":
        idx, axis = 1, (0 if int(node.attrs.get("transB", 0)) else 1)
    elif op == "MatMul":
        for i, ax in ((1, 1), (0, 0)):
            if len(node.inputs) > i and isinstance(node.inputs[i], gs.Constant):
                idx, axis = i, ax
                break
    if idx is None or len(node.inputs) <= idx:
        return None
    w = node.inputs[idx]
    if not isinstance(w, gs.Constant) or len(w.shape) < 2:
        return None
    if not np.issubdtype(np.dtype(w.dtype), np.floating):
        return None
    if op == "MatMul" and len(w.shape) != 2:
        return None
    return Layer(node, idx, axis)


def _ends(graph: gs.Graph, layers: dict[int, Layer]) -> tuple[set[str], set[str]]:
    """Names of the first layers (reached from an input through no other layer) and the last
    (reaching an output through no other layer)."""
    first: set[str] = set()
    seen: set[int] = set()
    queue = deque(graph.inputs)
    while queue:
        t = queue.popleft()
        for node in t.outputs:
            if id(node) in seen:
                continue
            seen.add(id(node))
            if id(node) in layers:
                first.add(node.name)
            else:
                queue.extend(node.outputs)
    last: set[str] = set()
    seen = set()
    queue = deque(graph.outputs)
    while queue:
        t = queue.popleft()
        for node in t.inputs:
            if id(node) in seen:
                continue
            seen.add(id(node))
            if id(node) in layers:
                last.add(node.name)
            else:
                queue.extend(i for i in node.inputs if not isinstance(i, gs.Constant))
    return first, last


def _channel_rows(w: np.ndarray, node: gs.Node, axis: int | None) -> np.ndarray:
    """The weight as (output channels x elements)."""
    if axis is not None:
        return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    g = int(node.attrs.get("group", 1))  # grouped ConvTranspose: [g, Cin/g, Cout/g, k..]
    shaped = w.reshape((g, w.shape[0] // g, w.shape[1], *w.shape[2:]))
    return np.moveaxis(shaped, 2, 1).reshape(g * w.shape[1], -1)


def _from_rows(rows: np.ndarray, w_shape: tuple[int, ...], node: gs.Node,
               axis: int | None) -> np.ndarray:
    if axis is not None:
        moved = (w_shape[axis], *tuple(d for i, d in enumerate(w_shape) if i != axis))
        return np.moveaxis(rows.reshape(moved), 0, axis)
    g = int(node.attrs.get("group", 1))
    cin_g, cout_g = w_shape[0] // g, w_shape[1]
    shaped = rows.reshape((g, cout_g, cin_g, *tuple(w_shape[2:])))
    return np.moveaxis(shaped, 1, 2).reshape(w_shape)


# ----------------------------------------------------------------------------------- the pass
def _act_bits(ctx: PassContext, precision: str) -> int:
    return int(ctx.act_bits(precision)) if ctx.act_bits is not None else BITS[precision]


def _quantize_layer(graph: gs.Graph, layer: Layer, bits: int, ctx: PassContext,
                    names: _graph.Names) -> dict:
    node = layer.node
    w_t = node.inputs[layer.index]
    w = w_t.values
    key = ("weights", node.name, bits)
    hit = ctx.memo.get(key)
    if hit is not None and hit[0] is w:
        _, q_rows, scale, sqnr = hit
    else:
        rows = _channel_rows(np.asarray(w, dtype=np.float32), node, layer.axis)
        q_rows, scale, err = quantize_rows(rows, bits)
        sqnr = sqnr_from(rows, err)
        ctx.memo[key] = (w, q_rows, scale, sqnr)
    qdq = layer.axis is not None and ort_runs_dequantize(bits)
    dtype = np.dtype(w.dtype)
    if qdq:
        _raise_opset(graph, MIN_OPSET[bits], f"INT{bits} DequantizeLinear", ctx)
        if _scale_dtype(dtype) == np.float16:
            _raise_opset(graph, HALF_OPSET, "float16 DequantizeLinear", ctx)
        q = _from_rows(q_rows, w.shape, node, layer.axis)
        q_c = int_constant(names(f"{node.name}/W_int{bits}"), q, bits)
        s_c = gs.Constant(names(f"{node.name}/W_scale"), scale.astype(_scale_dtype(dtype)))
        out = gs.Variable(names(f"{node.name}/W_dq"), dtype=dtype, shape=list(w.shape))
        dq = gs.Node("DequantizeLinear", name=names(f"{node.name}/dequantize"),
                     attrs={"axis": int(layer.axis)}, inputs=[q_c, s_c], outputs=[out])
        set_ann(dq, "bits", bits)
        graph.nodes.append(dq)
        node.inputs[layer.index] = out
        form = "qdq"
    else:
        approx = _from_rows(q_rows.astype(np.float32) * scale[:, None], w.shape, node,
                            layer.axis)
        node.inputs[layer.index] = gs.Constant(names(f"{node.name}/W_fq{bits}"),
                                               approx.astype(dtype))
        set_ann(node, "weight_bits", bits)
        form = "fake-quant"
    n = math.prod(w.shape)
    return {"form": form, "params": n, "sqnr_db": round(float(sqnr), 3),
            "weight_bytes": (n * bits + 7) // 8, "scale_bytes": int(scale.size) * 4,
            "fp16_bytes": n * 2}


def run(graph: gs.Graph, ctx: PassContext) -> None:
    global_p = ctx.precision
    pmap = ctx.precision_map
    if pmap is None and global_p not in INT_PRECISIONS:
        ctx.note(f"nothing to do at {global_p} (the target charges float weights at its width)")
        return
    layers = {id(n): lay for n in graph.nodes if (lay := _layer(n)) is not None}
    if not layers:
        ctx.note("no layer has a float constant weight")
        return
    ordered = [lay.node.name for lay in layers.values()]
    first, last = _ends(graph, layers)
    chosen = (pmap.resolve(ordered, first, last, global_p) if pmap is not None
              else dict.fromkeys(ordered, global_p))
    names = _graph.Names(graph)
    quantized: list[tuple[Layer, int]] = []
    for lay in layers.values():
        node = lay.node
        p = chosen[node.name]
        role = "first" if node.name in first else ("last" if node.name in last else "")
        entry = {"name": node.name, "op": node.op, "precision": p, "bits": BITS[p],
                 "role": role}
        if p in INT_PRECISIONS:
            bits = BITS[p]
            entry.update(_quantize_layer(graph, lay, bits, ctx, names))
            set_ann(node, "act_bits", _act_bits(ctx, p))
            ctx.rewrite(f"quantize-{p}", node.name,
                        f"{entry['form']}, SQNR {entry['sqnr_db']:.1f} dB")
            quantized.append((lay, bits))
        elif p != global_p:
            set_ann(node, "weight_bits", BITS[p])
            set_ann(node, "act_bits", _act_bits(ctx, p))
            entry.update({"form": "float", "params": math.prod(node.inputs[lay.index].shape)})
            ctx.rewrite(f"keep-{p}", node.name, "float layer at a precision other than the "
                                                "compile precision")
        else:
            entry.update({"form": "float", "params": math.prod(node.inputs[lay.index].shape)})
        ctx.stats.layers.append(entry)
    if quantized and (ctx.calibration or ctx.role == "probe"):
        _quantize_activations(graph, quantized, ctx, names)
    elif quantized:
        ctx.note("activation bit widths recorded (act_bits); no --calibration inputs, so no "
                 "activation QuantizeLinear/DequantizeLinear inserted")


# ----------------------------------------------------------------------------------- activations
def _calibrate(graph: gs.Graph, tensors: list[gs.Tensor],
               batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Largest |value| of each tensor over the calibration batches (onnxruntime, the model with its
    weights already quantized -- the activations the quantized layers will really produce)."""
    saved = list(graph.outputs)
    graph.outputs = saved + [t for t in tensors if t not in saved]
    try:
        sess = numerics.session(to_onnx(graph))
    finally:
        graph.outputs = saved
    specs = numerics.input_specs(sess)
    want = [t.name for t in tensors]
    amax = dict.fromkeys(want, 0.0)
    for batch in batches:
        for spec in specs:
            if spec.name in batch and tuple(batch[spec.name].shape) != spec.shape:
                raise InputError(f"--calibration: batch for '{spec.name}' has shape "
                                 f"{list(batch[spec.name].shape)}, the model takes "
                                 f"{list(spec.shape)}")
        values = numerics.run(sess, batch, want)
        for name, v in values.items():
            amax[name] = max(amax[name], float(np.max(np.abs(v))) if v.size else 0.0)
    return amax


def _quantize_activations(graph: gs.Graph, quantized: list[tuple[Layer, int]], ctx: PassContext,
                          names: _graph.Names) -> None:
    outs = [lay.node.outputs[0] for lay, _ in quantized]
    key = ("act-amax",)
    if ctx.role == "probe":
        amax = ctx.memo.get(key)
        if amax is None:
            return  # the model itself had no calibration: nothing to mirror
    else:
        amax = _calibrate(graph, outs, ctx.calibration or [])
        ctx.memo[key] = amax
    outputs = _graph.output_names(graph)
    for (lay, bits), y in zip(quantized, outs, strict=True):
        a = amax.get(y.name, 0.0)  # the probe's tensors carry the model's names
        half = y.dtype is not None and _scale_dtype(y.dtype) == np.float16
        if half:
            _raise_opset(graph, HALF_OPSET, "float16 QuantizeLinear", ctx)
        scale = np.array(a / qmax(bits) if a > 0 else 1.0,
                         dtype=np.float16 if half else np.float32)
        zp = int_constant(names(f"{lay.node.name}/act_zp"), np.zeros((), np.int8), bits)
        s_c = gs.Constant(names(f"{lay.node.name}/act_scale"), scale)
        q = gs.Variable(names(f"{y.name}/q"))
        node = lay.node
        if y.name in outputs:
            pre = gs.Variable(names(f"{y.name}/pre"), dtype=y.dtype, shape=y.shape)
            node.outputs[0] = pre  # (unlinks y from the node)
            src, dst = pre, y
        else:
            dst = gs.Variable(names(f"{y.name}/dq"), dtype=y.dtype, shape=y.shape)
            _graph.replace_uses(y, dst)
            src = y
        qn = gs.Node("QuantizeLinear", name=names(f"{node.name}/act_quantize"),
                     inputs=[src, s_c, zp], outputs=[q])
        dqn = gs.Node("DequantizeLinear", name=names(f"{node.name}/act_dequantize"),
                      inputs=[q, s_c, zp], outputs=[dst])
        set_ann(qn, "act_bits", bits)
        set_ann(dqn, "act_bits", bits)
        graph.nodes.extend([qn, dqn])
        ctx.rewrite(f"act-quantize-int{bits}", node.name, f"scale {float(scale):.4g}")

