"""Target descriptions and cost models (installed as ``tilec.targets``).

A target is a TOML file -- ``gc200``, ``gc2``, ``bow`` and ``northpole`` ship here; a user's
``--target ./my-chip.toml`` is read the same way -- validated field by field and turned into a
:class:`TileTarget`, which implements the :class:`tilec.costmodel.Target` protocol and carries a
cost model (:mod:`.ipu` for the Graphcore chips, :mod:`.northpole` for NorthPole).

    >>> from tilec.targets import load_target, names
    >>> names()
    ['bow', 'gc2', 'gc200', 'northpole']
    >>> load_target("gc200").budget_per_tile
    618496
"""

from __future__ import annotations

from pathlib import Path

from tilec.errors import InputError

from .spec import builtin_names, builtin_path, read_raw, validate
from .target import TileTarget

__all__ = ["TileTarget", "is_target_path", "load_target", "names"]

_CACHE: dict[str, TileTarget] = {}


def names() -> list[str]:
    """Names of the built-in targets, sorted."""
    return builtin_names()


def is_target_path(name_or_path: str) -> bool:
    """Whether ``--target`` names a file rather than a built-in target."""
    text = str(name_or_path)
    return text.endswith(".toml") or "/" in text or "\\" in text


def load_target(name_or_path: str | Path) -> TileTarget:
    """A built-in target by name, or a target TOML file by path.

    Unknown names and bad files raise :class:`~tilec.errors.InputError` with one line naming the
    name, or the file and the field. Built-in targets are cached (they are immutable).
    """
    text = str(name_or_path)
    if not text.strip():
        raise InputError(f"--target: empty target name (known: {', '.join(names())})")
    if isinstance(name_or_path, Path) or is_target_path(text):
        raw = read_raw(Path(text), text)
        spec = validate(raw)
        return TileTarget.from_spec(spec, comments=raw.comments, origin=raw.origin, source=text,
                                    chain=tuple(raw.chain))
    hit = _CACHE.get(text)
    if hit is not None:
        return hit
    path = builtin_path(text)
    if path is None:
        raise InputError(f"--target: unknown target '{text}' (known: {', '.join(names())}; or "
                         f"give the path of a target .toml file)")
    raw = read_raw(path, f"{text}.toml")
    spec = validate(raw)
    target = TileTarget.from_spec(spec, comments=raw.comments, origin=raw.origin, source=text,
                                  chain=tuple(raw.chain))
    _CACHE[text] = target
    return target
