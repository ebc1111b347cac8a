"""lay out: an address (offset) for every buffer on every tile, over its lifetime.

The placement guarantees that at every step the bytes live on a tile fit its budget; that is
necessary but not sufficient: buffers need addresses, and two buffers live at the same time must
not overlap (dynamic storage allocation, NP-hard in general). This module solves it:

* :func:`allocate` -- the generic problem: items ``(id, lower, upper, size)`` with half-open
  lifetimes ``[lower, upper)`` and a capacity; optionally an alignment and an address window per
  item. First the *live-bytes lower bound* (the most bytes live at one step; if it exceeds the
  capacity nothing can fit, and that is a proof). Then two greedy heuristics -- *greedy by size*
  (largest first, each at the lowest aligned address free over its lifetime) and *linear scan*
  (in lifetime order, best-fit into the free holes; only without alignment or windows) -- and the
  lower of the two. Only if neither fits: the exact *canonical search* (layout_search.py, the
  ideas of MiniMalloc), which finds a layout, proves none exists, or gives up at its time limit;
  then, on small instances only, CP-SAT (``NoOverlap2D`` of lifetime x address rectangles plus
  the cumulative bound), strongest at proofs on small hard cores.
* Alignment and memory regions. A tile's memory is not uniform: on the GC200 it is in two
  regions, interleaved (128-bit access) and non-interleaved (64-bit), and instructions are
  fetched only from non-interleaved memory (../shared/reference/hardware.md, PopVision Graph
  Analyser glossary); Poplar codelets declare operands that must sit in interleaved memory with an
  alignment, e.g. the output ``q`` of popsparse's StaticSparseDenseMatMulBlock is
  ``Vector<..., ONE_PTR, 16, /*interleaved*/ true>`` (graphcore/poplibs,
  lib/popsparse/codelets/StaticSparseDenseMatMulBlock.cpp). Where a region lies in the address
  space is not published here, so a region is an address window the caller gives (``tilec
  layout --region NAME=START:END``); an item carries its window and alignment and every stage
  (greedy, search, CP-SAT, check) respects them.
* :func:`layout_plan` -- the plan's buffers. Tiles with the same set of buffers are laid out once:
  the tile axis is cut at every buffer range boundary into *segments*, and segments whose buffers
  have the same shapes (lifetimes and sizes) share one solution. Buffers live for the whole run
  (always, spread) are stacked at the bottom; the rest are allocated above them. Buffers of one op
  with the same lifetime form one unit (categories contiguous), as does an in-place chain (the
  output takes its input's address).
* CSV I/O for ``tilec layout`` (``id,lower,upper,size``).
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ortools.sat.python import cp_model

from tilec.errors import InputError
from tilec.plan.cpsat import SolveSettings, solver

OK, INFEASIBLE, UNKNOWN = "ok", "infeasible", "unknown"

MAX_VALUE = 2**62
"""Largest lifetime bound, size or capacity accepted: CP-SAT's variables are 64-bit, and an
offset plus a size must still fit (a larger value was an internal error in the solver)."""


@dataclass(frozen=True)
class Item:
    """A buffer to place: live over ``[lower, upper)``; its offset a multiple of ``align``,
    and the whole buffer inside the address window ``[lo, hi)`` (``hi`` None: the capacity) --
    a memory region such as the GC200's interleaved memory (see the module docstring)."""

    id: str
    lower: int
    upper: int  # exclusive
    size: int
    align: int = 1
    lo: int = 0
    hi: int | None = None
    region: str = ""  # the window's name, for messages and CSV round trips

    def constrained(self) -> bool:
        return self.align > 1 or self.lo > 0 or self.hi is not None


@dataclass
class Allocation:
    """Offsets for items, or why there are none."""

    status: str  # "ok" | "infeasible" | "unknown"
    offsets: dict[str, int] = field(default_factory=dict)
    peak: int = 0  # highest address used (max offset + size)
    lower_bound: int = 0  # most bytes live at one step
    lower_bound_step: int | None = None
    method: str = ""
    reason: str = ""


# ----------------------------------------------------------------------------------- bounds
def live_lower_bound(items: Sequence[Item]) -> tuple[int, int | None]:
    """(most bytes live at one step, that step) -- a lower bound on any layout's peak."""
    if not items:
        return 0, None
    events: dict[int, int] = {}
    for it in items:
        if it.upper > it.lower and it.size > 0:
            events[it.lower] = events.get(it.lower, 0) + it.size
            events[it.upper] = events.get(it.upper, 0) - it.size
    best, best_step, acc = 0, None, 0
    for t in sorted(events):
        acc += events[t]
        if acc > best:
            best, best_step = acc, t
    return best, best_step


# ----------------------------------------------------------------------------------- heuristics
def _align_up(x: int, a: int) -> int:
    return -(-x // a) * a if a > 1 else x


def greedy_by_size(items: Sequence[Item]) -> dict[str, int]:
    """Largest first; each at the lowest address not used by a placed item it overlaps in time.

    The placed items live in numpy arrays: finding the ones an item overlaps in time was a
    Python scan of every placed item per item, ~3/4 of the layout's time on a graph of ~900
    ops (a dynamically quantized MobileNetV2). Only the overlapping items that end above the
    item's lowest address can move it; they are walked in address order as before."""
    order = sorted(items, key=lambda it: (-it.size, -(it.upper - it.lower), it.lower, it.id))
    n = len(order)
    placed_lo = np.empty(n, dtype=np.int64)
    placed_hi = np.empty(n, dtype=np.int64)
    placed_off = np.empty(n, dtype=np.int64)
    placed_end = np.empty(n, dtype=np.int64)
    k = 0
    offsets: dict[str, int] = {}
    for it in order:
        if it.size <= 0 or it.upper <= it.lower:
            offsets[it.id] = 0
            continue
        off = _align_up(it.lo, it.align)
        if k:
            hit = ((placed_lo[:k] < it.upper) & (it.lower < placed_hi[:k])
                   & (placed_end[:k] > off))
            if hit.any():
                a, b = placed_off[:k][hit], placed_end[:k][hit]
                by = np.lexsort((b, a))
                for lo_, hi_ in zip(a[by].tolist(), b[by].tolist(), strict=True):
                    if lo_ >= off + it.size:
                        break
                    if hi_ > off:
                        off = _align_up(hi_, it.align)
        offsets[it.id] = off
        placed_lo[k], placed_hi[k] = it.lower, it.upper
        placed_off[k], placed_end[k] = off, off + it.size
        k += 1
    return offsets


def linear_scan(items: Sequence[Item]) -> dict[str, int]:
    """In order of start (longer first): best fit into a free hole, else on top; free at end."""
    order = sorted(items, key=lambda it: (it.lower, -(it.upper - it.lower), -it.size, it.id))
    offsets: dict[str, int] = {}
    active: list[tuple[int, int, int]] = []  # (upper, offset, size)
    holes: list[tuple[int, int]] = []  # (offset, size), sorted by offset
    top = 0

    def free(off: int, size: int) -> None:
        nonlocal top
        bisect.insort(holes, (off, size))
        merged: list[tuple[int, int]] = []
        for o, s in holes:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        if merged and merged[-1][0] + merged[-1][1] == top:
            top = merged[-1][0]
            merged.pop()
        holes[:] = merged

    for it in order:
        if it.size <= 0 or it.upper <= it.lower:
            offsets[it.id] = 0
            continue
        still = []
        for up, off, size in sorted(active):
            if up <= it.lower:
                free(off, size)
            else:
                still.append((up, off, size))
        active = still
        best = None
        for k, (_o, s) in enumerate(holes):
            if s >= it.size and (best is None or s < holes[best][1]):
                best = k
        if best is None:
            off = top
            top += it.size
        else:
            o, s = holes.pop(best)
            off = o
            if s > it.size:
                bisect.insort(holes, (o + it.size, s - it.size))
        offsets[it.id] = off
        active.append((it.upper, off, it.size))
    return offsets


def peak_of(items: Sequence[Item], offsets: dict[str, int]) -> int:
    return max((offsets[it.id] + it.size for it in items if it.size > 0), default=0)


# ----------------------------------------------------------------------------------- exact
def exact_layout(items: Sequence[Item], capacity: int, settings: SolveSettings,
                 hint: dict[str, int] | None = None) -> tuple[str, dict[str, int]]:
    """CP-SAT: rectangles (lifetime x address) that must not overlap, inside the capacity."""
    m = cp_model.CpModel()
    real = [it for it in items if it.size > 0 and it.upper > it.lower]
    if any(it.size > capacity for it in real):
        return INFEASIBLE, {}
    xs, ys, offs = [], [], {}
    for it in real:
        top = min(capacity, it.hi if it.hi is not None else capacity) - it.size
        first = _align_up(it.lo, it.align)
        if top < first:
            return INFEASIBLE, {}
        if it.align > 1:  # offset = align * k
            k = m.new_int_var(first // it.align, top // it.align, f"k_{it.id}")
            off = m.new_int_var(first, top, f"o_{it.id}")
            m.add(off == it.align * k)
        else:
            off = m.new_int_var(first, top, f"o_{it.id}")
        offs[it.id] = off
        xs.append(m.new_fixed_size_interval_var(it.lower, it.upper - it.lower, f"t_{it.id}"))
        ys.append(m.new_fixed_size_interval_var(off, it.size, f"a_{it.id}"))
    m.add_no_overlap_2d(xs, ys)
    m.add_cumulative(xs, [it.size for it in real], capacity)
    # symmetry: the largest item sits in the lower half of the address space (a mirror image
    # of a layout is a layout -- not with alignment or windows, which a mirror breaks)
    if real and not any(it.constrained() for it in real):
        big = max(real, key=lambda it: (it.size, it.id))
        m.add(offs[big.id] * 2 <= capacity - big.size)
    if hint:
        for it in real:
            if it.id in hint and hint[it.id] + it.size <= capacity:
                m.add_hint(offs[it.id], hint[it.id])
    s = solver(settings)
    st = s.solve(m)
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out = {it.id: 0 for it in items}
        out.update({k: int(s.value(v)) for k, v in offs.items()})
        return OK, out
    if st == cp_model.INFEASIBLE:
        return INFEASIBLE, {}
    return UNKNOWN, {}


SMALL_CORE = 200
"""Items up to which CP-SAT is asked when the canonical search gives up (modelling choice: its
NoOverlap2D proofs are strong on small hard cores, and slow beyond a few hundred rectangles)."""


def allocate(items: Sequence[Item], capacity: int, *, exact: bool = True,
             settings: SolveSettings | None = None) -> Allocation:
    """Offsets for ``items`` within ``capacity`` bytes (see the module docstring)."""
    lb, lb_step = live_lower_bound(items)
    base = dict(lower_bound=lb, lower_bound_step=lb_step)
    if lb > capacity:
        return Allocation(status=INFEASIBLE, method="bound", **base,
                          reason=f"at step {lb_step} the live buffers need {lb} bytes, more than "
                                 f"the capacity of {capacity} bytes")
    for it in items:
        if it.size <= 0 or it.upper <= it.lower:
            continue
        top = min(capacity, it.hi if it.hi is not None else capacity)
        if _align_up(it.lo, it.align) + it.size > top:
            where = f"region '{it.region}' [{it.lo}, {top})" if it.region else f"[0, {top})"
            return Allocation(status=INFEASIBLE, method="bound", **base,
                              reason=f"{it.id} ({it.size} bytes, aligned to {it.align}) does "
                                     f"not fit in {where}")
    constrained = any(it.constrained() for it in items)
    heuristics = [("greedy-by-size", greedy_by_size)]
    if not constrained:
        heuristics.append(("linear-scan", linear_scan))
    best: tuple[int, str, dict[str, int]] | None = None
    for name, fn in heuristics:
        offs = fn(items)
        pk = peak_of(items, offs)
        valid = not constrained or not check_layout(items, offs, capacity)
        if valid and (best is None or pk < best[0]):
            best = (pk, name, offs)
        if valid and pk == lb:
            break  # optimal: cannot beat the live-bytes bound
    if best is not None and best[0] <= capacity:
        pk, name, offs = best
        return Allocation(status=OK, offsets=offs, peak=pk, method=name, **base)
    pk, offs = (best[0], best[2]) if best is not None else (0, {})
    greedy_note = (f"the best greedy layout needs {pk} bytes (> {capacity})" if best
                   else "no greedy layout respects the alignment and regions")
    if not exact:
        return Allocation(status=UNKNOWN, offsets=offs, peak=pk, method=best[1] if best else "",
                          **base, reason=f"{greedy_note}; exact search not run")
    settings = settings or SolveSettings(time_limit=10.0, deterministic_limit=5.0, workers=1)
    from tilec.plan.layout_search import search

    real = list(items)
    small = sum(1 for it in items if it.size > 0 and it.upper > it.lower) <= SMALL_CORE
    # one time budget: on a small instance the search keeps a quarter of it for CP-SAT
    t_search = settings.time_limit * (0.75 if small else 1.0)
    res = search([it.lower for it in real], [it.upper for it in real],
                 [it.size for it in real], capacity, align=[it.align for it in real],
                 win_lo=[it.lo for it in real],
                 win_hi=[capacity if it.hi is None else min(it.hi, capacity) for it in real],
                 time_limit=t_search)
    if res.status == OK:
        found = {it.id: o for it, o in zip(real, res.offsets, strict=True)}
        return Allocation(status=OK, offsets=found, peak=peak_of(items, found),
                          method="canonical-search", **base)
    if res.status == INFEASIBLE:
        return Allocation(status=INFEASIBLE, peak=pk, method="canonical-search", **base,
                          reason=f"the exact search (every canonical layout, complete) proved "
                                 f"that no layout fits {capacity} bytes, although at most {lb} "
                                 "bytes are live at once (fragmentation is unavoidable)")
    if small:
        left = max(0.1, settings.time_limit - res.seconds)
        cp_settings = SolveSettings(time_limit=left,
                                    deterministic_limit=min(settings.deterministic_limit, left),
                                    seed=settings.seed, workers=settings.workers)
        status, exact_offs = exact_layout(items, capacity, cp_settings, hint=offs or None)
        if status == OK:
            return Allocation(status=OK, offsets=exact_offs, peak=peak_of(items, exact_offs),
                              method="cp-sat", **base)
        if status == INFEASIBLE:
            return Allocation(status=INFEASIBLE, peak=pk, method="cp-sat", **base,
                              reason=f"the exact search (CP-SAT) proved that no layout fits "
                                     f"{capacity} bytes, although at most {lb} bytes are live "
                                     "at once (fragmentation is unavoidable)")
    limit = res.note or f"no layout found within the search limit ({settings.time_limit:g} s)"
    return Allocation(status=UNKNOWN, offsets=offs, peak=pk, method="canonical-search", **base,
                      reason=f"{limit}: {greedy_note}; at most {lb} bytes are live at once")


# ----------------------------------------------------------------------------------- CSV
def read_csv(path: str | Path, regions: dict[str, tuple[int, int]] | None = None,
             *, with_offsets: bool = False) -> list[Item] | tuple[list[Item], dict[str, int]]:
    """Items from an ``id,lower,upper,size[,...]`` CSV (header required); InputError names the
    line. Optional columns by name: ``alignment`` (bytes, default 1), ``region`` (a name from
    ``regions``: the address window ``[start, end)`` the buffer must lie in; empty = anywhere)
    and, with ``with_offsets``, a required ``offset`` (a solution to re-check)."""
    path = Path(path)
    regions = regions or {}
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is fine
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected a CSV "
                         "with the header 'id,lower,upper,size'") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise InputError(f"{path}: empty file (expected a header 'id,lower,upper,size')")
    header = [h.strip().lower() for h in rows[0]]
    if header[:4] != ["id", "lower", "upper", "size"]:
        raise InputError(f"{path}:1: header must be 'id,lower,upper,size', got "
                         f"'{','.join(rows[0])}'")
    col = {h: k for k, h in enumerate(header)}
    if with_offsets and "offset" not in col:
        raise InputError(f"{path}:1: a solution needs an 'offset' column "
                         "(id,lower,upper,size,offset)")
    items: list[Item] = []
    offsets: dict[str, int] = {}
    seen: set[str] = set()

    def opt_int(row: list[str], name: str, lineno: int, default: int) -> int:
        k = col.get(name)
        if k is None or k >= len(row) or not row[k].strip():
            return default
        try:
            return int(row[k].strip())
        except ValueError:
            raise InputError(f"{path}:{lineno}: {name} must be an integer, got "
                             f"'{row[k]}'") from None

    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 4:
            raise InputError(f"{path}:{lineno}: expected 4 fields id,lower,upper,size, "
                             f"got {len(row)}")
        ident = row[0].strip()
        if not ident:
            raise InputError(f"{path}:{lineno}: empty id")
        if ident in seen:
            raise InputError(f"{path}:{lineno}: duplicate id '{ident}'")
        try:
            lower, upper, size = (int(row[k].strip()) for k in (1, 2, 3))
        except ValueError:
            raise InputError(f"{path}:{lineno}: lower, upper and size must be integers, got "
                             f"'{','.join(row[1:4])}'") from None
        if lower < 0 or size < 0:
            raise InputError(f"{path}:{lineno}: lower and size must be >= 0")
        if max(upper, size) > MAX_VALUE:
            raise InputError(f"{path}:{lineno}: upper and size must be at most {MAX_VALUE:,} "
                             "(the exact search's integers are 62-bit)")
        if upper <= lower:
            raise InputError(f"{path}:{lineno}: upper ({upper}) must be greater than lower "
                             f"({lower}); lifetimes are half-open [lower, upper)")
        align = opt_int(row, "alignment", lineno, 1)
        if not 1 <= align <= MAX_VALUE:
            raise InputError(f"{path}:{lineno}: alignment must be a positive integer, "
                             f"got {align}")
        region = ""
        lo, hi = 0, None
        k = col.get("region")
        if k is not None and k < len(row) and row[k].strip():
            region = row[k].strip()
            if region not in regions:
                known = ", ".join(sorted(regions)) or "none given (use --region NAME=START:END)"
                raise InputError(f"{path}:{lineno}: unknown region '{region}' (known: {known})")
            lo, hi = regions[region]
        if with_offsets:
            off = opt_int(row, "offset", lineno, -1)
            if off < 0:
                raise InputError(f"{path}:{lineno}: offset must be an integer >= 0")
            offsets[ident] = off
        seen.add(ident)
        items.append(Item(ident, lower, upper, size, align=align, lo=lo, hi=hi, region=region))
    return (items, offsets) if with_offsets else items


def csv_text(items: Sequence[Item], offsets: dict[str, int]) -> str:
    """``id,lower,upper,size,offset`` rows; ids quoted where CSV needs it (an id "a,b" read
    from a quoted field must come back as one field)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    extra = any(it.align > 1 or it.region for it in items)
    if extra:  # keep the constraints in the output, so --validate can re-check them
        writer.writerow(["id", "lower", "upper", "size", "alignment", "region", "offset"])
        writer.writerows([it.id, it.lower, it.upper, it.size, it.align, it.region,
                          offsets[it.id]] for it in items)
    else:
        writer.writerow(["id", "lower", "upper", "size", "offset"])
        writer.writerows([it.id, it.lower, it.upper, it.size, offsets[it.id]] for it in items)
    return out.getvalue()


def write_csv(path: str | Path, items: Sequence[Item], offsets: dict[str, int]) -> None:
    Path(path).write_text(csv_text(items, offsets))


def check_layout(items: Sequence[Item], offsets: dict[str, int], capacity: int) -> list[str]:
    """Independent check of a layout: every item inside the capacity and its region, aligned,
    and no two items live at the same time overlapping in address."""
    errors = []
    real = [it for it in items if it.size > 0]
    for it in real:
        o = offsets.get(it.id)
        if o is None:
            errors.append(f"{it.id}: no offset")
            continue
        if o < 0 or o + it.size > capacity:
            errors.append(f"{it.id}: offset {o} puts it outside [0, {capacity})")
        if it.align > 1 and o % it.align:
            errors.append(f"{it.id}: offset {o} is not a multiple of its alignment {it.align}")
        if o < it.lo or (it.hi is not None and o + it.size > it.hi):
            name = f"region '{it.region}' " if it.region else "window "
            errors.append(f"{it.id}: [{o}, {o + it.size}) is outside its {name}"
                          f"[{it.lo}, {it.hi if it.hi is not None else capacity})")
    real = [it for it in real if offsets.get(it.id) is not None]
    real.sort(key=lambda it: offsets[it.id])
    for i, a in enumerate(real):
        ao = offsets[a.id]
        for b in real[i + 1:]:
            bo = offsets[b.id]
            if bo >= ao + a.size:
                break
            if a.lower < b.upper and b.lower < a.upper:
                errors.append(f"{a.id} and {b.id} overlap in time and address")
    return errors


# ----------------------------------------------------------------------------------- the plan
@dataclass
class Unit:
    """Buffers laid out together: one op's buffers of one lifetime, or an in-place chain."""

    key: str
    members: list[tuple[str, int]]  # (buffer id, offset within the unit)
    ranges: list[tuple[int, int]]
    first: int
    end: int
    size: int


@dataclass
class PlanLayout:
    """Offsets per buffer: ``{buffer id: [[tile_start, tile_stop, offset], ...]}``."""

    offsets: dict[str, list[list[int]]]
    ok: bool
    failures: list[dict] = field(default_factory=list)  # segments that did not fit
    segments: int = 0
    distinct: int = 0
    exact_used: int = 0


def _units(buffers: Sequence, steps: int) -> list[Unit]:
    """Group the plan's buffers into layout units (see the module docstring)."""
    by_key: dict[tuple, Unit] = {}
    chain_of: dict[str, str] = {}
    for b in buffers:
        reuses = getattr(b, "reuses", None)
        if reuses:
            chain_of[b.id] = reuses
    # resolve in-place chains to their first buffer
    def head(bid: str) -> str:
        seen = set()
        while bid in chain_of and bid not in seen:
            seen.add(bid)
            bid = chain_of[bid]
        return bid

    for b in sorted(buffers, key=lambda b: b.id):
        if b.bytes <= 0:
            continue
        ranges = tuple(tuple(r) for r in b.tiles)
        if b.kind == "tensor":
            key = ("chain", head(b.id), ranges)
        else:
            key = (b.kind, b.owner, b.first, b.end, ranges)
        u = by_key.get(key)
        if u is None:
            u = Unit(key="|".join(map(str, key[:2])), members=[], ranges=list(ranges),
                     first=b.first, end=b.end, size=0)
            by_key[key] = u
        if b.kind == "tensor":
            u.members.append((b.id, 0))
            u.size = max(u.size, b.bytes)
            u.first = min(u.first, b.first)
            u.end = max(u.end, b.end)
        else:
            u.members.append((b.id, u.size))
            u.size += b.bytes
    return sorted(by_key.values(), key=lambda u: u.key)


def layout_plan(buffers: Sequence, tiles: int, steps: int, budget: int, *,
                exact_settings: SolveSettings | None = None, exact: bool = True) -> PlanLayout:
    """Offsets for every buffer of a plan on every tile it occupies."""
    units = _units(buffers, steps)
    bounds = {0, tiles}
    for u in units:
        for a, b in u.ranges:
            bounds.add(a)
            bounds.add(b)
    cuts = sorted(bounds)
    seg_units: list[list[int]] = [[] for _ in range(len(cuts) - 1)]
    for ui, u in enumerate(units):
        for a, b in u.ranges:
            for k in range(bisect.bisect_left(cuts, a), bisect.bisect_left(cuts, b)):
                seg_units[k].append(ui)
    memo: dict[tuple, tuple[str, list[int], Allocation | None]] = {}
    unit_offsets: list[dict[int, int]] = [{} for _ in units]  # per unit: segment -> offset
    failures: list[dict] = []
    exact_used = 0
    for k, members in enumerate(seg_units):
        if not members:
            continue
        members = sorted(members, key=lambda ui: (units[ui].first != 0 or units[ui].end != steps,
                                                  units[ui].first, units[ui].end,
                                                  -units[ui].size, units[ui].key))
        shape = tuple((units[ui].first, units[ui].end, units[ui].size) for ui in members)
        if shape not in memo:
            fixed = [ui for ui in members if units[ui].first == 0 and units[ui].end >= steps]
            moving = [ui for ui in members if not (units[ui].first == 0
                                                  and units[ui].end >= steps)]
            offs: list[int] = []
            base = 0
            for ui in fixed:  # whole-run buffers: stacked at the bottom
                offs.append(base)
                base += units[ui].size
            items = [Item(str(i), units[ui].first, units[ui].end, units[ui].size)
                     for i, ui in enumerate(moving)]
            alloc = allocate(items, max(0, budget - base), exact=exact, settings=exact_settings)
            if alloc.method in ("canonical-search", "cp-sat"):
                exact_used += 1
            if alloc.status == OK:
                offs += [base + alloc.offsets[str(i)] for i in range(len(moving))]
                memo[shape] = (OK, offs, alloc)
            else:
                fallback = greedy_by_size(items)
                offs += [base + fallback[str(i)] for i in range(len(moving))]
                memo[shape] = (alloc.status, offs, alloc)
        status, offs, alloc = memo[shape]
        if status != OK:
            failures.append({"tiles": [cuts[k], cuts[k + 1]], "status": status,
                             "reason": alloc.reason if alloc else "",
                             "needs": max(offs[i] + units[ui].size
                                          for i, ui in enumerate(members)),
                             "always_bytes": sum(units[ui].size for ui in members
                                                 if units[ui].first == 0
                                                 and units[ui].end >= steps)})
        for ui, off in zip(members, offs, strict=False):
            unit_offsets[ui][k] = off
    result: dict[str, list[list[int]]] = {}
    for ui, u in enumerate(units):
        segs = sorted(unit_offsets[ui].items())
        for bid, inner in u.members:
            entries: list[list[int]] = []
            for k, off in segs:
                a, b = cuts[k], cuts[k + 1]
                if entries and entries[-1][1] == a and entries[-1][2] == off + inner:
                    entries[-1][1] = b
                else:
                    entries.append([a, b, off + inner])
            result[bid] = entries
    for b in buffers:
        if b.id not in result:
            result[b.id] = [[a, c, 0] for a, c in b.tiles]  # zero-byte buffers: address 0
    return PlanLayout(offsets=result, ok=not failures, failures=failures,
                      segments=sum(1 for m in seg_units if m), distinct=len(memo),
                      exact_used=exact_used)

