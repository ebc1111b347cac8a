"""The upward search steered by the bounds' need (``tilec.plan.whatif_secant.secant_up``, used
by ``tilec sweep``'s largest-batch search).

Each value's outcome is scripted -- the bytes per tile the bounds need, whether a plan fits -- so
every answer can be checked against the script: the same answer as the doubling search
(``_largest_up``), with fewer values probed where the need grows about linearly, and no worse
than bisection where it does not.
"""

from __future__ import annotations

import math

import pytest
from test_whatif import Scripted

from tilec.plan.whatif_search import FITS, NO, Knob, Probe, _largest_up, _up_note
from tilec.plan.whatif_secant import _extrapolate, _interpolate, secant_up

LIMIT = 1000  # bytes per tile the bounds compare the need with


class Needy(Scripted):
    """A scripted prober whose bounds report a need: ``need(b)``; the bounds rule ``b`` out
    when it exceeds :data:`LIMIT`; a plan fits when ``fits(b)``."""

    def __init__(self, need, fits) -> None:
        super().__init__(lambda b: None)
        self.need, self.fits = need, fits

    def check_bounds(self, make):
        value, _ = make()
        self.log.append(("bounds", value))
        n = self.need(value)
        kind = "chip_capacity" if n > LIMIT else None
        return kind, n, (value, FITS if self.fits(value) else NO, n)


def _knob(prober: Needy) -> Knob:
    return Knob(prober, lambda b: (lambda: (b, None)), lambda b: b, monotone=True)


def _run(search: str, need, fits, cap: int = 64, plans: int = 6, bounds: int = 14):
    prober = Needy(need, fits)
    prober.plans_left, prober.bounds_left = plans, bounds
    knob = _knob(prober)
    knob.seen[1] = Probe(1, FITS, peak=need(1), by="plan")  # batch 1 known to fit
    if search == "secant":
        answer, ceiling, looked = secant_up(knob, 1, cap, need(1), LIMIT)
    else:
        answer, ceiling, looked = _largest_up(knob, 1, cap, beyond=0)
    status, _ = _up_note(knob, answer, 1, cap, ceiling, looked, str, "batch ", "batch")
    return answer, status, prober.log


def _linear(w: int, a: int):
    return lambda b: w + a * b


@pytest.mark.parametrize("w,a", [(300, 40), (600, 7), (100, 300), (900, 3), (50, 16)])
def test_same_answer_as_doubling_with_fewer_probes_on_a_linear_need(w, a):
    need = _linear(w, a)
    fits = lambda b: need(b) <= LIMIT  # noqa: E731 -- the plan fits where the bounds allow
    want = max(b for b in range(1, 65) if fits(b))
    got, status, log = _run("secant", need, fits)
    ref, ref_status, ref_log = _run("doubling", need, fits)
    assert got == ref == want
    assert status == ref_status == ("exact" if want < 64 else "bound")
    built = {v for _, v in log}
    assert len(built) <= len({v for _, v in ref_log})
    assert len(built) <= 5, log  # batch 2 for the slope, the ceiling, the value below it


def test_plans_below_a_loose_ceiling_bisect_to_the_answer():
    # the bounds allow up to 40, plans fit only up to 23 (the placement needs more)
    need = _linear(200, 20)
    fits = lambda b: b <= 23  # noqa: E731
    got, status, log = _run("secant", need, fits, plans=8)
    ref, ref_status, _ = _run("doubling", need, fits, plans=8)
    assert got == ref == 23
    # 25..40 left for the budget to check: a bound, as with the doubling search
    assert status == ref_status == "bound"
    assert ("plan", 24) in log


def test_a_jagged_need_still_finds_the_ceiling():
    # the need is not monotone (each shape gets its own split): the search stays in bracket
    def need(b: int) -> int:
        return 350 + 40 * b + (60 if b % 2 == 0 else -60)

    fits = lambda b: need(b) <= LIMIT  # noqa: E731
    got, _, log = _run("secant", need, fits)
    assert fits(got) and not fits(got + 1)
    bounds = [v for kind, v in log if kind == "bounds"]
    assert len(bounds) <= 2 * math.ceil(math.log2(64)) + 2


def test_nothing_ruled_out_up_to_the_cap_is_a_capped_bound():
    got, status, _ = _run("secant", _linear(10, 1), lambda b: True)
    assert (got, status) == (64, "bound")


def test_extrapolation_and_interpolation_predict_the_first_value_over_the_limit():
    # need = 100 + 100 b: 1000 at b = 9, so 10 is the first value over it; extrapolated, the
    # guess aims OVERSHOOT further: 2 + 7 x 1.25 = 10.75, so 10
    assert _extrapolate({1: 200, 2: 300}, LIMIT) == 10
    # 80 more a value from 910 at 8: the crossing is at 9.125, so 10; aimed further (9.4) the
    # guess stays 10 -- the aim never adds a value to a crossing this close
    assert _extrapolate({7: 830, 8: 910}, LIMIT) == 10
    # one point and an estimated slope
    assert _extrapolate({1: 200}, LIMIT, slope=100.0) == 11  # 9 crossed, aimed 1 + 8 x 1.25
    assert _extrapolate({1: 960}, LIMIT, slope=50.0) == 2
    assert _extrapolate({1: 500, 2: 500}, LIMIT) is None  # a flat line predicts nothing
    assert _extrapolate({2: 300}, LIMIT) is None
    # inside a bracket (need - limit: -600 at 4, +1100 at 20): the line crosses at 9.6
    assert _interpolate(4, -600.0, 20, 1100.0) == 10
    assert _interpolate(4, -600.0, 6, 1100.0) == 5  # kept inside the bracket


def test_the_sweep_estimates_the_need_slope_from_chip_capacity_activation_terms():
    from tilec.plan.bounds import Bound
    from tilec.sweep.work import _need_slope

    tiles = 4
    a = Bound("chip_capacity", False, "op", needed=4000, capacity=4 * 1100,
              details={"always_total": 2400, "step_total": 600, "live_total": 1000})
    b = Bound("op_too_large", False, "op", needed=700, capacity=1100)
    # (a) decides (1000 per tile > 700): its activation terms, per image, per tile
    assert _need_slope({"a": a, "b": b}, tiles, batch=2) == (600 + 1000) / tiles / 2
    # (b) decides: no estimate (the search measures a second batch instead)
    b_big = Bound("op_too_large", False, "op", needed=1050, capacity=1100)
    assert _need_slope({"a": a, "b": b_big}, tiles, batch=2) is None


def test_without_a_ceiling_one_plan_at_the_cap_then_bisection():
    # the bounds never rule a batch out below the cap; plans fit up to 40
    got, status, log = _run("secant", _linear(10, 1), lambda b: b <= 40)
    plans = [v for kind, v in log if kind == "plan"]
    assert plans[0] == 64 and 63 not in plans  # no one-by-one descent from the cap
    assert got == 40 and status == "bound"  # 42..64 not all decided within the budget
