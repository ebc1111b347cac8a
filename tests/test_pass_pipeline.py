"""The pass registry, run_pipeline and its onnxruntime proof (hand-built graphs and the zoo)."""

from __future__ import annotations

import numpy as np
import pytest
from tilec.passes import REGISTRY, default_pipeline, get, names, run_pipeline
from tilec.passes._testing import Builder, capture

from tilec.errors import InputError, InternalError
from tilec.ir import FUSED_DOMAIN

EXPECTED = ["canonicalize", "fold-bn", "fuse-repvgg", "fuse-activation", "quantize",
            "concat-in-place"]


def _csp() -> Builder:
    b = Builder()
    x = b.input("x", [2, 4, 16, 16])
    y = b.op("Mish", [b.bn(b.conv(x, 4, 8, 3), 8)])
    cat = b.op("Concat", [b.conv(y, 8, 4, 1), b.conv(y, 8, 4, 1)], axis=1)
    b.output(b.op("Mish", [b.bn(cat, 8)]))
    return b


def test_registry_names_and_docs():
    assert names() == EXPECTED == default_pipeline()
    for p in REGISTRY.values():
        assert p.summary and "\n" not in p.summary and len(p.summary) < 100
        assert len(p.doc) > 300  # the rewrite, its math and what it leaves alone
    assert get("quantize").exact is False
    with pytest.raises(InputError, match=r"unknown pass 'fold_bn'.*canonicalize, fold-bn"):
        run_pipeline(capture(_csp().model()), ["fold_bn"], precision="fp32")


def test_unknown_precision_and_mode():
    with pytest.raises(InputError, match=r"--precision.*int3"):
        run_pipeline(capture(_csp().model()), ["fold-bn"], precision="int3")
    with pytest.raises(InputError, match=r"--verify.*sometimes"):
        run_pipeline(capture(_csp().model()), ["fold-bn"], precision="fp32", verify="sometimes")


def test_stats_record_counts_and_where():
    graph, stats = run_pipeline(capture(_csp().model()), EXPECTED, precision="fp32",
                                verify="pass")
    by = {s.name: s for s in stats}
    assert by["fold-bn"].counts() == {"concat-split": 1, "conv+bn": 1}
    assert by["fold-bn"].op_delta()["BatchNormalization"] == (2, 0)
    assert by["fuse-activation"].counts() == {"concat+Mish": 1, "conv+Mish": 1}
    assert by["concat-in-place"].counts() == {"in-place": 1}
    assert by["fold-bn"].nodes_before == 8 and by["concat-in-place"].nodes_after == 4
    assert by["fold-bn"].params_after < by["fold-bn"].params_before
    d = by["fold-bn"].to_dict()
    assert d["verify"]["max_rel_err"] < 1e-5 and d["rewrites"][0]["where"]
    assert sum(n.domain == FUSED_DOMAIN for n in graph.nodes) == 3


def test_modes_pass_pipeline_off():
    runs = {}
    for mode in ("pass", "pipeline", "off"):
        summary: dict = {}
        run_pipeline(capture(_csp().model()), EXPECTED, precision="fp32", verify=mode,
                     summary=summary)
        runs[mode] = summary["runs"]
        if mode != "off":
            assert summary["probe"] == {"x": [1, 4, 16, 16]}  # batch 1, not the model's 2
    assert runs["off"] == 0 and runs["pipeline"] < runs["pass"]


def test_pipeline_mode_measures_quantize_separately():
    summary: dict = {}
    _, stats = run_pipeline(capture(_csp().model()), EXPECTED, precision="int4",
                            verify="pipeline", summary=summary)
    scopes = [tuple(c["scope"]) for c in summary["checks"]]
    assert scopes == [("fold-bn", "fuse-activation"), ("quantize",)]
    assert summary["checks"][1]["exact"] is False and summary["checks"][1]["max_rel_err"] > 1e-3
    assert stats[-1].name == "concat-in-place" and stats[-1].verify.method == "structure"


def test_an_annotating_pass_that_changes_the_graph_is_caught(monkeypatch):
    from tilec.passes import concat_in_place

    real = concat_in_place.run

    def meddling(graph, ctx):
        real(graph, ctx)
        graph.nodes[-1].op = "Relu"  # was Mish

    monkeypatch.setattr(concat_in_place, "run", meddling)
    with pytest.raises(InternalError, match="should only annotate"):
        run_pipeline(capture(_csp().model()), ["concat-in-place"], precision="fp32")


def test_a_broken_rewrite_is_caught(monkeypatch):
    """A fold that forgets the BN shift must not get through."""
    from tilec.passes import _affine

    real = _affine.fold_into

    def forgetful(node, aff, names, memo=None):
        return real(node, _affine.Affine(aff.scale, np.zeros_like(aff.shift)), names, memo)

    monkeypatch.setattr("tilec.passes.fold_bn.fold_into", forgetful)
    with pytest.raises(InternalError, match="fold-bn changed the model"):
        run_pipeline(capture(_csp().model()), ["fold-bn"], precision="fp32", verify="pipeline")


def test_a_pass_deciding_differently_on_the_probe_is_caught(monkeypatch):
    from tilec.passes import fuse_activation

    real = fuse_activation.run

    def shape_dependent(graph, ctx):
        if int(graph.inputs[0].shape[0]) == 2:  # only on the model, not on the batch-1 probe
            real(graph, ctx)

    monkeypatch.setattr(fuse_activation, "run", shape_dependent)
    with pytest.raises(InternalError, match="rewrote the model and its verification probe"):
        run_pipeline(capture(_csp().model()), ["fold-bn", "fuse-activation"], precision="fp32")


def test_a_reshape_baked_at_the_compiled_batch_is_rederived_for_the_probe():
    """Capture folds an exporter's view arithmetic into a constant holding the batch; the probe
    gets the target it would have had at batch 1 instead of proving at the compiled batch."""
    b = Builder()
    x = b.input("x", [2, 3, 4, 4])
    y = b.op("Reshape", [b.bn(b.conv(x, 3, 4, 3), 4), b.const(np.array([2, 2, 2, 16], np.int64))])
    b.output(y)
    summary: dict = {}
    graph = capture(b.model())
    run_pipeline(graph, ["fold-bn"], precision="fp32", summary=summary)
    assert summary["probe"] == {"x": [1, 3, 4, 4]}
    assert summary["checks"][0]["max_rel_err"] < 1e-5
    assert [int(d) for d in graph.outputs[0].shape] == [2, 2, 2, 16]  # the model keeps its own


def test_a_reshape_baked_beyond_rederiving_is_verified_at_its_own_size():
    b = Builder()
    x = b.input("x", [2, 3, 4, 4])
    # the batch merged with the channels, then split differently: no one output dim takes it
    y = b.op("Reshape", [b.bn(b.conv(x, 3, 4, 3), 4), b.const(np.array([4, 2, 4, 4], np.int64))])
    b.output(y)
    summary: dict = {}
    run_pipeline(capture(b.model()), ["fold-bn"], precision="fp32", summary=summary)
    assert summary["probe"] == {"x": [2, 3, 4, 4]}
    assert any("own size" in n for n in summary["notes"])


# ----------------------------------------------------------------------------------- the zoo
def _zoo_graph(name: str, size: int, mish: str = "op"):
    from tilec import zoo
    from tilec.capture import capture_onnx

    return capture_onnx(zoo.export(name, image_size=(size, size), mish=mish), name=name,
                        source=name).graph


@pytest.mark.slow
@pytest.mark.parametrize("mish", ["op", "decomposed"])
def test_yolov4_p5_gc200_pipeline(mish):
    from tilec.targets import load_target

    passes = load_target("gc200").default_passes("fp16")
    graph = _zoo_graph("yolov4-p5", 128, mish)
    summary: dict = {}
    graph, stats = run_pipeline(graph, passes, precision="fp16", verify="pass", summary=summary)
    ops = [n.op for n in graph.nodes]
    assert "BatchNormalization" not in ops
    assert not {"Mish", "Softplus", "Tanh", "Exp", "Log"} & set(ops)  # no standalone Mish
    assert stats[0].nodes_before > 2 * stats[-1].nodes_after
    for s in stats:
        print(f"{s.name}: nodes {s.nodes_before} -> {s.nodes_after}, {s.counts()}")
        if s.verify is not None and s.verify.method == "onnxruntime":
            assert s.verify.max_rel_err < 1e-4
            assert s.verify.output_rel_err < 1e-4  # the model's own outputs, end to end
    concat = [n for n in graph.nodes if n.op == "Concat"]
    assert concat and all(n.attrs.get("tilec.in_place") for n in concat)


ZOO = [("yolov4-p5", 64), ("yolov4", 64), ("yolov4-tiny", 64), ("repvgg-a0", 64),
       ("repvgg-b1g2", 64), ("resnet50", 64)]


@pytest.mark.slow
@pytest.mark.parametrize("name, size", ZOO)
def test_zoo_models_stay_equal_through_every_exact_pass(name, size):
    exact = [n for n in EXPECTED if n != "quantize"]
    graph, stats = run_pipeline(_zoo_graph(name, size), exact, precision="fp32", verify="pass")
    for s in stats:
        if s.verify is not None and s.verify.method == "onnxruntime":
            assert s.verify.max_rel_err < 1e-4, s.name
            assert s.verify.output_rel_err < 1e-4, s.name
    assert not any(n.op == "BatchNormalization" for n in graph.nodes)


def test_reshapes_sharing_one_target_constant_are_retargeted_apart():
    """The dynamo exporter shares one constant target between Reshapes; pinning (or re-deriving)
    them for the probe must give each its own tensor, not two different values under one name
    (onnx-graphsurgeon warned "distinct tensors that share the same name" and the exported probe
    kept one of them)."""
    import onnx_graphsurgeon as gs
    from tilec.passes._verify import _pin_wildcard_reshapes

    shared = gs.Constant("target", np.array([-1, 24], np.int64))
    a_in = gs.Variable("a", np.float32, [2, 4, 6])
    b_in = gs.Variable("b", np.float32, [4, 4, 6])
    a_out = gs.Variable("a_out", np.float32, [2, 24])
    b_out = gs.Variable("b_out", np.float32, [4, 24])
    graph = gs.Graph(nodes=[gs.Node("Reshape", "ra", inputs=[a_in, shared], outputs=[a_out]),
                            gs.Node("Reshape", "rb", inputs=[b_in, shared], outputs=[b_out])],
                     inputs=[a_in, b_in], outputs=[a_out, b_out])
    copy = graph.copy()
    assert _pin_wildcard_reshapes(copy, graph)
    targets = {n.name: n.inputs[1] for n in copy.nodes}
    assert targets["ra"].name != targets["rb"].name
    assert targets["ra"].values.tolist() == [2, 24]
    assert targets["rb"].values.tolist() == [4, 24]
    names = [t.name for t in copy.tensors().values()]  # raises on a name clash
    assert len(names) == len(set(names))


def test_a_constant_lookup_folded_by_the_probes_capture_is_not_a_different_decision(tmp_path):
    """BERT's token-type embedding at constant indices (``zeros_like(ids)``): capture folds the
    lookup at the batch-1 probe (under its output-size limit) but not at batch 8, where
    canonicalize folds it. The proof used to refuse the compile (exit 3, "rewrote the model and
    its verification probe differently"); a fold of a node the probe's capture already folded
    is the same constant evaluation, and the compile is proved."""
    import onnx
    from onnx import TensorProto, helper
    from tilec.targets import load_target

    from tilec.compile import CompileOptions, compile_model

    rng = np.random.default_rng(0)
    t, d, vocab = 128, 768, 64
    nodes = [
        helper.make_node("Shape", ["ids"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"],
                         value=helper.make_tensor("v", TensorProto.INT64, [1], [0])),
        helper.make_node("Gather", ["types", "zeros"], ["type_emb"]),
        helper.make_node("Gather", ["tokens", "ids"], ["tok_emb"]),
        helper.make_node("Add", ["tok_emb", "type_emb"], ["sum"]),
        helper.make_node("MatMul", ["sum", "w"], ["y"]),
    ]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel()) for n, a in (
        ("types", rng.standard_normal((2, d)).astype(np.float32)),
        ("tokens", rng.standard_normal((vocab, d)).astype(np.float32)),
        ("w", rng.standard_normal((d, 32)).astype(np.float32)))]
    graph = helper.make_graph(
        nodes, "bert_types", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", t])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", t, 32])], inits)
    path = tmp_path / "types.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    plan, lowered = compile_model(str(path), load_target("gc200"), CompileOptions(
        batch=8, what_if=False, band="off", verify="pass"))
    assert plan.status == "fits"
    folds = [r for s in lowered.pass_stats for r in s.rewrites if r.kind == "fold-constant"]
    assert folds  # the model's canonicalize folded the lookup (and the proof accepted it)


def test_the_region_check_in_pieces_measures_the_same_and_still_catches(monkeypatch):
    """With the region-by-region check split into pieces (a model-sized probe), every region is
    still compared, with the same errors, and a wrong fold is still caught."""
    from tilec.passes import _affine, _verify

    def checks(**kw):
        summary: dict = {}
        run_pipeline(capture(_csp().model()), ["canonicalize", "fold-bn", "fuse-activation"],
                     precision="fp32", verify="pass", summary=summary, **kw)
        return [(tuple(c["scope"]), c["max_rel_err"]) for c in summary["checks"]]

    whole = checks()
    seen = []
    real = _verify.split_cut

    def spy(model, shared, ref, limit):
        pieces = real(model, shared, ref, limit)
        seen.append(len(pieces))
        assert sorted(n for _, names in pieces for n in names) == sorted(shared)
        return pieces

    monkeypatch.setattr(_verify, "LOCAL_PIECE_BYTES", 1)  # every output its own piece
    monkeypatch.setattr(_verify, "split_cut", spy)
    assert checks() == whole
    assert seen and max(seen) > 1

    real_fold = _affine.fold_into

    def forgetful(node, aff, names, memo=None):
        return real_fold(node, _affine.Affine(aff.scale, np.zeros_like(aff.shift)), names, memo)

    monkeypatch.setattr("tilec.passes.fold_bn.fold_into", forgetful)
    with pytest.raises(InternalError, match="fold-bn changed the model"):
        checks()
