"""The what-if's search machinery: probes, the prober's budgets, and the searches over one
integer knob (downwards from a value that does not fit, upwards from one that fits).

The questions themselves (which knob, how a value rebuilds the graph or the target, what the note
says) live in :mod:`tilec.plan.whatif`; its docstring describes the searches' rules (``exact``,
``bound``, ``unknown``, the counted budgets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tilec.costmodel import Target
from tilec.errors import InputError
from tilec.opinfo import GraphInfo
from tilec.plan.bounds import Bound
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS
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
BEYOND = 4
"""Values a headroom search checks past the bounds' ceiling (the bounds need not grow with the
shape). Modelling choice: a fixed count keeps the effort counted, not timed (YOLOv4-P5 on gc200:
batch 3 lies between two values (a) rules out; checking every value up to twice the ceiling cost
47 image sizes and hit the wall-clock safety limit)."""
CLOSE = BEYOND
"""Values past the bounds' ceiling a headroom search checks (bounds first) to reach the smallest
value the monotone certificate (m) rules out (:mod:`tilec.plan.ceiling`), when that is all that
stands between the answer and ``exact``; a wider gap is not started and the note names it as not
checked. Modelling choice: no more than the search checks past the ceiling anyway (``BEYOND``).
Measured with 12: YOLOv4-P5 at 896 px, batch 7-14 cost 1.7-2.8 s and up to 1.8 GB each to
partition; the what-if went from 29 s / 0.8 GB to 50 s / 2.6 GB, hit its wall-clock safety limit
(the image-size answer with it) and still left two values unchecked."""
LETTER = {"chip_capacity": "a", "op_too_large": "b", "solver_infeasible": "c",
          "monotone_ceiling": "m"}


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

    def certify(self, make: Callable[[], tuple[GraphInfo, Target]]) -> bool:
        """Does the monotone certificate (m) (:mod:`tilec.plan.ceiling`) rule out the value
        ``make()`` builds? A value that cannot be built is not ruled out (nothing is claimed)."""
        from tilec.plan.ceiling import ceiling_bound

        try:
            info, target = make()
        except InputError:
            return False
        return ceiling_bound(info, target).holds

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
                 label: Callable[[Any], Any], monotone: bool = False,
                 certify: bool = False) -> None:
        self.prober, self.make, self.label = prober, make, label
        # do the bounds (a)/(b) only grow with this knob? (the cost model says; see BEYOND)
        self.monotone = monotone
        # may the monotone certificate (m) close an upward search? (tilec.plan.ceiling: a batch
        # or image-size knob, whose values are the compiled graph re-shaped) -- and the smallest
        # value above the answer it rules out
        self.certify = certify
        self.certified: int | None = None
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

    def rules_out(self, k: Any) -> bool:
        """Does (m) rule value ``k`` out? (Not a probe: not recorded, not counted.)"""
        return self.prober.certify(self.make(k))

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
    fit, ceiling = _bisect_up(knob, fit, fail, ceiling)
    top = (ceiling - 1) if ceiling is not None else looked
    fit = _fill(knob, fit, top) or fit
    if ceiling is not None and not knob.monotone and beyond > 0:
        # past the ceiling: the bounds need not grow with the shape, so check some more --
        # up to where the certificate (m) takes over, when that is within CLOSE values
        far = min(cap, ceiling + beyond)
        if knob.certify:
            knob.certified = _certified(knob, fit, min(cap, ceiling + CLOSE + 1))
        m = knob.certified
        if m is not None:
            far = m - 1
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


def _certified(knob: Knob, fit: int, reach: int) -> int | None:
    """The smallest value above ``fit`` (which fits) that the certificate (m) rules out, if it
    rules out ``reach`` (None if not: the gap to it would be too wide to check). One check at
    ``reach`` -- YOLOv4-P5 on gc200 never gets further: (m)'s ceiling is ~100 batches above
    (a)'s -- then bisection, sound on a bound that only grows (unlike on (a)/(b)). A check is a
    graph re-shape and one pass over it (~0.2 s on YOLOv4-P5), no partition; not counted
    against the probe budget; none once the wall-clock limit is reached."""
    prober = knob.prober
    if prober.expired or not knob.rules_out(reach):
        return None
    ok, out = fit, reach
    while out - ok > 1 and not prober.expired:
        mid = (ok + out) // 2
        if knob.rules_out(mid):
            out = mid
        else:
            ok = mid
    return out  # not the smallest only if the wall-clock limit cut the bisection: still valid


def _bisect_up(knob: Knob, fit: int, fail: int | None, ceiling: int | None
               ) -> tuple[int, int | None]:
    """Plans bisect between ``fit`` (fits) and ``fail`` (does not; None: nothing to bisect)
    while the budget lasts. Returns the largest value found to fit and the ceiling, lowered
    when a bisection value is ruled out by (a)/(b) on the way."""
    prober = knob.prober
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
    return fit, ceiling


def _up_note(knob: Knob, answer: int, lo: int, cap: int, ceiling: int | None, looked: int,
             name: Callable[[int], str], prefix: str, unit: str) -> tuple[str, str]:
    """Status and note of an upward search (see :func:`_largest_up`).

    ``exact``: the answer fits, every value above it up to a ceiling was proven not to fit, and
    the ceiling is ruled out by a bound that only grows with the shape, so every larger value is
    ruled out with it: (a)/(b) when the cost model declares them monotone (``knob.monotone``),
    else the certificate (m) (``knob.certified``, :mod:`tilec.plan.ceiling`). Otherwise the
    values left open are listed and the answer is a ``bound``."""
    seen = knob.seen
    notes: list[str] = []
    if ceiling is not None and not knob.monotone and answer > ceiling:
        ceiling = None  # a value past the ceiling fits: the ceiling says nothing
    capped = ceiling is None and answer >= cap
    cert = knob.certified
    if cert is not None and cert > answer and not knob.monotone:
        gap: dict[int, Probe | None] = {k: p for k, p in seen.items() if answer < k < cert}
        gap[cert] = Probe(cert, NO, evidence="monotone_ceiling", by="ceiling")
        parts, open_ = _runs(answer + 1, cert, gap, name, prefix,
                             last=f" and above ((m) only grows with the {unit})")
        notes.extend(parts)
        status = "bound" if open_ else "exact"
    elif capped:
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
    ``fastest`` split policy an op's split, and with it its temporaries, change with its shape --
    measured in benchmarks/bounds_monotone.py, pinned in tests/test_monotone.py.)"""
    return bool(getattr(target.cost_model, "bounds_monotone", False))


def _grow_reach(prober: Prober, lo: int, cap: int) -> None:
    """Bound checks enough for the doubling from ``lo`` to ``cap`` and its bisection."""
    steps = max(1, (cap // max(lo, 1)).bit_length())
    prober.bounds_left = max(prober.bounds_left, 2 * steps + 2)



def _certifiable(target: Target) -> bool:
    """May the monotone certificate (m) close a batch or image-size search on this target? Only
    when the cost model declares that its splits hold whole tensors
    (``CostModel.stores_whole_tensors``): (m) counts tensors at their storage bytes, a lower
    bound on a plan only then."""
    return bool(getattr(target.cost_model, "stores_whole_tensors", False))
