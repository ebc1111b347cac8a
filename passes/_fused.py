"""tilec's fused ops as model-local ONNX functions (domain ``ai.tilec``), shared by the passes.

A fused op ``<Base><Act>`` (``ConvRelu``, ``ConvMish``, ``ConvTransposeRelu``, ``GemmSiLU``,
``MatMulRelu``, ...) takes the base op's inputs (``X, W[, B]`` for Conv / ConvTranspose, ``A, B[,
C]`` for Gemm, ``A, B`` for MatMul; a ``Clip`` activation also takes ``min, max``) and the base op's
attributes; its function body is that op -- every attribute passed through by reference, so an
attribute the node omits stays omitted and takes the ONNX default -- followed by the activation.
onnxruntime inlines the body, so a fused model runs exactly as the unfused one, and
:mod:`tilec.opinfo` reads the node as ``op_type=<Base>`` carrying ``activation=<Act>``
(:func:`tilec.ir.split_fused_op`).
"""

from __future__ import annotations

import typing

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tilec.ir import FUSED_BASES, FUSED_DOMAIN, split_fused_op

_INTS = typing.List[int]  # noqa: UP006 -- gs maps typing.List[int], not list[int], to ONNX INTS

CONV_ATTRS: dict[str, object] = {
    "auto_pad": str,
    "dilations": _INTS,
    "group": int,
    "kernel_shape": _INTS,
    "pads": _INTS,
    "strides": _INTS,
}
"""Attributes of ONNX Conv; a fused op forwards each to the Conv in its body."""

BASES: dict[str, dict[str, object]] = {
    "Conv": CONV_ATTRS,
    "ConvTranspose": {**CONV_ATTRS, "output_padding": _INTS, "output_shape": _INTS},
    "Gemm": {"alpha": float, "beta": float, "transA": int, "transB": int},
    "MatMul": {},
}
"""Ops an activation fuses into, with their ONNX attributes."""

assert tuple(BASES) == FUSED_BASES  # tilec.ir names them for readers that do not import passes
_BIASED = ("Conv", "ConvTranspose", "Gemm")  # a third (bias) input comes before Clip's min, max

ACTIVATION_ATTRS: dict[str, dict[str, type]] = {"LeakyRelu": {"alpha": float}}


def act_attr_name(name: str, base: str) -> str:
    """The fused op's attribute for activation attribute ``name``: ``name`` itself unless the
    base op has an attribute of that name (Gemm's ``alpha`` vs LeakyRelu's), then ``act_<name>``."""
    return f"act_{name}" if name in BASES[base] else name


MISH_OPSET = 18  # the Mish operator exists from opset 18
HARDSWISH_OPSET = 14


def op_type(activation: str, base: str = "Conv") -> str:
    return base + activation


def _body(activation: str, c: gs.Variable, y: gs.Variable, extra: list[gs.Tensor],
          opset: int, base: str) -> list[gs.Node]:
    """Nodes computing ``y = activation(c)``."""
    if activation in ("Relu", "Sigmoid", "Tanh"):
        return [gs.Node(activation, inputs=[c], outputs=[y])]
    if activation == "LeakyRelu":
        ref = gs.Node.AttributeRef(act_attr_name("alpha", base), float)
        return [gs.Node("LeakyRelu", attrs={"alpha": ref},
                        inputs=[c], outputs=[y])]
    if activation == "Clip":
        return [gs.Node("Clip", inputs=[c, *extra], outputs=[y])]
    if activation == "SiLU":
        s = gs.Variable("sig")
        return [gs.Node("Sigmoid", inputs=[c], outputs=[s]),
                gs.Node("Mul", inputs=[c, s], outputs=[y])]
    if activation == "Mish":
        if opset >= MISH_OPSET:
            return [gs.Node("Mish", inputs=[c], outputs=[y])]
        sp, th = gs.Variable("softplus"), gs.Variable("tanh")
        return [gs.Node("Softplus", inputs=[c], outputs=[sp]),
                gs.Node("Tanh", inputs=[sp], outputs=[th]),
                gs.Node("Mul", inputs=[c, th], outputs=[y])]
    if activation == "HardSwish":
        if opset >= HARDSWISH_OPSET:
            return [gs.Node("HardSwish", inputs=[c], outputs=[y])]
        hs = gs.Variable("hsig")
        return [gs.Node("HardSigmoid", attrs={"alpha": 1.0 / 6.0, "beta": 0.5},
                        inputs=[c], outputs=[hs]),
                gs.Node("Mul", inputs=[c, hs], outputs=[y])]
    raise ValueError(f"no fused form for activation {activation}")


def make_function(activation: str, opset: int, base: str = "Conv") -> gs.Function:
    """The ``<base><activation>`` function at ONNX ``opset``."""
    base_attrs = BASES[base]
    x, w, b, c, y = (gs.Variable(n) for n in ("X", "W", "B", "base", "Y"))
    ins = [x, w, b] if base in _BIASED else [x, w]
    extra: list[gs.Tensor] = []
    if activation == "Clip":
        extra = [gs.Variable("min"), gs.Variable("max")]
    attrs = {k: gs.Node.AttributeRef(k, t) for k, t in base_attrs.items()}
    nodes = [gs.Node(base, attrs=attrs, inputs=list(ins), outputs=[c])]
    nodes += _body(activation, c, y, extra, opset, base)
    fn_attrs: dict[str, object] = dict.fromkeys(base_attrs)
    fn_attrs.update(dict.fromkeys(act_attr_name(k, base)
                                  for k in ACTIVATION_ATTRS.get(activation, {})))
    return gs.Function(
        op_type(activation, base), domain=FUSED_DOMAIN, nodes=nodes, inputs=[*ins, *extra],
        outputs=[y], attrs=fn_attrs, opset=opset,
        import_domains=[onnx.helper.make_opsetid("", opset)],
    )


def ensure_function(graph: gs.Graph, activation: str, base: str = "Conv") -> None:
    """Add the ``<base><activation>`` function to ``graph`` unless it is there already."""
    name = op_type(activation, base)
    if any(f.name == name and f.domain == FUSED_DOMAIN for f in graph.functions):
        return
    graph.functions.append(make_function(activation, int(graph.opset), base))


def set_opset(graph: gs.Graph, opset: int) -> None:
    """Raise the graph's default-domain opset to ``opset`` and rebuild the fused functions at it
    (ONNX requires a function's opset imports to agree with the model's)."""
    graph.opset = opset
    if graph.import_domains is not None:
        kept = [d for d in graph.import_domains if d.domain not in ("", "ai.onnx")]
        graph.import_domains = [onnx.helper.make_opsetid("", opset), *kept]
    rebuilt = []
    for fn in graph.functions:
        parts = split_fused_op(fn.name) if fn.domain == FUSED_DOMAIN else None
        if parts is not None:
            rebuilt.append(make_function(parts[1], opset, parts[0]))
        else:
            fn.opset = opset
            rebuilt.append(fn)
    graph.functions = rebuilt


def fuse(graph: gs.Graph, conv: gs.Node, activation: str, out: gs.Tensor,
         act_attrs: dict[str, object] | None = None,
         extra_inputs: list[gs.Tensor] | None = None) -> gs.Node:
    """Turn ``conv`` (a plain ONNX Conv, ConvTranspose, Gemm or MatMul) into ``<op><activation>``
    producing ``out``, in place.

    The node keeps its name, position, inputs and attributes (annotations included); ``out`` -- the
    activation's output -- keeps its name and readers. The caller disconnects the activation nodes.
    A ``Clip`` after an op with a bias input needs that input present (``min``/``max`` follow
    it); a zero bias is added when the op has none.
    """
    base = conv.op
    ensure_function(graph, activation, base)
    if extra_inputs:
        if base in _BIASED and len(conv.inputs) < 3:
            conv.inputs.append(gs.Constant(f"{conv.name}/zero_bias", _zero_bias(conv)))
        conv.inputs.extend(extra_inputs)
    conv.attrs.update({act_attr_name(k, base): v for k, v in (act_attrs or {}).items()})
    conv.op = op_type(activation, base)
    conv.domain = FUSED_DOMAIN
    if conv.outputs[0] is not out:
        out.inputs.clear()
        conv.outputs[0] = out
    return conv


def _zero_bias(node: gs.Node) -> np.ndarray:
    """A zero bias for ``node`` (Conv: W is [Cout, ...]; ConvTranspose: [Cin, Cout/group, ...];
    Gemm: the output's last dimension, which broadcasts)."""
    w = node.inputs[1]
    dtype = np.dtype(w.dtype) if not isinstance(w.dtype, int) else np.float32
    if node.op == "Conv":
        n = int(w.shape[0])
    elif node.op == "ConvTranspose":
        n = int(w.shape[1]) * int(node.attrs.get("group", 1))
    else:
        n = int(w.shape[0] if int(node.attrs.get("transB", 0)) else w.shape[1])
    return np.zeros(n, dtype)
