"""An upward search for the largest value that fits, steered by the bounds' need.

:func:`tilec.plan.whatif_search._largest_up` finds the bounds' ceiling by doubling from the
compiled value and bisecting, and the answer below it by bisecting with plans. Every probe of a
new batch is a new shape, so each costs a partition (on YOLOv4-P5 / gc200 ~0.8 s, the bulk of a
``tilec sweep``: ~320 partitions for its 74 searches). Yet the quantity the bounds compare with
the tile -- the bytes per tile they need at least (:attr:`Probe.need`) -- grows almost linearly
with the batch (the weights are fixed, the activations scale), so two probes predict where it
crosses the budget. This search uses that:

1. Ceiling by the bounds, steered: while no value is ruled out, the line through the two
   highest values seen (or, from the first value alone, a slope the caller estimates -- the sweep
   takes it from the chip-capacity bound's activation terms) is extrapolated to where the need
   crosses the budget, aimed :data:`OVERSHOOT` further; once a value is ruled out, regula falsi
   inside the bracket with the Illinois rule (the end that stays put twice has its weight
   halved), so a curved or jagged need cannot pin one end and make the search creep. Without a
   line, doubling / bisection.
2. Plans: down from the value just below the ceiling, :data:`DESCEND` values one by one (the
   bounds are usually tight), then bisection.
3. What is left of the plan budget checks the values between the answer and the ceiling
   (:func:`~tilec.plan.whatif_search._fill`), as the doubling search does.

The guess only chooses *which* values are probed; every verdict is a probe's own (bounds or a
verified plan), and the result has the same meaning and the same ``exact`` / ``bound`` rule
(:func:`~tilec.plan.whatif_search._up_note`). The probes depend only on the graph, the target and
the budgets, so the search is deterministic.
"""

from __future__ import annotations

from tilec.plan.whatif_search import FITS, NO, UNKNOWN, Knob, _bisect_up, _fill

DESCEND = 2
"""Values planned one by one down from the ceiling before bisecting (modelling choice, for
speed: where the bounds are tight the answer is the ceiling minus one or two -- on YOLOv4-P5 /
gc200's sweep grid, 128-1280 px, fp16 + fp32, in 49 of the 51 searches the bounds ended -- and a
bisection from batch 1 spent two or three plans on values far below it)."""
OVERSHOOT = 1.25
"""An extrapolated guess aims this much further than the line's crossing (modelling choice, for
speed): the need grows more slowly at larger batches (the weights' share is fixed, step
temporaries grow sub-linearly), so a line through the two lowest batches predicts the crossing
too early, and each guess short of the ceiling costs a probe; a guess past it costs at most the
probe below it."""


def _extrapolate(points: dict[int, int], limit: int, slope: float | None = None) -> int | None:
    """The first value the line through the two highest known points puts above ``limit``,
    aimed :data:`OVERSHOOT` further; with one point, the line of gradient ``slope`` through it
    (an estimate, e.g. from the bounds' activation terms); None without a rising line."""
    if len(points) == 1 and slope:
        (k2, n2), = points.items()
        reach = (limit - n2) / slope
    elif len(points) >= 2:
        (k1, n1), (k2, n2) = sorted(points.items())[-2:]
        if n2 <= n1:
            return None
        reach = (limit - n2) * (k2 - k1) / (n2 - n1)
    else:
        return None
    # the first value past the crossing, or past the crossing aimed further, whichever is
    # higher (the aim must not turn a crossing just above k2 into a guess two values up)
    return max(int(k2 + reach) + 1, int(k2 + reach * OVERSHOOT))


def _interpolate(ok: int, f_ok: float, ceiling: int, f_ceiling: float) -> int:
    """The first value above the crossing of the line through the bracket's ends (``f``: need
    minus the limit, <= 0 at ``ok``, > 0 at ``ceiling``), inside the bracket."""
    x = ok - f_ok * (ceiling - ok) / (f_ceiling - f_ok)
    return min(max(int(x) + 1, ok + 1), ceiling - 1)


def secant_up(knob: Knob, lo: int, cap: int, need_lo: int | None, limit: int, *,
              slope: float | None = None) -> tuple[int, int | None, int]:
    """The largest value in ``lo .. cap`` that fits, ``lo`` known to fit with bounds need
    ``need_lo`` (bytes per tile; None: unknown); ``limit``: the bytes per tile above which the
    bounds rule a value out; ``slope``: an estimate of the need's growth per value at ``lo``
    (None: a second value is probed to measure it). Returns (answer, ceiling: the smallest value
    the bounds ruled out or None, the highest value the bounds looked at) -- the contract of
    :func:`~tilec.plan.whatif_search._largest_up`, so :func:`~tilec.plan.whatif_search._up_note`
    words the result.

    Step 1 is regula falsi with the Illinois rule: while no value is ruled out, extrapolate
    (doubling without a line); then interpolate between the bracket's ends, and when the same
    end moves twice in a row, halve the other end's weight, so a curved or jagged need cannot
    pin one end and creep."""
    prober = knob.prober
    under: dict[int, int] = {} if need_lo is None else {lo: need_lo}
    ok, ceiling = lo, None  # ok: the largest value the bounds do not rule out
    f_ok: float | None = None if need_lo is None else float(need_lo - limit)
    f_ceiling: float | None = None
    last: str | None = None

    # 1. the ceiling, steered by the need
    while prober.bounds_left > 0 and not prober.expired:
        if (ceiling is not None and ceiling - ok <= 1) or (ceiling is None and ok >= cap):
            break
        if ceiling is None:
            guess = _extrapolate(under, limit, slope if len(under) == 1 else None)
            if guess is None:
                guess = 2 * ok
            guess = min(max(guess, ok + 1), cap)
        elif f_ok is not None and f_ceiling is not None and f_ceiling > f_ok:
            guess = _interpolate(ok, f_ok, ceiling, f_ceiling)
        else:
            guess = (ok + ceiling) // 2
        p = knob.decide(guess, plan=False)
        if p.by == "skipped":
            break
        f = None if p.need is None else float(p.need - limit)
        if p.result == NO:
            if last == "over" and f_ok is not None:
                f_ok /= 2  # Illinois: the under end has not moved twice running
            ceiling = guess
            f_ceiling = f if f is not None and f > 0 else None  # (not by the framebuffer)
            last = "over"
        else:
            if last == "under" and f_ceiling is not None:
                f_ceiling /= 2
            ok, f_ok = guess, f
            if p.need is not None:
                under[guess] = p.need
            last = "under"
    looked = ceiling or ok

    # 2. plans: down from just below the ceiling (DESCEND values), then bisection
    fit, fail = lo, ceiling
    top = (ceiling - 1) if ceiling is not None else ok
    # (without a ceiling the top is the cap, which the bounds did not bring near the answer:
    # one plan there, then bisection)
    steps = DESCEND if ceiling is not None else 1
    for k in range(top, max(lo, top - steps), -1):
        if not prober.can_probe:
            break
        p = knob.decide(k)
        if p.result == FITS:
            fit = k
            break
        if p.by == "skipped" or (p.by == "bounds" and p.result == UNKNOWN):
            break
        fail = k
        if p.by == "bounds":
            ceiling = k
    fit, ceiling = _bisect_up(knob, fit, fail, ceiling)
    top = (ceiling - 1) if ceiling is not None else looked
    # 3. the values between the answer and the ceiling, with what is left
    fit = _fill(knob, fit, top) or fit
    return fit, ceiling, looked

