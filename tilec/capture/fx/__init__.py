"""torch.fx front door: a PyTorch ``nn.Module`` -> standard ONNX -> the one graph form.

Why a converter of our own rather than ``torch.onnx.export``: the exporter runs the model for real
(seconds to minutes for a 70M-parameter detector at 896 px), folds BatchNorm into the convolutions
(hiding exactly what tilec's passes must show they fold), decomposes Mish, and names nodes after its
own scheme. Here instead:

1. ``torch.fx.symbolic_trace`` records the module's graph (leaf ``torch.nn`` modules stay calls);
2. the traced graph runs under a ``FakeTensorMode``: every node gets its output shape and dtype, and
   nothing is computed (a 287M-parameter model propagates in well under a second);
3. each fx node becomes standard ONNX nodes -- Conv, BatchNormalization (kept, never folded), Mish
   (the ``Mish`` op from opset 18, or ``x * tanh(softplus(x))`` on request and at older opsets),
   Concat, Split/Slice, Resize, pools, Gemm, ... -- with the module's real weights as initializers
   and node names taken from the module path (``backbone.stage3.csp.cv1.conv``), so reports name
   layers the way the user's code does;
4. the ONNX model goes through :func:`tilec.capture.onnx_file.capture_model_proto`, the same checks
   and shape inference as an ONNX file; finally every tensor's inferred shape is compared with the
   fake-tensor shape, so a converter bug is an internal error, never a silently wrong graph.

An op the converter does not know is an :class:`~tilec.errors.InputError` naming the fx node and its
target. The converter is also how :func:`tilec.zoo.export` writes the zoo's ONNX files.

Where each part lives (one responsibility a module):

* :mod:`~tilec.capture.fx.door` -- :func:`capture_module`, the whole door in order;
* :mod:`~tilec.capture.fx.inputs` -- the user's input: ``file.py:factory``, ``--input-shape`` /
  ``--batch`` / ``--image-size`` bound to ``forward``'s parameters;
* :mod:`~tilec.capture.fx.tracing` -- steps 1 and 2, and how fx nodes are named in errors;
* :mod:`~tilec.capture.fx.convert` -- :func:`module_to_onnx` and the walk over the fx graph (3);
* :mod:`~tilec.capture.fx.handlers` -- the op-handler table: one handler per module type,
  function and Tensor method;
* :mod:`~tilec.capture.fx.emitter` -- writes the ONNX nodes, initializers and value infos, and the
  op builders the handlers share.
"""

from tilec.capture.fx.convert import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    MISH_FORMS,
    module_to_onnx,
)
from tilec.capture.fx.door import capture_module
from tilec.capture.fx.inputs import (
    Feed,
    Param,
    bind_inputs,
    forward_params,
    load_factory,
    parse_input_shape,
)
from tilec.capture.fx.tracing import check_against_fake, trace

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "MISH_FORMS",
    "Feed",
    "Param",
    "bind_inputs",
    "capture_module",
    "check_against_fake",
    "forward_params",
    "load_factory",
    "module_to_onnx",
    "parse_input_shape",
    "trace",
]
