"""What the user hands the torch.fx door, checked and bound to ``forward``'s parameters.

``file.py:factory`` is imported and called (:func:`load_factory`); ``--input-shape``,
``--batch`` and ``--image-size`` become one shape and dtype per parameter of ``forward``
(:func:`forward_params`, :func:`bind_inputs`, :func:`resolve_shapes`,
:func:`resolve_dtypes`). Every mistake is one :class:`~tilec.errors.InputError` line naming
the module (or ``file.py:factory``) and the parameter.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilec.capture.fx.tracing import first_line
from tilec.capture.onnx_file import InputSpec, _looks_nhwc
from tilec.errors import InputError


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
        raise InputError(f"{path}:{factory}: the factory raised {first_line(exc)}") from exc
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
        raise InputError(f"{path}: importing it failed: {first_line(exc)}") from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(resolved.parent))
    return module


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


def signature(params: Sequence[Param]) -> str:
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
                         f"({first_line(exc)})") from exc
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
    sig = signature(params)
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


def resolve_shapes(gm: Any, feeds: dict[str, Feed], batch: int | None,
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


def resolve_dtypes(module: Any, gm: Any, params: Sequence[Param],
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


def dtype_text(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")
