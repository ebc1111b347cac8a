"""``module_to_onnx``: a PyTorch module -> an ONNX model, node by node.

Trace (:mod:`~tilec.capture.fx.tracing`), propagate fake shapes, then walk the fx graph:
placeholders become graph inputs named after ``forward``'s parameters, each call goes to its
handler (:mod:`~tilec.capture.fx.handlers`), which writes ONNX through the emitter
(:mod:`~tilec.capture.fx.emitter`); Python values (sizes, shapes) are carried along exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
from onnx import helper

from tilec.capture.fx.emitter import Emitter, OnnxTensor, Unsupported, onnx_dtype
from tilec.capture.fx.handlers import FUNCTION_HANDLERS, canonical, flat, module_handler
from tilec.capture.fx.tracing import GraphInput, describe, fake_run, placeholder_inputs, trace
from tilec.errors import InputError
from tilec.ir import MAX_IR_VERSION

DEFAULT_OPSET = 18
"""Opset of the ONNX the converter writes by default: the first with a ``Mish`` operator."""

MIN_OPSET = 13
"""Oldest opset the converter writes (Split/Squeeze/ReduceSum take their axes as inputs from 13)."""

MAX_OPSET = 21
"""Newest opset the converter writes; onnxruntime 1.18+ (the oldest tilec supports) runs it."""

MISH_FORMS = ("op", "decomposed")


def module_to_onnx(module: Any, input_shape: Any, *, opset: int = DEFAULT_OPSET,
                   mish: str = "op", source: str = "module", graph_name: str | None = None,
                   traced: Any = None, dtype: Any = None
                   ) -> tuple[onnx.ModelProto, dict[str, tuple[int, ...]]]:
    """Convert ``module`` (evaluated on inputs of ``input_shape``) to an ONNX model.

    ``input_shape`` is one shape when forward takes one tensor, a sequence of shapes (one per
    parameter without a default, in forward's order) or a dict {parameter: shape}; a parameter
    given no shape must have a default (and keeps it). ``dtype`` is one torch dtype for every
    input, or a dict {parameter: dtype}; it defaults to that of the module's first
    floating-point parameter (float32 if it has none).

    Returns the model and the shape PyTorch gives each tensor the converter named (for
    :func:`~tilec.capture.fx.tracing.check_against_fake`). The module is put in eval mode for
    the conversion (BatchNorm uses its running statistics, Dropout is the identity) and restored
    afterwards.
    """
    import torch

    if mish not in MISH_FORMS:
        raise InputError(f"--mish: '{mish}' is not one of {', '.join(MISH_FORMS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"--opset: {opset} is outside the range the converter writes "
                         f"({MIN_OPSET}..{MAX_OPSET})")
    float_dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()),
                       torch.float32)
    was_training = module.training
    module.eval()
    try:
        gm = traced if traced is not None else trace(module, source)
        inputs = placeholder_inputs(gm, input_shape, dtype, float_dtype, source)
        values = fake_run(gm, inputs, source)
        converter = Converter(gm, values, opset=opset, mish=mish, source=source, inputs=inputs)
        graph = converter.convert(graph_name or source)
    finally:
        module.train(was_training)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tilec.capture.fx")
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return model, converter.expected


class Converter(Emitter):
    """Walks the traced graph with its fake values, dispatching each fx node to its handler."""

    def __init__(self, gm: Any, values: dict[Any, Any], *, opset: int, mish: str,
                 source: str, inputs: Sequence[GraphInput | None]) -> None:
        super().__init__(values, opset=opset, mish=mish)
        self.gm = gm
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.feeds = dict(zip(placeholders, inputs, strict=True))
        self.source = source
        self.env: dict[Any, Any] = {}  # fx node -> its OnnxTensor (or Python value)

    def convert(self, graph_name: str) -> onnx.GraphProto:
        import torch
        from torch.fx.node import map_arg
        from torch.utils._pytree import tree_leaves

        outputs: list[onnx.ValueInfoProto] = []
        for node in self.gm.graph.nodes:
            self.fx_node = node
            if node.op == "placeholder":
                feed = self.feeds[node]
                if feed is None:  # a parameter left at its default value: a Python constant
                    self.env[node] = node.args[0]
                    continue
                fake = self.values[node]
                name = self.unique(feed.name)  # the parameter's name, as the user wrote it
                t = OnnxTensor(name, tuple(int(d) for d in fake.shape), fake.dtype)
                self.expected[name] = t.shape
                self.inputs.append(helper.make_tensor_value_info(
                    name, onnx_dtype(t.dtype), list(t.shape)))
                self.env[node] = t
                continue
            if node.op == "output":
                outputs = self._outputs(map_arg(node.args[0], lambda n: self.env[n]))
                continue
            result = self.values[node]
            if not any(isinstance(v, torch.Tensor) for v in tree_leaves(result)):
                self.env[node] = result  # Python value (sizes, shapes, ...): known exactly
                continue
            args = map_arg(node.args, lambda n: self.env[n])
            kwargs = map_arg(node.kwargs, lambda n: self.env[n])
            try:
                self.env[node] = self._convert_node(node, args, kwargs)
            except Unsupported as exc:
                raise InputError(
                    f"{self.source}: {describe(self.gm, node)}: {exc}; "
                    "the torch.fx converter cannot express it in ONNX (export the model to "
                    "ONNX yourself and pass the .onnx file)") from None
        return helper.make_graph(self.nodes, graph_name, self.inputs, outputs, self.initializers)

    def _outputs(self, value: Any) -> list[onnx.ValueInfoProto]:
        from torch.utils._pytree import tree_leaves

        leaves = [v for v in tree_leaves(value, is_leaf=lambda v: isinstance(v, OnnxTensor))]
        tensors = [v for v in leaves if isinstance(v, OnnxTensor)]
        if not tensors or len(tensors) != len(leaves):
            raise InputError(f"{self.source}: forward() must return tensors (a tensor, or a "
                             "tuple/list/dict of tensors)")
        input_names = {vi.name for vi in self.inputs}
        seen: set[str] = set()
        infos = []
        for i, t in enumerate(tensors):
            name = t.name
            if name in seen or name in input_names:
                # ONNX graph outputs must be distinct node outputs: route repeats via Identity.
                name = self.emit("Identity", [t.name], self.unique(f"output{i}"))[0]
                self.expected[name] = t.shape
            seen.add(name)
            infos.append(helper.make_tensor_value_info(name, onnx_dtype(t.dtype), list(t.shape)))
        return infos

    def _convert_node(self, node: Any, args: tuple, kwargs: dict) -> Any:
        import torch

        if node.op == "get_attr":
            attr = self.gm
            for part in str(node.target).split("."):
                attr = getattr(attr, part)
            if not isinstance(attr, torch.Tensor):
                raise Unsupported(f"attribute of type {type(attr).__name__}")
            name = self.param(attr, str(node.target))
            return OnnxTensor(name, tuple(attr.shape), attr.dtype)
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            handler = module_handler(module)
            if handler is None:
                raise Unsupported(f"module type {type(module).__name__} is not supported")
            return handler(self, node, module, args, kwargs)
        canon = canonical(node)
        if canon is None:
            raise Unsupported("not a supported operation")
        if not any(isinstance(a, OnnxTensor) for a in flat(args) + flat(list(kwargs.values()))):
            return self._constant_call(node)
        return FUNCTION_HANDLERS[canon](self, node, canon, args, kwargs)

    def _constant_call(self, node: Any) -> OnnxTensor:
        """A tensor built from Python values only (torch.arange(...), ...): run it for real."""
        import torch
        from torch.fx.node import map_arg

        def real(n: Any) -> Any:
            value = self.env[n]
            if isinstance(value, OnnxTensor):
                raise Unsupported("depends on a tensor")
            return value

        args = map_arg(node.args, real)
        kwargs = map_arg(node.kwargs, real)
        if node.op == "call_method":
            raise Unsupported("method call on a constant")
        with torch.no_grad():
            value = node.target(*args, **kwargs)
        name = self.param(value, self.base_name(node, "constant"))
        return OnnxTensor(name, tuple(value.shape), value.dtype)
