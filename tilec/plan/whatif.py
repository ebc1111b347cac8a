"""what-if: what *would* fit, computed in the same run by re-planning.

Four questions, each a monotone search over one knob with everything else fixed:

``max_batch``           the largest batch that fits at this image size and precision;
``max_image_size``      the largest image size (a multiple of the network's stride, aspect kept)
                        at this batch;
``min_precision``       the first precision below this one, among the target's, at which it fits
                        (the least precision you must give up);
``min_bytes_per_tile``  the smallest SRAM per tile (to 1 KiB) at which this configuration fits.

Each probe is a full re-plan (same pipeline, a shorter solver budget, a greedy-only layout), so a
"fits" answer is a verified plan. Cheap first: the lower bounds (a) and (b) -- monotone in batch,
image size and bytes per tile -- rule probes out without placing anything, and for the SRAM
question give the starting point. Then bisection. An answer is ``exact`` when the value above it
was *proven* not to fit (evidence (a)-(c)); ``bound`` when that probe was only "unknown" (the answer
is then a value known to fit, and more might); ``unknown`` when the search itself could not
conclude. Every probe is recorded. Monotonicity (more batch never fits where less did not) is an
assumption about the cost model, stated in the note.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tilec.costmodel import Target
from tilec.errors import InputError
from tilec.opinfo import GraphInfo
from tilec.plan.bounds import chip_bound, op_bound
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, WhatIf
from tilec.plan.partition import Partition, partition
from tilec.plan.pipeline import Options, Outcome, run

FITS, NO, UNKNOWN = "fits", "does_not_fit", "unknown"


@dataclass
class Probe:
    value: Any
    result: str
    evidence: str | None = None
    peak: int | None = None

    def record(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "result": self.result}
        if self.evidence:
            d["evidence"] = self.evidence
        if self.peak is not None:
            d["peak_bytes"] = self.peak
        return d


class Prober:
    """Runs probes with a shared deadline and a cache."""

    def __init__(self, options: Options, deadline: float,
                 progress: Callable[[str, float], None] | None) -> None:
        self.options = options
        self.deadline = deadline
        self.progress = progress
        self.count = 0

    @property
    def expired(self) -> bool:
        return time.perf_counter() > self.deadline

    def bounds_only(self, info: GraphInfo, target: Target, part: Partition | None = None
                    ) -> str | None:
        """(a)/(b) evidence kind if a cheap bound already proves it cannot fit."""
        part = part or partition(info, target)
        b = op_bound(info, part, target)
        if b.holds:
            return b.kind
        a = chip_bound(info, part, target)
        return a.kind if a.holds else None

    def probe(self, value: Any, make: Callable[[], tuple[GraphInfo, Target]]) -> Probe:
        self.count += 1
        if self.progress:
            self.progress("what-if", min(0.99, self.count / 20))
        try:
            info, target = make()
        except InputError as exc:
            return Probe(value, UNKNOWN, evidence=f"cannot build: {exc}")
        part = partition(info, target)
        kind = self.bounds_only(info, target, part)
        if kind is not None:
            return Probe(value, NO, evidence=kind)
        out: Outcome = run(info, target, options=self.options, part=part)
        peak = out.plan.memory.peak_bytes if out.plan.memory else None
        if out.plan.status == STATUS_FITS:
            return Probe(value, FITS, peak=peak)
        ev = out.plan.diagnosis.evidence.kind if out.plan.diagnosis else None
        return Probe(value, NO if out.plan.status == STATUS_DOES_NOT_FIT else UNKNOWN,
                     evidence=ev, peak=peak)


def _bisect(prober: Prober, hi_no: int, hi_proven: bool,
            make: Callable[[int], Callable[[], tuple[GraphInfo, Target]]],
            label: Callable[[int], Any], probes: list[Probe]) -> tuple[int | None, str, str]:
    """Largest value in [1 .. hi_no) that fits, by bisection (``hi_no`` is known not to fit).

    Plain bisection over [0, hi_no) with 0 as a virtual "fits" anchor, so the first probe is in
    the middle rather than at 1 (answers near the top cost log2 probes, not more). Returns
    (answer or None, status, note).
    """
    lo: int | None = None
    hi, proven = hi_no, hi_proven
    while hi - (lo or 0) > 1:
        if prober.expired and probes:
            note = "what-if time budget reached"
            if lo is None:
                return None, "unknown", note
            return lo, "bound", f"{note}; values up to {label(hi)} were not tried"
        mid = ((lo or 0) + hi) // 2
        p = prober.probe(label(mid), make(mid))
        probes.append(p)
        if p.result == FITS:
            lo = mid
        else:
            hi, proven = mid, p.result == NO
    if lo is None:
        if proven:
            return None, "exact", f"even {label(1)} does not fit"
        return None, "unknown", f"{label(1)} could not be decided"
    if proven:
        return lo, "exact", ""
    return lo, "bound", f"{label(hi)} was not proven not to fit"


def what_if(info: GraphInfo, target: Target, base: Outcome, *,
            rebuild: Callable[..., GraphInfo], options: Options, seconds: float = 30.0,
            progress: Callable[[str, float], None] | None = None) -> list[WhatIf]:
    """Answers to the four questions (see the module docstring) for a model that does not fit."""
    probe_opts = replace(options, settings=SolveSettings(
        time_limit=options.settings.time_limit,
        deterministic_limit=max(0.05, options.settings.deterministic_limit / 3),
        seed=options.settings.seed, workers=options.settings.workers), layout_exact=False,
        use_cpsat=False, greedy_passes=5)
    prober = Prober(probe_opts, time.perf_counter() + seconds, progress)
    t_start = time.perf_counter()

    def share(k: int) -> None:
        """Question k of 4 may use an equal share of what is left of the budget."""
        left = seconds - (time.perf_counter() - t_start)
        prober.deadline = time.perf_counter() + max(0.0, left) / (4 - k)

    meta = dict(info.meta)
    base_proven = base.plan.status == STATUS_DOES_NOT_FIT
    out: list[WhatIf] = []
    monotone = "assumes more data never fits where less did not"

    # ---- largest batch
    share(0)
    batch = int(meta.get("batch") or 1)
    probes: list[Probe] = []

    def mk_batch(b: int):
        return lambda: (rebuild(batch=b), target)

    ans, status, note = _bisect(prober, batch, base_proven, mk_batch, lambda b: b, probes)
    out.append(WhatIf("max_batch", ans, status, _note(note, monotone),
                      [p.record() for p in probes]))

    # ---- largest image size (multiple of the stride)
    share(1)
    stride = meta.get("stride")
    size = meta.get("image_size")
    probes = []
    if stride and size and not prober.expired:
        h, w = int(size[0]), int(size[1])
        k0 = h // int(stride)

        def dims(k: int) -> tuple[int, int]:
            hk = k * int(stride)
            wk = max(int(stride), round(w * hk / h / int(stride)) * int(stride))
            return hk, wk

        def mk_size(k: int):
            return lambda: (rebuild(image_size=dims(k)), target)

        ans_k, status, note = _bisect(prober, k0 if h % int(stride) == 0 else k0 + 1,
                                      base_proven, mk_size, lambda k: list(dims(k)), probes)
        out.append(WhatIf("max_image_size", list(dims(ans_k)) if ans_k else None, status,
                          _note(note, f"multiples of the stride {stride}; " + monotone),
                          [p.record() for p in probes]))
    else:
        out.append(WhatIf("max_image_size", None, "unknown",
                          "the network's stride or image size is unknown" if not prober.expired
                          else "what-if time budget reached", []))

    # ---- smallest bytes per tile
    share(2)
    probes = []
    out.append(_min_bytes(info, target, base, prober, probes))
    # ---- lower precision
    share(3)
    precision = meta.get("precision")
    probes = []
    lower = []
    if precision in target.precisions:
        lower = list(target.precisions)[list(target.precisions).index(precision) + 1:]
    answer = None
    status = "exact"
    note = ""
    for p in lower:
        if prober.expired and probes:
            status, note = "unknown", "what-if time budget reached"
            break
        pr = prober.probe(p, lambda p=p: (rebuild(precision=p), target))
        probes.append(pr)
        if pr.result == FITS:
            answer = p
            break
        if pr.result == UNKNOWN:
            status = "bound"
    if not lower:
        note = f"the target supports nothing below {precision}"
    elif answer is None and not note:
        note = "no supported lower precision fits"
    if answer is None and status == "bound":
        status = "unknown"
    out.append(WhatIf("min_precision", answer, status, note,
                      [p.record() for p in probes]))
    return out


def _note(note: str, extra: str) -> str:
    return f"{note}; {extra}" if note else extra


def _min_bytes(info: GraphInfo, target: Target, base: Outcome, prober: Prober,
               probes: list[Probe]) -> WhatIf:
    """Smallest bytes per tile (1 KiB steps) at which this configuration fits."""
    current_bytes = int(target.bytes_per_tile)
    grain = 1024 if current_bytes >= 64 * 1024 else max(1, current_bytes // 64)
    reserved = int(target.reserved_bytes_per_tile)
    current = int(target.bytes_per_tile)
    tiles = int(target.tiles)
    a, b = base.bounds["a"], base.bounds["b"]
    need = max(b.needed, -(-a.needed // tiles)) + reserved
    start = max(current + 1, need)
    start = -(-start // grain) * grain

    def mk(x: int):
        return lambda: (info, target.with_bytes_per_tile(x))

    hi = None
    x = start
    tried = None
    for k in range(8):
        if prober.expired and k > 0:
            break
        tried = x
        p = prober.probe(x, mk(x))
        probes.append(p)
        if p.result == FITS:
            hi = x
            break
        x = -(-int(x * 1.25) // grain) * grain
    if hi is None:
        return WhatIf("min_bytes_per_tile", None, "unknown",
                      f"nothing up to {tried:,} bytes per tile was found to fit"
                      + (" (what-if time budget reached)" if prober.expired else ""),
                      [p.record() for p in probes])
    lo = max(current, start - grain)  # largest value known (or assumed) not to fit
    lo_proven = base.plan.status == STATUS_DOES_NOT_FIT if lo == current else (
        prober.bounds_only(info, target.with_bytes_per_tile(lo)) is not None)
    for p in probes:
        if p.result != FITS and isinstance(p.value, int) and p.value > lo:
            lo, lo_proven = p.value, p.result == NO
    while hi - lo > grain and not prober.expired:
        mid = lo + ((hi - lo) // (2 * grain)) * grain
        mid = max(mid, lo + grain)
        if mid >= hi:
            break
        p = prober.probe(mid, mk(mid))
        probes.append(p)
        if p.result == FITS:
            hi = mid
        else:
            lo, lo_proven = mid, p.result == NO
    if hi - lo <= grain and lo_proven:
        status, note = "exact", f"{lo:,} bytes per tile proven not to fit"
    else:
        status, note = "bound", f"{hi:,} bytes per tile fits; {lo:,} was not proven not to fit"
    return WhatIf("min_bytes_per_tile", hi, status, note + f" ({grain:,}-byte resolution; the "
                  f"lower bounds alone need {need:,})", [p.record() for p in probes])
