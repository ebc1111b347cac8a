"""canonicalize: constant folding of exporter shape arithmetic, no-op removal, dead nodes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from tilec.passes._testing import Builder, capture, ops, outputs_of, prove


def _exporter_flatten() -> Builder:
    """conv -> Identity -> Dropout -> reshape to (N, -1) computed with Shape/Gather/Concat."""
    b = Builder()
    x = b.input("x", [2, 3, 8, 8])
    y = b.conv(x, 3, 4, 3)
    y = b.op("Identity", [y])
    y = b.op("Dropout", [y])
    shape = b.op("Shape", [y])
    n = b.op("Gather", [shape, b.const(np.array(0, np.int64))], axis=0)
    n = b.op("Unsqueeze", [n, b.const(np.array([0], np.int64))])
    minus = b.op("Constant", [], value=helper.make_tensor("m1", TensorProto.INT64, [1], [-1]))
    target = b.op("Concat", [n, minus], axis=0)
    flat = b.op("Reshape", [y, target])
    same = b.op("Reshape", [flat, b.op("Shape", [flat])])  # a no-op
    b.op("Relu", [flat])  # dead: nobody reads it
    b.output(b.op("Sigmoid", [same]))
    return b


def test_folds_shape_arithmetic_and_drops_noops():
    graph, stats, err = prove(_exporter_flatten().model(), ["canonicalize"])
    assert err < 1e-6
    assert ops(graph) == ["Conv", "Reshape", "Sigmoid"]
    reshape = graph.nodes[1]
    assert np.array_equal(reshape.inputs[1].values, [2, -1])  # the folded target
    counts = stats[0].counts()
    for kind in ("fold-constant", "remove-identity", "remove-dropout", "remove-noop-reshape",
                 "dead-node"):
        assert counts.get(kind, 0) >= 1, kind
    assert stats[0].nodes_before == 13 and stats[0].nodes_after == 3
    assert not any(n.op == "Constant" for n in graph.nodes)
    assert stats[0].verify is not None and stats[0].verify.max_rel_err < 1e-6


def test_probe_is_smaller_than_the_model_and_decisions_match():
    # Shapes come from Shape ops, so the model re-shapes: the proof runs at batch 1.
    summary: dict = {}
    graph = capture(_exporter_flatten().model())
    from tilec.passes import run_pipeline

    run_pipeline(graph, ["canonicalize"], precision="fp32", verify="pass", summary=summary)
    assert summary["probe"] == {"x": [1, 3, 8, 8]}
    # the folded target is the model's own (batch 2), not the probe's
    assert np.array_equal(graph.nodes[1].inputs[1].values, [2, -1])


def test_identity_before_a_model_output_keeps_the_output_name():
    b = Builder()
    x = b.input("x", [1, 4])
    y = b.op("Relu", [x])
    out = b.op("Identity", [y])
    b.output(out)
    graph, _stats, err = prove(b.model(), ["canonicalize"])
    assert err == 0.0
    assert ops(graph) == ["Relu"] and graph.outputs[0].name == out
    assert graph.nodes[0].outputs[0].name == out


def test_identity_from_input_to_output_is_left_alone():
    b = Builder()
    x = b.input("x", [1, 4])
    b.output(b.op("Identity", [x]))
    graph, stats, err = prove(b.model(), ["canonicalize"])
    assert ops(graph) == ["Identity"] and err == 0.0
    assert [r.kind for r in stats[0].left] == ["remove-identity"]


def test_dropout_whose_mask_is_read_stays():
    b = Builder(opset=18)
    x = b.input("x", [1, 4])
    y = b.op("Dropout", [x], n_out=2)
    mask = f"{y[: -len('_out')]}_out1"
    b.output(y, b.op("Cast", [mask], to=TensorProto.FLOAT))
    graph, _stats, _ = prove(b.model(), ["canonicalize"])
    assert "Dropout" in ops(graph)


def test_dequantize_of_a_constant_is_not_folded():
    b = Builder()
    x = b.input("x", [1, 2, 4, 4])
    q = b.const(np.array([[[[1]], [[-3]]], [[[2]], [[4]]]], np.int8))
    s = b.const(np.array([0.5, 0.25], np.float32))
    w = b.op("DequantizeLinear", [q, s], axis=0)
    b.output(b.op("Conv", [x, w]))
    graph, _stats, err = prove(b.model(), ["canonicalize"])
    assert "DequantizeLinear" in ops(graph) and err < 1e-6


def test_noop_cast_transpose_and_single_input_concat():
    b = Builder()
    x = b.input("x", [1, 3, 2, 2])
    y = b.op("Relu", [x])
    y = b.op("Cast", [y], to=TensorProto.FLOAT)
    y = b.op("Transpose", [y], perm=[0, 1, 2, 3])
    y = b.op("Concat", [y], axis=1)
    y = b.op("Transpose", [y], perm=[0, 1, 3, 2])  # a real transpose stays
    b.output(y)
    graph, _stats, err = prove(b.model(), ["canonicalize"])
    assert ops(graph) == ["Relu", "Transpose"] and err == 0.0
    before = outputs_of(b.model())
    assert next(iter(before.values())).shape == (1, 3, 2, 2)
