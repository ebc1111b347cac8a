"""Multi-chip partitioning: cut the schedule into contiguous stages, one per chip, exactly.

A *stage* is the ops at positions ``[start, end)`` of one schedule of the whole model (the single-
chip planner's :func:`~tilec.plan.schedule.schedule`). Its sub-graph (:func:`stage_info`) reads
what earlier stages (or the host) produced as its inputs and hands on, as its outputs, what later
stages (or the host) read; it is planned on its chip by the *existing* single-chip planner
(:func:`tilec.plan.pipeline.run`: partition, placement, layout, the independent verifier). A
stage fits only when that planner returns a verified plan -- fit is never estimated.

Time of a stage = its plan's cycles / clock + the link time of what it receives from other chips
(``latency + bytes / bandwidth`` of the system's link) + the host I/O of the model inputs it reads
and the model outputs it writes (the chip's own I/O model). Pipeline: one batch per slowest stage
(interval = max), latency = sum. Sharded: the same stages run one after the other, latency = sum.

**The cut is chosen exactly** by lazy dynamic programming over the cut positions. Every stage
``[i, j)`` has a *relaxed value*: a planned stage its exact time (infinite if it does not fit),
an unplanned one a lower bound -- the sum over its ops of their fastest candidate split's cycles
(no plan of the stage is faster), with its exact link and host time -- or infinity when a sound
bound rules it out (the sum of its ops' smallest always-live bytes exceeds the chip). An exact
DP over all cuts into K stages finds the best relaxed path (pipeline: the smallest maximum, then
the smallest sum under it; sharded: the smallest sum). If every stage on it is planned, it is
optimal: no other path can be better, since its values are lower bounds. Otherwise its unplanned
stages are planned (bounds (a)/(b) first, then the planner; plans cached by ``(start, end)``) and
the DP runs again. A stage that does not fit usually means every stage containing it does not
either (the bounds grow with the stage), so those are skipped *by assumption* (a stage the bounds
rule out also has its frontier bisected with the bounds alone, so one failure skips a family of
stages; one holding an op that (b) rules out is skipped soundly); at the end the DP runs once
more with the assumed stages at their lower bounds: if that cannot beat the answer the answer is
**exact**, else it is exact *under the assumption* and says so with the bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, STATUS_UNKNOWN, Plan
from tilec.plan.partition import Partition, partition
from tilec.plan.pipeline import Options, lower_bounds, run
from tilec.plan.schedule import schedule

INF = math.inf
MODES = ("pipeline", "sharded", "replicate")
# Stage plans per chip count: search effort, not a model constant (yolov4-p7 at 1536 px needs 36
# to decide 3 chips; a spent budget answers "bound" or "unknown", never a wrong verdict).
DEFAULT_PLAN_BUDGET = 40
BOUNDS_BUDGET = 600  # bound checks per chip count (~0.1 s each on YOLOv4-P5; modelling choice)


# ------------------------------------------------------------------------------ sub-graphs
def alias_class(info: GraphInfo, tensor: str) -> str:
    """The tensor whose bytes ``tensor`` shares through views (not through in-place Concats:
    a slice of a Concat crosses a cut with its own bytes)."""
    seen: set[str] = set()
    while tensor not in seen:
        seen.add(tensor)
        nxt = info.tensors[tensor].alias_of
        if nxt is None:
            return tensor
        tensor = nxt
    return tensor


def stage_info(info: GraphInfo, order: Sequence[str], start: int, end: int) -> GraphInfo:
    """The sub-graph of the ops at schedule positions ``[start, end)``.

    A tensor produced outside the stage is one of its inputs (with its own buffer: views and
    in-place Concat slices are kept only when both ends are inside); a tensor produced inside and
    read by a later stage, or a model output, is one of its outputs.
    """
    names = list(order[start:end])
    inside = set(names)
    pos = {n: k for k, n in enumerate(order)}
    op_by = info.op_by_name
    ops = tuple(op_by[n] for n in names)
    seen: dict[str, None] = {}
    for op in ops:
        for t in (*op.inputs, *op.outputs):
            seen.setdefault(t, None)
    tensors = {}
    inputs: list[str] = []
    outputs: list[str] = []
    for name in seen:
        t = info.tensors[name]
        here = t.producer in inside
        later = any(pos.get(c, -1) >= end for c in t.consumers)
        alias = t.alias_of if here and t.alias_of in seen else None
        part = (t.part_of if here and t.part_of in seen
                and info.tensors[t.part_of].producer in inside else None)
        sub = replace(t, producer=t.producer if here else None,
                      consumers=tuple(c for c in t.consumers if c in inside),
                      is_input=not here, is_output=here and (t.is_output or later),
                      alias_of=alias, part_of=part)
        tensors[name] = sub
        if sub.is_input:
            inputs.append(name)
        if sub.is_output:
            outputs.append(name)
    meta = {**dict(info.meta), "stage": [start, end]}
    return GraphInfo(name=f"{info.name}[{start}:{end}]", ops=ops, tensors=tensors,
                     inputs=tuple(inputs), outputs=tuple(outputs), weight_bits=info.weight_bits,
                     act_bits=info.act_bits, meta=meta)


# ------------------------------------------------------------------------------ stage costs
@dataclass
class StageEval:
    """One stage decided: by a sound bound (``by="bounds"``) or by the planner (``"plan"``)."""

    start: int
    end: int
    status: str  # fits | does_not_fit | unknown
    by: str  # "always" | "bounds" | "plan"
    device_seconds: float = INF
    plan: Plan | None = None
    reason: str = ""


class CutProblem:
    """Everything the DP needs about one model on one chip system: the schedule, the per-op
    lower bounds, and the exact link / host seconds of every stage ``[i, j)``."""

    def __init__(self, info: GraphInfo, target: Target, link_seconds: Callable[[int], float],
                 options: Options, *, part: Partition | None = None) -> None:
        self.info, self.target, self.options = info, target, options
        self.link_seconds = link_seconds
        self.sched = schedule(info)
        self.order = tuple(self.sched.order)
        n = self.n = len(self.order)
        self.part = part or partition(info, target)
        clock = float(target.clock_hz)
        lb = np.zeros(n + 1)
        always = np.zeros(n + 1, dtype=np.int64)
        sync = target.cost_model.sync_cycles
        for k, name in enumerate(self.order):
            oc = self.part.ops[name]
            cands = [*oc.proof, *oc.search]
            # no plan of a stage is faster than each op at its fastest candidate, with the
            # superstep's sync the planner adds to every op that does work
            lb[k + 1] = lb[k] + (min(c.cycles + (int(sync(c.tiles)) if c.cycles > 0 else 0)
                                     for c in cands) if cands else 0)
            always[k + 1] = always[k] + (min(c.always * c.tiles + c.spread for c in oc.proof)
                                        if oc.proof else 0)
        self.lb_cycles = lb
        self.capacity = int(target.tiles) * int(target.budget_per_tile)
        self.always = always
        self.clock = clock
        self.link_bytes, self.host_seconds = self._transfers()
        i, j = np.indices((n + 1, n + 1))
        dev = (lb[j] - lb[i]) / clock
        link = np.vectorize(lambda b: float(link_seconds(int(b))), otypes=[float])(
            self.link_bytes) if n else np.zeros((1, 1))
        self.extra = link + self.host_seconds  # exact per stage: link in + host I/O
        lbv = dev + self.extra
        lbv[j <= i] = INF
        self.always_out = (always[j] - always[i] > self.capacity) & (j > i)
        lbv[self.always_out] = INF
        self.lower = lbv
        self.evals: dict[tuple[int, int], StageEval] = {}
        self.assumed = np.zeros((n + 1, n + 1), dtype=bool)
        self.sound_out = np.zeros((n + 1, n + 1), dtype=bool)  # contain an op that fits no chip
        self.plans_made = 0
        self.bounds_checked = 0
        self.lb_violated = False
        self.log: list[tuple] = []  # (start, end, by, status, seconds) in the order decided
        self._passed: dict[tuple[int, int], tuple] = {}  # bounds passed: (sub, part, bounds)

    # -- transfers
    def _transfers(self) -> tuple[np.ndarray, np.ndarray]:
        """(bytes each stage ``[i, j)`` receives over the links, its host I/O seconds)."""
        info, n = self.info, self.n
        pos = {name: k for k, name in enumerate(self.order)}
        classes: dict[str, list[int]] = {}  # alias class -> consumer positions
        producer: dict[str, int] = {}
        for name, t in info.tensors.items():
            key = alias_class(info, name)
            classes.setdefault(key, []).extend(pos[c] for c in t.consumers if c in pos)
        for key in classes:
            p = info.tensors[key].producer
            producer[key] = pos[p] if p is not None and p in pos else -1
        cm = self.target.cost_model
        breakdown = getattr(cm, "io_breakdown", None)

        def io(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> float:
            g = replace(info, inputs=inputs, outputs=outputs)
            if breakdown is not None:
                return float(sum(breakdown(g)))
            return float(cm.io_seconds(g))

        link = np.zeros((n + 1, n + 1))
        host = np.zeros((n + 1, n + 1))
        for key in sorted(classes):
            cons = np.array(sorted(set(classes[key])), dtype=np.int64)
            if not len(cons):
                continue
            p = producer[key]
            is_input = info.tensors[key].producer is None
            nbytes = info.tensors[key].bytes
            if is_input:
                if key not in info.inputs:
                    continue
                weight = io((key,), ())
                target_m = host
                starts = range(0, n + 1)
            else:
                weight = float(nbytes)
                target_m = link
                starts = range(p + 1, n + 1)
            for i in starts:
                k = np.searchsorted(cons, i)
                if k >= len(cons):
                    break
                f = int(cons[k])  # the first reader at or after i: stages [i, j > f) receive it
                target_m[i, f + 1:] += weight
        for name in info.outputs:
            t = info.tensors[name]
            if t.producer is None or t.producer not in pos:
                continue
            p = pos[t.producer]
            sec = io((), (name,))
            host[: p + 1, p + 1:] += sec
        return link, host

    # -- values
    def value(self, start: int, end: int) -> float:
        """The stage's exact time if planned (INF if it does not fit), else its lower bound."""
        ev = self.evals.get((start, end))
        if ev is not None:
            return ev.device_seconds + self.extra[start, end] if ev.status == STATUS_FITS else INF
        return float(self.lower[start, end])

    def values(self, assume: bool = True) -> np.ndarray:
        """Relaxed values of every stage. ``assume``: stages containing one that does not fit
        (and stages the planner left undecided) count as not fitting; without it they keep
        their lower bounds, so a DP on them answers soundly."""
        v = self.lower.copy()
        v[self.sound_out] = INF
        if assume:
            v[self.assumed] = INF
        for (i, j), ev in self.evals.items():
            if ev.status == STATUS_FITS:
                v[i, j] = ev.device_seconds + self.extra[i, j]
            elif assume or ev.status == STATUS_DOES_NOT_FIT:
                v[i, j] = INF  # without the assumption only a proven "does not fit" is out
        return v

    def bounds_fail(self, start: int, end: int) -> StageEval | None:
        """The stage ruled out without planning -- its ops' always-live bytes exceed the chip, or
        bounds (a)/(b) of its sub-graph hold -- else None (cached; the sub-graph's partition and
        bounds are kept for the plan)."""
        key = (start, end)
        if key in self.evals and self.evals[key].by != "plan":
            return self.evals[key]
        if key in self._passed:
            return None
        if self.always_out[start, end]:
            ev = StageEval(start, end, STATUS_DOES_NOT_FIT, "always",
                           reason="the always-live bytes of its ops exceed the chip")
        else:
            sub = stage_info(self.info, self.order, start, end)
            part = partition(sub, self.target)
            bounds = lower_bounds(sub, self.target, part)
            self.bounds_checked += 1
            held = next((b for k in ("io", "b", "a") if k in bounds
                         for b in [bounds[k]] if b.holds), None)
            if held is None:
                self._passed[key] = (sub, part, bounds)
                return None
            ev = StageEval(start, end, STATUS_DOES_NOT_FIT, "bounds",
                           reason=f"({'a' if held.kind == 'chip_capacity' else 'b'}) "
                                  f"needs {held.needed:,} B of {held.capacity:,}")
            if held.kind == "op_too_large" and held.op in self.order:
                # (b): that op's smallest need on one tile (with the spread bytes of the stage,
                # which only grow with it) exceeds the budget: no stage holding it fits
                k = self.order.index(held.op)
                self.sound_out[: k + 1, k + 1:] = True
        self._record(ev)
        return ev

    def evaluate(self, start: int, end: int) -> StageEval:
        """Decide one stage: the bounds first, then the single-chip planner (cached)."""
        key = (start, end)
        if key in self.evals:
            return self.evals[key]
        failed = self.bounds_fail(start, end)
        if failed is not None:
            return failed
        sub, part, bounds = self._passed.pop(key)
        outcome = run(sub, self.target, options=self.options, part=part, bounds=bounds)
        self.plans_made += 1
        plan = outcome.plan
        ev = StageEval(start, end, plan.status, "plan", plan=plan)
        if plan.status == STATUS_FITS and plan.latency is not None:
            ev.device_seconds = plan.latency.cycles / self.clock
            if plan.latency.cycles + 1e-6 < self.lb_cycles[end] - self.lb_cycles[start]:
                self.lb_violated = True
        elif plan.diagnosis is not None:
            ev.reason = plan.diagnosis.evidence.summary
        self._record(ev)
        return ev

    def _record(self, ev: StageEval) -> None:
        start, end = ev.start, ev.end
        self.evals[(start, end)] = ev
        self.log.append((start, end, ev.by, ev.status, ev.device_seconds,
                         (self.lb_cycles[end] - self.lb_cycles[start]) / self.clock))
        if ev.status != STATUS_FITS:
            # every stage containing this one is taken not to fit either (assumption; checked
            # at the end by re-running the DP without it)
            self.assumed[: start + 1, end:] = True

    def frontier(self, start: int, end: int) -> None:
        """``[start, end)`` does not fit: find by bisection, with the bounds alone, the shortest
        stage from ``start`` and the shortest stage ending at ``end`` they rule out, so the
        assumption skips every stage containing either (not one stage per DP round)."""
        lo, hi = start + 1, end  # [start, hi) fails; is [start, lo) ruled out?
        while lo < hi:
            mid = (lo + hi) // 2
            if self.bounds_fail(start, mid) is not None:
                hi = mid
            else:
                lo = mid + 1
        lo, hi = start, end - 1  # [lo, end) fails; find the largest start that fails
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.bounds_fail(mid, end) is not None:
                lo = mid
            else:
                hi = mid - 1


# ------------------------------------------------------------------------------------- DP
def best_cut(values: np.ndarray, k: int, mode: str) -> tuple[tuple[float, float], list[int]]:
    """The best cut of positions ``0..n`` into exactly ``k`` non-empty stages under ``values``
    (``values[i, j]``: stage ``[i, j)``). Pipeline: lexicographic (max, sum); sharded: (sum,
    max). Returns ((primary, secondary), cut positions [0, c1, ..., n]); INF when none."""
    n = values.shape[0] - 1

    def dp(vals: np.ndarray, combine: str) -> tuple[float, list[int]]:
        best = np.full(n + 1, INF)
        best[0] = 0.0
        back: list[np.ndarray] = []
        for _ in range(k):
            m = (np.maximum(best[:, None], vals) if combine == "max" else best[:, None] + vals)
            back.append(np.argmin(m, axis=0))
            best = m.min(axis=0)
        total = float(best[n])
        if not math.isfinite(total):
            return INF, []
        cut = [n]
        for a in reversed(back):
            cut.append(int(a[cut[-1]]))
        return total, cut[::-1]

    if mode == "pipeline":
        top, _ = dp(values, "max")
        if not math.isfinite(top):
            return (INF, INF), []
        allowed = np.where(values <= top * (1 + 1e-12), values, INF)
        total, cut = dp(allowed, "sum")
        return (top, total), cut
    total, cut = dp(values, "sum")
    if not cut:
        return (INF, INF), []
    return (total, max(values[a, b] for a, b in pairwise(cut))), cut


@dataclass
class CutResult:
    """The outcome of the exact search for one chip count."""

    chips: int
    status: str  # fits | does_not_fit | unknown
    cut: list[int] = field(default_factory=list)
    objective: tuple[float, float] = (INF, INF)
    optimality: str = "unknown"  # exact | exact_assuming_monotone_fit | bound | unknown
    lower_bound: float | None = None  # on the primary objective, without any assumption
    note: str = ""


def search(problem: CutProblem, chips: int, mode: str, *, plan_budget: int = DEFAULT_PLAN_BUDGET,
           deadline: float | None = None) -> CutResult:
    """The exact lazy DP for ``chips`` stages (see the module docstring)."""
    best_fit: tuple[tuple[float, float], list[int]] | None = None
    planned_before, checked_before = problem.plans_made, problem.bounds_checked
    while True:
        obj, cut = best_cut(problem.values(), chips, mode)
        if not cut:
            break
        pending = [(a, b) for a, b in pairwise(cut)
                   if (a, b) not in problem.evals]
        if not pending:
            best_fit = (obj, cut)
            break
        if (problem.plans_made - planned_before >= plan_budget
                or problem.bounds_checked - checked_before >= BOUNDS_BUDGET
                or (deadline is not None and time.perf_counter() > deadline)):
            break
        # the bounds first for every stage of this path (cheap); a stage they rule out moves
        # the path, so the others are planned only when none is ruled out
        ruled_out = False
        for a, b in sorted(pending, key=lambda s: (-problem.lower[s], s)):
            if problem.bounds_fail(a, b) is not None:
                problem.frontier(a, b)
                ruled_out = True
        if ruled_out:
            continue
        # plan them, largest lower bound first (the likeliest to change the path)
        for a, b in sorted(pending, key=lambda s: (-problem.lower[s], s)):
            problem.evaluate(a, b)
        # remember the best fully planned feasible path seen (for a "bound" answer)
        vals = [problem.value(a, b) for a, b in pairwise(cut)]
        if all(math.isfinite(v) for v in vals) and all(
                (a, b) in problem.evals for a, b in pairwise(cut)):
            seen = ((max(vals), sum(vals)) if mode == "pipeline" else (sum(vals), max(vals)), cut)
            if best_fit is None or seen[0] < best_fit[0]:
                best_fit = seen
    # the answer without the monotone-fit assumption: assumed stages back at their lower bound
    free_obj, free_cut = best_cut(problem.values(assume=False), chips, mode)
    free = free_obj[0] if free_cut else INF
    if best_fit is None:
        if not free_cut:
            return CutResult(chips, STATUS_DOES_NOT_FIT, optimality="exact",
                             note=f"no cut into {chips} stages fits: every one has a stage "
                                  "ruled out by its own evidence")
        relaxed, _ = best_cut(problem.values(), chips, mode)
        if not math.isfinite(relaxed[0]) and not _undecided(problem):
            return CutResult(chips, STATUS_DOES_NOT_FIT, optimality="exact_assuming_monotone_fit",
                             lower_bound=free,
                             note=f"no cut into {chips} stages fits, assuming a stage containing "
                                  "one that does not fit does not fit either")
        return CutResult(chips, STATUS_UNKNOWN, lower_bound=free,
                         note=f"no fitting cut into {chips} stages found within the budget of "
                              f"{plan_budget} stage plans; none ruled out for all cuts")
    obj, cut = best_fit
    relaxed, rcut = best_cut(problem.values(), chips, mode)
    exact_under = bool(rcut) and relaxed[0] >= obj[0] * (1 - 1e-9)
    exact_free = free >= obj[0] * (1 - 1e-9)
    what = "slowest stage" if mode == "pipeline" else "total time"
    if problem.lb_violated:
        return CutResult(chips, STATUS_FITS, cut, obj, "bound", None,
                         "a stage was planned faster than its lower bound: optimality not claimed")
    if exact_free:
        return CutResult(chips, STATUS_FITS, cut, obj, "exact", free,
                         f"optimal {what} over every cut into {chips} stages")
    if exact_under:
        return CutResult(chips, STATUS_FITS, cut, obj, "exact_assuming_monotone_fit", free,
                         f"optimal {what} over every cut into {chips} stages, assuming a stage "
                         f"containing one that does not fit does not fit either (without it: "
                         f"no cut is faster than {free * 1e3:.3f} ms)")
    return CutResult(chips, STATUS_FITS, cut, obj, "bound", free,
                     f"best cut found within {plan_budget} stage plans; no cut's {what} is below "
                     f"{free * 1e3:.3f} ms")


def _undecided(problem: CutProblem) -> bool:
    return any(ev.status == STATUS_UNKNOWN for ev in problem.evals.values())


def stage_summary(problem: CutProblem, cut: Sequence[int]) -> list[dict[str, Any]]:
    """Per stage of ``cut``: positions, ops, bytes in and out over the links, times."""
    info, order = problem.info, problem.order
    pos = {name: k for k, name in enumerate(order)}
    last_read: dict[str, int] = {}  # alias class -> its last reader's position
    for name, t in info.tensors.items():
        key = alias_class(info, name)
        for c in t.consumers:
            last_read[key] = max(last_read.get(key, -1), pos.get(c, -1))
    out = []
    for chip, (a, b) in enumerate(pairwise(cut)):
        sent = 0
        for key in sorted(last_read):
            t = info.tensors[key]
            if t.producer is not None and a <= pos.get(t.producer, -1) < b \
                    and last_read[key] >= b:
                sent += t.bytes
        ev = problem.evals.get((a, b))
        out.append({"chip": chip, "start": a, "end": b, "first_op": order[a],
                    "last_op": order[b - 1], "ops": b - a,
                    "recv_bytes": int(problem.link_bytes[a, b]), "send_bytes": int(sent),
                    "link_seconds": float(problem.link_seconds(int(problem.link_bytes[a, b]))),
                    "host_seconds": float(problem.host_seconds[a, b]),
                    "device_seconds": float(ev.device_seconds) if ev and ev.status == STATUS_FITS
                    else None,
                    "plan": ev.plan if ev else None})
    return out


# ------------------------------------------------------------------------- what-if question
WHATIF_MAX_CHIPS = 8  # modelling choice: two IPU-M2000s; beyond that the answer is "more than 8"
WHATIF_PLANS = 6  # stage plans per chip count for the what-if question (modelling choice)


def chips_needed(info: GraphInfo, target: Target, options: Options, *,
                 expired: Callable[[], bool], base_proven: bool) -> Any:
    """The what-if question "chips needed" of a model that does not fit one chip: the fewest
    copies of ``target`` some cut of the schedule into contiguous stages fits (each stage a
    verified plan, found by :func:`search`; fit does not depend on pipeline vs sharded, only
    the time does). ``exact`` when every smaller count was ruled out by evidence (one chip: the
    compile's own verdict, ``base_proven``); ``bound`` when the monotone-fit assumption or the
    budget decided a smaller count."""
    from tilec.plan.model import WhatIf

    question = "chips_needed"
    if expired():
        return WhatIf(question=question, answer=None, status="unknown", note="not searched")
    problem = CutProblem(info, target, lambda nbytes: 0.0, options)
    probes: list[dict[str, Any]] = [{"value": 1, "result": "does_not_fit" if base_proven
                                     else "unknown", "by": "plan"}]
    sound = base_proven
    for k in range(2, min(WHATIF_MAX_CHIPS, problem.n) + 1):
        if expired():
            return WhatIf(question=question, answer=None, status="unknown", probes=probes,
                          note=f"no cut into up to {k - 1} chips fits; larger counts not searched")
        res = search(problem, k, "pipeline", plan_budget=WHATIF_PLANS)
        probes.append({"value": k, "result": res.status, "by": "plan",
                       "evidence": f"cut search: {res.optimality}"})
        if res.status == STATUS_FITS:
            stages = ", ".join(f"[{a}, {b})" for a, b in pairwise(res.cut))
            if sound:
                note = f"{k} chips: ops {stages} of the schedule, each stage verified; every " \
                       f"cut into fewer chips proven not to fit"
            else:
                note = f"{k} chips: ops {stages} of the schedule, each stage verified; fewer " \
                       f"chips not all ruled out by evidence (see the probes)"
            return WhatIf(question=question, answer=k, status="exact" if sound else "bound",
                          note=note + " (tilec compile --target <system> --chips auto plans it)",
                          probes=probes)
        sound = sound and res.status == STATUS_DOES_NOT_FIT and res.optimality == "exact"
        alone = [i for i in range(problem.n)
                 if problem.always_out[i, i + 1] or problem.sound_out[i, i + 1]]
        if alone:  # every stage holding that op is ruled out by its own evidence
            return WhatIf(question=question, answer=None, status="exact",
                          probes=probes,
                          note=f"no number of chips: op '{problem.order[alone[0]]}' does not "
                               "fit one chip by itself (b)")
    return WhatIf(question=question, answer=None, status="unknown" if not sound else "bound",
                  probes=probes,
                  note=f"no cut into up to {min(WHATIF_MAX_CHIPS, problem.n)} chips fits")
