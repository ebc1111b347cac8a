"""concat-in-place: Concats whose producers can write straight into slices of the output buffer.

``y = cat(x_1, .., x_k)`` along an axis needs no copy if each producer writes ``x_i`` directly into
its slice of ``y``'s buffer: then ``x_i`` *is* that slice, and the planner charges one buffer of
``|y|`` instead of ``|y| + sum |x_i|`` (CSP networks concatenate at every block). The pass only
annotates (``in_place=True`` on the Concat; :mod:`tilec.opinfo` then makes each ``x_i`` a part of
``y``); the model computes exactly what it did.

A Concat is marked when every input
* is produced by an op (a model input or a constant already lives in its own buffer),
* is not itself a view (Reshape, Flatten, ...: its buffer belongs to the tensor it views), and is
  not a model output (outputs are handed to the host whole),
* appears once in the Concat and in no other in-place Concat (a buffer cannot be two slices).

Other readers of an input are fine: they read the slice in place. When the dimensions before the
axis are not all 1 (e.g. a channel concat at batch 2) each producer writes its slice with a stride;
tiled targets write through a strided view (Poplar's concat is itself a view), so the decision does
not depend on the batch. Concats that stay copies are listed with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx_graphsurgeon as gs

from tilec.ir import get_ann, set_ann
from tilec.opinfo import CONSTANT_ONLY_OPS, OP_KINDS

from . import _graph

if TYPE_CHECKING:
    from tilec.passes import PassContext

NAME = "concat-in-place"
SUMMARY = "mark Concats whose producers write straight into the output buffer (no copy)"
EXACT = True
ANNOTATES_ONLY = True

_VIEWS = frozenset(op for op, kind in OP_KINDS.items() if kind == "view")


def _reason(t: gs.Tensor, concat: gs.Node, outputs: set[str], taken: set[str]) -> str | None:
    """Why input ``t`` cannot be written in place (None if it can)."""
    prod = _graph.producer(t)
    if prod is None:
        return f"input '{t.name}' is a model input or a constant"
    if prod.op in CONSTANT_ONLY_OPS or all(_graph.is_const(i) for i in prod.inputs if i.name):
        return f"input '{t.name}' is computed from constants only"
    if prod.op in _VIEWS and (prod.domain or "") == "":
        return f"input '{t.name}' is a view ({prod.op}) of another buffer"
    if t.name in outputs:
        return f"input '{t.name}' is a model output"
    if sum(1 for i in concat.inputs if i is t) > 1:
        return f"input '{t.name}' appears twice"
    if t.name in taken:
        return f"input '{t.name}' is already a slice of another in-place Concat"
    return None


def run(graph: gs.Graph, ctx: PassContext) -> None:
    outputs = _graph.output_names(graph)
    taken: set[str] = set()
    for node in graph.nodes:
        if node.op == "Concat" and get_ann(node, "in_place"):
            taken.update(t.name for t in node.inputs)
    for node in graph.nodes:
        if not _graph.is_plain(node, "Concat") or get_ann(node, "in_place"):
            continue
        inputs = [t for t in node.inputs if t.name]
        if len(inputs) < 2:
            continue
        why = next((r for t in inputs if (r := _reason(t, node, outputs, taken))), None)
        if why is not None:
            ctx.leave("concat", node.name, why)
            continue
        set_ann(node, "in_place", True)
        taken.update(t.name for t in inputs)
        out = node.outputs[0]
        ctx.rewrite("in-place", node.name,
                    f"{len(inputs)} inputs into {list(out.shape) if out.shape else '?'}")
