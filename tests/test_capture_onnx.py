"""The ONNX front door: overrides, opsets, external data, folding, and the errors it must name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilec.capture import capture, parse_image_size, parse_input_shapes
from tilec.capture.onnx_file import (
    MAX_OPSET,
    capture_model_proto,
    capture_onnx,
    name_nodes,
    supported_ops_summary,
)
from tilec.errors import InputError
from tilec.ir import is_concrete, to_onnx
from tilec.opinfo import OP_KINDS

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("make_corpus", DATA / "make_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def vi(name: str, dims, dtype: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, dims)


def model_of(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "t", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def cap(model: onnx.ModelProto, **kw):
    kw.setdefault("batch", None)
    kw.setdefault("image_size", None)
    return capture_model_proto(model, name="t", stride=kw.pop("stride", None), source="m.onnx",
                               **kw)


def shapes(captured) -> dict[str, list[int]]:
    return {t.name: list(t.shape) for t in captured.graph.tensors().values()}


def all_concrete(captured) -> bool:
    return all(is_concrete(t.shape) for n in captured.graph.nodes for t in n.outputs)


# ------------------------------------------------------------------------------- overrides
def test_tiny_cnn_as_declared_and_overridden(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(corpus.tiny_cnn(), path)
    c = capture_onnx(path)
    assert c.input_shapes == {"images": (1, 3, 32, 32)}
    assert shapes(c)["out"] == [1, 8, 8, 8]
    assert (c.batch, c.image_size, c.stride, c.opset) == (1, (32, 32), 4, 17)
    c2 = capture_onnx(path, batch=2, image_size="64x48")
    assert c2.input_shapes == {"images": (2, 3, 64, 48)}
    assert shapes(c2)["out"] == [2, 8, 16, 12]
    assert (c2.batch, c2.image_size) == (2, (64, 48))
    assert all_concrete(c2)
    assert set(c2.seconds) >= {"load", "check", "import", "infer"}


def test_dynamic_batch_defaults_to_1_with_a_notice_and_takes_an_override() -> None:
    c = cap(corpus.dynamic_batch())
    assert shapes(c)["out"] == [1, 8, 8, 8] and c.batch == 1
    assert c.meta["notes"] == ["batch 1 assumed: the batch dimension of input 'images' ('N') is "
                               "dynamic (set it with --batch)"]
    c = cap(corpus.dynamic_batch(), batch=3)
    assert shapes(c)["out"] == [3, 8, 8, 8]
    assert "notes" not in c.meta


def test_default_batch_only_touches_the_batch_rule_dimension() -> None:
    # [N, seq] and a rank-1 [N]: dim 0 of the rank-2 input defaults (and the shared symbol with
    # it), the dynamic sequence length still has to be given.
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], name="mean", axes=[1], keepdims=0),
             helper.make_node("Mul", ["m", "w"], ["y"], name="scale")]
    m = model_of(nodes, [vi("x", ["N", "seq"]), vi("w", ["N"])], [vi("y", None)])
    with pytest.raises(InputError, match=r"input 'x' dimension 1 \('seq'\) is dynamic; set it "
                                         r"with --input-shape"):
        cap(m)
    c = cap(m, input_shape="x=2,16")  # dim 0 given: the symbol N is 2 everywhere, no default
    assert c.input_shapes == {"x": (2, 16), "w": (2,)} and "notes" not in c.meta
    m2 = model_of(nodes, [vi("x", ["N", 16]), vi("w", ["N"])], [vi("y", None)])
    c = cap(m2)
    assert c.input_shapes == {"x": (1, 16), "w": (1,)}
    assert len(c.meta["notes"]) == 1


def test_a_sequence_first_input_takes_the_batch_in_its_named_dimension() -> None:
    """``nn.LSTM`` / ``nn.Transformer`` default to [T, B, F]; the export names the axes. --batch
    goes to the dimension named batch (it used to set the time steps and ask for the batch),
    the default batch too, the report's batch is that dimension, and the what-if re-shapes it."""
    w = numpy_helper.from_array(np.ones((40, 16), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]

    def seq_first(dims=("time", "batch", 40)):  # capture fixes a model's inputs in place
        return model_of(nodes, [vi("x", list(dims))], [vi("y", None)], [w])

    with pytest.raises(InputError, match=r"dimension 0 \('time'\) is dynamic; set it with "
                                         r"--input-shape x=\?,8,40"):
        cap(seq_first(), batch=8)
    c = cap(seq_first(), batch=8, input_shape="x=50,1,40")
    assert c.input_shapes == {"x": (50, 8, 40)} and c.batch == 8
    assert c.meta["batch_axes"] == {"x": 1}
    c = cap(seq_first((50, "batch_size", 40)))
    assert c.input_shapes == {"x": (50, 1, 40)} and "batch 1 assumed" in c.meta["notes"][0]

    from tilec.targets import load_target

    from tilec.compile import CompileOptions, lower, reshaped

    c = cap(seq_first(), batch=2, input_shape="x=50,1,40")
    low = lower(c, load_target("gc200"), CompileOptions(batch=2, verify="off"))
    again = reshaped(low, 6, None)
    assert again is not None and again.captured.input_shapes == {"x": (50, 6, 40)}


def test_unnamed_dynamic_hw_needs_image_size() -> None:
    with pytest.raises(InputError, match=r"dimension 2 \(unknown\) is dynamic; .*--image-size"):
        cap(corpus.dynamic_hw())
    c = cap(corpus.dynamic_hw(), image_size=(40, 24))
    assert shapes(c)["out"] == [1, 8, 10, 6]


def test_symbols_shared_between_inputs_follow_the_override() -> None:
    # An image [N,3,H,W], a mask [N,H,W] and a per-sample scale [N]: the mask is rank 3 and the
    # scale rank 1, but they share the symbols, so --batch / --image-size reach them too.
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], name="mean_c", axes=[1], keepdims=0),
        helper.make_node("Mul", ["m", "mask"], ["y"], name="apply_mask"),
        helper.make_node("Unsqueeze", ["scale", "ax"], ["s1"], name="unsq"),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "ax")]
    m = model_of(nodes, [vi("images", ["N", 3, "H", "W"]), vi("mask", ["N", "H", "W"]),
                         vi("scale", ["N"])],
                 [vi("y", None), vi("s1", None)], inits)
    c = cap(m, batch=2, image_size=(16, 8))
    assert c.input_shapes == {"images": (2, 3, 16, 8), "mask": (2, 16, 8), "scale": (2,)}
    assert shapes(c)["y"] == [2, 16, 8]


def test_batch_overrides_input_shape_and_reaches_the_shared_symbol() -> None:
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], name="mean_c", axes=[1, 2, 3],
                              keepdims=0),
             helper.make_node("Mul", ["m", "weight"], ["y"], name="scale")]
    m = model_of(nodes, [vi("images", ["N", 3, 8, 8]), vi("weight", ["N"])], [vi("y", None)])
    c = cap(m, input_shape="images=1,3,8,8", batch=4)
    assert c.input_shapes == {"images": (4, 3, 8, 8), "weight": (4,)}


def test_batch_leaves_rank1_inputs_alone() -> None:
    nodes = [helper.make_node("Gather", ["x", "idx"], ["y"], name="pick", axis=1)]
    m = model_of(nodes, [vi("x", ["N", 8]), vi("idx", [3], I64)], [vi("y", None)])
    c = cap(m, batch=4)
    assert c.input_shapes == {"x": (4, 8), "idx": (3,)}
    assert shapes(c)["y"] == [4, 3]


def test_batch_needs_a_batched_input() -> None:
    m = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [5])],
                 [vi("y", [5])])
    with pytest.raises(InputError, match=r"--batch: no input has a batch dimension"):
        cap(m, batch=2)


def test_image_size_on_a_model_without_image_input() -> None:
    with pytest.raises(InputError, match=r"--image-size: the model has no rank-4 \(NCHW\) image "
                                         r"input \(inputs: x Nx16\)"):
        cap(corpus.no_4d_input(), batch=1, image_size=64)


def test_image_size_refuses_an_nhwc_input() -> None:
    m = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [1, 224, 224, 3])],
                 [vi("y", None)])
    with pytest.raises(InputError, match=r"input 'x' \(1x224x224x3\) looks NHWC"):
        cap(m, image_size=320)
    m = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", ["N", "H", "W", 3])],
                 [vi("y", None)])
    with pytest.raises(InputError, match=r"input 'x' \(NxHxWx3\) looks NHWC"):
        cap(m, batch=1, image_size=320)
    m = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", ["N", 3, "H", 3])],
                 [vi("y", None)])
    assert cap(m, batch=1, image_size=(5, 6)).input_shapes == {"x": (1, 3, 5, 6)}  # NCHW, C=3


def test_input_shape_sets_what_no_other_flag_can() -> None:
    with pytest.raises(InputError, match=r"--input-shape x=1,\?,16 \(fill in the \?\)"):
        cap(corpus.dynamic_channels())
    assert shapes(cap(corpus.dynamic_channels(), input_shape="1,32,16"))["y"] == [1, 32, 16]
    assert shapes(cap(corpus.dynamic_channels(), input_shape="x=1x7x16"))["y"] == [1, 7, 16]
    with pytest.raises(InputError, match=r"input 'x' has rank 3 \(1xseqx16\), got 4"):
        cap(corpus.dynamic_channels(), input_shape="1,2,3,4")
    with pytest.raises(InputError, match=r"the model has no input 'z' \(inputs: x 1xseqx16\)"):
        cap(corpus.dynamic_channels(), input_shape="z=1,2,16")


def test_input_shape_with_several_inputs_must_name_them() -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    m = model_of(nodes, [vi("a", ["N", 4]), vi("b", ["N", 4])], [vi("y", None)])
    with pytest.raises(InputError, match=r"the model has 2 inputs .*name each one"):
        cap(m, input_shape="2,4")
    c = cap(m, input_shape="a=2,4;b=2,4")
    assert shapes(c)["y"] == [2, 4]


def test_zero_sized_input_dimension() -> None:
    with pytest.raises(InputError, match=r"input 'images' dimension 1 is 0"):
        cap(corpus.zero_dim())


def test_batch_baked_into_a_reshape_is_explained() -> None:
    # Exported at batch 1 with the batch baked into the Reshape target: --batch 2 breaks the Gemm.
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
             numpy_helper.from_array(np.zeros((10, 128), np.float32), "w")]
    m = model_of(nodes, [vi("x", [1, 8, 4, 4])], [vi("y", [1, 10])], inits)
    assert shapes(cap(m))["y"] == [1, 10]
    with pytest.raises(InputError, match=r"node 'fc' \(Gemm\): .*with --batch 2; the model was "
                                         r"exported for batch 1"):
        cap(model_of(nodes, [vi("x", [1, 8, 4, 4])], [vi("y", [1, 10])], inits), batch=2)


# ------------------------------------------------------------------------------- image sizes
def test_image_size_that_breaks_a_concat_names_it_and_suggests_sizes() -> None:
    with pytest.raises(InputError) as err:
        cap(corpus.stride_mismatch(), image_size=100)
    msg = str(err.value)
    assert "image size 100x100 does not suit the network" in msg
    assert "node 'fpn_concat' (Concat): its inputs disagree in dimension 2 (8 vs 7)" in msg
    assert "sizes that work: 96x96 or 128x128 (multiples of 32)" in msg
    for ok in (96, 128, 160):  # ... and they do work
        assert shapes(cap(corpus.stride_mismatch(), image_size=ok))["fpn"][2] == ok // 16


def test_dynamic_size_concat_failure_names_the_node() -> None:
    with pytest.raises(InputError, match=r"image size 65x64 does not suit the network: node "
                                         r"'skip_concat' \(Concat\).*sizes that work: 64x64 or "
                                         r"66x64 \(multiples of 2\)"):
        cap(corpus.concat_mismatch(), image_size="65x64")


def test_declared_stride_is_reported_and_a_known_stride_is_enforced() -> None:
    assert cap(corpus.stride_mismatch()).stride == 32
    with pytest.raises(InputError, match=r"image size 100x100 is not a multiple of the network's "
                                         r"stride 32; try 96 or 128"):
        cap(corpus.stride_mismatch(), image_size=100, stride=32)


# ------------------------------------------------------------------------------- opsets
def _opset_model(opset: int) -> onnx.ModelProto:
    """Conv -> Split -> Relu x2 -> Concat -> Resize -> ReduceMean -> Squeeze, in ``opset``'s form.

    Split/Squeeze take their sizes/axes as attributes before opset 13 and as inputs from 13;
    ReduceMean takes axes as an input from 18; Resize has roi/scales inputs since 11, and its roi
    is optional only from 13 (the schema check rejects an empty roi name at 11).
    """
    inits = [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    roi = "roi" if opset < 13 else ""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1])]
    if opset < 13:
        nodes.append(helper.make_node("Split", ["c"], ["s0", "s1"], name="split", axis=1,
                                      split=[4, 4]))
    else:
        inits.append(numpy_helper.from_array(np.array([4, 4], np.int64), "split_sizes"))
        nodes.append(helper.make_node("Split", ["c", "split_sizes"], ["s0", "s1"], name="split",
                                      axis=1))
    nodes += [helper.make_node("Relu", ["s0"], ["r0"], name="relu0"),
              helper.make_node("Relu", ["s1"], ["r1"], name="relu1"),
              helper.make_node("Concat", ["r0", "r1"], ["cat"], name="cat", axis=1),
              helper.make_node("Resize", ["cat", roi, "scales"], ["up"], name="up",
                               mode="nearest")]
    if opset < 18:
        nodes.append(helper.make_node("ReduceMean", ["up"], ["gap"], name="gap", axes=[2, 3]))
    else:
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "gap_axes"))
        nodes.append(helper.make_node("ReduceMean", ["up", "gap_axes"], ["gap"], name="gap"))
    if opset < 13:
        nodes.append(helper.make_node("Squeeze", ["gap"], ["y"], name="squeeze", axes=[2, 3]))
    else:
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "sq_axes"))
        nodes.append(helper.make_node("Squeeze", ["gap", "sq_axes"], ["y"], name="squeeze"))
    return model_of(nodes, [vi("x", ["N", 3, "H", "W"])], [vi("y", None)], inits, opset=opset)


@pytest.mark.parametrize("opset", sorted({11, 13, 17, 18, 21, MAX_OPSET}))
def test_opsets_from_11_to_the_newest(opset: int) -> None:
    c = cap(_opset_model(opset), batch=2, image_size=(10, 12))
    s = shapes(c)
    assert s["up"] == [2, 8, 20, 24]
    assert s["y"] == [2, 8]
    assert c.opset == opset
    onnx.checker.check_model(to_onnx(c.graph), full_check=True)


def test_opset_bounds() -> None:
    # an older file is converted (the classic ONNX Model Zoo files are opset 3-10), and says so
    c = cap(corpus.opset_old_convertible())
    assert c.opset == 13
    assert any("opset 9 converted to 13 with onnx.version_converter" in n
               for n in c.meta["notes"])
    # one the converter cannot convert is refused, naming the opset
    with pytest.raises(InputError, match=r"opset 9 is older than the oldest tilec reads \(11\) "
                                         r"and onnx.version_converter could not convert it"):
        cap(corpus.opset_too_old())
    with pytest.raises(InputError, match=rf"opset 99 is newer than the installed onnx .* "
                                         rf"\({MAX_OPSET}\)"):
        cap(corpus.opset_too_new())


def test_ir_version_newer_than_onnx() -> None:
    m = corpus.tiny_cnn()
    m.ir_version = onnx.IR_VERSION + 1
    with pytest.raises(InputError, match=r"IR version .* is newer than the installed onnx"):
        cap(m)


# ------------------------------------------------------------------------------- shape folding
def _torch_style_flatten(opset: int) -> onnx.ModelProto:
    """x.view(x.size(0), -1) as the TorchScript exporter writes it.

    With onnx 1.23, data propagation resolves this chain from opset 15 on (Shape-15 propagates its
    value) but not at opsets 11 and 13, where the Reshape's output stays unknown; capture folds the
    chain to constants at every opset, so the result does not depend on which one the file uses.
    """
    inits = [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.zeros((10, 8 * 8 * 8), np.float32), "fc_w"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    if opset < 13:
        unsq = helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0])
    else:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "ax0"))
        unsq = helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather", axis=0),
        unsq,
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"], name="view"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1),
    ]
    return model_of(nodes, [vi("x", ["N", 3, 16, 16])], [vi("y", ["N", 10])], inits, opset=opset)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_exporter_shape_arithmetic_is_folded(opset: int) -> None:
    c = cap(_torch_style_flatten(opset), batch=3)
    s = shapes(c)
    assert s["flat"] == [3, 512]
    assert s["y"] == [3, 10]
    ops = [n.op for n in c.graph.nodes]
    assert "Shape" not in ops and "Gather" not in ops
    assert ops == ["Conv", "Relu", "Reshape", "Gemm"]
    assert c.meta["folded_nodes"] >= 4
    assert all_concrete(c)


def test_folding_leaves_weights_and_dequantize_alone() -> None:
    m = _torch_style_flatten(17)
    # Replace the Gemm weight by an int8 weight behind DequantizeLinear (a QDQ model).
    q = np.arange(10 * 512, dtype=np.int64).reshape(10, 512) % 127
    m.graph.initializer.extend([
        numpy_helper.from_array(q.astype(np.int8), "fc_q"),
        numpy_helper.from_array(np.array(0.01, np.float32), "fc_scale"),
    ])
    m.graph.node.insert(0, helper.make_node("DequantizeLinear", ["fc_q", "fc_scale"], ["fc_dq"],
                                            name="dq"))
    m.graph.node[-1].input[1] = "fc_dq"
    c = cap(m, batch=1)
    ops = [n.op for n in c.graph.nodes]
    assert "DequantizeLinear" in ops and "Shape" not in ops
    weight = c.graph.tensors()["fc_q"]
    assert weight.values.dtype == np.int8
    np.testing.assert_array_equal(weight.values, q.astype(np.int8))


def test_runtime_reshape_is_named() -> None:
    with pytest.raises(InputError, match=r"tensor 'y' \(output of node 'reshape_dyn', Reshape\) "
                                         r"has no concrete shape after inference \(got \?x\?\); it "
                                         r"depends on the run-time value of 'shape'"):
        cap(corpus.runtime_reshape())


# ------------------------------------------------------------------------------- external data
def _save_external(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "ext.onnx"
    onnx.save_model(corpus.tiny_cnn(), path, save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.weights", size_threshold=0)
    return path, tmp_path / "ext.weights"


def test_external_data_loads(tmp_path: Path) -> None:
    path, weights = _save_external(tmp_path)
    assert weights.exists() and path.stat().st_size < weights.stat().st_size
    c = capture_onnx(path, batch=2)
    expected = numpy_helper.to_array(corpus.tiny_cnn().graph.initializer[1])
    np.testing.assert_array_equal(c.graph.tensors()["w2"].values, expected)
    assert shapes(c)["out"] == [2, 8, 8, 8]


def test_external_data_missing_or_short(tmp_path: Path) -> None:
    path, weights = _save_external(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"tensor 'w2': external data file 'ext.weights' is too "
                                         r"short .*truncated copy\?"):
        capture_onnx(path)
    weights.unlink()
    with pytest.raises(InputError, match=rf"{path}: tensor 'w1': external data file "
                                         r"'ext.weights' not found next to the model"):
        capture_onnx(path)


def test_external_data_through_a_symbolic_link(tmp_path: Path) -> None:
    path, weights = _save_external(tmp_path)
    (tmp_path / "sub").mkdir()
    moved = tmp_path / "sub" / "real.weights"
    weights.rename(moved)
    weights.symlink_to(moved)
    with pytest.raises(InputError, match=r"external data file 'ext.weights' is a symbolic link"):
        capture_onnx(path)


def test_external_data_outside_the_model_folder(tmp_path: Path) -> None:
    m = corpus.missing_external_data()
    for t in m.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.bin"
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "m.onnx"
    onnx.save(m, path)
    (tmp_path / "elsewhere.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(InputError, match=r"external data location '../elsewhere.bin' is not a "
                                         r"file next to the model"):
        capture_onnx(path)


# ------------------------------------------------------------------------------- structure
def test_duplicate_and_missing_node_names_become_unique_and_stable() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="act"),
             helper.make_node("Relu", ["a"], ["b"], name="act"),
             helper.make_node("Relu", ["b"], ["c"]),
             helper.make_node("Relu", ["c"], ["d"], name="Relu_2")]
    m = model_of(nodes, [vi("x", [1, 4])], [vi("d", [1, 4])])
    name_nodes(m)
    names = [n.name for n in m.graph.node]
    assert names == ["act", "act__1", "Relu_2__1", "Relu_2"]
    c = cap(model_of(nodes, [vi("x", [1, 4])], [vi("d", [1, 4])]))
    assert [n.name for n in c.graph.nodes] == names


def test_nodes_out_of_order_are_sorted() -> None:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}")
             for i in range(3000)]
    m = model_of(list(reversed(nodes)), [vi("t0", [1, 4])], [vi("t3000", [1, 4])])
    c = cap(m)
    assert [n.name for n in c.graph.nodes][:3] == ["r0", "r1", "r2"]
    assert shapes(c)["t3000"] == [1, 4]


def test_cycle_names_its_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"the graph has a cycle: 'add_a' -> 'relu_b' -> "
                                         r"'add_a'"):
        cap(corpus.cycle())
    assert capsys.readouterr().out == ""  # onnx-graphsurgeon's logger prints to stdout


@pytest.mark.parametrize(("case", "pattern"), [
    ("undefined_tensor", r"node 'add_ghost' \(Add\) reads tensor 'ghost', which no node"),
    ("duplicate_output", r"tensor 'y' is written by two nodes, 'relu_a' and 'sigmoid_b'"),
    ("no_inputs", r"the graph has no inputs"),
    ("bad_attribute", r"node 'conv1' \(Conv\): kernel_shape 5x5 does not match weight 'w1' "
                      r"\(8x3x3x3\)"),
])
def test_structural_errors(case: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        cap(getattr(corpus, case)())


def test_conv_channel_and_bias_mismatch() -> None:
    m = corpus.tiny_cnn()
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.ones((8, 5, 3, 3), np.float32),
                                                            "w2"))
    with pytest.raises(InputError, match=r"node 'conv2' \(Conv\): input 'r1' has 8 channels but "
                                         r"weight 'w2' \(8x5x3x3, group 1\) expects 5"):
        cap(m)
    m = corpus.tiny_cnn()
    m.graph.initializer.append(numpy_helper.from_array(np.ones(7, np.float32), "b1"))
    m.graph.node[0].input.append("b1")
    with pytest.raises(InputError, match=r"bias 'b1' has shape 7, expected 8"):
        cap(m)


def test_schema_violation_names_the_node() -> None:
    m = corpus.tiny_cnn()
    m.graph.node[1].attribute.append(helper.make_attribute("alpha", 0.5))
    with pytest.raises(InputError, match=r"node 'relu1' \(Relu\) is not valid ONNX: Unrecognized "
                                         r"attribute: alpha"):
        cap(m)


def test_unsupported_ops_are_one_short_line() -> None:
    with pytest.raises(InputError) as err:
        cap(corpus.unsupported_op())
    msg = str(err.value)
    assert "1 node of 1 op type tilec cannot plan: NonMaxSuppression x1 (first 'nms')" in msg
    assert "post-processing" in msg and "`tilec ops`" in msg
    assert "cutting them off would leave the chip nothing to run" in msg  # all of it is host
    assert "\n" not in msg and len(msg) < 300
    summary = supported_ops_summary()  # what `tilec ops` prints, not the error any more
    assert summary not in msg
    assert all(op in summary for op in OP_KINDS)
    assert summary.startswith("conv: Conv ConvTranspose | matmul: ")
    with pytest.raises(InputError, match=r"FancyPlugin \(domain 'com.vendor'\) x1 \(first "
                                         r"'plugin0'\)"):
        cap(corpus.custom_domain_op())


# ------------------------------------------------------------------------------- the file
def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.onnx: no such file"):
        capture_onnx(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match=r"is a directory"):
        capture_onnx(tmp_path)
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"PK\x03\x04 zip archive of a torch checkpoint")
    with pytest.raises(InputError, match=r"model.pt: not an ONNX model \(.pt is usually a "
                                         r"PyTorch checkpoint"):
        capture(str(pt))
    for case, pattern in (("empty", "empty file"), ("truncated", "truncated or corrupt"),
                          ("not_onnx", "Git LFS pointer")):
        path = tmp_path / f"{case}.onnx"
        path.write_bytes(corpus.build(case))
        with pytest.raises(InputError, match=pattern):
            capture_onnx(path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"junk.onnx: not an ONNX file"):
        capture_onnx(junk)


def test_capture_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--batch: must be a positive integer, got 0"):
        capture(str(tmp_path / "x.onnx"), batch=0)
    with pytest.raises(InputError, match=r"no/such/dir: no such file"):
        capture("no/such/dir")


# ------------------------------------------------------------------------------- flag parsing
@pytest.mark.parametrize(("text", "expected"), [
    ("896", (896, 896)), ("640x480", (640, 480)), ("640X480", (640, 480)), (" 32 ", (32, 32)),
    (512, (512, 512)), ((64, 32), (64, 32)), (None, None), ("320×256", (320, 256)),
])
def test_parse_image_size(text, expected) -> None:
    assert parse_image_size(text) == expected


@pytest.mark.parametrize("text", ["abc", "0", "-5", "640x", "x480", "1x2x3", "64x0", "", "6.5"])
def test_parse_image_size_rejects(text: str) -> None:
    with pytest.raises(InputError, match=r"^--image-size: "):
        parse_image_size(text)


def test_parse_input_shapes() -> None:
    assert parse_input_shapes("1,3,64,64") == {None: (1, 3, 64, 64)}
    assert parse_input_shapes("a=1x3x8x8; b=1,10") == {"a": (1, 3, 8, 8), "b": (1, 10)}
    assert parse_input_shapes("input:0=1,4") == {"input:0": (1, 4)}
    assert parse_input_shapes((1, 3)) == {None: (1, 3)}
    for bad in ("1,a,3", "1,0,3", "a=1;a=2", "1,2;b=3", ";", "a="):
        with pytest.raises(InputError, match=r"^--input-shape: "):
            parse_input_shapes(bad)


@pytest.mark.parametrize("start, end, concat_first, expect", [
    (0, 1, True, [2, 60]),      # Reshape(x, [N, -1]): the dynamo exporter's batch read
    (-2, None, False, [6, 4, 5]),  # Reshape(x, [-1, H, W]): a negative start, no end
])
def test_shape_with_start_end_folds_to_its_slice(tmp_path, start, end, concat_first, expect):
    # onnx-graphsurgeon folds Shape as the whole shape, ignoring start / end (opset 15+)
    attrs = {"start": start} if end is None else {"start": start, "end": end}
    minus1 = helper.make_tensor("m1", TensorProto.INT64, [1], [-1])
    parts = ["s", "m1"] if concat_first else ["m1", "s"]
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], **attrs),
         helper.make_node("Concat", parts, ["t"], axis=0),
         helper.make_node("Reshape", ["x", "t"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [minus1])
    path = tmp_path / "sliced.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    captured = capture(str(path), batch=2)
    assert [int(d) for d in captured.graph.outputs[0].shape] == expect


def test_a_training_mode_batchnorm_is_said_and_planned_as_a_reduction() -> None:
    """An export made without model.eval() writes BatchNormalization with training_mode=1: batch
    statistics, no fixed affine map (fold-bn keeps it). The user is told, and the planner prices
    it as the reduction it is, not as an element-wise affine."""
    from tilec.targets import load_target

    from tilec.compile import CompileOptions, lower

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")]
    inits += [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
              (("g", np.ones(8)), ("b", np.zeros(8)), ("m", np.zeros(8)), ("v", np.ones(8)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y", "rm", "rv"],
                              name="bn", training_mode=1)]
    c = cap(model_of(nodes, [vi("x", [2, 3, 16, 16])], [vi("y", None)], inits))
    assert any("training_mode=1" in n and "'bn'" in n for n in c.meta["notes"])
    low = lower(c, load_target("gc200"), CompileOptions(batch=2, verify="off"))
    assert {op.name: op.kind for op in low.info.ops}["bn"] == "reduce"
