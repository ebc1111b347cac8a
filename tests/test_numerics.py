"""tilec.numerics: the onnxruntime helpers every pass proof relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper

from tilec import numerics
from tilec.errors import InputError


def _relu_model(shape=(2, 3)):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def test_rel_error_is_relative_to_the_reference_scale():
    ref = np.array([0.0, 10.0, -20.0], np.float32)
    assert numerics.rel_error(ref, ref.copy()) == 0.0
    got = ref + np.array([0.0, 0.2, 0.0], np.float32)
    assert numerics.rel_error(ref, got) == pytest.approx(0.01, rel=1e-5)
    # near-zero reference elements do not blow the error up (the ReLU case)
    assert numerics.rel_error(np.array([1e-9, 1.0]), np.array([2e-9, 1.0])) < 1e-8


def test_rel_error_flags_shape_and_nonfinite_mismatches():
    assert numerics.rel_error(np.zeros(3), np.zeros(4)) == math.inf
    assert numerics.rel_error(np.ones(3), np.array([1.0, np.nan, 1.0])) == math.inf
    assert numerics.rel_error(np.array([1.0, np.inf]), np.array([1.0, np.inf])) == 0.0
    assert numerics.rel_error(np.zeros(2), np.array([0.0, 0.5])) == 0.5  # absolute for all-zero
    assert numerics.rel_error(np.array([1, 2]), np.array([1, 3])) == math.inf  # integers: exact


def test_compare_reports_the_worst_output():
    ref = {"a": np.ones(4), "b": np.ones(4)}
    got = {"a": np.ones(4), "b": np.array([1, 1, 1, 1.5])}
    cmp = numerics.compare(ref, got)
    assert cmp.worst_output == "b"
    assert cmp.max_rel_err == pytest.approx(0.5)
    assert not cmp.ok(1e-4) and cmp.ok(0.6)
    assert numerics.compare(ref, {"a": np.ones(4)}).max_rel_err == math.inf


def test_sqnr_db():
    ref = np.ones(4)
    assert numerics.sqnr_db(ref, np.array([1, 1, 1, 0.9])) == pytest.approx(10 * math.log10(400))
    assert numerics.sqnr_db(ref, ref) == math.inf


def test_random_inputs_are_seeded_and_skippable():
    model = _relu_model()
    a = numerics.random_inputs(model, seed=3)
    b = numerics.random_inputs(model, seed=3)
    c = numerics.random_inputs(model, seed=4)
    assert np.array_equal(a["x"], b["x"]) and not np.array_equal(a["x"], c["x"])
    assert a["x"].dtype == np.float32 and a["x"].min() < 0 < a["x"].max()
    assert numerics.random_inputs(model, skip={"x"}) == {}


def test_run_gives_onnxruntime_results():
    model = _relu_model()
    x = np.array([[-1, 0, 2], [3, -4, 5]], np.float32)
    y = numerics.run(model, {"x": x})["y"]
    assert np.array_equal(y, np.maximum(x, 0))


def test_load_arrays_batches_and_errors(tmp_path):
    specs = [numerics.InputSpec("x", (2, 3), np.dtype(np.float32))]
    np.save(tmp_path / "a.npy", np.ones((4, 3)))
    np.save(tmp_path / "b.npy", np.ones(3))  # one sample: too few for batch 2 on its own
    batches = numerics.load_arrays([tmp_path / "a.npy"], specs)
    assert len(batches) == 2 and batches[0]["x"].shape == (2, 3)
    assert batches[0]["x"].dtype == np.float32
    with pytest.raises(InputError, match="no such file"):
        numerics.load_arrays([tmp_path / "missing.npy"], specs)
    np.save(tmp_path / "bad.npy", np.ones((2, 5)))
    with pytest.raises(InputError, match=r"bad\.npy.*shape"):
        numerics.load_arrays([tmp_path / "bad.npy"], specs)
    with pytest.raises(InputError, match="fewer samples"):
        numerics.load_arrays([tmp_path / "b.npy"], specs)
