"""Device time follows the work (issue 12, "Done when": device time must scale with MACs where the
chip is equally busy): on gc200 a larger batch or a larger image never predicts less device time,
and the measured pipeline's tail model captures with its TopK / NMS on the chip."""

from __future__ import annotations

import itertools

import pytest
from tilec.targets import load_target

from tilec.compile import CompileOptions, compile_model, reshaped
from tilec.plan.pipeline import Options, run

BATCHES = (1, 2, 3, 4, 6, 8)
SIZES = tuple(range(128, 513, 64))


def _device_seconds(name: str, configs: list[tuple[int, int]]) -> list[float]:
    target = load_target("gc200")
    _, lowered = compile_model(name, target, CompileOptions(batch=1, image_size=224,
                                                            what_if=False, band=False))
    out = []
    for batch, size in configs:
        low = reshaped(lowered, batch, (size, size))
        assert low is not None
        plan = run(low.info, target, options=Options()).plan
        assert plan.status == "fits" and plan.latency is not None, (batch, size, plan.status)
        out.append(plan.latency.device_seconds)
    return out


def _non_decreasing(values: list[float]) -> bool:
    return all(b >= a for a, b in itertools.pairwise(values))


@pytest.mark.slow
def test_device_time_non_decreasing_in_batch_and_image_size() -> None:
    by_batch = _device_seconds("yolov4-tiny", [(b, 224) for b in BATCHES])
    assert _non_decreasing(by_batch), dict(zip(BATCHES, by_batch, strict=True))
    assert by_batch[-1] > by_batch[0]
    by_size = _device_seconds("yolov4-tiny", [(1, s) for s in SIZES])
    assert _non_decreasing(by_size), dict(zip(SIZES, by_size, strict=True))
    assert by_size[-1] > by_size[0]


@pytest.mark.slow
def test_tail_model_captures_with_topk_and_nms_on_the_device() -> None:
    from tilec.capture import capture
    from tilec.compile import lower

    target = load_target("gc200")
    captured = capture("yolov4-p5-nms", batch=1, image_size=(128, 128))
    assert "host" not in captured.meta  # nothing went to the host
    images = captured.graph.inputs[0]
    assert str(images.dtype) == "uint8" and tuple(images.shape) == (1, 3, 128, 128)
    low = lower(captured, target, CompileOptions(batch=1, image_size=128, what_if=False,
                                                 band=False), probe=None)
    kinds = {o.kind for o in low.info.ops}
    assert {"topk", "nms"} <= kinds
    topk = next(o for o in low.info.ops if o.kind == "topk")
    assert topk.out_shapes[0] == (1, 1344)  # k = min(2000, N): N = 4 x (16^2 + 8^2 + 4^2)
    (out,) = low.info.outputs
    assert low.info.tensors[out].shape == (300, 6)  # the detections, not the raw heads
    assert low.info.tensors[low.info.inputs[0]].bits == 8  # uint8 over the host link
    plan = run(low.info, target, options=Options()).plan
    assert plan.status == "fits"
    lat = plan.latency
    assert lat.input_seconds == pytest.approx(3 * 128 * 128 / 14.55e9)
    assert lat.output_seconds == pytest.approx(300 * 6 * 2 / 6.33e9)
