"""The what-if searches: what they probe, what they conclude, and what they tell the user.

Most tests drive the searches with a scripted prober (each value's outcome given by the test), so
every conclusion can be checked against the script: the answer, whether it is exact, the note,
which values were decided by the bounds alone and which needed a plan, and that the effort stays
within the per-question budget. The last tests run the real planner on a toy chip.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from plan_fixtures import chain, toy_target

import tilec.plan.whatif as W
import tilec.plan.whatif_search as S
from tilec.plan import plan_model
from tilec.plan.bounds import Bound
from tilec.plan.model import STATUS_DOES_NOT_FIT
from tilec.plan.pipeline import Options
from tilec.plan.whatif import FITS, NO, UNKNOWN, Probe, Prober


class Scripted(Prober):
    """A prober whose outcomes come from ``script(value) -> (bounds, plan, peak)``: ``bounds`` is
    an evidence kind when the bounds alone rule the value out (else None), ``plan`` the outcome of
    a re-plan (FITS / NO / UNKNOWN), ``peak`` the plan's fullest tile (None: no plan built).
    Budget accounting is the real Prober's."""

    def __init__(self, script, deadline: float = math.inf) -> None:
        super().__init__(Options(), deadline, None)
        self.script = script
        self.log: list[tuple[str, object]] = []

    def check_bounds(self, make):
        value, target = make()
        if value is None:  # an SRAM probe: the same graph on another target
            value = target.bytes_per_tile
        kind, result, peak = self.script(value)
        self.log.append(("bounds", value))
        return kind, 0, (value, result, peak)

    ceiling: int | None = None
    """The smallest value the certificate (m) rules out (None: none); (m) grows, so every value
    from it on is ruled out."""

    def certify(self, make):
        value, _ = make()
        return self.ceiling is not None and value >= self.ceiling

    def plan(self, value, payload):
        v, result, peak = payload
        self.log.append(("plan", v))
        ev = {NO: "solver_infeasible", UNKNOWN: "search_limit"}.get(result)
        return Probe(value, result, evidence=ev, peak=peak, by="plan")


def rebuild(batch=None, image_size=None, precision=None):
    """The value itself stands for the rebuilt graph (the scripted prober reads it back)."""
    return batch if batch is not None else (list(image_size) if image_size else precision)


TARGET = toy_target(4, 100)
BASE_NO = Probe("compiled", NO, evidence="chip_capacity", by="plan")


def values(w, by=None):
    return [p["value"] for p in w.probes if by is None or p["by"] == by]


# ------------------------------------------------------------------------------- batch, size
def test_largest_batch_top_down_bounds_then_plans():
    # batch 10 compiled; 8+ ruled out by the bounds, 6-7 only by a plan, 5 fits
    prober = Scripted(lambda b: ("chip_capacity" if b >= 8 else None,
                                 FITS if b <= 5 else NO, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 10}, TARGET, rebuild, BASE_NO)
    assert (w.answer, w.status) == (5, "exact")
    assert w.note == "proven not to fit: batch 6–7 (c), 8–10 (a)"
    assert values(w, "bounds") == [9, 8]
    assert values(w, "plan") == [7, 6, 5]
    # 7 was tried by the bounds first, then planned (one record per value)
    assert prober.log.count(("bounds", 7)) == 1 and prober.log.count(("plan", 7)) == 1


def test_nothing_fits_is_exact_when_every_value_is_proven():
    prober = Scripted(lambda b: ("op_too_large", NO, None))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 4}, TARGET, rebuild, BASE_NO)
    assert (w.answer, w.status) == (None, "exact")
    assert w.note == "proven not to fit: batch 1–3 (b), 4 (a)"
    assert not values(w, "plan")


def test_batch_one_compiled():
    prober = Scripted(lambda b: pytest.fail("no smaller batch to probe"))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 1}, TARGET, rebuild, BASE_NO)
    assert (w.answer, w.status, w.probes) == (None, "exact", [])
    assert w.note == "proven not to fit: batch 1 (a)"


def test_undecided_larger_value_makes_the_answer_a_bound():
    prober = Scripted(lambda b: (None, FITS if b <= 2 else UNKNOWN, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 4}, TARGET, rebuild, BASE_NO)
    assert (w.answer, w.status) == (2, "bound")
    assert w.note == "proven not to fit: batch 4 (a); batch 3 undecided"


def test_compiled_value_undecided():
    base = Probe("compiled", UNKNOWN, evidence="search limit", by="plan")
    prober = Scripted(lambda b: (None, FITS, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 3}, TARGET, rebuild, base)
    assert (w.answer, w.status) == (2, "bound")
    assert "batch 3 undecided" in w.note


def test_not_monotone_a_skipped_larger_value_that_fits_is_found(monkeypatch):
    # after SCAN failures the descent gallops (11, 10, 8, 4, 1) and bisects up to 3; the values
    # above 3 it skipped are checked afterwards -- and 6 fits
    monkeypatch.setattr(S, "SCAN", 2)
    monkeypatch.setitem(W.PLANS, "max_batch", 20)
    fits = {1, 2, 3, 6}
    prober = Scripted(lambda b: (None, FITS if b in fits else NO, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 12}, TARGET, rebuild, BASE_NO)
    assert (w.answer, w.status) == (6, "exact")
    assert values(w, "plan")[:5] == [11, 10, 8, 4, 1]
    assert w.note == "proven not to fit: batch 7–11 (c), 12 (a)"


def test_budget_spent_names_what_was_not_checked(monkeypatch):
    monkeypatch.setitem(W.PLANS, "max_batch", 3)
    monkeypatch.setitem(W.BOUNDS, "max_batch", 0)
    prober = Scripted(lambda b: (None, FITS if b <= 3 else NO, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 40}, TARGET, rebuild, BASE_NO)
    # the plans are spent from the top (39, 38, 37); then one plan beyond the budget checks
    # the smallest batch, so the answer is a bound instead of "none in the searched range"
    assert values(w, "plan") == [39, 38, 37, 1]
    assert (w.answer, w.status) == (1, "bound")
    assert w.note == ("proven not to fit: batch 37–39 (c), 40 (a); batch 36 undecided; "
                      "batch 2–35 not checked")


def test_budget_spent_and_the_smallest_does_not_fit_either(monkeypatch):
    monkeypatch.setitem(W.PLANS, "max_batch", 2)
    prober = Scripted(lambda b: (None, NO, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 40}, TARGET, rebuild, BASE_NO)
    assert w.answer is None and w.status == "unknown"
    assert values(w, "plan")[-1] == 1 and len(values(w, "plan")) == 3


def test_bound_checks_reach_down_from_a_large_batch():
    """ResNet-50 at batch 64: the fixed bound budget ran out at 52 with the answer near 40;
    enough bound checks now reach 1 in doubling steps, then the plans close in."""
    prober = Scripted(lambda b: ("chip_capacity" if b > 40 else None,
                                 FITS if b <= 40 else NO, 1))
    prober.budget("max_batch")
    w = W._max_batch(prober, {"batch": 64}, TARGET, rebuild, BASE_NO)
    assert w.answer == 40  # found; "bound": a few values above it were left for lack of budget
    assert w.note.startswith("proven not to fit: batch 41–")
    assert len(w.probes) <= W.SCAN + (63).bit_length() + 2 + W.PLANS["max_batch"]


def test_notes_work_in_the_values_checked_not_the_range() -> None:
    """A compiled batch of 10^11 (a typo's worth of zeros) once built a note row for every
    smaller batch and was killed for memory; the spans must come from the checked values."""
    hi = 10**11 - 1
    seen = {hi - 2: Probe(hi - 2, NO, evidence="op_too_large"),
            hi: Probe(hi, NO, evidence="op_too_large"), 3: Probe(3, UNKNOWN, by="plan")}
    status, note = W._above_note(2, hi, seen, BASE_NO, str, prefix="batch ")
    assert status == "bound"
    assert note == (f"proven not to fit: batch {hi - 2} (b), {hi} (b), {hi + 1} (a); batch 3 "
                    f"undecided; batch 4–{hi - 3}, {hi - 1} not checked")


def test_image_sizes_are_stride_multiples_with_the_aspect_kept():
    # 608 x 416 compiled, stride 32: heights 576, 544, ... with widths in proportion
    seen = []

    def script(size):
        seen.append(tuple(size))
        return (None, FITS if size[0] <= 512 else NO, 1)

    prober = Scripted(script)
    prober.budget("max_image_size")
    w = W._max_image_size(prober, {"image_size": [608, 416], "stride": 32}, TARGET, rebuild,
                          BASE_NO)
    assert w.answer == [512, 352] and w.status == "exact"
    assert all(h % 32 == 0 and wd % 32 == 0 for h, wd in seen)
    assert seen[:2] == [(576, 384), (544, 384)]
    assert w.note.startswith("proven not to fit: 544×384–576×384 (c), 608×416 (a)")
    assert w.note.endswith("multiples of the stride 32")


def test_image_size_searched_without_a_known_stride():
    """A fully convolutional network (output as large as its input) declares no stride: the
    search steps in the largest power of two dividing the compiled size, halving and bisecting
    down to what fits (it answered "stride unknown" although a smaller image obviously fits)."""
    seen = []

    def script(size):
        seen.append(tuple(size))
        return (None, FITS if size[0] <= 160 else NO, 1)

    prober = Scripted(script)
    prober.budget("max_image_size")
    w = W._max_image_size(prober, {"image_size": [224, 224], "stride": None}, TARGET, rebuild,
                          BASE_NO)
    assert w.answer == [160, 160] and w.status == "exact"
    assert all(h % 32 == 0 and h == wd for h, wd in seen)  # 224 = 7 x 32
    assert w.note.endswith("multiples of 32 (the network's stride is unknown: the largest power "
                           "of two up to 64 dividing the compiled size)")
    assert W.size_unit({"image_size": [256, 512]})[0] == 64
    assert W.size_unit({"image_size": [300, 300]})[0] == 4
    assert W.size_unit({"image_size": None}) is None


def test_image_size_unknown_without_an_image_input():
    prober = Scripted(lambda v: pytest.fail("nothing to probe"))
    prober.budget("max_image_size")
    w = W._max_image_size(prober, {"image_size": None, "stride": None}, TARGET, rebuild, BASE_NO)
    assert (w.answer, w.status) == (None, "unknown")


# --------------------------------------------------------------------------------- precision
def test_precision_highest_below_that_fits():
    target = toy_target(4, 100)
    object.__setattr__(target, "precisions", ("fp16", "int8", "int4", "int2"))
    prober = Scripted(lambda p: ("chip_capacity" if p == "int8" else None,
                                 FITS if p in ("int4", "int2") else NO, 1))
    prober.budget("min_precision")
    w = W._min_precision(prober, {"precision": "fp16"}, target, rebuild, BASE_NO)
    assert (w.answer, w.status, w.note) == ("int4", "exact", "proven not to fit: int8 (a)")
    assert values(w) == ["int8", "int4"]  # int2 is not needed once int4 fits

    prober = Scripted(lambda p: (None, FITS if p == "int4" else UNKNOWN, 1))
    prober.budget("min_precision")
    w = W._min_precision(prober, {"precision": "fp16"}, target, rebuild, BASE_NO)
    assert (w.answer, w.status, w.note) == ("int4", "bound", "int8 undecided")


def test_precision_probes_say_the_per_layer_map_is_not_applied():
    target = toy_target(4, 100)
    object.__setattr__(target, "precisions", ("fp16", "int8", "int4"))
    prober = Scripted(lambda p: (None, FITS, 1))
    prober.budget("min_precision")
    meta = {"precision": "fp16", "precision_map": {"default": "fp16", "layers": {"c1": "int8"}}}
    w = W._min_precision(prober, meta, target, rebuild, BASE_NO)
    assert (w.answer, w.status) == ("int8", "exact")
    assert "per-layer map is not applied" in w.note


def test_precision_nothing_below():
    prober = Scripted(lambda p: pytest.fail("nothing to probe"))
    prober.budget("min_precision")
    w = W._min_precision(prober, {"precision": "int8"}, toy_target(4, 100), rebuild, BASE_NO)
    assert (w.answer, w.status) == (None, "exact")
    assert "nothing below int8" in w.note


# ---------------------------------------------------------------------------- SRAM per tile
def sram_base(b_needed: int, a_needed: int = 0):
    def bound(kind, needed):
        return Bound(kind=kind, holds=False, op=None, needed=needed, capacity=0)

    return SimpleNamespace(bounds={"a": bound("chip_capacity", a_needed),
                                   "b": bound("op_too_large", b_needed)},
                           plan=SimpleNamespace(status=STATUS_DOES_NOT_FIT,
                                                diagnosis=SimpleNamespace(evidence=SimpleNamespace(
                                                    kind="chip_capacity"))))


def test_sram_from_the_bounds_up_then_down_to_one_grain():
    # fits from 150,000 bytes on; a failed attempt's fullest tile needs 140,000
    target = toy_target(4, 100_000)
    need = 150_000

    def script(x):
        return (None, FITS, need - 10) if x >= need else (None, NO, 140_000)

    prober = Scripted(script)
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, sram_base(120_000), prober)
    grain = 1024
    assert w.answer == -(-need // grain) * grain and w.status == "exact"
    assert w.note.startswith(f"{(w.answer - grain) // 1024:,} KiB proven not to fit (c)")
    assert "so is every smaller size" in w.note  # the toy's splits ignore the SRAM size
    assert "not monotone" not in w.note
    assert len(w.probes) <= 6
    assert all(p["value"] % grain == 0 for p in w.probes)


def test_sram_answer_is_a_bound_when_the_splits_depend_on_the_sram_size():
    """One grain below the answer proven not to fit says nothing about smaller sizes when the
    cost model picks its splits by the tile's size (gc200, NorthPole): not "exact"."""
    target = toy_target(4, 100_000, sram_independent=False)
    need = 150_000
    prober = Scripted(lambda x: (None, FITS, need - 10) if x >= need else (None, NO, 140_000))
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, sram_base(120_000), prober)
    assert w.answer == -(-need // 1024) * 1024 and w.status == "bound"
    assert "proven not to fit (c)" in w.note and "smaller sizes not all checked" in w.note


def test_sram_cannot_fix_the_framebuffer():
    """When the I/O framebuffer is what overflows, no SRAM per tile helps: answered at once
    (the search used to double the size up to hundreds of terabytes)."""
    base = sram_base(120_000)
    base.bounds["io"] = Bound(kind="chip_capacity", holds=True, op=None, needed=47_000_000,
                              capacity=33_554_432, details={"resource": "framebuffer"})
    prober = Scripted(lambda x: (None, NO, 10 * x))
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, toy_target(4, 100_000), base, prober)
    assert (w.answer, w.status, w.probes) == (None, "exact", [])
    assert "framebuffer" in w.note


def test_sram_search_has_a_ceiling():
    target = toy_target(4, 100_000, sram_independent=False)
    prober = Scripted(lambda x: (None, NO, 3 * x))  # every failure points far higher
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, sram_base(120_000), prober)
    assert w.answer is None and w.status == "unknown"
    assert max(p["value"] for p in w.probes) <= W.SRAM_REACH * 100_000 + 1024
    assert "no higher than" in w.note


def test_sram_not_monotone_is_reported():
    # fits in [130k, 133k) and from 150k on; the search overshoots into the gap first
    target = toy_target(4, 100_000, sram_independent=False)

    def script(x):
        if 130_000 <= x < 133_000:
            return (None, FITS, 129_500)
        if x >= 150_000:
            return (None, FITS, 131_000)  # a plan with a small peak exists up there
        return (None, NO, 139_000)

    prober = Scripted(script)
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, sram_base(120_000), prober)
    assert 130_000 <= w.answer < 133_000 and w.status == "bound"
    assert "not monotone:" in w.note and "smaller sizes not all checked" in w.note


def test_sram_undecided_next_to_the_answer_is_a_bound():
    target = toy_target(4, 100_000)
    prober = Scripted(lambda x: (None, FITS, 120_500) if x >= 121_000 else (None, UNKNOWN,
                                                                            200_000))
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, sram_base(110_000), prober)
    assert w.status == "bound" and w.answer is not None
    assert "undecided" in w.note


# ------------------------------------------------------------------------------ whole search
def test_wall_clock_cut_is_said(monkeypatch):
    """The safety limit stops a search; the answers that it cut say so."""
    monkeypatch.setattr(W, "SAFETY_FLOOR", 0.0)
    monkeypatch.setattr(W, "Prober", lambda options, deadline, progress: Scripted(
        lambda v: (None, FITS, 1), deadline=0.0))
    base = sram_base(50)
    info = SimpleNamespace(meta={"batch": 4, "image_size": [64, 64], "stride": 32,
                                 "precision": "fp16"})
    out = W.what_if(info, toy_target(4, 100), base, rebuild=rebuild, options=Options(),
                    seconds=0.0)
    assert [w.question for w in out] == ["max_batch", "max_image_size", "min_bytes_per_tile",
                                         "min_precision", "chips_needed"]
    for w in out:
        assert w.status != "exact" and "wall-clock safety limit" in w.note, w


def _sized_chain(batch: int):
    # three 2-tile ops on 4 tiles, outputs 4 * batch bytes per tile (as test_plan_pipeline)
    info = chain(3, {2: (2, 0, 4 * batch, 10)})
    return info.__class__(**{**info.__dict__, "meta": {**info.meta, "batch": batch,
                                                        "image_size": [32 * batch] * 2,
                                                        "stride": 32}})


class Opts:
    time_limit = 10.0
    what_if = True
    seed = 0
    workers = 1
    progress = None


def test_real_planner_answers_are_exact_and_reproducible():
    """On the toy chip (see test_plan_pipeline): batch <= 2 fits, 3 is short of the whole chip.
    The image size here scales the same tensors (32 px per unit), so 64 px is the answer."""

    def rb(batch=None, image_size=None, precision=None):
        if image_size is not None:
            return _sized_chain(image_size[0] // 32)
        return _sized_chain(batch or 4)

    plans = [plan_model(_sized_chain(4), toy_target(4, 12), options=Opts(), rebuild=rb)
             for _ in range(2)]
    ans = {w.question: w for w in plans[0].diagnosis.what_if}
    assert (ans["max_batch"].answer, ans["max_batch"].status) == (2, "exact")
    assert (ans["max_image_size"].answer, ans["max_image_size"].status) == ([64, 64], "exact")
    assert ans["max_image_size"].note == ("proven not to fit: 96–128 (b); multiples of the "
                                          "stride 32")
    assert (ans["min_bytes_per_tile"].answer, ans["min_bytes_per_tile"].status) == (20, "exact")
    assert plans[0].to_json() == plans[1].to_json()


def test_questions_in_forked_workers_answer_as_in_one_process():
    """The questions run in ``workers`` forked processes: the answers (and what a ``follow``
    hook adds to one, in the worker that answered it) are those of one process."""

    def rb(batch=None, image_size=None, precision=None):
        if image_size is not None:
            return _sized_chain(image_size[0] // 32)
        return _sized_chain(batch or 4)

    def followed(w) -> None:
        w.note = f"{w.note}; followed in pid-free words"

    out = []
    for workers in (1, 2):
        opts = type("O", (Opts,), {"workers": workers})()
        plan = plan_model(_sized_chain(4), toy_target(4, 12), options=opts, rebuild=rb,
                          follow={"max_image_size": followed})
        out.append(plan.to_json())
        (w,) = [w for w in plan.diagnosis.what_if if w.question == "max_image_size"]
        assert w.note.endswith("; followed in pid-free words")
    assert out[0] == out[1]
