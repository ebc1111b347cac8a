"""The band conditioned on the chip's measurements (tilec/calibration.py): which descriptions the
measurements describe, a flip the check rules out (robust, with a note naming the measurement)
or keeps (borderline), and -- slow -- the published YOLOv4-P5 896 px batch-2 out-of-memory on
gc200, whose only flip needs constants under which that very measurement would fit."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_band import MODEL, RESERVED, chip
from tilec.targets import load_target

from tilec.calibration import measured_chip, points_of
from tilec.compile import CompileOptions, capture, compile_model, lower
from tilec.plan.band import compute_band
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS
from tilec.plan.pipeline import Options


def test_points_are_the_published_outcomes() -> None:
    pts = points_of("gc200")
    assert len(pts) == 7
    assert {p.model for p in pts} == {"yolov4-p5"}
    assert {(p.measured.image_size, p.measured.batch, p.measured.result) for p in pts} >= {
        ((896, 896), 1, "fits"), ((896, 896), 2, "does_not_fit"), ((128, 128), 1, "fits")}
    assert points_of("northpole") == ()


def test_which_descriptions_the_measurements_describe(tmp_path: Path) -> None:
    assert measured_chip(load_target("gc200")) == "gc200"
    assert measured_chip(load_target("bow")) == "gc200"  # the same chip at a higher clock
    assert measured_chip(load_target("gc2")) is None  # another chip
    assert measured_chip(load_target("northpole")) is None
    # a gc200 with fewer, larger tiles is another chip: the measurements say nothing of it
    other = chip(tmp_path, "small", bytes_per_tile=65536, ranges={})
    assert measured_chip(load_target(other)) is None


def _straddle(tmp_path: Path):
    path = chip(tmp_path, "tight", bytes_per_tile=65536, ranges={
        "memory.bytes_per_tile": [RESERVED + 1, 65536]})
    target = load_target(path)
    opts = CompileOptions(what_if=False)
    lowered = lower(capture(str(MODEL)), target, opts)
    plan, _ = compile_model(str(MODEL), target, opts)
    assert plan.status == STATUS_FITS
    return lowered, target, plan


def test_a_flip_the_measurements_rule_out_is_not_borderline(tmp_path: Path) -> None:
    lowered, target, plan = _straddle(tmp_path)
    seen: list[tuple[dict, str]] = []

    def contradicts(values: dict, becomes: str) -> str:
        seen.append((dict(values), becomes))
        return "a measured fit would not fit"

    # one process: the check's record of its calls must stay in this one (forked band workers
    # would call it in theirs; tests/test_band.py checks that both give the same band)
    band = compute_band(lowered.info, target, plan, options=Options(
        settings=SolveSettings(workers=1)), check=contradicts)
    assert band.status == "robust" and band.flips == []
    assert "ruled out by a measurement" in band.summary
    notes = [n for n in band.notes if n.startswith("ruled out by a measurement")]
    assert notes and all("a measured fit would not fit" in n and "memory.bytes_per_tile" in n
                         for n in notes)
    # the check saw each located flip (the low end, and samples below the fit point): the
    # threshold's failing side, towards "does not fit"
    assert len(seen) == len(notes)
    for values, becomes in seen:
        assert becomes == STATUS_DOES_NOT_FIT
        assert RESERVED + 1 <= values["memory.bytes_per_tile"] < 65536


def test_a_flip_consistent_with_the_measurements_stays_borderline(tmp_path: Path) -> None:
    lowered, target, plan = _straddle(tmp_path)
    band = compute_band(lowered.info, target, plan, options=Options(),
                        check=lambda values, becomes: None)
    assert band.status == "borderline" and band.flips
    assert not any(n.startswith("ruled out") for n in band.notes)


@pytest.mark.slow
def test_p5_896_batch_2_is_robustly_out_of_memory() -> None:
    plan, _ = compile_model("yolov4-p5", "gc200", CompileOptions(
        batch=2, image_size=896, what_if=False, band=True))
    assert plan.status == STATUS_DOES_NOT_FIT
    assert plan.band.status == "robust", plan.band.summary
    # whatever flip the band found, it was ruled out by the 896 px batch-2 measurement itself
    for n in plan.band.notes:
        if n.startswith("ruled out"):
            assert "896 px batch 2" in n


def test_a_measured_configuration_rules_out_every_flip_without_a_threshold(
        tmp_path: Path) -> None:
    """When the compile is itself a measured configuration with the nominal verdict as its
    measured outcome, every setting that flips the verdict contradicts that measurement: all
    flips are ruled out at once, no threshold searched, and the note names the measurement."""
    from tilec.calibration import Point
    from tilec.sweep.compare import Measured

    lowered, target, plan = _straddle(tmp_path)
    point = Point("tiny", Measured(image_size=(8, 8), batch=1, precision="fp16",
                                   result=STATUS_FITS, source="a test"))

    class Here:
        calls = 0

        def measured_here(self, info) -> Point:
            return point

        def __call__(self, values: dict, becomes: str) -> None:
            Here.calls += 1  # never needed: the measurement of this very configuration decides
            return None

    band = compute_band(lowered.info, target, plan, options=Options(
        settings=SolveSettings(workers=1)), check=Here())
    assert band.status == "robust" and band.flips == [] and Here.calls == 0
    assert not any(s.label == "bisection" for s in band.settings)
    (note,) = [n for n in band.notes if n.startswith("ruled out by a measurement")]
    assert "this very configuration was measured" in note and "memory.bytes_per_tile" in note


def test_structure_is_the_network_without_its_names() -> None:
    from tilec.calibration import structure
    from tilec.opinfo import GraphInfo

    lowered = _tiny_on_gc200()
    info: GraphInfo = lowered.info
    renamed = {t: f"x{i}" for i, t in enumerate(info.tensors)}
    ops = tuple(type(op)(**{**op.__dict__, "name": f"op{i}",
                            "inputs": tuple(renamed.get(x, x) for x in op.inputs),
                            "outputs": tuple(renamed.get(y, y) for y in op.outputs)})
                for i, op in enumerate(info.ops))
    other = GraphInfo(name="other", ops=ops, tensors=info.tensors,
                      inputs=tuple(renamed.get(x, x) for x in info.inputs),
                      outputs=tuple(renamed.get(y, y) for y in info.outputs),
                      weight_bits=info.weight_bits, act_bits=info.act_bits, meta=info.meta)
    assert structure(other) == structure(info)
    at2 = lower(capture(str(MODEL), batch=2), load_target("gc200"), CompileOptions(batch=2))
    assert structure(at2.info) != structure(info)


def _tiny_on_gc200():
    return lower(capture(str(MODEL)), load_target("gc200"), CompileOptions())
