"""The ONNX emitter: nodes, initializers and value infos, in the form the ONNX door reads.

Every tensor is an :class:`OnnxTensor` (name, shape, torch dtype). Node names come from the
module path (``backbone.stage3.csp.cv1.conv``), made unique; a single-output node's tensor
takes the node's name. Weights become initializers once, however often they are shared.
The builders (``conv``, ``pool``, ``resize``, ``getitem``, ...) are the ONNX spellings the
op handlers share, including the decomposed forms older opsets need.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tilec.errors import InputError


@dataclass(frozen=True)
class OnnxTensor:
    """A tensor in the ONNX graph being built."""

    name: str
    shape: tuple[int, ...]
    dtype: Any  # torch dtype

    @property
    def rank(self) -> int:
        return len(self.shape)


def onnx_dtype(dtype: Any) -> int:
    import torch

    table = {
        torch.float32: TensorProto.FLOAT, torch.float16: TensorProto.FLOAT16,
        torch.float64: TensorProto.DOUBLE, torch.bfloat16: TensorProto.BFLOAT16,
        torch.int64: TensorProto.INT64, torch.int32: TensorProto.INT32,
        torch.int8: TensorProto.INT8, torch.uint8: TensorProto.UINT8, torch.bool: TensorProto.BOOL,
    }
    if dtype not in table:
        raise InputError(f"dtype {dtype} is not supported by the torch.fx converter")
    return table[dtype]


def _np_dtype(dtype: Any) -> np.dtype:
    return helper.tensor_dtype_to_np_dtype(onnx_dtype(dtype))


def _pair(v: Any, n: int) -> list[int]:
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return [int(v)] * n


class Unsupported(Exception):
    """Raised inside a handler; turned into an InputError naming the node."""


class Emitter:
    """Writes ONNX nodes, initializers and graph inputs; the op builders handlers share.

    It knows nothing of which torch call maps to which builder (that is
    :mod:`tilec.capture.fx.handlers`) nor of walking the fx graph
    (:class:`tilec.capture.fx.convert.Converter`); it only needs each fx node's fake value, to
    give every tensor it writes the shape PyTorch gives it.
    """

    def __init__(self, values: dict[Any, Any], *, opset: int, mish: str) -> None:
        self.values = values
        self.opset = opset
        self.mish = mish if opset >= 18 else "decomposed"
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.used: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.params: dict[int, str] = {}  # id(tensor) -> initializer name (shared weights once)
        self.tensor_of: dict[str, Any] = {}  # initializer name -> the torch tensor it holds
        self.expected: dict[str, tuple[int, ...]] = {}
        self.fx_node: Any = None  # the fx node being converted (its fake value shapes outputs)

    # ------------------------------------------------------------------ naming and emission
    def unique(self, base: str) -> str:
        name = base
        while name in self.used:
            self.counts[base] += 1
            name = f"{base}__{self.counts[base]}"
        self.used.add(name)
        return name

    def base_name(self, node: Any, canon: str) -> str:
        if node.op == "call_module":
            return str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        scope = next(reversed(stack.values()))[0] if stack else ""
        return f"{scope}.{canon}" if scope else canon

    def emit(self, op: str, inputs: Sequence[str], name: str, outputs: int = 1,
             **attrs: Any) -> list[str]:
        """Append one ONNX node named ``name`` (already unique, see :meth:`unique`).

        A single output tensor takes the node's name (node names are unique and share one
        namespace with every tensor name, so this cannot collide); several get ``name:i``.
        """
        outs = [name] if outputs == 1 else [self.unique(f"{name}:{i}") for i in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs

    def const(self, name: str, array: np.ndarray) -> str:
        """A small constant initializer (shapes, axes, scalars)."""
        cname = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), cname))
        return cname

    def param(self, tensor: Any, name: str) -> str:
        """A weight initializer from a real torch tensor (emitted once even if shared)."""
        key = id(tensor)
        if key in self.params:
            return self.params[key]
        cname = self.unique(name)
        array = tensor.detach().cpu().contiguous().numpy()
        self.initializers.append(numpy_helper.from_array(array, cname))
        self.params[key] = cname
        self.tensor_of[cname] = tensor  # also keeps the tensor alive, so its id stays unique
        return cname

    def scalar(self, value: float, like: OnnxTensor, name: str) -> str:
        return self.const(name, np.array(value, dtype=_np_dtype(like.dtype)))

    def out_t(self, name: str, node: Any = None) -> OnnxTensor:
        """The OnnxTensor for tensor ``name`` with the fake value of the fx node being converted."""
        fake = self.values[node if node is not None else self.fx_node]
        t = OnnxTensor(name, tuple(int(d) for d in fake.shape), fake.dtype)
        self.expected[name] = t.shape
        return t

    # ------------------------------------------------------------------ shared op builders
    def unary(self, op: str, x: OnnxTensor, name: str, **attrs: Any) -> OnnxTensor:
        out = self.emit(op, [x.name], name, **attrs)[0]
        return self.out_t(out)

    def mish_op(self, x: OnnxTensor, name: str) -> OnnxTensor:
        if self.mish == "op":
            return self.unary("Mish", x, name)
        sp = self.emit("Softplus", [x.name], self.unique(f"{name}/softplus"))[0]
        th = self.emit("Tanh", [sp], self.unique(f"{name}/tanh"))[0]
        out = self.emit("Mul", [x.name, th], name)[0]
        return self.out_t(out)

    def silu(self, x: OnnxTensor, name: str) -> OnnxTensor:
        sig = self.emit("Sigmoid", [x.name], self.unique(f"{name}/sigmoid"))[0]
        return self.out_t(self.emit("Mul", [x.name, sig], name)[0])

    def hardswish(self, x: OnnxTensor, name: str) -> OnnxTensor:
        if self.opset >= 14:
            return self.unary("HardSwish", x, name)
        hs = self.emit("HardSigmoid", [x.name], self.unique(f"{name}/hardsigmoid"),
                       alpha=1.0 / 6.0, beta=0.5)[0]
        return self.out_t(self.emit("Mul", [x.name, hs], name)[0])

    def gelu(self, x: OnnxTensor, name: str, approximate: str) -> OnnxTensor:
        if self.opset >= 20:
            return self.unary("Gelu", x, name, approximate=approximate)
        if approximate != "none":
            raise Unsupported(f"GELU(approximate='{approximate}') needs opset 20 or newer")
        # x * 0.5 * (1 + erf(x / sqrt(2)))
        div = self.emit("Div", [x.name, self.scalar(math.sqrt(2.0), x, f"{name}/sqrt2")],
                        self.unique(f"{name}/div"))[0]
        erf = self.emit("Erf", [div], self.unique(f"{name}/erf"))[0]
        one = self.emit("Add", [erf, self.scalar(1.0, x, f"{name}/one")],
                        self.unique(f"{name}/add"))[0]
        half = self.emit("Mul", [x.name, self.scalar(0.5, x, f"{name}/half")],
                         self.unique(f"{name}/half_x"))[0]
        return self.out_t(self.emit("Mul", [half, one], name)[0])

    def clip(self, x: OnnxTensor, name: str, lo: float | None, hi: float | None) -> OnnxTensor:
        ins = [x.name,
               self.scalar(lo, x, f"{name}/min") if lo is not None else "",
               self.scalar(hi, x, f"{name}/max") if hi is not None else ""]
        while ins and ins[-1] == "":
            ins.pop()
        return self.out_t(self.emit("Clip", ins, name)[0])

    def reshape(self, x: OnnxTensor, name: str) -> OnnxTensor:
        shape = self.out_t(name).shape
        target = self.const(f"{name}/shape", np.array(shape, dtype=np.int64))
        return self.out_t(self.emit("Reshape", [x.name, target], name)[0])

    def conv(self, x: OnnxTensor, name: str, weight: str, bias: str | None, *,
             kernel: Sequence[int], stride: Any, padding: Any, dilation: Any, groups: int,
             transposed: bool = False, output_padding: Any = 0) -> OnnxTensor:
        nd = len(kernel)
        strides, dilations = _pair(stride, nd), _pair(dilation, nd)
        if isinstance(padding, str):
            if padding == "valid":
                pads = [0] * (2 * nd)
            elif padding == "same":
                total = [d * (k - 1) for d, k in zip(dilations, kernel, strict=True)]
                pads = [t // 2 for t in total] + [t - t // 2 for t in total]
            else:
                raise Unsupported(f"padding='{padding}'")
        else:
            p = _pair(padding, nd)
            pads = p + p
        ins = [x.name, weight] + ([bias] if bias else [])
        if transposed:
            op = self.emit("ConvTranspose", ins, name, kernel_shape=list(kernel),
                           strides=strides, pads=pads, dilations=dilations, group=int(groups),
                           output_padding=_pair(output_padding, nd))[0]
        else:
            op = self.emit("Conv", ins, name, kernel_shape=list(kernel), strides=strides,
                           pads=pads, dilations=dilations, group=int(groups))[0]
        return self.out_t(op)

    def linear(self, x: OnnxTensor, name: str, weight: Any, bias: Any, wname: str) -> OnnxTensor:
        w = self.param(weight, f"{wname}.weight")
        b = self.param(bias, f"{wname}.bias") if bias is not None else None
        if x.rank == 2:
            ins = [x.name, w] + ([b] if b else [])
            return self.out_t(self.emit("Gemm", ins, name, transB=1)[0])
        wt = self.const(f"{wname}.weight_t", weight.detach().cpu().numpy().T.copy())
        if b is None:
            return self.out_t(self.emit("MatMul", [x.name, wt], name)[0])
        mm = self.emit("MatMul", [x.name, wt], self.unique(f"{name}/matmul"))[0]
        return self.out_t(self.emit("Add", [mm, b], name)[0])

    def pool(self, op: str, x: OnnxTensor, name: str, *, kernel: Any, stride: Any, padding: Any,
             dilation: Any = 1, ceil_mode: bool = False,
             count_include_pad: bool | None = None) -> OnnxTensor:
        nd = x.rank - 2
        k = _pair(kernel, nd)
        s = _pair(stride if stride not in (None, [], ()) else kernel, nd)
        p = _pair(padding, nd)
        d = _pair(dilation, nd)
        attrs: dict[str, Any] = {"kernel_shape": k, "strides": s, "pads": p + p,
                                 "ceil_mode": int(bool(ceil_mode))}
        if op == "MaxPool" and any(v != 1 for v in d):
            attrs["dilations"] = d
        if count_include_pad is not None:
            attrs["count_include_pad"] = int(bool(count_include_pad))
        return self.out_t(self.emit(op, [x.name], name, **attrs)[0])

    def adaptive_pool(self, op: str, x: OnnxTensor, name: str, output_size: Any) -> OnnxTensor:
        nd = x.rank - 2
        sizes = list(output_size) if isinstance(output_size, (list, tuple)) else [output_size] * nd
        sizes = [x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes)]
        if all(s == 1 for s in sizes):
            return self.unary("GlobalAveragePool" if op == "avg" else "GlobalMaxPool", x, name)
        spatial = x.shape[2:]
        if any(i % o for i, o in zip(spatial, sizes, strict=True)):
            raise Unsupported(f"adaptive pooling from {tuple(spatial)} to {tuple(sizes)} "
                               "(not an integer ratio)")
        k = [i // o for i, o in zip(spatial, sizes, strict=True)]
        return self.pool("AveragePool" if op == "avg" else "MaxPool", x, name, kernel=k,
                         stride=k, padding=0)

    def resize(self, x: OnnxTensor, name: str, *, size: Any, scale_factor: Any, mode: str,
               align_corners: bool | None) -> OnnxTensor:
        nd = x.rank - 2
        attrs: dict[str, Any] = {}
        if mode == "nearest":
            attrs.update(mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor")
        elif mode in ("linear", "bilinear", "trilinear", "bicubic"):
            attrs["mode"] = "cubic" if mode == "bicubic" else "linear"
            attrs["coordinate_transformation_mode"] = (
                "align_corners" if align_corners else "pytorch_half_pixel")
            if mode == "bicubic":
                attrs["cubic_coeff_a"] = -0.75
        else:
            raise Unsupported(f"interpolation mode '{mode}'")
        if size is not None:
            sizes = [x.shape[0], x.shape[1], *_pair(size, nd)]
            ins = [x.name, "", "", self.const(f"{name}/sizes", np.array(sizes, dtype=np.int64))]
        else:
            sf = (list(scale_factor) if isinstance(scale_factor, (list, tuple))
                  else [scale_factor] * nd)
            scales = np.array([1.0, 1.0, *[float(s) for s in sf]], dtype=np.float32)
            ins = [x.name, "", self.const(f"{name}/scales", scales)]
        return self.out_t(self.emit("Resize", ins, name, **attrs)[0])

    def binary(self, op: str, a: Any, b: Any, name: str) -> OnnxTensor:
        # PyTorch promotes mixed operands (an int64 mask times a float tensor, int / int -> float);
        # ONNX takes one type, so an operand of another dtype than the result is Cast to it.
        fake = self.values[self.fx_node]
        like = OnnxTensor("", (), fake.dtype)
        names = []
        for side, v in (("a", a), ("b", b)):
            if not isinstance(v, OnnxTensor):
                names.append(self.scalar(v, like, f"{name}/{side}"))
            elif v.dtype != fake.dtype:
                names.append(self.emit("Cast", [v.name], self.unique(f"{name}/cast_{side}"),
                                       to=onnx_dtype(fake.dtype))[0])
            else:
                names.append(v.name)
        return self.out_t(self.emit(op, names, name)[0])

    def axis(self, dim: int, rank: int) -> int:
        return int(dim) + rank if int(dim) < 0 else int(dim)

    def split(self, x: OnnxTensor, name: str, dim: int) -> tuple[OnnxTensor, ...]:
        fakes = self.values[self.fx_node]
        axis = self.axis(dim, x.rank)
        sizes = [int(f.shape[axis]) for f in fakes]
        split = self.const(f"{name}/split", np.array(sizes, dtype=np.int64))
        outs = self.emit("Split", [x.name, split], name, outputs=len(sizes), axis=axis)
        result = []
        for out, fake in zip(outs, fakes, strict=True):
            t = OnnxTensor(out, tuple(int(d) for d in fake.shape), fake.dtype)
            self.expected[out] = t.shape
            result.append(t)
        return tuple(result)

    def reduce(self, op: str, x: OnnxTensor, name: str, dims: Any, keepdim: bool) -> OnnxTensor:
        if dims is None or dims == [] or dims == ():
            axes = list(range(x.rank))
        else:
            axes = [self.axis(d, x.rank) for d in (dims if isinstance(dims, (list, tuple))
                                                   else [dims])]
        if op == "ReduceMean" and keepdim and sorted(axes) == list(range(2, x.rank)) \
                and x.rank >= 3:
            return self.unary("GlobalAveragePool", x, name)  # a pool, as the planner sees it
        if op == "ReduceSum" or self.opset >= 18:
            ax = self.const(f"{name}/axes", np.array(axes, dtype=np.int64))
            return self.out_t(self.emit(op, [x.name, ax], name, keepdims=int(bool(keepdim)))[0])
        return self.out_t(self.emit(op, [x.name], name, axes=axes,
                                    keepdims=int(bool(keepdim)))[0])

    def getitem(self, x: Any, index: Any, name: str) -> Any:
        if isinstance(x, (tuple, list)):
            return x[index]
        if not isinstance(x, OnnxTensor):
            raise Unsupported(f"indexing a {type(x).__name__}")
        items = list(index) if isinstance(index, tuple) else [index]
        if any(isinstance(i, (OnnxTensor, list)) for i in items):
            raise Unsupported("indexing with lists or tensors")
        # x[:, None] inserts a size-1 axis: index without the Nones, then one Reshape to the
        # result's shape (the elements keep their order, so a Reshape is exact).
        new_axes = any(i is None for i in items)
        items = [i for i in items if i is not None]
        if sum(i is Ellipsis for i in items) > 1:
            raise Unsupported("more than one Ellipsis")
        if Ellipsis in items:
            at = items.index(Ellipsis)
            fill = x.rank - (len(items) - 1)
            items = items[:at] + [slice(None)] * fill + items[at + 1:]
        items += [slice(None)] * (x.rank - len(items))
        starts, ends, axes, steps, gathers = [], [], [], [], []
        for axis, item in enumerate(items):
            if isinstance(item, slice):
                dim = x.shape[axis]
                start, stop, step = item.indices(dim)
                if step <= 0:
                    raise Unsupported("a slice with a non-positive step")
                if (start, stop, step) != (0, dim, 1):
                    starts.append(start)
                    ends.append(stop)
                    axes.append(axis)
                    steps.append(step)
            elif isinstance(item, int):
                gathers.append((axis, item))
            else:
                raise Unsupported(f"index of type {type(item).__name__}")
        cur = x.name
        last = not gathers and not new_axes
        if axes:
            ins = [cur, self.const(f"{name}/starts", np.array(starts, dtype=np.int64)),
                   self.const(f"{name}/ends", np.array(ends, dtype=np.int64)),
                   self.const(f"{name}/axes", np.array(axes, dtype=np.int64)),
                   self.const(f"{name}/steps", np.array(steps, dtype=np.int64))]
            cur = self.emit("Slice", ins, name if last else self.unique(f"{name}/slice"))[0]
        for k, (axis, idx) in enumerate(reversed(gathers)):  # highest axis first keeps indices
            final = k == len(gathers) - 1 and not new_axes
            ind = self.const(f"{name}/index{axis}", np.array(idx, dtype=np.int64))
            cur = self.emit("Gather", [cur, ind], name if final else self.unique(
                f"{name}/gather{axis}"), axis=axis)[0]
        if new_axes:
            return self.reshape(OnnxTensor(cur, (), x.dtype), name)
        if cur == x.name:
            return x  # x[:] -- no-op
        return self.out_t(cur)
