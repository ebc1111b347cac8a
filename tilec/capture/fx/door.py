"""``capture_module``: the torch.fx door, from an ``nn.Module`` to the one graph form.

Bind the user's shapes to ``forward`` (:mod:`~tilec.capture.fx.inputs`), trace, convert
(:mod:`~tilec.capture.fx.convert`), import the ONNX through the ONNX door's checks, and compare
every inferred shape with PyTorch's (:func:`~tilec.capture.fx.tracing.check_against_fake`).
"""

from __future__ import annotations

from typing import Any

from tilec.capture.fx.convert import DEFAULT_OPSET, module_to_onnx
from tilec.capture.fx.inputs import (
    bind_inputs,
    dtype_text,
    forward_params,
    resolve_dtypes,
    resolve_shapes,
    signature,
)
from tilec.capture.fx.tracing import check_against_fake, trace
from tilec.capture.onnx_file import capture_model_proto, parse_image_size, parse_input_specs
from tilec.capture.types import Captured
from tilec.errors import InputError


def capture_module(module: Any, *, input_shape: Any = None,
                   batch: int | None = None,
                   image_size: tuple[int, int] | str | int | None = None,
                   name: str | None = None, source: str | None = None,
                   opset: int = DEFAULT_OPSET, mish: str = "op") -> Captured:
    """Capture a PyTorch module through torch.fx into the graph form (see :mod:`tilec.capture.fx`).

    ``input_shape`` gives the shapes of ``forward``'s tensor inputs, in any form
    :func:`~tilec.capture.onnx_file.parse_input_specs` reads: one shape ``(1, 3, 896, 896)``
    when forward takes one tensor; a sequence of shapes, one per parameter in forward's order;
    a dict ``{parameter name: shape}``; or the ``--input-shape`` text (``"x=1,3,64,64;y=1,10"``
    or ``"1,3,64,64;1,10"``). The graph's inputs are named after forward's parameters.

    * A parameter with a default value that is given no shape keeps its default: the trace is
      specialised to it (``torch.fx`` ``concrete_args``), so ``if mask is not None:`` takes the
      branch the default implies. Giving it a shape makes it an input like any other.
    * Inputs are float (the dtype of the module's first floating-point parameter, float32 if
      none) unless stated: ``ids=1,128:int64`` or ``{"ids": ((1, 128), torch.int64)}``. An input
      that goes straight into an ``nn.Embedding`` (or ``F.embedding``) is int64 without saying,
      since an embedding takes nothing else.
    * ``batch`` replaces dimension 0 of every input of rank 2 or more and ``image_size``
      dimensions 2 and 3 of every rank-4 input -- the ONNX door's rule. Without ``input_shape``,
      an image size is enough for a module taking one tensor: the channel count is read from the
      first convolution it calls.

    A forward taking ``*args`` / ``**kwargs``, a missing, unknown or surplus shape, and a shape for
    a parameter annotated as a Python scalar are each one :class:`InputError` line naming the
    module (or ``file.py:factory``) and the parameter.
    """
    import torch

    label = source or name or type(module).__name__
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{label}: not a torch.nn.Module (got {type(module).__name__})")
    if batch is not None and (isinstance(batch, bool) or batch <= 0):
        raise InputError(f"--batch: must be a positive integer, got {batch}")
    hw = parse_image_size(image_size)
    params = forward_params(module, label)
    feeds = bind_inputs(params, parse_input_specs(input_shape), hw, label)
    concrete = {p.name: p.default for p in params if p.name not in feeds}
    was_training = module.training
    module.eval()  # before tracing: `if self.training:` branches must take the inference path
    try:
        gm = trace(module, label, concrete or None)
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != len(params):
            raise InputError(f"{label}: torch.fx sees {len(placeholders)} parameters of forward() "
                             f"where its signature lists {len(params)} ({signature(params)}); "
                             "export the model to ONNX and pass the .onnx file instead")
        shapes = resolve_shapes(gm, feeds, batch, hw, label)
        dtypes = resolve_dtypes(module, gm, params, feeds)
        model, expected = module_to_onnx(module, shapes, opset=opset, mish=mish, source=label,
                                         graph_name=name or label, traced=gm, dtype=dtypes)
    finally:
        module.train(was_training)
    captured = capture_model_proto(model, batch=None, image_size=None, name=name or label,
                                   stride=None, source=label)
    check_against_fake(captured, expected, label)
    captured.meta.update({"door": "torch.fx", "mish": mish,
                          "input_dtypes": {k: dtype_text(v) for k, v in dtypes.items()}})
    return captured
