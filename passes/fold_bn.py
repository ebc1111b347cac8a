"""fold-bn: BatchNormalization disappears into the op before it, or becomes one per-channel affine.

Inference BN is ``y = t x + s`` per channel with ``t = gamma / sqrt(var + eps)``,
``s = beta - mean t``. Rewrites (all exact up to float rounding):

* **Conv + BN -> Conv**: ``W'[o] = t[o] W[o]``, ``b'[o] = t[o] b[o] + s[o]`` (no bias: ``b = 0``).
  ConvTranspose likewise over its output channels (weight ``[Cin, Cout/g, k..]``, grouped), Gemm
  over its output features (``alpha`` and ``beta`` are folded in and reset to 1).
* **Concat + BN -> split**: a BN after a channel Concat acts on each input's channel slice
  independently, so slice ``[c0, c1)`` of ``(t, s)`` folds into that input's producer -- the
  Scaled-YOLOv4 CSP blocks' ``BN(cat(cv3(..), cv2(x)))``. Inputs whose producer cannot absorb it
  get their slice as a per-channel affine on that input alone, so the BN still disappears.
* **Anything left -> affine**: a BN that cannot fold becomes a depthwise 1x1 Conv (weight ``t``,
  bias ``s``, ``group = C``) on 3-D+ tensors -- one op the planner costs like any conv and
  fuse-activation can attach the next activation to -- or ``Mul`` + ``Add`` on 2-D tensors.

Left alone (folding would be wrong): a producer whose output has other readers (they would see the
scaled values), a producer that is a model output, a weight that is not a float constant (shared
with another graph input, or already quantized), ``training_mode=1``, a BN whose running-statistic
outputs are read. A BN with non-constant parameters stays a BN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx_graphsurgeon as gs

from . import _graph
from ._affine import Affine, affine_node, bn_affine, fold_into

if TYPE_CHECKING:
    from tilec.passes import PassContext

NAME = "fold-bn"
SUMMARY = "fold BatchNormalization into Conv/ConvTranspose/Gemm (split across Concats), else affine"
EXACT = True

_KIND = {"Conv": "conv+bn", "ConvTranspose": "convtranspose+bn", "Gemm": "gemm+bn"}


def _foldable_producer(t: gs.Tensor, reader: gs.Node, outputs: set[str]) -> tuple[gs.Node | None,
                                                                                   str]:
    """The producer of ``t`` if ``reader`` is its only reader, else (None, why not)."""
    prod = _graph.producer(t)
    if prod is None:
        return None, "its input is a model input or constant"
    if t.name in outputs:
        return None, "its input is a model output"
    if len(t.outputs) != 1 or t.outputs[0] is not reader:
        return None, f"its input '{t.name}' has other readers"
    if sum(1 for x in reader.inputs if x is t) != 1:
        return None, f"'{t.name}' is read twice by {reader.name}"
    return prod, ""


def _replace_by_affine(graph: gs.Graph, bn: gs.Node, aff: Affine, names: _graph.Names) -> None:
    x, y = bn.inputs[0], bn.outputs[0]
    _graph.disconnect(bn)
    graph.nodes.extend(affine_node(bn.name, x, y, aff, names))


def _split_over_concat(graph: gs.Graph, bn: gs.Node, concat: gs.Node, aff: Affine,
                       names: _graph.Names, outputs: set[str], ctx: PassContext) -> bool:
    """Fold ``bn`` into the producers of ``concat``'s inputs; False if none can absorb a slice."""
    rank = len(concat.outputs[0].shape)
    axis = int(concat.attrs.get("axis", 0))
    if axis < 0:
        axis += rank
    if axis != 1:
        return False
    widths = []
    for t in concat.inputs:
        if t.shape is None or len(t.shape) != rank:
            return False
        widths.append(int(t.shape[1]))
    if sum(widths) != aff.scale.size:
        return False
    plans: list[tuple[int, gs.Tensor, gs.Node | None]] = []
    for i, t in enumerate(concat.inputs):
        prod, _ = _foldable_producer(t, concat, outputs)
        ok = prod is not None and _graph.is_plain(prod, "Conv", "ConvTranspose", "Gemm") and (
            _graph.const(prod.inputs[1]) is not None)
        plans.append((i, t, prod if ok else None))
    if not any(p is not None for _, _, p in plans):
        return False
    folded, affined = [], []
    c0 = 0
    for (i, t, prod), width in zip(plans, widths, strict=True):
        part = aff[c0:c0 + width]
        c0 += width
        if prod is not None and fold_into(prod, part, names, ctx.memo) is None:
            t.name = names(f"{t.name}/bn")  # it now holds BN'd values: a name keeps its meaning
            folded.append(prod.name)
            continue
        # This input's producer cannot absorb its slice: an affine on this input alone.
        y = gs.Variable(names(f"{t.name}/bn"), dtype=t.dtype, shape=t.shape)
        node_name = names(f"{bn.name}/part{i}")
        graph.nodes.extend(affine_node(node_name, t, y, part, names))
        concat.inputs[i] = y
        affined.append(node_name)
    out = bn.outputs[0]
    _graph.disconnect(bn)
    _graph.take_over_output(concat, concat.outputs[0], out)
    ctx.rewrite("concat-split", (bn.name, concat.name, *folded, *affined),
                f"{len(folded)} slice(s) folded, {len(affined)} as affine")
    return True


def run(graph: gs.Graph, ctx: PassContext) -> None:
    names = _graph.Names(graph)
    outputs = _graph.output_names(graph)
    for bn in list(graph.nodes):
        if not _graph.is_plain(bn, "BatchNormalization") or not bn.outputs:
            continue
        aff, why = bn_affine(bn, outputs)
        if aff is None:
            ctx.leave("bn", bn.name, why)
            continue
        x = bn.inputs[0]
        prod, why_not = _foldable_producer(x, bn, outputs)
        if prod is not None and _graph.is_plain(prod, "Conv", "ConvTranspose", "Gemm"):
            failure = fold_into(prod, aff, names, ctx.memo)
            if failure is None:
                out = bn.outputs[0]
                _graph.disconnect(bn)
                _graph.take_over_output(prod, prod.outputs[0], out)
                ctx.rewrite(_KIND[prod.op], (prod.name, bn.name))
                continue
            why_not = failure
        elif prod is not None and _graph.is_plain(prod, "Concat"):
            if _split_over_concat(graph, bn, prod, aff, names, outputs, ctx):
                continue
            why_not = "no input of the Concat can absorb its channel slice"
        elif prod is not None:
            why_not = f"producer is {prod.op}"
        ctx.leave("fold", bn.name, why_not)
        _replace_by_affine(graph, bn, aff, names)
        ctx.rewrite("bn-affine", bn.name, f"{aff.scale.size} channels")
