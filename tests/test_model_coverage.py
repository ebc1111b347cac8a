"""The coverage benchmark's CI subset: a few standard torchvision exports compile with no flag
but --target (exit 0 or 1; never 2 or 3). The full table is benchmarks/model_coverage.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tilec.cli import main

_spec = importlib.util.spec_from_file_location(
    "model_coverage", Path(__file__).parents[1] / "benchmarks" / "model_coverage.py")
mc = importlib.util.module_from_spec(_spec)
sys.modules["model_coverage"] = mc  # its dataclasses look their module up
_spec.loader.exec_module(mc)


def test_table_counts_what_compiled() -> None:
    rows = [mc.Row("a", 1.0, {"gc200": (0, 2.0, "")}), mc.Row("b", 1.0, {"gc200": (1, 3.0, "")}),
            mc.Row("c", 1.0, {"gc200": (2, 0.5, "tilec: error: c.onnx: 1 node ...")}),
            mc.Row("d", 1.0, {"gc200": (3, 0.5, "tilec: internal error: KeyError")})]
    text = mc.table(rows, ["gc200"])
    assert "gc200: 2/4 compile (exit 0 or 1), 1 fit, 1 refused, 1 internal errors" in text
    assert "tilec: internal error: KeyError" in text
    assert set(mc.QUICK) <= set(mc.MODELS)


def test_table_has_a_column_per_exporter_and_target() -> None:
    cols = [mc.column(e, t) for e in mc.EXPORTERS for t in ("gc200", "northpole")]
    failed = (mc.EXPORT_FAILED, 0.0, "dynamo export failed: UserError: Invalid ranges [2:1]")
    rows = [mc.Row("a", 1.0, {c: ((0, 2.0, "") if c.startswith("torchscript") else failed)
                              for c in cols})]
    text = mc.table(rows, cols)
    assert text.splitlines()[0].split()[1:] == cols
    assert "dynamo:northpole: 0/1 compile (exit 0 or 1), 0 fit, 0 refused, 0 internal errors, " \
        "0 timed out, 1 export failed" in text
    assert "torchscript:gc200: 1/1 compile" in text and "Invalid ranges [2:1]" in text


@pytest.mark.slow
@pytest.mark.parametrize("exporter", mc.EXPORTERS)
@pytest.mark.parametrize("name", mc.QUICK)
def test_standard_exports_compile_without_flags(name: str, exporter: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    try:
        mc.load_torchvision()
    except ImportError:
        pytest.skip("torchvision is not installed (pip install torchvision==0.28.0)")
    path = tmp_path / f"{name}.onnx"
    mc.export(name, path, exporter)
    assert main(["compile", str(path), "--target", "gc200", "--no-what-if", "-q"]) in (0, 1)
