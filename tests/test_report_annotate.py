"""The annotated ONNX: the lowered model with each node's placement in its metadata (for Netron)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from report_fixtures import OpSpec, build_plan, gc200_target, op_too_large_plan

from tilec.capture import capture
from tilec.errors import InputError
from tilec.plan.model import Plan
from tilec.report.annotate import relower, write_annotated_onnx


def small_model(path: Path) -> Path:
    """Conv -> BatchNorm -> Relu -> Conv -> Relu -> MaxPool: enough for the default passes."""
    rng = np.random.default_rng(0)

    def const(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [const("w1", 8, 3, 3, 3), const("b1", 8), const("w2", 16, 8, 3, 3), const("b2", 16),
             numpy_helper.from_array(np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5,
                                     "var"),
             const("mean", 8), const("gamma", 8), const("beta", 8)]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"],
                         name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["out"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                       [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def plan_for(graph: gs.Graph, source: str, passes: list[str]) -> Plan:
    """A synthetic placement of every node of ``graph`` (what the planner would produce)."""
    specs = []
    for i, node in enumerate(graph.nodes):
        start = (i * 64) % 1024
        specs.append(OpSpec(
            name=node.name, op_type=node.op, kind="conv" if "Conv" in node.op else "elementwise",
            inputs=[t.name for t in node.inputs if t.__class__.__name__ == "Variable"],
            outputs=[t.name for t in node.outputs], tiles=[[start, start + 64]],
            split={"out_ch": 64}, always={"code": 4000 + i, "weights": 300 * i},
            step_bytes={"act_in": 2048}, output_bytes=[1024] * len(node.outputs), macs=10_000))
    plan = build_plan(specs, gc200_target(), name="small", source=source, batch=1,
                      image_size=[32, 32], precision="fp16", passes=passes)
    return Plan.from_dict(json.loads(plan.to_json()))  # as `tilec report` would see it


def placement_of(model: onnx.ModelProto) -> dict[str, dict[str, object]]:
    return {n.name: {p.key: json.loads(p.value) for p in n.metadata_props
                     if p.key.startswith("tilec.placement.")} for n in model.graph.node}


def test_annotations_from_compile(tmp_path: Path) -> None:
    """With the lowered graph at hand (tilec compile --onnx): every node carries its placement,
    the model stays valid and runnable, and the caller's graph is not changed."""
    source = small_model(tmp_path / "small.onnx")
    graph = capture(str(source)).graph
    plan = plan_for(graph, str(source), passes=[])
    out = tmp_path / "annotated.onnx"
    write_annotated_onnx(plan, out, graph=graph)
    assert not any(k.startswith("tilec.placement") for n in graph.nodes for k in n.attrs)

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    placed = placement_of(model)
    for op in plan.ops:
        ann = placed[op.name]
        assert ann["tilec.placement.step"] == op.step
        assert ann["tilec.placement.tile_ranges"] == op.tiles
        assert ann["tilec.placement.tiles"] == f"{op.tiles[0][0]}-{op.tiles[0][1] - 1}"
        assert ann["tilec.placement.tile_count"] == 64
        assert ann["tilec.placement.split"] == "out_ch64"
        assert ann["tilec.placement.bytes_per_tile"] == (sum(op.always.values()) + 2048
                                                         + sum(op.output_bytes))
        assert ann["tilec.placement.bytes"]["always"] == op.always  # type: ignore[index]
        assert ann["tilec.placement.cycles"] == {"compute": op.compute_cycles,  # type: ignore
                                                 "exchange": op.exchange_cycles}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["tilec.plan.status"] == "fits" and meta["tilec.plan.target"] == "gc200"
    assert json.loads(meta["tilec.plan.peak_bytes"]) == plan.memory.peak_bytes  # type: ignore
    # still the same network: onnxruntime runs it and agrees with the original
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(source)).run(None, {"images": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"images": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_annotations_from_a_saved_plan_relower(tmp_path: Path) -> None:
    """tilec report PLAN.json --onnx: no graph in memory, so the model is captured and lowered
    again from the plan's record and nodes are matched by name."""
    pytest.importorskip("tilec.passes")
    source = small_model(tmp_path / "small.onnx")
    passes = ["canonicalize", "fold-bn", "fuse-activation"]
    plan0 = plan_for(capture(str(source)).graph, str(source), passes=passes)
    lowered = relower(plan0)
    ops = [n.op for n in lowered.nodes]
    assert "BatchNormalization" not in ops, "the passes really ran"
    plan = plan_for(lowered, str(source), passes=passes)
    path = tmp_path / "plan.json"
    plan.save(path)
    out = tmp_path / "annotated.onnx"
    write_annotated_onnx(Plan.load(path), out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    placed = placement_of(model)
    assert {op.name for op in plan.ops} == {n for n, a in placed.items() if a}
    for op in plan.ops:
        assert placed[op.name]["tilec.placement.step"] == op.step


def test_missing_source_is_an_input_error(tmp_path: Path) -> None:
    plan = plan_for(capture(str(small_model(tmp_path / "m.onnx"))).graph,
                    str(tmp_path / "gone.onnx"), passes=[])
    with pytest.raises(InputError, match=r"gone\.onnx: no such file"):
        write_annotated_onnx(plan, tmp_path / "out.onnx")
    plan.model.source = "no-such-model-anywhere"
    with pytest.raises(InputError, match="no-such-model-anywhere: the model this plan was made "
                                         "from is not available"):
        write_annotated_onnx(plan, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_changed_model_is_an_input_error(tmp_path: Path) -> None:
    source = small_model(tmp_path / "small.onnx")
    plan = plan_for(capture(str(source)).graph, str(source), passes=[])
    plan.ops[2].name = "renamed"
    with pytest.raises(InputError, match=r"op 'renamed' .* is not in the re-lowered model"):
        write_annotated_onnx(plan, tmp_path / "out.onnx")
    plan = plan_for(capture(str(source)).graph, str(source), passes=[])
    plan.ops[2].op_type = "Sigmoid"
    with pytest.raises(InputError, match=r"op 'relu1' \(Sigmoid\) .* is a Relu in"):
        write_annotated_onnx(plan, tmp_path / "out.onnx")


def test_unmatched_ops_from_compile_are_recorded_not_fatal(tmp_path: Path) -> None:
    source = small_model(tmp_path / "small.onnx")
    graph = capture(str(source)).graph
    plan = plan_for(graph, str(source), passes=[])
    plan.ops[0].name = "synthetic_copy"
    write_annotated_onnx(plan, tmp_path / "out.onnx", graph=graph)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "out.onnx")).metadata_props}
    assert json.loads(meta["tilec.plan.unmatched_ops"]) == ["synthetic_copy"]


def test_diagnosis_metadata(tmp_path: Path) -> None:
    source = small_model(tmp_path / "small.onnx")
    graph = capture(str(source)).graph
    plan = op_too_large_plan()
    write_annotated_onnx(plan, tmp_path / "out.onnx", graph=graph)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "out.onnx")).metadata_props}
    assert meta["tilec.plan.status"] == "does_not_fit"
    assert meta["tilec.plan.evidence"] == "op_too_large"
    assert "fc1" in meta["tilec.plan.diagnosis"]


def test_report_command_writes_the_annotated_model(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tilec.cli import main

    source = small_model(tmp_path / "small.onnx")
    plan = plan_for(capture(str(source)).graph, str(source), passes=[])
    plan.save(tmp_path / "plan.json")
    assert main(["report", str(tmp_path / "plan.json"), "--onnx", str(tmp_path / "a.onnx")]) == 0
    assert "FITS" in capsys.readouterr().out
    placed = placement_of(onnx.load(str(tmp_path / "a.onnx")))
    assert placed["conv2"]["tilec.placement.step"] == 3


def test_report_onnx_relowers_with_the_recorded_precision_map(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A compile with --precision-map, then ``tilec report PLAN.json --onnx``: the plan records
    the map, so the re-lowered model carries the same per-layer bit widths as the compile's own
    annotated model (before, the map was dropped and every layer came back at --precision)."""
    from tilec.cli import main

    source = small_model(tmp_path / "small.onnx")
    pmap = tmp_path / "map.toml"
    pmap.write_text('default = "int4"\nfirst = "int8"\n')
    plan_path, direct, again = (tmp_path / n for n in ("p.json", "direct.onnx", "again.onnx"))
    assert main(["compile", str(source), "--target", "gc200", "-q", "--no-what-if",
                 "--precision-map", str(pmap), "--json", str(plan_path),
                 "--onnx", str(direct)]) == 0
    capsys.readouterr()
    plan = json.loads(plan_path.read_text())
    assert plan["model"]["precision_map"] == {"default": "int4", "first": "int8", "layers": []}
    pmap.unlink()  # the plan holds the map as data: the file is not needed again
    assert main(["report", str(plan_path), "--onnx", str(again)]) == 0
    capsys.readouterr()

    def layer_bits(path: Path) -> dict[str, list[int]]:
        model = onnx.load(str(path))
        types = {t.name: t.data_type for t in model.graph.initializer}
        return {n.name: sorted(types[i] for i in n.input if i in types)
                for n in model.graph.node}

    want, got = layer_bits(direct), layer_bits(again)
    assert got == want
    kinds = {t for v in want.values() for t in v}
    assert {TensorProto.INT8, TensorProto.INT4} <= kinds, "both precisions of the map are there"
