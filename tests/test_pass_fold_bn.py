"""fold-bn: Conv/ConvTranspose/Gemm + BN, BN split across a Concat, BN left as an affine."""

from __future__ import annotations

import numpy as np
import pytest
from tilec.passes._testing import Builder, capture, ops, prove


def _bn_nodes(graph):
    return [n for n in graph.nodes if n.op == "BatchNormalization"]


@pytest.mark.parametrize("bias", [False, True])
def test_conv_bn_folds_into_the_conv(bias):
    b = Builder()
    x = b.input("x", [1, 4, 8, 8])
    b.output(b.op("Relu", [b.bn(b.conv(x, 4, 6, 3, bias=bias), 6)]))
    graph, stats, err = prove(b.model(), ["fold-bn"])
    assert ops(graph) == ["Conv", "Relu"] and err < 1e-5
    assert stats[0].counts() == {"conv+bn": 1}
    assert stats[0].params_after == 6 * 4 * 9 + 6  # weights + the new bias, no BN parameters
    assert stats[0].verify.max_rel_err < 1e-5


@pytest.mark.parametrize("group", [1, 2])
def test_convtranspose_bn(group):
    b = Builder()
    x = b.input("x", [1, 4, 5, 5])
    w = b.const(b.rng.normal(0, 0.3, size=(4, 6 // group, 3, 3)).astype(np.float32))
    y = b.op("ConvTranspose", [x, w], strides=[2, 2], group=group)
    b.output(b.bn(y, 6))
    graph, stats, err = prove(b.model(), ["fold-bn"])
    assert ops(graph) == ["ConvTranspose"] and err < 1e-5
    assert stats[0].counts() == {"convtranspose+bn": 1}


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_bn_with_alpha_beta_and_bias(trans_b):
    b = Builder()
    x = b.input("x", [3, 5])
    w = b.rng.normal(size=(5, 7)).astype(np.float32)
    w = w.T.copy() if trans_b else w
    c = b.const(b.rng.normal(size=(7,)).astype(np.float32))
    y = b.op("Gemm", [x, b.const(w), c], transB=trans_b, alpha=0.5, beta=2.0)
    b.output(b.bn(y, 7))
    graph, _stats, err = prove(b.model(), ["fold-bn"])
    assert ops(graph) == ["Gemm"] and err < 1e-5
    assert graph.nodes[0].attrs["alpha"] == 1.0 and graph.nodes[0].attrs["beta"] == 1.0


def test_bn_after_concat_splits_into_both_producers():
    """Scaled-YOLOv4's BottleneckCSP: Mish(BN(cat(cv3(..), cv2(x))))."""
    b = Builder()
    x = b.input("x", [1, 8, 6, 6])
    y1 = b.conv(b.conv(x, 8, 4, 1), 4, 4, 1)
    y2 = b.conv(x, 8, 6, 1)
    b.output(b.op("Mish", [b.bn(b.op("Concat", [y1, y2], axis=1), 10)]))
    graph, stats, err = prove(b.model(), ["fold-bn"])
    assert not _bn_nodes(graph) and err < 1e-5
    assert stats[0].counts() == {"concat-split": 1}
    assert ops(graph).count("Conv") == 3  # no affine was needed


def test_bn_after_concat_with_an_unfoldable_input_gets_an_affine_on_that_slice():
    """BottleneckCSP2 / SPPCSP: one Concat input is already activated."""
    b = Builder()
    x = b.input("x", [1, 8, 6, 6])
    y1 = b.op("Mish", [b.conv(x, 8, 4, 3)])
    y2 = b.conv(x, 8, 4, 1)
    b.output(b.op("Mish", [b.bn(b.op("Concat", [y1, y2], axis=1), 8)]))
    graph, stats, err = prove(b.model(), ["fold-bn"])
    assert not _bn_nodes(graph) and err < 1e-5
    affine = [n for n in graph.nodes if n.op == "Conv" and n.attrs.get("group") == 4]
    assert len(affine) == 1 and affine[0].outputs[0].outputs[0].op == "Concat"
    assert list(affine[0].inputs[1].shape) == [4, 1, 1, 1]
    assert "1 slice(s) folded, 1 as affine" in stats[0].rewrites[0].detail


def test_bn_whose_input_has_other_readers_leaves_the_conv_alone():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    c = b.conv(x, 4, 4, 3)
    b.output(b.bn(c, 4), b.op("Relu", [c]))
    model = b.model()
    graph, stats, err = prove(model, ["fold-bn"])
    assert err < 1e-5 and not _bn_nodes(graph)
    conv = next(n for n in graph.nodes if n.name.startswith("conv"))
    original = next(t for t in model.graph.initializer if t.name == conv.inputs[1].name)
    assert np.array_equal(conv.inputs[1].values,
                          np.frombuffer(original.raw_data, np.float32).reshape(4, 4, 3, 3))
    assert [r.kind for r in stats[0].left] == ["fold"]
    assert "other readers" in stats[0].left[0].detail
    assert stats[0].counts() == {"bn-affine": 1}


def test_bn_on_a_model_input_becomes_a_depthwise_affine_and_2d_bn_a_mul_add():
    b = Builder()
    x = b.input("x", [1, 3, 4, 4])
    z = b.input("z", [2, 5])
    b.output(b.bn(x, 3), b.bn(z, 5))
    graph, _stats, err = prove(b.model(), ["fold-bn"])
    assert err < 1e-5 and sorted(ops(graph)) == ["Add", "Conv", "Mul"]


def test_bn_with_runtime_parameters_stays():
    b = Builder()
    x = b.input("x", [1, 3, 4, 4])
    scale = b.input("scale", [3])
    rest = [b.const(np.full(3, v, np.float32)) for v in (0.1, 0.0, 1.0)]
    b.output(b.op("BatchNormalization", [x, scale, *rest]))
    graph, stats, _err = prove(b.model(), ["fold-bn"])
    assert ops(graph) == ["BatchNormalization"] and stats[0].rewrites == []
    assert "not constants" in stats[0].left[0].detail


def test_shared_weights_are_not_modified():
    """Two convs share one weight; folding a BN into one must not change the other."""
    b = Builder()
    x = b.input("x", [1, 3, 5, 5])
    w = b.const(b.rng.normal(size=(3, 3, 3, 3)).astype(np.float32))
    c1 = b.op("Conv", [x, w], pads=[1, 1, 1, 1])
    c2 = b.op("Conv", [x, w], pads=[1, 1, 1, 1])
    b.output(b.bn(c1, 3), c2)
    graph, stats, err = prove(b.model(), ["fold-bn"])
    assert err < 1e-5 and stats[0].counts() == {"conv+bn": 1}
    convs = [n for n in graph.nodes if n.op == "Conv"]
    assert convs[0].inputs[1] is not convs[1].inputs[1]


def test_gs_graph_keeps_concrete_shapes():
    b = Builder()
    x = b.input("x", [1, 4, 8, 8])
    b.output(b.bn(b.conv(x, 4, 6, 3), 6))
    graph = capture(b.model())
    from tilec.passes import run_pipeline

    graph, _ = run_pipeline(graph, ["fold-bn"], precision="fp32", verify="off")
    assert all(list(t.shape) == [1, 6, 8, 8] for n in graph.nodes for t in n.outputs)
