"""The planner pipeline: schedule, partition, bounds, place, lay out, verify, diagnose.

:func:`run` plans one configuration and returns the :class:`Plan` (status "fits" only after the
independent verifier accepted it) together with the intermediate results the what-if search reuses.
Each stage is a module with a plain-data result; this file only wires them and times them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tilec.costmodel import Target
from tilec.errors import InternalError
from tilec.opinfo import GraphInfo
from tilec.plan import build
from tilec.plan.bounds import Bound, chip_bound, op_bound, quality_lower_bound
from tilec.plan.cpsat import SolveSettings
from tilec.plan.diagnose import (
    evidence_from_bound,
    evidence_from_proof,
    evidence_unknown,
    locate,
    split_scope,
)
from tilec.plan.geometry import Geometry
from tilec.plan.layout import layout_plan
from tilec.plan.model import (
    STATUS_DOES_NOT_FIT,
    STATUS_FITS,
    STATUS_UNKNOWN,
    Plan,
    SolverInfo,
)
from tilec.plan.partition import Partition, partition
from tilec.plan.place import (
    PlaceResult,
    evaluate,
    evaluate_tiles,
    greedy_exact,
    greedy_orders,
    place,
    repair_exact,
)
from tilec.plan.problem import Problem, build_problem, framebuffer_need, with_proof_options
from tilec.plan.proof import prove
from tilec.plan.schedule import Schedule, schedule
from tilec.plan.verify import verify

Progress = Callable[[str, float], None] | None


@dataclass
class Options:
    """How hard to try (the CLI's --time-limit, seed, workers) and what to produce."""

    settings: SolveSettings = field(default_factory=SolveSettings)
    use_cpsat: bool = True
    prove: bool = True
    layout_exact: bool = True
    max_blocks: int = 32  # CP-SAT block model on a line of tiles (1472 -> 32 blocks of 46)
    max_blocks_mesh: int = 16  # on a mesh (16 x 16 -> 4 x 4 blocks of 4 x 4)
    max_positions: int = 6
    greedy_passes: int = 5  # price bisection passes of the tile-level greedy
    fit_only: bool = False  # what-if probes: look for any plan that fits, not the fastest one


@dataclass
class Outcome:
    """One configuration planned: the plan and what the what-if search may reuse."""

    plan: Plan
    schedule: Schedule
    partition: Partition
    bounds: dict[str, Bound]
    problem: Problem | None = None
    place: PlaceResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.plan.status

    @property
    def proven(self) -> bool:
        """Is a "does not fit" backed by evidence (a)-(c)?"""
        return self.plan.status == STATUS_DOES_NOT_FIT


def _tick(timings: dict[str, float], stage: str, t0: float) -> float:
    t = time.perf_counter()
    timings[stage] = timings.get(stage, 0.0) + (t - t0)
    return t


def _live_tensors(problem: Problem) -> dict[int, list[str]]:
    live: dict[int, list[str]] = {}
    for root, spec in sorted(problem.buffers.items()):
        for s in range(spec.first, spec.end):
            live.setdefault(s, []).append(root)
    return live


def lower_bounds(info: GraphInfo, target: Target, part: Partition) -> dict[str, Bound]:
    """(b), (a) and the framebuffer check of ``part`` -- the certificates that need no
    placement (what-if probes try them before planning)."""
    bounds = {"b": op_bound(info, part, target), "a": chip_bound(info, part, target)}
    fb = framebuffer_need(target, info)
    if fb is not None:
        bounds["io"] = Bound(kind="chip_capacity", holds=fb[0] > fb[1], op=None, needed=fb[0],
                             capacity=fb[1], details={"resource": "framebuffer"})
    return bounds


def run(info: GraphInfo, target: Target, *, passes: Sequence[str] = (), options: Options,
        progress: Progress = None, sched: Schedule | None = None,
        part: Partition | None = None, bounds: dict[str, Bound] | None = None) -> Outcome:
    """Plan ``info`` on ``target`` (see the module docstring). ``part`` and ``bounds``, when
    given, are this configuration's partition and :func:`lower_bounds`."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if progress:
        progress("schedule", 0.0)
    sched = sched or schedule(info)
    t0 = _tick(timings, "schedule", t0)
    if progress:
        progress("partition", 0.0)
    part = part or partition(info, target)
    t0 = _tick(timings, "partition", t0)
    bounds = bounds or lower_bounds(info, target, part)
    t0 = _tick(timings, "bounds", t0)
    problem = build_problem(info, target, sched, part)
    geometry = Geometry(int(target.tiles), (int(target.grid[0]), int(target.grid[1])),
                        str(target.placement),
                        max_blocks=(options.max_blocks_mesh if target.placement == "rect"
                                    else options.max_blocks),
                        max_positions=options.max_positions)
    t0 = _tick(timings, "problem", t0)
    certificate = next((bounds[k] for k in ("io", "b", "a") if k in bounds and bounds[k].holds),
                       None)
    if progress:
        progress("place", 0.0)
    proofs: list = []  # a proof made during a fit-only placement (reused below)

    def proven_infeasible() -> bool:
        """Fit-only probes prove before the (costly) repair search, and skip it if proven."""
        proofs.append(prove(problem, geometry, options.settings, minimise_budget=0))
        return proofs[-1].proven

    res = _place(problem, geometry, options, use_cpsat=options.use_cpsat
                 and certificate is None, progress=progress,
                 give_up=proven_infeasible if options.fit_only and options.prove
                 and certificate is None else None)
    t0 = _tick(timings, "place", t0)
    if not res.fits and certificate is None and options.prove and geometry.exact:
        # On a small chip the proof model is the exact placement model over every split: if it
        # has a solution, that is a placement the search missed -- take it rather than report
        # "unknown" for a configuration that fits.
        if not proofs:
            if progress:
                progress("prove", 0.0)
            proofs.append(prove(problem, geometry, options.settings, progress=progress))
            t0 = _tick(timings, "prove", t0)
        if proofs[-1].witness is not None:
            problem, res = _from_witness(problem, geometry, proofs[-1], res)
    plan = build.new_plan(info, target, passes, STATUS_UNKNOWN)
    plan.notes = list(problem.partition.notes) + list(problem.notes)
    plan.bounds = {"a_chip_bytes": bounds["a"].needed, "a_op": bounds["a"].op,
                   "b_tile_bytes": bounds["b"].needed, "b_op": bounds["b"].op,
                   **quality_lower_bound(problem)}
    plan.solver = _solver_info(res, options, sched, problem, geometry)
    if res.wall_clock_hit:
        plan.notes.append("the wall-clock time limit stopped a CP-SAT solve before its "
                          "deterministic budget: the plan is valid but may differ between runs "
                          "(raise --time-limit for reproducible results)")
    ops, buffers, steps = build.placements_and_buffers(problem, res.best.choice)
    plan.ops, plan.buffers, plan.steps = ops, buffers, steps
    plan.latency = build.latency(steps, target, info, plan.model.batch)
    t0 = _tick(timings, "build", t0)

    if certificate is not None and res.fits:
        _contradiction(certificate, plan, buffers, target, problem, options, info)
    fits_blocks = res.fits and certificate is None
    layout_failure = None
    if fits_blocks:
        if progress:
            progress("layout", 0.0)
        lay = _layout(buffers, target, problem, options)
        if not lay.ok:
            # Fragmentation: no address layout although every tile's live bytes fit. Place once
            # more with the budget lowered by the worst overflow, then lay out at the real budget.
            short = max(f["needs"] for f in lay.failures) - problem.budget
            res2 = _place(problem, geometry, options, budget=problem.budget - short,
                          use_cpsat=options.use_cpsat)
            if res2.fits:
                ops2, buffers2, steps2 = build.placements_and_buffers(problem, res2.best.choice)
                lay2 = _layout(buffers2, target, problem, options)
                if lay2.ok:
                    res, lay = res2, lay2
                    ops, buffers, steps = ops2, buffers2, steps2
                    plan.ops, plan.buffers, plan.steps = ops, buffers, steps
                    plan.latency = build.latency(steps, target, info, plan.model.batch)
                    plan.solver = _solver_info(res, options, sched, problem, geometry)
                    plan.notes.append(f"placed with {short:,} bytes per tile held back: the "
                                      "first placement could not be laid out (fragmentation)")
        for b in buffers:
            b.offsets = lay.offsets.get(b.id, [])
        plan.solver.details["layout"] = {"segments": lay.segments, "distinct": lay.distinct,
                                         "exact_searches": lay.exact_used}
        if not lay.ok:
            layout_failure = lay.failures
        t0 = _tick(timings, "layout", t0)
    occ = build.occupancy(buffers, int(target.tiles), problem.steps)
    plan.memory = build.memory_summary(buffers, int(target.tiles), problem.steps, occ)
    t0 = _tick(timings, "summary", t0)
    if progress:
        progress("verify", 0.0)
    plan.verification = verify(plan, info, target)
    t0 = _tick(timings, "verify", t0)

    if fits_blocks and layout_failure is None:
        if not plan.verification.ok:
            raise InternalError(
                "the planner built a plan the verifier rejects: "
                + "; ".join(plan.verification.errors[:5]))
        plan.status = STATUS_FITS
        return Outcome(plan=plan, schedule=sched, partition=part, bounds=bounds,
                       problem=problem, place=res, timings=timings)

    # ---- does not fit (or could not be laid out): evidence, then where
    live = _live_tensors(problem)
    cm = target.cost_model
    scope = split_scope(target.name, getattr(cm, "policy", None), getattr(cm, "slack", None))
    if certificate is not None:
        ev = evidence_from_bound(certificate, int(target.tiles), problem.budget,
                                 problem.step_of, scope)
        plan.status = STATUS_DOES_NOT_FIT
    else:
        proof = None
        if proofs and layout_failure is None:
            proof = proofs[-1]
        elif options.prove and layout_failure is None:
            if progress:
                progress("prove", 0.0)
            proof = prove(problem, geometry, options.settings, progress=progress)
            t0 = _tick(timings, "prove", t0)
        if proof is not None and proof.wall_clock_hit:
            plan.solver.wall_clock_limited = True
            plan.notes.append("the wall-clock time limit stopped a CP-SAT solve of the "
                              "infeasibility proof before its deterministic budget: the verdict "
                              "may differ between runs (raise --time-limit for reproducible "
                              "results)")
        if proof is not None and proof.proven:
            ev = evidence_from_proof(proof, sched.method, live, sched.order, scope)
            plan.status = STATUS_DOES_NOT_FIT
        else:
            if layout_failure is not None:
                reason = "no address layout found for " + "; ".join(
                    f"tiles {f['tiles']}: {f['reason']}" for f in layout_failure[:3])
            else:
                reason = (f"best placement found needs {res.best.peak:,} bytes on a tile "
                          f"(budget {problem.budget:,}); no proof that none fits")
            details = {"best_peak": int(res.best.peak), "budget": problem.budget,
                       "solver_status": res.solver_status,
                       "proof_status": proof.status if proof else "NOT_RUN",
                       "proof_scope": proof.scope if proof else None,
                       "layout_failures": layout_failure or []}
            if proof is not None and proof.notes:
                details["proof_notes"] = proof.notes
            ev = evidence_unknown(reason, details)
            plan.status = STATUS_UNKNOWN
    plan.diagnosis = locate(ev, plan.ops, plan.buffers, occ, problem.budget)
    t0 = _tick(timings, "diagnose", t0)
    return Outcome(plan=plan, schedule=sched, partition=part, bounds=bounds, problem=problem,
                   place=res, timings=timings)


def _from_witness(problem: Problem, geometry: Geometry, proof, res: PlaceResult
                  ) -> tuple[Problem, PlaceResult]:
    """The proof model's solution as the placement (its options index the proof options)."""
    wide = with_proof_options(problem)
    choice = [(len(g.options) + oi, pos)
              for g, (oi, pos) in zip(problem.groups, proof.witness, strict=True)]
    best = evaluate(wide, geometry, choice, "cp-sat:exact model")
    found = PlaceResult(best=best, fits=best.fits, solver_status=proof.status,
                        wall_clock_hit=res.wall_clock_hit or proof.wall_clock_hit,
                        details={**res.details, "search_status": res.solver_status,
                                 "search_block_peak": int(res.best.peak),
                                 "found_by": "the exact proof model (the search found none)"},
                        greedy_cycles=res.greedy_cycles, greedy_peak=res.greedy_peak)
    return wide, found


def _contradiction(certificate: Bound, plan: Plan, buffers, target: Target, problem: Problem,
                   options: Options, info: GraphInfo) -> None:
    """A bound says no placement exists, yet the placer found one within the budget: lay it out
    and verify it. A plan the verifier accepts refutes the bound -- an internal error, never a
    "does not fit" (the plan is left untouched either way)."""
    lay = _layout(buffers, target, problem, options)
    if not lay.ok:
        return
    trial = copy.deepcopy(plan)
    for b in trial.buffers:
        b.offsets = lay.offsets.get(b.id, [])
    occ = build.occupancy(trial.buffers, int(target.tiles), problem.steps)
    trial.memory = build.memory_summary(trial.buffers, int(target.tiles), problem.steps, occ)
    if verify(trial, info, target).ok:
        raise InternalError(f"evidence ({certificate.kind}) says nothing fits, but the planner "
                            "built a plan the verifier accepts: the bound is wrong")


def _place(problem: Problem, geometry: Geometry, options: Options, *, use_cpsat: bool,
           budget: int | None = None, progress: Progress = None,
           give_up: Callable[[], bool] | None = None) -> PlaceResult:
    if options.fit_only:
        return place_to_fit(problem, geometry, options.settings, budget=budget, give_up=give_up)
    return place(problem, geometry, options.settings, budget=budget, use_cpsat=use_cpsat,
                 greedy_passes=options.greedy_passes, progress=progress)


def place_to_fit(problem: Problem, geometry: Geometry, settings: SolveSettings, *,
                 budget: int | None = None, give_up: Callable[[], bool] | None = None
                 ) -> PlaceResult:
    """A placement that fits, for a what-if probe, where only *whether* one fits matters.

    The memory-first passes of :func:`~tilec.plan.place.place` (tile-level greedy in its two
    group orders, stopping at the first that fits, then the repair search when none does), without
    the passes that only make a fitting plan faster. The full search runs these passes too, so
    it finds a placement that fits wherever this one does; a probe's own plan is laid out and
    verified like any other. ``give_up()`` is asked once, when the first order does not fit (the
    pipeline tries its infeasibility proof there): if it says so, neither the second order nor
    the repair search runs -- no placement can fit a proven case."""
    budget = problem.budget if budget is None else budget
    if geometry.exact:  # small chips: the block greedy is tile-exact already
        return place(problem, geometry, settings, budget=budget, use_cpsat=False,
                     greedy_passes=0)
    log: list[dict] = []
    best = None
    proven = None  # give_up()'s answer, asked once: after the first order fails
    for name, order in greedy_orders(problem).items():
        p = evaluate_tiles(problem, greedy_exact(problem, geometry, order, budget=budget),
                           f"greedy:tile:{name}", budget)
        log.append({"pass": p.method, "peak": p.peak, "cycles": p.cycles})
        if best is None or (not p.fits, p.peak if not p.fits else p.cycles) < (
                not best.fits, best.peak if not best.fits else best.cycles):
            best = p
        if p.fits:
            break
        if proven is None and give_up is not None:
            proven = give_up()
            if proven:
                break
    assert best is not None
    if not best.fits and not proven:
        fixed, peak = repair_exact(problem, geometry, best.choice, budget)
        log.append({"pass": "greedy:tile:repair", "peak": peak})
        if peak < best.peak:
            best = evaluate_tiles(problem, fixed, "greedy:tile:repair", budget)
    return PlaceResult(best=best, fits=best.fits, solver_status="greedy",
                       details={"greedy": log, "geometry": geometry.describe(),
                                "groups": len(problem.groups), "search": "fit only"},
                       greedy_cycles=best.cycles, greedy_peak=best.peak)


def _layout(buffers, target: Target, problem: Problem, options: Options):
    return layout_plan(buffers, int(target.tiles), problem.steps, problem.budget,
                       exact=options.layout_exact,
                       exact_settings=SolveSettings(
                           time_limit=options.settings.time_limit,
                           deterministic_limit=options.settings.deterministic_limit,
                           seed=options.settings.seed, workers=1))


def _solver_info(res: PlaceResult, options: Options, sched: Schedule, problem: Problem,
                 geometry: Geometry) -> SolverInfo:
    # Objective: the kept plan's cycles. Bound: every group at its fastest option -- a valid
    # lower bound on the latency of any plan for this schedule (CP-SAT's own bound is only for
    # its neighbourhood model, so it is kept in the details, not reported as the bound).
    obj = float(res.best.cycles)
    bound = float(sum(min(o.cycles for o in g.options) for g in problem.groups if g.options))
    gap = max(0.0, (obj - bound) / obj) if obj > 0 else 0.0
    details = dict(res.details)
    budget1 = problem.budget + 1
    if res.objective is not None:
        details["cp_sat_model"] = {"scope": "blocks, neighbourhood of the greedy plan",
                                   "objective_cycles": int(res.objective // budget1),
                                   "bound_cycles": (int(res.bound // budget1)
                                                    if res.bound is not None else None)}
    details["bound"] = "sum over ops of their fastest split (this schedule)"
    details["schedule"] = {"method": sched.method, "live_peak": sched.live_peak,
                           "live_peak_step": sched.live_peak_step, "scores": dict(sched.scores)}
    details["kept_cycles"] = int(res.best.cycles)
    details["kept_block_peak"] = int(res.best.peak)
    details["greedy_cycles"] = res.greedy_cycles
    details["greedy_block_peak"] = res.greedy_peak
    details["candidates"] = {"search": sum(len(o.search) for o in problem.partition.ops.values()),
                             "proof": sum(len(o.proof) for o in problem.partition.ops.values())}
    return SolverInfo(status=res.solver_status, objective=obj, bound=bound, gap=gap,
                      time_limit=options.settings.time_limit,
                      deterministic_limit=options.settings.deterministic_limit,
                      method=res.best.method, wall_clock_limited=res.wall_clock_hit,
                      details=details)

