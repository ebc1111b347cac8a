"""The uncertainty band: does the verdict hold over the plausible ranges of the target's constants?

A target's FITTED constants and modelling choices are not known exactly; its TOML gives each a
plausible ``[low, high]`` (``[ranges]``, validated by ``targets/spec.py``). A verdict is *robust*
only if it holds across them; otherwise it is *borderline*, and the band names the constants
that flip it and where.

What is evaluated, in this order (a fixed list, so the band is deterministic):

1. every constant at each end of its range -- first only partitioned, with the lower bounds
   (a)/(b) (fractions of a second each), which also gives each constant's *memory direction*:
   the end whose bounds need more of the chip is its memory-pessimistic end (equal: no
   direction, the constant stays nominal in the corners). The direction is measured, not
   assumed: under the ``fastest`` split policy a constant that only changes cycles can change
   which splits are chosen, and so the bytes;
2. the memory-pessimistic corner (every constant with a direction at its pessimistic end) and the
   memory-optimistic corner;
3. each constant's two ends;
4. ``SAMPLES`` joint settings drawn uniformly from the box with a fixed seed;
5. for a setting that flipped the verdict: bisection on the straight line from the nominal
   values towards it (one constant, or all of a corner or sample together), until the threshold
   is known to ``TOLERANCE`` of the nominal value (or 1 for integers), at most ``BISECT_STEPS``
   evaluations -- for up to ``MAX_BISECTED`` flips, single-constant ones first; settings that
   move several constants are searched only while no single-constant flip stands (the others
   are named in a note);
6. each located flip is checked against the chip's published outcomes
   (``targets/calibration/<chip>.toml``, :mod:`tilec.calibration`): where the constants at the
   flip would make a measured out-of-memory configuration fit, or a measured fit fail, the
   setting is not a plausible description of the chip -- the ranges are each constant's alone,
   the measurements constrain them jointly -- and the flip is reported as ruled out (a note
   naming the measurement) instead of making the verdict borderline. When the compile *is* a
   measured configuration (the same network as the planner sees it, at the same shape and
   precision: ``CalibrationCheck.measured_here``) and the measurement agrees with the nominal
   verdict, every flip contradicts that very measurement, wherever its threshold lies: all are
   ruled out at once, with no threshold search.

Constants at their nominal value are left out of a setting, and a setting is evaluated once (a
"corner" that moves one constant is that constant's end). A setting is decided like a what-if
probe, cheapest evidence first: its target is rebuilt with the constants changed
(:meth:`TileTarget.with_values`, re-validated); if the nominal plan fits and every op's split is
still offered there at the same bytes (the setting moves only the budget, cycle estimates, or
the split window around the nominal choice), that plan re-timed under the setting is given to
the independent verifier; otherwise the setting is partitioned and the bounds (a)/(b) tried, and
if they prove nothing a fit-only plan is made (the greedy placement that stops at the first fit,
the proof (c) before the repair search) and, if it fits, laid out and verified like any plan. So
a "fits" anywhere in the band is a verified plan and a "does not fit" carries evidence;
"unknown" (neither) counts as not holding -- a verdict is robust only where it is *shown* to
hold.

Parallel: the ends (step 1, decided along with their bounds), the corners and samples, and the
single-constant flips' thresholds (step 5) are independent of each other, and are decided in
``options.settings.workers`` forked processes (:func:`tilec.plan.parallel.pmap`); each setting's
decision depends only on its values, and results are taken in the fixed order above, so the
band is the same with one process or several (tests/test_band.py checks it).

Latency band: the plan latency at every setting that fits. The fit-only placement does not spend
the full search's effort on speed, so its latency is a slight over-estimate (on YOLOv4-P5 at
896 px on gc200 within 1 % of the full search's at the same constants).

The effort is counted (settings, bisection steps), not timed, so the band is reproducible; a
wall-clock safety limit only stops a run that would otherwise take far longer, and says so
(status ``incomplete`` unless a flip was already found).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from tilec.costmodel import AXES, Split
from tilec.errors import InputError
from tilec.opinfo import GraphInfo
from tilec.plan import build
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import (
    BAND_BORDERLINE,
    BAND_INCOMPLETE,
    BAND_NONE,
    BAND_ROBUST,
    STATUS_DOES_NOT_FIT,
    STATUS_FITS,
    Band,
    BandFlip,
    BandSetting,
    Plan,
)
from tilec.plan.parallel import pmap
from tilec.plan.partition import partition
from tilec.plan.pipeline import Options, lower_bounds, run
from tilec.plan.verify import verify

SAMPLES = 4
"""Joint settings drawn from the box (modelling choice: the corners and the ends test each
constant and the extremes; a few random interior points catch an interaction neither shows,
at ~1 s per setting on YOLOv4-P5)."""
SEED = 0
"""Seed of the sample (fixed: same input, same band)."""
BISECT_STEPS = 5
"""Evaluations per threshold search at most (halving the interval each time: 1/32 of the way)."""
TOLERANCE = 0.03
"""A threshold search stops when the flip is located to this fraction of the nominal value."""
MAX_BISECTED = 3
"""Single-constant flips whose threshold is searched (the others are reported at the end that
flipped). When only settings with several constants moved flip the verdict, the first of them
(a corner before a sample) is searched and the others are named in a note."""
SAFETY_SECONDS = 120.0
"""Default wall-clock safety limit of the whole band (modelling choice: YOLOv4-P5 at 896 px on
gc200 needs ~30 settings of ~1 s; the limit only stops a pathological run)."""

SKIPPED = "skipped"
UNKNOWN = "unknown"


def _fmt(v: float) -> str:
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.4g}"


def _verdict_words(status: str) -> str:
    return {STATUS_FITS: "fits", STATUS_DOES_NOT_FIT: "does not fit",
            UNKNOWN: "is undecided"}.get(status, status)


class _Evaluator:
    """Decides settings (cached by their values) and keeps the partitions it built for reuse."""

    def __init__(self, info: GraphInfo, target: Any, options: Options, deadline: float,
                 progress: Callable[[str, float], None] | None, expected: int,
                 plan: Plan | None = None) -> None:
        self.info, self.target, self.options = info, target, options
        # A nominal plan that fits: a setting first tries it, re-timed and re-verified against
        # the setting's target (see reverify)
        self.plan = plan if plan is not None and plan.status == STATUS_FITS else None
        self.deadline, self.progress, self.expected = deadline, progress, max(1, expected)
        self.built: dict[tuple, tuple] = {}
        self.targets: dict[tuple, Any] = {}
        self.ready: dict[tuple, BandSetting] = {}  # decided ahead (prefetch), not yet asked
        self.workers = max(1, int(options.settings.workers))
        self.done: dict[tuple, BandSetting] = {}
        self.log: list[BandSetting] = []
        self.cut = False

    @staticmethod
    def key(values: dict[str, float]) -> tuple:
        return tuple(sorted(values.items()))

    @property
    def expired(self) -> bool:
        if not self.cut and time.perf_counter() > self.deadline:
            self.cut = True
        return self.cut

    def target_at(self, values: dict[str, float]) -> Any | None:
        """The target with ``values``; None if they make no valid target (e.g. reserved bytes
        that, summed at a corner, exceed the tile)."""
        k = self.key(values)
        if k not in self.targets:
            try:  # no constant moved: the target itself (its prices are cached already)
                self.targets[k] = self.target.with_values(values) if values else self.target
            except InputError:
                self.targets[k] = None
        return self.targets[k]

    def build(self, values: dict[str, float]) -> tuple | None:
        """(target, partition, bounds) at ``values``; None if the values make no valid
        target."""
        k = self.key(values)
        if k not in self.built:
            tgt = self.target_at(values)
            if tgt is None:
                self.built[k] = None  # type: ignore[assignment]
            else:
                part = partition(self.info, tgt)
                self.built[k] = (tgt, part, lower_bounds(self.info, tgt, part))
        return self.built[k]

    def measure(self, values: dict[str, float]) -> float | None:
        """How much of the chip the lower bounds need at ``values`` (larger: less room)."""
        b = self.build(values)
        if b is None:
            return None
        bounds = b[2]
        return max(bounds[k].ratio for k in ("a", "b") if k in bounds)

    def decide(self, label: str, values: dict[str, float]) -> BandSetting:
        """The setting's verdict (cached; logged in the order asked, so the band's list of
        settings does not depend on which process decided what)."""
        k = self.key(values)
        if k in self.done:
            return self.done[k]
        s = self.ready.pop(k, None)
        if s is not None:
            s = replace(s, label=label)
        else:
            if self.progress:
                self.progress("band", min(0.99, len(self.done) / self.expected))
            s = self._decide_new(label, values)
        self.done[k] = s
        self.log.append(s)
        return s

    def prefetch(self, items: list[tuple[str, dict[str, float]]], *,
                 measure: bool = False) -> dict[tuple, float | None]:
        """Decide the settings of ``items`` not decided yet, in up to ``workers`` processes
        (:func:`tilec.plan.parallel.pmap`), so that :meth:`decide` finds them ready; with
        ``measure``, also each one's :meth:`measure` (returned by key). The verdicts are those
        :meth:`decide` would reach alone: a setting's decision depends only on its values."""
        todo = [(label, v) for label, v in items if self.key(v) not in self.done
                and self.key(v) not in self.ready]
        keys = [self.key(v) for _, v in todo]
        if len(set(keys)) != len(keys):
            todo = [t for i, t in enumerate(todo) if self.key(t[1]) not in keys[:i]]

        def one(item: tuple[str, dict[str, float]]) -> tuple[float | None, BandSetting]:
            label, v = item
            m = self.measure(v) if measure else None
            return m, self._decide_new(label, v)

        out = pmap(one, todo, self.workers,
                    (lambda i: self.progress("band", min(0.99, i / self.expected)))
                    if self.progress else None, child=self._in_child)
        measured: dict[tuple, float | None] = {}
        for (_, v), (m, st) in zip(todo, out, strict=True):
            self.ready[self.key(v)] = st
            measured[self.key(v)] = m
        return measured

    def _in_child(self) -> None:
        """In a forked worker: no progress display (the parent's terminal), nothing cached
        for the parent."""
        self.progress = None

    def _decide_new(self, label: str, values: dict[str, float]) -> BandSetting:
        k = self.key(values)
        if self.expired:
            return BandSetting(label, dict(values), SKIPPED, SKIPPED,
                               evidence="wall-clock safety limit")
        tgt = self.target_at(values)
        again = self.reverify(tgt) if tgt is not None else None
        if tgt is None:
            s = BandSetting(label, dict(values), SKIPPED, SKIPPED,
                            evidence="these values make no valid target")
        elif again is not None:  # the nominal plan, verified against the setting's target
            s = BandSetting(label, dict(values), STATUS_FITS, "reverify",
                            peak_bytes=again.memory.peak_bytes if again.memory else None,
                            latency_seconds=again.latency.seconds if again.latency else None)
        else:
            tgt, part, bounds = self.build(values)
            cert = next((bounds[x] for x in ("io", "b", "a") if x in bounds and bounds[x].holds),
                        None)
            if cert is not None:
                s = BandSetting(label, dict(values), STATUS_DOES_NOT_FIT, "bounds",
                                evidence=cert.kind)
            else:
                out = run(self.info, tgt, options=self.options, part=part, bounds=bounds)
                p = out.plan
                peak = p.memory.peak_bytes if p.memory else None
                if p.status == STATUS_FITS:
                    s = BandSetting(label, dict(values), STATUS_FITS, "plan", peak_bytes=peak,
                                    latency_seconds=p.latency.seconds if p.latency else None)
                else:
                    ev = p.diagnosis.evidence.kind if p.diagnosis else None
                    s = BandSetting(label, dict(values), p.status, "plan", evidence=ev,
                                    peak_bytes=peak)
        self.built.pop(k, None)  # decided: its partition is not needed again
        return s

    def reverify(self, tgt: Any) -> Plan | None:
        """The nominal plan, if it is a verified plan for ``tgt`` too, else None.

        When every op's split is still offered under ``tgt`` with the same bytes (a setting that
        moves only the budget -- reserved bytes --, cycle estimates, or the split window while
        leaving the nominal choice inside it), the plan is *re-timed*: each op's cycles, each
        step's sync and the latency re-derived from ``tgt``, buffers and addresses unchanged.
        The independent verifier then decides it against ``tgt`` (budget, layout, and that every
        split is one ``tgt`` offers at exactly the declared bytes and cycles). A plan that
        passes is a plan in the setting's own plan space, so "fits" holds there without a
        partition or a placement; the planner at that setting might have chosen other splits,
        which would change the latency band (reported from this plan) but not the verdict.
        """
        if self.plan is None:
            return None
        again = self._retimed(tgt)
        if again is None:
            return None
        again.target = build.target_info(tgt)
        again.band = None
        return again if verify(again, self.info, tgt).ok else None

    def _retimed(self, tgt: Any) -> Plan | None:
        """The nominal plan with cycles from ``tgt``, or None if some op's split is not offered
        there or is priced at other bytes (then only a new plan can decide the setting)."""
        plan = self.plan
        assert plan is not None
        model = tgt.cost_model
        by_name = self.info.op_by_name
        ops, step_cycles = [], {}
        for o in plan.ops:
            op = by_name.get(o.name)
            if op is None or any(a not in AXES for a in o.split):
                return None
            split = Split.of(**o.split)
            if split not in model.splits(op):
                return None
            c = model.cost(op, split)
            outs = [int(v) for v in c.outputs] or [0] * len(op.outputs)
            if (_nonzero(c.always), _nonzero(c.step), outs, _nonzero(c.spread),
                    bool(c.in_place)) != (_nonzero(o.always), _nonzero(o.step_bytes),
                                          list(o.output_bytes), _nonzero(o.spread),
                                          bool(o.in_place)):
                return None
            cc, xc = int(c.compute_cycles), int(c.exchange_cycles)
            ops.append(replace(o, compute_cycles=cc, exchange_cycles=xc))
            step_cycles[o.step] = (cc, xc, int(model.sync_cycles(split.tiles)) if cc + xc
                                   else 0)
        steps = []
        for st in plan.steps:
            if len(st.ops) != 1 or st.index not in step_cycles:
                return None  # the planner makes one op per step; anything else: re-plan
            cc, xc, sync = step_cycles[st.index]
            steps.append(replace(st, compute_cycles=cc, exchange_cycles=xc, sync_cycles=sync))
        again = copy.copy(plan)
        again.ops, again.steps = ops, steps
        again.latency = build.latency(steps, tgt, self.info, plan.model.batch)
        return again


def _nonzero(d: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(d).items() if int(v)}


def probe_options(options: Options) -> Options:
    """The what-if probes' settings: a fit-only placement, a third of the proof budget."""
    st = options.settings
    return replace(options, settings=SolveSettings(
        time_limit=st.time_limit, deterministic_limit=max(0.05, st.deterministic_limit / 3),
        seed=st.seed, workers=st.workers), layout_exact=True, use_cpsat=False,
        greedy_passes=0, fit_only=True)


def compute_band(info: GraphInfo, target: Any, plan: Plan, *, options: Options,
                 seconds: float = SAFETY_SECONDS,
                 progress: Callable[[str, float], None] | None = None,
                 samples: int = SAMPLES, seed: int = SEED,
                 check: Callable[[dict[str, float], str], str | None] | None = None) -> Band:
    """The band of ``plan`` (compiled from ``info`` on ``target``); see the module docstring.
    ``check(values, becomes)`` names the measurement of the chip a flipping setting contradicts
    (``tilec.calibration``), or None: such a flip is ruled out, not borderline."""
    verdict = plan.status
    ranges: dict[str, tuple[Any, Any]] = dict(getattr(target, "ranges", {}) or {})
    nominal = {k: target.value(k) for k in ranges}
    as_lists = {k: [lo, hi] for k, (lo, hi) in ranges.items()}
    if not ranges:
        return Band(status=BAND_NONE, verdict=verdict,
                    summary=f"no band: target '{target.name}' gives no [ranges]")
    if verdict not in (STATUS_FITS, STATUS_DOES_NOT_FIT):
        return Band(status=BAND_NONE, verdict=verdict, ranges=as_lists, nominal=nominal,
                    summary="no band: the nominal verdict is unknown, so there is nothing to "
                            "check across the ranges")
    ints = {k: isinstance(nominal[k], int) for k in ranges}

    def val(k: str, x: float) -> float:
        return round(float(x)) if ints[k] else float(x)

    n_expected = 2 + 2 * len(ranges) + samples
    ev = _Evaluator(info, target, probe_options(options), time.perf_counter() + seconds,
                    progress, n_expected, plan)

    # 1. ends: their bounds give the memory direction of each constant; each end is decided
    # here too (it is evaluated in step 3 anyway), all of them in parallel
    def moved(k: str, v: float) -> dict[str, float]:
        return {k: v} if v != nominal[k] else {}

    ends = [(f"{k} {side} end", moved(k, v)) for k, (lo, hi) in ranges.items()
            for side, v in (("low", lo), ("high", hi))]
    need = ev.prefetch([e for e in ends if e[1]], measure=True)
    need[_Evaluator.key({})] = ev.measure({}) if any(not v for _, v in ends) else None
    pess: dict[str, float] = {}
    opt: dict[str, float] = {}
    for k, (lo, hi) in ranges.items():
        m_lo = need[_Evaluator.key(moved(k, lo))]
        m_hi = need[_Evaluator.key(moved(k, hi))]
        if m_lo is None or m_hi is None or m_lo == m_hi:
            continue
        pess[k], opt[k] = (hi, lo) if m_hi > m_lo else (lo, hi)

    # 2-4. corners, ends, samples; a constant at its nominal value is left out of a setting,
    # and a setting already listed (a "corner" that moves one constant is that constant's end)
    # is evaluated once, under its first label
    order: list[tuple[str, dict[str, float]]] = []
    seen: set[tuple] = set()

    def add(label: str, values: dict[str, float]) -> None:
        moved = {k: v for k, v in values.items() if v != nominal[k]}
        key = _Evaluator.key(moved)
        if moved and key not in seen:
            seen.add(key)
            order.append((label, moved))

    corners = [("memory-pessimistic corner", pess), ("memory-optimistic corner", opt)]
    for label, values in corners:
        if sum(1 for k, v in values.items() if v != nominal[k]) > 1:
            add(label, values)
    for k, (lo, hi) in ranges.items():
        add(f"{k} low end", {k: lo})
        add(f"{k} high end", {k: hi})
    rng = np.random.default_rng(seed)
    for i in range(samples):
        draw = rng.random(len(ranges))
        add(f"sample {i + 1}", {k: val(k, lo + u * (hi - lo))
                                for (k, (lo, hi)), u in zip(ranges.items(), draw, strict=True)})
    ev.prefetch(order)  # in parallel; decided below in this order
    evaluated = [(label, values, ev.decide(label, values)) for label, values in order]

    # 5. thresholds of the flips: single constants first (they name a cause), then joint ones;
    # a flip located where the constants contradict a measurement of the chip is ruled out
    flipped = [(label, values, s) for label, values, s in evaluated
               if s.result not in (verdict, SKIPPED)]
    single = [f for f in flipped if len(f[1]) == 1]
    joint = [f for f in flipped if len(f[1]) > 1]
    notes = []
    flips: list[BandFlip] = []
    ruled: list[tuple[BandFlip, str]] = []
    done_labels: list[str] = []

    def locate(item: tuple[str, dict[str, float], BandSetting, bool]
               ) -> tuple[BandFlip, str | None, list[BandSetting]]:
        """One flip: its threshold (if ``bisect``) and the measurement it contradicts, with the
        settings decided on the way (handed back, so that a forked worker's are not lost)."""
        label, toward, s, bisect = item
        start = len(ev.log)
        f = (_threshold(ev, verdict, nominal, label, toward, s, val) if bisect else
             _flip(nominal, label, toward, s.result, {}, toward, 1.0))
        reason = check(f.flips_at, f.result) if check is not None else None
        new = ev.log[start:]
        del ev.log[start:]
        return f, reason, new

    def take(found: tuple[BandFlip, str | None, list[BandSetting]], label: str) -> None:
        f, reason, new = found
        for st in new:
            ev.done.setdefault(ev.key(st.values), st)
            ev.log.append(st)
        done_labels.append(label)
        if reason:
            ruled.append((f, reason))
        else:
            flips.append(f)

    # the compile *is* a measured configuration (same network, shape and precision) whose
    # measured outcome is the nominal verdict: every setting that flips it contradicts that
    # measurement, wherever its threshold lies -- so no threshold is searched
    here = (check.measured_here(info) if flipped and check is not None
            and hasattr(check, "measured_here") else None)
    at_measured: list[BandFlip] = []
    if here is not None and here.measured.result == verdict:
        for label, toward, s in single + joint:
            at_measured.append(_flip(nominal, label, toward, s.result, {}, toward, 1.0))
            done_labels.append(label)
        single, joint = [], []
    # single-constant flips are independent of each other: located in parallel (the first
    # MAX_BISECTED bisected, the rest reported at the end that flipped), then taken in order
    if len(single) > 1 and check is not None and hasattr(check, "warm"):
        for becomes in sorted({s.result for _, _, s in single}):
            check.warm(becomes)  # lowered once, before the fork
    found = pmap(locate, [(label, toward, s, i < MAX_BISECTED)
                           for i, (label, toward, s) in enumerate(single)], ev.workers,
                  child=ev._in_child)
    for (label, _, _), got in zip(single, found, strict=True):
        take(got, label)
    bisected = min(len(single), MAX_BISECTED)
    for label, toward, s in joint:  # one after another: the first that stands ends the search
        if flips:
            break  # a single constant names the cause; the joint ones add little
        take(locate((label, toward, s, bisected < MAX_BISECTED)), label)
        bisected += 1
    rest = [label for label, _, _ in joint if label not in done_labels]
    if rest and flips:
        notes.append("also flipped with several constants moved together: " + ", ".join(rest))
    for f, reason in ruled:
        notes.append(f"ruled out by a measurement: {f.text} -- {reason}")
    if at_measured:
        texts = [f.text for f in at_measured]
        notes.append("ruled out by a measurement: " + "; ".join(texts[:3])
                     + (f"; and {len(texts) - 3} more" if len(texts) > 3 else "")
                     + f" -- this very configuration was measured: {here.describe()}")

    settings = ev.log
    skipped = any(s.result == SKIPPED and s.evidence == "wall-clock safety limit"
                  for s in settings)
    fits_lat = [s.latency_seconds for s in settings
                if s.result == STATUS_FITS and s.latency_seconds is not None]
    if verdict == STATUS_FITS and plan.latency is not None:
        fits_lat.append(plan.latency.seconds)
    n_const = len(ranges)
    counted = sum(1 for s in settings if s.result != SKIPPED)
    words = _verdict_words(verdict)
    if ev.cut or skipped:  # (a forked worker's cut shows only in its settings)
        notes.append(f"the {seconds:g} s wall-clock safety limit stopped the band before every "
                     f"setting was decided (this band may differ between runs)")
    invalid = [s.label for s in settings if s.evidence == "these values make no valid target"]
    if invalid:
        notes.append("not evaluated (the values make no valid target): " + ", ".join(invalid))
    if flips:
        status = BAND_BORDERLINE
        summary = f"borderline: {words} at the nominal constants, but " + "; ".join(
            f.text for f in flips[:3]) + (f"; and {len(flips) - 3} more" if len(flips) > 3
                                          else "")
    elif skipped:
        status = BAND_INCOMPLETE
        summary = (f"incomplete: {words} at all {counted} settings decided of {n_const} "
                   f"constants, but the safety limit left {len(settings) - counted} undecided")
    else:
        status = BAND_ROBUST
        kinds = [k for k, present in (
            ("both memory corners", any(lab.endswith("corner") for lab, _ in order)),
            ("each end", True), (f"{samples} seeded samples", samples > 0)) if present]
        summary = (f"robust: {words} at all {counted} settings of {n_const} constants' ranges "
                   f"({', '.join(kinds)})")
        n_ruled = len(ruled) + len(at_measured)
        if n_ruled:
            summary = (f"robust: {words} at every setting of {n_const} constants' ranges that "
                       f"is consistent with the chip's measurements ({n_ruled} flip"
                       f"{'s' if n_ruled > 1 else ''} ruled out by a measurement, see notes)")
    return Band(status=status, verdict=verdict, summary=summary, ranges=as_lists,
                nominal=nominal, pessimistic=dict(pess), flips=flips, settings=settings,
                latency_min_seconds=min(fits_lat) if fits_lat else None,
                latency_max_seconds=max(fits_lat) if fits_lat else None,
                seed=seed, samples=samples, notes=notes)


def _threshold(ev: _Evaluator, verdict: str, nominal: dict[str, float], label: str,
               toward: dict[str, float], flipped: BandSetting,
               val: Callable[[str, float], float]) -> BandFlip:
    """Bisect on the line nominal -> ``toward`` for where the verdict stops holding."""
    def at(t: float) -> dict[str, float]:
        return {k: val(k, nominal[k] + t * (v - nominal[k])) for k, v in toward.items()}

    lo_t, hi_t, result = 0.0, 1.0, flipped.result
    for _ in range(BISECT_STEPS):
        if _close(at(lo_t), at(hi_t), nominal):
            break
        mid = (lo_t + hi_t) / 2
        point = at(mid)
        if point in (at(lo_t), at(hi_t)):
            break
        s = ev.decide("bisection", point)
        if s.result == SKIPPED:
            break
        if s.result == verdict:
            lo_t = mid
        else:
            hi_t, result = mid, s.result
    holds = at(lo_t) if lo_t > 0 else {k: nominal[k] for k in toward}
    return _flip(nominal, label, toward, result, holds, at(hi_t), hi_t)


def _close(a: dict[str, float], b: dict[str, float], nominal: dict[str, float]) -> bool:
    """Every constant located to TOLERANCE of its nominal value (to 1 for an integer)."""
    for k in a:
        gap = abs(a[k] - b[k])
        if isinstance(nominal[k], int) and gap <= 1:
            continue
        if gap > TOLERANCE * max(abs(nominal[k]), 1e-12):
            return False
    return True


def _flip(nominal: dict[str, float], label: str, toward: dict[str, float], result: str,
          holds: dict[str, float], flips: dict[str, float], fraction: float) -> BandFlip:
    becomes = _verdict_words(result)
    if len(toward) == 1:
        (k, end), = toward.items()
        sign = ">=" if end > nominal[k] else "<="
        text = (f"{becomes} if {k} {sign} {_fmt(flips[k])} (nominal {_fmt(nominal[k])}"
                + (f", holds at {_fmt(holds[k])}" if holds and holds[k] != nominal[k] else "")
                + ")")
    else:
        moved = [f"{k} {_fmt(v)}" for k, v in flips.items() if v != nominal[k]]
        where = label if label.startswith("sample") else f"the {label}"
        eg = f"{len(moved)} moved together, e.g. " + ", ".join(moved[:2])
        text = (f"{becomes} at {where} ({eg})" if fraction >= 1 and not holds else
                f"{becomes} {fraction:.0%} of the way from the nominal constants to {where} "
                f"({eg})")
    return BandFlip(constants=sorted(toward), setting=label, toward=dict(toward), result=result,
                    holds_at=dict(holds), flips_at=dict(flips), fraction=float(fraction),
                    text=text)
