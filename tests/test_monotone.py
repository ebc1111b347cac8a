"""Physical sanity of the GC200 model (issue 12, item 3): more work never fits where less did.

A configuration that dominates another -- larger batch, larger image, at the same precision --
must not fit when the smaller one does not. The chip is gc200 with smaller tiles, so the verdict
flips inside the range searched (on the full chip these networks fit everywhere here)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from tilec.targets import load_target

from tilec.compile import CompileOptions, compile_model, reshaped
from tilec.plan.pipeline import Options, run

BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)
SIZES = tuple(range(128, 769, 64))


def _verdicts(name: str, bytes_per_tile: int, configs: list[tuple[int, int]]) -> list[str]:
    """Plan status per configuration; each plan's peak bytes per tile go to ``PEAKS[name]``."""
    target = load_target("gc200").with_bytes_per_tile(bytes_per_tile)
    _, lowered = compile_model(name, target, CompileOptions(batch=1, image_size=224,
                                                            what_if=False))
    out = []
    peaks = PEAKS[name] = []
    for batch, size in configs:
        low = reshaped(lowered, batch, (size, size))
        assert low is not None
        outcome = run(low.info, target, options=Options())
        plan = outcome.plan
        out.append(plan.status)
        peaks.append((plan.memory.peak_bytes if plan.memory and plan.status == "fits" else None,
                      outcome.bounds["a"].needed))
    return out


PEAKS: dict[str, list[tuple[int | None, int]]] = {}
"""Per network, per configuration of the last sweep: (peak bytes per tile of the plan if it
fits, bytes (a) needs over the chip)."""


def _peaks_grow(name: str) -> bool:
    """Where the peak bytes per tile of one fitting plan exceed those of the next (larger)
    fitting configuration, the cost model offered cheaper splits there: (a) -- every op at its
    cheapest offered split -- falls too. A fall in peak that (a) does not share would be the
    placement's doing, and fails this.

    Measured: YOLOv4-P5 at 320 px on gc200, batch 12 -> 13: peak 612,311 -> 593,827 B (both
    plans optimal, gap 0), (a) 877.4 -> 837.5 MB: at batch 13 the ``fastest`` window admits a
    split with far less vertex state (the stem conv: batch13 x rows107, 684 B of state per tile,
    where batch 12's only near-fastest split carries 1,656 B)."""
    fit = [(p, a) for p, a in PEAKS[name] if p is not None]
    return all(q >= p or b < a for (p, a), (q, b) in pairwise(fit))


def _monotone(status: list[str]) -> bool:
    """Once a configuration is proven not to fit, no larger one fits ("unknown" -- the solver
    ran out of time -- claims nothing either way)."""
    return all(later != "fits" for i, s in enumerate(status) if s == "does_not_fit"
               for later in status[i + 1:])


@pytest.mark.slow
@pytest.mark.parametrize("name,bytes_per_tile", [("resnet50", 160_000), ("repvgg-a0", 90_000)])
def test_verdict_is_monotone_in_batch(name: str, bytes_per_tile: int) -> None:
    st = _verdicts(name, bytes_per_tile, [(b, 224) for b in BATCHES])
    assert st[0] == "fits" and "does_not_fit" in st, (name, st)  # it flips inside the range
    assert _monotone(st), dict(zip(BATCHES, st, strict=True))
    assert _peaks_grow(name), dict(zip(BATCHES, PEAKS[name], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name,bytes_per_tile", [("resnet50", 180_000), ("repvgg-a0", 80_000)])
def test_verdict_is_monotone_in_image_size(name: str, bytes_per_tile: int) -> None:
    st = _verdicts(name, bytes_per_tile, [(1, s) for s in SIZES])
    assert st[0] == "fits" and "does_not_fit" in st, (name, st)
    assert _monotone(st), dict(zip(SIZES, st, strict=True))
    assert _peaks_grow(name), dict(zip(SIZES, PEAKS[name], strict=True))


FULL = 638_976  # gc200's own tile (hw): the zoo's detectors flip inside these ranges on it
P5_BATCHES = (1, 2, 4, 8, 12, 13, 14, 16)
P5_SIZES = tuple(range(128, 1409, 128))


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("yolov4-p5", 320), ("yolov4", 416)])
def test_detector_verdict_is_monotone_in_batch_on_gc200(name: str, size: int) -> None:
    """YOLOv4-P5 and YOLOv4 on the real gc200 tile: the largest batch that fits is a frontier
    (every batch below it fits, none above it does)."""
    st = _verdicts(name, FULL, [(b, size) for b in P5_BATCHES])
    assert st[0] == "fits" and "does_not_fit" in st, (name, st)
    assert _monotone(st), dict(zip(P5_BATCHES, st, strict=True))
    assert _peaks_grow(name), dict(zip(P5_BATCHES, PEAKS[name], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name,sizes", [("yolov4-p5", P5_SIZES),
                                        ("yolov4", tuple(range(128, 2305, 192)))])
def test_detector_verdict_is_monotone_in_image_size_on_gc200(name: str,
                                                               sizes: tuple[int, ...]) -> None:
    st = _verdicts(name, FULL, [(1, s) for s in sizes])
    assert st[0] == "fits" and "does_not_fit" in st, (name, st)
    assert _monotone(st), dict(zip(sizes, st, strict=True))
    assert _peaks_grow(name), dict(zip(sizes, PEAKS[name], strict=True))


# ------------------------------------------------ bounds and precision (no placement)
ZOO = ("yolov4-p5", "yolov4", "resnet50", "repvgg-a0")
BOUND_BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)
BOUND_SIZES = tuple(range(128, 1537, 128))


def _lowered(name: str, target, precision: str | None = None):
    opts = {"batch": 1, "image_size": 224, "what_if": False}
    if precision:
        opts["precision"] = precision
    return compile_model(name, target, CompileOptions(**opts))[1]


def _bound_needs(name: str, target, configs: list[tuple[int, int]],
                 precision: str | None = None) -> list[tuple[int, int]]:
    """(bytes (a) needs over the chip, bytes (b) needs on one tile) per configuration."""
    from tilec.plan.partition import partition
    from tilec.plan.pipeline import lower_bounds

    lowered = _lowered(name, target, precision)
    out = []
    for batch, size in configs:
        low = reshaped(lowered, batch, (size, size))
        assert low is not None
        bd = lower_bounds(low.info, target, partition(low.info, target))
        out.append((bd["a"].needed, bd["b"].needed))
    return out


def _drops(values: list[int]) -> list[int]:
    """Indices where a value is smaller than the one before it."""
    return [i for i in range(1, len(values)) if values[i] < values[i - 1]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_single_op_bound_grows_with_batch_and_size_on_gc200(name: str) -> None:
    """(b): the op whose cheapest split needs the most bytes on one tile needs no fewer when
    the batch or the image grows (measured on the zoo; benchmarks/bounds_monotone.py)."""
    target = load_target("gc200")
    size = 320 if name.startswith("yolo") else 224
    by_batch = _bound_needs(name, target, [(b, size) for b in BOUND_BATCHES])
    by_size = _bound_needs(name, target, [(1, s) for s in BOUND_SIZES])
    assert not _drops([b for _, b in by_batch]), dict(zip(BOUND_BATCHES, by_batch, strict=True))
    assert not _drops([b for _, b in by_size]), dict(zip(BOUND_SIZES, by_size, strict=True))


@pytest.mark.slow
def test_chip_bound_is_not_monotone_under_the_fastest_policy() -> None:
    """(a) on gc200 drops between YOLOv4-P5 batch 12 and 13 at 320 px: under the ``fastest``
    policy the splits within ``fastest_slack`` of the fastest change with the shape, and at
    batch 13 one with far less vertex state joins them. This is why gc200 does not declare
    ``bounds_monotone`` (the what-if's headroom answers stay ``bound`` there): if this test
    starts failing, the mechanism changed -- re-measure with benchmarks/bounds_monotone.py
    before declaring it."""
    target = load_target("gc200")
    assert not getattr(target.cost_model, "bounds_monotone", False)
    (a12, _), (a13, _) = _bound_needs("yolov4-p5", target, [(12, 320), (13, 320)])
    assert a13 < a12


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_bounds_grow_with_bits_per_value_on_gc200(name: str) -> None:
    """fp16 <= fp32: more bits per value never lowers what (a) or (b) needs. int8 is left out on
    gc200 on purpose: it is a storage-only weight format there (the AMP computes fp16), so a
    conv receives its int8 slice *and* dequantises it into an fp16 temporary -- (b) needs more
    than at fp16 on all four networks (YOLOv4-P5 at 320 px: 45,654 B vs 38,533 B), a real
    mechanism, not an artefact (see test_int8_weights_cost_a_dequantisation_temporary)."""
    target = load_target("gc200")
    size = 320 if name.startswith("yolo") else 224
    needs = [_bound_needs(name, target, [(1, size)], precision=p)[0] for p in ("fp16", "fp32")]
    assert not _drops([a for a, _ in needs]), needs
    assert not _drops([b for _, b in needs]), needs


@pytest.mark.slow
def test_int8_weights_cost_a_dequantisation_temporary() -> None:
    """The one place where fewer bits per *stored* value need more bytes on gc200: ResNet-50's
    (b) at int8 exceeds fp16's, and the op that sets it carries a dequantisation temporary."""
    from tilec.plan.partition import partition
    from tilec.plan.pipeline import lower_bounds

    target = load_target("gc200")
    needs = {}
    for p in ("int8", "fp16"):
        low = _lowered("resnet50", target, p)
        bd = lower_bounds(low.info, target, partition(low.info, target))
        needs[p] = bd["b"]
    assert needs["int8"].needed > needs["fp16"].needed
    assert needs["int8"].details["step"].get("temp", 0) > needs["fp16"].details["step"].get(
        "temp", 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_bounds_grow_with_bits_per_value_on_northpole(name: str) -> None:
    """int2 <= int4 <= int8 on NorthPole, where the bits are those of weights *and*
    activations."""
    target = load_target("northpole")
    size = 320 if name.startswith("yolo") else 224
    needs = [_bound_needs(name, target, [(1, size)], precision=p)[0]
             for p in ("int2", "int4", "int8")]
    assert not _drops([a for a, _ in needs]), needs
    assert not _drops([b for _, b in needs]), needs


def _plans(name: str, bytes_per_tile: int, configs: list[tuple[int, int]],
           precision: str | None = None) -> list[tuple[str, int | None]]:
    """(status, peak bytes of the plan tried) per configuration on gc200 with smaller tiles."""
    target = load_target("gc200").with_bytes_per_tile(bytes_per_tile)
    lowered = _lowered(name, target, precision)
    out = []
    for batch, size in configs:
        low = reshaped(lowered, batch, (size, size))
        assert low is not None
        plan = run(low.info, target, options=Options()).plan
        out.append((plan.status, plan.memory.peak_bytes if plan.memory else None))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name,bytes_per_tile", [("resnet50", 160_000), ("repvgg-a0", 90_000)])
def test_verdict_and_peak_grow_with_bits_per_value(name: str, bytes_per_tile: int) -> None:
    """int8 <= fp16 <= fp32 at batch 4: the verdict never improves with more bits, and where
    all fit, the peak bytes per tile never fall."""
    res = [_plans(name, bytes_per_tile, [(4, 224)], precision=p)[0]
           for p in ("int8", "fp16", "fp32")]
    assert _monotone([s for s, _ in res]), res
    peaks = [p for s, p in res if s == "fits"]
    assert not _drops([p for p in peaks if p is not None]), res


@pytest.mark.slow
@pytest.mark.parametrize("name,bytes_per_tile", [("resnet50", 160_000), ("repvgg-a0", 90_000)])
def test_a_dominating_configuration_of_one_that_does_not_fit_does_not_fit(
        name: str, bytes_per_tile: int) -> None:
    """gc200 with smaller tiles over a batch x image-size grid: for every pair where one
    configuration is at least as large in both, 'does not fit' for the smaller one means
    'does not fit' (or 'unknown') for the larger."""
    grid = [(b, s) for b in (1, 2, 4, 8) for s in (160, 224, 288)]
    res = dict(zip(grid, _plans(name, bytes_per_tile, grid), strict=True))
    assert any(st == "does_not_fit" for st, _ in res.values())
    assert any(st == "fits" for st, _ in res.values())
    bad = [(x, y) for x in grid for y in grid
           if x != y and y[0] >= x[0] and y[1] >= x[1]
           and res[x][0] == "does_not_fit" and res[y][0] == "fits"]
    assert not bad, (bad, res)
