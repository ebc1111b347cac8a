"""canonicalize: one clean form for every later pass -- constants folded, no-ops gone, sorted.

Rewrites (all exact):

* **Constant nodes -> initializers.** A ``Constant`` node's value becomes a plain constant tensor,
  so every pass finds weights the same way.
* **Constant folding.** Every node whose inputs are all constants -- and every ``Shape`` of a tensor
  whose shape is known, which is what makes exporters' shape arithmetic
  (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``) constant -- is evaluated once with
  onnxruntime (onnx-graphsurgeon's ``fold_constants``) and replaced by its value. Since shapes are
  concrete at compile time this is exact: ``f(c)`` for constant ``c`` *is* the tensor the node
  would produce. Left alone: ``QuantizeLinear`` / ``DequantizeLinear`` (a pre-quantized weight must
  keep its integer storage, which is what the planner charges) and results over 16 MiB (a broadcast
  constant is cheaper to compute than to store).
* **No-ops removed.** ``Identity``; ``Dropout`` in inference (``y = x``; left alone if its mask is
  read or ``training_mode`` is set); ``Reshape`` / ``Flatten`` / ``Squeeze`` / ``Unsqueeze`` /
  ``Expand`` whose output shape equals its input shape; ``Cast`` to the type the tensor already
  has; ``Transpose`` with the identity permutation; single-input ``Concat`` / ``Sum``. Readers of
  ``y`` read ``x``; when ``y`` is a model output its producer writes ``y`` directly (a no-op
  between a model input and a model output is left alone -- both names must survive).
* **Dead nodes removed** (nothing reads their outputs) and **topological order** restored; shapes
  are inferred again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from tilec.ir import split_shape_ranges, without_annotations

from . import _graph

if TYPE_CHECKING:
    from tilec.passes import PassContext

NAME = "canonicalize"
SUMMARY = "fold constants and exporter shape arithmetic, drop Identity/Dropout/no-op reshapes"
EXACT = True

FOLD_LIMIT_BYTES = 16 << 20
_NO_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear"})
_SAME_SHAPE_NOOPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"})


def _constant_nodes_to_initializers(graph: gs.Graph, ctx: PassContext) -> None:
    for node in graph.nodes:
        if node.op != "Constant" or len(node.outputs) != 1:
            continue
        value = _constant_node_value(node)
        if value is None:
            continue
        out = node.outputs[0]
        node.outputs.clear()
        out.to_constant(value)
        ctx.rewrite("constant-node", node.name, f"{out.name} {list(value.shape)}")


def _constant_node_value(node: gs.Node) -> np.ndarray | None:
    attrs = node.attrs
    if "value" in attrs:
        v = attrs["value"]
        return v.values if isinstance(v, gs.Constant) else np.asarray(v)
    if "value_float" in attrs:
        return np.array(attrs["value_float"], dtype=np.float32)
    if "value_floats" in attrs:
        return np.array(attrs["value_floats"], dtype=np.float32)
    if "value_int" in attrs:
        return np.array(attrs["value_int"], dtype=np.int64)
    if "value_ints" in attrs:
        return np.array(attrs["value_ints"], dtype=np.int64)
    return None


def _fold(graph: gs.Graph, ctx: PassContext) -> None:
    """Fold constant subgraphs with onnx-graphsurgeon (which evaluates them with onnxruntime)."""
    candidates = [n for n in graph.nodes if n.op not in _NO_FOLD and n.outputs]
    if not any(_foldable_hint(n) for n in candidates):
        return
    if split_shape_ranges(graph):  # graphsurgeon folds Shape(start, end) as the whole shape
        candidates = [n for n in graph.nodes if n.op not in _NO_FOLD and n.outputs]
    # Annotations are not ONNX attributes; keep them away from onnxruntime while it folds.
    before = [(n, list(n.outputs)) for n in candidates]
    read_before = [any(t.outputs for t in n.outputs) for n in candidates]
    with without_annotations(graph):
        graph.fold_constants(
            fold_shapes=True, partitioning="basic", error_ok=True, flatten_subgraphs=False,
            size_threshold=FOLD_LIMIT_BYTES, recurse_functions=False,
            should_exclude_node=lambda n: n.op in _NO_FOLD or n.domain not in ("", None),
        )
    outputs = _graph.output_names(graph)
    folded: dict[int, str] = {}
    for node, outs in before:
        if outs and all(isinstance(t, gs.Constant) for t in outs):
            folded[id(node)] = ", ".join(str(list(t.shape)) for t in outs)
            _graph.disconnect(node)
    # Nodes whose readers were all folded (or now read a folded copy of their value): consumers
    # first, so a chain of them goes at once.
    for (node, outs), was_read in reversed(list(zip(before, read_before, strict=True))):
        if (id(node) not in folded and outs and was_read
                and not any(t.outputs or t.name in outputs for t in outs)):
            folded[id(node)] = "replaced by a constant"
            _graph.disconnect(node)
    for node, _ in before:
        if id(node) in folded:
            ctx.rewrite("fold-constant", node.name, f"{node.op} -> {folded[id(node)]}")


def _foldable_hint(node: gs.Node) -> bool:
    """Cheap pre-check: is there anything for fold_constants to do at this node?"""
    if node.op == "Shape":
        return True
    ins = [t for t in node.inputs if t.name]
    return bool(ins) and all(isinstance(t, gs.Constant) for t in ins)


def _noop_reason(node: gs.Node) -> str | None:
    """Why ``node`` passes its first input through unchanged (None if it does not)."""
    if not node.inputs or not node.outputs or (node.domain or "") not in ("", "ai.onnx"):
        return None
    src, dst = node.inputs[0], node.outputs[0]
    same_shape = (src.shape is not None and dst.shape is not None
                  and list(src.shape) == list(dst.shape))
    if node.op == "Identity":
        return "identity"
    if node.op == "Dropout":
        if len(node.outputs) > 1 and node.outputs[1].outputs:
            return None  # the mask is read
        if len(node.inputs) > 2 and node.inputs[2].name:
            mode = _graph.const(node.inputs[2])
            if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
                return None  # training mode (or unknown): random, not a no-op
        return "dropout"
    if node.op in _SAME_SHAPE_NOOPS and same_shape and src.dtype == dst.dtype:
        return f"noop-{node.op.lower()}"
    if node.op == "Cast" and src.dtype is not None and src.dtype == dst.dtype:
        return "noop-cast"
    if node.op == "Transpose" and same_shape:
        perm = node.attrs.get("perm")
        if perm is not None and list(perm) == list(range(len(perm))):
            return "noop-transpose"
    if node.op in ("Concat", "Sum") and len([t for t in node.inputs if t.name]) == 1:
        return f"noop-{node.op.lower()}"
    return None


def _remove_noops(graph: gs.Graph, ctx: PassContext) -> None:
    outputs = _graph.output_names(graph)
    for node in list(graph.nodes):
        reason = _noop_reason(node)
        if reason is None:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        kind = "remove-" + reason
        if _graph.bypass(graph, node, src, dst, outputs):
            ctx.rewrite(kind, node.name, f"{dst.name} -> {src.name}")
        else:
            ctx.leave(kind, node.name, "passes a model input straight to a model output")


def _dead_nodes(graph: gs.Graph, ctx: PassContext) -> None:
    live_before = {id(n): n for n in graph.nodes if n.inputs or n.outputs}
    _graph.cleanup(graph)
    alive = {id(n) for n in graph.nodes}
    for key, node in live_before.items():
        if key not in alive:
            ctx.rewrite("dead-node", node.name, node.op)


def run(graph: gs.Graph, ctx: PassContext) -> None:
    _constant_nodes_to_initializers(graph, ctx)
    _fold(graph, ctx)
    _remove_noops(graph, ctx)
    _dead_nodes(graph, ctx)
