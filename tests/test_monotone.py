"""Physical sanity of the GC200 model (issue 12, item 3): more work never fits where less did.

A configuration that dominates another -- larger batch, larger image, at the same precision --
must not fit when the smaller one does not. The chip is gc200 with smaller tiles, so the verdict
flips inside the range searched (on the full chip these networks fit everywhere here)."""

from __future__ import annotations

import pytest
from tilec.targets import load_target

from tilec.compile import CompileOptions, compile_model, reshaped
from tilec.plan.pipeline import Options, run

BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)
SIZES = tuple(range(128, 769, 64))


def _verdicts(name: str, bytes_per_tile: int, configs: list[tuple[int, int]]) -> list[str]:
    target = load_target("gc200").with_bytes_per_tile(bytes_per_tile)
    _, lowered = compile_model(name, target, CompileOptions(batch=1, image_size=224,
                                                            what_if=False))
    out = []
    for batch, size in configs:
        low = reshaped(lowered, batch, (size, size))
        assert low is not None
        out.append(run(low.info, target, options=Options()).plan.status)
    return out


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


@pytest.mark.slow
@pytest.mark.parametrize("name,bytes_per_tile", [("resnet50", 180_000), ("repvgg-a0", 80_000)])
def test_verdict_is_monotone_in_image_size(name: str, bytes_per_tile: int) -> None:
    st = _verdicts(name, bytes_per_tile, [(1, s) for s in SIZES])
    assert st[0] == "fits" and "does_not_fit" in st, (name, st)
    assert _monotone(st), dict(zip(SIZES, st, strict=True))


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


@pytest.mark.slow
@pytest.mark.parametrize("name,sizes", [("yolov4-p5", P5_SIZES),
                                        ("yolov4", tuple(range(128, 2305, 192)))])
def test_detector_verdict_is_monotone_in_image_size_on_gc200(name: str,
                                                               sizes: tuple[int, ...]) -> None:
    st = _verdicts(name, FULL, [(1, s) for s in sizes])
    assert st[0] == "fits" and "does_not_fit" in st, (name, st)
    assert _monotone(st), dict(zip(sizes, st, strict=True))
