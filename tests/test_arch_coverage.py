"""Architectures beyond torchvision (``benchmarks/arch_coverage.py``), exported as users export
them and compiled on both targets: each must plan (a verified plan or a diagnosis), never be
refused or fail inside tilec. A few representatives, the whole table is the benchmark's."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tilec.compile import CompileOptions, compile_model  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "arch_coverage", Path(__file__).parent.parent / "benchmarks" / "arch_coverage.py")
arch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(arch)

CASES = [("gpt2", "torchscript"), ("t5_bias", "torchscript"), ("yolov8n", "torchscript"),
         ("segformer", "dynamo"), ("sd_block", "dynamo")]


@pytest.mark.slow
@pytest.mark.parametrize("name, exporter", CASES)
def test_architecture_compiles_on_both_targets(name: str, exporter: str, tmp_path: Path) -> None:
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = arch.export(name, exporter, tmp_path)
    assert isinstance(path, Path), path
    for target in ("gc200", "northpole"):
        plan, _ = compile_model(str(path), target, CompileOptions(batch=2, what_if=False,
                                                                  band="off"))
        assert plan.status in ("fits", "does_not_fit"), (target, plan.status)
        assert plan.memory is not None and plan.memory.peak_bytes > 0
