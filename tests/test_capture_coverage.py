"""Capture of the ONNX files people have: shape arithmetic folded to a fixed point before op
support is judged, every unsupported op named in one line, and bad weights as input errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from test_capture_onnx import I64, F, model_of, vi  # the same tiny-model builders

from tilec.capture.onnx_file import MAX_FOLD_ROUNDS, capture_model_proto
from tilec.errors import InputError
from tilec.ir import is_concrete


def cap(model: onnx.ModelProto, **kw):
    return capture_model_proto(model, name="t", stride=None, source="m.onnx",
                               batch=kw.pop("batch", None), image_size=None, **kw)


def reshape_chain(blocks: int) -> onnx.ModelProto:
    """``blocks`` Reshapes, each to a target computed from the previous output's shape through a
    Floor, which ONNX data propagation does not follow: each folding round settles one block."""
    nodes, x = [], "x"
    for i in range(blocks):
        nodes += [
            helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"),
            helper.make_node("Shape", [f"r{i}"], [f"s{i}"], name=f"shape{i}"),
            helper.make_node("Cast", [f"s{i}"], [f"f{i}"], name=f"castf{i}", to=F),
            helper.make_node("Floor", [f"f{i}"], [f"fl{i}"], name=f"floor{i}"),
            helper.make_node("Cast", [f"fl{i}"], [f"t{i}"], name=f"casti{i}", to=I64),
            helper.make_node("Reshape", [f"r{i}", f"t{i}"], [f"y{i}"], name=f"reshape{i}"),
        ]
        x = f"y{i}"
    return model_of(nodes, [vi("x", [1, 4, 8, 8])], [vi(x, None)])


def test_shape_arithmetic_folds_to_a_fixed_point() -> None:
    c = cap(reshape_chain(9))  # the old 4-round cap refused this
    assert all(is_concrete(t.shape) for n in c.graph.nodes for t in n.outputs)
    assert {n.op for n in c.graph.nodes} == {"Relu", "Reshape"}
    assert c.meta["folded_nodes"] == 9 * 4


def test_the_fold_bound_is_honest(monkeypatch: pytest.MonkeyPatch) -> None:
    import tilec.capture.graph_checks as graph_checks

    monkeypatch.setattr(graph_checks, "MAX_FOLD_ROUNDS", 3)
    with pytest.raises(InputError, match=r"m.onnx: shape arithmetic was still folding after 3 "
                                         r"rounds \(12 nodes folded\)"):
        cap(reshape_chain(5))
    assert MAX_FOLD_ROUNDS >= 64


def _shape_only(op_chain: str) -> onnx.ModelProto:
    """x [1, 8, 16]; a tensor computed from x's *shape* by ``op_chain`` is added to it."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("zero", 0), ("one", 1), ("ax2", [2]), ("idx", [[0, 0, 3]]))]
    inits.append(numpy_helper.from_array(np.array([5.0], np.float32), "upd"))
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "ax2"], ["n"], name="n_of", axis=0),
             helper.make_node("Squeeze", ["n"], ["n0"], name="squeeze")]
    if op_chain == "scatter":  # an attention-style mask built from shapes (swin_t)
        nodes += [helper.make_node("ConstantOfShape", ["s"], ["zeros"], name="zeros",
                                   value=helper.make_tensor("v", F, [1], [0.0])),
                  helper.make_node("ScatterND", ["zeros", "idx", "upd"], ["mask"], name="mask")]
    else:  # a positional encoding of positions 0..n-1 (edgenext)
        nodes += [helper.make_node("Range", ["zero", "n0", "one"], ["pos"], name="range"),
                  helper.make_node("Cast", ["pos"], ["posf"], name="cast", to=F),
                  helper.make_node("Sin", ["posf"], ["sin"], name="sin"),
                  helper.make_node("Cos", ["posf"], ["cos"], name="cos"),
                  helper.make_node("Add", ["sin", "cos"], ["mask"], name="enc")]
    nodes.append(helper.make_node("Add", ["x", "mask"], ["y"], name="add"))
    return model_of(nodes, [vi("x", [1, 8, 16])], [vi("y", None)], inits)


@pytest.mark.parametrize("chain", ["scatter", "sincos"])
def test_shape_only_subgraphs_never_reach_the_op_support_check(chain: str) -> None:
    c = cap(_shape_only(chain))
    assert [n.op for n in c.graph.nodes] == ["Add"]
    mask = c.graph.nodes[0].inputs[1]
    assert isinstance(mask.values, np.ndarray) and mask.values.shape[-1] == 16


def test_every_unsupported_op_type_in_one_line() -> None:
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    nodes = [helper.make_node("Sin", ["x"], ["a"], name="sin_a"),
             helper.make_node("Sin", ["a"], ["b"], name="sin_b"),
             helper.make_node("TopK", ["b", "k"], ["v", "i"], name="topk", axis=-1),
             helper.make_node("Plugin", ["v"], ["y"], name="plug", domain="com.vendor")]
    m = model_of(nodes, [vi("x", [1, 8])], [vi("y", None)], [k])
    m.opset_import.append(helper.make_opsetid("com.vendor", 1))
    with pytest.raises(InputError, match=r"TopK x1 .*; cutting them off would leave the chip "
                                         r"nothing to run"):
        cap(m)  # --host-ops auto: all of it would go to the host
    with pytest.raises(InputError) as err:
        cap(m, host_ops="none")
    msg = str(err.value)
    assert msg.startswith("m.onnx: 4 nodes of 3 op types tilec cannot plan: Sin x2 (first "
                          "'sin_a'), TopK x1 (first 'topk'), Plugin (domain 'com.vendor') x1 "
                          "(first 'plug') (--host-ops auto would run a head or tail of them on "
                          "the host); `tilec ops` lists the ")
    assert "post-processing" not in msg  # Sin is no post-processing op


def test_runtime_message_only_for_values_that_depend_on_inputs() -> None:
    # A Reshape target from the run-time *value* of an input: "run-time value" is right.
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")]
    m = model_of(nodes, [vi("x", [1, 16]), vi("shape", [2], I64)], [vi("y", None)])
    with pytest.raises(InputError, match=r"depends on the run-time value of 'shape'"):
        cap(m)
