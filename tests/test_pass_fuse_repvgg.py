"""fuse-repvgg: summed conv/identity branches on one input -> one conv."""

from __future__ import annotations

import itertools
import math

import pytest
from tilec.passes._testing import Builder, ops, prove


def _block(b: Builder, x: str, cin: int, cout: int, *, stride: int = 1, group: int = 1,
           order=("3x3", "1x1", "id"), identity: bool = True) -> str:
    parts = {
        "3x3": lambda: b.bn(b.conv(x, cin, cout, 3, stride=stride, group=group), cout),
        "1x1": lambda: b.bn(b.conv(x, cin, cout, 1, stride=stride, group=group), cout),
        "id": lambda: b.bn(x, cin),
    }
    terms = [parts[k]() for k in order if k != "id" or identity]
    s = terms[0]
    for t in terms[1:]:
        s = b.op("Add", [s, t])
    return b.op("Relu", [s])


def _convs(graph):
    return [n for n in graph.nodes if n.op == "Conv"]


@pytest.mark.parametrize("order", list(itertools.permutations(("3x3", "1x1", "id"))))
@pytest.mark.parametrize("prefold", [False, True])
def test_block_in_any_branch_order_bn_folded_or_not(order, prefold):
    b = Builder()
    x = b.input("x", [1, 6, 7, 7])
    b.output(_block(b, x, 6, 6, order=order))
    passes = ["fold-bn", "fuse-repvgg"] if prefold else ["fuse-repvgg"]
    graph, stats, err = prove(b.model(), passes)
    assert ops(graph) == ["Conv", "Relu"] and err < 1e-5
    conv = graph.nodes[0]
    assert conv.attrs["kernel_shape"] == [3, 3] and conv.attrs["pads"] == [1, 1, 1, 1]
    assert stats[-1].counts() == {"repvgg": 1}
    assert stats[-1].params_after == 6 * 6 * 9 + 6


@pytest.mark.parametrize("group", [2, 3])
def test_grouped_block_with_identity(group):
    b = Builder()
    x = b.input("x", [1, 6, 5, 5])
    b.output(_block(b, x, 6, 6, group=group))
    graph, _stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph) == ["Conv", "Relu"] and err < 1e-5
    assert graph.nodes[0].attrs["group"] == group
    assert list(graph.nodes[0].inputs[1].shape) == [6, 6 // group, 3, 3]


def test_stride_two_block_without_identity():
    b = Builder()
    x = b.input("x", [1, 4, 9, 9])
    b.output(_block(b, x, 4, 8, stride=2, identity=False))
    graph, _stats, err = prove(b.model(), ["fold-bn", "fuse-repvgg"])
    assert ops(graph) == ["Conv", "Relu"] and err < 1e-5
    assert graph.nodes[0].attrs["strides"] == [2, 2]


def test_conv_plus_its_own_input_merges():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    b.output(b.op("Add", [x, b.conv(x, 4, 4, 3, bias=True)]))
    graph, _stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph) == ["Conv"] and err < 1e-5


def test_extra_terms_of_the_sum_stay_around_the_fused_conv():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    other = b.op("Sigmoid", [b.input("z", [1, 4, 6, 6])])
    s = b.op("Add", [b.op("Add", [b.conv(x, 4, 4, 3), other]), b.conv(x, 4, 4, 1)])
    b.output(s)
    graph, _stats, err = prove(b.model(), ["fuse-repvgg"])
    assert sorted(ops(graph)) == ["Add", "Conv", "Sigmoid"] and err < 1e-5
    assert graph.outputs[0].name == s


def test_misaligned_one_by_one_branch_is_left_alone():
    """3x3 with pads (0,0,2,2) keeps the size but puts its centre one pixel off the 1x1's."""
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    s = b.op("Add", [b.conv(x, 4, 4, 3, pad=[0, 0, 2, 2]), b.conv(x, 4, 4, 1)])
    b.output(s)
    graph, stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph).count("Conv") == 2 and err == 0.0
    assert stats[0].rewrites == [] and "misaligned" in stats[0].left[0].detail


def test_one_by_one_branch_with_another_stride_is_left_alone():
    """At 1x1 spatial size a stride-2 1x1 conv still adds up with a stride-1 3x3 conv."""
    b = Builder()
    x = b.input("x", [1, 4, 1, 1])
    b.output(b.op("Add", [b.conv(x, 4, 4, 3), b.conv(x, 4, 4, 1, stride=2)]))
    graph, stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph).count("Conv") == 2 and err == 0.0
    assert "strides" in stats[0].left[0].detail


def test_offset_but_aligned_branches_merge():
    """3x3 pad 2 and 1x1 pad 1 sample the same centre: merging them is exact."""
    b = Builder()
    x = b.input("x", [1, 4, 5, 5])
    b.output(b.op("Add", [b.conv(x, 4, 4, 3, pad=2), b.conv(x, 4, 4, 1, pad=1)]))
    graph, _stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph) == ["Conv"] and err < 1e-5
    assert graph.nodes[0].attrs["pads"] == [2, 2, 2, 2]


def test_branch_read_elsewhere_is_not_consumed():
    b = Builder()
    x = b.input("x", [1, 4, 5, 5])
    c1 = b.conv(x, 4, 4, 1)
    b.output(b.op("Add", [b.conv(x, 4, 4, 3), c1]), b.op("Relu", [c1]))
    graph, stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph).count("Conv") == 2 and stats[0].rewrites == [] and err == 0.0


def test_dilated_branch_is_left_alone():
    b = Builder()
    x = b.input("x", [1, 4, 7, 7])
    b.output(b.op("Add", [b.conv(x, 4, 4, 3, pad=2, dilation=2), b.conv(x, 4, 4, 1)]))
    graph, _stats, err = prove(b.model(), ["fuse-repvgg"])
    assert ops(graph).count("Conv") == 2 and err == 0.0


@pytest.mark.slow
def test_repvgg_a0_training_form_fuses_to_the_papers_inference_model():
    from tilec.passes import run_pipeline

    from tilec import zoo
    from tilec.capture import capture_onnx

    cap = capture_onnx(zoo.export("repvgg-a0", image_size=(64, 64)), name="repvgg-a0")
    summary: dict = {}
    graph, stats = run_pipeline(cap.graph, ["fuse-repvgg"], precision="fp32", verify="pass",
                                summary=summary)
    kinds = {n.op for n in graph.nodes}
    assert kinds <= {"Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"}
    convs = _convs(graph)
    assert len(convs) == 22 and all(c.attrs["kernel_shape"] == [3, 3] for c in convs)
    # RepVGG paper, Table 2: A0 has 8.30M parameters in inference form
    assert math.isclose(stats[0].params_after, 8.30e6, rel_tol=0.005)
    assert stats[0].verify.max_rel_err < 1e-4
    assert stats[0].verify.output_rel_err < 1e-4
