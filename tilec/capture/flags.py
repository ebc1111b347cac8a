"""The shape flags, parsed: ``--image-size`` and ``--input-shape`` in every form they take.

Shared by the ONNX and torch.fx front doors (and the CLI's argparse types); kept apart from
:mod:`tilec.capture.onnx_file` because parsing what the user typed has nothing to do with reading a
model file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from tilec.errors import InputError


def parse_image_size(text: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"896"`` -> (896, 896); ``"640x480"`` -> (640, 480) as (H, W); a pair passes through."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        if len(text) != 2:
            raise InputError(f"--image-size: expected (H, W), got {text!r}")
        h, w = (int(v) for v in text)
    elif isinstance(text, (int, np.integer)):
        h = w = int(text)
    else:
        parts = str(text).strip().lower().replace("×", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise InputError(f"--image-size: '{text}' is not a size (use S or HxW, e.g. 896 or "
                             "640x480)") from None
        if len(nums) == 1:
            h = w = nums[0]
        elif len(nums) == 2:
            h, w = nums
        else:
            raise InputError(f"--image-size: '{text}' is not a size (use S or HxW, e.g. 896 or "
                             "640x480)")
    if h <= 0 or w <= 0:
        raise InputError(f"--image-size: must be positive, got {text}")
    return h, w


INPUT_DTYPES: dict[str, int] = {
    "float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
    "bfloat16": onnx.TensorProto.BFLOAT16, "float64": onnx.TensorProto.DOUBLE,
    "int64": onnx.TensorProto.INT64, "int32": onnx.TensorProto.INT32,
    "int16": onnx.TensorProto.INT16, "int8": onnx.TensorProto.INT8,
    "uint8": onnx.TensorProto.UINT8, "bool": onnx.TensorProto.BOOL,
}
"""The dtypes an ``--input-shape`` entry may name after its dimensions (``ids=1,128:int64``),
spelled as numpy and PyTorch spell them. Only the torch.fx door uses them: an ONNX file declares
its inputs' dtypes itself."""

_SHAPE_HELP = "use 1,3,640,640, NAME=1,3,640,640;NAME2=1,10 or, for a PyTorch module, 1,128:int64"


@dataclass(frozen=True)
class InputSpec:
    """One entry of ``--input-shape``: which input, its dimensions, and optionally its dtype.

    ``name`` is None for an entry given by position (``1,3,64,64;1,10``); ``dtype`` is a key of
    :data:`INPUT_DTYPES`, or None for "the model's own" (an ONNX file's declaration, a PyTorch
    module's parameter dtype).
    """

    name: str | None
    dims: tuple[int, ...]
    dtype: str | None = None


def dtype_name(value: Any, where: str = "--input-shape") -> str:
    """``"int64"``, ``torch.int64``, ``np.int64`` or ``np.dtype("int64")`` -> ``"int64"``."""
    if isinstance(value, str):
        text = value
    else:
        try:  # numpy dtypes and scalar types; a torch dtype is refused by numpy, prints as torch.X
            text = np.dtype(value).name
        except TypeError:
            text = str(value)
    text = text.strip().lower().removeprefix("torch.")
    if text not in INPUT_DTYPES:
        raise InputError(f"{where}: '{value}' is not a dtype tilec knows (use one of "
                         f"{', '.join(INPUT_DTYPES)})")
    return text


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_dtype_like(value: Any) -> bool:
    """A dtype as a Python caller states one: a name, a torch dtype or a numpy dtype/type."""
    if isinstance(value, str):
        return value.strip().lower().removeprefix("torch.") in INPUT_DTYPES
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return True
    return type(value).__module__ == "torch" and type(value).__name__ == "dtype"


def _spec_from_text(part: str, *, named: bool) -> InputSpec:
    """One ``;``-separated part: ``[NAME=]d0,d1,...[:dtype]``."""
    text = part.strip()
    name, _, rest = text.rpartition("=") if named else ("", "", text)
    dims_text, colon, dtype_text = rest.rpartition(":")
    if not colon:
        dims_text, dtype_text = rest, ""
    dtype = dtype_name(dtype_text, f"--input-shape: '{text}'") if colon else None
    # one separator (",", "x", "×", blanks) between numbers; a stray one is a typo
    items = re.split(r"\s*[,x×]\s*|\s+", dims_text.strip().lower())
    try:
        dims = tuple(int(d) for d in items)
    except ValueError:
        raise InputError(f"--input-shape: '{text}' is not a shape ({_SHAPE_HELP})") from None
    if not dims or any(d <= 0 for d in dims):
        raise InputError(f"--input-shape: '{text}' needs positive dimensions")
    return InputSpec(name.strip() or None, dims, dtype)


def _spec_from_value(name: str | None, value: Any) -> InputSpec:
    """A Python shape: ``(1, 3, 64, 64)``, ``"1,128:int64"`` or ``((1, 128), torch.int64)``."""
    if isinstance(value, str):
        spec = _spec_from_text(value, named=False)
        return InputSpec(name, spec.dims, spec.dtype)
    dtype = None
    if (isinstance(value, (tuple, list)) and len(value) == 2 and _is_dtype_like(value[1])
            and isinstance(value[0], (tuple, list))):
        value, dtype = value[0], dtype_name(value[1])
    try:
        items = list(value)
    except TypeError:
        items = [value]
    if not items or not all(_is_int(d) for d in items):
        what = f"input '{name}': " if name else ""
        raise InputError(f"--input-shape: {what}{value!r} is not a shape of integers")
    dims = tuple(int(d) for d in items)
    if any(d <= 0 for d in dims):
        raise InputError(f"--input-shape: every dimension must be positive, got {value!r}")
    return InputSpec(name, dims, dtype)


def parse_input_specs(value: Any) -> list[InputSpec] | None:
    """``--input-shape`` in every form it takes; entries in the order given.

    * text: ``"1,3,640,640"`` (the only input), ``"a=1,3,64,64;b=1,10"`` (by name),
      ``"1,3,64,64;1,10"`` (by position), each entry optionally ending in ``:dtype``
      (``ids=1,128:int64``, see :data:`INPUT_DTYPES`); ``x`` works as a separator too;
    * Python: one shape ``(1, 3, 64, 64)``; a sequence of shapes (by position); a dict
      ``{name: shape}``; wherever a shape goes, ``"1,128:int64"`` or ``((1, 128), torch.int64)``
      states a dtype as well.

    Names are all given or none: a mix is ambiguous and refused, as is a name given twice.
    """
    if value is None:
        return None
    specs: list[InputSpec] = []
    if isinstance(value, dict):
        for key, shape in value.items():
            if not isinstance(key, str) or not key:
                raise InputError(f"--input-shape: input names must be strings, got {key!r}")
            specs.append(_spec_from_value(key, shape))
    elif isinstance(value, str):
        for part in value.split(";"):
            if part.strip():
                specs.append(_spec_from_text(part, named=True))
    elif isinstance(value, (tuple, list)) and value and (
            all(_is_int(d) for d in value)
            or (len(value) == 2 and _is_dtype_like(value[1]))):
        specs.append(_spec_from_value(None, value))  # one shape (with its dtype)
    elif isinstance(value, (tuple, list)) and value:
        specs.extend(_spec_from_value(None, v) for v in value)
    else:
        specs.append(_spec_from_value(None, value))
    if not specs:
        raise InputError(f"--input-shape: '{value}' is empty")
    named = [s.name for s in specs if s.name is not None]
    if named and len(named) != len(specs):
        raise InputError("--input-shape: name every input or none (NAME=dims;NAME2=dims, or "
                         "dims;dims in the order the model takes them)")
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise InputError(f"--input-shape: input '{twice[0]}' given twice")
    return specs


def parse_input_shapes(text: str | tuple[int, ...] | list[int] | dict | None,
                       declared: dict[str, int] | None = None
                       ) -> dict[str | None, tuple[int, ...]] | None:
    """``--input-shape`` for an ONNX file: ``"1,3,640,640"`` (the model's only input) or
    ``"a=1,3,64,64;b=1,10"``.

    Returns {input name (None for "the only input"): dims}. ``x`` works as a separator too. An
    ONNX file fixes its inputs' dtypes, so a ``:dtype`` suffix (the PyTorch door's
    ``ids=1,128:int64``, typed from habit) is taken when it says what the file declares
    (``declared``: input name -> ONNX element type) and refused when it disagrees or names an
    input the file does not have.
    """
    specs = parse_input_specs(text)
    if specs is None:
        return None
    for spec in specs:
        if spec.dtype is None:
            continue
        which = f" (input '{spec.name}')" if spec.name else ""
        name = spec.name if spec.name is not None else (
            next(iter(declared)) if declared and len(declared) == 1 else None)
        have = (declared or {}).get(name) if name is not None else None
        if have is not None and INPUT_DTYPES.get(spec.dtype) == have:
            continue  # says what the file says
        file_says = next((k for k, v in INPUT_DTYPES.items() if v == have), None)
        raise InputError(f"--input-shape: ':{spec.dtype}'{which}: an ONNX file declares each "
                         "input's dtype itself" + (f" (here {file_says})" if file_says else "")
                         + "; only a PyTorch module takes a different one -- drop the suffix")
    if len(specs) > 1 and specs[0].name is None:
        raise InputError("--input-shape: with several shapes, name each input (NAME=dims;...)")
    return {s.name: s.dims for s in specs}


