"""Hand-built pattern graphs for the passes' tests, docs and benchmarks (not a pass).

:class:`Builder` writes small ONNX models with seeded random weights through ``onnx.helper``, the
way an exporter would, so each pass's tests state their pattern in a few lines. :func:`capture`
turns one into tilec's graph form; :func:`prove` runs passes and re-checks the result with
onnxruntime independently of the pipeline's own verifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper, numpy_helper

from tilec import numerics
from tilec.ir import to_onnx


class Builder:
    """Build an ONNX model node by node; names are generated (``conv0``, ``bn1``, ...)."""

    def __init__(self, opset: int = 18, seed: int = 0) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[str] = []
        self.count = 0

    def _name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def input(self, name: str, shape: Sequence[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def const(self, value: Any, base: str = "c") -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: Sequence[str], *, n_out: int = 1, name: str | None = None,
           **attrs: Any) -> str:
        name = name or self._name(op.lower())
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0]

    def conv(self, x: str, cin: int, cout: int, k: int | Sequence[int] = 3, *, stride: int = 1,
             pad: int | Sequence[int] | None = None, group: int = 1, bias: bool = False,
             dilation: int = 1, name: str | None = None) -> str:
        ks = [k, k] if isinstance(k, int) else list(k)
        pads = ([p // 2 for p in ks] * 2 if pad is None else
                ([pad] * 4 if isinstance(pad, int) else list(pad)))
        w = self.rng.normal(0, 1.0 / np.sqrt(cin // group * ks[0] * ks[1]),
                            size=(cout, cin // group, *ks)).astype(np.float32)
        ins = [x, self.const(w, "w")]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "b"))
        return self.op("Conv", ins, name=name or self._name("conv"), kernel_shape=ks,
                       strides=[stride, stride], pads=pads, group=group,
                       dilations=[dilation, dilation])

    def bn(self, x: str, c: int, *, name: str | None = None, eps: float = 1e-5) -> str:
        r = self.rng
        params = [r.uniform(0.5, 1.5, c), r.normal(0, 0.1, c), r.normal(0, 0.1, c),
                  r.uniform(0.5, 1.5, c)]
        ins = [x] + [self.const(p.astype(np.float32), "bnp") for p in params]
        return self.op("BatchNormalization", ins, name=name or self._name("bn"), epsilon=eps)

    def output(self, *names: str) -> None:
        self.outputs.extend(names)

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "test", self.inputs,
                                  [helper.make_empty_tensor_value_info(n) for n in self.outputs],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 10
        return onnx.shape_inference.infer_shapes(model)


def capture(model: onnx.ModelProto, name: str = "test") -> gs.Graph:
    """tilec's graph form of ``model``: imported, sorted, every shape inferred -- and nothing
    else (unlike :func:`tilec.capture.capture`, which also folds shape arithmetic, so that the
    passes' own handling of raw exporter output can be tested)."""
    from tilec.ir import from_onnx, infer_shapes, toposort

    graph = from_onnx(model)
    for i, node in enumerate(graph.nodes):
        node.name = node.name or f"{node.op}_{i}"
    toposort(graph, source=name)
    return infer_shapes(graph, source=name)


def outputs_of(graph_or_model: gs.Graph | onnx.ModelProto, seed: int = 0
               ) -> dict[str, np.ndarray]:
    """Run a graph (or model) through onnxruntime on seeded random inputs."""
    model = to_onnx(graph_or_model) if isinstance(graph_or_model, gs.Graph) else graph_or_model
    sess = numerics.session(model)
    return numerics.run(sess, numerics.random_inputs(sess, seed=seed))


def prove(model: onnx.ModelProto, passes: Sequence[str], *, precision: str = "fp32",
          seed: int = 0, **kw: Any) -> tuple[gs.Graph, list[Any], float]:
    """Run ``passes`` on ``model`` (verify="pass") and compare with onnxruntime independently.

    Returns the lowered graph, the pass statistics and the max relative output error.
    """
    from tilec.passes import run_pipeline

    before = outputs_of(model, seed)
    graph = capture(model)
    graph, stats = run_pipeline(graph, list(passes), precision=precision, verify="pass", **kw)
    exported = to_onnx(graph)
    onnx.checker.check_model(exported)
    after = outputs_of(exported, seed)
    return graph, stats, numerics.compare(before, after).max_rel_err


def ops(graph: gs.Graph) -> list[str]:
    """Op types in graph order (fused ops as ``ai.tilec:ConvMish``)."""
    return [f"{n.domain}:{n.op}" if n.domain else n.op for n in graph.nodes]


WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def perturb_one_channel(graph: gs.Graph, before: set[Any], rel: float = 1e-3) -> str | None:
    """Scale one output channel of one weight the pass produced by ``1 + rel`` -- a deliberately
    wrong fold, for tests that the proof catches it.

    The weight chosen is that of the first conv-like node (a fused ``ai.tilec`` op included) that
    the pass created or whose weight constant it created (``before``: ids of the nodes and
    constants before the pass); the channel is the one with the largest weights, so the error is
    a fixed fraction of the layer's output scale. A new array is made: the model and the probe
    share weight arrays, and each gets its own wrong copy. Returns the node's name (None: the
    pass produced no such node).
    """
    from tilec.ir import split_fused_op

    for node in graph.nodes:
        fused = split_fused_op(node.op) if node.domain else None
        base = fused[0] if fused else node.op
        if base not in WEIGHTED_OPS or len(node.inputs) < 2:
            continue
        w = node.inputs[1]
        if not isinstance(w, gs.Constant) or (
                (id(node), node.op, node.domain) in before and id(w) in before):
            continue
        values = np.array(w.values, copy=True)
        if values.ndim < 2 or not np.issubdtype(values.dtype, np.floating):
            continue
        axis = 1 if base in ("ConvTranspose", "MatMul") or (
            base == "Gemm" and not node.attrs.get("transB", 0)) else 0
        norms = np.abs(np.moveaxis(values, axis, 0)).reshape(values.shape[axis], -1).sum(1)
        channel = int(np.argmax(norms))
        index = [slice(None)] * values.ndim
        index[axis] = channel
        values[tuple(index)] *= np.float32(1 + rel)
        node.inputs[1] = gs.Constant(f"{w.name}::wrong", values)
        return node.name
    return None


def ids_of(graph: gs.Graph) -> set[Any]:
    """``graph``'s nodes (id, op, domain: a pass may turn a node into another op in place) and
    constants (id): the ``before`` of :func:`perturb_one_channel`."""
    return {(id(n), n.op, n.domain) for n in graph.nodes} | {
        id(t) for t in graph.tensors().values() if isinstance(t, gs.Constant)}
