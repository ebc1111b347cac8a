"""Front doors: ONNX files, PyTorch modules (torch.fx) and built-in zoo models -> one graph form.

:func:`capture` is the single entry point; every door returns a :class:`Captured` whose graph has a
concrete shape on every tensor, with the requested batch and image size applied.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from tilec.capture.onnx_file import capture_onnx, parse_image_size, parse_input_shapes
from tilec.capture.types import Captured
from tilec.errors import InputError

__all__ = [
    "Captured", "capture", "capture_onnx", "parse_image_size", "parse_input_shapes", "resolve_kind",
]


def resolve_kind(model: Any) -> str:
    """Which door ``model`` goes through: "module", "onnx", "python" or "zoo".

    A path that exists (or ends in .onnx) is a file; ``file.py:factory`` is PyTorch; anything else
    must be a built-in model name. A miss says which of these it looked like.
    """
    if hasattr(model, "forward") and hasattr(model, "named_modules"):
        return "module"
    text = str(model)
    path = Path(text)
    if text.endswith(".py") or re.search(r"\.py:[A-Za-z_][\w.]*$", text):
        return "python"
    if text.lower().endswith(".onnx") or path.exists():
        return "onnx"
    from tilec import zoo

    names = list(zoo.names())
    if text in names:
        return "zoo"
    if os.sep in text or "/" in text or path.suffix:
        raise InputError(f"{text}: no such file")
    close = difflib.get_close_matches(text.lower(), names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise InputError(f"{text}: not a file and not a built-in model ({hint}built-in: "
                     f"{', '.join(names)})")


def capture(model: Any, *, batch: int | None = None,
            image_size: tuple[int, int] | str | int | None = None,
            input_shape: Any = None,
            name: str | None = None, host_ops: str = "auto") -> Captured:
    """Capture ``model`` -- a path to .onnx, ``file.py:factory``, a zoo name or an ``nn.Module``.

    ``batch`` and ``image_size`` override the graph inputs before shape inference. ``input_shape``
    gives whole input shapes, e.g. ``(1, 3, 896, 896)`` or, for several inputs,
    ``"a=1,3,64,64;b=1,10"`` (by name) or, for a PyTorch module, also ``"1,3,64,64;1,10"`` (by
    position in forward's order), ``[(1, 3, 64, 64), (1, 10)]``, ``{"a": (1, 3, 64, 64), ...}``
    and ``"ids=1,128:int64"`` for an integer input (see :func:`tilec.capture.fx.capture_module`);
    ``batch`` / ``image_size`` then override dimension 0 of every input of rank 2 or more and
    H, W of every rank-4 input. ``host_ops`` ("auto" | "none"): whether ops the chip cannot run
    at an ONNX file's head or tail go to the host (:mod:`tilec.capture.host`).
    """
    if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch <= 0):
        raise InputError(f"--batch: must be a positive integer, got {batch}")
    kind = resolve_kind(model)
    if kind == "onnx":
        return capture_onnx(model, batch=batch, image_size=image_size, input_shape=input_shape,
                            name=name, host_ops=host_ops)
    if kind == "zoo":
        from tilec import zoo

        if input_shape is not None:
            raise InputError(f"--input-shape: {model} is a built-in model; set its shape with "
                             "--batch and --image-size")
        spec = zoo.spec(str(model))
        hw = parse_image_size(image_size) or (spec.default_image_size, spec.default_image_size)
        if spec.stride and any(s % spec.stride for s in hw):
            lo = max(spec.stride, hw[0] // spec.stride * spec.stride)
            hi = -(-hw[0] // spec.stride) * spec.stride
            raise InputError(
                f"{model}: image size {hw[0]}x{hw[1]} is not a multiple of the network's stride "
                f"{spec.stride}; try {lo} or {hi}"
            )
        path = zoo.export(str(model), image_size=hw, batch=batch or 1)
        return capture_onnx(path, name=str(model), stride=spec.stride, source=str(model))
    from tilec.capture import fx

    if kind == "python":
        module = fx.load_factory(str(model))
        label = str(model)
    else:
        module, label = model, name or type(model).__name__
    return fx.capture_module(module, input_shape=input_shape, batch=batch, image_size=image_size,
                             name=name or label, source=label)


class _CallableModule(ModuleType):
    """Importing this package rebinds the name ``tilec.capture`` from the function of
    ``tilec/__init__.py`` to the package itself; calling the package still captures, so the
    documented ``tilec.capture(model, ...)`` works whatever was imported first."""

    def __call__(self, model: Any, **kwargs: Any) -> Captured:
        return capture(model, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
