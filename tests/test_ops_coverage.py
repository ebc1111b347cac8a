"""Ops standard exports contain that tilec once refused: Einsum (costed as the matmul it denotes),
InstanceNormalization (PyTorch's GroupNorm), ReduceL2 / LpNormalization (F.normalize) and
LayerNormalization -- each mapped onto an existing cost kind, so no target needs a change."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tilec.targets import load_target

from tilec.capture.onnx_file import capture_model_proto
from tilec.errors import InputError
from tilec.opinfo import OP_KINDS, build_graph_info, einsum_as_matmul

F = TensorProto.FLOAT
TARGETS = ("gc200", "northpole")
BITS = {"gc200": 16, "northpole": 8}  # northpole multiplies integers only


def graph_info(nodes, inputs, inits=(), bits: int = 16):
    outs = [helper.make_tensor_value_info(nodes[-1].output[0], F, None)]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          outs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    c = capture_model_proto(m, batch=None, image_size=None, name="t", stride=None, source="t")
    return build_graph_info(c.graph, weight_bits=bits, act_bits=bits)


def w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(1).standard_normal(shape)
                                   .astype(np.float32), name)


# --------------------------------------------------------------------------------- Einsum
def test_einsum_letters_classify_as_a_matrix_product() -> None:
    mm = einsum_as_matmul("bhid,bhjd->bhij", [(2, 4, 16, 8), (2, 4, 32, 8)], False, "n")
    assert (mm.batch, mm.m, mm.n, mm.k, mm.macs) == (8, 16, 32, 8, 8 * 16 * 32 * 8)
    mm = einsum_as_matmul("cd,bnc->bnd", [(16, 32), (2, 5, 16)], True, "n")  # weight first
    assert (mm.batch, mm.m, mm.n, mm.k, mm.swapped) == (1, 10, 32, 16, True)
    for bad, shapes in (("ii->i", [(3, 3)]), ("ij,jk", [(2, 3), (3, 4)]),
                        ("...ij,jk->...ik", [(2, 3), (3, 4)]), ("ij,jk->i", [(2, 3), (3, 4)]),
                        ("ijx,jk->ik", [(2, 3, 5), (3, 4)])):
        with pytest.raises(InputError, match=r"node 'n'.*Einsum"):
            einsum_as_matmul(bad, shapes, False, "node 'n'")


@pytest.mark.parametrize("target", TARGETS)
def test_einsum_with_a_weight_costs_as_its_matmul(target: str) -> None:
    # the letters b and n both index rows of the one shared weight: a (20 x 16) @ (16 x 32) GEMM
    ein = graph_info([helper.make_node("Einsum", ["x", "wt"], ["y"], name="e",
                                       equation="bnc,cd->bnd")], [("x", [2, 10, 16])],
                     [w("wt", 16, 32)], BITS[target])
    mat = graph_info([helper.make_node("MatMul", ["x", "wt"], ["y"], name="e")],
                     [("x", [1, 20, 16])], [w("wt", 16, 32)], BITS[target])
    (e,), (m,) = ein.ops, mat.ops
    assert (e.kind, e.op_type, e.macs) == ("matmul", "Einsum", m.macs) == ("matmul", "Einsum",
                                                                          20 * 32 * 16)
    assert e.weight_bytes == m.weight_bytes and e.params == m.params
    model = load_target(target).cost_model
    for split in model.splits(m)[:12]:
        assert model.cost(e, split) == model.cost(m, split)


@pytest.mark.parametrize("target", TARGETS)
def test_einsum_attention_costs_as_matmul_of_a_transpose(target: str) -> None:
    qk = [("q", [1, 4, 16, 8]), ("k", [1, 4, 32, 8])]
    ein = graph_info([helper.make_node("Einsum", ["q", "k"], ["s"], name="e",
                                       equation="bhid,bhjd->bhij")], qk, bits=BITS[target])
    mat = graph_info([helper.make_node("Transpose", ["k"], ["kt"], name="t", perm=[0, 1, 3, 2]),
                      helper.make_node("MatMul", ["q", "kt"], ["s"], name="e")], qk,
                     bits=BITS[target])
    e, m = ein.ops[0], mat.ops[1]
    assert e.macs == m.macs == 4 * 16 * 32 * 8
    assert ein.tensors["s"].shape == (1, 4, 16, 32)  # the real tensor, not the cost view
    model = load_target(target).cost_model
    for split in model.splits(m)[:12]:
        assert model.cost(e, split).outputs == model.cost(m, split).outputs
        assert model.cost(e, split).compute_cycles == model.cost(m, split).compute_cycles


def test_einsum_that_is_no_matmul_names_the_node() -> None:
    with pytest.raises(InputError, match=r"node 'diag'.*Einsum 'ii->i'"):
        graph_info([helper.make_node("Einsum", ["x"], ["y"], name="diag", equation="ii->i")],
                   [("x", [4, 4])])


# ----------------------------------------------------------------------- normalizations
def groupnorm_nodes() -> tuple[list, list]:
    """GroupNorm(2 groups, 8 channels) as torch.onnx.export writes it."""
    inits = [numpy_helper.from_array(np.array([1, 2, -1], np.int64), "gshape"),
             numpy_helper.from_array(np.ones(2, np.float32), "ones"),
             numpy_helper.from_array(np.zeros(2, np.float32), "zeros"),
             numpy_helper.from_array(np.array([1, 8, 6, 6], np.int64), "back"),
             w("gamma", 8, 1, 1), w("beta", 8, 1, 1)]
    nodes = [helper.make_node("Reshape", ["x", "gshape"], ["g"], name="to_groups"),
             helper.make_node("InstanceNormalization", ["g", "ones", "zeros"], ["gn"],
                              name="inorm", epsilon=1e-5),
             helper.make_node("Reshape", ["gn", "back"], ["r"], name="from_groups"),
             helper.make_node("Mul", ["r", "gamma"], ["s"], name="scale"),
             helper.make_node("Add", ["s", "beta"], ["y"], name="shift")]
    return nodes, inits


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ["groupnorm", "reduce_l2", "lp_norm", "layer_norm"])
def test_normalizations_cost_as_reductions(case: str, target: str) -> None:
    x = [("x", [1, 8, 6, 6])]
    if case == "groupnorm":
        nodes, inits = groupnorm_nodes()
    elif case == "reduce_l2":  # F.normalize at opset 17
        inits = [numpy_helper.from_array(np.array(1e-12, np.float32), "eps")]
        nodes = [helper.make_node("ReduceL2", ["x"], ["n"], name="l2", axes=[1], keepdims=1),
                 helper.make_node("Clip", ["n", "eps"], ["c"], name="clip"),
                 helper.make_node("Div", ["x", "c"], ["y"], name="div")]
    elif case == "lp_norm":
        inits, nodes = [], [helper.make_node("LpNormalization", ["x"], ["y"], name="lp",
                                             axis=1, p=2)]
    else:
        inits = [w("gamma", 6), w("beta", 6)]
        nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"],
                                  name="ln", axis=-1)]
    info = graph_info(nodes, x, inits, BITS[target])
    norm = next(op for op in info.ops if op.op_type in ("InstanceNormalization", "ReduceL2",
                                                        "LpNormalization",
                                                        "LayerNormalization"))
    assert norm.kind == OP_KINDS[norm.op_type] == "reduce"
    model = load_target(target).cost_model
    one = model.cost(norm, min(model.splits(norm), key=lambda sp: sp.tiles))
    assert one.compute_cycles > 0
    assert one.outputs[0] * 8 * one.split.tiles >= int(np.prod(norm.out_shapes[0])) * norm.act_bits
    if target == "gc200":
        assert one.always.get("weights", 0) * one.split.tiles >= norm.weight_bytes  # resident


# --------------------------------------------------------------------------- torch exports
@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_torch_exports_with_these_ops_compile(target: str, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    import warnings

    from torch import nn
    from torch.nn import functional as tf

    from tilec.cli import main

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.gn = nn.GroupNorm(4, 16)
            self.proj = nn.Parameter(torch.randn(16, 16))
            self.ln = nn.LayerNorm(16)

        def forward(self, x):
            y = tf.relu(self.gn(self.conv(x)))
            y = tf.normalize(y, dim=1).flatten(2).transpose(1, 2)  # b, n, c
            q = torch.einsum("bnc,cd->bnd", y, self.proj)
            a = torch.einsum("bid,bjd->bij", q, q).softmax(-1)
            return self.ln(torch.einsum("bij,bjd->bid", a, q))

    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), torch.randn(1, 3, 8, 8), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"InstanceNormalization", "ReduceL2", "Einsum", "LayerNormalization"} <= ops
    assert main(["compile", str(path), "--target", target, "--no-what-if", "-q"]) == 0


# ------------------------------------------------------------------------------ LSTM / GRU
def recurrent(op: str, *, bidirectional: bool = False, read_state: bool = False):
    """X (T=6, B=2, I=5) -> op (H=8) -> Y (and Y_h when ``read_state``) -> Relu."""
    gates = {"LSTM": 4, "GRU": 3}[op]
    dirs = 2 if bidirectional else 1
    inits = [w("W", dirs, gates * 8, 5), w("R", dirs, gates * 8, 8), w("B", dirs, 2 * gates * 8)]
    outs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    nodes = [helper.make_node(op, ["x", "W", "R", "B"], outs, name="rnn", hidden_size=8,
                              direction="bidirectional" if bidirectional else "forward"),
             helper.make_node("Relu", ["y"], ["out"], name="relu")]
    if read_state:
        nodes.insert(1, helper.make_node("Relu", ["y_h"], ["h"], name="relu_h"))
        nodes.append(helper.make_node("Add", ["out", "out"], ["out2"], name="use"))
    return nodes, inits


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layers_cost_as_the_unrolled_gate_gemm(op: str, bidirectional: bool) -> None:
    nodes, inits = recurrent(op, bidirectional=bidirectional)
    info = graph_info(nodes, [("x", [6, 2, 5])], inits)
    rnn = info.op_by_name["rnn"]
    gates, dirs = {"LSTM": 4, "GRU": 3}[op], 2 if bidirectional else 1
    assert rnn.kind == "matmul" and rnn.outputs == ("y",)  # Y_h / Y_c unread: never stored
    assert rnn.macs == 6 * 2 * gates * (5 + 8) * dirs * 8  # every step, every direction
    assert rnn.params == dirs * gates * 8 * (5 + 8) + dirs * 2 * gates * 8  # W, R, biases
    assert rnn.out_shapes == ((1, 12, dirs * 8),)  # Y's elements, as the GEMM's output
    assert info.tensors["y"].shape == (6, dirs, 2, 8)
    for target in TARGETS:
        model = load_target(target).cost_model
        bits = BITS[target]
        info_t = graph_info(nodes, [("x", [6, 2, 5])], inits, bits)
        cost = model.cost(info_t.op_by_name["rnn"], model.splits(info_t.op_by_name["rnn"])[0])
        assert cost.compute_cycles > 0


def test_recurrent_layer_with_two_outputs_read_is_named() -> None:
    nodes, inits = recurrent("LSTM", read_state=True)
    with pytest.raises(InputError, match=r"node 'rnn' \(LSTM\): more than one of its outputs"):
        graph_info(nodes, [("x", [6, 2, 5])], inits)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_torch_lstm_and_gru_compile(target: str, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    import warnings

    from tilec.cli import main

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(16, 32, batch_first=True)
            self.gru = torch.nn.GRU(32, 32, batch_first=True, bidirectional=True)
            self.fc = torch.nn.Linear(64, 4)

        def forward(self, x):
            y, _ = self.lstm(x)
            y, _ = self.gru(y)
            return self.fc(y[:, -1])

    path = tmp_path / "rnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), torch.randn(1, 10, 16), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    assert main(["compile", str(path), "--target", target, "--no-what-if", "-q"]) == 0
