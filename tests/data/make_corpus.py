"""Regenerate the bad-input corpus in ``tests/data/bad/`` (``python tests/data/make_corpus.py``).

Every file is a small, deliberately broken (or deliberately awkward) model that a user could hand to
``tilec``; ``tests/test_bad_inputs.py`` runs the real CLI on each and expects one ``tilec: error:``
line naming the file, node or field, exit code 2 and no traceback. The files are built with
``onnx.helper`` from fixed values, so running this script again reproduces them byte for byte
(``test_corpus_is_reproducible`` checks that). Keep each one a few KB at most.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DATA = Path(__file__).resolve().parent
BAD = DATA / "bad"
GOOD = DATA / "good"

OPSET = 17
F = TensorProto.FLOAT
I64 = TensorProto.INT64


def _weights(name: str, shape: tuple[int, ...], seed: int = 0) -> onnx.TensorProto:
    """Small deterministic float weights (values do not matter to capture)."""
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto] | None = None,
           *, opset: int = OPSET, name: str = "bad", ir_version: int = 8,
           extra_opsets: list[onnx.OperatorSetIdProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    *(extra_opsets or [])],
                              producer_name="tilec-corpus")
    model.ir_version = ir_version
    return model


def _conv(name: str, x: str, w: str, y: str, stride: int = 1) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w], [y], name=name, kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], strides=[stride, stride])


# ------------------------------------------------------------------------------------- the cases
def not_onnx() -> bytes:
    """A text file with an .onnx name (what a wrong download or a Git LFS pointer looks like)."""
    return (b"version https://git-lfs.github.com/spec/v1\n"
            b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
            b"size 12345\n")


def empty() -> bytes:
    """Zero bytes: a download that never started."""
    return b""


def truncated() -> bytes:
    """A real model cut off part-way (an interrupted copy)."""
    data = tiny_cnn().SerializeToString()
    return data[: len(data) * 2 // 3]


def tiny_cnn() -> onnx.ModelProto:
    """A well-formed 1x3x32x32 CNN (stride 4): ``good/tiny_cnn.onnx``; bad cases build on it."""
    nodes = [
        _conv("conv1", "images", "w1", "c1", stride=2),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        _conv("conv2", "r1", "w2", "c2", stride=2),
        helper.make_node("Relu", ["c2"], ["out"], name="relu2"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("images", F, [1, 3, 32, 32])],
                  [helper.make_tensor_value_info("out", F, [1, 8, 8, 8])],
                  [_weights("w1", (8, 3, 3, 3)), _weights("w2", (8, 8, 3, 3), 1)],
                  name="tiny_cnn")


def cycle() -> onnx.ModelProto:
    """Two nodes that feed each other (no valid execution order)."""
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="add_a"),
        helper.make_node("Relu", ["a"], ["b"], name="relu_b"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                  [helper.make_tensor_value_info("a", F, [1, 4])])


def runtime_reshape() -> onnx.ModelProto:
    """A Reshape whose target shape is a runtime input: its output shape cannot be inferred."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["y"], name="reshape_dyn"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4, 8, 8]),
                          helper.make_tensor_value_info("shape", I64, [2])],
                  [helper.make_tensor_value_info("y", F, None)])


def dynamic_batch() -> onnx.ModelProto:
    """Input dimension 0 is the symbol 'N' (the usual exporter output); needs --batch."""
    model = tiny_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def dynamic_hw() -> onnx.ModelProto:
    """Height and width are unnamed unknown dimensions; needs --image-size."""
    model = tiny_cnn()
    for vi in (model.graph.input[0], model.graph.output[0]):
        for axis in (2, 3):
            vi.type.tensor_type.shape.dim[axis].Clear()
    return model


def dynamic_channels() -> onnx.ModelProto:
    """A dynamic dimension that neither --batch nor --image-size sets (needs --input-shape)."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, "seq", 16])],
                  [helper.make_tensor_value_info("y", F, [1, "seq", 16])])


def zero_dim() -> onnx.ModelProto:
    """An input declared with a zero-sized dimension."""
    model = tiny_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 0
    return model


def stride_mismatch() -> onnx.ModelProto:
    """A static 64x64 FPN-style network of stride 32: a 32-step map upsampled onto the 16-step map.

    Its declared shapes tell the stride (64 / 2); --image-size 100 makes the two maps 8x8 and 7x7,
    so the Concat that joins them fails and the error should say which sizes work (96, 128).
    """
    nodes, inits, prev = [], [], "images"
    for i in range(5):
        nodes.append(_conv(f"down{i}", prev, f"w{i}", f"d{i}", stride=2))
        inits.append(_weights(f"w{i}", (4, 3 if i == 0 else 4, 3, 3), i))
        prev = f"d{i}"
    nodes.append(helper.make_node("Resize", ["d4", "", "scales"], ["up"], name="up",
                                  mode="nearest"))
    nodes.append(helper.make_node("Concat", ["d3", "up"], ["fpn"], name="fpn_concat", axis=1))
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    return _model(nodes, [helper.make_tensor_value_info("images", F, [1, 3, 64, 64])],
                  [helper.make_tensor_value_info("d4", F, [1, 4, 2, 2]),
                   helper.make_tensor_value_info("fpn", F, [1, 8, 4, 4])], inits)


def concat_mismatch() -> onnx.ModelProto:
    """An FPN-style skip (down by 2, up by 2, Concat) with dynamic H and W.

    The stride cannot be read off the declared shapes, so an odd --image-size only shows up when
    shape inference reaches the Concat: the error must name that node.
    """
    nodes = [
        _conv("down", "images", "w0", "d", stride=2),
        helper.make_node("Resize", ["d", "", "scales"], ["u"], name="up", mode="nearest"),
        helper.make_node("Concat", ["images", "u"], ["cat"], name="skip_concat", axis=1),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    return _model(nodes, [helper.make_tensor_value_info("images", F, [1, 3, "H", "W"])],
                  [helper.make_tensor_value_info("cat", F, [1, 6, "H", "W"])],
                  [_weights("w0", (3, 3, 3, 3)), scales])


def unsupported_op() -> onnx.ModelProto:
    """A standard ONNX op that tilec does not plan (detection post-processing)."""
    nodes = [
        helper.make_node("Relu", ["boxes"], ["b"], name="relu"),
        helper.make_node("NonMaxSuppression", ["b", "scores"], ["sel"], name="nms"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("boxes", F, [1, 10, 4]),
                          helper.make_tensor_value_info("scores", F, [1, 1, 10])],
                  [helper.make_tensor_value_info("sel", I64, [None, 3])])


def custom_domain_op() -> onnx.ModelProto:
    """An op from a vendor domain (e.g. a TensorRT plugin left in an exported model)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("FancyPlugin", ["r"], ["y"], name="plugin0", domain="com.vendor")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
                  [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])],
                  extra_opsets=[helper.make_opsetid("com.vendor", 1)])


def undefined_tensor() -> onnx.ModelProto:
    """A node reads a tensor that nothing produces (a broken hand edit)."""
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add_ghost")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                  [helper.make_tensor_value_info("y", F, [1, 4])])


def duplicate_output() -> onnx.ModelProto:
    """Two nodes write the same tensor (not single static assignment)."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu_a"),
             helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid_b")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                  [helper.make_tensor_value_info("y", F, [1, 4])])


def opset_too_old() -> onnx.ModelProto:
    """Opset 9 predates what tilec reads (11), and onnx.version_converter cannot convert it (an
    op with no schema). An old file it *can* convert is converted: tests/test_capture_onnx.py."""
    nodes = [helper.make_node("NoSuchOnnxOp", ["x"], ["y"], name="relu")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                  [helper.make_tensor_value_info("y", F, [1, 4])], opset=9, ir_version=4)


def opset_old_convertible() -> onnx.ModelProto:
    """Opset 9, which onnx.version_converter converts (not in the bad corpus)."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                  [helper.make_tensor_value_info("y", F, [1, 4])], opset=9, ir_version=4)


def opset_too_new() -> onnx.ModelProto:
    """An opset no released onnx knows (a model from the future, or a corrupt header)."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                  [helper.make_tensor_value_info("y", F, [1, 4])], opset=99)


def no_inputs() -> onnx.ModelProto:
    """A graph made only of constants: nothing for --batch to apply to, nothing to plan."""
    value = numpy_helper.from_array(np.ones((1, 4), np.float32), "v")
    nodes = [helper.make_node("Constant", [], ["c"], name="const", value=value),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, [], [helper.make_tensor_value_info("y", F, [1, 4])])


def no_4d_input() -> onnx.ModelProto:
    """An MLP (rank-2 input): --image-size has nothing to resize."""
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["N", 16])],
                  [helper.make_tensor_value_info("y", F, ["N", 8])], [_weights("w", (8, 16))])


def missing_external_data() -> onnx.ModelProto:
    """Weights stored in an external file that was not copied along with the model."""
    model = tiny_cnn()
    for tensor in model.graph.initializer:
        onnx.external_data_helper.set_external_data(tensor, location="tiny_cnn.weights.bin")
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    return model


def bad_attribute() -> onnx.ModelProto:
    """A Conv whose kernel does not match its weight (what a bad graph edit leaves behind)."""
    model = tiny_cnn()
    for attr in model.graph.node[0].attribute:
        if attr.name == "kernel_shape":
            attr.ints[:] = [5, 5]
    return model


def torch_flatten() -> onnx.ModelProto:
    """A good model: ``x.view(x.size(0), -1)`` as the TorchScript exporter writes it at opset 13
    (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), which capture must fold to get shapes."""
    nodes = [
        _conv("conv", "images", "w", "c", stride=2),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"], name="view"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["logits"], name="fc", transB=1),
    ]
    inits = [_weights("w", (2, 3, 3, 3)), _weights("fc_w", (10, 2 * 4 * 4), 1),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    return _model(nodes, [helper.make_tensor_value_info("images", F, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("logits", F, ["N", 10])], inits, opset=13)


CASES: dict[str, Callable[[], onnx.ModelProto | bytes]] = {
    "not_onnx": not_onnx,
    "empty": empty,
    "truncated": truncated,
    "cycle": cycle,
    "runtime_reshape": runtime_reshape,
    "dynamic_batch": dynamic_batch,
    "dynamic_hw": dynamic_hw,
    "dynamic_channels": dynamic_channels,
    "zero_dim": zero_dim,
    "stride_mismatch": stride_mismatch,
    "concat_mismatch": concat_mismatch,
    "unsupported_op": unsupported_op,
    "custom_domain_op": custom_domain_op,
    "undefined_tensor": undefined_tensor,
    "duplicate_output": duplicate_output,
    "opset_too_old": opset_too_old,
    "opset_too_new": opset_too_new,
    "no_inputs": no_inputs,
    "no_4d_input": no_4d_input,
    "missing_external_data": missing_external_data,
    "bad_attribute": bad_attribute,
}
"""File stem -> builder. Each writes ``bad/<stem>.onnx``."""

GOOD_CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    "tiny_cnn": tiny_cnn, "torch_flatten": torch_flatten,
}
"""Well-formed models the CLI tests pair with bad flags (unknown target, bad image size, ...)."""


def build(name: str) -> bytes:
    """The bytes of corpus file ``name`` (a bad or a good case; deterministic)."""
    made = {**CASES, **GOOD_CASES}[name]()
    return made if isinstance(made, bytes) else made.SerializeToString(deterministic=True)


def write_all(data: Path = DATA) -> list[Path]:
    """Write every case into ``data/bad`` and ``data/good``; return the paths written."""
    paths = []
    for sub, cases in (("bad", CASES), ("good", GOOD_CASES)):
        (data / sub).mkdir(parents=True, exist_ok=True)
        for name in cases:
            path = data / sub / f"{name}.onnx"
            path.write_bytes(build(name))
            paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA):
        print(f"{written}  {written.stat().st_size} bytes")
