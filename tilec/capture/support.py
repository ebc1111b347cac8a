"""Which nodes tilec can plan, and one short message naming every one it cannot.

The check runs twice during capture: on the file as read (so a model whose shape inference fails
*because of* an unknown op is still told about the op), and for the verdict after shape arithmetic
is folded to constants -- a ``ScatterND`` building an attention mask from shapes, or the ``Sin`` /
``Cos`` of a positional encoding computed from shapes, is then a constant and never planned.

The message lists every unsupported op type once, with its count and first node, instead of the
first offender followed by the whole supported list: a detector with five kinds of unsupported
post-processing ops took five round trips and read ~1,000 characters each time. ``tilec ops``
prints the supported list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx
import onnx_graphsurgeon as gs

from tilec.errors import InputError
from tilec.ir import ANN_PREFIX, FUSED_DOMAIN, get_ann
from tilec.opinfo import CONSTANT_ONLY_OPS, OP_KINDS

POST_PROCESSING = frozenset({
    "NonMaxSuppression", "TopK", "NonZero", "RoiAlign", "If", "Loop", "Scan", "GatherND",
    "ScatterND", "ScatterElements",
})
"""Ops that usually belong to detection post-processing, which runs on the host, not the chip."""

HOST_BY_DEFAULT = frozenset({"TopK", "NonMaxSuppression"})
"""Post-processing ops tilec can plan on a chip (``OP_KINDS`` kinds ``topk`` / ``nms``) but that
run on the host unless the node says otherwise: a node annotated ``tilec.on_device`` (as the zoo's
``yolov4-p5-nms`` tail, which models a pipeline that ran them on the IPU) is planned on the chip.
Without the annotation a file's post-processing stays where almost every deployment runs it."""

ON_DEVICE = "on_device"  # the annotation key (``tilec.on_device`` in node metadata)


@dataclass(frozen=True)
class Unsupported:
    """One op type tilec cannot plan, as found in a graph."""

    op_type: str
    domain: str  # "" for the default ONNX domain
    count: int
    first: str  # the first node of this type, in graph order
    constant_only: bool = False  # an op tilec folds on constants, here reading a run-time tensor
    reads: str = ""  # ... that tensor (for constant_only)

    def text(self) -> str:
        where = f" (domain '{self.domain}')" if self.domain else ""
        why = f", reads run-time '{self.reads}'" if self.constant_only else ""
        return f"{self.op_type}{where} x{self.count} (first '{self.first}'{why})"


def plannable(op_type: str, domain: str, local_functions: Iterable[str] = (),
              on_device: bool = False) -> bool:
    """Can tilec plan a node of this type (as an op, or as constant arithmetic it folds)?
    ``on_device``: the node is annotated to run on the chip (see :data:`HOST_BY_DEFAULT`)."""
    if domain == FUSED_DOMAIN:
        return op_type in set(local_functions)
    if op_type in HOST_BY_DEFAULT and not on_device:
        return False
    return domain in ("", "ai.onnx") and (op_type in OP_KINDS or op_type in CONSTANT_ONLY_OPS)


def _proto_on_device(node: onnx.NodeProto) -> bool:
    return any(p.key == ANN_PREFIX + ON_DEVICE and p.value.strip().lower() == "true"
               for p in node.metadata_props)


def _group(entries: Iterable[tuple[str, str, str, str]]) -> list[Unsupported]:
    """(op_type, domain, node name, run-time input read by a constant-only op) -> grouped."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for op_type, domain, name, reads in entries:
        found.setdefault((op_type, domain), []).append((name, reads))
    return [Unsupported(op, dom, len(nodes), nodes[0][0], constant_only=bool(nodes[0][1]),
                        reads=nodes[0][1])
            for (op, dom), nodes in found.items()]


def unsupported_in_proto(model: onnx.ModelProto) -> list[Unsupported]:
    """Every op type in the file that tilec plans in no form (constant-only ops count as fine:
    whether they read constants is known only after folding)."""
    local = {f.name for f in model.functions if f.domain == FUSED_DOMAIN}
    return _group((n.op_type, _domain(n.domain), n.name, "") for n in model.graph.node
                  if not plannable(n.op_type, n.domain or "", local, _proto_on_device(n)))


def _domain(domain: str | None) -> str:
    return "" if domain in (None, "", "ai.onnx") else str(domain)


def unsupported_nodes(graph: gs.Graph, const_nodes: set[int],
                      local_functions: Iterable[str] = ()) -> list[tuple[gs.Node, str]]:
    """Nodes tilec would have to plan but cannot, in graph order, each with the run-time tensor
    it reads when it is a constant-only op ("" otherwise).

    Nodes computing only from constants are exempt whatever their type: they fold into the
    consuming op's weights and are never planned.
    """
    local = set(local_functions)
    out = []
    for node in graph.nodes:
        if id(node) in const_nodes:
            continue
        domain = node.domain or ""
        if domain in ("", "ai.onnx") and node.op in CONSTANT_ONLY_OPS:
            reads = next((t.name for t in node.inputs if t.name and not (
                isinstance(t, gs.Constant) or (t.inputs and id(t.inputs[0]) in const_nodes))),
                "")
            out.append((node, reads or "?"))
        elif not plannable(node.op, domain, local, bool(get_ann(node, ON_DEVICE, False))):
            out.append((node, ""))
    return out


def unsupported_in_graph(graph: gs.Graph, const_nodes: set[int],
                         local_functions: Iterable[str] = ()) -> list[Unsupported]:
    """:func:`unsupported_nodes`, grouped by op type."""
    return _group((n.op, _domain(n.domain), n.name, reads)
                  for n, reads in unsupported_nodes(graph, const_nodes, local_functions))


def unsupported_message(source: str, items: list[Unsupported], *, hint: str = "") -> str:
    """One line: every unsupported op type with its count and first node."""
    kinds = len(items)
    nodes = sum(u.count for u in items)
    head = (f"{source}: {nodes} node{'s' if nodes != 1 else ''} of {kinds} op "
            f"type{'s' if kinds != 1 else ''} tilec cannot plan: ")
    if all(u.op_type in POST_PROCESSING and not u.domain for u in items):
        hint = "; these usually belong to post-processing, which runs on the host" + hint
    folded = [u.op_type for u in items if u.constant_only]
    if folded:  # said once, not per type
        hint = (f"; tilec handles {', '.join(folded)} only as constant arithmetic" + hint)
    return (head + ", ".join(u.text() for u in items) + hint
            + f"; `tilec ops` lists the {len(OP_KINDS)} op types tilec plans")


def raise_unsupported(source: str, items: list[Unsupported], *, hint: str = "") -> None:
    """Raise the one-line :class:`InputError` for ``items`` (nothing when it is empty)."""
    if items:
        raise InputError(unsupported_message(source, items, hint=hint))


def supported_ops_summary() -> str:
    """The op types tilec plans, grouped by kind, on one line."""
    kinds: dict[str, list[str]] = {}
    for op, kind in OP_KINDS.items():
        kinds.setdefault(kind, []).append(op)
    return " | ".join(f"{kind}: {' '.join(sorted(ops))}" for kind, ops in kinds.items())
