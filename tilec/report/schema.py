"""The plan's JSON Schema (``plan.schema.json``, shipped as package data) and validation against it.

The schema documents every field of :mod:`tilec.plan.model` and is strict (every field required,
no unknown properties), so a test that validates every emitted plan catches any drift between the
code and the documentation. See docs/reports.md for the versioning policy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "plan.schema.json"


@cache
def plan_schema() -> dict[str, Any]:
    """The schema as a dict (read once from the package)."""
    return json.loads(resources.files("tilec.report").joinpath(SCHEMA_FILE).read_text())


def validation_errors(data: Any, limit: int = 5) -> list[str] | None:
    """Up to ``limit`` messages ``"<json path>: <problem>"``, [] when ``data`` is valid, or None
    when the ``jsonschema`` package is not installed (it is a development dependency only)."""
    try:
        import jsonschema
    except ImportError:
        return None
    validator = jsonschema.Draft202012Validator(plan_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    out = []
    for err in errors[:limit]:
        while err.context:  # "not valid under any of the given schemas": say why, precisely
            err = max(err.context, key=lambda c: len(c.absolute_path))  # the deepest
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{path.lstrip('.') or '(top level)'}: {_short(err.message)}")
    return out


def _short(message: str, width: int = 160) -> str:
    return message if len(message) <= width else message[: width - 3] + "..."


# ----------------------------------------------------------------------------------- fast check
def type_errors(data: Any, limit: int = 5) -> list[str]:
    """Check ``data`` against the *types* of :class:`tilec.plan.model.Plan`'s fields.

    What ``tilec report`` runs on every file: it needs no jsonschema and takes milliseconds
    (full schema validation takes about a second for a 300-op plan), and it catches what would
    make a renderer fail -- a missing field, a string where a number belongs -- naming the
    field's path. The schema (checked in the tests on every emitted plan) is stricter still:
    enums, minimums, category names.
    """
    from tilec.plan.model import Plan

    errors: list[str] = []
    _checker(Plan)(data, "", errors)
    return errors[:limit]


Check = Callable[[Any, str, list[str]], None]
_SCALARS: dict[Any, Callable[[Any], bool]] = {
    int: lambda v: type(v) is int,
    float: lambda v: type(v) in (int, float),
    str: lambda v: type(v) is str,
    bool: lambda v: type(v) is bool,
}
_LIMIT = 5


@cache
def _checker(tp: Any) -> Check:
    """A function that appends the type errors of a value of type ``tp`` (built once per type)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return lambda v, p, e: None
    if origin in (typing.Union, types.UnionType):
        inner_types = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _checker(inner_types[0] if len(inner_types) == 1 else Any)
        nullable = type(None) in typing.get_args(tp)

        def check_union(v: Any, p: str, e: list[str]) -> None:
            if not (v is None and nullable):
                inner(v, p, e)
        return check_union
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        parts = [(f.name, _checker(hints[f.name]),
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(tp) if f.init and f.name != "timings"]

        def check_object(v: Any, p: str, e: list[str]) -> None:
            if type(v) is not dict:
                e.append(f"{p or '(top level)'}: expected an object, got {_kind(v)}")
                return
            for name, check, required in parts:
                if len(e) >= _LIMIT:
                    return
                if name in v:
                    check(v[name], f"{p}.{name}" if p else name, e)
                elif required:
                    e.append(f"{p or '(top level)'}: '{name}' is missing")
        return check_object
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        item = _checker(item_tp)
        scalar = _SCALARS.get(item_tp)

        def check_list(v: Any, p: str, e: list[str]) -> None:
            if type(v) is not list:
                e.append(f"{p}: expected a list, got {_kind(v)}")
                return
            if scalar is not None and all(map(scalar, v)):
                return  # the common case, without a Python call per element
            for i, x in enumerate(v):
                if len(e) >= _LIMIT:
                    return
                item(x, f"{p}[{i}]", e)
        return check_list
    if origin is dict:
        _, value_tp = typing.get_args(tp) or (str, Any)
        value = _checker(value_tp)

        def check_dict(v: Any, p: str, e: list[str]) -> None:
            if type(v) is not dict:
                e.append(f"{p}: expected an object, got {_kind(v)}")
                return
            for k, x in v.items():
                value(x, f"{p}.{k}", e)
        return check_dict
    scalar = _SCALARS.get(tp)
    if scalar is None:
        return lambda v, p, e: None

    def check_scalar(v: Any, p: str, e: list[str]) -> None:
        if not scalar(v):
            e.append(f"{p}: expected {tp.__name__}, got {_kind(v)} {_short(repr(v), 40)}")
    return check_scalar


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def consistency_errors(plan: Any, limit: int = 5) -> list[str]:
    """Cheap checks that a well-typed plan is also self-consistent enough to draw: tile ranges
    inside the chip, lifetimes in order, summaries the size of the chip. (A file tilec wrote always
    passes; a hand-edited one might not, and should get a message, not a crash.)"""
    tiles = plan.target.tiles
    steps = len(plan.steps)
    errors: list[str] = []

    def ranges(where: str, rs: list[list[int]]) -> None:
        for r in rs:
            if len(r) != 2 or not 0 <= r[0] < r[1] <= tiles:
                errors.append(f"{where}: tile range {r} is not inside [0, {tiles})")
                return

    if tiles <= 0:
        errors.append(f"target.tiles: must be positive, got {tiles}")
        return errors
    from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, STATUS_UNKNOWN

    statuses = (STATUS_FITS, STATUS_DOES_NOT_FIT, STATUS_UNKNOWN)
    if plan.status not in statuses:  # the exit code and the verdict hang on it
        errors.append(f"status: {plan.status!r} is not one of {', '.join(statuses)}")
    if plan.status == STATUS_FITS and (plan.verification is None or not plan.verification.ok):
        # tilec reports "fits" only for a placement its verifier accepted; a file that says
        # otherwise was edited and must not print FITS with exit code 0
        errors.append("status: 'fits' without a verification that passed")
    if len(plan.target.grid) != 2 or min(plan.target.grid) <= 0:
        errors.append(f"target.grid: expected [rows, cols] of positive integers, got "
                      f"{plan.target.grid}")
    if plan.target.budget_per_tile <= 0:
        errors.append(f"target.budget_per_tile: must be positive, got "
                      f"{plan.target.budget_per_tile}")
    size = plan.model.image_size
    if size is not None and (len(size) != 2 or min(size) <= 0):
        errors.append(f"model.image_size: expected [H, W] of positive integers or null, got {size}")
    lat = plan.latency
    if lat is not None:
        for name in ("seconds", "io_seconds", "input_seconds", "output_seconds",
                     "throughput_per_s"):
            value = getattr(lat, name, 0.0)
            if not math.isfinite(value) or value < 0:
                errors.append(f"latency.{name}: must be a finite number >= 0, got {value}")
    for i, op in enumerate(plan.ops):
        ranges(f"ops[{i}].tiles", op.tiles)
        if steps and not 0 <= op.step < steps:
            errors.append(f"ops[{i}].step: {op.step} is not a superstep (0..{steps - 1})")
    for i, b in enumerate(plan.buffers):
        ranges(f"buffers[{i}].tiles", b.tiles)
        if not 0 <= b.first <= b.end:
            errors.append(f"buffers[{i}]: lifetime [{b.first}, {b.end}) is not in order")
        if b.bytes < 0:
            errors.append(f"buffers[{i}].bytes: must be >= 0, got {b.bytes}")
    mem = plan.memory
    if mem is not None:
        if len(mem.per_tile_peak) != tiles:
            errors.append(f"memory.per_tile_peak: {len(mem.per_tile_peak)} values for "
                          f"{tiles} tiles")
        if not 0 <= mem.peak_tile < tiles:
            errors.append(f"memory.peak_tile: {mem.peak_tile} is not a tile (0..{tiles - 1})")
    return errors[:limit]
