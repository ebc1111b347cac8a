"""Front doors: ONNX files, PyTorch modules (torch.fx) and built-in zoo models -> one graph form.

:func:`capture` is the single entry point; every door returns a :class:`Captured` whose graph has a
concrete shape on every tensor, with the requested batch and image size applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tilec.capture.onnx_file import capture_onnx, parse_image_size
from tilec.capture.types import Captured
from tilec.errors import InputError

__all__ = ["Captured", "capture", "capture_onnx", "parse_image_size", "resolve_kind"]


def resolve_kind(model: Any) -> str:
    """Which door ``model`` goes through: "module", "onnx", "python" or "zoo"."""
    if hasattr(model, "forward") and hasattr(model, "named_modules"):
        return "module"
    text = str(model)
    path = Path(text)
    if text.endswith(".onnx") or (path.exists() and not text.endswith(".py")):
        return "onnx"
    if ".py:" in text or text.endswith(".py"):
        return "python"
    from tilec import zoo

    if text in zoo.names():
        return "zoo"
    raise InputError(
        f"{text}: not a file and not a built-in model (built-in: {', '.join(zoo.names())})"
    )


def capture(model: Any, *, batch: int | None = None,
            image_size: tuple[int, int] | str | int | None = None,
            input_shape: tuple[int, ...] | str | None = None,
            name: str | None = None) -> Captured:
    """Capture ``model`` -- a path to .onnx, ``file.py:factory``, a zoo name or an ``nn.Module``.

    ``batch`` and ``image_size`` override the graph inputs before shape inference. For a PyTorch
    module (or factory) ``input_shape`` gives the full input shape, e.g. ``(1, 3, 896, 896)``;
    ``batch`` / ``image_size`` then override its parts.
    """
    kind = resolve_kind(model)
    if batch is not None and batch <= 0:
        raise InputError(f"--batch: must be a positive integer, got {batch}")
    if kind == "onnx":
        return capture_onnx(model, batch=batch, image_size=image_size, name=name)
    if kind == "zoo":
        from tilec import zoo

        spec = zoo.spec(str(model))
        hw = parse_image_size(image_size) or (spec.default_image_size, spec.default_image_size)
        if spec.stride and any(s % spec.stride for s in hw):
            ok = max(spec.stride, hw[0] // spec.stride * spec.stride)
            raise InputError(
                f"{model}: image size {hw[0]}x{hw[1]} is not a multiple of the network's stride "
                f"{spec.stride}; try {ok}"
            )
        path = zoo.export(str(model), image_size=hw, batch=batch or 1)
        return capture_onnx(path, name=str(model), stride=spec.stride, source=str(model))
    from tilec.capture import fx

    shape = fx.parse_input_shape(input_shape) if input_shape is not None else None
    if kind == "python":
        module = fx.load_factory(str(model))
        label = str(model)
    else:
        module, label = model, name or type(model).__name__
    return fx.capture_module(module, input_shape=shape, batch=batch, image_size=image_size,
                             name=name or label, source=label)
