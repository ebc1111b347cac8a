"""onnxruntime-quantized files (QOperator format, dynamic quantization's integer ops) are
rewritten to QDQ at capture: the rewritten graph computes what the file does (checked with
onnxruntime and an exact integer reference), holds no operator-quantized op, and plans with its
weights at their stored 8 bits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilec.capture.onnx_file import capture_model_proto
from tilec.capture.qoperator import REWRITES, rewrite_qoperator
from tilec.cli import main
from tilec.errors import InputError
from tilec.opinfo import build_graph_info

torch = pytest.importorskip("torch")
quantization = pytest.importorskip("onnxruntime.quantization")

SHAPE = (1, 3, 16, 16)
REWRITTEN = {op for _, op in REWRITES}


class _ResidualNet(torch.nn.Module):
    """Conv + Relu, a residual Add, GlobalAveragePool and a Linear (Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        y = a + torch.relu(self.c2(a))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


class _BranchNet(torch.nn.Module):
    """LeakyRelu, x * sigmoid(x), Concat, AveragePool and a MatMul by a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 1)
        self.w = torch.nn.Parameter(torch.randn(16, 6))

    def forward(self, x):
        a = torch.nn.functional.leaky_relu(self.c1(x), 0.1)
        b = self.c2(a)
        c = torch.nn.functional.avg_pool2d(torch.cat([a, b * torch.sigmoid(b)], 1), 2)
        return torch.matmul(c.reshape(1, 16, 64).transpose(1, 2), self.w)


def _batches(n: int) -> list[np.ndarray]:
    return [np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
            for seed in range(n)]


class _Reader(quantization.CalibrationDataReader):
    def __init__(self) -> None:
        self.it = iter([{"x": b} for b in _batches(4)])

    def get_next(self):
        return next(self.it, None)


def _export(make: type[torch.nn.Module], path: Path, opset: int) -> None:
    torch.manual_seed(0)  # deterministic weights
    torch.onnx.export(make().eval(), torch.zeros(SHAPE), str(path), input_names=["x"],
                      output_names=["y"], opset_version=opset, dynamo=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Quantized with onnxruntime's own tools: static QOperator (per channel and per tensor, a
    second net at opset 12) and dynamic (ConvInteger / MatMulInteger)."""
    root = tmp_path_factory.mktemp("qop")
    residual, branch = root / "residual.onnx", root / "branch12.onnx"
    _export(_ResidualNet, residual, 17)
    _export(_BranchNet, branch, 12)
    out = {}
    fmt = quantization.QuantFormat.QOperator
    for name, src, per_channel in (("static", residual, True), ("static_tensor", residual, False),
                                   ("branch12", branch, True)):
        out[name] = root / f"{name}.onnx"
        quantization.quantize_static(str(src), str(out[name]), _Reader(), quant_format=fmt,
                                     per_channel=per_channel)
    out["dynamic"] = root / "dynamic.onnx"
    quantization.quantize_dynamic(str(residual), str(out["dynamic"]))
    return out


def _rewritten(path: Path) -> tuple[onnx.ModelProto, onnx.ModelProto, str | None]:
    model = onnx.load(str(path))
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    note = rewrite_qoperator(copy, path.name)
    return model, copy, note


def _run(model: onnx.ModelProto, x: np.ndarray, extra: list[str] = ()) -> dict[str, np.ndarray]:
    """onnxruntime without graph optimizations (which would fuse QDQ back into QLinear ops)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra:
        m.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": x}), strict=True))


@pytest.mark.parametrize("name", ["static", "static_tensor", "branch12"])
def test_static_qoperator_rewrite_computes_the_same(files: dict[str, Path], name: str) -> None:
    """Within one output LSB: onnxruntime's QLinear kernels requantize the int32 accumulator
    with their own rounding, the QDQ form in float, so an 8-bit value may land one step apart
    (and a step upstream can move the output by about one step)."""
    model, rewritten, note = _rewritten(files[name])
    onnx.checker.check_model(rewritten)
    before = Counter(n.op_type for n in model.graph.node if n.op_type in REWRITTEN)
    assert before and note is not None and f"{sum(before.values())} QOperator" in note
    assert all(n.domain in ("", "ai.onnx") and n.op_type not in REWRITTEN
               for n in rewritten.graph.node)
    if name == "branch12":
        assert {"QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QLinearAveragePool",
                "QLinearMul", "QLinearMatMul"} <= set(before)
        assert "opset 12 converted to 13" in note
    out_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    lsb = float(init[out_dq.input[1]])
    for x in _batches(3):
        a, b = _run(model, x)["y"], _run(rewritten, x)["y"]
        assert np.abs(a - b).max() <= 1.01 * lsb


def test_float_ops_keep_the_quantized_nodes_names(files: dict[str, Path]) -> None:
    model, rewritten, _ = _rewritten(files["static"])
    convs = [n.name for n in model.graph.node if n.op_type == "QLinearConv"]
    by_name = {n.name: n.op_type for n in rewritten.graph.node}
    assert convs and all(by_name[c] == "Conv" for c in convs)
    assert len(by_name) == len(rewritten.graph.node)  # names stay unique


def test_dynamic_quantization_is_exact(files: dict[str, Path]) -> None:
    """DynamicQuantizeLinear's outputs are onnxruntime's bit for bit; each ConvInteger /
    MatMulInteger result equals the exact integer one (computed in int64 / float64 here, not by
    onnxruntime, whose AVX2 u8 x s8 MatMulInteger saturates pairwise int16 sums)."""
    model, rewritten, note = _rewritten(files["dynamic"])
    onnx.checker.check_model(rewritten)
    assert note is not None and "ConvInteger x2" in note and "MatMulInteger x1" in note
    assert "DynamicQuantizeLinear x3" in note
    assert not {n.op_type for n in rewritten.graph.node} & REWRITTEN
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    integer = [n for n in model.graph.node if n.op_type in ("ConvInteger", "MatMulInteger")]
    quantized = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    probes = [t for n in integer for t in n.input if t and t not in init]
    probes += [t for n in quantized for t in n.output] + [n.output[0] for n in integer]
    x = _batches(1)[0]
    ref, got = _run(model, x, probes), _run(rewritten, x, probes)
    for node in quantized:
        for t in node.output:
            assert ref[t].dtype == got[t].dtype and np.array_equal(ref[t], got[t]), t
    for node in integer:
        act = ref[node.input[0]].astype(np.int64) - ref[node.input[2]].astype(np.int64)
        w = init[node.input[1]].astype(np.int64) - init[node.input[3]].astype(np.int64)
        if node.op_type == "MatMulInteger":
            exact = act @ w
        else:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            exact = torch.nn.functional.conv2d(
                torch.from_numpy(act.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                padding=tuple(attrs["pads"][:2])).numpy()
        assert np.array_equal(got[node.output[0]], exact), node.name


def test_capture_notes_the_rewrite_and_charges_weights_at_8_bits(files: dict[str, Path]
                                                                  ) -> None:
    model = onnx.load(str(files["static"]))
    captured = capture_model_proto(model, batch=None, image_size=None, name="q", stride=None,
                                   source="static.onnx")
    assert any(n.startswith("capture: 5 QOperator") for n in captured.meta["notes"])
    info = build_graph_info(captured.graph, weight_bits=16, act_bits=16)
    dense = [op for op in info.ops if op.op_type in ("Conv", "Gemm")]
    assert len(dense) == 3
    for op in dense:  # the weight at 8 bits, the int32 bias at 32 (fp16 is the default here)
        assert [w.bits for w in op.weights] == [8, 32]


@pytest.mark.parametrize("target", ["gc200", "northpole"])
def test_compiles_with_weights_at_one_byte(files: dict[str, Path], target: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    code = main(["compile", str(files["static"]), "--target", target, "--no-what-if", "--json",
                 str(out)])
    _, err = capsys.readouterr()
    assert code in (0, 1), err
    plan = json.loads(out.read_text())
    assert any("QOperator/integer ops rewritten to QDQ" in n for n in plan["notes"])
    params, weight_bytes = plan["model"]["params"], plan["model"]["weight_bytes"]
    # 8-bit weights plus int32 biases (8 + 8 + 10 of them): bytes = params + 3 x bias elements
    assert weight_bytes <= params + 3 * 26 + 64 < 2 * params


def _with_node(node: onnx.NodeProto, inits: list[onnx.TensorProto], out_shape: list[int],
               domain_ms: bool = True) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 8, 8])
    y = helper.make_tensor_value_info(node.output[0], TensorProto.UINT8, out_shape)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)]
                                               if domain_ms else [])
    g = helper.make_graph([node], "g", [x], [y], inits)
    m = helper.make_model(g, opset_imports=opsets)
    m.ir_version = 8
    return m


def _scalars() -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(128, np.uint8), "z")]


def test_a_channels_last_pool_is_left_and_refused_naming_it() -> None:
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "s", "z", "s", "z"], ["y"],
                            name="gap", domain="com.microsoft", channels_last=1)
    model = _with_node(node, _scalars(), [1, 1, 1, 8])
    assert rewrite_qoperator(model, "m.onnx") is None
    with pytest.raises(InputError, match=r"m.onnx: .*QLinearGlobalAveragePool"):
        capture_model_proto(model, batch=None, image_size=None, name="m", stride=None,
                            source="m.onnx", host_ops="none")


def test_a_malformed_qoperator_node_is_one_clear_error() -> None:
    node = helper.make_node("QLinearAdd", ["x", "s", "z", "x", "s"], ["y"], name="add",
                            domain="com.microsoft")
    model = _with_node(node, _scalars(), [1, 4, 8, 8])
    with pytest.raises(InputError, match=r"m.onnx: node 'add' \(QLinearAdd\) has 5 inputs, its "
                                         r"definition takes 7 to 8"):
        capture_model_proto(model, batch=None, image_size=None, name="m", stride=None,
                            source="m.onnx")


@pytest.mark.parametrize("op", ["MatMulIntegerToFloat", "DynamicQuantizeMatMul"])
def test_fused_integer_matmuls_compute_the_same(op: str) -> None:
    """onnxruntime's fused forms of dynamic quantization's MatMul: small weights (|w| <= 8), so
    its u8 x s8 kernel does not saturate and agrees with the exact product; per-column B."""
    rng = np.random.default_rng(3)
    b = rng.integers(-8, 9, (16, 6)).astype(np.int8)
    inits = [numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(rng.uniform(0.01, 0.02, 6).astype(np.float32), "bs"),
             numpy_helper.from_array(rng.integers(-3, 4, 6).astype(np.int8), "bz"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "bias")]
    if op == "MatMulIntegerToFloat":
        x_type, inputs = TensorProto.UINT8, ["x", "b", "as", "bs", "az", "bz", "bias"]
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "as"),
                  numpy_helper.from_array(np.array(120, np.uint8), "az")]
        x = rng.integers(0, 256, (1, 4, 16)).astype(np.uint8)
    else:
        x_type, inputs = TensorProto.FLOAT, ["x", "b", "bs", "bz", "bias"]
        x = rng.standard_normal((1, 4, 16)).astype(np.float32)
    node = helper.make_node(op, inputs, ["y"], name="mm", domain="com.microsoft")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x_type, [1, 4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6])],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert f"{op} x1" in (rewrite_qoperator(rewritten, "m.onnx") or "")
    assert {n.op_type for n in rewritten.graph.node} >= {"MatMul", "DequantizeLinear", "Add"}
    assert all(n.domain == "" for n in rewritten.graph.node)
    a, b_ = _run(model, x)["y"], _run(rewritten, x)["y"]
    assert np.allclose(a, b_, rtol=1e-5, atol=1e-5), np.abs(a - b_).max()
