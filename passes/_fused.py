"""tilec's fused ops as model-local ONNX functions (domain ``ai.tilec``), shared by the passes.

A fused op ``Conv<Act>`` (``ConvRelu``, ``ConvMish``, ...) takes the Conv's inputs ``X, W[, B]``
(``ConvClip`` also takes ``min, max``) and the Conv's attributes; its function body is that Conv --
every attribute passed through by reference, so an attribute the node omits stays omitted and takes
the ONNX default -- followed by the activation. onnxruntime inlines the body, so a fused model runs
exactly as the unfused one, and :mod:`tilec.opinfo` reads the node as ``op_type="Conv"`` carrying
``activation=<Act>``.
"""

from __future__ import annotations

import typing

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tilec.ir import FUSED_DOMAIN

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

ACTIVATION_ATTRS: dict[str, dict[str, type]] = {"LeakyRelu": {"alpha": float}}

MISH_OPSET = 18  # the Mish operator exists from opset 18
HARDSWISH_OPSET = 14


def op_type(activation: str) -> str:
    return "Conv" + activation


def _body(activation: str, c: gs.Variable, y: gs.Variable, extra: list[gs.Tensor],
          opset: int) -> list[gs.Node]:
    """Nodes computing ``y = activation(c)``."""
    if activation in ("Relu", "Sigmoid", "Tanh"):
        return [gs.Node(activation, inputs=[c], outputs=[y])]
    if activation == "LeakyRelu":
        return [gs.Node("LeakyRelu", attrs={"alpha": gs.Node.AttributeRef("alpha", float)},
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


def make_function(activation: str, opset: int) -> gs.Function:
    """The ``Conv<activation>`` function at ONNX ``opset``."""
    x, w, b, c, y = (gs.Variable(n) for n in ("X", "W", "B", "conv", "Y"))
    extra: list[gs.Tensor] = []
    if activation == "Clip":
        extra = [gs.Variable("min"), gs.Variable("max")]
    attrs = {k: gs.Node.AttributeRef(k, t) for k, t in CONV_ATTRS.items()}
    nodes = [gs.Node("Conv", attrs=attrs, inputs=[x, w, b], outputs=[c])]
    nodes += _body(activation, c, y, extra, opset)
    fn_attrs: dict[str, object] = dict.fromkeys(CONV_ATTRS)
    fn_attrs.update(dict.fromkeys(ACTIVATION_ATTRS.get(activation, {})))
    return gs.Function(
        op_type(activation), domain=FUSED_DOMAIN, nodes=nodes, inputs=[x, w, b, *extra],
        outputs=[y], attrs=fn_attrs, opset=opset,
        import_domains=[onnx.helper.make_opsetid("", opset)],
    )


def ensure_function(graph: gs.Graph, activation: str) -> None:
    """Add the ``Conv<activation>`` function to ``graph`` unless it is there already."""
    name = op_type(activation)
    if any(f.name == name and f.domain == FUSED_DOMAIN for f in graph.functions):
        return
    graph.functions.append(make_function(activation, int(graph.opset)))


def set_opset(graph: gs.Graph, opset: int) -> None:
    """Raise the graph's default-domain opset to ``opset`` and rebuild the fused functions at it
    (ONNX requires a function's opset imports to agree with the model's)."""
    graph.opset = opset
    if graph.import_domains is not None:
        kept = [d for d in graph.import_domains if d.domain not in ("", "ai.onnx")]
        graph.import_domains = [onnx.helper.make_opsetid("", opset), *kept]
    rebuilt = []
    for fn in graph.functions:
        if fn.domain == FUSED_DOMAIN and fn.name.startswith("Conv"):
            rebuilt.append(make_function(fn.name[4:], opset))
        else:
            fn.opset = opset
            rebuilt.append(fn)
    graph.functions = rebuilt


def fuse(graph: gs.Graph, conv: gs.Node, activation: str, out: gs.Tensor,
         act_attrs: dict[str, object] | None = None,
         extra_inputs: list[gs.Tensor] | None = None) -> gs.Node:
    """Turn ``conv`` (a plain ONNX Conv) into ``Conv<activation>`` producing ``out``, in place.

    The node keeps its name, position, inputs and attributes (annotations included); ``out`` -- the
    activation's output -- keeps its name and readers. The caller disconnects the activation nodes.
    ``ConvClip`` needs a bias input; a zero bias is added when the Conv has none.
    """
    ensure_function(graph, activation)
    if extra_inputs:
        if len(conv.inputs) < 3:
            w = conv.inputs[1]
            out_ch = int(w.shape[0])
            dtype = np.dtype(w.dtype) if not isinstance(w.dtype, int) else np.float32
            conv.inputs.append(gs.Constant(f"{conv.name}/zero_bias", np.zeros(out_ch, dtype)))
        conv.inputs.extend(extra_inputs)
    conv.attrs.update(act_attrs or {})
    conv.op = op_type(activation)
    conv.domain = FUSED_DOMAIN
    if conv.outputs[0] is not out:
        out.inputs.clear()
        conv.outputs[0] = out
    return conv
