"""On-device detection post-processing: TopK / NonMaxSuppression kept on the chip when annotated,
bounded at capture, and costed on the IPU from PopLibs' bitonic top-k and Graphcore's NMS loop
(targets/ipu_postprocess.py)."""

from __future__ import annotations

import onnx
import pytest
from test_host_ops import cap, detector
from tilec.targets import load_target
from tilec.targets.ipu_postprocess import argmax_stages, bitonic_steps, nms_iterations

from tilec.costmodel import Split
from tilec.errors import InputError
from tilec.opinfo import OpInfo, build_graph_info


def on_device(model: onnx.ModelProto) -> onnx.ModelProto:
    """``detector()`` with its TopK and NMS annotated to run on the chip."""
    for node in model.graph.node:
        if node.op_type in ("TopK", "NonMaxSuppression"):
            node.metadata_props.add(key="tilec.on_device", value="true")
    return model


def op(kind: str, in_shapes, out_shapes, **attrs) -> OpInfo:
    op_type = {"topk": "TopK", "nms": "NonMaxSuppression"}[kind]
    return OpInfo(name=kind, op_type=op_type, kind=kind, inputs=("a",), outputs=("b",),
                  weights=(), attrs=attrs, macs=0, in_shapes=tuple(in_shapes),
                  out_shapes=tuple(out_shapes))


def test_bitonic_step_counts_follow_poplibs() -> None:
    # a full bitonic sort of 8: 1 + 2 + 3 compare-and-swap steps
    assert len(bitonic_steps(8, 8)) == 6
    # 896 px: n = 65,856 (17 merge steps), k' = 2048 (at most 11 re-sorts per merge)
    steps = bitonic_steps(65_856, 2000)
    assert len(steps) == 17 + sum(range(12)) + 11 * 5 == 138
    assert steps[0] == 65_856 and steps[-1] <= 2 * 2048  # the better half kept per merge
    assert steps == sorted(steps, reverse=True)


def test_argmax_stages_reduce_32_fold() -> None:
    assert argmax_stages(1, 1472) == 1
    assert argmax_stages(2000, 1472) == 4  # 2000 partials -> 63 -> 2 -> 1
    assert argmax_stages(2000, 1) == 2  # 6 partials on one tile -> 1


def test_topk_cost_is_its_supersteps_and_spreads_over_tiles() -> None:
    cm = load_target("gc200").cost_model
    big = op("topk", [(1, 65_856)], [(1, 2000), (1, 2000)], axis=1, sorted=1)
    c1472 = cm.cost(big, Split.of(elements=1472))
    c64 = cm.cost(big, Split.of(elements=64))
    sets = 138 + 3
    assert c1472.compute_cycles >= (sets - 1) * cm.superstep
    assert c64.compute_cycles > c1472.compute_cycles  # the comparisons spread over the tiles
    assert c64.exchange_cycles > c1472.exchange_cycles
    assert sum(c1472.always.values()) == sets * cm.set_bytes  # code/state/exchange per set
    small = op("topk", [(1, 1344)], [(1, 1344), (1, 1344)], axis=1, sorted=1)
    assert cm.cost(small, Split.of(elements=1472)).cycles < c1472.cycles
    # both outputs priced: fp16 values and 32-bit indices
    assert c1472.outputs == (-(-2000 // 1472) * 2, -(-2000 // 1472) * 4)


def test_nms_cost_is_a_loop_of_supersteps() -> None:
    target = load_target("gc200")
    cm = target.cost_model
    nms = op("nms", [(1, 2000, 4), (1, 1, 2000)], [(300, 3)])
    assert nms_iterations(cm, nms) == cm.nms_iterations == 8
    c = cm.cost(nms, Split.of(elements=1472))
    per_iter = argmax_stages(2000, 1472) + 7
    assert c.compute_cycles >= (8 * per_iter + 3) * cm.superstep
    # more iterations assumed -> proportionally more supersteps; capped by the output's size
    cm.nms_iterations = 100
    try:
        c100 = cm._cost(nms, Split.of(elements=1472))
        assert c100.compute_cycles > 10 * c.compute_cycles
        cm.nms_iterations = 10_000
        assert nms_iterations(cm, nms) == 300  # max_output_boxes_per_class x classes per image
    finally:
        cm.nms_iterations = 8


def test_on_device_annotation_keeps_the_tail_on_the_chip_and_bounds_nms() -> None:
    captured = cap(on_device(detector()))
    assert "host" not in captured.meta  # nothing cut
    kinds = {n.op for n in captured.graph.nodes}
    assert {"TopK", "NonMaxSuppression"} <= kinds
    keep = next(n for n in captured.graph.nodes if n.op == "NonMaxSuppression").outputs[0]
    # scores [1, 8, 10], max_output_boxes_per_class 5: 1 x 8 x min(5, 10) rows
    assert list(keep.shape) == [40, 3]
    info = build_graph_info(captured.graph)
    assert {o.kind for o in info.ops} >= {"topk", "nms"}
    # without the annotation the same file still sends them to the host
    assert cap(detector()).meta["host"]["op_types"] == {"NonMaxSuppression": 1, "TopK": 1}


def test_gc200_plans_the_tail_northpole_refuses_it() -> None:
    from tilec.plan.pipeline import Options, run

    # planned straight from capture: detector()'s boxes are not [batch, boxes, 4], so
    # onnxruntime cannot run it to prove the passes
    info = build_graph_info(cap(on_device(detector())).graph)
    plan = run(info, load_target("gc200"), options=Options()).plan
    assert plan.status == "fits"
    placed = {o.name for o in plan.ops}
    assert {"topk", "nms"} <= placed
    with pytest.raises(InputError, match="NorthPole runs no data-dependent control flow"):
        load_target("northpole").cost_model.cost(
            op("nms", [(1, 20, 4), (1, 1, 20)], [(5, 3)]), Split.of(elements=1))
