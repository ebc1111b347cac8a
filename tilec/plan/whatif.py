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
  below the ceiling was proven not to fit and the ceiling was ruled out by (a)/(b); otherwise a
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
from dataclasses import dataclass, replace
from typing import Any

from tilec.costmodel import Target
from tilec.errors import InputError
from tilec.opinfo import GraphInfo
from tilec.plan.bounds import Bound
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, WhatIf
from tilec.plan.partition import Partition, partition
from tilec.plan.pipeline import Options, Outcome, lower_bounds, run

FITS, NO, UNKNOWN = "fits", "does_not_fit", "unknown"

PLANS = {"max_batch": 4, "max_image_size": 6, "min_precision": 4, "min_bytes_per_tile": 8}
"""Re-plans per question (modelling choice: a re-plan costs 0.3-0.6 s on YOLOv4-P5 at 896 px on
gc200; these let every question of the zoo's out-of-memory cases in benchmarks/whatif_time.py
finish exact, while bounding the whole search to a few seconds)."""
BOUNDS = {"max_batch": 8, "max_image_size": 12, "min_precision": 4, "min_bytes_per_tile": 8}
"""Checks by the bounds alone per question (a partition and (a)/(b): 0.1-0.2 s each)."""
SCAN = 6
"""Values checked one by one from the top before a search takes doubling steps."""
SRAM_REACH = 64
"""The SRAM search looks no higher than this many times the compiled bytes per tile (modelling
choice: the zoo's answers lie within 2x; beyond 64x a "size" is no longer a tile)."""

GROW_REACH = 64
"""Headroom (a plan that fits): the batch search looks no higher than this many times the
compiled batch (modelling choice: 64x the data of the compiled run; a user asking for more is
sizing a different deployment, and the answer then says "at least", search capped)."""
BEYOND = 4
"""Values a headroom search checks past the bounds' ceiling (the bounds need not grow with the
shape). Modelling choice: a fixed count keeps the effort counted, not timed (YOLOv4-P5 on gc200:
batch 3 lies between two values (a) rules out; checking every value up to twice the ceiling cost
47 image sizes and hit the wall-clock safety limit)."""
SIZE_REACH = 8
"""Headroom: the image-size search looks no higher than this many times the compiled height
(modelling choice: 8x the side is 64x the pixels, the same data volume as ``GROW_REACH``)."""

SAFETY_FLOOR = 30.0
"""Seconds the wall-clock safety limit allows at least (modelling choice: the probe budgets above
take 3-8 s on the zoo's cases on a 2-core machine; the limit is there for what they cannot bound,
e.g. a model whose every precision probe lowers it again, and should never decide an answer
otherwise)."""

LETTER = {"chip_capacity": "a", "op_too_large": "b", "solver_infeasible": "c"}


@dataclass
class Probe:
    """One value decided (or not)."""

    value: Any
    result: str
    evidence: str | None = None  # the proof's kind for "does_not_fit"; why, for "unknown"
    peak: int | None = None  # bytes on the fullest tile of the plan tried (re-plans only)
    by: str = "bounds"  # "bounds" (partition + (a)/(b)), "plan" (a re-plan) or "skipped"
    need: int | None = None  # bytes per tile the lower bounds need at least (not recorded)

    def record(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "result": self.result, "by": self.by}
        if self.evidence:
            d["evidence"] = self.evidence
        if self.peak is not None:
            d["peak_bytes"] = self.peak
        return d

    @property
    def proven(self) -> bool:
        return self.result == NO

    @property
    def letter(self) -> str:
        return LETTER.get(self.evidence or "", "?")


class Prober:
    """Decides values: bounds first, a re-plan when they do not decide and the budget allows."""

    def __init__(self, options: Options, deadline: float,
                 progress: Callable[[str, float], None] | None) -> None:
        self.options = options
        self.deadline = deadline
        self.progress = progress
        self.count = 0
        self.plans_left = 0
        self.bounds_left = 0
        self.cut = False  # the wall-clock safety limit stopped a search
        self.last_built: tuple | None = None  # what the last undecided bounds probe built

    def budget(self, question: str) -> None:
        self.plans_left, self.bounds_left = PLANS[question], BOUNDS[question]
        self.cut = False

    @property
    def expired(self) -> bool:
        if time.perf_counter() > self.deadline:
            self.cut = True
        return self.cut

    @property
    def can_probe(self) -> bool:
        return not self.expired and (self.bounds_left > 0 or self.plans_left > 0)

    @staticmethod
    def bounds_only(info: GraphInfo, target: Target, part: Partition
                    ) -> tuple[str | None, int, dict[str, Bound]]:
        """(evidence kind or None, bytes per tile the bounds need at least, the bounds).

        The need is the larger of (b) and (a) spread over all tiles, so ``need + reserved`` is
        where the SRAM search looks next."""
        bounds = lower_bounds(info, target, part)
        b, a = bounds["b"], bounds["a"]
        need = max(b.needed, -(-a.needed // int(target.tiles)))
        kind = next((bounds[k].kind for k in ("io", "b", "a") if k in bounds
                     and bounds[k].holds), None)
        return kind, need, bounds

    def probe(self, value: Any, make: Callable[[], tuple[GraphInfo, Target]], *,
              plan: bool = True, built: tuple | None = None) -> Probe:
        """Decide ``value``; ``make()`` builds its graph and target. With ``plan=False`` only
        the bounds are tried; ``built`` is what such a probe left behind (see :class:`Knob`)."""
        self.count += 1
        if self.progress:
            self.progress("what-if", min(0.99, self.count / 24))
        # a probe that stops at the bounds costs a bound check, one that goes on to a plan
        # costs a plan (its partition is part of it)
        plan = plan and self.plans_left > 0
        if self.expired or (self.bounds_left <= 0 and not plan):
            return Probe(value, UNKNOWN, evidence="probe budget spent", by="skipped")
        if built is None:
            try:
                kind, need, payload = self.check_bounds(make)
            except InputError as exc:
                return Probe(value, UNKNOWN, evidence=f"cannot build: {exc}", by="skipped")
            if kind is not None or not plan:
                if self.bounds_left > 0:
                    self.bounds_left -= 1
                else:
                    self.plans_left -= 1
            if kind is not None:
                return Probe(value, NO, evidence=kind, by="bounds", need=need)
            built = self.last_built = (need, payload)
        need, payload = built
        if not plan:
            return Probe(value, UNKNOWN, evidence="bounds do not decide; not planned",
                         by="bounds", need=need)
        self.plans_left -= 1
        p = self.plan(value, payload)
        p.need = need
        return p

    def check_bounds(self, make: Callable[[], tuple[GraphInfo, Target]]
                     ) -> tuple[str | None, int, Any]:
        """Build the value's graph and target, partition, and try the bounds: (evidence kind or
        None, the bounds' need per tile, what a plan of this value re-uses)."""
        info, target = make()
        part = partition(info, target)
        kind, need, bounds = self.bounds_only(info, target, part)
        return kind, need, (info, target, part, bounds)

    def plan(self, value: Any, payload: Any) -> Probe:
        """Re-plan a value the bounds did not decide (``payload`` from :meth:`check_bounds`)."""
        info, target, part, bounds = payload
        out: Outcome = run(info, target, options=self.options, part=part, bounds=bounds)
        peak = out.plan.memory.peak_bytes if out.plan.memory else None
        if out.plan.status == STATUS_FITS:
            return Probe(value, FITS, peak=peak, by="plan")
        ev = out.plan.diagnosis.evidence.kind if out.plan.diagnosis else None
        return Probe(value, NO if out.plan.status == STATUS_DOES_NOT_FIT else UNKNOWN,
                     evidence=ev, peak=peak, by="plan")


class Knob:
    """The probes of one question, by value: each value is decided at most once by the bounds
    and at most once by a plan (a bounds-only probe keeps what it built for the plan)."""

    def __init__(self, prober: Prober, make: Callable[[Any], Callable[[], tuple]],
                 label: Callable[[Any], Any], monotone: bool = False) -> None:
        self.prober, self.make, self.label = prober, make, label
        # do the bounds (a)/(b) only grow with this knob? (the cost model says; see BEYOND)
        self.monotone = monotone
        self.seen: dict[Any, Probe] = {}
        self.order: list[Probe] = []
        self._built: dict[Any, tuple] = {}

    def decide(self, k: Any, *, plan: bool = True) -> Probe:
        old = self.seen.get(k)
        again = old is None or old.by == "skipped" or (
            plan and old.by == "bounds" and old.result == UNKNOWN)
        if not again:
            return old
        self.prober.last_built = None
        p = self.prober.probe(self.label(k), self.make(k), plan=plan, built=self._built.get(k))
        if p.by == "bounds" and p.result == UNKNOWN and self.prober.last_built is not None:
            self._built = {k: self.prober.last_built}  # one kept: graphs are large
        elif p.by == "plan":
            self._built.pop(k, None)
        if old is not None:
            self.order.remove(old)
        self.seen[k] = p
        self.order.append(p)
        return p

    @property
    def records(self) -> list[dict[str, Any]]:
        return [p.record() for p in self.order]


# ----------------------------------------------------------------------- integer knobs
def _largest(knob: Knob, hi: int) -> int | None:
    """The largest ``k`` in ``1 .. hi`` that fits.

    1. Bounds only, from the top down (one by one for ``SCAN`` values, then in doubling steps,
       the last step landing on 1), then bisection to the largest value they do not rule out.
    2. Plans from there down the same way, then bisection between the first value that fits and
       the lowest failure above it.
    3. With what is left of the budget, the values above the answer not yet checked, nearest
       first (so that "every larger value is proven not to fit" holds as often as possible)."""
    prober = knob.prober

    def descend(start: int, plan: bool) -> tuple[int | None, int, int]:
        """From ``start`` down: the first k not ruled out (plan=False) / that fits (plan=True),
        or None; the lowest failure above it; and where the search stopped (0: below 1,
        else the value it could not probe -- budget spent)."""
        k, step, n, low_fail = start, 1, 0, hi + 1
        while k >= 1:
            if not prober.can_probe:
                return None, low_fail, k
            p = knob.decide(k, plan=plan)
            if (p.result != NO) if not plan else (p.result == FITS):
                return k, low_fail, k
            if p.by == "skipped" or (plan and p.by == "bounds" and p.result == UNKNOWN):
                return None, low_fail, k  # budget spent (no plan left to decide k)
            low_fail = k
            n += 1
            if n >= SCAN:
                step *= 2
            k = max(1, k - step) if k > 1 else 0
        return None, low_fail, 0

    top, proven_top, stop = descend(hi, plan=False)
    if top is None and stop == 0:  # ruled out down to 1: check what the steps skipped
        return _fill(knob, 0, hi)
    if top is None:  # no bound checks left: plans from where they stopped
        top = stop
    while proven_top - top > 1 and prober.bounds_left > 0 and not prober.expired:
        mid = (top + proven_top) // 2
        if knob.decide(mid, plan=False).result == NO:
            proven_top = mid
        else:
            top = mid
    fit, low_fail, stop = descend(top, plan=True)
    if fit is None:
        if stop == 0:
            return _fill(knob, 0, hi)
        return _floor(knob)
    while low_fail - fit > 1 and prober.can_probe:
        mid = (fit + low_fail) // 2
        if knob.decide(mid).result == FITS:
            fit = mid
        else:
            low_fail = mid
    return _fill(knob, fit, hi)


def _reach_one(prober: Prober, hi: int) -> None:
    """Enough bound checks for the descent from ``hi`` to reach 1 (``SCAN`` single steps, then
    doubling ones) and bisect a little: from batch 64 the fixed budget ran out at 52, with the
    answer near 40 never looked at. Bound checks are the cheap probes (0.1-0.2 s)."""
    prober.bounds_left = max(prober.bounds_left, SCAN + max(hi, 1).bit_length() + 2)


def _floor(knob: Knob) -> int | None:
    """The budget ran out on the way down with nothing found to fit: try the smallest value
    (one plan beyond the budget, unless the wall-clock limit is reached).

    Far below a large compiled value (ResNet-50 at batch 64) the steps from the top spend the
    budget long before they reach the answer, and "none in the searched range" then read as if
    batch 1 did not fit either. Knowing that 1 fits turns it into an answer (a ``bound``: the
    values between stay undecided, and the note says so)."""
    prober = knob.prober
    if prober.expired:
        return None
    seen = knob.seen.get(1)
    if seen is not None and seen.by != "skipped" and not (
            seen.by == "bounds" and seen.result == UNKNOWN):
        return 1 if seen.result == FITS else None
    prober.plans_left = max(prober.plans_left, 0) + 1
    return 1 if knob.decide(1).result == FITS else None


def _fill(knob: Knob, fit: int, hi: int) -> int | None:
    """Check the values above ``fit`` (0: none fits) that the search skipped, nearest first;
    should one fit after all (feasibility is not monotone), it becomes the answer and the
    values above it are checked in turn. Returns the answer (None for 0)."""
    k = fit + 1
    while k <= hi and knob.prober.can_probe:
        p = knob.seen.get(k)
        if p is None or (p.result == UNKNOWN and p.by == "bounds"):
            p = knob.decide(k)
        if p.result == FITS:
            fit = k
        k += 1
    return fit or None


def _span(values: list[Any]) -> str:
    """``"768-864"`` or ``"768"`` (first and last of a run of values)."""
    if not values:
        return ""
    a, b = values[0], values[-1]
    return str(a) if a == b else f"{a}–{b}"


def _above_note(answer: int | None, hi: int, seen: dict[Any, Probe], compiled: Probe,
                name: Callable[[int], str], prefix: str = "") -> tuple[str, str]:
    """Status and note for an integer knob from what is known about every value above
    ``answer`` up to the compiled one (``hi + 1``). ``name(k)`` names value ``k``; ``prefix``
    starts each list ("batch " gives "batch 5–8, 10")."""
    lo = (answer or 0) + 1
    known: dict[int, Probe | None] = {k: p for k, p in seen.items() if lo <= k <= hi}
    known[hi + 1] = compiled
    parts, open_ = _runs(lo, hi + 1, known, name, prefix)
    note = "; ".join(parts)
    if open_:
        return ("bound" if answer is not None else "unknown"), note
    return "exact", note


def _runs(lo: int, hi: int, known: dict[int, Probe | None], name: Callable[[int], str],
          prefix: str, last: str = "") -> tuple[list[str], bool]:
    """The note's parts for the values ``lo .. hi`` (``known``: value -> its probe; a value
    absent or None was not checked), consecutive values with the same outcome as one span:
    ``["proven not to fit: batch 6–7 (c), 8–10 (a)", "batch 5 undecided", "batch 2–4 not
    checked"]``, and whether any value is left open (not proven). ``last`` is added to the last
    proven span (e.g. "and above"). Works in the number of values checked, not in ``hi - lo``:
    a batch of 10^11 must not build a list of every smaller batch."""

    def tag(p: Probe | None) -> str:
        if p is None:
            return "unchecked"
        return p.letter if p.proven else "undecided"

    runs: list[tuple[str, list[int]]] = []  # outcome, [first, last] of consecutive values

    def add(t: str, a: int, b: int) -> None:
        if runs and runs[-1][0] == t and runs[-1][1][-1] == a - 1:
            runs[-1][1][-1] = b
        else:
            runs.append((t, [a, b]))

    k = lo
    for v in sorted(v for v in known if lo <= v <= hi):
        if v > k:
            add("unchecked", k, v - 1)
        add(tag(known[v]), v, v)
        k = v + 1
    if k <= hi:
        add("unchecked", k, hi)

    def span(ks: list[int]) -> str:
        a, b = ks
        return name(a) if a == b else f"{name(a)}–{name(b)}"

    proven = [f"{span(ks)} ({t})" for t, ks in runs if t not in ("undecided", "unchecked")]
    if proven and last:
        proven[-1] += last
    undecided = [span(ks) for t, ks in runs if t == "undecided"]
    unchecked = [span(ks) for t, ks in runs if t == "unchecked"]
    parts = []
    if proven:
        parts.append("proven not to fit: " + prefix + ", ".join(proven))
    if undecided:
        parts.append(prefix + ", ".join(undecided) + " undecided")
    if unchecked:
        parts.append(prefix + ", ".join(unchecked) + " not checked")
    return parts, bool(undecided or unchecked)


# --------------------------------------------------------------------------- the search
def what_if(info: GraphInfo, target: Target, base: Outcome, *,
            rebuild: Callable[..., GraphInfo], options: Options, seconds: float = 30.0,
            progress: Callable[[str, float], None] | None = None) -> list[WhatIf]:
    """Answers to the four questions (see the module docstring): what would fit instead, for a
    model that does not fit; how far it can grow (the headroom), for one that fits.

    ``seconds`` sets the wall-clock safety limit of the whole search -- ``SAFETY_FLOOR`` at
    least -- not its budget: the budget is a count of probes, so the answers are reproducible."""
    seconds = max(float(seconds), SAFETY_FLOOR)
    probe_opts = replace(options, settings=SolveSettings(
        time_limit=options.settings.time_limit,
        deterministic_limit=max(0.05, options.settings.deterministic_limit / 3),
        seed=options.settings.seed, workers=options.settings.workers), layout_exact=True,
        use_cpsat=False, greedy_passes=0, fit_only=True)
    prober = Prober(probe_opts, time.perf_counter() + seconds, progress)
    meta = dict(info.meta)
    base_probe = _base_probe(base)
    # Precision last: on a target whose compiled precision is quantized, each of its probes
    # lowers the model again (the other questions re-use the lowered graph).
    if base.plan.status == STATUS_FITS:  # headroom: how far it can grow
        questions = [
            lambda: _grow_batch(prober, meta, target, rebuild, base_probe),
            lambda: _grow_image_size(prober, meta, target, rebuild, base_probe),
            lambda: _min_bytes(info, target, base, prober),
            lambda: _precision_up(prober, meta, target, rebuild),
        ]
    else:
        questions = [
            lambda: _max_batch(prober, meta, target, rebuild, base_probe),
            lambda: _max_image_size(prober, meta, target, rebuild, base_probe),
            lambda: _min_bytes(info, target, base, prober),
            lambda: _min_precision(prober, meta, target, rebuild, base_probe),
        ]
    out = []
    end = time.perf_counter() + seconds
    for i, question in enumerate(questions):
        # the safety limit is shared: each question may use what is left over the questions
        # still to come, so a slow one cannot leave a later one without any probe
        prober.deadline = time.perf_counter() + (end - time.perf_counter()) / (len(questions) - i)
        w = question()
        if prober.cut and w.status != "exact":
            w.note = _join(w.note, f"stopped by the {seconds:g} s wall-clock safety limit (this "
                           "answer may differ between runs)")
        out.append(w)
    return out


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


# ------------------------------------------------------------------ headroom (a plan that fits)
def _largest_up(knob: Knob, lo: int, cap: int, beyond: int = BEYOND
                ) -> tuple[int, int | None, int]:
    """The largest ``k`` in ``lo .. cap`` that fits, ``lo`` (the compiled value) fitting.

    1. A ceiling by the bounds alone: doubling from ``lo`` until (a)/(b) rule a value out, then
       bisection down to the smallest value they rule out (0.1-0.2 s a check, no placement).
    2. Plans: bisection between the largest value known to fit and the ceiling (the cap itself
       first when the bounds reach it without ruling anything out).
    3. With what is left of the budget, the values between the answer and the ceiling not yet
       decided, nearest first: should one fit (feasibility is not monotone), it is the answer.

    ``beyond``: how many values past the ceiling step 3 checks (``BEYOND``; ``tilec sweep``,
    which runs one search per image size and precision, checks fewer).

    Returns (answer, ceiling: the smallest value the bounds ruled out or None, the highest value
    the bounds looked at)."""
    prober = knob.prober
    ok, ceiling, k = lo, None, lo  # ok: the largest value the bounds do not rule out
    while k < cap and prober.bounds_left > 0 and not prober.expired:
        k = min(2 * k, cap)
        p = knob.decide(k, plan=False)
        if p.result == NO:
            ceiling = k
            break
        if p.by == "skipped":
            break
        ok = k
    looked = ceiling or ok
    while ceiling is not None and ceiling - ok > 1 and prober.bounds_left > 0 \
            and not prober.expired:
        mid = (ok + ceiling) // 2
        p = knob.decide(mid, plan=False)
        if p.result == NO:
            ceiling = mid
        elif p.by == "skipped":
            break
        else:
            ok = mid
    fit, fail = lo, ceiling
    if fail is None and ok > lo and prober.can_probe:
        p = knob.decide(ok)  # nothing ruled out up to where the bounds looked: try the top
        if p.result == FITS:
            fit = ok
        elif p.by != "skipped":
            fail = ok
    while fail is not None and fail - fit > 1 and prober.can_probe:
        mid = (fit + fail) // 2
        p = knob.decide(mid)
        if p.result == FITS:
            fit = mid
        elif p.by == "skipped" or (p.by == "bounds" and p.result == UNKNOWN):
            break  # no plan left to decide it
        else:
            fail = mid
            if p.by == "bounds":  # ruled out by (a)/(b): a lower ceiling
                ceiling = mid
    top = (ceiling - 1) if ceiling is not None else looked
    fit = _fill(knob, fit, top) or fit
    if ceiling is not None and not knob.monotone and beyond > 0:
        # past the ceiling: the bounds need not grow with the shape, so check some more
        far = min(cap, ceiling + beyond)
        prober.bounds_left = max(prober.bounds_left, far - ceiling)
        for k in range(ceiling + 1, far + 1):
            if prober.expired:
                break
            p = knob.seen.get(k) or knob.decide(k, plan=False)
            if p.result == UNKNOWN and p.by == "bounds" and prober.can_probe:
                p = knob.decide(k)
            if p.result == FITS:
                fit = k
        looked = max(looked, far)
    return fit, ceiling, looked


def _up_note(knob: Knob, answer: int, lo: int, cap: int, ceiling: int | None, looked: int,
             name: Callable[[int], str], prefix: str, unit: str) -> tuple[str, str]:
    """Status and note of an upward search (see :func:`_largest_up`).

    ``exact``: the cost model's bounds grow with the shape (``knob.monotone``), the answer fits,
    every value above it up to the bounds' ceiling was proven not to fit, and the ceiling was
    ruled out by (a)/(b), so every larger value is ruled out with it. Otherwise the values
    checked past the ceiling are listed and the answer is a ``bound``."""
    seen = knob.seen
    notes: list[str] = []
    if ceiling is not None and not knob.monotone and answer > ceiling:
        ceiling = None  # a value past the ceiling fits: the ceiling says nothing
    capped = ceiling is None and answer >= cap
    if capped:
        notes.append(f"at least {name(answer)}: the search stops at {cap // max(lo, 1)}× the "
                     f"compiled {unit} (search capped)")
        status = "bound"
    else:
        monotone = knob.monotone and ceiling is not None
        upper = (ceiling - 1) if monotone else looked
        known: dict[int, Probe | None] = {k: p for k, p in seen.items()
                                          if answer < k <= upper}
        if monotone:
            known[ceiling] = seen[ceiling]
        last = " and above (the bounds only grow)" if monotone else ""
        parts, open_ = _runs(answer + 1, ceiling if monotone else upper, known, name, prefix,
                             last=last)
        notes.extend(parts)
        status = "bound" if open_ or not monotone else "exact"
        if not monotone and ceiling is not None:
            notes.append(f"above {name(looked)} not checked (the bounds need not grow with the "
                         f"{unit} here: each op's split is chosen for its shape)")
        if ceiling is None:
            notes.append(f"above {name(looked)} not checked" if looked < cap else
                         f"the search stops at {cap // max(lo, 1)}× the compiled {unit}")
    fails_below = sorted(k for k, p in seen.items() if lo < k < answer and p.proven)
    if fails_below:
        notes.append(f"not monotone: {prefix}{_span([name(k) for k in fails_below])} did not "
                     f"fit, {prefix}{name(answer)} does")
    return status, "; ".join(notes)


def _bounds_monotone(target: Target) -> bool:
    """Does the cost model promise that (a) and (b) only grow with the batch and image size?
    (``CostModel.bounds_monotone``, optional; none of the built-in targets does: under the
    ``fastest`` split policy an op's split, and with it its temporaries, change with its shape.)"""
    return bool(getattr(target.cost_model, "bounds_monotone", False))


def _grow_reach(prober: Prober, lo: int, cap: int) -> None:
    """Bound checks enough for the doubling from ``lo`` to ``cap`` and its bisection."""
    steps = max(1, (cap // max(lo, 1)).bit_length())
    prober.bounds_left = max(prober.bounds_left, 2 * steps + 2)


def _grow_batch(prober: Prober, meta: dict, target: Target,
                rebuild: Callable[..., GraphInfo], base: Probe) -> WhatIf:
    """The largest batch that fits at the compiled image size and precision (headroom)."""
    prober.budget("max_batch")
    batch = int(meta.get("batch") or 1)
    cap = batch * GROW_REACH

    def make(b: int):
        return lambda: (rebuild(batch=b), target)

    knob = Knob(prober, make, lambda b: b, monotone=_bounds_monotone(target))
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

    knob = Knob(prober, make, dims, monotone=_bounds_monotone(target))
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
