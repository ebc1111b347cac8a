"""The issue's acceptance cases on the real targets and zoo models (slow: capture + lower + plan).

The verdicts depend on the targets' cost-model constants (calibrated by the lead, see
targets/gc200.toml); what these tests pin down is that the planner's answers are *consistent*:
a "fits" is verified, a "does not fit" carries evidence (a)-(c), the what-if answer agrees with
the plans, and the same input gives byte-identical JSON.
"""

from __future__ import annotations

import json

import pytest

from tilec.cli import main
from tilec.compile import CompileOptions, compile_model
from tilec.plan import plan_model
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, Plan
from tilec.plan.verify import verify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def p5_b1():
    return compile_model("yolov4-p5", "gc200", CompileOptions(batch=1, what_if=False))


def test_yolov4_p5_batch1_fits_gc200(p5_b1):
    plan, _ = p5_b1
    assert plan.model.image_size == [896, 896] and plan.model.precision == "fp16"
    assert plan.status == STATUS_FITS
    assert plan.verification.ok and verify(Plan.from_dict(json.loads(plan.to_json()))).ok


def test_same_input_byte_identical_json(p5_b1):
    plan, lowered = p5_b1
    again = plan_model(lowered.info, lowered.target, options=CompileOptions(batch=1,
                                                                            what_if=False),
                       passes=lowered.passes)
    assert again.to_json() == plan.to_json()


def test_yolov4_p5_batch2_does_not_fit_and_batch1_is_the_answer(tmp_path):
    out = tmp_path / "b2.json"
    assert main(["compile", "yolov4-p5", "--target", "gc200", "--batch", "2", "-q",
                 "--json", str(out)]) == 1
    plan = Plan.load(out)
    assert plan.status == STATUS_DOES_NOT_FIT
    assert plan.diagnosis.evidence.kind in ("chip_capacity", "op_too_large",
                                            "solver_infeasible")
    assert plan.diagnosis.evidence.rechecked
    answers = {w.question: w for w in plan.diagnosis.what_if}
    assert answers["max_batch"].answer == 1


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_yolov4_fits_northpole(precision):
    plan, _ = compile_model("yolov4", "northpole", CompileOptions(precision=precision,
                                                                  what_if=False))
    assert plan.status == STATUS_FITS and plan.verification.ok
    assert plan.target.placement == "rect"
    assert all(o.shape for o in plan.ops)


def test_int4_leaves_more_headroom_than_int8_on_northpole():
    peaks = {}
    for p in ("int8", "int4"):
        plan, _ = compile_model("yolov4", "northpole", CompileOptions(precision=p,
                                                                      what_if=False))
        peaks[p] = plan.memory.peak_bytes
    assert peaks["int4"] < peaks["int8"]


def test_too_large_for_northpole_gets_a_diagnosis():
    plan, _ = compile_model("yolov4", "northpole", CompileOptions(batch=8, precision="int8",
                                                                  what_if=False))
    assert plan.status == STATUS_DOES_NOT_FIT
    d = plan.diagnosis
    assert d.evidence.kind in ("chip_capacity", "op_too_large", "solver_infeasible")
    assert d.worst_tile is not None and d.by_category and d.over_by > 0
