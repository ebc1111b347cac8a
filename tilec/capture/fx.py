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
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import logging
import math
import operator
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tilec.capture.onnx_file import (
    InputSpec,
    _looks_nhwc,
    capture_model_proto,
    parse_image_size,
    parse_input_specs,
)
from tilec.capture.types import Captured
from tilec.errors import InputError, InternalError
from tilec.ir import MAX_IR_VERSION

DEFAULT_OPSET = 18
"""Opset of the ONNX the converter writes by default: the first with a ``Mish`` operator."""

MIN_OPSET = 13
"""Oldest opset the converter writes (Split/Squeeze/ReduceSum take their axes as inputs from 13)."""

MAX_OPSET = 21
"""Newest opset the converter writes; onnxruntime 1.18+ (the oldest tilec supports) runs it."""

MISH_FORMS = ("op", "decomposed")


# ----------------------------------------------------------------------------------- user input
def parse_input_shape(value: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,3,896,896"`` (or ``1x3x896x896``, or a tuple) -> ``(1, 3, 896, 896)``; all positive.

    One shape only; :func:`capture_module` reads every form (several inputs, names, dtypes)
    through :func:`tilec.capture.onnx_file.parse_input_specs`.
    """
    if isinstance(value, str):
        if "=" in value or ";" in value or ":" in value:
            raise InputError(f"--input-shape: '{value}' is more than one shape (use "
                             "parse_input_specs for NAME=dims;NAME2=dims and dtypes)")
        parts = [p.strip() for p in value.lower().replace("×", "x").replace("x", ",").split(",")]
        try:  # an empty part ("1,3,,64", "1,3,64,64,x") is a typo, not a separator to skip
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise InputError(f"--input-shape: '{value}' is not a shape (use N,C,H,W, e.g. "
                             "1,3,896,896)") from None
    else:
        try:
            dims = tuple(int(d) for d in value)
        except (TypeError, ValueError):
            raise InputError(f"--input-shape: {value!r} is not a shape of integers") from None
    if not dims:
        raise InputError(f"--input-shape: '{value}' is empty")
    if any(d <= 0 for d in dims):
        raise InputError(f"--input-shape: every dimension must be positive, got {value}")
    return dims


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__


def load_factory(text: str) -> Any:
    """Import ``file.py`` and call its ``factory`` (``"file.py:factory"``); return the module.

    Every way this can go wrong -- no such file, no factory named, no such name in the file, the
    import or the factory raising, a result that is not an ``nn.Module`` -- is one
    :class:`InputError` line naming the file (and factory).
    """
    import torch

    text = str(text)
    if ".py:" in text:
        path_text, _, factory = text.rpartition(":")
    else:
        path_text, factory = text, ""
    path = Path(path_text)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir() or path.suffix != ".py":
        raise InputError(f"{path}: not a Python file (expected file.py:factory)")
    module = _import_file(path)
    defined = sorted(
        name for name, obj in vars(module).items()
        if callable(obj) and not name.startswith("_")
        and getattr(obj, "__module__", None) == module.__name__
    )
    if not factory:
        raise InputError(f"{path}: no factory named; use {path}:NAME where NAME builds the module "
                         f"(callables defined there: {', '.join(defined) or 'none'})")
    obj: Any = module
    for part in factory.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{path}: has no '{factory}' (callables defined there: "
                             f"{', '.join(defined) or 'none'})")
        obj = getattr(obj, part)
    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise InputError(f"{path}:{factory}: is a {type(obj).__name__}, not a function or class "
                         "that builds a torch.nn.Module")
    try:
        result = obj()
    except Exception as exc:
        raise InputError(f"{path}:{factory}: the factory raised {_first_line(exc)}") from exc
    if not isinstance(result, torch.nn.Module):
        raise InputError(f"{path}:{factory}: returned a {type(result).__name__}, not a "
                         "torch.nn.Module")
    return result


def _import_file(path: Path) -> Any:
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    mod_name = f"_tilec_user_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered so that dataclasses / pickling inside the user's file work; the file's directory
    # is importable while it runs so that it can import its siblings.
    sys.modules[mod_name] = module
    sys.path.insert(0, str(resolved.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise InputError(f"{path}: importing it failed: {_first_line(exc)}") from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(resolved.parent))
    return module


# ----------------------------------------------------------------------------------- capture
def capture_module(module: Any, *, input_shape: Any = None,
                   batch: int | None = None,
                   image_size: tuple[int, int] | str | int | None = None,
                   name: str | None = None, source: str | None = None,
                   opset: int = DEFAULT_OPSET, mish: str = "op") -> Captured:
    """Capture a PyTorch module through torch.fx into the graph form (see the module docstring).

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
                             f"where its signature lists {len(params)} ({_signature(params)}); "
                             "export the model to ONNX and pass the .onnx file instead")
        shapes = _resolve_shapes(gm, feeds, batch, hw, label)
        dtypes = _resolve_dtypes(module, gm, params, feeds)
        model, expected = module_to_onnx(module, shapes, opset=opset, mish=mish, source=label,
                                         graph_name=name or label, traced=gm, dtype=dtypes)
    finally:
        module.train(was_training)
    captured = capture_model_proto(model, batch=None, image_size=None, name=name or label,
                                   stride=None, source=label)
    check_against_fake(captured, expected, label)
    captured.meta.update({"door": "torch.fx", "mish": mish,
                          "input_dtypes": {k: _dtype_text(v) for k, v in dtypes.items()}})
    return captured


@dataclass(frozen=True)
class Param:
    """One parameter of a module's ``forward``, as the torch.fx door binds shapes to it."""

    name: str
    required: bool  # no default value
    default: Any = None
    scalar: str | None = None  # "float", "int", ... when annotated as a Python scalar

    def text(self) -> str:
        return self.name if self.required else f"{self.name}={self.default!r}"


_SCALAR_ANNOTATIONS = frozenset({"int", "float", "bool", "str", "complex"})


def _signature(params: Sequence[Param]) -> str:
    return f"forward({', '.join(p.text() for p in params)})"


def forward_params(module: Any, label: str) -> list[Param]:
    """The parameters of ``module.forward`` in order; ``*args`` / ``**kwargs`` are refused.

    Shapes are bound to parameters by name or position, so each input must be a named
    parameter; a variadic forward could take anything and tilec could not say what is missing.
    """
    import inspect

    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label}: cannot read the parameters of forward() "
                         f"({_first_line(exc)})") from exc
    params: list[Param] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind == p.VAR_POSITIONAL else "**"
            raise InputError(f"{label}: forward{sig} takes {star}{p.name}; the torch.fx door "
                             "binds each input shape to a named parameter, so forward() must "
                             "name its inputs (wrap the module in one whose forward does)")
        ann = p.annotation
        ann_text = ann if isinstance(ann, str) else getattr(ann, "__name__", None)
        params.append(Param(
            name=p.name, required=p.default is p.empty,
            default=None if p.default is p.empty else p.default,
            scalar=ann_text if ann_text in _SCALAR_ANNOTATIONS else None))
    if not params:
        raise InputError(f"{label}: forward() takes no input")
    return params


@dataclass
class Feed:
    """What the torch.fx door feeds one parameter: its dims (None: to be read from the first
    convolution, for ``--image-size`` alone) and its dtype (None: inferred, see
    :func:`capture_module`)."""

    name: str
    dims: tuple[int, ...] | None
    dtype: str | None = None


def bind_inputs(params: Sequence[Param], specs: Sequence[InputSpec] | None,
                hw: tuple[int, int] | None, label: str) -> dict[str, Feed]:
    """Match ``--input-shape`` entries to forward's parameters (by name, or by position).

    Returns {parameter: Feed} in forward's order, for exactly the parameters that become graph
    inputs; every other parameter has a default and keeps it.
    """
    sig = _signature(params)
    required = [p for p in params if p.required]
    by_name = {p.name: p for p in params}
    feeds: dict[str, Feed] = {}
    for p in required:
        if p.scalar is not None:
            raise InputError(f"{label}: parameter '{p.name}: {p.scalar}' of {sig} has no default "
                             "value, and only tensors can be given a shape; give it a default "
                             "in forward() (tilec leaves defaults alone) or fix it in the factory")
    if specs is None:
        if hw is not None and len(required) == 1 and required[0].scalar is None:
            return {required[0].name: Feed(required[0].name, None)}
        if len(required) == 1:
            raise InputError(f"{label}: give the input shape of the module, e.g. --input-shape "
                             "1,3,224,224 (or input_shape=(1, 3, 224, 224))")
        example = ";".join(f"{p.name}=..." for p in required) or "NAME=..."
        raise InputError(f"{label}: give the shapes of {sig}'s inputs, e.g. --input-shape "
                         f"'{example}'")
    if specs[0].name is None:  # by position, in forward's order
        last_required = max((i for i, p in enumerate(params) if p.required), default=-1)
        count = f"{len(specs)} shape{'s' if len(specs) != 1 else ''}"
        by_name_hint = ";".join(f"{p.name}=..." for p in required)
        if len(specs) > len(params):
            raise InputError(f"{label}: --input-shape gives {count}, but {sig} takes "
                             f"{len(params)} parameter{'s' if len(params) != 1 else ''}")
        if len(specs) <= last_required:
            raise InputError(f"{label}: --input-shape gives {count}, but {sig} needs "
                             f"{last_required + 1} (none for '{params[len(specs)].name}'); give "
                             f"one per input in forward's order, or by name: {by_name_hint}")
        for spec, p in zip(specs, params, strict=False):
            feeds[p.name] = Feed(p.name, spec.dims, spec.dtype)
    else:
        for spec in specs:
            assert spec.name is not None
            if spec.name not in by_name:
                close = difflib.get_close_matches(spec.name, list(by_name), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise InputError(f"{label}: --input-shape names '{spec.name}', but {sig} has no "
                                 f"such parameter ({hint}parameters: {', '.join(by_name)})")
        given = {s.name: s for s in specs}
        for p in params:
            if p.name in given:
                feeds[p.name] = Feed(p.name, given[p.name].dims, given[p.name].dtype)
            elif p.required:
                raise InputError(f"{label}: --input-shape gives no shape for input '{p.name}' of "
                                 f"{sig}; name each input: "
                                 f"{';'.join(f'{q.name}=...' for q in required)}")
    for p in params:
        if p.scalar is not None and p.name in feeds:
            raise InputError(f"{label}: parameter '{p.name}: {p.scalar}' of {sig} is given a "
                             "shape, but it is not a tensor; leave it out of --input-shape "
                             "(it keeps its default)")
    return feeds


def _listing(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v)) or 'scalar'}" for k, v in shapes.items())


def _resolve_shapes(gm: Any, feeds: dict[str, Feed], batch: int | None,
                    hw: tuple[int, int] | None, label: str) -> dict[str, tuple[int, ...]]:
    """Whole shapes per input: ``--input-shape``, then ``--batch``, then ``--image-size``."""
    import torch

    shapes: dict[str, list[int]] = {}
    for key, feed in feeds.items():
        if feed.dims is not None:
            shapes[key] = list(feed.dims)
            continue
        assert hw is not None  # bind_inputs leaves dims out only for --image-size alone
        first_conv = next(
            (gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module"
             and isinstance(gm.get_submodule(n.target), torch.nn.Conv2d)), None)
        if first_conv is None:
            raise InputError(f"{label}: give the full input shape (--input-shape N,C,H,W): the "
                             "module has no Conv2d to read the channel count from")
        shapes[key] = [1, first_conv.in_channels, *hw]
    listing = _listing({k: tuple(v) for k, v in shapes.items()})
    if batch is not None:
        batched = [k for k, v in shapes.items() if len(v) >= 2]
        if not batched:
            raise InputError(f"--batch: {label}: no input has a batch dimension (inputs: "
                             f"{listing})")
        for key in batched:
            shapes[key][0] = batch
    if hw is not None:
        images = [k for k, v in shapes.items() if len(v) == 4]
        if not images:
            raise InputError(f"--image-size: {label}: no input is rank-4 (N,C,H,W) (inputs: "
                             f"{listing}); use --input-shape")
        for key in images:
            if _looks_nhwc(list(feeds[key].dims or ())):
                raise InputError(f"--image-size: {label}: input '{key}' "
                                 f"({'x'.join(map(str, shapes[key]))}) looks NHWC; tilec "
                                 "resizes NCHW inputs only, give the shape with --input-shape")
            shapes[key][2], shapes[key][3] = hw
    return {k: tuple(v) for k, v in shapes.items()}


def _resolve_dtypes(module: Any, gm: Any, params: Sequence[Param],
                    feeds: dict[str, Feed]) -> dict[str, Any]:
    """torch dtype per input: as stated; int64 into an embedding; else the module's float."""
    import torch
    import torch.nn.functional as F

    default = next((p.dtype for p in module.parameters() if p.is_floating_point()),
                   torch.float32)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    node_of = {p.name: n for p, n in zip(params, placeholders, strict=True)}
    dtypes: dict[str, Any] = {}
    for key, feed in feeds.items():
        if feed.dtype is not None:
            dtypes[key] = getattr(torch, feed.dtype)
            continue
        node = node_of[key]
        indexes = False
        for u in node.users:
            embeds = ((u.op == "call_module"
                       and isinstance(gm.get_submodule(u.target), torch.nn.Embedding))
                      or (u.op == "call_function" and u.target is F.embedding))
            indexes |= embeds and (u.args[:1] == (node,) or u.kwargs.get("input") is node)
        dtypes[key] = torch.int64 if indexes else default
    return dtypes


def _dtype_text(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def trace(module: Any, label: str, concrete_args: dict[str, Any] | None = None) -> Any:
    """``torch.fx.symbolic_trace`` with its failures turned into one :class:`InputError` line."""
    import torch.fx

    try:
        return torch.fx.symbolic_trace(module, concrete_args=concrete_args)
    except Exception as exc:
        raise InputError(f"{label}: torch.fx cannot trace {type(module).__name__} "
                         f"({_first_line(exc)}); export it to ONNX and pass the .onnx file "
                         "instead") from exc


def check_against_fake(captured: Captured, expected: dict[str, tuple[int, ...]],
                       label: str) -> None:
    """Every tensor's ONNX-inferred shape must equal its fake-tensor shape (else a tilec bug)."""
    tensors = captured.graph.tensors()
    for tname, shape in expected.items():
        tensor = tensors.get(tname)
        if tensor is None:
            continue  # removed as unused by the import (e.g. an unused Split output)
        got = tuple(int(d) for d in tensor.shape)
        if got != tuple(shape):
            raise InternalError(f"{label}: the torch.fx converter produced tensor '{tname}' "
                                f"of shape {got}, but PyTorch gives {tuple(shape)}")


# ----------------------------------------------------------------------------------- converter
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
    :func:`check_against_fake`). The module is put in eval mode for the conversion (BatchNorm uses
    its running statistics, Dropout is the identity) and restored afterwards.
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
        inputs = _placeholder_inputs(gm, input_shape, dtype, float_dtype, source)
        values = _fake_run(gm, inputs, source)
        emitter = _Emitter(gm, values, opset=opset, mish=mish, source=source, inputs=inputs)
        graph = emitter.convert(graph_name or source)
    finally:
        module.train(was_training)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tilec.capture.fx")
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return model, emitter.expected


@dataclass(frozen=True)
class _Input:
    """A graph input: the placeholder it feeds, its (parameter) name, shape and torch dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: Any


def _placeholder_inputs(gm: Any, input_shape: Any, dtype: Any, float_dtype: Any,
                        source: str) -> list[_Input | None]:
    """One entry per fx placeholder: the input fed to it, or None (it keeps its default)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for n in placeholders:
        if str(n.target).startswith("*"):
            raise InputError(f"{source}: forward() takes {n.target}; the torch.fx door binds each "
                             "input shape to a named parameter, so forward() must name its inputs")
    if isinstance(input_shape, dict):
        shapes = {str(k): tuple(int(d) for d in v) for k, v in input_shape.items()}
        unknown = sorted(set(shapes) - {str(n.target) for n in placeholders})
        if unknown:
            raise InputError(f"{source}: forward() has no parameter '{unknown[0]}'")
    else:
        items = list(input_shape)
        if items and all(isinstance(d, (int, np.integer)) for d in items):
            items = [items]  # one shape
        free = [str(n.target) for n in placeholders if not n.args]
        if len(items) != len(free):
            raise InputError(f"{source}: forward() takes {len(free)} tensor inputs "
                             f"({', '.join(free) or 'none'}); got {len(items)} shapes")
        shapes = {k: tuple(int(d) for d in v) for k, v in zip(free, items, strict=True)}
    result: list[_Input | None] = []
    for n in placeholders:
        key = str(n.target)
        if key not in shapes:
            if not n.args:  # args holds a default value, if any
                raise InputError(f"{source}: no shape for input '{key}' of forward()")
            result.append(None)
            continue
        want = dtype.get(key) if isinstance(dtype, dict) else dtype
        result.append(_Input(key, shapes[key], want if want is not None else float_dtype))
    return result


def _fake_run(gm: Any, inputs: Sequence[_Input | None], source: str) -> dict[Any, Any]:
    """Run ``gm`` under FakeTensorMode on ``inputs`` (one per placeholder); return each fx node's
    (fake) result. A placeholder without an input runs on its default value."""
    import torch
    import torch.fx
    from torch._subclasses.fake_tensor import FakeTensorMode

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    fed = [i for i in inputs if i is not None]
    if len(fed) == 1:
        on = f"input shape {fed[0].shape}"
    else:
        on = "input shapes " + ", ".join(f"{i.name} {i.shape}" for i in fed)
    # Module types are known before anything runs: reject an unsupported one up front, so the
    # user hears "not supported" rather than whatever the fake run trips over first.
    for n in gm.graph.nodes:
        if n.op == "call_module" and _module_handler(gm.get_submodule(n.target)) is None:
            raise InputError(
                f"{source}: {_describe(gm, n)}: module type "
                f"{type(gm.get_submodule(n.target)).__name__} is not supported by the torch.fx "
                "converter (export the model to ONNX yourself and pass the .onnx file)")
    values: dict[Any, Any] = {}
    failure: list[str] = []
    preserving = _shape_preserving_types()

    class _Run(torch.fx.Interpreter):
        def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
            # BatchNorm and activations keep shape and dtype; under FakeTensorMode BN alone runs a
            # ~40 ms Python decomposition, so they are answered here (BN's channel count checked).
            module = self.fetch_attr(target)
            x = args[0] if args else None
            if type(module) in preserving and isinstance(x, torch.Tensor) and not kwargs \
                    and len(args) == 1:
                features = getattr(module, "num_features", None)
                if features is not None and (x.dim() < 2 or x.shape[1] != features):
                    raise ValueError(f"{type(module).__name__}({features}) got an input of "
                                     f"shape {tuple(x.shape)}")
                return x
            return super().call_module(target, args, kwargs)

        def run_node(self, n: Any) -> Any:
            try:
                result = super().run_node(n)
            except InputError:
                raise
            except Exception as exc:
                # Interpreter.run appends the fx graph to whatever escapes; keep the clean line.
                failure.append(f"{source}: {_describe(gm, n)} fails on {on}: "
                               f"{_first_line(exc)}")
                raise
            values[n] = result
            return result

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    # A meta kernel that rejects a shape is logged by torch (a traceback on stderr) before it
    # raises; the failure reaches the user as one InputError line instead.
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    level = fake_log.level
    fake_log.setLevel(logging.CRITICAL)
    try:
        with mode, torch.no_grad():
            args = [torch.empty(i.shape, dtype=i.dtype) if i is not None else n.args[0]
                    for i, n in zip(inputs, placeholders, strict=True)]
            _Run(gm).run(*args)
    except Exception as exc:
        if failure:
            raise InputError(failure[0]) from exc
        raise
    finally:
        fake_log.setLevel(level)
    return values


def _shape_preserving_types() -> set[type]:
    import torch.nn as nn

    return {
        nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Identity, nn.Dropout, nn.Dropout2d,
        nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Mish, nn.SiLU,
        nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.GELU, nn.Softplus,
    }


def _describe(gm: Any, node: Any) -> str:
    """How an fx node reads in an error message: the module path and type, or the function.

    Module calls are named by their module path -- the name the ONNX node gets and the one the
    user's code uses -- rather than fx's mangled node name (``_0`` for module ``0``).
    """
    if node.op == "call_module":
        return f"module '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    if node.op == "call_method":
        return f"node '{node.name}' (method Tensor.{node.target})"
    if node.op == "call_function":
        target = node.target
        mod = getattr(target, "__module__", None) or ""
        fname = getattr(target, "__name__", str(target))
        if mod in ("_operator", "operator"):
            return f"node '{node.name}' (operator.{fname})"
        what = f"{mod + '.' if mod else ''}{fname}".replace("torch._C._nn.", "torch.")
        return f"node '{node.name}' (function {what})"
    return f"node '{node.name}' ({node.op} '{node.target}')"


@dataclass(frozen=True)
class _T:
    """A tensor in the ONNX graph being built."""

    name: str
    shape: tuple[int, ...]
    dtype: Any  # torch dtype

    @property
    def rank(self) -> int:
        return len(self.shape)


def _onnx_dtype(dtype: Any) -> int:
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
    return helper.tensor_dtype_to_np_dtype(_onnx_dtype(dtype))


def _pair(v: Any, n: int) -> list[int]:
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return [int(v)] * n


class _Unsupported(Exception):
    """Raised inside a handler; turned into an InputError naming the node."""


def _bind(args: tuple, kwargs: dict, names: Sequence[str], defaults: dict[str, Any]
          ) -> dict[str, Any]:
    """Bind positional and keyword arguments of a traced call to parameter names."""
    bound = dict(defaults)
    for key, value in zip(names, args, strict=False):
        bound[key] = value
    bound.update(kwargs)
    return bound


class _Emitter:
    """Walks the traced graph with its fake values and writes ONNX nodes and initializers."""

    def __init__(self, gm: Any, values: dict[Any, Any], *, opset: int, mish: str,
                 source: str, inputs: Sequence[_Input | None]) -> None:
        self.gm = gm
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.feeds = dict(zip(placeholders, inputs, strict=True))
        self.values = values
        self.opset = opset
        self.mish = mish if opset >= 18 else "decomposed"
        self.source = source
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.env: dict[Any, Any] = {}
        self.used: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.params: dict[int, str] = {}  # id(tensor) -> initializer name (shared weights once)
        self.tensor_of: dict[str, Any] = {}  # initializer name -> the torch tensor it holds
        self.expected: dict[str, tuple[int, ...]] = {}
        self.fx_node: Any = None

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

    def scalar(self, value: float, like: _T, name: str) -> str:
        return self.const(name, np.array(value, dtype=_np_dtype(like.dtype)))

    def out_t(self, name: str, node: Any = None) -> _T:
        """The _T for tensor ``name`` with the fake value of the fx node being converted."""
        fake = self.values[node if node is not None else self.fx_node]
        t = _T(name, tuple(int(d) for d in fake.shape), fake.dtype)
        self.expected[name] = t.shape
        return t

    # ------------------------------------------------------------------ driver
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
                t = _T(name, tuple(int(d) for d in fake.shape), fake.dtype)
                self.expected[name] = t.shape
                self.inputs.append(helper.make_tensor_value_info(
                    name, _onnx_dtype(t.dtype), list(t.shape)))
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
            except _Unsupported as exc:
                raise InputError(
                    f"{self.source}: {_describe(self.gm, node)}: {exc}; "
                    "the torch.fx converter cannot express it in ONNX (export the model to "
                    "ONNX yourself and pass the .onnx file)") from None
        return helper.make_graph(self.nodes, graph_name, self.inputs, outputs, self.initializers)

    def _outputs(self, value: Any) -> list[onnx.ValueInfoProto]:
        from torch.utils._pytree import tree_leaves

        leaves = [v for v in tree_leaves(value, is_leaf=lambda v: isinstance(v, _T))]
        tensors = [v for v in leaves if isinstance(v, _T)]
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
            infos.append(helper.make_tensor_value_info(name, _onnx_dtype(t.dtype), list(t.shape)))
        return infos

    def _convert_node(self, node: Any, args: tuple, kwargs: dict) -> Any:
        import torch

        if node.op == "get_attr":
            attr = self.gm
            for part in str(node.target).split("."):
                attr = getattr(attr, part)
            if not isinstance(attr, torch.Tensor):
                raise _Unsupported(f"attribute of type {type(attr).__name__}")
            name = self.param(attr, str(node.target))
            return _T(name, tuple(attr.shape), attr.dtype)
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            handler = _module_handler(module)
            if handler is None:
                raise _Unsupported(f"module type {type(module).__name__} is not supported")
            return handler(self, node, module, args, kwargs)
        canon = _canonical(node)
        if canon is None:
            raise _Unsupported("not a supported operation")
        if not any(isinstance(a, _T) for a in _flat(args) + _flat(list(kwargs.values()))):
            return self._constant_call(node)
        return _FUNCTION_HANDLERS[canon](self, node, canon, args, kwargs)

    def _constant_call(self, node: Any) -> _T:
        """A tensor built from Python values only (torch.arange(...), ...): run it for real."""
        import torch
        from torch.fx.node import map_arg

        def real(n: Any) -> Any:
            value = self.env[n]
            if isinstance(value, _T):
                raise _Unsupported("depends on a tensor")
            return value

        args = map_arg(node.args, real)
        kwargs = map_arg(node.kwargs, real)
        if node.op == "call_method":
            raise _Unsupported("method call on a constant")
        with torch.no_grad():
            value = node.target(*args, **kwargs)
        name = self.param(value, self.base_name(node, "constant"))
        return _T(name, tuple(value.shape), value.dtype)

    # ------------------------------------------------------------------ shared op builders
    def unary(self, op: str, x: _T, name: str, **attrs: Any) -> _T:
        out = self.emit(op, [x.name], name, **attrs)[0]
        return self.out_t(out)

    def mish_op(self, x: _T, name: str) -> _T:
        if self.mish == "op":
            return self.unary("Mish", x, name)
        sp = self.emit("Softplus", [x.name], self.unique(f"{name}/softplus"))[0]
        th = self.emit("Tanh", [sp], self.unique(f"{name}/tanh"))[0]
        out = self.emit("Mul", [x.name, th], name)[0]
        return self.out_t(out)

    def silu(self, x: _T, name: str) -> _T:
        sig = self.emit("Sigmoid", [x.name], self.unique(f"{name}/sigmoid"))[0]
        return self.out_t(self.emit("Mul", [x.name, sig], name)[0])

    def hardswish(self, x: _T, name: str) -> _T:
        if self.opset >= 14:
            return self.unary("HardSwish", x, name)
        hs = self.emit("HardSigmoid", [x.name], self.unique(f"{name}/hardsigmoid"),
                       alpha=1.0 / 6.0, beta=0.5)[0]
        return self.out_t(self.emit("Mul", [x.name, hs], name)[0])

    def gelu(self, x: _T, name: str, approximate: str) -> _T:
        if self.opset >= 20:
            return self.unary("Gelu", x, name, approximate=approximate)
        if approximate != "none":
            raise _Unsupported(f"GELU(approximate='{approximate}') needs opset 20 or newer")
        # x * 0.5 * (1 + erf(x / sqrt(2)))
        div = self.emit("Div", [x.name, self.scalar(math.sqrt(2.0), x, f"{name}/sqrt2")],
                        self.unique(f"{name}/div"))[0]
        erf = self.emit("Erf", [div], self.unique(f"{name}/erf"))[0]
        one = self.emit("Add", [erf, self.scalar(1.0, x, f"{name}/one")],
                        self.unique(f"{name}/add"))[0]
        half = self.emit("Mul", [x.name, self.scalar(0.5, x, f"{name}/half")],
                         self.unique(f"{name}/half_x"))[0]
        return self.out_t(self.emit("Mul", [half, one], name)[0])

    def clip(self, x: _T, name: str, lo: float | None, hi: float | None) -> _T:
        ins = [x.name,
               self.scalar(lo, x, f"{name}/min") if lo is not None else "",
               self.scalar(hi, x, f"{name}/max") if hi is not None else ""]
        while ins and ins[-1] == "":
            ins.pop()
        return self.out_t(self.emit("Clip", ins, name)[0])

    def reshape(self, x: _T, name: str) -> _T:
        shape = self.out_t(name).shape
        target = self.const(f"{name}/shape", np.array(shape, dtype=np.int64))
        return self.out_t(self.emit("Reshape", [x.name, target], name)[0])

    def conv(self, x: _T, name: str, weight: str, bias: str | None, *, kernel: Sequence[int],
             stride: Any, padding: Any, dilation: Any, groups: int,
             transposed: bool = False, output_padding: Any = 0) -> _T:
        nd = len(kernel)
        strides, dilations = _pair(stride, nd), _pair(dilation, nd)
        if isinstance(padding, str):
            if padding == "valid":
                pads = [0] * (2 * nd)
            elif padding == "same":
                total = [d * (k - 1) for d, k in zip(dilations, kernel, strict=True)]
                pads = [t // 2 for t in total] + [t - t // 2 for t in total]
            else:
                raise _Unsupported(f"padding='{padding}'")
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

    def linear(self, x: _T, name: str, weight: Any, bias: Any, wname: str) -> _T:
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

    def pool(self, op: str, x: _T, name: str, *, kernel: Any, stride: Any, padding: Any,
             dilation: Any = 1, ceil_mode: bool = False,
             count_include_pad: bool | None = None) -> _T:
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

    def adaptive_pool(self, op: str, x: _T, name: str, output_size: Any) -> _T:
        nd = x.rank - 2
        sizes = list(output_size) if isinstance(output_size, (list, tuple)) else [output_size] * nd
        sizes = [x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes)]
        if all(s == 1 for s in sizes):
            return self.unary("GlobalAveragePool" if op == "avg" else "GlobalMaxPool", x, name)
        spatial = x.shape[2:]
        if any(i % o for i, o in zip(spatial, sizes, strict=True)):
            raise _Unsupported(f"adaptive pooling from {tuple(spatial)} to {tuple(sizes)} "
                               "(not an integer ratio)")
        k = [i // o for i, o in zip(spatial, sizes, strict=True)]
        return self.pool("AveragePool" if op == "avg" else "MaxPool", x, name, kernel=k,
                         stride=k, padding=0)

    def resize(self, x: _T, name: str, *, size: Any, scale_factor: Any, mode: str,
               align_corners: bool | None) -> _T:
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
            raise _Unsupported(f"interpolation mode '{mode}'")
        if size is not None:
            sizes = [x.shape[0], x.shape[1], *_pair(size, nd)]
            ins = [x.name, "", "", self.const(f"{name}/sizes", np.array(sizes, dtype=np.int64))]
        else:
            sf = (list(scale_factor) if isinstance(scale_factor, (list, tuple))
                  else [scale_factor] * nd)
            scales = np.array([1.0, 1.0, *[float(s) for s in sf]], dtype=np.float32)
            ins = [x.name, "", self.const(f"{name}/scales", scales)]
        return self.out_t(self.emit("Resize", ins, name, **attrs)[0])

    def binary(self, op: str, a: Any, b: Any, name: str) -> _T:
        # PyTorch promotes mixed operands (an int64 mask times a float tensor, int / int -> float);
        # ONNX takes one type, so an operand of another dtype than the result is Cast to it.
        fake = self.values[self.fx_node]
        like = _T("", (), fake.dtype)
        names = []
        for side, v in (("a", a), ("b", b)):
            if not isinstance(v, _T):
                names.append(self.scalar(v, like, f"{name}/{side}"))
            elif v.dtype != fake.dtype:
                names.append(self.emit("Cast", [v.name], self.unique(f"{name}/cast_{side}"),
                                       to=_onnx_dtype(fake.dtype))[0])
            else:
                names.append(v.name)
        return self.out_t(self.emit(op, names, name)[0])

    def axis(self, dim: int, rank: int) -> int:
        return int(dim) + rank if int(dim) < 0 else int(dim)

    def split(self, x: _T, name: str, dim: int) -> tuple[_T, ...]:
        fakes = self.values[self.fx_node]
        axis = self.axis(dim, x.rank)
        sizes = [int(f.shape[axis]) for f in fakes]
        split = self.const(f"{name}/split", np.array(sizes, dtype=np.int64))
        outs = self.emit("Split", [x.name, split], name, outputs=len(sizes), axis=axis)
        result = []
        for out, fake in zip(outs, fakes, strict=True):
            t = _T(out, tuple(int(d) for d in fake.shape), fake.dtype)
            self.expected[out] = t.shape
            result.append(t)
        return tuple(result)

    def reduce(self, op: str, x: _T, name: str, dims: Any, keepdim: bool) -> _T:
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
        if not isinstance(x, _T):
            raise _Unsupported(f"indexing a {type(x).__name__}")
        items = list(index) if isinstance(index, tuple) else [index]
        if any(isinstance(i, (_T, list)) for i in items):
            raise _Unsupported("indexing with lists or tensors")
        # x[:, None] inserts a size-1 axis: index without the Nones, then one Reshape to the
        # result's shape (the elements keep their order, so a Reshape is exact).
        new_axes = any(i is None for i in items)
        items = [i for i in items if i is not None]
        if sum(i is Ellipsis for i in items) > 1:
            raise _Unsupported("more than one Ellipsis")
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
                    raise _Unsupported("a slice with a non-positive step")
                if (start, stop, step) != (0, dim, 1):
                    starts.append(start)
                    ends.append(stop)
                    axes.append(axis)
                    steps.append(step)
            elif isinstance(item, int):
                gathers.append((axis, item))
            else:
                raise _Unsupported(f"index of type {type(item).__name__}")
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
            return self.reshape(_T(cur, (), x.dtype), name)
        if cur == x.name:
            return x  # x[:] -- no-op
        return self.out_t(cur)


# ----------------------------------------------------------------------------------- handlers
def _flat(values: Any) -> list[Any]:
    out = []
    for v in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(v, (list, tuple)):
            out.extend(_flat(v))
        else:
            out.append(v)
    return out


def _first_tensor(args: tuple, kwargs: dict, key: str = "input") -> _T:
    x = args[0] if args else kwargs.get(key, kwargs.get("x"))
    if not isinstance(x, _T):
        raise _Unsupported("its first argument is not a tensor")
    return x


def _module_handler(module: Any) -> Callable[..., Any] | None:
    for cls, handler in _module_handlers():
        if type(module) is cls:
            return handler
    return None


def _m_conv(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    if m.padding_mode != "zeros":
        raise _Unsupported(f"padding_mode='{m.padding_mode}'")
    x = _first_tensor(args, kwargs)
    w = e.param(m.weight, f"{node.target}.weight")
    b = e.param(m.bias, f"{node.target}.bias") if m.bias is not None else None
    transposed = bool(getattr(m, "transposed", False))
    if transposed and len(args) > 1:
        raise _Unsupported("ConvTranspose with an explicit output_size")
    return e.conv(x, e.unique(str(node.target)), w, b, kernel=m.kernel_size, stride=m.stride,
                  padding=m.padding, dilation=m.dilation, groups=m.groups,
                  transposed=transposed, output_padding=getattr(m, "output_padding", 0))


def _m_batchnorm(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    import torch

    if m.running_mean is None or m.running_var is None:
        raise _Unsupported("BatchNorm without running statistics (track_running_stats=False) "
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


def _m_layernorm(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    import torch

    if e.opset < 17:
        raise _Unsupported("LayerNorm needs opset 17 or newer")
    x = _first_tensor(args, kwargs)
    path = str(node.target)
    shape = tuple(m.normalized_shape)
    w = m.weight if m.weight is not None else torch.ones(shape)
    b = m.bias if getattr(m, "bias", None) is not None else torch.zeros(shape)
    ins = [x.name, e.param(w, f"{path}.weight"), e.param(b, f"{path}.bias")]
    return e.out_t(e.emit("LayerNormalization", ins, e.unique(path), axis=-len(shape),
                          epsilon=float(m.eps))[0])


def _m_embedding(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    if m.max_norm is not None:
        raise _Unsupported("Embedding with max_norm (it renormalises its table as it runs)")
    ids = _first_tensor(args, kwargs)
    table = e.param(m.weight, f"{node.target}.weight")
    return e.out_t(e.emit("Gather", [table, ids.name], e.unique(str(node.target)), axis=0)[0])


def _m_linear(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    x = _first_tensor(args, kwargs)
    return e.linear(x, e.unique(str(node.target)), m.weight, m.bias, str(node.target))


def _m_activation(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
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
    raise _Unsupported(f"activation {type(m).__name__}")


def _softplus(e: _Emitter, x: _T, name: str, beta: float) -> _T:
    # ONNX Softplus has no threshold: PyTorch returns x above 20, where log1p(exp(x)) == x in
    # float32 anyway, so the two agree to the last bit there.
    if float(beta) != 1.0:
        raise _Unsupported(f"Softplus(beta={beta})")
    return e.unary("Softplus", x, name)


def _m_identity(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    return _first_tensor(args, kwargs)  # Identity / Dropout at inference: no node at all


def _m_flatten(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    x = _first_tensor(args, kwargs)
    return _flatten(e, x, e.unique(str(node.target)), m.start_dim, m.end_dim)


def _flatten(e: _Emitter, x: _T, name: str, start: int, end: int) -> _T:
    start, end = e.axis(start, max(x.rank, 1)), e.axis(end, max(x.rank, 1))
    if start == 1 and end == x.rank - 1:
        return e.unary("Flatten", x, name, axis=1)  # ONNX Flatten is exactly this case
    return e.reshape(x, name)


def _m_maxpool(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    if m.return_indices:
        raise _Unsupported("MaxPool with return_indices=True")
    x = _first_tensor(args, kwargs)
    return e.pool("MaxPool", x, e.unique(str(node.target)), kernel=m.kernel_size,
                  stride=m.stride, padding=m.padding, dilation=m.dilation,
                  ceil_mode=m.ceil_mode)


def _m_avgpool(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    if getattr(m, "divisor_override", None):
        raise _Unsupported("AvgPool with divisor_override")
    x = _first_tensor(args, kwargs)
    return e.pool("AveragePool", x, e.unique(str(node.target)), kernel=m.kernel_size,
                  stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                  count_include_pad=m.count_include_pad)


def _m_adaptive_avg(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    return e.adaptive_pool("avg", _first_tensor(args, kwargs), e.unique(str(node.target)),
                           m.output_size)


def _m_adaptive_max(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    if m.return_indices:
        raise _Unsupported("AdaptiveMaxPool with return_indices=True")
    return e.adaptive_pool("max", _first_tensor(args, kwargs), e.unique(str(node.target)),
                           m.output_size)


def _m_upsample(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    return e.resize(_first_tensor(args, kwargs), e.unique(str(node.target)), size=m.size,
                    scale_factor=m.scale_factor, mode=m.mode, align_corners=m.align_corners)


def _m_pad(e: _Emitter, node: Any, m: Any, args: tuple, kwargs: dict) -> _T:
    return _pad(e, _first_tensor(args, kwargs), e.unique(str(node.target)), m.padding,
                "constant", float(getattr(m, "value", 0.0)))


def _pad(e: _Emitter, x: _T, name: str, pad: Sequence[int], mode: str, value: float | None
         ) -> _T:
    if mode not in ("constant", "reflect", "replicate"):
        raise _Unsupported(f"padding mode '{mode}'")
    pad = list(pad)
    if any(p < 0 for p in pad):
        raise _Unsupported("negative padding (cropping)")
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


def _canonical(node: Any) -> str | None:
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


def _f_binary(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    a = args[0] if args else kwargs.get("input")
    b = args[1] if len(args) > 1 else kwargs.get("other")
    if kwargs.get("rounding_mode") is not None:
        raise _Unsupported(f"division with rounding_mode='{kwargs['rounding_mode']}'")
    name = e.unique(e.base_name(node, canon))
    alpha = kwargs.get("alpha", 1)
    if alpha != 1:
        if not isinstance(b, _T):
            b = b * alpha
        else:
            b = e.binary("Mul", b, alpha, e.unique(f"{name}/alpha"))
    op = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "matmul": "MatMul"}[canon]
    return e.binary(op, a, b, name)


def _f_neg(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    return e.unary("Neg", _first_tensor(args, kwargs), e.unique(e.base_name(node, canon)))


def _f_cat(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("tensors", "dim"), {"dim": 0})
    tensors = b["tensors"]
    if not all(isinstance(t, _T) for t in tensors):
        raise _Unsupported("concatenating non-tensors")
    rank = tensors[0].rank
    name = e.unique(e.base_name(node, canon))
    return e.out_t(e.emit("Concat", [t.name for t in tensors], name,
                          axis=e.axis(b["dim"], rank))[0])


def _f_chunk(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> tuple[_T, ...]:
    x = _first_tensor(args, kwargs)
    if canon == "chunk":
        b = _bind(args, kwargs, ("input", "chunks", "dim"), {"dim": 0})
    else:
        b = _bind(args, kwargs, ("input", "split_size_or_sections", "dim"), {"dim": 0})
    return e.split(x, e.unique(e.base_name(node, canon)), b["dim"])


def _f_getitem(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> Any:
    x, index = args[0], args[1]
    if isinstance(x, (tuple, list)):
        return x[index]
    return e.getitem(x, index, e.unique(e.base_name(node, "slice")))


def _f_flatten(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    x = _first_tensor(args, kwargs)
    return _flatten(e, x, e.unique(e.base_name(node, canon)), b["start_dim"], b["end_dim"])


def _f_reshape(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    x = _first_tensor(args, kwargs)
    return e.reshape(x, e.unique(e.base_name(node, canon)))


def _f_permute(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
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


def _f_identity(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    return _first_tensor(args, kwargs)


def _f_activation(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
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
            raise _Unsupported("softmax with a dtype")
        return e.unary("Softmax", x, name, axis=e.axis(b["dim"], x.rank))
    if canon == "clamp":
        b = _bind(args, kwargs, ("input", "min", "max"), {"min": None, "max": None})
        if isinstance(b["min"], _T) or isinstance(b["max"], _T):
            raise _Unsupported("clamp with tensor bounds")
        return e.clip(x, name, b["min"], b["max"])
    raise _Unsupported(f"'{canon}'")


def _f_pool(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    x = _first_tensor(args, kwargs)
    name = e.unique(e.base_name(node, canon))
    if canon == "max_pool2d":
        b = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "dilation",
                                 "ceil_mode", "return_indices"),
                  {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                   "return_indices": False})
        if b["return_indices"]:
            raise _Unsupported("max_pool2d with return_indices=True")
        return e.pool("MaxPool", x, name, kernel=b["kernel_size"], stride=b["stride"],
                      padding=b["padding"], dilation=b["dilation"], ceil_mode=b["ceil_mode"])
    if canon == "avg_pool2d":
        b = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad", "divisor_override"),
                  {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                   "divisor_override": None})
        if b["divisor_override"]:
            raise _Unsupported("avg_pool2d with divisor_override")
        return e.pool("AveragePool", x, name, kernel=b["kernel_size"], stride=b["stride"],
                      padding=b["padding"], ceil_mode=b["ceil_mode"],
                      count_include_pad=b["count_include_pad"])
    b = _bind(args, kwargs, ("input", "output_size"), {})
    return e.adaptive_pool("avg", x, name, b["output_size"])


def _f_interpolate(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "size", "scale_factor", "mode", "align_corners",
                             "recompute_scale_factor", "antialias"),
              {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
               "recompute_scale_factor": None, "antialias": False})
    if b["antialias"]:
        raise _Unsupported("interpolate with antialias=True")
    x = _first_tensor(args, kwargs)
    size = b["size"]
    if b["recompute_scale_factor"] and size is None:
        size = [int(d) for d in e.values[node].shape[2:]]  # the scale is recomputed from sizes
    return e.resize(x, e.unique(e.base_name(node, canon)), size=size,
                    scale_factor=b["scale_factor"], mode=b["mode"],
                    align_corners=b["align_corners"])


def _f_pad(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
    return _pad(e, _first_tensor(args, kwargs), e.unique(e.base_name(node, canon)), b["pad"],
                b["mode"], b["value"])


def _weight_tensor(e: _Emitter, value: Any, what: str) -> Any:
    """The real torch tensor behind a weight argument (must come from a parameter / buffer)."""
    if not isinstance(value, _T):
        raise _Unsupported(f"{what} is not a tensor")
    tensor = e.tensor_of.get(value.name)
    if tensor is None:
        raise _Unsupported(f"{what} is computed in forward(), not a parameter")
    return tensor


def _f_linear(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "weight", "bias"), {"bias": None})
    x = _first_tensor(args, kwargs)
    weight = _weight_tensor(e, b["weight"], "the weight")
    bias = _weight_tensor(e, b["bias"], "the bias") if b["bias"] is not None else None
    name = e.unique(e.base_name(node, canon))
    return e.linear(x, name, weight, bias, b["weight"].name.rsplit(".", 1)[0])


def _f_embedding(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "weight", "padding_idx", "max_norm"),
              {"padding_idx": None, "max_norm": None})
    if b["max_norm"] is not None:
        raise _Unsupported("embedding with max_norm (it renormalises its table as it runs)")
    ids = _first_tensor(args, kwargs)
    table = _weight_tensor(e, b["weight"], "the table")
    name = e.unique(e.base_name(node, canon))
    return e.out_t(e.emit("Gather", [e.param(table, b["weight"].name), ids.name], name,
                          axis=0)[0])


def _f_conv2d(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation",
                             "groups"),
              {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    x = _first_tensor(args, kwargs)
    w = b["weight"]
    if not isinstance(w, _T):
        raise _Unsupported("the weight is not a tensor")
    bias = b["bias"].name if isinstance(b["bias"], _T) else None
    return e.conv(x, e.unique(e.base_name(node, canon)), w.name, bias, kernel=w.shape[2:],
                  stride=b["stride"], padding=b["padding"], dilation=b["dilation"],
                  groups=b["groups"])


def _f_reduce(e: _Emitter, node: Any, canon: str, args: tuple, kwargs: dict) -> _T:
    b = _bind(args, kwargs, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
    if b.get("dtype") is not None:
        raise _Unsupported(f"{canon} with a dtype")
    x = _first_tensor(args, kwargs)
    op = "ReduceMean" if canon == "mean" else "ReduceSum"
    return e.reduce(op, x, e.unique(e.base_name(node, canon)), b["dim"], b["keepdim"])


_FUNCTION_HANDLERS: dict[str, Callable[..., Any]] = {
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
