"""The sweep's grid: parsing ``--image-size``, ``--batch`` and ``--precision`` into sorted values.

Every parse error is an :class:`~tilec.errors.InputError` naming the flag and the bad item, so the
command line answers with one line and exit 2 (never a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass

from tilec.errors import InputError

MAX_POINTS = 100_000
"""Largest grid accepted (modelling choice: far beyond any sweep worth running on one machine; a
typo such as ``1..100000000`` is then a bad argument rather than a job that never ends)."""


@dataclass(frozen=True)
class Grid:
    """The configurations of one sweep: image sizes (H, W), batches, precisions (all sorted)."""

    image_sizes: tuple[tuple[int, int], ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]

    @property
    def points(self) -> int:
        return len(self.image_sizes) * len(self.batches) * len(self.precisions)


def _int(text: str, flag: str, item: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{flag}: '{item}' is not an integer") from None
    if value <= 0:
        raise InputError(f"{flag}: '{item}' must be positive")
    return value


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"128:1280:32"`` (start:stop:step, stop included), ``"320,640"``, ``"640x480"``, or a mix
    separated by commas; returns sorted, distinct (H, W)."""
    flag = "--image-size"
    out: set[tuple[int, int]] = set()
    for item in _items(text, flag):
        if ":" in item:
            parts = item.split(":")
            if len(parts) not in (2, 3):
                raise InputError(f"{flag}: '{item}' is not START:STOP[:STEP]")
            start, stop = _int(parts[0], flag, item), _int(parts[1], flag, item)
            step = _int(parts[2], flag, item) if len(parts) == 3 else 32
            if stop < start:
                raise InputError(f"{flag}: '{item}': STOP is below START")
            if (stop - start) // step >= MAX_POINTS:
                raise InputError(f"{flag}: '{item}' has more than {MAX_POINTS} sizes")
            out.update((s, s) for s in range(start, stop + 1, step))
        elif "x" in item.lower():
            h, _, w = item.lower().partition("x")
            out.add((_int(h, flag, item), _int(w, flag, item)))
        else:
            s = _int(item, flag, item)
            out.add((s, s))
    return tuple(sorted(out))


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,2,4"``, ``"1..64"`` (both ends included), or a mix; sorted and distinct."""
    flag = "--batch"
    out: set[int] = set()
    for item in _items(text, flag):
        if ".." in item:
            a, _, b = item.partition("..")
            lo, hi = _int(a, flag, item), _int(b, flag, item)
            if hi < lo:
                raise InputError(f"{flag}: '{item}': the end is below the start")
            if hi - lo >= MAX_POINTS:
                raise InputError(f"{flag}: '{item}' has more than {MAX_POINTS} batches")
            out.update(range(lo, hi + 1))
        else:
            out.add(_int(item, flag, item))
    return tuple(sorted(out))


def parse_precisions(text: str, supported: tuple[str, ...], target: str) -> tuple[str, ...]:
    """``"fp16,fp32"`` -> in the target's order (highest first); each must be supported."""
    flag = "--precision"
    wanted = _items(text, flag)
    for p in wanted:
        if p not in supported:
            raise InputError(f"{flag}: target '{target}' does not support '{p}' "
                             f"(supported: {', '.join(supported)})")
    return tuple(p for p in supported if p in wanted)


def _items(text: str, flag: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if not text or any(not t for t in items):
        raise InputError(f"{flag}: empty item in '{text}'")
    return items


def check_size(grid: Grid) -> None:
    if grid.points > MAX_POINTS:
        raise InputError(f"the grid has {grid.points:,} configurations (more than "
                         f"{MAX_POINTS:,}); narrow --image-size, --batch or --precision")
