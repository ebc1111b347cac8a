"""The op-handler table: one handler per ``torch.nn`` module type, torch function and
Tensor method the converter supports.

A module handler is ``(emitter, fx node, module, args, kwargs)``, found by the module's
exact type (:func:`module_handler`); a function or method is first given a canonical name
(:func:`canonical`: ``operator.add``, ``torch.add`` and ``Tensor.add`` are all ``add``), and
``FUNCTION_HANDLERS[name]`` is ``(emitter, fx node, name, args, kwargs)``. A handler reads
the call's arguments (already mapped to :class:`OnnxTensor` or Python values) and emits
through the :class:`Emitter` builders; what it cannot express raises
:class:`Unsupported`, which the converter turns into an InputError naming the node.

To support a new op: write a handler here and add it to ``_module_handlers()`` or to
``_METHODS`` / ``_function_table()`` and ``FUNCTION_HANDLERS``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tilec.capture.fx.emitter import Emitter, OnnxTensor, Unsupported


def _bind(args: tuple, kwargs: dict, names: Sequence[str], defaults: dict[str, Any]
          ) -> dict[str, Any]:
    """Bind positional and keyword arguments of a traced call to parameter names."""
    bound = dict(defaults)
    for key, value in zip(names, args, strict=False):
        bound[key] = value
    bound.update(kwargs)
    return bound


def flat(values: Any) -> list[Any]:
    """Nested lists/tuples of call arguments as one flat list (to ask: does any hold a tensor?)."""
    out = []
    for v in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(v, (list, tuple)):
            out.extend(flat(v))
        else:
            out.append(v)
    return out


def _first_tensor(args: tuple, kwargs: dict, key: str = "input") -> OnnxTensor:
    x = args[0] if args else kwargs.get(key, kwargs.get("x"))
    if not isinstance(x, OnnxTensor):
        raise Unsupported("its first argument is not a tensor")
    return x


def module_handler(module: Any) -> Callable[..., Any] | None:
    for cls, handler in _module_handlers():
        if type(module) is cls:
            return handler
    return None


def _m_conv(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    if m.padding_mode != "zeros":
        raise Unsupported(f"padding_mode='{m.padding_mode}'")
    x = _first_tensor(args, kwargs)
    w = e.param(m.weight, f"{node.target}.weight")
    b = e.param(m.bias, f"{node.target}.bias") if m.bias is not None else None
    transposed = bool(getattr(m, "transposed", False))
    if transposed and len(args) > 1:
        raise Unsupported("ConvTranspose with an explicit output_size")
    return e.conv(x, e.unique(str(node.target)), w, b, kernel=m.kernel_size, stride=m.stride,
                  padding=m.padding, dilation=m.dilation, groups=m.groups,
                  transposed=transposed, output_padding=getattr(m, "output_padding", 0))


def _m_batchnorm(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    import torch

    if m.running_mean is None or m.running_var is None:
        raise Unsupported("BatchNorm without running statistics (track_running_stats=False) "
                           "normalises with batch statistics even at inference")
    x = _first_tensor(args, kwargs)
    path = str(node.target)
    if m.affine:
        scale, bias = e.param(m.weight, f"{path}.weight"), e.param(m.bias, f"{path}.bias")
    else:
        c = m.num_features
        scale = e.param(torch.ones(c, dtype=m.running_var.dtype), f"{path}.weight")
        bias = e.param(torch.zeros(c, dtype=m.running_var.dtype), f"{path}.bias")
    ins = [x.name, scale, bias, e.param(m.running_mean, f"{path}.running_mean"),
           e.param(m.running_var, f"{path}.running_var")]
    return e.out_t(e.emit("BatchNormalization", ins, e.unique(path), epsilon=float(m.eps))[0])


def _m_layernorm(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    import torch

    if e.opset < 17:
        raise Unsupported("LayerNorm needs opset 17 or newer")
    x = _first_tensor(args, kwargs)
    path = str(node.target)
    shape = tuple(m.normalized_shape)
    w = m.weight if m.weight is not None else torch.ones(shape)
    b = m.bias if getattr(m, "bias", None) is not None else torch.zeros(shape)
    ins = [x.name, e.param(w, f"{path}.weight"), e.param(b, f"{path}.bias")]
    return e.out_t(e.emit("LayerNormalization", ins, e.unique(path), axis=-len(shape),
                          epsilon=float(m.eps))[0])


def _m_embedding(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    if m.max_norm is not None:
        raise Unsupported("Embedding with max_norm (it renormalises its table as it runs)")
    ids = _first_tensor(args, kwargs)
    table = e.param(m.weight, f"{node.target}.weight")
    return e.out_t(e.emit("Gather", [table, ids.name], e.unique(str(node.target)), axis=0)[0])


def _m_linear(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    x = _first_tensor(args, kwargs)
    return e.linear(x, e.unique(str(node.target)), m.weight, m.bias, str(node.target))


def _m_activation(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    import torch.nn as nn

    x = _first_tensor(args, kwargs)
    name = e.unique(str(node.target))
    if isinstance(m, nn.ReLU):
        return e.unary("Relu", x, name)
    if isinstance(m, nn.ReLU6):
        return e.clip(x, name, 0.0, 6.0)
    if isinstance(m, nn.Hardtanh):
        return e.clip(x, name, float(m.min_val), float(m.max_val))
    if isinstance(m, nn.LeakyReLU):
        return e.unary("LeakyRelu", x, name, alpha=float(m.negative_slope))
    if isinstance(m, nn.Sigmoid):
        return e.unary("Sigmoid", x, name)
    if isinstance(m, nn.Tanh):
        return e.unary("Tanh", x, name)
    if isinstance(m, nn.Mish):
        return e.mish_op(x, name)
    if isinstance(m, nn.SiLU):
        return e.silu(x, name)
    if isinstance(m, nn.Hardswish):
        return e.hardswish(x, name)
    if isinstance(m, nn.Hardsigmoid):
        return e.unary("HardSigmoid", x, name, alpha=1.0 / 6.0, beta=0.5)
    if isinstance(m, nn.ELU):
        return e.unary("Elu", x, name, alpha=float(m.alpha))
    if isinstance(m, nn.GELU):
        return e.gelu(x, name, m.approximate)
    if isinstance(m, nn.Softplus):
        return _softplus(e, x, name, m.beta)
    if isinstance(m, nn.Softmax):
        return e.unary("Softmax", x, name, axis=e.axis(m.dim if m.dim is not None else -1,
                                                       x.rank))
    raise Unsupported(f"activation {type(m).__name__}")


def _softplus(e: Emitter, x: OnnxTensor, name: str, beta: float) -> OnnxTensor:
    # ONNX Softplus has no threshold: PyTorch returns x above 20, where log1p(exp(x)) == x in
    # float32 anyway, so the two agree to the last bit there.
    if float(beta) != 1.0:
        raise Unsupported(f"Softplus(beta={beta})")
    return e.unary("Softplus", x, name)


def _m_identity(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    return _first_tensor(args, kwargs)  # Identity / Dropout at inference: no node at all


def _m_flatten(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    x = _first_tensor(args, kwargs)
    return _flatten(e, x, e.unique(str(node.target)), m.start_dim, m.end_dim)


def _flatten(e: Emitter, x: OnnxTensor, name: str, start: int, end: int) -> OnnxTensor:
    start, end = e.axis(start, max(x.rank, 1)), e.axis(end, max(x.rank, 1))
    if start == 1 and end == x.rank - 1:
        return e.unary("Flatten", x, name, axis=1)  # ONNX Flatten is exactly this case
    return e.reshape(x, name)


def _m_maxpool(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    if m.return_indices:
        raise Unsupported("MaxPool with return_indices=True")
    x = _first_tensor(args, kwargs)
    return e.pool("MaxPool", x, e.unique(str(node.target)), kernel=m.kernel_size,
                  stride=m.stride, padding=m.padding, dilation=m.dilation,
                  ceil_mode=m.ceil_mode)


def _m_avgpool(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    if getattr(m, "divisor_override", None):
        raise Unsupported("AvgPool with divisor_override")
    x = _first_tensor(args, kwargs)
    return e.pool("AveragePool", x, e.unique(str(node.target)), kernel=m.kernel_size,
                  stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                  count_include_pad=m.count_include_pad)


def _m_adaptive_avg(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    return e.adaptive_pool("avg", _first_tensor(args, kwargs), e.unique(str(node.target)),
                           m.output_size)


def _m_adaptive_max(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    if m.return_indices:
        raise Unsupported("AdaptiveMaxPool with return_indices=True")
    return e.adaptive_pool("max", _first_tensor(args, kwargs), e.unique(str(node.target)),
                           m.output_size)


def _m_upsample(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    return e.resize(_first_tensor(args, kwargs), e.unique(str(node.target)), size=m.size,
                    scale_factor=m.scale_factor, mode=m.mode, align_corners=m.align_corners)


def _m_pad(e: Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> OnnxTensor:
    return _pad(e, _first_tensor(args, kwargs), e.unique(str(node.target)), m.padding,
                "constant", float(getattr(m, "value", 0.0)))


def _pad(e: Emitter, x: OnnxTensor, name: str, pad: Sequence[int], mode: str, value: float | None
         ) -> OnnxTensor:
    if mode not in ("constant", "reflect", "replicate"):
        raise Unsupported(f"padding mode '{mode}'")
    pad = list(pad)
    if any(p < 0 for p in pad):
        raise Unsupported("negative padding (cropping)")
    begins, ends = [0] * x.rank, [0] * x.rank
    for i in range(len(pad) // 2):  # torch lists the last dimension first
        axis = x.rank - 1 - i
        begins[axis], ends[axis] = pad[2 * i], pad[2 * i + 1]
    ins = [x.name, e.const(f"{name}/pads", np.array(begins + ends, dtype=np.int64))]
    if mode == "constant" and value:
        ins.append(e.scalar(value, x, f"{name}/value"))
    onnx_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    return e.out_t(e.emit("Pad", ins, name, mode=onnx_mode)[0])


def _module_handlers() -> list[tuple[type, Callable[..., Any]]]:
    import torch.nn as nn

    table: list[tuple[type, Callable[..., Any]]] = [
        (nn.Conv1d, _m_conv), (nn.Conv2d, _m_conv), (nn.Conv3d, _m_conv),
        (nn.ConvTranspose1d, _m_conv), (nn.ConvTranspose2d, _m_conv),
        (nn.ConvTranspose3d, _m_conv),
        (nn.BatchNorm1d, _m_batchnorm), (nn.BatchNorm2d, _m_batchnorm),
        (nn.BatchNorm3d, _m_batchnorm), (nn.LayerNorm, _m_layernorm),
        (nn.Linear, _m_linear), (nn.Embedding, _m_embedding),
        (nn.Identity, _m_identity), (nn.Dropout, _m_identity), (nn.Dropout2d, _m_identity),
        (nn.Flatten, _m_flatten),
        (nn.MaxPool1d, _m_maxpool), (nn.MaxPool2d, _m_maxpool), (nn.MaxPool3d, _m_maxpool),
        (nn.AvgPool1d, _m_avgpool), (nn.AvgPool2d, _m_avgpool), (nn.AvgPool3d, _m_avgpool),
        (nn.AdaptiveAvgPool1d, _m_adaptive_avg), (nn.AdaptiveAvgPool2d, _m_adaptive_avg),
        (nn.AdaptiveMaxPool2d, _m_adaptive_max),
        (nn.Upsample, _m_upsample), (nn.UpsamplingNearest2d, _m_upsample),
        (nn.ZeroPad2d, _m_pad), (nn.ConstantPad2d, _m_pad),
    ]
    for cls in (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Mish,
                nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.GELU, nn.Softplus, nn.Softmax):
        table.append((cls, _m_activation))
    return table


# Canonical names of the functions and Tensor methods the converter handles.
_METHODS = {
    "add": "add", "sub": "sub", "mul": "mul", "div": "div", "neg": "neg", "matmul": "matmul",
    "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "view": "reshape",
    "reshape": "reshape", "flatten": "flatten", "chunk": "chunk", "split": "split",
    "permute": "permute", "transpose": "transpose", "contiguous": "identity",
    "clone": "identity", "detach": "identity", "mean": "mean", "sum": "sum",
    "softmax": "softmax", "clamp": "clamp", "clip": "clamp", "squeeze": "reshape",
    "unsqueeze": "reshape", "exp": "exp", "sqrt": "sqrt",
}


def _function_table() -> dict[Any, str]:
    import torch
    import torch.nn.functional as F

    return {
        operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub",
        operator.mul: "mul", torch.mul: "mul", operator.truediv: "div", torch.div: "div",
        operator.neg: "neg", torch.neg: "neg", operator.matmul: "matmul", torch.matmul: "matmul",
        torch.cat: "cat", torch.concat: "cat", torch.chunk: "chunk", torch.split: "split",
        operator.getitem: "getitem", torch.flatten: "flatten", torch.reshape: "reshape",
        torch.permute: "permute", torch.transpose: "transpose", torch.squeeze: "reshape",
        torch.unsqueeze: "reshape",
        torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
        torch.relu: "relu", F.relu: "relu", F.relu6: "relu6", F.leaky_relu: "leaky_relu",
        F.mish: "mish", F.silu: "silu", F.softplus: "softplus", F.hardswish: "hardswish",
        F.hardsigmoid: "hardsigmoid", F.gelu: "gelu", F.elu: "elu", torch.softmax: "softmax",
        F.softmax: "softmax", torch.clamp: "clamp", torch.clip: "clamp", torch.exp: "exp",
        torch.sqrt: "sqrt",
        F.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d",
        F.adaptive_avg_pool2d: "adaptive_avg_pool2d", F.interpolate: "interpolate",
        F.pad: "pad", F.linear: "linear", F.embedding: "embedding", F.conv2d: "conv2d",
        torch.conv2d: "conv2d", torch.mean: "mean", torch.sum: "sum",
    }


_FUNCTIONS: dict[Any, str] | None = None


def canonical(node: Any) -> str | None:
    global _FUNCTIONS
    if node.op == "call_method":
        target = str(node.target)
        if target.endswith("_") and not target.startswith("_"):
            target = target[:-1]  # in-place variants: the traced value is the result
        return _METHODS.get(target)
    if _FUNCTIONS is None:
        _FUNCTIONS = _function_table()
    try:
        return _FUNCTIONS.get(node.target)
    except TypeError:  # unhashable target
        return None


def _f_binary(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    a = args[0] if args else kwargs.get("input")
    b = args[1] if len(args) > 1 else kwargs.get("other")
    if kwargs.get("rounding_mode") is not None:
        raise Unsupported(f"division with rounding_mode='{kwargs['rounding_mode']}'")
    name = e.unique(e.base_name(node, canon))
    alpha = kwargs.get("alpha", 1)
    if alpha != 1:
        if not isinstance(b, OnnxTensor):
            b = b * alpha
        else:
            b = e.binary("Mul", b, alpha, e.unique(f"{name}/alpha"))
    op = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "matmul": "MatMul"}[canon]
    return e.binary(op, a, b, name)


def _f_neg(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    return e.unary("Neg", _first_tensor(args, kwargs), e.unique(e.base_name(node, canon)))


def _f_cat(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("tensors", "dim"), {"dim": 0})
    tensors = b["tensors"]
    if not all(isinstance(t, OnnxTensor) for t in tensors):
        raise Unsupported("concatenating non-tensors")
    rank = tensors[0].rank
    name = e.unique(e.base_name(node, canon))
    return e.out_t(e.emit("Concat", [t.name for t in tensors], name,
                          axis=e.axis(b["dim"], rank))[0])


def _f_chunk(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict
             ) -> tuple[OnnxTensor, ...]:
    x = _first_tensor(args, kwargs)
    if canon == "chunk":
        b = _bind(args, kwargs, ("input", "chunks", "dim"), {"dim": 0})
    else:
        b = _bind(args, kwargs, ("input", "split_size_or_sections", "dim"), {"dim": 0})
    return e.split(x, e.unique(e.base_name(node, canon)), b["dim"])


def _f_getitem(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> Any:
    x, index = args[0], args[1]
    if isinstance(x, (tuple, list)):
        return x[index]
    return e.getitem(x, index, e.unique(e.base_name(node, "slice")))


def _f_flatten(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    x = _first_tensor(args, kwargs)
    return _flatten(e, x, e.unique(e.base_name(node, canon)), b["start_dim"], b["end_dim"])


def _f_reshape(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    x = _first_tensor(args, kwargs)
    return e.reshape(x, e.unique(e.base_name(node, canon)))


def _f_permute(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    x = _first_tensor(args, kwargs)
    if canon == "permute":
        dims = args[1:] if len(args) > 1 else (kwargs.get("dims"),)
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = dims[0]
        perm = [e.axis(d, x.rank) for d in dims]
    else:
        b = _bind(args, kwargs, ("input", "dim0", "dim1"), {})
        perm = list(range(x.rank))
        d0, d1 = e.axis(b["dim0"], x.rank), e.axis(b["dim1"], x.rank)
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return e.unary("Transpose", x, e.unique(e.base_name(node, canon)), perm=perm)


def _f_identity(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    return _first_tensor(args, kwargs)


def _f_activation(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    x = _first_tensor(args, kwargs)
    name = e.unique(e.base_name(node, canon))
    if canon in ("sigmoid", "tanh", "relu", "exp", "sqrt"):
        return e.unary(canon.capitalize(), x, name)
    if canon == "relu6":
        return e.clip(x, name, 0.0, 6.0)
    if canon == "leaky_relu":
        b = _bind(args, kwargs, ("input", "negative_slope"), {"negative_slope": 0.01})
        return e.unary("LeakyRelu", x, name, alpha=float(b["negative_slope"]))
    if canon == "mish":
        return e.mish_op(x, name)
    if canon == "silu":
        return e.silu(x, name)
    if canon == "hardswish":
        return e.hardswish(x, name)
    if canon == "hardsigmoid":
        return e.unary("HardSigmoid", x, name, alpha=1.0 / 6.0, beta=0.5)
    if canon == "gelu":
        return e.gelu(x, name, kwargs.get("approximate", "none"))
    if canon == "elu":
        b = _bind(args, kwargs, ("input", "alpha"), {"alpha": 1.0})
        return e.unary("Elu", x, name, alpha=float(b["alpha"]))
    if canon == "softplus":
        b = _bind(args, kwargs, ("input", "beta"), {"beta": 1.0})
        return _softplus(e, x, name, b["beta"])
    if canon == "softmax":
        b = _bind(args, kwargs, ("input", "dim"), {"dim": -1})
        if b.get("dtype") is not None:
            raise Unsupported("softmax with a dtype")
        return e.unary("Softmax", x, name, axis=e.axis(b["dim"], x.rank))
    if canon == "clamp":
        b = _bind(args, kwargs, ("input", "min", "max"), {"min": None, "max": None})
        if isinstance(b["min"], OnnxTensor) or isinstance(b["max"], OnnxTensor):
            raise Unsupported("clamp with tensor bounds")
        return e.clip(x, name, b["min"], b["max"])
    raise Unsupported(f"'{canon}'")


def _f_pool(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    x = _first_tensor(args, kwargs)
    name = e.unique(e.base_name(node, canon))
    if canon == "max_pool2d":
        b = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "dilation",
                                 "ceil_mode", "return_indices"),
                  {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                   "return_indices": False})
        if b["return_indices"]:
            raise Unsupported("max_pool2d with return_indices=True")
        return e.pool("MaxPool", x, name, kernel=b["kernel_size"], stride=b["stride"],
                      padding=b["padding"], dilation=b["dilation"], ceil_mode=b["ceil_mode"])
    if canon == "avg_pool2d":
        b = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad", "divisor_override"),
                  {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                   "divisor_override": None})
        if b["divisor_override"]:
            raise Unsupported("avg_pool2d with divisor_override")
        return e.pool("AveragePool", x, name, kernel=b["kernel_size"], stride=b["stride"],
                      padding=b["padding"], ceil_mode=b["ceil_mode"],
                      count_include_pad=b["count_include_pad"])
    b = _bind(args, kwargs, ("input", "output_size"), {})
    return e.adaptive_pool("avg", x, name, b["output_size"])


def _f_interpolate(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "size", "scale_factor", "mode", "align_corners",
                             "recompute_scale_factor", "antialias"),
              {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
               "recompute_scale_factor": None, "antialias": False})
    if b["antialias"]:
        raise Unsupported("interpolate with antialias=True")
    x = _first_tensor(args, kwargs)
    size = b["size"]
    if b["recompute_scale_factor"] and size is None:
        size = [int(d) for d in e.values[node].shape[2:]]  # the scale is recomputed from sizes
    return e.resize(x, e.unique(e.base_name(node, canon)), size=size,
                    scale_factor=b["scale_factor"], mode=b["mode"],
                    align_corners=b["align_corners"])


def _f_pad(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
    return _pad(e, _first_tensor(args, kwargs), e.unique(e.base_name(node, canon)), b["pad"],
                b["mode"], b["value"])


def _weight_tensor(e: Emitter, value: Any, what: str) -> Any:
    """The real torch tensor behind a weight argument (must come from a parameter / buffer)."""
    if not isinstance(value, OnnxTensor):
        raise Unsupported(f"{what} is not a tensor")
    tensor = e.tensor_of.get(value.name)
    if tensor is None:
        raise Unsupported(f"{what} is computed in forward(), not a parameter")
    return tensor


def _f_linear(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "weight", "bias"), {"bias": None})
    x = _first_tensor(args, kwargs)
    weight = _weight_tensor(e, b["weight"], "the weight")
    bias = _weight_tensor(e, b["bias"], "the bias") if b["bias"] is not None else None
    name = e.unique(e.base_name(node, canon))
    return e.linear(x, name, weight, bias, b["weight"].name.rsplit(".", 1)[0])


def _f_embedding(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "weight", "padding_idx", "max_norm"),
              {"padding_idx": None, "max_norm": None})
    if b["max_norm"] is not None:
        raise Unsupported("embedding with max_norm (it renormalises its table as it runs)")
    ids = _first_tensor(args, kwargs)
    table = _weight_tensor(e, b["weight"], "the table")
    name = e.unique(e.base_name(node, canon))
    return e.out_t(e.emit("Gather", [e.param(table, b["weight"].name), ids.name], name,
                          axis=0)[0])


def _f_conv2d(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation",
                             "groups"),
              {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    x = _first_tensor(args, kwargs)
    w = b["weight"]
    if not isinstance(w, OnnxTensor):
        raise Unsupported("the weight is not a tensor")
    bias = b["bias"].name if isinstance(b["bias"], OnnxTensor) else None
    return e.conv(x, e.unique(e.base_name(node, canon)), w.name, bias, kernel=w.shape[2:],
                  stride=b["stride"], padding=b["padding"], dilation=b["dilation"],
                  groups=b["groups"])


def _f_reduce(e: Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> OnnxTensor:
    b = _bind(args, kwargs, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
    if b.get("dtype") is not None:
        raise Unsupported(f"{canon} with a dtype")
    x = _first_tensor(args, kwargs)
    op = "ReduceMean" if canon == "mean" else "ReduceSum"
    return e.reduce(op, x, e.unique(e.base_name(node, canon)), b["dim"], b["keepdim"])


FUNCTION_HANDLERS: dict[str, Callable[..., Any]] = {
    **{k: _f_binary for k in ("add", "sub", "mul", "div", "matmul")},
    "neg": _f_neg, "cat": _f_cat, "chunk": _f_chunk, "split": _f_chunk,
    "getitem": _f_getitem, "flatten": _f_flatten, "reshape": _f_reshape,
    "permute": _f_permute, "transpose": _f_permute, "identity": _f_identity,
    **{k: _f_activation for k in ("sigmoid", "tanh", "relu", "relu6", "leaky_relu", "mish",
                                   "silu", "softplus", "hardswish", "hardsigmoid", "gelu",
                                   "elu", "softmax", "clamp", "exp", "sqrt")},
    "max_pool2d": _f_pool, "avg_pool2d": _f_pool, "adaptive_avg_pool2d": _f_pool,
    "interpolate": _f_interpolate, "pad": _f_pad, "linear": _f_linear, "conv2d": _f_conv2d,
    "embedding": _f_embedding,
    "mean": _f_reduce, "sum": _f_reduce,
}
