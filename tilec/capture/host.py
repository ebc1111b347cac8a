"""Host partitioning: ops the chip cannot run, at the graph's head or tail, go to the host.

Detectors end in post-processing (TopK, NonMaxSuppression, RoiAlign, GatherND, ...) that runs on
the host CPU in every deployment; refusing the whole file for it made tilec useless on them. With
``--host-ops auto`` (the default) capture cuts such ops off:

* a **head** op has no dense op (conv / matmul) upstream: it and everything it depends on run on
  the host first;
* a **tail** op is any other: it and everything downstream of it run on the host after the chip;
* a tail that would take more than :data:`TAIL_DENSE_SHARE` of the network's dense ops is no tail
  but the **middle** of the network, and stays an input error naming the op -- cutting there would
  answer a question about a different, much smaller network.

The chip's graph then has the tensors crossing the cut as its inputs and outputs, so the
target's existing I/O cost (host link, or NorthPole's framebuffer) prices the transfer at the cut
in the latency, as for any model input or output. What was cut is recorded (``Captured.meta
["host"]``) and shown in every report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from tilec.capture.support import Unsupported, unsupported_message
from tilec.errors import InputError
from tilec.ir import is_concrete

HOST_OPS = ("auto", "none")

DENSE_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN",
    # the same compute in integer / operator-quantized form (onnxruntime's quantization tools:
    # dynamic quantization writes ConvInteger / MatMulInteger, static QOperator format
    # QLinearConv / QLinearMatMul / QGemm) and onnxruntime's fused contrib ops
    "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "FusedConv", "FusedGemm",
    "FusedMatMul", "Attention", "QAttention", "MultiHeadAttention"})
"""Ops that make up a network's compute, for telling a head or tail from the middle: an op
tilec cannot plan with one of these downstream is no head to run on the host, and one with a
quarter of them downstream no tail -- such a network is refused naming the op, rather than
planned without its compute (a dynamically quantized ResNet-18 used to "fit" as 4 ops)."""

TAIL_DENSE_SHARE = 0.25
"""Modelling choice: a host tail may hold at most this share of the graph's dense ops. Detection
heads after RoiAlign (Faster R-CNN's two-layer box head: 4 of ~70) pass; an unsupported op half
way through a backbone does not."""


@dataclass(frozen=True)
class HostCut:
    """What capture moved to the host (plain data: it goes into the plan as JSON)."""

    head_ops: int
    tail_ops: int
    op_types: dict[str, int]  # unsupported op types cut off, with counts
    to_device: list[str]  # tensors the host sends to the chip (new graph inputs)
    to_host: list[str]  # tensors the chip sends to the host (new graph outputs)

    def as_dict(self) -> dict[str, Any]:
        return {"head_ops": self.head_ops, "tail_ops": self.tail_ops,
                "op_types": dict(self.op_types), "to_device": list(self.to_device),
                "to_host": list(self.to_host)}

    def note(self) -> str:
        kinds = ", ".join(f"{op} x{n}" for op, n in self.op_types.items())
        where = " and ".join(p for p in (
            f"{self.head_ops} at the head" if self.head_ops else "",
            f"{self.tail_ops} at the tail" if self.tail_ops else "") if p)
        return (f"host: {where} ({kinds}) run on the host, not the chip; the "
                f"{len(self.to_device) + len(self.to_host)} tensors crossing the cut are the "
                "chip's inputs and outputs, their transfer priced in the latency "
                "(--host-ops none refuses instead)")


def _closure(start: list[gs.Node], step) -> set[int]:
    seen: set[int] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(step(node))
    return seen


def _outer_reads(node: gs.Node) -> set[str]:
    """Names of outer-scope tensors the subgraphs of ``node`` (If / Loop / Scan bodies) read:
    ONNX lets a body use any tensor in scope without listing it as an input of the node."""
    names: set[str] = set()
    for value in node.attrs.values():
        for sub in value if isinstance(value, list) else [value]:
            if not isinstance(sub, gs.Graph):
                continue
            inner = {t.name for n in sub.nodes for t in n.outputs} | {t.name for t in sub.inputs}
            for n in sub.nodes:
                names.update(t.name for t in n.inputs if t.name and t.name not in inner
                             and not isinstance(t, gs.Constant))
                names.update(_outer_reads(n) - inner)
    return names


def _downstream(node: gs.Node) -> list[gs.Node]:
    return [c for t in node.outputs for c in t.outputs]


def _upstream(node: gs.Node) -> list[gs.Node]:
    return [p for t in node.inputs if not isinstance(t, gs.Constant) for p in t.inputs]


def cut_to_host(graph: gs.Graph, bad: list[tuple[gs.Node, str]], const_nodes: set[int],
                grouped: list[Unsupported], source: str) -> HostCut:
    """Move the head and tail around the unsupported nodes ``bad`` to the host (in place).

    Raises the unsupported-op :class:`InputError` (with why no cut was possible) when an op sits
    in the middle, or the cut leaves the chip nothing, or a crossing tensor has no shape.
    """
    planned = [n for n in graph.nodes if id(n) not in const_nodes]
    dense = {id(n) for n in planned if n.op in DENSE_OPS}

    def refuse(why: str) -> InputError:
        return InputError(unsupported_message(source, grouped, hint=f"; {why}"))

    heads, tails = [], []
    for node, _ in bad:
        ancestors = _closure([node], _upstream)
        (tails if ancestors & dense else heads).append(node)
    head = _closure(heads, _upstream) - const_nodes
    tail = _closure(tails, _downstream)
    if head & tail:
        first = next(n for n in planned if id(n) in head & tail)
        raise refuse(f"node '{first.name}' ({first.op}) is both upstream and downstream of "
                     "ops the chip cannot run, so no head or tail can go to the host")
    tail_dense = len(tail & dense)
    if dense and tail_dense > TAIL_DENSE_SHARE * len(dense):
        first = next(n for n, _ in bad if n in tails)
        raise refuse(f"node '{first.name}' ({first.op}) sits in the middle of the network "
                     f"({tail_dense} of its {len(dense)} conv/matmul ops come after it), and "
                     "only a head or tail of ops goes to the host")
    device = [n for n in planned if id(n) not in head and id(n) not in tail]
    if not device:
        raise refuse("cutting them off would leave the chip nothing to run")
    on_device = {id(n) for n in graph.nodes if id(n) not in head and id(n) not in tail}

    to_device: list[gs.Variable] = []
    to_host: list[gs.Variable] = []
    read_by_tail = {name for n in graph.nodes if id(n) in tail for name in _outer_reads(n)}
    for node in graph.nodes:
        if id(node) in head:
            for t in node.outputs:
                if any(id(c) in on_device for c in t.outputs) and t not in to_device:
                    to_device.append(t)
        elif id(node) in on_device and id(node) not in const_nodes and node.op != "Constant":
            # (a constant the tail reads -- TopK's k, CumSum's axis -- goes with the tail: the
            # host has it; as a chip output no op of the chip would write it)
            for t in node.outputs:
                if (any(id(c) in tail for c in t.outputs) or t.name in read_by_tail) and (
                        t not in to_host):
                    to_host.append(t)
    for t in to_device + to_host:
        if not is_concrete(t.shape) or t.dtype is None:
            raise refuse(f"tensor '{t.name}' at the cut has no known shape "
                         f"({t.shape}), so its transfer cannot be priced")
    kept_inputs = [t for t in graph.inputs if any(id(c) in on_device for c in t.outputs)]
    kept_outputs = [t for t in graph.outputs
                    if t.inputs and id(t.inputs[0]) in on_device and t not in to_host]
    for t in to_device:
        t.inputs.clear()  # the host produces it now: a graph input of the chip's part
        t.dtype = np.dtype(t.dtype)
    graph.inputs = kept_inputs + to_device
    graph.outputs = kept_outputs + to_host
    types = Counter(n.op for n, _ in bad)
    graph.cleanup(remove_unused_graph_inputs=False)
    return HostCut(head_ops=len(head), tail_ops=len(tail),
                   op_types={op: types[op] for op in sorted(types)},
                   to_device=[t.name for t in to_device], to_host=[t.name for t in to_host])
