"""``tilec lower`` and ``tilec passes`` end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from tilec.passes._testing import Builder, outputs_of

from tilec import numerics
from tilec.cli import main
from tilec.ir import from_onnx, get_ann
from tilec.opinfo import build_graph_info


@pytest.fixture
def model_path(tmp_path):
    b = Builder(seed=2)
    x = b.input("images", [1, 3, 16, 16])
    y = b.op("Mish", [b.bn(b.conv(x, 3, 8, 3, name="stem"), 8)])
    cat = b.op("Concat", [b.conv(y, 8, 4, 1, name="a"), b.conv(y, 8, 4, 1, name="b")], axis=1)
    y = b.op("Mish", [b.bn(cat, 8)])
    b.output(b.conv(y, 8, 5, 1, bias=True, name="head"))
    path = tmp_path / "net.onnx"
    onnx.save(b.model(), path)
    return path


def test_lower_writes_a_checked_equivalent_model(model_path, tmp_path, capsys):
    out = tmp_path / "low.onnx"
    stats = tmp_path / "stats.json"
    assert main(["lower", str(model_path), "-o", str(out), "--json", str(stats)]) == 0
    text = capsys.readouterr().out
    for needle in ("fold-bn", "concat-split 1", "conv+Mish", "in-place 1", "wrote"):
        assert needle in text, needle
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops and "Mish" not in ops
    err = numerics.compare(outputs_of(onnx.load(model_path)), outputs_of(model)).max_rel_err
    assert err < 1e-4
    payload = json.loads(stats.read_text())
    assert payload["target"] == "gc200" and payload["precision"] == "fp16"
    assert [s["name"] for s in payload["stats"]] == payload["passes"]
    by = {s["name"]: s for s in payload["stats"]}
    assert by["fold-bn"]["verify"]["max_rel_err"] < 1e-4
    assert by["fold-bn"]["nodes_before"] > by["concat-in-place"]["nodes_after"]
    # the planner's annotations survive the file (as node metadata)
    graph = from_onnx(model)
    cat = next(n for n in graph.nodes if n.op == "Concat")
    assert get_ann(cat, "in_place") is True


def test_lower_int4_for_northpole_records_bits_for_the_planner(model_path, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["lower", str(model_path), "-o", str(out), "--target", "northpole",
                 "--precision", "int4"]) == 0
    text = capsys.readouterr().out
    assert "quantized layers" in text and "SQNR" in text and "0.250x" in text
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert any(o.domain in ("", "ai.onnx") and o.version >= 21 for o in model.opset_import)
    info = build_graph_info(from_onnx(model), weight_bits=8, act_bits=8)
    convs = [op for op in info.ops if op.kind == "conv"]
    assert convs and all(op.weight_bits == 4 and op.act_bits == 4 for op in convs)
    # quantized, so not equal -- but close, and finite
    err = numerics.compare(outputs_of(onnx.load(model_path)), outputs_of(model)).max_rel_err
    assert 1e-4 < err < 1.0


def test_precision_map_and_calibration(model_path, tmp_path, capsys):
    pmap = tmp_path / "p.toml"
    pmap.write_text('default = "int4"\nfirst = "int8"\nlast = "int8"\n')
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(
        -1, 1, (2, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "m.onnx"
    assert main(["lower", str(model_path), "-o", str(out), "--target", "northpole",
                 "--precision-map", str(pmap), "--calibration", str(tmp_path / "calib.npy"),
                 "-v"]) == 0
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 4  # one per quantized layer's output
    graph = from_onnx(model)
    bits = {n.name: get_ann(n, "bits") for n in graph.nodes
            if n.op == "DequantizeLinear" and get_ann(n, "bits")}
    assert bits["stem/dequantize"] == 8 and bits["a/dequantize"] == 4
    assert bits["head/dequantize"] == 8


@pytest.mark.parametrize("argv, match", [
    (["--passes", "fold-bn,nope"], "unknown pass 'nope'"),
    (["--precision", "int3"], "--precision: unknown precision 'int3'"),
    (["--precision-map", "missing.toml"], "missing.toml: no such file"),
    (["--calibration", "missing.npy", "--precision", "int8", "--target", "northpole"],
     "missing.npy: no such file"),
])
def test_bad_input_is_one_line_and_exit_2(model_path, tmp_path, capsys, argv, match):
    code = main(["lower", str(model_path), "-o", str(tmp_path / "x.onnx"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1


def test_output_path_problems(model_path, tmp_path, capsys):
    assert main(["lower", str(model_path), "-o", str(tmp_path / "no" / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["lower", str(model_path), "-o", str(tmp_path / "x.txt")]) == 2


def test_passes_lists_every_pass_and_the_pipelines(capsys):
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    for name in ("canonicalize", "fold-bn", "fuse-repvgg", "fuse-activation", "quantize",
                 "concat-in-place", "gc200", "northpole"):
        assert name in text
    assert main(["passes", "fuse-repvgg"]) == 0
    assert "zero-padded" in capsys.readouterr().out
    assert main(["passes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert next(p["name"] for p in data["passes"]) == "canonicalize"
    assert "quantize" in data["pipelines"]["northpole"]["int8"]
    assert main(["passes", "nope"]) == 2


@pytest.mark.slow
def test_lower_zoo_model(tmp_path, capsys):
    out = tmp_path / "p5.onnx"
    assert main(["lower", "yolov4-p5", "--image-size", "256", "-o", str(out),
                 "--verify", "pipeline"]) == 0
    text = capsys.readouterr().out
    assert "BatchNormalization 155->0" in text and "Mish 155->0" in text
    onnx.checker.check_model(onnx.load(out))
