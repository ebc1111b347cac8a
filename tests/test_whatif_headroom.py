"""Headroom: the what-if searches for a plan that FITS (``tilec compile --what-if``).

For a fitting plan the questions go up from the compiled configuration -- the largest batch, the
largest image size, the highest precision that still fit -- and down for the smallest SRAM per
tile. As in test_whatif.py, most tests script each value's outcome so every conclusion (answer,
status, note, which values needed a plan) can be checked against the script; then the real
planner on a toy chip, whose answers are checked by planning the answer (fits, verified) and the
next value (does not fit, with evidence); then the CLI, the JSON schema and the renderers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from plan_fixtures import toy_target
from test_whatif import Opts, Scripted, _sized_chain, rebuild, values

import tilec.plan.whatif as W
from tilec.cli import main
from tilec.plan import plan_model
from tilec.plan.bounds import Bound
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, Plan
from tilec.plan.whatif import FITS, NO, UNKNOWN, Probe
from tilec.report.schema import type_errors, validation_errors

TARGET = toy_target(4, 100, bounds_monotone=True)  # a ceiling by (a)/(b) holds for all above
BASE_FITS = Probe("compiled", FITS, peak=50, by="plan")
GOOD = Path(__file__).parent / "data" / "good" / "tiny_cnn.onnx"


# ------------------------------------------------------------------------------------ batch
def test_batch_up_bounds_find_the_ceiling_then_plans_bisect():
    # compiled at batch 1 (fits); the bounds rule out 12+, plans fail at 10-11, 9 fits
    prober = Scripted(lambda b: ("chip_capacity" if b >= 12 else None,
                                 FITS if b <= 9 else NO, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, TARGET, rebuild, BASE_FITS)
    assert (w.answer, w.status) == (9, "exact")
    assert w.note == "proven not to fit: batch 10–11 (c), 12 (a) and above (the bounds only grow)"
    # doubling by the bounds alone to the first value they rule out, bisection down to 12
    assert values(w, "bounds")[:1] == [2] and 16 in values(w, "bounds")
    assert set(values(w, "plan")) >= {9, 10, 11}
    assert len(values(w, "plan")) <= W.PLANS["max_batch"]
    assert 1 not in values(w), "the compiled batch is known to fit: never probed"


def test_batch_up_next_value_ruled_out_by_the_bounds_needs_no_plan():
    prober = Scripted(lambda b: ("op_too_large" if b >= 3 else None, FITS, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 2}, TARGET, rebuild, BASE_FITS)
    assert (w.answer, w.status) == (2, "exact")
    assert w.note == "proven not to fit: batch 3 (b) and above (the bounds only grow)"
    assert not values(w, "plan")


def test_batch_up_capped_is_a_bound_that_says_at_least():
    prober = Scripted(lambda b: (None, FITS, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 2}, TARGET, rebuild, BASE_FITS)
    cap = 2 * W.GROW_REACH
    assert (w.answer, w.status) == (cap, "bound")
    assert w.note.startswith(f"at least {cap}: the search stops at {W.GROW_REACH}× the compiled "
                             "batch (search capped)")
    assert max(values(w)) == cap
    assert values(w, "plan") == [cap]  # the top, planned once the bounds never ruled it out


def test_batch_up_not_monotone_is_found_and_said(monkeypatch):
    # 6 does not fit, 7 does (the split policy at another shape); the bounds rule out 8+
    prober = Scripted(lambda b: ("chip_capacity" if b >= 8 else None,
                                 FITS if b in (1, 2, 3, 4, 5, 7) else NO, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, TARGET, rebuild, BASE_FITS)
    assert (w.answer, w.status) == (7, "exact")
    assert "not monotone: batch 6 did not fit, batch 7 does" in w.note
    assert w.note.startswith("proven not to fit: batch 8 (a) and above")


def test_batch_up_without_monotone_bounds_looks_past_the_ceiling():
    """YOLOv4-P5 on gc200: (a) rules out batch 2 and 4 but not 3 (each op's split is chosen for
    its shape). Without the cost model's promise that its bounds only grow, the search checks
    values past the first one the bounds rule out, and the answer is a bound that says how far."""
    target = toy_target(4, 100)  # bounds_monotone=False, as the built-in targets
    prober = Scripted(lambda b: ("chip_capacity" if b in (2,) or b >= 4 else None,
                                 FITS if b == 1 else NO, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, target, rebuild, BASE_FITS)
    assert (w.answer, w.status) == (1, "bound")
    assert 3 in values(w, "plan"), "a value past the ceiling the bounds leave open is planned"
    # BEYOND values past the ceiling (2): 3-6
    assert w.note.startswith("proven not to fit: batch 2 (a), 3 (c), 4–6 (a)")
    assert f"above {2 + W.BEYOND} not checked (the bounds need not grow" in w.note
    assert "and above" not in w.note

    # ... and should that value fit, it is the answer
    prober = Scripted(lambda b: ("chip_capacity" if b in (2,) or b >= 4 else None,
                                 FITS if b in (1, 3) else NO, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, target, rebuild, BASE_FITS)
    assert (w.answer, w.status) == (3, "bound")
    assert "not monotone: batch 2 did not fit, batch 3 does" in w.note


def test_batch_up_undecided_above_the_answer_is_a_bound():
    prober = Scripted(lambda b: ("chip_capacity" if b >= 8 else None,
                                 FITS if b <= 3 else UNKNOWN, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, TARGET, rebuild, BASE_FITS)
    assert (w.answer, w.status) == (3, "bound")
    assert "undecided" in w.note and "batch 8 (a) and above" in w.note


def test_batch_up_budget_spent_names_what_was_not_checked(monkeypatch):
    monkeypatch.setitem(W.PLANS, "max_batch", 1)
    prober = Scripted(lambda b: ("chip_capacity" if b >= 40 else None,
                                 FITS if b <= 30 else NO, 1))
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, TARGET, rebuild, BASE_FITS)
    assert w.status == "bound" and w.answer < 30
    assert "not checked" in w.note
    assert len(values(w, "plan")) == 1


# ------------------------------------------------------------------------------- image size
def test_image_size_up_in_stride_multiples_with_the_aspect_kept():
    seen = []

    def script(size):
        seen.append(tuple(size))
        return ("chip_capacity" if size[0] >= 896 else None, FITS if size[0] <= 800 else NO, 1)

    prober = Scripted(script)
    prober.budget("max_image_size")
    w = W._grow_image_size(prober, {"image_size": [608, 416], "stride": 32}, TARGET, rebuild,
                           BASE_FITS)
    assert w.answer[0] == 800 and w.status == "exact"
    assert w.answer[1] == round(416 * 800 / 608 / 32) * 32
    assert all(h % 32 == 0 and wd % 32 == 0 for h, wd in seen)
    assert seen[0] == (1216, 832)  # doubling from 19 x 32 = 608
    assert w.note.endswith("multiples of the stride 32")
    assert w.note.startswith("proven not to fit: 832×576–864×576 (c), 896×608 (a) and above")


def test_image_size_not_searched_without_a_stride():
    prober = Scripted(lambda v: pytest.fail("nothing to probe"))
    prober.budget("max_image_size")
    w = W._grow_image_size(prober, {"image_size": None, "stride": None}, TARGET, rebuild,
                           BASE_FITS)
    assert (w.answer, w.status, w.probes) == (None, "unknown", [])
    assert w.note.startswith("not searched")


# --------------------------------------------------------------------------------- precision
def test_precision_up_highest_that_fits():
    target = toy_target(4, 100)
    object.__setattr__(target, "precisions", ("fp32", "fp16", "int8"))
    prober = Scripted(lambda p: ("chip_capacity" if p == "fp32" else None, FITS, 1))
    prober.budget("min_precision")
    w = W._precision_up(prober, {"precision": "int8"}, target, rebuild)
    assert (w.answer, w.status, w.note) == ("fp16", "exact", "proven not to fit: fp32 (a)")
    assert values(w) == ["fp32", "fp16"]

    prober = Scripted(lambda p: (None, UNKNOWN, 1))
    prober.budget("min_precision")
    w = W._precision_up(prober, {"precision": "int8"}, target, rebuild)
    assert (w.answer, w.status) == ("int8", "bound")  # the compiled one; above undecided
    assert "fp32, fp16 undecided" in w.note


def test_precision_up_nothing_above():
    prober = Scripted(lambda p: pytest.fail("nothing to probe"))
    prober.budget("min_precision")
    w = W._precision_up(prober, {"precision": "fp16"}, toy_target(4, 100), rebuild)
    assert (w.answer, w.status, w.probes) == ("fp16", "exact", [])
    assert "highest" in w.note


# ------------------------------------------------------------------------------ SRAM per tile
def fits_base(peak: int, b_needed: int, a_needed: int = 0):
    def bound(kind, needed):
        return Bound(kind=kind, holds=False, op=None, needed=needed, capacity=0)

    return SimpleNamespace(bounds={"a": bound("chip_capacity", a_needed),
                                   "b": bound("op_too_large", b_needed)},
                           plan=SimpleNamespace(status=STATUS_FITS, diagnosis=None,
                                                memory=SimpleNamespace(peak_bytes=peak)))


def test_sram_down_from_a_fitting_plan():
    # compiled at 200,000 B per tile, the plan peaks at 150,000; fits from 120,000 on
    target = toy_target(4, 200_000)
    need = 120_000

    def script(x):
        if x < 100_000:
            return ("op_too_large", NO, None)
        return (None, FITS, min(x, 150_000) - 10) if x >= need else (None, NO, 119_000)

    prober = Scripted(script)
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, fits_base(150_000, 100_000), prober)
    grain = 1024
    assert w.answer == -(-need // grain) * grain and w.status == "exact"
    assert f"{(w.answer - grain) // 1024:,} KiB proven not to fit (c)" in w.note
    assert 200_000 not in values(w), "the compiled size fits: never probed"
    assert values(w)[0] < 100_000 and values(w, "bounds")[0] == values(w)[0]
    assert len(values(w, "plan")) <= W.PLANS["min_bytes_per_tile"]


def test_sram_down_sram_dependent_splits_make_it_a_bound():
    target = toy_target(4, 200_000, sram_independent=False)
    prober = Scripted(lambda x: (None, FITS, 130_000) if x >= 131_072 else (None, NO, 130_000))
    prober.budget("min_bytes_per_tile")
    w = W._min_bytes(None, target, fits_base(150_000, 100_000), prober)
    assert w.answer == 131_072 and w.status == "bound"
    assert "smaller sizes not all checked" in w.note


# ------------------------------------------------------------------------- the real planner
class Headroom(Opts):
    what_if_fits = True


def _rebuild(batch=None, image_size=None, precision=None):
    if image_size is not None:
        return _sized_chain(image_size[0] // 32)
    return _sized_chain(batch or 1)


def _plan(batch: int, budget: int = 12, headroom: bool = False) -> Plan:
    # the chain's bytes only grow with the batch (and the size): its bounds are monotone
    return plan_model(_sized_chain(batch), toy_target(4, budget, bounds_monotone=True),
                      options=Headroom() if headroom else Opts(), rebuild=_rebuild)


def test_real_planner_headroom_answers_hold_when_planned_again():
    """Batch 1 fits on the toy chip; the answers are checked by planning them again: the answer
    fits (verified) and the next value does not (with evidence (a)-(c))."""
    plan = _plan(1, headroom=True)
    assert plan.status == STATUS_FITS and plan.diagnosis is None
    ans = {w.question: w for w in plan.what_if}
    assert list(ans) == ["max_batch", "max_image_size", "min_bytes_per_tile", "min_precision"]

    b = ans["max_batch"]
    assert b.status == "exact" and b.answer >= 1
    at = _plan(b.answer)
    assert at.status == STATUS_FITS and at.verification.ok
    above = _plan(b.answer + 1)
    assert above.status == STATUS_DOES_NOT_FIT and above.diagnosis.evidence.kind in (
        "chip_capacity", "op_too_large", "solver_infeasible")

    s = ans["max_image_size"]
    assert s.status == "exact" and s.answer == [64, 64]  # the same tensors as batch 2

    m = ans["min_bytes_per_tile"]
    assert m.status == "exact" and m.answer <= 12
    assert _plan(1, budget=m.answer).status == STATUS_FITS
    below = _plan(1, budget=m.answer - 1)
    assert below.status == STATUS_DOES_NOT_FIT and below.diagnosis.evidence.kind in (
        "chip_capacity", "op_too_large", "solver_infeasible")

    assert (ans["min_precision"].answer, ans["min_precision"].status) == ("fp16", "exact")


def test_headroom_is_off_by_default_and_deterministic():
    assert _plan(1).what_if == []
    a, b = _plan(1, headroom=True), _plan(1, headroom=True)
    assert a.to_json() == b.to_json()
    data = json.loads(a.to_json())
    assert data["what_if"] and data["diagnosis"] is None


# --------------------------------------------------------------------------- JSON and reports
def test_json_validates_and_round_trips():
    plan = _plan(1, headroom=True)
    data = json.loads(plan.to_json())
    assert validation_errors(data) == [] and type_errors(data) == []
    again = Plan.from_dict(data)
    assert again.what_if == plan.what_if and again.to_json() == plan.to_json()


def test_a_plan_saved_before_the_field_still_loads():
    data = json.loads(_plan(1).to_json())
    del data["what_if"]
    assert type_errors(data) == []
    assert Plan.from_dict(data).what_if == []


def test_renderers_show_the_headroom_table():
    from rich.console import Console

    from tilec.report.html import render_html
    from tilec.report.terminal import print_plan

    plan = Plan.from_dict(json.loads(_plan(1, headroom=True).to_json()))
    buf = io.StringIO()
    print_plan(plan, Console(width=120, file=buf))
    text = buf.getvalue()
    assert "headroom: what would still fit (at batch 1, 32×32, fp16" in text
    for title in ("largest batch that fits", "largest image size that fits",
                  "smallest SRAM per tile that fits", "highest precision that fits"):
        assert title in text
    assert "why it does not fit" not in text
    page = render_html(plan)
    assert 'id="headroom"' in page and "Headroom: what would still fit" in page
    assert "largest batch that fits" in page
    # each search's probes folded away, one list item per probe, in the order they ran
    n = sum(len(w.probes) for w in plan.what_if)
    assert n and page.count("<li>") >= n and page.count("probes</summary>") >= 1
    first = plan.what_if[0].probes[0]
    assert f"<li>{first['value']}: {first['result']} ({first['by']}" in page


# ------------------------------------------------------------------------------------- CLI
def test_cli_what_if_on_a_fitting_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out_json = tmp_path / "p.json"
    code = main(["compile", str(GOOD), "--target", "gc200", "-q", "--what-if",
                 "--json", str(out_json)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "headroom: what would still fit" in printed
    assert "largest batch that fits" in printed and "smallest SRAM per tile that fits" in printed
    data = json.loads(out_json.read_text())
    assert validation_errors(data) == []
    answers = {w["question"]: w for w in data["what_if"]}
    assert answers["max_batch"]["answer"] >= 1
    assert answers["min_bytes_per_tile"]["answer"] <= data["target"]["bytes_per_tile"]
    # `tilec report` prints what the compile printed
    assert main(["report", str(out_json), "-q"]) == 0
    assert capsys.readouterr().out == printed
    # the same JSON again
    out2 = tmp_path / "p2.json"
    assert main(["compile", str(GOOD), "--target", "gc200", "-q", "--what-if",
                 "--json", str(out2)]) == 0
    capsys.readouterr()
    assert out2.read_text() == out_json.read_text()


def test_cli_fitting_compile_without_the_flag_has_no_headroom(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out_json = tmp_path / "p.json"
    assert main(["compile", str(GOOD), "--target", "gc200", "-q", "--json", str(out_json)]) == 0
    assert "what would still fit" not in capsys.readouterr().out
    assert json.loads(out_json.read_text())["what_if"] == []


def test_cli_what_if_and_no_what_if_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    code = main(["compile", str(GOOD), "--target", "gc200", "--what-if", "--no-what-if"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("tilec: error: ") and "--what-if" in err[0]


@pytest.mark.slow
def test_zoo_model_headroom_end_to_end(capsys: pytest.CaptureFixture[str]):
    """yolov4-tiny on gc200 fits with room to spare: its largest batch is at least the compiled
    one and its smallest SRAM per tile at most the chip's (and that size fits when planned)."""
    from tilec.compile import CompileOptions, compile_model

    code = main(["compile", "yolov4-tiny", "--target", "gc200", "-q", "--what-if"])
    out = capsys.readouterr().out
    assert code == 0 and "headroom: what would still fit" in out
    plan, _ = compile_model("yolov4-tiny", "gc200", CompileOptions(what_if_fits=True))
    ans = {w.question: w for w in plan.what_if}
    assert ans["max_batch"].answer >= plan.model.batch
    sram = ans["min_bytes_per_tile"].answer
    assert sram is not None and sram <= plan.target.bytes_per_tile
    from tilec.targets import load_target

    small, _ = compile_model("yolov4-tiny", load_target("gc200").with_bytes_per_tile(sram),
                             CompileOptions(what_if=False))
    assert small.status == STATUS_FITS


# ------------------------------------------------------- closing on the monotone certificate (m)
def _closing(script, m_from: int | None, batch: int = 1):
    """The batch search on a target whose bounds need not grow (as gc200) but whose splits hold
    whole tensors, so the certificate (m) may close it; (m) rules out ``m_from`` and above."""
    target = toy_target(4, 100)
    object.__setattr__(target.cost_model, "stores_whole_tensors", True)
    prober = Scripted(script)
    prober.ceiling = m_from
    prober.budget("max_batch")
    return W._grow_batch(prober, {"batch": batch}, target, rebuild, BASE_FITS)


def test_m_closes_the_search_when_every_gap_value_is_proven():
    # (a) rules out 4 and above; (m), weaker, only from 7: 5 and 6 are each checked by (a)
    w = _closing(lambda b: ("chip_capacity" if b >= 4 else None, FITS if b == 1 else NO, 1), 7)
    assert (w.answer, w.status) == (1, "exact")
    assert w.note == ("proven not to fit: batch 2–3 (c), 4–6 (a), 7 (m) and above ((m) only "
                      "grows with the batch)")
    assert {5, 6} <= set(values(w, "bounds")) and 7 not in values(w)  # (m) is not a probe


def test_m_does_not_make_it_exact_with_a_gap_value_open():
    # (a) rules out 2 and 4 but not 3, which no plan decides: 3 stays open, so a bound
    w = _closing(lambda b: ("chip_capacity" if b == 2 or b >= 4 else None,
                            FITS if b == 1 else UNKNOWN, 1), 6)
    assert (w.answer, w.status) == (1, "bound")
    assert "batch 3 undecided" in w.note and "6 (m) and above" in w.note


def test_a_gap_value_that_fits_moves_the_answer():
    # (a) rules out 2 and 4-5 but not 3; 3 fits after all (feasibility is not monotone)
    w = _closing(lambda b: ("chip_capacity" if b == 2 or b >= 4 else None,
                            FITS if b in (1, 3) else NO, 1), 6)
    assert (w.answer, w.status) == (3, "exact")
    assert w.note.startswith("proven not to fit: batch 4–5 (a), 6 (m) and above")
    assert "not monotone: batch 2 did not fit, batch 3 does" in w.note


def test_m_too_far_above_the_ceiling_leaves_a_bound():
    # (a) rules out 3 and above; (m) only from 60: a gap wider than CLOSE is not started, and
    # (m) is checked once, at the end of the reach (the ceiling + CLOSE + 1)
    w = _closing(lambda b: ("chip_capacity" if b >= 3 else None, FITS if b <= 2 else NO, 1), 60)
    assert (w.answer, w.status) == (2, "bound")
    assert w.note.startswith(f"proven not to fit: batch 3–{3 + W.BEYOND} (a); above "
                             f"{3 + W.BEYOND} not checked")
    assert "(m)" not in w.note and max(values(w, "bounds")) == 3 + W.BEYOND


def test_without_the_declaration_m_is_not_used():
    target = toy_target(4, 100)  # stores_whole_tensors not declared
    prober = Scripted(lambda b: ("chip_capacity" if b >= 4 else None, FITS if b == 1 else NO, 1))
    prober.ceiling = 5
    prober.budget("max_batch")
    w = W._grow_batch(prober, {"batch": 1}, target, rebuild, BASE_FITS)
    assert w.status == "bound" and "(m)" not in w.note
