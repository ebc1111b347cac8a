"""``Shape`` with ``start`` / ``end`` (opset 15+), as PyTorch's default (torch.export-based) ONNX
exporter writes for every symbolic size of a dynamic-shape export: onnx-graphsurgeon's shape
folding ignores the range, so tilec rewrites it as ``Shape`` + ``Slice`` before folding
(tilec.ir.split_shape_ranges). Without that, a BERT-style export with a dynamic batch and
sequence captured at a fixed size failed shape inference ("Gemm input 0 ... rank 4")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilec.cli import main
from tilec.compile import capture
from tilec.ir import split_shape_ranges


def _model() -> onnx.ModelProto:
    """x [b, t, 64] -> Reshape to [b, t, 4, 16] with the target built from Shape(x, 0, 1),
    Shape(x, 1, 2) and constants, as the dynamo exporter writes a ``view``; then back to
    [b, t, 64] via Shape(x, start=-1) for the last dim, and a MatMul."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    heads = numpy_helper.from_array(np.array([4, 16], dtype=np.int64), "heads")
    nodes = [
        helper.make_node("Shape", ["x"], ["b"], start=0, end=1),
        helper.make_node("Shape", ["x"], ["t"], start=1, end=2),
        helper.make_node("Shape", ["x"], ["d"], start=-1),
        helper.make_node("Concat", ["b", "t", "heads"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["split"]),
        helper.make_node("Relu", ["split"], ["act"]),
        helper.make_node("Concat", ["b", "t", "d"], ["back"], axis=0),
        helper.make_node("Reshape", ["act", "back"], ["merged"]),
        helper.make_node("MatMul", ["merged", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "ranges",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 32])],
        [w, heads])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_the_rewrite_computes_what_the_range_did() -> None:
    model = _model()
    graph = gs.import_onnx(model)
    assert split_shape_ranges(graph) == 3
    assert not any(n.op == "Shape" and ({"start", "end"} & set(n.attrs)) for n in graph.nodes)
    x = np.random.default_rng(1).standard_normal((3, 5, 64)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(gs.export_onnx(graph).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_a_dynamic_export_captured_at_a_fixed_size_keeps_its_ranks(tmp_path: Path) -> None:
    path = tmp_path / "ranges.onnx"
    onnx.save(_model(), path)
    cap = capture(str(path), input_shape={"x": (2, 128, 64)})
    shapes = {t.name: list(t.shape) for t in cap.graph.tensors().values()
              if t.shape is not None}
    assert shapes["split"] == [2, 128, 4, 16]
    assert shapes["y"] == [2, 128, 32]


@pytest.mark.parametrize("target", ["gc200", "northpole"])
def test_it_compiles(tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ranges.onnx"
    onnx.save(_model(), path)
    code = main(["compile", str(path), "--target", target, "--input-shape", "x=2,128,64",
                 "--no-what-if", "--band", "off"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "FITS" in out
