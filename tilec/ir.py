"""tilec's one graph form: ONNX semantics held in onnx-graphsurgeon's mutable ``gs.Graph``.

Why this form (see docs/design.md): the ONNX front door is nearly free, every pass's result can be
exported and run by onnxruntime to prove it equivalent, and ``tilec lower`` writes a model that
Netron and every ONNX tool open. The torch.fx front door converts into the same form.

Conventions every stage relies on:

* **Concrete shapes.** After capture every ``gs.Variable`` has a dtype and a fully concrete shape.
  :func:`infer_shapes` re-establishes that after a rewrite.
* **Annotations.** tilec records facts for the planner (bit widths, in-place concats, ...) in
  ``node.attrs`` under keys that start with ``"tilec."`` (see :func:`set_ann`). They never reach an
  ONNX operator: :func:`to_onnx` moves them into the node's ``metadata_props`` (JSON values) and
  :func:`from_onnx` moves them back, so an exported model passes ``onnx.checker`` and Netron shows
  them. Always export through :func:`to_onnx`, never ``gs.export_onnx`` directly.
* **Fused ops.** A fused op (e.g. a Conv carrying its Mish) is a node in domain
  :data:`FUSED_DOMAIN` whose op type is defined by a model-local ONNX function, so onnxruntime still
  runs the model exactly. Its op type is the base op + activation (``ConvMish``, ``ConvRelu``,
  ``ConvTransposeRelu``, ``GemmRelu``, ``MatMulSiLU``, ...); :func:`split_fused_op` reads it.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter
from onnx_graphsurgeon.logger import G_LOGGER

from tilec.errors import InputError, ShapeError

# onnx-graphsurgeon logs its own warnings (with a note that the `colored` module is missing) to
# the terminal; a user of tilec sees tilec's one-line messages instead. Its errors still show.
G_LOGGER.severity = max(G_LOGGER.severity, G_LOGGER.ERROR)

FUSED_DOMAIN = "ai.tilec"
"""Domain of tilec's fused ops (model-local ONNX functions)."""

FUSED_BASES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
"""The ONNX ops an activation is fused into."""

FUSED_ACTIVATIONS = ("Relu", "LeakyRelu", "Mish", "SiLU", "HardSwish", "Sigmoid", "Tanh", "Clip")
"""The activations a fused op may carry."""


def split_fused_op(op: str) -> tuple[str, str] | None:
    """A fused op type as ``(base, activation)``: ``"ConvTransposeRelu"`` ->
    ``("ConvTranspose", "Relu")``; None when ``op`` is no fused op type."""
    for base in sorted(FUSED_BASES, key=len, reverse=True):  # ConvTranspose before Conv
        if op.startswith(base) and op[len(base):] in FUSED_ACTIVATIONS:
            return base, op[len(base):]
    return None


ANN_PREFIX = "tilec."
"""Prefix of node attributes that are tilec annotations rather than ONNX attributes."""

MAX_IR_VERSION = 10
"""onnxruntime refuses models whose IR version is newer than it knows; 10 is what onnx 1.16+ and
onnxruntime 1.18+ both read, and it is new enough for model-local functions and INT4 tensors."""

# Constants with more elements than this are left out of the model handed to shape inference (their
# shape is given instead): inference never needs the values of weights, and copying a 70M-parameter
# model's weights into a second protobuf costs seconds.
_LIGHT_CONSTANT_LIMIT = 4096


# ----------------------------------------------------------------------------------- annotations
def set_ann(node: gs.Node, key: str, value: Any) -> None:
    """Record a tilec annotation ``key`` (without the prefix) on ``node``.

    Values must be JSON-serialisable; they travel through ONNX as node metadata.
    """
    node.attrs[ANN_PREFIX + key] = value


def get_ann(node: gs.Node, key: str, default: Any = None) -> Any:
    """Read the tilec annotation ``key`` of ``node`` (``default`` when absent)."""
    return node.attrs.get(ANN_PREFIX + key, default)


def annotations(node: gs.Node) -> dict[str, Any]:
    """All tilec annotations of ``node``, keys without the prefix."""
    return {k[len(ANN_PREFIX) :]: v for k, v in node.attrs.items() if k.startswith(ANN_PREFIX)}


# ----------------------------------------------------------------------------------- ONNX <-> gs
def from_onnx(model: onnx.ModelProto) -> gs.Graph:
    """Import an ONNX model into the graph form, restoring tilec annotations from node metadata."""
    with quiet_gs():
        graph = gs.import_onnx(model)
    # gs keeps the node order of the GraphProto, so nodes pair up one to one.
    if len(graph.nodes) == len(model.graph.node):
        for gnode, pnode in zip(graph.nodes, model.graph.node, strict=True):
            for prop in pnode.metadata_props:
                if prop.key.startswith(ANN_PREFIX):
                    try:
                        gnode.attrs[prop.key] = json.loads(prop.value)
                    except json.JSONDecodeError:
                        gnode.attrs[prop.key] = prop.value
    return graph


@contextlib.contextmanager
def without_annotations(graph: gs.Graph) -> Iterator[list[tuple[gs.Node, dict[str, Any]]]]:
    """Take the tilec annotations off every node while the block runs, then put them back.

    Anything that hands nodes to ONNX (exporters, onnxruntime via graphsurgeon's constant
    folding) must not see them: they are not ONNX attributes. Yields the removed
    ``(node, annotations)`` pairs.
    """
    stash = []
    for node in graph.nodes:
        ann = {k: v for k, v in node.attrs.items() if k.startswith(ANN_PREFIX)}
        if ann:
            for k in ann:
                del node.attrs[k]
            stash.append((node, ann))
    try:
        yield stash
    finally:
        for node, ann in stash:
            node.attrs.update(ann)


def _fix_model_header(model: onnx.ModelProto, graph: gs.Graph) -> None:
    model.ir_version = min(max(model.ir_version, 8), MAX_IR_VERSION)
    domains = {op.domain for op in model.opset_import}
    if any(n.domain == FUSED_DOMAIN for n in graph.nodes) and FUSED_DOMAIN not in domains:
        model.opset_import.append(onnx.helper.make_opsetid(FUSED_DOMAIN, 1))


def to_onnx(graph: gs.Graph) -> onnx.ModelProto:
    """Export the graph form to a valid ONNX model (annotations become node ``metadata_props``)."""
    with without_annotations(graph) as stash, quiet_gs():
        model = gs.export_onnx(graph, do_type_check=False)
    by_name = {id(node): ann for node, ann in stash}
    for gnode, pnode in zip(graph.nodes, model.graph.node, strict=True):
        ann = by_name.get(id(gnode))
        if ann:
            for key, value in sorted(ann.items()):
                entry = pnode.metadata_props.add()
                entry.key = key
                entry.value = json.dumps(value, sort_keys=True)
    _fix_model_header(model, graph)
    return model


def _light_model(graph: gs.Graph, declared: dict[str, list[int]] | None = None
                 ) -> onnx.ModelProto:
    """An ONNX model of ``graph`` whose large constants are shape-only inputs (for inference);
    ``declared``: intermediate tensors whose shapes are given (bounds of value-dependent sizes,
    :func:`data_dependent_bounds`)."""
    with without_annotations(graph):
        nodes = [OnnxExporter.export_node(node) for node in graph.nodes]
    inputs = [OnnxExporter.export_value_info_proto(t, False) for t in graph.inputs]
    outputs = [OnnxExporter.export_value_info_proto(t, False) for t in graph.outputs]
    initializers = []
    for tensor in graph.tensors().values():
        if not isinstance(tensor, gs.Constant):
            continue
        if int(np.prod(tensor.shape, dtype=np.int64)) <= _LIGHT_CONSTANT_LIMIT:
            initializers.append(OnnxExporter.export_tensor_proto(tensor))
        else:
            dtype = tensor.export_dtype if hasattr(tensor, "export_dtype") else tensor.dtype
            inputs.append(
                onnx.helper.make_tensor_value_info(
                    tensor.name,
                    dtype if isinstance(dtype, int) else onnx.helper.np_dtype_to_tensor_dtype(
                        np.dtype(dtype)
                    ),
                    list(tensor.shape),
                )
            )
    functions = [OnnxExporter.export_function(f) for f in graph.functions]
    opsets = [onnx.helper.make_opsetid(d, v) for d, v in sorted(_import_domains(graph).items())]
    model = onnx.helper.make_model(
        onnx.helper.make_graph(nodes, graph.name or "tilec", inputs, outputs, initializers),
        opset_imports=opsets,
        functions=functions,
    )
    for name, shape in (declared or {}).items():
        tensor = graph.tensors().get(name)
        if tensor is not None and tensor.dtype is not None:
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype)), shape))
    _fix_model_header(model, graph)
    return model


def _import_domains(graph: gs.Graph) -> dict[str, int]:
    domains: dict[str, int] = {}
    for opset in graph.import_domains or []:
        domains[opset.domain] = opset.version
    if "" not in domains:
        domains[""] = graph.opset
    return domains


def infer_shapes(graph: gs.Graph, *, source: str = "model") -> gs.Graph:
    """Run ONNX shape inference (with data propagation) and write dtypes and shapes into ``graph``.

    Works on a light copy without weight values, so it takes milliseconds even for 70M-parameter
    models. Raises :class:`~tilec.errors.ShapeError` (an :class:`InputError`) naming ``source`` and
    the node when inference reports an inconsistency (e.g. a Concat whose inputs disagree because
    the image size does not suit the network).
    """
    declared: dict[str, list[int]] = {}
    for _ in range(4):  # each round can bound a NonMaxSuppression further downstream
        inferred = run_shape_inference(_light_model(graph, declared), source=source)
        infos = {
            vi.name: vi
            for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
        }
        tensors = graph.tensors()
        for name, vi in infos.items():
            tensor = tensors.get(name)
            if not isinstance(tensor, gs.Variable) or not vi.type.HasField("tensor_type"):
                continue
            ttype = vi.type.tensor_type
            if ttype.elem_type:
                tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)
            if ttype.HasField("shape"):
                tensor.shape = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in ttype.shape.dim
                ]
        bounds = data_dependent_bounds(graph)
        if not bounds or all(declared.get(k) == v for k, v in bounds.items()):
            break
        declared.update(bounds)
        for name, shape in bounds.items():
            tensors[name].shape = list(shape)
    return graph


def data_dependent_bounds(graph: gs.Graph) -> dict[str, list[int]]:
    """Upper-bound shapes of outputs whose size depends on values, by tensor name.

    ``NonMaxSuppression`` returns one row per kept box: at most ``max_output_boxes_per_class``
    (and at most the boxes) per image and class, so ``batch x classes x min(max, boxes)`` rows of
    (image, class, box). A compiler for a static graph (Poplar) allocates that bound; tilec sizes
    the buffer the same way, so the ops after it and the transfer of the result are priced at
    their largest. Without a constant ``max_output_boxes_per_class`` nothing is bounded (and the
    tensor stays without a concrete shape, an input error later if the chip must plan it).
    """
    out: dict[str, list[int]] = {}
    for node in graph.nodes:
        if node.op != "NonMaxSuppression" or not node.outputs or len(node.inputs) < 2:
            continue
        result = node.outputs[0]
        boxes, scores = node.inputs[0], node.inputs[1]
        if is_concrete(result.shape) or not (is_concrete(boxes.shape)
                                             and is_concrete(scores.shape)):
            continue
        if len(scores.shape) != 3:
            continue
        per_class = 0  # ONNX: an omitted max_output_boxes_per_class is 0, no output
        if len(node.inputs) > 2 and node.inputs[2].name:
            value = _constant_value(node.inputs[2])
            if value is None:
                continue
            per_class = int(np.asarray(value).reshape(-1)[0])
        b, c, n = (int(d) for d in scores.shape)
        out[result.name] = [b * c * max(0, min(per_class, n)), 3]
    return out


def _constant_value(tensor: gs.Tensor) -> Any:
    """The value of a constant input (an initializer or a ``Constant`` node's output), else None."""
    if isinstance(tensor, gs.Constant):
        return tensor.values
    if tensor.inputs and tensor.inputs[0].op == "Constant":
        value = tensor.inputs[0].attrs.get("value")
        return getattr(value, "values", None)
    return None


_INFERENCE_AT = re.compile(r"\(op_type:(?P<op>[^,]*), node name: (?P<node>.*?)\):\s*(?P<detail>.*)")
_MERGE = re.compile(r"Inferred=(?P<a>\d+) Declared=(?P<b>\d+) Dimension=(?P<axis>\d+)")
_ERROR_TAG = re.compile(r"\[(?:Shape|Type)InferenceError\]\s*")


def run_shape_inference(model: onnx.ModelProto, *, source: str = "model") -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes`` in strict mode with data propagation.

    Its failures become one-line :class:`~tilec.errors.ShapeError` messages that name the node and
    op type onnx reports (``"<source>: node 'cat3' (Concat): Can't merge shape info ..."``).
    """
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # InferenceError, and plain RuntimeError / ValidationError too
        raise shape_error(exc, source) from exc


def shape_error(exc: BaseException, source: str) -> ShapeError:
    """Turn an onnx inference failure into a :class:`ShapeError` naming the node it reports."""
    text = str(exc).strip()
    for line in text.splitlines():
        match = _INFERENCE_AT.search(line)
        if match:
            node, op = match["node"].strip(), match["op"].strip()
            detail = _ERROR_TAG.sub("", match["detail"]).strip() or "inference failed"
            merge = _MERGE.search(detail)
            if merge and op == "Concat":  # onnx says "inferred vs declared"; say it plainly
                detail = (f"its inputs disagree in dimension {merge['axis']} ({merge['a']} vs "
                          f"{merge['b']})")
            return ShapeError(f"{source}: node '{node}' ({op}): shape inference failed: {detail}",
                              node=node, op=op, detail=detail)
    detail = _ERROR_TAG.sub("", _first_line(exc)).strip()
    return ShapeError(f"{source}: shape inference failed: {detail}", detail=detail)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------- queries
def is_concrete(shape: Iterable[Any] | None) -> bool:
    """True when ``shape`` is known and every dimension is a non-negative int."""
    if shape is None:
        return False
    return all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape)


def producer(tensor: gs.Tensor) -> gs.Node | None:
    """The node that produces ``tensor`` (None for graph inputs and constants)."""
    return tensor.inputs[0] if tensor.inputs else None


def constant_value(tensor: gs.Tensor) -> np.ndarray | None:
    """The value of ``tensor`` if it is a constant (initializer or Constant node), else None."""
    if isinstance(tensor, gs.Constant):
        return tensor.values
    node = producer(tensor)
    if node is not None and node.op == "Constant" and "value" in node.attrs:
        value = node.attrs["value"]
        return value.values if isinstance(value, gs.Constant) else np.asarray(value)
    return None


def split_shape_ranges(graph: gs.Graph) -> int:
    """Rewrite every ``Shape`` with a ``start`` / ``end`` attribute (opset 15+) as a plain
    ``Shape`` followed by a ``Slice`` over axis 0; return how many were rewritten.

    Why: onnx-graphsurgeon's shape folding (0.6.1) reads a ``Shape`` node's input shape and
    ignores ``start`` / ``end``, so ``Shape(x, start=0, end=1)`` of a ``[2, 128]`` input folds to
    ``[2, 128]`` instead of ``[2]`` -- and a Reshape target built from it gains dimensions. The
    torch.export-based ONNX exporter (PyTorch's default since 2.9) writes exactly these for every
    symbolic size of a dynamic-shape export. ``Slice`` has the same clamping and negative-index
    rules as ``Shape``'s range, and graphsurgeon folds ``Slice(Shape(x))`` correctly."""
    n = 0
    for node in list(graph.nodes):
        if node.op != "Shape" or not ({"start", "end"} & set(node.attrs)):
            continue
        start = int(node.attrs.pop("start", 0))
        end = node.attrs.pop("end", None)
        if start == 0 and end is None:
            continue
        full = gs.Variable(f"{node.outputs[0].name}__full_shape", dtype=np.int64)
        out = node.outputs[0]
        node.outputs = [full]
        ints = {"starts": [start], "ends": [int(end) if end is not None else 2**62],
                "axes": [0]}
        consts = [gs.Constant(f"{out.name}__{k}", np.asarray(v, dtype=np.int64))
                  for k, v in ints.items()]
        graph.nodes.append(gs.Node("Slice", name=f"{node.name or out.name}__range",
                                   inputs=[full, *consts], outputs=[out]))
        n += 1
    if n:
        toposort(graph)
    return n


def toposort(graph: gs.Graph, *, source: str = "model") -> gs.Graph:
    """Sort ``graph`` topologically in place; a cycle is an :class:`InputError` naming its nodes.

    Kahn's algorithm, iterative (onnx-graphsurgeon's own sort recurses once per level and overflows
    Python's stack on deep graphs listed in reverse) and stable: among ready nodes the one that came
    first in the original order goes first, so the result is deterministic and leaves an already
    sorted graph unchanged. Dependencies follow the graph's object links, not tensor names, so a
    pass's half-built graph with a repeated or empty tensor name still sorts correctly.
    """
    index = {id(node): i for i, node in enumerate(graph.nodes)}
    deps = [
        {index[id(t.inputs[0])] for t in node.inputs if t.inputs and id(t.inputs[0]) in index}
        for node in graph.nodes
    ]
    order = _kahn(deps, [node.name or node.op for node in graph.nodes], source)
    graph.nodes = [graph.nodes[i] for i in order]
    with quiet_gs():
        for func in graph.functions:  # small bodies; gs's own sort is fine there
            func.toposort(mode="nodes")
    return graph


def topological_order(nodes: list[tuple[str, list[str], list[str]]], *, source: str = "model"
                      ) -> list[int]:
    """A stable topological order of ``nodes`` given as ``(name, input names, output names)``.

    Inputs that no listed node produces (graph inputs, initializers) are ready from the start.
    Raises :class:`InputError` naming the nodes of one cycle when there is no order.
    """
    producer_of: dict[str, int] = {}
    for i, (_, _, outs) in enumerate(nodes):
        for name in outs:
            producer_of.setdefault(name, i)
    deps = [{producer_of[name] for name in ins if name in producer_of} for _, ins, _ in nodes]
    return _kahn(deps, [name for name, _, _ in nodes], source)


def _kahn(deps: list[set[int]], names: list[str], source: str) -> list[int]:
    """Stable Kahn's algorithm over ``deps[i]`` = the nodes node ``i`` waits on."""
    users: list[list[int]] = [[] for _ in deps]
    waiting = [len(dep) for dep in deps]
    for i, dep in enumerate(deps):
        for d in dep:
            users[d].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) == len(deps):
        return order
    # Every unsorted node waits on another unsorted node: walk back along those until one repeats.
    done = set(order)
    start = next(i for i in range(len(deps)) if i not in done)
    path, seen = [start], {start: 0}
    while True:
        nxt = min(d for d in deps[path[-1]] if d not in done)
        if nxt in seen:
            cycle = path[seen[nxt]:]
            break
        seen[nxt] = len(path)
        path.append(nxt)
    cycle.reverse()  # producers first, in data-flow direction
    first = cycle.index(min(cycle))  # start at the node that comes first in the file
    cycle = cycle[first:] + cycle[:first]
    text = " -> ".join(f"'{names[i]}'" for i in [*cycle, cycle[0]])
    raise InputError(f"{source}: the graph has a cycle: {text}")


@contextlib.contextmanager
def quiet_gs() -> Iterator[None]:
    """Silence onnx-graphsurgeon's logger, which prints to stdout (and would corrupt piped output).

    Its critical messages still raise; tilec turns those into its own errors.
    """
    with G_LOGGER.suppress(G_LOGGER.CRITICAL + 1):
        yield
