"""An upward search for the largest value that fits, steered by the bounds' need.

:func:`tilec.plan.whatif_search._largest_up` finds the bounds' ceiling by doubling from the
compiled value and bisecting, and the answer below it by bisecting with plans. Every probe of a
new batch is a new shape, so each costs a partition (on YOLOv4-P5 / gc200 ~0.8 s, the bulk of a
``tilec sweep``: ~320 partitions for its 74 searches). Yet the quantity the bounds compare with
the tile -- the bytes per tile they need at least (:attr:`Probe.need`) -- grows almost linearly
with the batch (the weights are fixed, the activations scale), so two probes predict where it
crosses the budget. This search uses that:

1. Ceiling by the bounds, guided: from the known points (value, need), a secant through the two
   that bracket the budget (or the two highest, extrapolating) predicts the first value the bounds
   rule out; that value is probed, then the one below it. A step that fails to narrow the bracket
   as predicted is followed by a bisection step, so the search never does worse than bisection
   plus one probe per secant step (each probe shrinks the bracket).
2. Plans: the value just below the ceiling first (the bounds are usually tight: on the sweep's
   grid the answer was the ceiling minus one in 60 of 74 searches), then bisection.
3. What is left of the plan budget checks the values between the answer and the ceiling
   (:func:`~tilec.plan.whatif_search._fill`), as the doubling search does.

The guess only chooses *which* values are probed; every verdict is a probe's own (bounds or a
verified plan), and the result has the same meaning and the same ``exact`` / ``bound`` rule
(:func:`~tilec.plan.whatif_search._up_note`). The probes depend only on the graph, the target and
the budgets, so the search is deterministic.
"""

from __future__ import annotations

from tilec.plan.whatif_search import FITS, NO, UNKNOWN, Knob, _fill


def _crossing(points: dict[int, int], limit: int, ok: int, ceiling: int | None
              ) -> int | None:
    """The first value whose need the line through two known points puts above ``limit``:
    the two that bracket the crossing (the largest value under it, the smallest over it), else
    the two highest under it. None when the points do not give a rising line."""
    under = sorted(k for k, n in points.items() if n <= limit)
    over = sorted(k for k, n in points.items() if n > limit)
    if under and over:
        (k1, n1), (k2, n2) = (under[-1], points[under[-1]]), (over[0], points[over[0]])
    elif len(under) >= 2:
        (k1, n1), (k2, n2) = (under[-2], points[under[-2]]), (under[-1], points[under[-1]])
    else:
        return None
    if n2 <= n1 or k2 == k1:
        return None
    x = k1 + (limit - n1) * (k2 - k1) / (n2 - n1)  # need(x) == limit on the line
    guess = int(x) + 1  # the first integer strictly above the crossing
    hi = ceiling if ceiling is not None else None
    if guess <= ok:
        guess = ok + 1
    if hi is not None and guess >= hi:
        guess = hi - 1
    return guess


def secant_up(knob: Knob, lo: int, cap: int, need_lo: int | None, limit: int
              ) -> tuple[int, int | None, int]:
    """The largest value in ``lo .. cap`` that fits, ``lo`` known to fit with bounds need
    ``need_lo`` (bytes per tile; None: unknown); ``limit``: the bytes per tile above which the
    bounds rule a value out. Returns (answer, ceiling: the smallest value the bounds ruled out or
    None, the highest value the bounds looked at) -- the contract of
    :func:`~tilec.plan.whatif_search._largest_up`, so :func:`~tilec.plan.whatif_search._up_note`
    words the result."""
    prober = knob.prober
    points: dict[int, int] = {} if need_lo is None else {lo: need_lo}
    ok, ceiling = lo, None  # ok: the largest value the bounds do not rule out
    last_side: str | None = None
    same_side = 0

    def bounds(k: int) -> bool:
        """Probe ``k`` by the bounds; False when the budget is spent."""
        nonlocal ok, ceiling, last_side, same_side
        p = knob.decide(k, plan=False)
        if p.by == "skipped":
            return False
        if p.need is not None:
            points[k] = p.need
        side = "over" if p.result == NO else "under"
        if side == "over":
            ceiling = k if ceiling is None else min(ceiling, k)
        else:
            ok = max(ok, k)
        same_side = same_side + 1 if side == last_side else 0
        last_side = side
        return True

    # 1. the ceiling, steered by the need's line; bisection when a guess does not narrow it
    while prober.bounds_left > 0 and not prober.expired:
        if ceiling is not None and ceiling - ok <= 1:
            break
        if ceiling is None and ok >= cap:
            break
        guess = None if same_side >= 1 else _crossing(points, limit, ok, ceiling)
        steered = guess is not None
        if guess is None:  # no line yet, or two guesses on one side: double / bisect
            guess = min(2 * ok, cap) if ceiling is None else (ok + ceiling) // 2
        guess = max(ok + 1, min(guess, cap if ceiling is None else ceiling - 1))
        if not bounds(guess):
            break
        if not steered:  # only the line's guesses count towards "two on one side"
            last_side, same_side = None, 0
        # a guess that holds as the ceiling: the value below it settles it
        if last_side == "over" and guess - 1 > ok and prober.bounds_left > 0 \
                and not bounds(guess - 1):
            break
    looked = ceiling or ok

    # 2. plans: just below the ceiling first, then bisection
    fit, fail = lo, ceiling
    top = (ceiling - 1) if ceiling is not None else ok
    if top > lo and prober.can_probe:
        p = knob.decide(top)
        if p.result == FITS:
            fit = top
        elif p.by != "skipped" and not (p.by == "bounds" and p.result == UNKNOWN):
            fail = top
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
    # 3. the values between the answer and the ceiling, with what is left
    fit = _fill(knob, fit, top) or fit
    return fit, ceiling, looked

