"""Compile a model over several chips of a chip system (``tilec compile --chips N|auto``).

Capture and lowering are the single-chip compile's (:mod:`tilec.compile`); then either the exact
cut search (:mod:`tilec.plan.multichip`: pipeline / sharded) or data parallelism (replicate: the
batch split over the chips, each planning the whole model at its share). Every chip's plan is the
single-chip planner's, verified by the independent verifier; the result is one :class:`Plan`
whose ``chips`` holds the cut, the per-chip stages and their plans. Nothing here prints.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tilec.capture import capture
from tilec.compile import CompileOptions, Lowered, lower, probe_source, reshaped
from tilec.errors import InputError
from tilec.plan import build, settings_from
from tilec.plan.model import (
    STATUS_DOES_NOT_FIT,
    STATUS_FITS,
    STATUS_UNKNOWN,
    ChipSet,
    ChipStage,
    Latency,
    Plan,
    Verification,
)
from tilec.plan.multichip import MODES, CutProblem, CutResult, search, stage_summary
from tilec.plan.pipeline import Options, run
from tilec.targets.system import ChipSystem

OBJECTIVES = {"pipeline": "the slowest stage (one batch per stage time), then the latency",
              "sharded": "the latency (stages run one after the other)",
              "replicate": "the fewest chips whose share of the batch fits"}


def compile_on_system(model: Any, system: ChipSystem, options: CompileOptions, *,
                      chips: int | None, mode: str = "pipeline",
                      plan_budget: int | None = None) -> tuple[Plan, Lowered]:
    """Capture, lower and plan ``model`` over ``chips`` chips of ``system`` (None: the fewest
    that fit, up to the system's count). Returns the combined plan and the lowered model."""
    if mode not in MODES:
        raise InputError(f"--mode: unknown mode '{mode}' (one of {', '.join(MODES)})")
    if chips is not None and not 1 <= chips <= system.chips:
        raise InputError(f"--chips: {system.name} has {system.chips} chips, asked for {chips}")
    target = system.chip
    t0 = time.perf_counter()
    captured = capture(model, batch=options.batch, image_size=options.image_size,
                       input_shape=options.input_shape, host_ops=options.host_ops)
    t1 = time.perf_counter()
    if options.progress:
        options.progress("lowering", None)
    lowered = lower(captured, target, options,
                    probe=probe_source(model, captured, options.input_shape))
    lowered.seconds["capture"] = t1 - t0
    opts = Options(settings=settings_from(options))
    counts = [chips] if chips is not None else list(range(1, system.chips + 1))
    t2 = time.perf_counter()
    if mode == "replicate":
        plan = _replicate(model, lowered, system, options, opts, counts)
    else:
        plan = _cut(model, lowered, system, options, opts, counts, mode, plan_budget)
    plan.timings = {**lowered.seconds, "plan": time.perf_counter() - t2}
    plan.notes[:0] = [n for n in lowered.notes if n not in plan.notes]
    plan.notes.append("each chip's plan was checked at the nominal constants only (the "
                      "uncertainty band is not run over several chips)")
    return plan, lowered


# --------------------------------------------------------------------------- pipeline / sharded
def _cut(model: Any, lowered: Lowered, system: ChipSystem, options: CompileOptions,
         opts: Options, counts: list[int], mode: str, plan_budget: int | None) -> Plan:
    """Pipeline / sharded: the exact cut for each chip count in ``counts`` (fewest first), the
    whole batch per pass first; when no count fits it, the largest divisor of the batch that
    does (micro-batches streamed through the stages, as vendor pipelining does)."""
    target = system.chip
    batch = int(lowered.captured.batch)
    tried: list[dict[str, Any]] = []
    budget = {} if plan_budget is None else {"plan_budget": plan_budget}
    result: CutResult | None = None
    problem: CutProblem | None = None
    micro = batch
    made = checked = 0
    for micro in [d for d in range(batch, 0, -1) if batch % d == 0]:
        if problem is not None:
            made, checked = made + problem.plans_made, checked + problem.bounds_checked
        info = _info_at(model, lowered, options, micro)
        problem = CutProblem(info, target, system.link_seconds, opts)
        for k in counts:
            if k > problem.n:
                tried.append({"chips": k, "micro_batch": micro, "status": STATUS_DOES_NOT_FIT,
                              "optimality": "exact", "note": f"more chips than ops ({problem.n})"})
                continue
            if options.progress:
                options.progress(f"cutting over {k} chip{'s' if k > 1 else ''}, "
                                 f"micro-batch {micro}", None)
            result = search(problem, k, mode, **budget)
            tried.append({"chips": k, "micro_batch": micro, "status": result.status,
                          "optimality": result.optimality, "note": result.note})
            if result.status == STATUS_FITS:
                break
        if result is not None and result.status == STATUS_FITS:
            break
    assert problem is not None
    info = problem.info
    fits = result is not None and result.status == STATUS_FITS
    if fits:
        status = STATUS_FITS
    elif any(t["status"] == STATUS_UNKNOWN for t in tried):
        status = STATUS_UNKNOWN
    else:
        status = STATUS_DOES_NOT_FIT
    plan = build.new_plan(lowered.info, target, lowered.passes, status)
    stages: list[ChipStage] = []
    interval = latency = throughput = None
    passes = batch // micro
    if fits:
        assert result is not None
        for s in stage_summary(problem, result.cut):
            sub: Plan = s["plan"]
            stages.append(_stage(s, sub, target, micro))
        secs = [st.stage_seconds or 0.0 for st in stages]
        one = sum(secs)  # one micro-batch through every stage
        if mode == "pipeline":  # micro-batches follow each other one slowest stage apart
            interval = max(secs) * passes
            latency = one + (passes - 1) * max(secs)
        else:
            interval = latency = one * passes
        throughput = batch / interval if interval > 0 else 0.0
        cycles = sum(int(st.plan["latency"]["cycles"]) for st in stages if st.plan)
        host = sum(st.host_seconds for st in stages)
        plan.latency = Latency(cycles=cycles * passes, seconds=latency, io_seconds=host * passes,
                               throughput_per_s=throughput, input_seconds=0.0,
                               output_seconds=0.0)
        plan.verification = _verification(stages)
    last = result or CutResult(0, status)
    note = last.note if fits else _why_not(tried, system)
    if fits and micro < batch:
        whole = [t for t in tried if t["micro_batch"] == batch]
        assumed = any(t["optimality"] != "exact" for t in whole)
        note += (f"; the batch of {batch} does not fit any cut into {max(counts)} chips whole"
                 + (" (assuming monotone fit, or not all cuts decided)" if assumed else "")
                 + f", so it streams as {passes} micro-batches of {micro}")
    plan.chips = ChipSet(
        system=system.describe(), mode=mode,
        requested="auto" if len(counts) > 1 or not counts else str(counts[0]),
        chips=len(stages), micro_batch=micro, micro_batches=passes,
        cut=list(last.cut) if fits else [],
        order=list(problem.order), objective=OBJECTIVES[mode], interval_seconds=interval,
        latency_seconds=latency, throughput_per_s=throughput,
        optimality=last.optimality if fits else _optimality(tried),
        lower_bound_seconds=(last.lower_bound if fits and last.lower_bound is not None
                             and math.isfinite(last.lower_bound) else None),
        note=note, tried=tried, plans_made=made + problem.plans_made,
        bounds_checked=checked + problem.bounds_checked, stages=stages)
    return plan


def _optimality(tried: list[dict[str, Any]]) -> str:
    kinds = {t["optimality"] for t in tried}
    if kinds <= {"exact"}:
        return "exact"
    if kinds <= {"exact", "exact_assuming_monotone_fit"}:
        return "exact_assuming_monotone_fit"
    return "unknown"


def _why_not(tried: list[dict[str, Any]], system: ChipSystem) -> str:
    if not tried:
        return "nothing searched"
    most = max(t["chips"] for t in tried)
    return (f"no cut into {most} chip{'s' if most > 1 else ''} of {system.name} fits"
            if all(t["status"] == STATUS_DOES_NOT_FIT for t in tried)
            else "no fitting cut found; not every cut ruled out") + ": " + tried[-1]["note"]


def _stage(s: dict[str, Any], sub: Plan, target, batch: int, *, same_as: int | None = None
           ) -> ChipStage:
    peak = sub.memory.peak_bytes if sub.memory is not None else None
    dev = s.get("device_seconds")
    return ChipStage(
        chip=s["chip"], start=s["start"], end=s["end"], ops=s["ops"], first_op=s["first_op"],
        last_op=s["last_op"], batch=int(batch), recv_bytes=int(s["recv_bytes"]),
        send_bytes=int(s["send_bytes"]), link_seconds=float(s["link_seconds"]),
        host_seconds=float(s["host_seconds"]), device_seconds=dev,
        stage_seconds=(dev + s["link_seconds"] + s["host_seconds"]) if dev is not None else None,
        status=sub.status, peak_bytes=peak,
        headroom_bytes=(int(target.budget_per_tile) - peak) if peak is not None else None,
        same_as=same_as, plan=None if same_as is not None else sub.to_dict())


def _verification(stages: list[ChipStage]) -> Verification:
    """The combined verdict: every chip's own plan passed the independent verifier."""
    checks, errors = [], []
    for st in stages:
        if st.plan is None:
            continue
        v = st.plan.get("verification") or {}
        if v.get("ok"):
            checks.append(f"chip {st.chip}: its plan passed {len(v.get('checks', []))} checks")
        else:
            errors.append(f"chip {st.chip}: its plan failed verification")
    return Verification(ok=not errors and bool(checks), checks=checks, errors=errors)


# ----------------------------------------------------------------------------------- replicate
def _replicate(model: Any, lowered: Lowered, system: ChipSystem, options: CompileOptions,
               opts: Options, counts: list[int]) -> Plan:
    """Data parallel: chip c runs ``batch // k`` images (+1 for the first ``batch % k``), each
    with the whole model; the distinct shares are planned once each."""
    info, target = lowered.info, system.chip
    batch = int(lowered.captured.batch)
    if len(counts) == 1 and counts[0] > batch:
        raise InputError(f"--mode replicate: {counts[0]} chips need a batch of at least "
                         f"{counts[0]} (got {batch})")
    plans: dict[int, Plan] = {}
    tried: list[dict[str, Any]] = []
    chosen: list[int] | None = None
    n = len(info.ops)
    for k in counts:
        if k > batch:
            break
        shares = [batch // k + (1 if c < batch % k else 0) for c in range(k)]
        ok = True
        for b in sorted(set(shares), reverse=True):
            if b not in plans:
                if options.progress:
                    options.progress(f"replicating: batch {b} per chip", None)
                plans[b] = run(_info_at(model, lowered, options, b), target, options=opts).plan
            ok = ok and plans[b].status == STATUS_FITS
            if not ok:
                break
        tried.append({"chips": k, "status": STATUS_FITS if ok else plans[b].status,
                      "optimality": "exact", "note": f"batch per chip {max(shares)}"})
        if ok:
            chosen = shares
            break
    status = STATUS_FITS if chosen else (
        STATUS_UNKNOWN if any(t["status"] == STATUS_UNKNOWN for t in tried)
        else STATUS_DOES_NOT_FIT)
    plan = build.new_plan(info, target, lowered.passes, status)
    stages: list[ChipStage] = []
    interval = throughput = None
    if chosen:
        first: dict[int, int] = {}
        for c, b in enumerate(chosen):
            sub = plans[b]
            assert sub.latency is not None
            dev = sub.latency.cycles / float(target.clock_hz)
            s = {"chip": c, "start": 0, "end": n, "ops": n, "first_op": sub.ops[0].name,
                 "last_op": sub.ops[-1].name, "recv_bytes": 0, "send_bytes": 0,
                 "link_seconds": 0.0, "host_seconds": float(sub.latency.io_seconds),
                 "device_seconds": dev}
            stages.append(_stage(s, sub, target, b, same_as=first.get(b)))
            first.setdefault(b, c)
        interval = max(st.stage_seconds or 0.0 for st in stages)
        throughput = batch / interval if interval > 0 else 0.0
        big = plans[chosen[0]]
        assert big.latency is not None
        plan.latency = Latency(cycles=big.latency.cycles, seconds=interval,
                               io_seconds=big.latency.io_seconds, throughput_per_s=throughput,
                               input_seconds=big.latency.input_seconds,
                               output_seconds=big.latency.output_seconds)
        plan.verification = _verification(stages)
    plan.chips = ChipSet(
        system=system.describe(), mode="replicate",
        requested="auto" if len(counts) > 1 else str(counts[0]), chips=len(stages),
        micro_batch=max(chosen) if chosen else batch, micro_batches=1, cut=[], order=[],
        objective=OBJECTIVES["replicate"], interval_seconds=interval,
        latency_seconds=interval, throughput_per_s=throughput,
        optimality="exact" if chosen or status == STATUS_DOES_NOT_FIT else "unknown",
        lower_bound_seconds=None,
        note=(f"the batch of {batch} split over {len(chosen)} chips (shares "
              f"{', '.join(map(str, chosen))}), the whole model on each" if chosen else
              f"no share of the batch of {batch} fits one chip of {system.name}"),
        tried=tried, plans_made=len(plans), bounds_checked=0, stages=stages)
    return plan


def _info_at(model: Any, lowered: Lowered, options: CompileOptions, batch: int):
    """The planner's view of the model at another batch (re-shaped, else captured again)."""
    if batch == lowered.captured.batch:
        return lowered.info
    again = reshaped(lowered, batch, None)
    if again is not None:
        return again.info
    cap = capture(model, batch=batch, image_size=lowered.captured.image_size,
                  input_shape=options.input_shape, host_ops=options.host_ops)
    opts = CompileOptions(**{**options.__dict__, "verify": "off",
                             "precision": lowered.precision})
    return lower(cap, lowered.target, opts).info
