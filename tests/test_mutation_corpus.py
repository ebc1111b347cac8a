"""A mutation corpus: a small RepVGG-style export, broken in every way a file gets broken.

Byte flips, truncation, data types and dims that disagree with the stored data, NaN / infinite
weights, cycles, dangling reads, bad attributes and a few structural faults. Each mutant goes
through ``tilec compile`` in-process: whatever tilec concludes (a flip in a weight's mantissa is
still a valid model), it must never be a traceback or an internal error (exit 3), and an input
error is one line. The mutants are drawn from fixed seeds, so the corpus is the same every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilec.cli import main

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def base_model() -> onnx.ModelProto:
    """RepVGG-like, as torch.onnx.export writes it: 3x3 and 1x1 branches with BatchNorm, an
    identity branch, a stride-2 conv, global pooling, the Shape/Gather/Concat/Reshape flatten
    arithmetic of an export with a dynamic batch, and a Gemm head."""
    rng = np.random.default_rng(0)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)

    def bn(prefix: str, c: int) -> list[onnx.TensorProto]:
        return [numpy_helper.from_array(v.astype(np.float32), f"{prefix}_{k}") for k, v in
                (("s", 1 + 0.1 * rng.standard_normal(c)), ("b", 0.1 * rng.standard_normal(c)),
                 ("m", 0.1 * rng.standard_normal(c)), ("v", 1 + rng.random(c)))]

    c = 8
    inits = [w("stem_w", c, 3, 3, 3), w("b3_w", c, c, 3, 3), w("b1_w", c, c, 1, 1),
             *bn("bn3", c), *bn("bn1", c), *bn("bnid", c), w("down_w", 16, c, 3, 3),
             w("fc_w", 10, 16), w("fc_b", 10),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    nodes = [
        helper.make_node("Conv", ["x", "stem_w"], ["s0"], name="stem", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["s0"], ["s1"], name="stem_relu"),
        helper.make_node("Conv", ["s1", "b3_w"], ["a3"], name="b3", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a3", "bn3_s", "bn3_b", "bn3_m", "bn3_v"],
                         ["n3"], name="bn3"),
        helper.make_node("Conv", ["s1", "b1_w"], ["a1"], name="b1", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["a1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"],
                         ["n1"], name="bn1"),
        helper.make_node("BatchNormalization", ["s1", "bnid_s", "bnid_b", "bnid_m", "bnid_v"],
                         ["nid"], name="bnid"),
        helper.make_node("Add", ["n3", "n1"], ["sum1"], name="add1"),
        helper.make_node("Add", ["sum1", "nid"], ["sum2"], name="add2"),
        helper.make_node("Relu", ["sum2"], ["r"], name="block_relu"),
        helper.make_node("Conv", ["r", "down_w"], ["d"], name="down", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["d"], ["dr"], name="down_relu"),
        helper.make_node("GlobalAveragePool", ["dr"], ["g"], name="gap"),
        helper.make_node("Shape", ["g"], ["gs"], name="shape"),
        helper.make_node("Gather", ["gs", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["target"], name="cat_shape", axis=0),
        helper.make_node("Reshape", ["g", "target"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "repvgg_tiny",
        [helper.make_tensor_value_info("x", F, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", F, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pytorch")
    model.ir_version = 8
    return model


Mutant = Callable[[], bytes]


def _proto(edit: Callable[[onnx.ModelProto], None]) -> Mutant:
    def build() -> bytes:
        model = base_model()
        edit(model)
        return model.SerializeToString()
    return build


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _set_attr(node: str, attr: str, value: object) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        n = _node(model, node)
        kept = [a for a in n.attribute if a.name != attr]
        del n.attribute[:]
        n.attribute.extend(kept)
        n.attribute.append(helper.make_attribute(attr, value))
    return edit


def _poison(name: str, value: float, index: int = 0) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        t = _init(model, name)
        arr = numpy_helper.to_array(t).copy()
        arr.reshape(-1)[index] = value
        t.CopyFrom(numpy_helper.from_array(arr, name))
    return edit


def _retype(name: str, dtype: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        _init(model, name).data_type = dtype
    return edit


def _redim(name: str, dims: list[int]) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        t = _init(model, name)
        del t.dims[:]
        t.dims.extend(dims)
    return edit


def _rewire(node: str, index: int, tensor: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        _node(model, node).input[index] = tensor
    return edit


def _byte_flips(count: int, seed: int) -> Mutant:
    def build() -> bytes:
        data = bytearray(base_model().SerializeToString())
        rnd = random.Random(seed)
        for _ in range(count):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        return bytes(data)
    return build


def _truncated(fraction: float) -> Mutant:
    def build() -> bytes:
        data = base_model().SerializeToString()
        return data[: int(len(data) * fraction)]
    return build


def _remove_init(name: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        kept = [t for t in model.graph.initializer if t.name != name]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return edit


def _opset(version: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        model.opset_import[0].version = version
    return edit


def _op_type(node: str, op: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        _node(model, node).op_type = op
    return edit


def _raw_length(name: str, delta: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        t = _init(model, name)
        raw = t.raw_data
        t.raw_data = raw[:delta] if delta < 0 else raw + b"\0" * delta
    return edit


def _float_data(name: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:  # typed storage with one value too few
        t = _init(model, name)
        values = numpy_helper.to_array(t).reshape(-1)[:-1]
        t.ClearField("raw_data")
        t.float_data.extend(float(v) for v in values)
    return edit


MUTANTS: dict[str, Mutant] = {
    **{f"flip{n}_seed{s}": _byte_flips(n, s) for n in (1, 3, 16) for s in range(6)},
    **{f"truncate_{int(f * 100)}": _truncated(f) for f in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9,
                                                             0.99)},
    "dtype_int64": _proto(_retype("b3_w", TensorProto.INT64)),
    "dtype_float16": _proto(_retype("stem_w", TensorProto.FLOAT16)),
    "dtype_double": _proto(_retype("fc_w", TensorProto.DOUBLE)),
    "dtype_int8": _proto(_retype("bn3_s", TensorProto.INT8)),
    "dtype_undefined": _proto(_retype("down_w", TensorProto.UNDEFINED)),
    "dtype_999": _proto(_retype("fc_b", 999)),
    "dims_doubled": _proto(_redim("b3_w", [16, 8, 3, 3])),
    "dims_dropped": _proto(_redim("stem_w", [8, 3, 3])),
    "dims_negative": _proto(_redim("fc_w", [-10, -16])),
    "dims_swapped": _proto(_redim("fc_w", [16, 10])),
    "dims_bn_scale": _proto(_redim("bn1_s", [4])),
    "dims_zero": _proto(_redim("down_w", [16, 8, 0, 3])),
    "raw_short": _proto(_raw_length("b1_w", -4)),
    "raw_long": _proto(_raw_length("fc_b", 3)),
    "typed_short": _proto(_float_data("bn1_b")),
    "nan_conv": _proto(_poison("b3_w", float("nan"), 5)),
    "inf_conv": _proto(_poison("stem_w", float("inf"))),
    "neg_inf_gemm": _proto(_poison("fc_w", float("-inf"), 7)),
    "nan_bn_var": _proto(_poison("bn1_v", float("nan"))),
    "neg_bn_var": _proto(_poison("bn3_v", -0.5, 3)),
    "inf_bn_scale": _proto(_poison("bnid_s", float("inf"), 2)),
    "nan_bias": _proto(_poison("fc_b", float("nan"), 9)),
    "cycle_self": _proto(_rewire("block_relu", 0, "r")),
    "cycle_back": _proto(_rewire("b3", 0, "r")),
    "cycle_long": _proto(_rewire("stem_relu", 0, "dr")),
    "dangling_input": _proto(_rewire("add1", 1, "ghost")),
    "dangling_weight": _proto(_remove_init("down_w")),
    "dangling_bn_stat": _proto(_remove_init("bn3_v")),
    "dangling_shape": _proto(_rewire("flatten", 1, "nowhere")),
    "kernel_shape_wrong": _proto(_set_attr("b3", "kernel_shape", [5, 5])),
    "strides_zero": _proto(_set_attr("down", "strides", [0, 0])),
    "pads_negative": _proto(_set_attr("stem", "pads", [-3, -3, -3, -3])),
    "pads_rank": _proto(_set_attr("stem", "pads", [1, 1])),
    "group_3": _proto(_set_attr("b3", "group", 3)),
    "dilations_huge": _proto(_set_attr("down", "dilations", [40, 40])),
    "unknown_attr": _proto(_set_attr("block_relu", "alpha", 0.5)),
    "attr_wrong_type": _proto(_set_attr("gather", "axis", "zero")),
    "gather_axis_out": _proto(_set_attr("gather", "axis", 5)),
    "gemm_trans_wrong": _proto(_set_attr("fc", "transB", 0)),
    "bn_epsilon_str": _proto(_set_attr("bn3", "epsilon", "tiny")),
    "op_renamed": _proto(_op_type("add2", "Addd")),
    "op_renamed_conv": _proto(_op_type("down", "conv")),
    "opset_0": _proto(_opset(0)),
    "opset_5": _proto(_opset(5)),
    "concat_axis": _proto(_set_attr("cat_shape", "axis", 1)),
}


def _write(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.onnx"
    path.write_bytes(MUTANTS[name]())
    return path


def test_the_corpus_is_large_and_fixed() -> None:
    assert len(MUTANTS) >= 60
    assert MUTANTS["flip3_seed2"]() == MUTANTS["flip3_seed2"]()
    assert MUTANTS["flip3_seed2"]() != base_model().SerializeToString()


def test_the_unmutated_model_compiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "base.onnx"
    path.write_bytes(base_model().SerializeToString())
    code = main(["compile", str(path), "--no-what-if", "--time-limit", "2"])
    _, err = capsys.readouterr()
    assert code == 0, err


@pytest.mark.parametrize("name", sorted(MUTANTS))  # ~0.1 s each: all run in CI
def test_mutant_is_never_an_internal_error(name: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, name)
    code = main(["compile", str(path), "--no-what-if", "--time-limit", "2"])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert code in (0, 1, 2), err
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("tilec: error: "), err
        assert path.name in lines[0], err  # the file is named


BAD_WEIGHTS = {  # mutant -> what the one line must say
    "dtype_int64": "initializer 'b3_w': its data is 2,304 bytes, but 8x8x3x3 int64 needs 4,608",
    "dims_doubled": "initializer 'b3_w': its data is 2,304 bytes, but 16x8x3x3 float needs 4,608",
    "raw_short": "initializer 'b1_w': its data is 252 bytes, but 8x8x1x1 float needs 256",
    "typed_short": "initializer 'bn1_b': holds 7 values in float_data, but 8 float needs 8",
    "dtype_999": "initializer 'fc_b' has data type 999, which is not an ONNX tensor type",
    "nan_conv": "initializer 'b3_w' (a weight of node 'b3', Conv) holds 1 NaN of its 576 values",
    "inf_conv": "initializer 'stem_w' (a weight of node 'stem', Conv) holds 1 infinite of its 216",
    "nan_bn_var": "initializer 'bn1_v' (a weight of node 'bn1', BatchNormalization) holds 1 NaN",
    "neg_bn_var": "initializer 'bn3_v' (the running variance of BatchNormalization node 'bn3') "
                  "holds 1 negative value of 8; a variance cannot be negative",
}


@pytest.mark.parametrize("name", sorted(BAD_WEIGHTS))
def test_bad_weights_name_the_initializer(name: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, name)
    code = main(["inspect", str(path)])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert BAD_WEIGHTS[name] in err, err


def test_infinity_outside_a_weight_is_allowed(tmp_path: Path) -> None:
    """-inf in an attention-style mask constant is meant; only NaN is refused everywhere."""
    model = base_model()
    model.graph.initializer.append(numpy_helper.from_array(
        np.array([0.0, -np.inf], np.float32), "mask"))
    model.graph.node.append(helper.make_node("Add", ["mask", "mask"], ["m2"], name="mask_add"))
    path = tmp_path / "mask.onnx"
    onnx.save(model, path)
    assert main(["inspect", str(path)]) == 0
