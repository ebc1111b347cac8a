"""fuse-activation: a Conv (or ConvTranspose, Gemm, MatMul) and the activation after it become
one op, ``Conv<Act>`` (``ConvTranspose<Act>``, ...; domain ai.tilec).

The planner charges every op's output as a buffer; an activation applied on the fly as the conv
writes its output needs none of its own. Rewrites (exact -- the fused op is a model-local ONNX
function whose body is the same Conv and activation, see :mod:`tilec.passes._fused`):

* **Conv -> act** (likewise ConvTranspose, Gemm, MatMul -> act) for ``Relu``,
  ``LeakyRelu(alpha)``, ``Sigmoid``, ``Tanh``, ``Clip(min, max)`` (ReLU6), ``Mish``,
  ``HardSwish``, and the decomposed forms exporters emit:
  SiLU ``x * sigmoid(x)``; Mish ``x * tanh(softplus(x))`` and ``x * tanh(log(1 + exp(x)))``
  (softplus(x) = log(1 + e^x)), and ``x * tanh(where(x > t, x, softplus(x)))`` -- PyTorch's
  softplus with its threshold t (default 20), as the dynamo exporter writes ``F.softplus``;
  exact where ``tanh(t)`` rounds to 1 in float32 (numpy: t >= 10): past t both branches' tanh is 1;
  HardSwish ``x * hardsigmoid(x)`` (alpha 1/6, beta 1/2) and
  ``x * clip(x + 3, 0, 6) / 6`` (the /6 as Div or as Mul by 1/6, before or after the product).
  Operand order of Mul/Add is free.
* **Concat -> act** where every Concat input is such an op read only by the Concat: an element-wise
  activation commutes with concatenation, ``act(cat(a, b)) = cat(act(a), act(b))``, so each
  producer takes the activation (Scaled-YOLOv4's ``Mish(BN(cat(..)))`` after fold-bn).
* **Decomposed activation elsewhere -> one op**: a decomposed Mish or HardSwish not after a Conv
  becomes the single ONNX op (opset >= 18 / 14), so it costs one buffer instead of three or four.

Left alone: a conv output with other readers (they need the pre-activation value), a conv output
that is a model output, and any pattern whose constants differ (``log(2 + exp(x))`` is not
softplus; ``clip(x + 3, 0, 5)`` is not HardSwish) or whose intermediate values are read elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_graphsurgeon as gs

from . import _fused, _graph

if TYPE_CHECKING:
    from tilec.passes import PassContext

NAME = "fuse-activation"
SUMMARY = "fuse Conv/ConvTranspose/Gemm/MatMul + Relu/Mish/SiLU/HardSwish/... (decomposed too)"
EXACT = True

_TOL = 1e-6
_SINGLE = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Mish", "HardSwish", "Clip")
_STARTS = frozenset(_SINGLE) | {"Softplus", "Exp", "HardSigmoid", "Add", "Mul"}


@dataclass
class Match:
    """An activation pattern on tensor ``x``: what it computes and which nodes implement it."""

    activation: str
    out: gs.Tensor
    nodes: list[gs.Node]
    form: str
    attrs: dict[str, Any] = field(default_factory=dict)
    extra: list[gs.Tensor] = field(default_factory=list)


def _only(t: gs.Tensor, outputs: set[str], *ops: str) -> gs.Node | None:
    """The sole reader of ``t`` if it is a plain node of one of ``ops``."""
    node = _graph.sole_consumer(t, outputs)
    return node if _graph.is_plain(node, *ops) and len(node.outputs) >= 1 else None


def _other(node: gs.Node, t: gs.Tensor) -> gs.Tensor | None:
    """The other input of a binary node that reads ``t`` exactly once."""
    ins = [i for i in node.inputs if i.name]
    if len(ins) != 2:
        return None
    if ins[0] is t and ins[1] is not t:
        return ins[1]
    if ins[1] is t and ins[0] is not t:
        return ins[0]
    return None


def _is_const_value(t: gs.Tensor | None, value: float, like: gs.Tensor) -> bool:
    """``t`` is a constant equal to ``value`` everywhere that does not change ``like``'s shape."""
    if t is None:
        return False
    v = _graph.scalar(t)
    if v is None or abs(v - value) > _TOL * max(1.0, abs(value)):
        return False
    c = _graph.const(t)
    return c is not None and (c.ndim == 0 or c.size == 1 or (
        like.shape is not None and c.ndim <= len(like.shape)
        and all(d == 1 or d == int(s) for d, s in zip(c.shape[::-1], list(like.shape)[::-1],
                                                         strict=False))))


def _clip_bounds(node: gs.Node) -> tuple[float | None, float | None] | None:
    """(min, max) of a Clip with constant bounds (None for an absent bound); None if not const."""
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11
        return node.attrs.get("min"), node.attrs.get("max")
    lo = hi = None
    if len(node.inputs) > 1 and node.inputs[1].name:
        lo = _graph.scalar(node.inputs[1])
        if lo is None:
            return None
    if len(node.inputs) > 2 and node.inputs[2].name:
        hi = _graph.scalar(node.inputs[2])
        if hi is None:
            return None
    return lo, hi


def _out_of_mul(mul: gs.Node, x: gs.Tensor, other: gs.Tensor) -> bool:
    ins = [i for i in mul.inputs if i.name]
    return len(ins) == 2 and {id(ins[0]), id(ins[1])} == {id(x), id(other)}


def _single(x: gs.Tensor, a: gs.Node) -> Match | None:
    if len([i for i in a.inputs if i.name]) < 1 or a.inputs[0] is not x:
        return None
    out = a.outputs[0]
    if a.op == "LeakyRelu":
        return Match("LeakyRelu", out, [a], "LeakyRelu",
                     attrs={"alpha": float(a.attrs.get("alpha", 0.01))})
    if a.op == "Clip":
        bounds = _clip_bounds(a)
        if bounds is None:
            return None
        lo, hi = bounds
        dtype = np.dtype(x.dtype) if x.dtype is not None else np.dtype(np.float32)
        lo_v = np.array(-np.inf if lo is None else lo, dtype=dtype)
        hi_v = np.array(np.inf if hi is None else hi, dtype=dtype)
        extra = [gs.Constant(f"{a.name}/min", lo_v), gs.Constant(f"{a.name}/max", hi_v)]
        return Match("Clip", out, [a], f"Clip({lo}, {hi})", extra=extra)
    if len([i for i in a.inputs if i.name]) != 1:
        return None
    return Match(a.op, out, [a], a.op)


def _mish_tail(x: gs.Tensor, sp: gs.Tensor, mul_reader: gs.Node, nodes: list[gs.Node],
               outputs: set[str], form: str) -> Match | None:
    """``x * tanh(sp)`` where ``sp`` is softplus(x)."""
    tanh = _only(sp, outputs, "Tanh")
    if tanh is None:
        return None
    th = tanh.outputs[0]
    mul = _only(th, outputs, "Mul")
    if mul is None or mul is not mul_reader or not _out_of_mul(mul, x, th):
        return None
    return Match("Mish", mul.outputs[0], [*nodes, tanh, mul], form)


def _hardswish_tail(x: gs.Tensor, clip_out: gs.Tensor, mul_reader: gs.Node, nodes: list[gs.Node],
                    outputs: set[str]) -> Match | None:
    """``x * c / 6`` where ``c = clip(x + 3, 0, 6)``, /6 before or after the product."""
    nxt = _only(clip_out, outputs, "Div", "Mul")
    if nxt is mul_reader and _out_of_mul(nxt, x, clip_out):
        after = _only(nxt.outputs[0], outputs, "Div", "Mul")
        if after is not None and _scaled_by_sixth(after, nxt.outputs[0]):
            return Match("HardSwish", after.outputs[0], [*nodes, nxt, after],
                         "x*clip(x+3,0,6)/6")
        return None
    if nxt is not None and _scaled_by_sixth(nxt, clip_out):
        mul = _only(nxt.outputs[0], outputs, "Mul")
        if mul is mul_reader and mul is not None and _out_of_mul(mul, x, nxt.outputs[0]):
            return Match("HardSwish", mul.outputs[0], [*nodes, nxt, mul], "x*(clip(x+3,0,6)/6)")
    return None


def _scaled_by_sixth(node: gs.Node, t: gs.Tensor) -> bool:
    other = _other(node, t)
    if node.op == "Div":
        return node.inputs[0] is t and _is_const_value(other, 6.0, t)
    return _is_const_value(other, 1.0 / 6.0, t)


def _threshold_mish(x: gs.Tensor, outputs: set[str]) -> Match | None:
    """``x * tanh(where(x > t, x, softplus(x)))``: four readers of ``x`` (Softplus, Greater,
    Where, Mul). PyTorch's softplus returns x itself past its threshold ``t``; inside Mish that
    is exact once tanh(t) is 1.0 in float32, since tanh of either branch is then 1.0 past t
    (softplus(x) > x > t). A smaller t would change values, so it is left alone."""
    by_op: dict[str, list[gs.Node]] = {}
    for r in x.outputs:
        by_op.setdefault(r.op if _graph.is_plain(r, r.op) else "", []).append(r)
    if sorted(by_op) != ["Greater", "Mul", "Softplus", "Where"] or any(
            len(v) != 1 for v in by_op.values()):
        return None
    sp, gt, where, mul = (by_op[k][0] for k in ("Softplus", "Greater", "Where", "Mul"))
    if len(sp.inputs) != 1 or len(gt.inputs) != 2 or gt.inputs[0] is not x:
        return None
    t = _graph.scalar(gt.inputs[1]) if _graph.const(gt.inputs[1]) is not None else None
    if t is None or np.tanh(np.float32(t)) != np.float32(1.0):
        return None
    if (_only(sp.outputs[0], outputs, "Where") is not where
            or _only(gt.outputs[0], outputs, "Where") is not where
            or [i.name for i in where.inputs] != [gt.outputs[0].name, x.name, sp.outputs[0].name]):
        return None
    return _mish_tail(x, where.outputs[0], mul, [sp, gt, where], outputs,
                      f"x*tanh(where(x>{t:g},x,softplus(x)))")


def _decomposed(x: gs.Tensor, outputs: set[str]) -> Match | None:
    """Two readers of ``x``: a Mul and the start of a chain ending in that Mul (four for the
    thresholded Mish of :func:`_threshold_mish`)."""
    readers = list(x.outputs)
    if len(readers) == 4:
        return _threshold_mish(x, outputs)
    if len(readers) != 2:
        return None
    for mul, start in ((readers[0], readers[1]), (readers[1], readers[0])):
        if not _graph.is_plain(mul, "Mul") or not _graph.is_plain(start, *_STARTS):
            continue
        if start.op == "Sigmoid" and start.inputs[0] is x:
            s = start.outputs[0]
            if _only(s, outputs, "Mul") is mul and _out_of_mul(mul, x, s):
                return Match("SiLU", mul.outputs[0], [start, mul], "x*sigmoid(x)")
        if start.op == "Softplus" and start.inputs[0] is x:
            m = _mish_tail(x, start.outputs[0], mul, [start], outputs, "x*tanh(softplus(x))")
            if m:
                return m
        if start.op == "Exp" and start.inputs[0] is x:
            e = start.outputs[0]
            add = _only(e, outputs, "Add")
            if add is not None and _is_const_value(_other(add, e), 1.0, e):
                log = _only(add.outputs[0], outputs, "Log")
                if log is not None:
                    m = _mish_tail(x, log.outputs[0], mul, [start, add, log], outputs,
                                   "x*tanh(log(1+exp(x)))")
                    if m:
                        return m
        if start.op == "HardSigmoid" and start.inputs[0] is x:
            alpha = float(start.attrs.get("alpha", 0.2))
            beta = float(start.attrs.get("beta", 0.5))
            hs = start.outputs[0]
            if (abs(alpha - 1 / 6) < _TOL and abs(beta - 0.5) < _TOL
                    and _only(hs, outputs, "Mul") is mul and _out_of_mul(mul, x, hs)):
                return Match("HardSwish", mul.outputs[0], [start, mul], "x*hardsigmoid(x)")
        if start.op == "Add" and _is_const_value(_other(start, x), 3.0, x):
            clip = _only(start.outputs[0], outputs, "Clip")
            if clip is not None and _clip_bounds(clip) == (0.0, 6.0):
                m = _hardswish_tail(x, clip.outputs[0], mul, [start, clip], outputs)
                if m:
                    return m
    return None


def match(x: gs.Tensor, outputs: set[str]) -> Match | None:
    """The activation applied to ``x`` by all of its readers, if they form one."""
    if x.name in outputs or not x.outputs:
        return None
    if len(x.outputs) == 1:
        a = x.outputs[0]
        if _graph.is_plain(a, *_SINGLE) and a.outputs:
            return _single(x, a)
        return None
    return _decomposed(x, outputs)


def _fusable_conv(node: gs.Node | None) -> bool:
    """A plain op an activation can be fused into (Conv, ConvTranspose, Gemm, MatMul)."""
    return _graph.is_plain(node, *_fused.BASES) and len(node.outputs) == 1


def _fuse_convs(graph: gs.Graph, ctx: PassContext, outputs: set[str]) -> None:
    for conv in list(graph.nodes):
        if not _fusable_conv(conv):
            continue
        x = conv.outputs[0]
        m = match(x, outputs)
        if m is None:
            readers = [r.op for r in x.outputs]
            if any(op in _STARTS - {"Add", "Mul"} for op in readers):
                why = ("its output is a model output" if x.name in outputs else
                       f"its output is read by {', '.join(sorted(readers))}: not one activation")
                ctx.leave("activation", conv.name, why)
            continue
        names = [n.name for n in m.nodes]
        for n in m.nodes:
            _graph.disconnect(n)
        base = conv.op
        _fused.fuse(graph, conv, m.activation, m.out, m.attrs, m.extra)
        ctx.rewrite(f"{base.lower()}+{m.activation}", (conv.name, *names), m.form)


def _distribute_over_concat(graph: gs.Graph, ctx: PassContext, outputs: set[str]) -> None:
    _names = _graph.Names(graph)
    for concat in list(graph.nodes):
        if not _graph.is_plain(concat, "Concat") or len(concat.outputs) != 1:
            continue
        m = match(concat.outputs[0], outputs)
        if m is None:
            continue
        ins = list(concat.inputs)
        convs = []
        for t in ins:
            prod = _graph.producer(t)
            if (not _fusable_conv(prod) or len(t.outputs) != 1 or t.name in outputs
                    or sum(1 for i in ins if i is t) != 1):
                convs = None
                break
            convs.append(prod)
        if not convs:
            ctx.leave("activation", concat.name,
                      f"{m.activation} after Concat: not every input is a Conv read only by it")
            continue
        names = [n.name for n in m.nodes]
        y = concat.outputs[0]
        for n in m.nodes:
            _graph.disconnect(n)
        for conv in convs:
            extra = [gs.Constant(f"{conv.name}/{e.name.split('/')[-1]}", e.values)
                     for e in m.extra]
            out = conv.outputs[0]
            out.name = _names(f"{out.name}/{m.activation.lower()}")  # it now holds act(conv)
            _fused.fuse(graph, conv, m.activation, out, m.attrs, extra)
        _graph.take_over_output(concat, y, m.out)
        ctx.rewrite("concat+" + m.activation, (concat.name, *names, *(c.name for c in convs)),
                    f"{m.form} moved into {len(convs)} producers")


def _collapse(graph: gs.Graph, ctx: PassContext, outputs: set[str]) -> None:
    opset = int(graph.opset)
    for node in list(graph.nodes):
        if not node.outputs:
            continue
        for x in list(node.outputs):
            m = _decomposed(x, outputs) if len(x.outputs) == 2 else None
            if m is None:
                continue
            if m.activation == "Mish" and opset >= _fused.MISH_OPSET:
                op = "Mish"
            elif m.activation == "HardSwish" and opset >= _fused.HARDSWISH_OPSET:
                op = "HardSwish"
            else:
                continue
            names = [n.name for n in m.nodes]
            for n in m.nodes:
                _graph.disconnect(n)
            m.out.inputs.clear()
            graph.nodes.append(gs.Node(op, name=names[-1], inputs=[x], outputs=[m.out]))
            ctx.rewrite("collapse-" + op, tuple(names), m.form)


def run(graph: gs.Graph, ctx: PassContext) -> None:
    outputs = _graph.output_names(graph)
    _fuse_convs(graph, ctx, outputs)
    _distribute_over_concat(graph, ctx, outputs)
    _collapse(graph, ctx, outputs)
