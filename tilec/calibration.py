"""Published outcomes a chip's constants must reproduce, used to condition the uncertainty band.

A target's ``[ranges]`` give each FITTED constant and modelling choice a plausible interval, one
constant at a time. Jointly they are not all plausible: the constants were fitted so that the
chip's published outcomes come out right, and a joint setting under which a measured
out-of-memory configuration would fit (or a measured fit would not) is contradicted by the
measurement itself. The band (``tilec.plan.band``) therefore asks, for each setting that flips
a verdict, whether the setting is consistent with the measured outcomes of the chip it describes
(``targets/calibration/<chip>.toml``); a flip that only happens where a measurement says the chip
does not behave is reported as ruled out, not as a reason for "borderline".

The check compiles the calibration model (a zoo model) at each measured configuration on the
*measured chip* (the first file of the target's chain that has calibration data) with the
setting's constants, deciding like the band does: the lower bounds (a)/(b) first, then a
fit-only plan. Only the measurements that could contradict the flip are checked (a flip towards
"fits" can only contradict an "oom", and the reverse), the largest first. The calibration model is
captured and lowered once per process (the passes are not proved again: the measured
configurations are facts about the chip, not about the user's model).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilec.errors import InputError

if TYPE_CHECKING:
    from tilec.sweep.compare import Measured


@dataclass(frozen=True)
class Point:
    """One measured outcome: ``model`` (zoo name) at ``measured``'s image size, batch and
    precision compiled ("fits") or ran out of tile memory ("does_not_fit")."""

    model: str
    measured: Measured

    def describe(self) -> str:
        m = self.measured
        return (f"{self.model} at {m.image_size[0]} px batch {m.batch} {m.precision} "
                f"({'fits' if m.result == 'fits' else 'out of memory'}, measured: {m.source})")


def _calibration_dir() -> Path:
    """Where the installed package keeps the calibration files (next to the target TOMLs)."""
    import tilec.targets

    return Path(tilec.targets.__file__).resolve().parent / "calibration"


@lru_cache(maxsize=16)
def points_of(chip: str) -> tuple[Point, ...]:
    """The measured outcomes of built-in chip ``chip`` (empty when none are published): the
    ``tilec sweep --compare`` format (:func:`tilec.sweep.compare.load`) plus the zoo ``model``
    they were measured on."""
    from tilec.sweep.compare import load

    path = _calibration_dir() / f"{chip}.toml"
    if not path.is_file():
        return ()
    model = str(tomllib.loads(path.read_text())["model"])
    return tuple(Point(model, m) for m in load(path))


_NOT_MEASURED = {"target": None, "ranges": None, "io": None, "chip": ("clock_hz",)}
"""Fields a description may change and still be the measured chip: its name and text, the
band's ranges, the host link and the clock (seconds, not bytes or cycles: Bow is the GC200 at
a higher clock). ``None``: the whole section."""


def measured_chip(target: Any) -> str | None:
    """The built-in chip with published outcomes that ``target`` *is*: the first file of its
    chain (itself, then its bases) with calibration data, provided ``target`` keeps every field
    of that chip the measurements depend on (tiles, memory, compute, ...; see
    :data:`_NOT_MEASURED`). A description that changes them is another chip, which the
    measurements do not describe: None."""
    from tilec.targets import load_target

    for name in getattr(target, "chain", ()) or ():
        stem = Path(str(name)).stem
        if points_of(stem):
            try:
                base = load_target(stem)
            except InputError:
                return None
            from tilec.targets.geometry import without_fields

            same = (without_fields(target.spec, _NOT_MEASURED)
                    == without_fields(base.spec, _NOT_MEASURED))
            return stem if same else None
    return None


class CalibrationCheck:
    """``check(values, becomes)``: the measurement a joint setting ``values`` of ``target``'s
    constants contradicts (a one-line reason), or None. ``becomes`` is the verdict the setting
    flips the user's compile to ("fits" or "does_not_fit"): only measurements of the opposite
    kind can contradict it."""

    def __init__(self, chip: str, options: Any) -> None:
        from tilec.targets import load_target

        self.chip = chip
        self.base = load_target(chip)
        self.options = options
        self.points = points_of(chip)
        self._lowered: dict[tuple[str, str], Any] = {}

    def _info(self, p: Point) -> Any:
        from tilec.compile import CompileOptions, capture, lower, reshaped

        m = p.measured
        key = (p.model, m.precision)
        if key not in self._lowered:
            cap = capture(p.model, batch=1, image_size=m.image_size)
            self._lowered[key] = lower(cap, self.base, CompileOptions(
                batch=1, image_size=m.image_size, precision=m.precision, verify="off"))
        again = reshaped(self._lowered[key], m.batch, m.image_size)
        if again is None:
            cap = capture(p.model, batch=m.batch, image_size=m.image_size)
            again = lower(cap, self.base, CompileOptions(
                batch=m.batch, image_size=m.image_size, precision=m.precision, verify="off"))
        return again.info

    def verdict(self, p: Point, values: dict[str, float]) -> str:
        """fits / does_not_fit / unknown of point ``p`` on the measured chip at ``values``."""
        from tilec.plan.model import STATUS_DOES_NOT_FIT
        from tilec.plan.partition import partition
        from tilec.plan.pipeline import lower_bounds, run

        tgt = self.base.with_values(values, why="band")
        info = self._info(p)
        part = partition(info, tgt)
        bounds = lower_bounds(info, tgt, part)
        if any(bounds[x].holds for x in ("io", "b", "a") if x in bounds):
            return STATUS_DOES_NOT_FIT
        return run(info, tgt, options=self.options, part=part, bounds=bounds).plan.status

    def _against(self, becomes: str) -> list[Point]:
        """The measurements that could contradict a flip to ``becomes``, largest first."""
        from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS

        want = STATUS_DOES_NOT_FIT if becomes == STATUS_FITS else STATUS_FITS
        return sorted((p for p in self.points if p.measured.result == want),
                      key=lambda p: -(p.measured.image_size[0] * p.measured.image_size[1]
                                      * p.measured.batch))

    def measured_here(self, info: Any) -> Point | None:
        """The measurement of exactly the configuration ``info`` is (same image size, batch and
        precision, and the same network as the planner sees it: :func:`structure`), or None.

        Cheap when there is none: only a point with the compile's own shape and precision is
        lowered to be compared."""
        meta = info.meta or {}
        size = tuple(meta.get("image_size") or ())
        for p in self.points:
            m = p.measured
            if (tuple(m.image_size), m.batch, m.precision) != (
                    size, meta.get("batch"), meta.get("precision")):
                continue
            try:
                same = structure(self._info(p)) == structure(info)
            except InputError:
                continue
            if same:
                return p
        return None

    def warm(self, becomes: str) -> None:
        """Lower the networks :meth:`__call__` will compile for a flip to ``becomes`` (the
        band calls this before it forks workers, so that each need not lower them again)."""
        for p in self._against(becomes):
            self._info(p)

    def __call__(self, values: dict[str, float], becomes: str) -> str | None:
        from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS

        want = STATUS_DOES_NOT_FIT if becomes == STATUS_FITS else STATUS_FITS
        for p in self._against(becomes):
            try:
                got = self.verdict(p, values)
            except InputError:  # the values are no valid description of the measured chip
                return None
            if got not in (want, "unknown"):
                return (f"{self.chip} at these constants would contradict a measurement: "
                        f"{p.describe()} would {'fit' if got == STATUS_FITS else 'not fit'}")
        return None


def structure(info: Any) -> tuple:
    """The network as the planner sees it, without names: each op's cost signature
    (``targets.geometry.signature``: kind, type, shapes, weights, bits, attributes) and where
    each of its inputs comes from (a model input or an earlier op's output, by position), in
    topological order. Two graphs with equal structures are the same computation at the same
    shapes -- a real export of a zoo network, lowered, has the zoo network's structure when
    its ops come out in the same order."""
    from tilec.targets.geometry import signature

    where: dict[str, tuple] = {x: ("input", k) for k, x in enumerate(info.inputs)}
    rows = []
    for i, op in enumerate(info.ops):
        rows.append((signature(op), tuple(where.get(x, ("?",)) for x in op.inputs)))
        for j, y in enumerate(op.outputs):
            where[y] = (i, j)
    return tuple(rows), tuple(where.get(y, ("?",)) for y in info.outputs)


def calibration_check(target: Any, options: Any) -> Callable[[dict, str], str | None] | None:
    """The check for ``target`` (None when no chip of its chain has published outcomes)."""
    chip = measured_chip(target)
    if chip is None:
        return None
    return CalibrationCheck(chip, options)
