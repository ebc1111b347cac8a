"""A matrix product of two variable operands on gc200: PopLibs plans it as a convolution with
serial splits over the reduction dimension when the operand blocks would exceed
``availableMemoryProportion`` (issue 12: without them, the largest square fp32 product tilec
accepted was n = 2112, its operands and result 3 % of the chip).

Chip memory: 1472 tiles x 638,976 B = 940.6 MB."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from tilec.targets import load_target

from tilec.compile import CompileOptions, compile_model

CHIP = 1472 * 638_976


def square_matmul(path: Path, n: int) -> Path:
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"], name="mm")],
                              "mm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_product_whose_operands_and_result_take_12_percent_fits(tmp_path: Path) -> None:
    n = 3072
    assert 3 * n * n * 4 < 0.15 * CHIP  # A, B and C stored once: 12.0 % of the chip
    plan, _ = compile_model(str(square_matmul(tmp_path / "mm.onnx", n)), load_target("gc200"),
                            CompileOptions(precision="fp32", what_if=False))
    assert plan.status == "fits", plan.diagnosis
    assert plan.verification is not None and plan.verification.ok
    (op,) = plan.ops
    # the reduction dimension is split into serial slices to meet the temporary-memory bound
    assert op.split.get("serial_in", 1) > 1 or op.split.get("serial_out", 1) > 1, op.split


def test_a_product_whose_operands_exceed_the_chip_does_not_fit(tmp_path: Path) -> None:
    n = 11264
    assert 2 * n * n * 4 > CHIP  # the two operands alone
    plan, _ = compile_model(str(square_matmul(tmp_path / "mm.onnx", n)), load_target("gc200"),
                            CompileOptions(precision="fp32", what_if=False))
    assert plan.status == "does_not_fit"
    assert plan.diagnosis is not None


@pytest.mark.parametrize("n", [512, 1024, 2048])
def test_larger_products_never_need_less_memory(tmp_path: Path, n: int) -> None:
    """Physical sanity: the peak grows with the work (n and 2n)."""
    t = load_target("gc200")
    peaks = []
    for m in (n, 2 * n):
        plan, _ = compile_model(str(square_matmul(tmp_path / f"mm{m}.onnx", m)), t,
                                CompileOptions(precision="fp32", what_if=False))
        assert plan.status == "fits"
        peaks.append(plan.memory.peak_bytes)
    assert peaks[0] <= peaks[1]
