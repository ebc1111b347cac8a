"""The proof runs at a probe size whatever capture folded into constants (issue 13), and the
lowered model is written without extra copies of its weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tilec.passes import run_pipeline

from tilec.capture import capture
from tilec.compile import probe_source


def _dynamic_batch_file(tmp_path, target: str) -> str:
    """x[N,4,8,8] -> Conv -> BN -> Reshape to a shape computed from Shape(y), as TorchScript
    exports ``y.view(...)`` with a dynamic batch. ``target`` picks the view."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32), "w")]
    for name, lo, hi in (("g", 0.5, 1.5), ("b", -0.1, 0.1), ("m", -0.1, 0.1), ("v", 0.5, 1.5)):
        inits.append(numpy_helper.from_array(rng.uniform(lo, hi, 8).astype(np.float32), name))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn"),
        helper.make_node("Shape", ["y"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
    ]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    if target == "merge":  # [N, 8, 8, 8] -> [2N, 4, 8, 8]: the batch merged into channels
        inits += [numpy_helper.from_array(np.array([2], np.int64), "two"),
                  numpy_helper.from_array(np.array([4, 8, 8], np.int64), "rest")]
        nodes += [helper.make_node("Mul", ["n", "two"], ["n2"], name="mul"),
                  helper.make_node("Concat", ["n2", "rest"], ["shape_t"], name="cat", axis=0)]
    else:  # [N, 8, 8, 8] -> [N, 2, 4, 64]: a detection-head view
        inits.append(numpy_helper.from_array(np.array([2, 4, 64], np.int64), "rest"))
        nodes.append(helper.make_node("Concat", ["n", "rest"], ["shape_t"], name="cat", axis=0))
    nodes.append(helper.make_node("Reshape", ["y", "shape_t"], ["out"], name="view"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    path = tmp_path / f"{target}.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_a_view_folded_at_the_compiled_batch_is_proved_at_batch_1(tmp_path):
    path = _dynamic_batch_file(tmp_path, "head")
    cap = capture(path, batch=8)
    summary: dict = {}
    _, stats = run_pipeline(cap.graph, ["fold-bn"], precision="fp32", summary=summary,
                            probe=probe_source(path, cap))
    assert summary["probe"] == {"x": [1, 4, 8, 8]}
    assert stats[0].verify.ok and stats[0].verify.checked >= 1


def test_a_view_beyond_rederiving_is_captured_again_at_the_probe_size(tmp_path):
    path = _dynamic_batch_file(tmp_path, "merge")
    cap = capture(path, batch=8)
    summary: dict = {}
    _, stats = run_pipeline(cap.graph, ["fold-bn"], precision="fp32", summary=summary,
                            probe=probe_source(path, cap))
    assert summary["probe"] == {"x": [1, 4, 8, 8]}
    assert any("captured again" in n for n in summary["notes"])
    assert stats[0].verify.ok
    # without the source to capture again, the proof falls back to the compiled size
    summary = {}
    run_pipeline(capture(path, batch=8).graph, ["fold-bn"], precision="fp32", summary=summary)
    assert summary["probe"] == {"x": [8, 4, 8, 8]}


def test_the_probe_shares_the_models_weight_arrays(tmp_path):
    from tilec.passes._verify import Verifier

    path = _dynamic_batch_file(tmp_path, "merge")
    cap = capture(path, batch=8)
    v = Verifier(cap.graph, mode="pipeline", source=path, probe=probe_source(path, cap))
    assert v.probe is not cap.graph
    w_model = next(t for n, t in cap.graph.tensors().items() if n == "w")
    w_probe = next(t for n, t in v.probe.tensors().items() if n == "w")
    assert w_probe.values is w_model.values


def test_lower_writes_the_same_model_in_records(tmp_path):
    """write_model streams the large weights as separate records; onnx reads the same model."""
    from tilec.passes._testing import Builder
    from tilec.passes._testing import capture as capture_model

    from tilec.commands.lower_cmd import write_model
    from tilec.ir import to_onnx

    b = Builder()
    x = b.input("x", [1, 64, 8, 8])
    b.output(b.op("Relu", [b.bn(b.conv(x, 64, 128, 3), 128)]))  # 295 KB weight: streamed
    graph = capture_model(b.model())
    out = tmp_path / "m.onnx"
    write_model(graph, out)
    got, want = onnx.load(str(out)), to_onnx(graph)
    assert [n.SerializeToString() for n in got.graph.node] == \
        [n.SerializeToString() for n in want.graph.node]
    arrays = {i.name: numpy_helper.to_array(i) for i in got.graph.initializer}
    assert set(arrays) == {i.name for i in want.graph.initializer}
    for init in want.graph.initializer:
        assert np.array_equal(arrays[init.name], numpy_helper.to_array(init))


def test_the_stride_read_from_the_graph_keeps_the_coarsest_map_at_2x2():
    """A file declares no stride; the probe size must still leave every map at least 2x2 (at
    1x1 a 3x3 kernel's outer taps meet only padding), and a global pool is no stride."""
    from tilec.passes._testing import Builder
    from tilec.passes._testing import capture as capture_model

    b = Builder()
    x = b.input("x", [1, 3, 256, 256])
    y = b.conv(x, 3, 8, 3, stride=4)
    for _ in range(4):  # 64 -> 4 px: stride 64
        y = b.op("Relu", [b.bn(b.conv(y, 8, 8, 3, stride=2), 8)])
    b.output(b.op("GlobalAveragePool", [y]))
    summary: dict = {}
    run_pipeline(capture_model(b.model()), ["fold-bn"], precision="fp32", summary=summary)
    assert summary["probe"] == {"x": [1, 3, 128, 128]}  # 64 px would leave a 1x1 map


def test_what_if_reshapes_a_baked_view_to_the_new_batch(tmp_path):
    """compile.reshaped (the what-if rebuild) re-derives a view folded at the compiled batch;
    ONNX inference alone kept the compiled batch after it."""
    from tilec.targets import load_target

    from tilec.compile import CompileOptions, lower, reshaped

    path = _dynamic_batch_file(tmp_path, "head")
    cap = capture(path, batch=8)
    low = lower(cap, load_target("gc200"), CompileOptions(batch=8, verify="off"))
    again = reshaped(low, 2, None)
    assert again is not None
    assert [int(d) for d in again.graph.outputs[0].shape] == [2, 2, 4, 64]
    assert [int(d) for d in low.graph.outputs[0].shape] == [8, 2, 4, 64]  # the model's own kept
    merged = lower(capture(_dynamic_batch_file(tmp_path, "merge"), batch=8),
                   load_target("gc200"), CompileOptions(batch=8, verify="off"))
    assert reshaped(merged, 2, None) is None  # not re-derivable: the caller captures again
