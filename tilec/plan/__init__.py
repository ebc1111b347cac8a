"""Planner: schedule -> partition -> place -> lay out -> verify -> diagnose (-> what-if).

Stages (one module each, plain-data results; see docs/planner.md):

* :mod:`~tilec.plan.schedule`   topological order = supersteps, chosen to keep the live set small
* :mod:`~tilec.plan.partition`  per op, Pareto-pruned candidate splits priced by the cost model
* :mod:`~tilec.plan.problem`    buffers, lifetimes, op groups and their memory profiles
* :mod:`~tilec.plan.place`      greedy + CP-SAT choice of split and tiles under per-tile budgets
  (its CP-SAT block model: :mod:`~tilec.plan.place_model`)
* :mod:`~tilec.plan.layout`     an address for every buffer on every tile
* :mod:`~tilec.plan.verify`     independent re-check of the finished plan
* :mod:`~tilec.plan.bounds`, :mod:`~tilec.plan.proof`, :mod:`~tilec.plan.diagnose`  evidence
* :mod:`~tilec.plan.whatif`     largest batch / image size, lowest precision, smallest SRAM
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo
from tilec.plan.cpsat import DEFAULT_DETERMINISTIC, SolveSettings
from tilec.plan.model import STATUS_FITS, Plan
from tilec.plan.pipeline import Options, run

__all__ = ["Options", "plan_model", "settings_from"]


def settings_from(options: Any) -> SolveSettings:
    """Solver settings from a CompileOptions-like object (time_limit, seed, workers)."""
    time_limit = float(getattr(options, "time_limit", 10.0) or 10.0)
    # The deterministic budget (what actually stops a solve, reproducibly) scales with the
    # user's wall-clock limit: the default 10 s gives DEFAULT_DETERMINISTIC.
    det = float(getattr(options, "deterministic_limit", 0) or
                DEFAULT_DETERMINISTIC * time_limit / 10.0)
    return SolveSettings(time_limit=time_limit, deterministic_limit=min(det, time_limit),
                         seed=int(getattr(options, "seed", 0) or 0),
                         workers=max(1, int(getattr(options, "workers", 2) or 1)))


def plan_model(info: GraphInfo, target: Target, *, options: Any,
               rebuild: Callable[..., GraphInfo] | None = None, passes: list[str] | None = None,
               stage_seconds: dict[str, float] | None = None,
               follow: dict[str, Callable[[Any], None]] | None = None) -> Plan:
    """Plan ``info`` on ``target``: a verified plan (with its headroom answers when asked), or a
    diagnosis with what-if answers.

    ``options`` carries ``time_limit``, ``what_if`` (search what would fit when the model does
    not), ``what_if_fits`` (also search the headroom of a plan that fits), ``seed``, ``workers``
    and ``progress`` (tilec.compile.CompileOptions). ``rebuild(batch=, image_size=,
    precision=)`` returns the same model at another configuration (for what-if); without it the
    questions that need it are skipped. ``follow``: per what-if question, more work on its
    answer (tilec.plan.whatif.what_if). Wall-clock times go to ``plan.timings`` (never into the
    JSON).
    """
    progress = getattr(options, "progress", None)
    opts = Options(settings=settings_from(options))
    t0 = time.perf_counter()
    outcome = run(info, target, passes=passes or [], options=opts, progress=progress)
    timings = {**(stage_seconds or {}), **{f"plan.{k}": v for k, v in outcome.timings.items()}}
    plan = outcome.plan
    timings["plan"] = time.perf_counter() - t0
    # what would fit instead (a diagnosis, unless --no-what-if), or how far a plan that fits
    # can grow (only when asked: --what-if; a fitting compile stays fast by default)
    fits = plan.status == STATUS_FITS
    if (getattr(options, "what_if_fits", False) if fits else
            getattr(options, "what_if", True) and plan.diagnosis is not None):
        from tilec.plan.whatif import what_if

        t1 = time.perf_counter()
        if rebuild is None:
            def rebuild(**kw: Any) -> GraphInfo:
                raise_missing()

        answers = what_if(info, target, outcome, rebuild=rebuild, options=opts,
                          seconds=max(5.0, opts.settings.time_limit), progress=progress,
                          follow=follow)
        if fits:
            plan.what_if = answers
        else:
            assert plan.diagnosis is not None
            plan.diagnosis.what_if = answers
        timings["what_if"] = time.perf_counter() - t1
    plan.timings = timings
    return plan


def raise_missing() -> None:
    from tilec.errors import InputError

    raise InputError("what-if: this model cannot be rebuilt at another configuration")
