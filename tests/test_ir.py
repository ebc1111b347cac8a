"""The graph form (tilec.ir): annotations through ONNX, light shape inference, sorting, errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilec.errors import InputError, ShapeError
from tilec.ir import (
    _LIGHT_CONSTANT_LIMIT,
    ANN_PREFIX,
    FUSED_DOMAIN,
    MAX_IR_VERSION,
    _light_model,
    annotations,
    constant_value,
    from_onnx,
    get_ann,
    infer_shapes,
    is_concrete,
    producer,
    quiet_gs,
    set_ann,
    shape_error,
    to_onnx,
    topological_order,
    toposort,
)

_spec = importlib.util.spec_from_file_location(
    "make_corpus", Path(__file__).parent / "data" / "make_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def tiny_graph() -> gs.Graph:
    return from_onnx(corpus.tiny_cnn())


def test_annotations_travel_through_onnx_as_metadata() -> None:
    graph = tiny_graph()
    conv = graph.nodes[0]
    values = {"weight_bits": 4, "split": [2, 3], "in_place": True, "note": "x", "m": {"b": 1}}
    for key, value in values.items():
        set_ann(conv, key, value)
    assert get_ann(conv, "weight_bits") == 4 and get_ann(conv, "absent", 7) == 7
    assert annotations(conv) == values

    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    proto = model.graph.node[0]
    assert not any(a.name.startswith(ANN_PREFIX) for a in proto.attribute)
    assert {p.key: p.value for p in proto.metadata_props}[ANN_PREFIX + "m"] == '{"b": 1}'
    assert annotations(graph.nodes[0]) == values  # export leaves the graph as it was

    back = from_onnx(model)
    assert annotations(back.nodes[0]) == values
    assert annotations(back.nodes[1]) == {}


def test_export_caps_ir_version_and_imports_the_fused_domain() -> None:
    model = corpus.tiny_cnn()
    model.ir_version = 11
    graph = from_onnx(model)
    out = to_onnx(graph)
    assert out.ir_version <= MAX_IR_VERSION

    x = gs.Variable("x", np.float32, [1, 4])
    y = gs.Variable("y", np.float32, [1, 4])
    body_out = gs.Variable("o", np.float32, [1, 4])
    func = gs.Function("ReluTwice", domain=FUSED_DOMAIN,
                       nodes=[gs.Node("Relu", inputs=[gs.Variable("i", np.float32, [1, 4])],
                                      outputs=[body_out])])
    func.inputs = list(func.nodes[0].inputs)
    func.outputs = [body_out]
    fused = gs.Graph(nodes=[gs.Node("ReluTwice", name="f", domain=FUSED_DOMAIN, inputs=[x],
                                    outputs=[y])],
                     inputs=[x], outputs=[y], functions=[func], opset=17)
    exported = to_onnx(fused)
    assert {o.domain for o in exported.opset_import} >= {"", FUSED_DOMAIN}


def test_light_model_leaves_weights_out_and_inference_matches() -> None:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Reshape", ["c", "shape"], ["y"], name="flat")]
    inits = [numpy_helper.from_array(rng.standard_normal((64, 16, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shape")]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = from_onnx(model)
    assert _LIGHT_CONSTANT_LIMIT < 64 * 16 * 9
    light = _light_model(graph)
    assert [t.name for t in light.graph.initializer] == ["shape"]  # the small shape constant only
    assert "w" in {i.name for i in light.graph.input}
    infer_shapes(graph)
    got = {t.name: list(t.shape) for t in graph.tensors().values()}
    assert got["c"] == [2, 64, 8, 8]
    assert got["y"] == [2, 64 * 64]
    full = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    dims = [d.dim_value for d in full.graph.output[0].type.tensor_type.shape.dim]
    assert dims == got["y"]


def test_inference_failure_is_one_line_naming_the_node() -> None:
    nodes = [helper.make_node("Concat", ["a", "b"], ["y"], name="join", axis=1),
             helper.make_node("MatMul", ["y", "w"], ["z"], name="mm")]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 5]),
                     helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2, 6]),
                     helper.make_tensor_value_info("w", TensorProto.FLOAT, [5, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ShapeError) as err:
        infer_shapes(from_onnx(model), source="m.onnx")
    exc = err.value
    assert isinstance(exc, InputError)
    assert (exc.node, exc.op) == ("join", "Concat")
    assert str(exc) == ("m.onnx: node 'join' (Concat): shape inference failed: its inputs "
                        "disagree in dimension 2 (6 vs 5)")


def test_shape_error_without_a_node() -> None:
    exc = shape_error(RuntimeError("[ShapeInferenceError] something broke\nsecond line"), "f")
    assert str(exc) == "f: shape inference failed: something broke"
    assert exc.node is None


def test_topological_order_is_stable_and_names_cycles() -> None:
    nodes = [("c", ["b"], ["c_out"]), ("a", ["x"], ["a_out"]), ("b", ["a_out"], ["b"])]
    assert topological_order(nodes) == [1, 2, 0]
    chain = [(f"n{i}", [f"t{i}"], [f"t{i + 1}"]) for i in range(5)]
    assert topological_order(chain) == list(range(5))  # sorted input stays as it is
    # 'head' waits on a two-node cycle it is not part of: only the cycle is named.
    cyclic = [("head", ["p"], ["h"]), ("p_node", ["q"], ["p"]), ("q_node", ["p"], ["q"])]
    with pytest.raises(InputError, match=r"^g.onnx: the graph has a cycle: 'p_node' -> 'q_node' "
                                         r"-> 'p_node'$"):
        topological_order(cyclic, source="g.onnx")


def test_toposort_sorts_a_gs_graph_in_place() -> None:
    graph = tiny_graph()
    graph.nodes.reverse()
    toposort(graph)
    assert [n.name for n in graph.nodes] == ["conv1", "relu1", "conv2", "relu2"]


def test_queries() -> None:
    assert is_concrete([1, 3, 8, 8]) and is_concrete([]) and is_concrete((np.int64(2),))
    assert not is_concrete(None) and not is_concrete([1, "N"]) and not is_concrete([1, None])
    assert not is_concrete([-1, 3])
    graph = tiny_graph()
    tensors = graph.tensors()
    assert producer(tensors["images"]) is None
    assert producer(tensors["c1"]).name == "conv1"
    assert constant_value(tensors["w1"]).shape == (8, 3, 3, 3)
    assert constant_value(tensors["c1"]) is None
    value = gs.Constant("v", np.arange(3, dtype=np.int64))
    out = gs.Variable("k", np.int64, [3])
    graph.nodes.append(gs.Node("Constant", attrs={"value": value}, outputs=[out]))
    np.testing.assert_array_equal(constant_value(out), [0, 1, 2])


def test_quiet_gs_silences_graphsurgeon(capsys: pytest.CaptureFixture[str]) -> None:
    from onnx_graphsurgeon.logger import G_LOGGER

    with quiet_gs():
        G_LOGGER.warning("should not print")
        G_LOGGER.error("nor this")
    assert capsys.readouterr().out == ""


def test_toposort_follows_object_links_not_names() -> None:
    # A pass's half-built graph may repeat a tensor name; the order must follow the real links.
    x = gs.Variable("x", np.float32, [1, 4])
    a = gs.Variable("t", np.float32, [1, 4])
    b = gs.Variable("t", np.float32, [1, 4])
    second = gs.Node("Relu", name="second", inputs=[a], outputs=[b])
    first = gs.Node("Sigmoid", name="first", inputs=[x], outputs=[a])
    graph = gs.Graph(nodes=[second, first], inputs=[x], outputs=[b])
    toposort(graph)
    assert [n.name for n in graph.nodes] == ["first", "second"]
    loop_a = gs.Variable("la", np.float32, [1, 4])
    loop_b = gs.Variable("lb", np.float32, [1, 4])
    cyclic = gs.Graph(nodes=[gs.Node("Relu", name="p", inputs=[loop_b], outputs=[loop_a]),
                             gs.Node("Relu", name="q", inputs=[loop_a], outputs=[loop_b])],
                      inputs=[], outputs=[loop_b])
    with pytest.raises(InputError, match=r"^lowered: the graph has a cycle: 'p' -> 'q' -> 'p'$"):
        toposort(cyclic, source="lowered")
