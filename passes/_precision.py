"""Precision names and the per-layer precision-map file (``--precision-map FILE``).

The file is TOML, small on purpose::

    # int4 everywhere except the first and last layers -- the usual low-bit recipe
    default = "int4"      # layers nothing else names (else --precision)
    first = "int8"        # layers that read the model input directly (through no other layer)
    last = "int8"         # layers whose output reaches a model output through no other layer

    [layers]              # node-name globs (fnmatch), tried in file order; the first match wins
    "*head*" = "int8"
    "model.0.conv" = "fp16"

Precedence: ``[layers]`` > ``first`` / ``last`` > ``default`` > ``--precision``. A *layer* is an
op with a weight tensor (Conv, fused Conv, ConvTranspose, Gemm, MatMul with a constant operand).
Every glob must match at least one layer -- a typo would otherwise silently quantize the wrong
layers -- and every bad field is an :class:`~tilec.errors.InputError` naming the file and field.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilec.errors import InputError

PRECISIONS = ("fp32", "fp16", "int8", "int4", "int2")
BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4, "int2": 2}
INT_PRECISIONS = ("int8", "int4", "int2")
_KEYS = ("default", "first", "last", "layers")


def check_precision(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in PRECISIONS:
        raise InputError(f"{where}: unknown precision {value!r} (one of {', '.join(PRECISIONS)})")
    return value


@dataclass(frozen=True)
class PrecisionMap:
    """A parsed precision map."""

    path: str
    default: str | None = None
    first: str | None = None
    last: str | None = None
    layers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def resolve(self, layers: list[str], first: set[str], last: set[str],
                fallback: str) -> dict[str, str]:
        """Precision of every layer (``layers`` in topological order)."""
        used = [False] * len(self.layers)
        result: dict[str, str] = {}
        for name in layers:
            chosen = None
            for i, (glob, prec) in enumerate(self.layers):
                if fnmatch.fnmatchcase(name, glob):
                    chosen, used[i] = prec, True
                    break
            if chosen is None and self.first and name in first:
                chosen = self.first
            if chosen is None and self.last and name in last:
                chosen = self.last
            result[name] = chosen or self.default or fallback
        for (glob, _), hit in zip(self.layers, used, strict=True):
            if not hit:
                raise InputError(f"{self.path}: [layers] pattern '{glob}' matches no layer "
                                 f"(layers are named like '{layers[0] if layers else '-'}')")
        return result

    def to_dict(self) -> dict[str, Any]:
        """The map as plain data, for the plan's JSON; :func:`parse` reads it back. ``layers``
        is a list of ``[glob, precision]`` pairs because their order decides the first match."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("default", "first", "last")
                               if getattr(self, k) is not None}
        out["layers"] = [[glob, prec] for glob, prec in self.layers]
        return out


def parse(data: dict[str, Any], label: str) -> PrecisionMap:
    """Validate a precision map given as a dict (the parsed TOML)."""
    for key in data:
        if key not in _KEYS:
            raise InputError(f"{label}: unknown field '{key}' (fields: {', '.join(_KEYS)})")
    values = {k: check_precision(data[k], f"{label}: field '{k}'")
              for k in ("default", "first", "last") if k in data}
    layers = data.get("layers", {})
    if isinstance(layers, list) and all(isinstance(x, list) and len(x) == 2 for x in layers):
        items = [(x[0], x[1]) for x in layers]  # the plan JSON's form (see to_dict)
    elif isinstance(layers, dict):
        items = list(layers.items())
    else:
        raise InputError(f"{label}: field 'layers' must be a table of \"glob\" = \"precision\"")
    pairs = tuple(
        (str(glob), check_precision(prec, f"{label}: layers.\"{glob}\""))
        for glob, prec in items
    )
    return PrecisionMap(path=label, layers=pairs, **values)


def load(path: str | Path | PrecisionMap | dict) -> PrecisionMap:
    """Read a precision-map file (or accept an already parsed map / a dict)."""
    if isinstance(path, PrecisionMap):
        return path
    if isinstance(path, dict):
        return parse(path, "--precision-map")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file (--precision-map)")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a precision-map file (--precision-map)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a valid TOML precision map ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror}) (--precision-map)") from exc
    return parse(data, str(p))
