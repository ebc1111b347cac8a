"""torch.fx tracing and shape propagation, and how fx nodes are named in error messages.

``torch.fx.symbolic_trace`` records the module's graph (leaf ``torch.nn`` modules stay
calls); the traced graph then runs under a ``FakeTensorMode``, so every node gets its output
shape and dtype and nothing is computed. Those fake shapes are also what the ONNX graph is
checked against at the end (:func:`check_against_fake`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tilec.capture.fx.handlers import module_handler
from tilec.capture.types import Captured
from tilec.errors import InputError, InternalError


def first_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception: how the door quotes PyTorch's (or the user's code's)
    error inside its own one-line InputError, without the traceback or fx's graph dump."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__


def trace(module: Any, label: str, concrete_args: dict[str, Any] | None = None) -> Any:
    """``torch.fx.symbolic_trace`` with its failures turned into one :class:`InputError` line."""
    import torch.fx

    try:
        return torch.fx.symbolic_trace(module, concrete_args=concrete_args)
    except Exception as exc:
        raise InputError(f"{label}: torch.fx cannot trace {type(module).__name__} "
                         f"({first_line(exc)}); export it to ONNX and pass the .onnx file "
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


@dataclass(frozen=True)
class GraphInput:
    """A graph input: the placeholder it feeds, its (parameter) name, shape and torch dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: Any


def placeholder_inputs(gm: Any, input_shape: Any, dtype: Any, float_dtype: Any,
                        source: str) -> list[GraphInput | None]:
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
    result: list[GraphInput | None] = []
    for n in placeholders:
        key = str(n.target)
        if key not in shapes:
            if not n.args:  # args holds a default value, if any
                raise InputError(f"{source}: no shape for input '{key}' of forward()")
            result.append(None)
            continue
        want = dtype.get(key) if isinstance(dtype, dict) else dtype
        result.append(GraphInput(key, shapes[key], want if want is not None else float_dtype))
    return result


def fake_run(gm: Any, inputs: Sequence[GraphInput | None], source: str) -> dict[Any, Any]:
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
        if n.op == "call_module" and module_handler(gm.get_submodule(n.target)) is None:
            raise InputError(
                f"{source}: {describe(gm, n)}: module type "
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
                failure.append(f"{source}: {describe(gm, n)} fails on {on}: "
                               f"{first_line(exc)}")
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


def describe(gm: Any, node: Any) -> str:
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
