"""Small graph-surgery helpers shared by the passes (not a pass).

All helpers work from the links onnx-graphsurgeon keeps on every tensor (``tensor.inputs`` is its
producer, ``tensor.outputs`` its consumers), so a pass looks at a node's neighbourhood in O(1) and a
whole pass stays linear in the graph size. Removed nodes are only disconnected; each pass ends with
one ``graph.cleanup()``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from tilec.ir import constant_value


# ----------------------------------------------------------------------------------- queries
def producer(t: gs.Tensor) -> gs.Node | None:
    """The node producing ``t`` (None for graph inputs and initializers)."""
    return t.inputs[0] if t.inputs else None




def sole_consumer(t: gs.Tensor, outputs: set[str]) -> gs.Node | None:
    """The only node reading ``t``, if exactly one does and ``t`` is not a graph output."""
    if t.name in outputs or len(t.outputs) != 1:
        return None
    return t.outputs[0]




def output_names(graph: gs.Graph) -> set[str]:
    return {t.name for t in graph.outputs}


def const(t: gs.Tensor | None) -> np.ndarray | None:
    """The value of ``t`` when it is a constant, else None."""
    if t is None or not t.name:
        return None
    return constant_value(t)


def is_const(t: gs.Tensor) -> bool:
    return isinstance(t, gs.Constant) or (
        bool(t.inputs) and t.inputs[0].op == "Constant" and "value" in t.inputs[0].attrs
    )


def scalar(t: gs.Tensor) -> float | None:
    """The single value of a constant whose elements are all equal (a broadcast scalar)."""
    v = const(t)
    if v is None or v.size == 0 or not np.issubdtype(v.dtype, np.number):
        return None
    first = v.reshape(-1)[0]
    if v.size > 1 and not np.all(v == first):
        return None
    return float(first)


def is_plain(node: gs.Node | None, *ops: str) -> bool:
    """``node`` is an ONNX-domain node of one of ``ops``."""
    return node is not None and node.op in ops and (node.domain or "") in ("", "ai.onnx")






# ----------------------------------------------------------------------------------- conv attrs
def conv_geometry(node: gs.Node, w_shape: Sequence[int]) -> dict[str, Any] | None:
    """Kernel, strides, pads (begin..., end...), dilations and group of a Conv, with ONNX defaults.

    Returns None for ``auto_pad`` other than NOTSET/VALID: SAME_* pads depend on the input size and
    a pass must not reason about them from attributes alone.
    """
    spatial = len(w_shape) - 2
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad not in ("NOTSET", "VALID"):
        return None
    kernel = list(node.attrs.get("kernel_shape", w_shape[2:]))
    return {
        "kernel": [int(k) for k in kernel],
        "strides": [int(s) for s in node.attrs.get("strides", [1] * spatial)],
        "pads": [int(p) for p in node.attrs.get("pads", [0] * (2 * spatial))]
        if auto_pad == "NOTSET" else [0] * (2 * spatial),
        "dilations": [int(d) for d in node.attrs.get("dilations", [1] * spatial)],
        "group": int(node.attrs.get("group", 1)),
    }


# ----------------------------------------------------------------------------------- naming
class Names:
    """Fresh, deterministic tensor/node names (``base``, ``base_1``, ...) unique in the graph."""

    def __init__(self, graph: gs.Graph) -> None:
        self.used: set[str] = set(graph.tensors().keys())
        self.used.update(n.name for n in graph.nodes if n.name)

    def __call__(self, base: str) -> str:
        name = base
        i = 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name


# ----------------------------------------------------------------------------------- surgery
def disconnect(node: gs.Node) -> None:
    """Detach ``node`` from the graph (cleanup() then drops it)."""
    node.inputs.clear()
    node.outputs.clear()


def take_over_output(node: gs.Node, old: gs.Tensor, new: gs.Tensor) -> None:
    """Make ``node`` produce ``new`` instead of ``old`` (``new`` keeps its name and consumers).

    Used when a chain ``node -> old -> ... -> new`` collapses into ``node``: the chain's last
    tensor, which may be a graph output, survives unchanged.
    """
    for i, t in enumerate(node.outputs):
        if t is old:
            new.inputs.clear()
            node.outputs[i] = new
            return
    raise ValueError(f"{node.name} does not produce {old.name}")


def replace_uses(old: gs.Tensor, new: gs.Tensor, *, only: Iterable[gs.Node] | None = None) -> None:
    """Make the readers of ``old`` (all, or ``only`` these) read ``new``."""
    readers = list(old.outputs) if only is None else list(only)
    for node in readers:
        for i, t in enumerate(node.inputs):
            if t is old:
                node.inputs[i] = new


def bypass(graph: gs.Graph, node: gs.Node, src: gs.Tensor, dst: gs.Tensor,
           outputs: set[str]) -> bool:
    """Remove a node that passes ``src`` through unchanged as ``dst``. False when impossible.

    Readers of ``dst`` read ``src`` instead. When ``dst`` is a graph output its name must survive,
    so ``src``'s producer is made to write ``dst`` directly -- possible only if ``src`` is produced
    by a node and is not itself a graph output.
    """
    if dst.name in outputs:
        prod = producer(src)
        if prod is None or src.name in outputs or is_const(src):
            return False
        for reader in list(src.outputs):
            if reader is not node:
                replace_uses(src, dst, only=[reader])
        disconnect(node)
        take_over_output(prod, src, dst)
        return True
    replace_uses(dst, src)
    disconnect(node)
    return True


def cleanup(graph: gs.Graph) -> None:
    """Drop disconnected nodes and unused tensors; keep every graph input."""
    graph.cleanup(remove_unused_graph_inputs=False)


# ----------------------------------------------------------------------------------- statistics
def weight_params(graph: gs.Graph) -> int:
    """Elements of the model's weights: float constants that ops read, and the integer tensors
    behind DequantizeLinear -- not shape arithmetic, not quantization scales or zero points."""
    skip: set[str] = set()
    ints: set[str] = set()
    for node in graph.nodes:
        if node.op in ("DequantizeLinear", "QuantizeLinear"):
            skip.update(t.name for t in node.inputs[1:] if t.name)
            if node.op == "DequantizeLinear" and node.inputs and is_const(node.inputs[0]):
                ints.add(node.inputs[0].name)
    total = 0
    for name, t in graph.tensors().items():
        if not isinstance(t, gs.Constant) or name in skip or not t.outputs:
            continue
        dtype = np.dtype(t.dtype) if not isinstance(t.dtype, int) else None
        is_float = dtype is not None and np.issubdtype(dtype, np.floating)
        if is_float or name in ints:
            total += math.prod(int(d) for d in t.shape)
    return total


def op_counts(graph: gs.Graph) -> Counter[str]:
    return Counter(n.op for n in graph.nodes)
