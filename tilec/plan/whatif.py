"""what-if: what *would* fit, computed in the same run by re-planning.

Four questions, each a search over one knob with everything else fixed (for a model that does
not fit; for one that fits, see "Headroom" below):

``max_batch``           the largest batch below the compiled one that fits;
``max_image_size``      the largest image size below the compiled one (a multiple of the network's
                        stride, aspect kept) that fits at this batch; with the stride unknown
                        (a fully convolutional network), a multiple of the largest power of two
                        dividing the compiled size (:func:`size_unit`);
``min_precision``       the highest of the target's precisions below the compiled one that fits
                        (the least precision you must give up);
``min_bytes_per_tile``  the smallest SRAM per tile (1 KiB steps) at which this configuration fits.

A *probe* decides one value, cheap first: the value's partition and the lower bounds (a)/(b) and
the framebuffer check, which rule a value out in a fraction of a plan's time; only then a re-plan
(the same pipeline, but looking for *any* plan that fits rather than the fastest one, and trying
the infeasibility proof (c) before the repair search). "fits" is a plan the verifier accepted;
"does not fit" carries evidence (a)-(c); anything else is undecided.

Feasibility is not monotone in any knob in principle: the target's split policy picks each op's
splits from its shapes and from the SRAM size (with more SRAM the ``fastest`` policy picks faster,
larger splits), so a larger value can fit where a smaller one does not. So the searches check
rather than assume, where that is affordable:

* batch and image size (:func:`_largest`): from the compiled value down, first with the bounds
  alone, then with plans, one value at a time for ``SCAN`` values and then in doubling steps,
  with a bisection to close the last step; then the values above the answer the steps skipped.
  ``exact``: the answer fits and *every* larger value up to the compiled one was proven not to
  fit (the note lists them with their evidence); values not checked are named as assumed.
* precision: the target's precisions below the compiled one, highest first, until one fits;
  ``exact`` when every precision above the answer was proven not to fit.
* SRAM per tile (:func:`_min_bytes`): upwards from the larger of the lower bounds and the compiled
  plan's fullest tile until a size fits (each failure's bounds and best attempt say where to look
  next; at most ``SRAM_REACH`` times the compiled size), then downwards: the size the fitting plan
  itself needs, one grain below the answer, and bisection. ``exact``: the answer fits, one grain
  less was proven not to fit, *and* the cost model declares its splits independent of the SRAM
  size (``CostModel.sram_independent``), so every smaller size is proven with it. Otherwise smaller
  sizes, where other split choices might fit, are too many to check one by one: the answer is a
  ``bound`` and the note says so (and names any larger size seen *not* to fit: feasibility
  observed to be not monotone). When what does not fit is the I/O framebuffer, which no SRAM per
  tile changes, the answer is "none" (exact).

Headroom (:func:`what_if` on a plan that FITS, ``tilec compile --what-if``): the same questions
asked the other way, each knob alone.

* batch and image size (:func:`_largest_up`): upwards from the compiled value (it fits); the
  bounds alone find a *ceiling* (doubling until (a)/(b) rule a value out, then bisection), plans
  bisect between the largest fitting value and the ceiling, and what is left of the budget checks
  the values between the answer and the ceiling, then ``BEYOND`` values past it
  (bounds first, a plan where they do not decide): the bounds need not grow with the batch or
  the image size, because each op's split is chosen for its shape (YOLOv4-P5 on gc200: (a) rules
  out batch 2 and 4 but not 3). ``exact`` only where the cost model declares its bounds
  monotone in the shape (``CostModel.bounds_monotone``) and the answer fits, every value above it
  below the ceiling was proven not to fit and the ceiling was ruled out by (a)/(b) -- or, on a
  cost model whose splits hold whole tensors (``CostModel.stores_whole_tensors``), when the
  monotone certificate (m) (:mod:`tilec.plan.ceiling`) rules out a value within ``CLOSE`` of the
  ceiling and every value below it was proven not to fit; otherwise a
  ``bound`` whose note says how far above the answer every value was proven not to fit. At most
  ``GROW_REACH`` x the batch / ``SIZE_REACH`` x the height; an answer at the cap is a ``bound``
  ("at least N", search capped).
* SRAM per tile: :func:`_min_bytes` from the compiled size down (the bounds' floor checked
  first), same ``exact`` rule.
* precision: the highest of the target's precisions that fits -- those above the compiled one,
  highest first, else the compiled one; ``exact`` when every precision above it was proven not
  to fit.

``bound``: the answer fits but a value that would change it was left undecided; ``unknown``:
nothing was found to fit and not everything was ruled out. Every probe is recorded in order, with
how it was decided (``by``: "bounds", "plan", or "skipped" when the budget was spent).

The effort is counted, not timed, so the answers do not depend on the machine: per question at
most ``PLANS`` re-plans and ``BOUNDS`` bound checks, and the CP-SAT proofs and exact layouts run
on a deterministic budget. ``seconds`` (at least ``SAFETY_FLOOR``) is only a wall-clock safety
net, shared out so that each question keeps a part of it; an answer it cut says so (and may
differ between runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, WhatIf
from tilec.plan.parallel import pmap
from tilec.plan.pipeline import Options, Outcome
from tilec.plan.whatif_search import (  # noqa: F401  (FITS/NO/UNKNOWN, PLANS, ... re-exported)
    BEYOND,
    BOUNDS,
    FITS,
    LETTER,
    NO,
    PLANS,
    SCAN,
    UNKNOWN,
    Knob,
    Probe,
    Prober,
    _above_note,
    _bounds_monotone,
    _certifiable,
    _grow_reach,
    _largest,
    _largest_up,
    _reach_one,
    _span,
    _up_note,
)

SRAM_REACH = 64
"""The SRAM search looks no higher than this many times the compiled bytes per tile (modelling
choice: the zoo's answers lie within 2x; beyond 64x a "size" is no longer a tile)."""

GROW_REACH = 64
"""Headroom (a plan that fits): the batch search looks no higher than this many times the
compiled batch (modelling choice: 64x the data of the compiled run; a user asking for more is
sizing a different deployment, and the answer then says "at least", search capped)."""
SIZE_REACH = 8
"""Headroom: the image-size search looks no higher than this many times the compiled height
(modelling choice: 8x the side is 64x the pixels, the same data volume as ``GROW_REACH``)."""

SAFETY_FLOOR = 30.0
"""Seconds the wall-clock safety limit allows at least (modelling choice: the probe budgets above
take 3-8 s on the zoo's cases on a 2-core machine; the limit is there for what they cannot bound,
e.g. a model whose every precision probe lowers it again, and should never decide an answer
otherwise)."""

# --------------------------------------------------------------------------- the search
def what_if(info: GraphInfo, target: Target, base: Outcome, *,
            rebuild: Callable[..., GraphInfo], options: Options, seconds: float = 30.0,
            progress: Callable[[str, float], None] | None = None,
            follow: dict[str, Callable[[WhatIf], None]] | None = None) -> list[WhatIf]:
    """Answers to the four questions (see the module docstring): what would fit instead, for a
    model that does not fit; how far it can grow (the headroom), for one that fits. A model that
    does not fit also gets "chips needed" (tilec.plan.multichip).

    ``seconds`` sets the wall-clock safety limit of the whole search -- ``SAFETY_FLOOR`` at
    least -- not its budget: the budget is a count of probes, so the answers are reproducible.
    ``follow`` (model that does not fit only): per question, more work on its answer done right
    after it, in the same worker (e.g. the mixed precision next to the uniform one).

    The questions are independent (each has its own probe budget; nothing one learns changes
    another's answer), so they run in ``options.settings.workers`` forked processes
    (:func:`tilec.plan.parallel.pmap`), answers in the fixed order."""
    seconds = max(float(seconds), SAFETY_FLOOR)
    probe_opts = replace(options, settings=SolveSettings(
        time_limit=options.settings.time_limit,
        deterministic_limit=max(0.05, options.settings.deterministic_limit / 3),
        seed=options.settings.seed, workers=options.settings.workers), layout_exact=True,
        use_cpsat=False, greedy_passes=0, fit_only=True)
    prober = Prober(probe_opts, time.perf_counter() + seconds, progress)
    meta = dict(info.meta)
    base_probe = _base_probe(base)
    follow = follow or {}
    # Precision last among the four: on a target whose compiled precision is quantized, each of
    # its probes lowers the model again (the other questions re-use the lowered graph).
    if base.plan.status == STATUS_FITS:  # headroom: how far it can grow
        questions: list[tuple[Callable[[], WhatIf], Callable[[WhatIf], None] | None]] = [
            (lambda: _grow_batch(prober, meta, target, rebuild, base_probe), None),
            (lambda: _grow_image_size(prober, meta, target, rebuild, base_probe), None),
            (lambda: _min_bytes(info, target, base, prober), None),
            (lambda: _precision_up(prober, meta, target, rebuild), None),
        ]
    else:
        questions = [
            (lambda: _max_batch(prober, meta, target, rebuild, base_probe),
             follow.get("max_batch")),
            (lambda: _max_image_size(prober, meta, target, rebuild, base_probe),
             follow.get("max_image_size")),
            (lambda: _min_bytes(info, target, base, prober), follow.get("min_bytes_per_tile")),
            (lambda: _min_precision(prober, meta, target, rebuild, base_probe),
             follow.get("min_precision")),
            # chips needed: asked last, with whatever the safety limit has left
            (lambda: _chips_needed(info, target, base, prober), follow.get("chips_needed")),
        ]
    end = time.perf_counter() + seconds
    n = len(questions)
    workers = max(1, int(options.settings.workers))

    def one(i: int) -> WhatIf:
        question, then = questions[i]
        # the safety limit is shared: each question may use its share of what is left over the
        # questions still to come (in one process: exactly that), so a slow one cannot leave a
        # later one without any probe
        still = -(-(n - i) // workers)
        prober.deadline = time.perf_counter() + (end - time.perf_counter()) / max(1, still)
        w = question()
        if prober.cut and w.status != "exact":
            w.note = _join(w.note, f"stopped by the {seconds:g} s wall-clock safety limit (this "
                           "answer may differ between runs)")
        if then is not None:
            then(w)
        return w

    def quiet() -> None:  # in a forked worker: the progress display is the parent's
        prober.progress = None

    return pmap(one, list(range(n)), workers,
                (lambda k: progress("what-if", k / n)) if progress else None, child=quiet)


def _chips_needed(info: GraphInfo, target: Target, base: Outcome, prober: Prober) -> WhatIf:
    """How many chips like this one a cut of the model into stages needs (tilec.plan.multichip;
    the question lives there with the rest of the multi-chip search)."""
    from tilec.plan.multichip import chips_needed

    prober.cut = False  # this question's own wall-clock cut, not the previous one's
    return chips_needed(info, target, prober.options, expired=lambda: prober.expired,
                        base_proven=base.plan.status == STATUS_DOES_NOT_FIT)


def _base_probe(base: Outcome) -> Probe:
    """The compiled configuration, as a probe."""
    plan = base.plan
    if plan.status == STATUS_FITS:
        peak = plan.memory.peak_bytes if plan.memory else None
        return Probe("compiled", FITS, peak=peak, by="plan")
    if plan.status == STATUS_DOES_NOT_FIT and plan.diagnosis:
        return Probe("compiled", NO, evidence=plan.diagnosis.evidence.kind, by="plan")
    return Probe("compiled", UNKNOWN, evidence="search limit", by="plan")


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _max_batch(prober: Prober, meta: dict, target: Target, rebuild: Callable[..., GraphInfo],
               base: Probe) -> WhatIf:
    prober.budget("max_batch")
    batch = int(meta.get("batch") or 1)
    hi = batch - 1

    def make(b: int):
        return lambda: (rebuild(batch=b), target)

    knob = Knob(prober, make, lambda b: b)
    _reach_one(prober, hi)
    ans = _largest(knob, hi) if hi >= 1 else None
    status, note = _above_note(ans, hi, knob.seen, base, str, prefix="batch ")
    return WhatIf("max_batch", ans, status, note, knob.records)


MAX_UNIT = 64
"""Largest size step tried when the network's stride is unknown (modelling choice: the total
downsampling of standard vision networks is at most 64, usually 32)."""


def size_unit(meta: dict) -> tuple[int, str] | None:
    """The step of the image-size searches and how to describe it, or None (no image input).

    The network's stride when known. Otherwise -- a fully convolutional network whose output is
    as large as its input declares none -- the largest power of two (at most :data:`MAX_UNIT`)
    dividing both compiled sides: sizes that are multiples of it keep every downsampling the
    compiled size passed exact, and the search below then halves and bisects over them."""
    size = meta.get("image_size")
    if not size:
        return None
    stride = meta.get("stride")
    if stride:
        return int(stride), f"multiples of the stride {int(stride)}"
    h, w = int(size[0]), int(size[1])
    unit = 1
    while unit < MAX_UNIT and h % (2 * unit) == 0 and w % (2 * unit) == 0:
        unit *= 2
    return unit, (f"multiples of {unit} (the network's stride is unknown: the largest power of "
                  f"two up to {MAX_UNIT} dividing the compiled size)")


def _max_image_size(prober: Prober, meta: dict, target: Target,
                    rebuild: Callable[..., GraphInfo], base: Probe) -> WhatIf:
    prober.budget("max_image_size")
    found = size_unit(meta)
    if found is None:
        return WhatIf("max_image_size", None, "unknown", "the model has no image input", [])
    stride, described = found
    size = meta["image_size"]
    h, w = int(size[0]), int(size[1])
    hi = (h - 1) // stride  # the largest multiple of the stride below h

    def dims(k: int) -> list[int]:
        hk = k * stride
        return [hk, max(stride, round(w * hk / h / stride) * stride)]

    def make(k: int):
        return lambda: (rebuild(image_size=tuple(dims(k))), target)

    def unit(d: list[int]) -> str:
        return str(d[0]) if d[0] == d[1] else f"{d[0]}×{d[1]}"

    knob = Knob(prober, make, dims)
    _reach_one(prober, hi)
    ans = _largest(knob, hi) if hi >= 1 else None
    status, note = _above_note(ans, hi, knob.seen, base,
                               lambda k: unit(dims(k) if k <= hi else [h, w]))
    note = _join(note, described)
    return WhatIf("max_image_size", dims(ans) if ans else None, status, note, knob.records)


def _min_precision(prober: Prober, meta: dict, target: Target,
                   rebuild: Callable[..., GraphInfo], base: Probe) -> WhatIf:
    prober.budget("min_precision")
    precision = meta.get("precision")
    supported = list(target.precisions)
    if precision not in supported:
        return WhatIf("min_precision", None, "unknown",
                      f"the compiled precision {precision} is not one of the target's", [])
    lower = supported[supported.index(precision) + 1:]
    if not lower:
        return WhatIf("min_precision", None, "exact",
                      f"{target.name} supports nothing below {precision}", [])
    order: list[Probe] = []
    answer = None
    for p in lower:
        if not prober.can_probe:
            break
        pr = prober.probe(p, lambda p=p: (rebuild(precision=p), target))
        order.append(pr)
        if pr.result == FITS:
            answer = p
            break
    tried = {pr.value: pr for pr in order}
    above = lower[: lower.index(answer)] if answer else lower
    proven = [p for p in above if p in tried and tried[p].proven]
    rest = [p for p in above if p not in proven]
    parts = []
    if proven:
        parts.append("proven not to fit: " + ", ".join(f"{p} ({tried[p].letter})"
                                                       for p in proven))
    if rest:
        parts.append(", ".join(rest) + (" undecided" if all(p in tried for p in rest)
                                        else " not checked"))
    if meta.get("precision_map"):
        parts.append("one precision throughout (the per-layer map is not applied)")
    status = "exact" if not rest else ("bound" if answer else "unknown")
    return WhatIf("min_precision", answer, status, "; ".join(parts),
                  [p.record() for p in order])



def _grow_batch(prober: Prober, meta: dict, target: Target,
                rebuild: Callable[..., GraphInfo], base: Probe) -> WhatIf:
    """The largest batch that fits at the compiled image size and precision (headroom)."""
    prober.budget("max_batch")
    batch = int(meta.get("batch") or 1)
    cap = batch * GROW_REACH

    def make(b: int):
        return lambda: (rebuild(batch=b), target)

    knob = Knob(prober, make, lambda b: b, monotone=_bounds_monotone(target),
                certify=_certifiable(target))
    knob.seen[batch] = base
    _grow_reach(prober, batch, cap)
    ans, ceiling, looked = _largest_up(knob, batch, cap)
    status, note = _up_note(knob, ans, batch, cap, ceiling, looked, str, "batch ", "batch")
    return WhatIf("max_batch", ans, status, note, knob.records)


def _grow_image_size(prober: Prober, meta: dict, target: Target,
                     rebuild: Callable[..., GraphInfo], base: Probe) -> WhatIf:
    """The largest image size (multiples of the stride, aspect kept) that fits at the compiled
    batch and precision (headroom)."""
    prober.budget("max_image_size")
    found = size_unit(meta)
    if found is None:
        return WhatIf("max_image_size", None, "unknown",
                      "not searched: the model has no image input", [])
    stride, described = found
    size = meta["image_size"]
    h, w = int(size[0]), int(size[1])
    lo = max(1, h // stride)  # the compiled size (or the multiple just below it)
    cap = lo * SIZE_REACH

    def dims(k: int) -> list[int]:
        if k == lo:
            return [h, w]
        hk = k * stride
        return [hk, max(stride, round(w * hk / h / stride) * stride)]

    def make(k: int):
        return lambda: (rebuild(image_size=tuple(dims(k))), target)

    def unit(k: int) -> str:
        d = dims(k)
        return str(d[0]) if d[0] == d[1] else f"{d[0]}×{d[1]}"

    knob = Knob(prober, make, dims, monotone=_bounds_monotone(target),
                certify=_certifiable(target))
    knob.seen[lo] = base
    _grow_reach(prober, lo, cap)
    ans, ceiling, looked = _largest_up(knob, lo, cap)
    status, note = _up_note(knob, ans, lo, cap, ceiling, looked, unit, "", "height")
    note = _join(note, described)
    return WhatIf("max_image_size", dims(ans), status, note, knob.records)


def _precision_up(prober: Prober, meta: dict, target: Target,
                  rebuild: Callable[..., GraphInfo]) -> WhatIf:
    """The highest of the target's precisions that fits (headroom): those above the compiled
    one, highest first, until one fits; else the compiled one. ``exact`` when every precision
    above the answer was proven not to fit."""
    prober.budget("min_precision")
    precision = meta.get("precision")
    supported = list(target.precisions)
    if precision not in supported:
        return WhatIf("min_precision", None, "unknown",
                      f"the compiled precision {precision} is not one of the target's", [])
    higher = supported[: supported.index(precision)]
    if not higher:
        return WhatIf("min_precision", precision, "exact",
                      f"{precision} is the highest {target.name} supports", [])
    order: list[Probe] = []
    answer = precision
    for p in higher:
        if not prober.can_probe:
            break
        pr = prober.probe(p, lambda p=p: (rebuild(precision=p), target))
        order.append(pr)
        if pr.result == FITS:
            answer = p
            break
    tried = {pr.value: pr for pr in order}
    above = higher[: higher.index(answer)] if answer in higher else higher
    proven = [p for p in above if p in tried and tried[p].proven]
    rest = [p for p in above if p not in proven]
    parts = []
    if proven:
        parts.append("proven not to fit: " + ", ".join(f"{p} ({tried[p].letter})"
                                                       for p in proven))
    if rest:
        parts.append(", ".join(rest) + (" undecided" if all(p in tried for p in rest)
                                        else " not checked"))
    if answer == supported[0] and answer in tried:
        parts.append(f"{answer} is the highest {target.name} supports")
    if meta.get("precision_map"):
        parts.append("one precision throughout (the per-layer map is not applied)")
    return WhatIf("min_precision", answer, "bound" if rest else "exact", "; ".join(parts),
                  [p.record() for p in order])


def _kib(x: int) -> str:
    return f"{x / 1024:,.0f} KiB" if x % 1024 == 0 else f"{x:,} B"


def _min_bytes(info: GraphInfo, target: Target, base: Outcome, prober: Prober) -> WhatIf:
    """Smallest bytes per tile (in ``grain`` steps) at which this configuration fits."""
    prober.budget("min_bytes_per_tile")
    current = int(target.bytes_per_tile)
    grain = 1024 if current >= 64 * 1024 else max(1, current // 64)
    reserved = int(target.reserved_bytes_per_tile)
    a, b = base.bounds["a"], base.bounds["b"]
    need0 = max(b.needed, -(-a.needed // int(target.tiles))) + reserved

    def up(x: int) -> int:
        return -(-x // grain) * grain

    fb = base.bounds.get("io")
    if fb is not None and fb.holds:
        # the framebuffer's need and size do not depend on the SRAM per tile
        return WhatIf("min_bytes_per_tile", None, "exact",
                      f"the I/O framebuffer is what does not fit ({fb.needed:,} bytes needed, "
                      f"{fb.capacity:,} held), whatever the SRAM per tile", [])
    knob = Knob(prober, lambda x: lambda: (info, target.with_bytes_per_tile(x)), lambda x: x)
    seen = knob.seen
    seen[current] = _base_probe(base)
    decide = knob.decide
    if seen[current].result == FITS:
        # a plan that fits (headroom): the compiled size is the first answer, and the largest
        # size below the bounds' need the first failure (checked by the bounds alone: it is
        # ruled out at once when the splits do not depend on the SRAM size)
        floor = up(need0) - grain
        if floor > 0 and prober.can_probe:
            decide(floor, plan=False)
        return _min_bytes_down(knob, target, current, grain, reserved, bisect=True)

    # upwards from the lower bounds and the compiled plan's fullest tile (what its placement
    # needs; a smaller size is still reached from above): each failure says where to look
    # next -- its own bounds' need, or its best attempt's peak -- but at least 1/64 more,
    # doubling with every failure
    memory = getattr(base.plan, "memory", None)
    tried = (memory.peak_bytes + reserved) if memory is not None else 0
    x = up(max(current + 1, need0, tried))
    fit: int | None = None
    fails = 0
    reach = up(current * SRAM_REACH)
    while prober.can_probe and x <= reach:
        p = decide(x)
        if p.result == FITS:
            fit = x
            break
        if p.by == "skipped":
            break
        fails += 1
        hint = max(p.peak or 0, p.need or 0) + reserved
        x = up(max(x + grain, hint, x + x * 2 ** (fails - 1) // 64))
        if x > reach and fails and reach not in seen:
            x = reach  # the last size the search looks at
    if fit is None:
        tried = max((v for v in seen if v != current), default=current)
        note = f"nothing up to {_kib(tried)} was found to fit"
        if x > reach:
            note += (f"; the search looks no higher than {SRAM_REACH}x the compiled size "
                     f"({_kib(reach)})")
        return WhatIf("min_bytes_per_tile", None, "unknown", note, knob.records)

    return _min_bytes_down(knob, target, fit, grain, reserved)


def _min_bytes_down(knob: Knob, target: Target, fit: int, grain: int, reserved: int, *,
                    bisect: bool = False) -> WhatIf:
    """From ``fit`` (a size that fits: the compiled one, or the first found above it) down to
    the smallest size that fits, and the answer's status and note.

    ``bisect``: halve the gap to the largest failure below from the start (a plan that fits:
    its compiled size is usually far above the answer, the bounds' floor far below it) instead
    of first stepping one grain down (a size found from below is usually close to the answer)."""
    seen, decide, prober = knob.seen, knob.decide, knob.prober

    def up(x: int) -> int:
        return -(-x // grain) * grain

    # downwards: a fitting plan needs its own peak, so the size it implies is tried next (it
    # usually fits again, with the same plan); once that is the size itself, one grain less
    # (a proof there makes the answer exact); while those fit, steps that double (a fit-only
    # plan often fills the size it is given: one grain at a time would spend the budget on a
    # walk); after the first failure, bisection
    def below(y: int) -> int:
        # the compiled size when it did not fit; 0 (nothing known below) when it did
        return max((v for v, p in seen.items() if v < y and p.result != FITS), default=0)

    lo = below(fit)
    jump = grain
    tight = False  # the answer is the size its own plan implied: one grain less is tried next
    while prober.can_probe:
        implied = up((seen[fit].peak or 0) + reserved)
        from_plan = False
        if implied < fit and implied not in seen:
            # even below a failure: the plan found here needs only that much, and a smaller
            # size that fits is worth knowing (feasibility is not monotone in SRAM)
            mid, from_plan = implied, True
        elif fit - lo <= grain:
            break
        elif bisect and not tight:
            mid = lo + max(1, (fit - lo) // (2 * grain)) * grain
        else:
            mid = max(fit - jump, lo + grain)
        p = decide(mid)
        tight = from_plan and p.result == FITS
        if p.result == FITS:
            if not bisect and mid == fit - jump:
                jump *= 2
            fit = mid
            lo = below(fit)
        elif p.by == "skipped" or (p.by == "bounds" and p.result == UNKNOWN):
            break  # no plan left to decide it
        else:
            lo, bisect = max(lo, mid), True
            if mid == fit - grain and not p.proven:
                break  # undecided next to the answer: smaller sizes are not worth a probe
    lo_probe = seen.get(lo, Probe(lo, UNKNOWN, by="skipped"))
    monotone = bool(getattr(target.cost_model, "sram_independent", False))
    exact = fit - lo <= grain and lo_probe.proven and monotone
    how = f"proven not to fit ({lo_probe.letter})" if lo_probe.proven else "undecided"
    if lo <= 0:  # nothing below the answer was decided
        notes = [f"sizes below {_kib(fit)} not checked"]
    else:
        gap = _span([_kib(lo + grain), _kib(fit - grain)])
        notes = [f"{_kib(lo)} {how}" + ("" if fit - lo <= grain else f"; {gap} not checked")]
    fails_above = sorted(v for v, p in seen.items() if v > fit and p.result != FITS)
    if monotone:
        if lo_probe.proven:
            notes.append("so is every smaller size (the splits do not depend on the SRAM size)")
    else:
        notes.append("smaller sizes not all checked (the split choices change with the SRAM "
                     "size)")
    if fails_above:
        notes.append(f"not monotone: {_span([_kib(v) for v in fails_above])} did not fit "
                     "(more SRAM lets the split policy pick faster, larger splits)")
    return WhatIf("min_bytes_per_tile", fit, "exact" if exact else "bound", "; ".join(notes),
                  knob.records)
