"""--host-ops: ops the chip cannot run at the head or tail of a graph go to the host, the cut is
priced (the crossing tensors are the chip's inputs/outputs) and shown; the middle is an error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilec.capture.onnx_file import capture_model_proto
from tilec.cli import main
from tilec.errors import InputError
from tilec.report.schema import validation_errors

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def conv(name: str, x: str, y: str, cin: int = 8) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    w = np.random.default_rng(len(name)).standard_normal((8, cin, 3, 3)).astype(np.float32)
    return (helper.make_node("Conv", [x, f"{name}_w"], [y], name=name, kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1]), numpy_helper.from_array(w, f"{name}_w"))


def detector(head: bool = False, middle: bool = False) -> onnx.ModelProto:
    """conv -> relu -> conv -> [TopK + NonMaxSuppression post-processing]; optionally an
    unsupported op (Sin) on the input before the first conv, or between the convs."""
    nodes, inits = [], []
    x = "images"
    if head:
        nodes.append(helper.make_node("Sin", ["images"], ["pre"], name="preprocess"))
        x = "pre"
    c1, w1 = conv("c1", x, "f1", cin=3)
    nodes += [c1, helper.make_node("Relu", ["f1"], ["r1"], name="relu1")]
    inits.append(w1)
    y = "r1"
    if middle:
        nodes.append(helper.make_node("Sin", ["r1"], ["mid"], name="odd_op"))
        y = "mid"
    for i in range(2, 5):
        c, w = conv(f"c{i}", y, f"f{i}")
        nodes.append(c)
        inits.append(w)
        y = f"f{i}"
    inits += [numpy_helper.from_array(np.array([1, 8, 256], np.int64), "flat"),
              numpy_helper.from_array(np.array([10], np.int64), "k"),
              numpy_helper.from_array(np.array([5], np.int64), "max_out")]
    nodes += [
        helper.make_node("Reshape", [y, "flat"], ["scores"], name="flatten"),
        helper.make_node("TopK", ["scores", "k"], ["top", "idx"], name="topk", axis=-1),
        helper.make_node("Unsqueeze", ["top", "axis2"], ["boxes0"], name="unsq"),
        helper.make_node("Concat", ["boxes0", "boxes0", "boxes0", "boxes0"], ["boxes"],
                         name="as_boxes", axis=2),
        helper.make_node("NonMaxSuppression", ["boxes", "top", "max_out"], ["keep"],
                         name="nms"),
    ]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "axis2"))
    g = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("images", F,
                                                                       [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("keep", I64, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def cap(model: onnx.ModelProto, host_ops: str = "auto"):
    return capture_model_proto(model, batch=None, image_size=None, name="det", stride=None,
                               source="det.onnx", host_ops=host_ops)


def test_tail_post_processing_goes_to_the_host() -> None:
    c = cap(detector())
    assert [n.op for n in c.graph.nodes] == ["Conv", "Relu", "Conv", "Conv", "Conv", "Reshape"]
    assert [t.name for t in c.graph.outputs] == ["scores"]  # the cut: what the host receives
    host = c.meta["host"]
    assert host == {"head_ops": 0, "tail_ops": 4,
                    "op_types": {"NonMaxSuppression": 1, "TopK": 1},
                    "to_device": [], "to_host": ["scores"]}
    assert any(n.startswith("host: 4 at the tail (NonMaxSuppression x1, TopK x1)")
               for n in c.meta["notes"])


def test_head_op_goes_to_the_host_first() -> None:
    c = cap(detector(head=True))
    assert c.meta["host"]["head_ops"] == 1 and c.meta["host"]["to_device"] == ["pre"]
    assert [t.name for t in c.graph.inputs] == ["pre"]
    assert c.graph.nodes[0].op == "Conv"


def test_middle_op_is_still_an_error() -> None:
    with pytest.raises(InputError, match=r"det.onnx: 3 nodes of 3 op types tilec cannot plan: "
                                         r"Sin x1 \(first 'odd_op'\).*node 'odd_op' \(Sin\) sits "
                                         r"in the middle of the network \(3 of its 4 conv/matmul"):
        cap(detector(middle=True))


def test_host_ops_none_refuses() -> None:
    with pytest.raises(InputError, match=r"2 nodes of 2 op types tilec cannot plan: TopK x1 "
                                         r"\(first 'topk'\), NonMaxSuppression x1"):
        cap(detector(), host_ops="none")
    with pytest.raises(InputError, match=r"--host-ops: 'sometimes' is not one of auto, none"):
        cap(detector(), host_ops="sometimes")


@pytest.mark.parametrize("target", ["gc200", "northpole"])
def test_the_cut_is_priced_and_reported(target: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "det.onnx"
    onnx.save(detector(), path)
    out_json = tmp_path / "plan.json"
    page = tmp_path / "plan.html"
    code = main(["compile", str(path), "--target", target, "--no-what-if", "--json",
                 str(out_json), "--html", str(page)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "host     4 ops at the tail run on the host (NonMaxSuppression ×1, TopK ×1)" in out
    plan = json.loads(out_json.read_text())
    assert plan["model"]["host"]["to_host"] == ["scores"]
    assert plan["model"]["outputs"] == ["scores"]
    if target == "gc200":  # the cut tensor leaves over the host link: output time > 0
        assert plan["latency"]["output_seconds"] > 0
    assert "on the host" in page.read_text() and "NonMaxSuppression ×1" in page.read_text()
    errors = validation_errors(plan)
    assert errors in ([], None), errors
    assert main(["compile", str(path), "--target", target, "--host-ops", "none"]) == 2


def test_control_flow_in_the_tail_is_cut_not_called_invalid() -> None:
    """An If whose branches read outer-scope tensors is valid ONNX (the per-node schema check
    called it 'not topologically sorted'); at the tail it goes to the host."""
    c1, w1 = conv("c1", "images", "f", cin=3)
    then_g = helper.make_graph([helper.make_node("Identity", ["f"], ["t_out"], name="t_id")],
                               "then", [], [helper.make_tensor_value_info("t_out", F, None)])
    else_g = helper.make_graph([helper.make_node("Neg", ["f"], ["e_out"], name="e_neg")],
                               "else", [], [helper.make_tensor_value_info("e_out", F, None)])
    nodes = [c1, helper.make_node("ReduceSum", ["f"], ["s"], name="sum", keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g,
                              else_branch=else_g)]
    g = helper.make_graph(nodes, "cf", [helper.make_tensor_value_info("images", F,
                                                                      [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", F, None)],
                          [w1, numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    c = cap(m)
    assert c.meta["host"]["op_types"] == {"If": 1}
    assert sorted(t.name for t in c.graph.outputs) == ["cond", "f"]


def _dynamically_quantized() -> onnx.ModelProto:
    """Two convs as onnxruntime's dynamic quantization writes them: DynamicQuantizeLinear ->
    ConvInteger -> Cast -> Mul by the scales; no float Conv anywhere."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "images"
    for i in range(2):
        w = rng.integers(-127, 128, (8, 3 if i == 0 else 8, 3, 3)).astype(np.int8)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.array(0, np.int8), f"wzp{i}"),
                  numpy_helper.from_array(np.array(0.01, np.float32), f"ws{i}")]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [x], [f"q{i}", f"s{i}", f"z{i}"],
                             name=f"dql{i}"),
            helper.make_node("ConvInteger", [f"q{i}", f"w{i}", f"z{i}", f"wzp{i}"], [f"acc{i}"],
                             name=f"conv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Cast", [f"acc{i}"], [f"f{i}"], name=f"cast{i}", to=F),
            helper.make_node("Mul", [f"s{i}", f"ws{i}"], [f"sc{i}"], name=f"scale{i}"),
            helper.make_node("Mul", [f"f{i}", f"sc{i}"], [f"y{i}"], name=f"rescale{i}"),
        ]
        x = f"y{i}"
    g = helper.make_graph(nodes, "dynq", [helper.make_tensor_value_info("images", F,
                                                                        [1, 3, 16, 16])],
                          [helper.make_tensor_value_info(x, F, [1, 8, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_integer_convs_are_rewritten_not_cut_to_the_host() -> None:
    """ConvInteger is a conv: a dynamically quantized network is planned as its convs (rewritten
    to QDQ at capture, tilec.capture.qoperator), never cut to the host whole and "planned" as
    the few float ops left (it used to fit as 4 ops)."""
    c = capture_model_proto(_dynamically_quantized(), batch=None, image_size=None,
                            name="dynq", stride=None, source="dynq.onnx", host_ops="auto")
    assert "host" not in c.meta
    assert sum(n.op == "Conv" for n in c.graph.nodes) == 2
    assert not {n.op for n in c.graph.nodes} & {"ConvInteger", "DynamicQuantizeLinear"}


def _fused_convs() -> onnx.ModelProto:
    """Two of onnxruntime's com.microsoft FusedConv (a dense op capture does not rewrite)."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "images"
    for i in range(2):
        w = rng.standard_normal((8, 3 if i == 0 else 8, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("FusedConv", [x, f"w{i}"], [f"y{i}"], name=f"conv{i}",
                                      domain="com.microsoft", activation="Relu",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        x = f"y{i}"
    g = helper.make_graph(nodes, "fused", [helper.make_tensor_value_info("images", F,
                                                                         [1, 3, 16, 16])],
                          [helper.make_tensor_value_info(x, F, [1, 8, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_dense_ops_not_rewritten_are_the_network_not_a_head_for_the_host() -> None:
    """A dense op tilec cannot plan (here FusedConv) is refused naming it, not cut to the host
    with everything after it."""
    with pytest.raises(InputError, match=r"fused.onnx: .*FusedConv \(domain 'com.microsoft'\) "
                                         r"x2 .*node 'conv0' \(FusedConv\) sits in the "
                                         r"middle of the network"):
        capture_model_proto(_fused_convs(), batch=None, image_size=None,
                            name="fused", stride=None, source="fused.onnx", host_ops="auto")


def test_a_constant_node_the_tail_reads_stays_with_the_tail(tmp_path: Path) -> None:
    """PyTorch writes CumSum's axis (TopK's k) as a Constant *node*; it is read only by the op
    cut to the host, so it goes with it -- as a chip output no op would write it, and the
    verifier rejected the plan (exit 3)."""
    c1, w1 = conv("c1", "images", "f1", cin=3)
    nodes = [c1, helper.make_node("Constant", [], ["axis"], name="axis_const",
                                  value=numpy_helper.from_array(np.array(1, np.int64))),
             helper.make_node("CumSum", ["f1", "axis"], ["y"], name="cumsum")]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("images", F,
                                                                         [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", F, None)], [w1])
    path = tmp_path / "cumsum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "plan.json"
    assert main(["compile", str(path), "--target", "gc200", "--no-what-if", "--band", "off",
                 "--json", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert plan["status"] == "fits"
    assert "axis" not in json.dumps(plan.get("host", {}))
