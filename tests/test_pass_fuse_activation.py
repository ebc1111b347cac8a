"""fuse-activation: Conv + activation (single op or decomposed) -> one ai.tilec op."""

from __future__ import annotations

import numpy as np
import pytest
from tilec.passes._testing import Builder, ops, prove

from tilec.ir import FUSED_DOMAIN
from tilec.opinfo import build_graph_info


def _conv(b: Builder, cin: int = 4, cout: int = 6) -> str:
    x = b.input("x", [1, cin, 6, 6])
    return b.conv(x, cin, cout, 3, bias=True)


def _mish_softplus(b, x, swap=False):
    t = b.op("Tanh", [b.op("Softplus", [x])])
    return b.op("Mul", [t, x] if swap else [x, t])


def _mish_exp(b, x, one=1.0, swap=False):
    e = b.op("Exp", [x])
    c = b.const(np.array(one, np.float32))
    t = b.op("Tanh", [b.op("Log", [b.op("Add", [c, e] if swap else [e, c])])])
    return b.op("Mul", [x, t])


def _mish_threshold(b, x, t=20.0):
    """PyTorch's softplus as the dynamo exporter writes it: where(x > t, x, softplus(x))."""
    gt = b.op("Greater", [x, b.const(np.array(t, np.float32))])
    sp = b.op("Where", [gt, x, b.op("Softplus", [x])])
    return b.op("Mul", [x, b.op("Tanh", [sp])])


def _silu(b, x, swap=False):
    s = b.op("Sigmoid", [x])
    return b.op("Mul", [s, x] if swap else [x, s])


def _hardswish_hsig(b, x):
    return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


def _clip(b, t, lo, hi):
    return b.op("Clip", [t, b.const(np.array(lo, np.float32)), b.const(np.array(hi, np.float32))])


def _hardswish_div_after(b, x, six=6.0, hi=6.0):
    c = _clip(b, b.op("Add", [x, b.const(np.array(3.0, np.float32))]), 0.0, hi)
    return b.op("Div", [b.op("Mul", [x, c]), b.const(np.array(six, np.float32))])


def _hardswish_div_before(b, x):
    c = _clip(b, b.op("Add", [b.const(np.array(3.0, np.float32)), x]), 0.0, 6.0)
    return b.op("Mul", [x, b.op("Mul", [c, b.const(np.array(1 / 6, np.float32))])])


SINGLE = {
    "Relu": lambda b, x: b.op("Relu", [x]),
    "LeakyRelu": lambda b, x: b.op("LeakyRelu", [x], alpha=0.1),
    "Sigmoid": lambda b, x: b.op("Sigmoid", [x]),
    "Tanh": lambda b, x: b.op("Tanh", [x]),
    "Mish": lambda b, x: b.op("Mish", [x]),
    "HardSwish": lambda b, x: b.op("HardSwish", [x]),
    "Clip": lambda b, x: _clip(b, x, 0.0, 6.0),
}

DECOMPOSED = {
    "x*tanh(softplus(x))": ("Mish", _mish_softplus),
    "tanh(softplus(x))*x": ("Mish", lambda b, x: _mish_softplus(b, x, swap=True)),
    "x*tanh(log(1+exp(x)))": ("Mish", _mish_exp),
    "x*tanh(log(exp(x)+1)) swapped add": ("Mish", lambda b, x: _mish_exp(b, x, swap=True)),
    "x*tanh(where(x>20,x,softplus(x)))": ("Mish", _mish_threshold),
    "x*tanh(where(x>10,x,softplus(x)))": ("Mish", lambda b, x: _mish_threshold(b, x, 10.0)),
    "x*sigmoid(x)": ("SiLU", _silu),
    "sigmoid(x)*x": ("SiLU", lambda b, x: _silu(b, x, swap=True)),
    "x*hardsigmoid(x)": ("HardSwish", _hardswish_hsig),
    "x*clip(x+3,0,6)/6": ("HardSwish", _hardswish_div_after),
    "x*(clip(3+x,0,6)*(1/6))": ("HardSwish", _hardswish_div_before),
}


@pytest.mark.parametrize("act", sorted(SINGLE))
def test_conv_then_activation_op_fuses(act):
    b = Builder()
    b.output(SINGLE[act](b, _conv(b)))
    graph, stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == [f"{FUSED_DOMAIN}:Conv{act}"] and err < 1e-6
    assert stats[0].counts() == {f"conv+{act}": 1}
    op = build_graph_info(graph).ops[0]
    assert (op.op_type, op.activation, op.kind) == ("Conv", act, "conv")
    assert op.macs == 6 * 6 * 6 * 4 * 9


@pytest.mark.parametrize("form", sorted(DECOMPOSED))
def test_decomposed_activation_fuses(form):
    act, build = DECOMPOSED[form]
    b = Builder()
    b.output(build(b, _conv(b)))
    graph, _stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == [f"{FUSED_DOMAIN}:Conv{act}"] and err < 1e-5
    assert graph.outputs[0].name == b.outputs[0]


def test_leaky_alpha_survives_into_the_function():
    b = Builder()
    b.output(b.op("LeakyRelu", [_conv(b)], alpha=0.25))
    graph, _, err = prove(b.model(), ["fuse-activation"])
    assert graph.nodes[0].attrs["alpha"] == pytest.approx(0.25) and err < 1e-6


@pytest.mark.parametrize("name, build", [
    ("log(2+exp(x))", lambda b, x: _mish_exp(b, x, one=2.0)),
    # tanh(5) is not 1.0 in float32: where(x > 5, x, softplus(x)) inside Mish changes values
    ("where(x>5,x,softplus(x))", lambda b, x: _mish_threshold(b, x, 5.0)),
    ("clip(x+3,0,5)/6", lambda b, x: _hardswish_div_after(b, x, hi=5.0)),
    ("x*clip(x+3,0,6)/5", lambda b, x: _hardswish_div_after(b, x, six=5.0)),
    ("x*tanh(softplus(y))", lambda b, x: b.op("Mul", [x, b.op("Tanh", [b.op(
        "Softplus", [b.op("Relu", [x])])])])),
])
def test_lookalike_patterns_are_left_alone(name, build):
    b = Builder()
    b.output(build(b, _conv(b)))
    graph, _stats, err = prove(b.model(), ["fuse-activation"])
    assert not any(n.domain == FUSED_DOMAIN for n in graph.nodes), name
    assert err == 0.0


def test_conv_output_read_elsewhere_is_not_fused():
    b = Builder()
    c = _conv(b)
    b.output(b.op("Relu", [c]), b.op("Sigmoid", [c]))
    graph, stats, _err = prove(b.model(), ["fuse-activation"])
    assert "Conv" in ops(graph) and stats[0].rewrites == []
    assert "not one activation" in stats[0].left[0].detail


def test_conv_output_that_is_a_model_output_is_not_fused():
    b = Builder()
    c = _conv(b)
    b.output(c, b.op("Relu", [c]))
    _graph, stats, _ = prove(b.model(), ["fuse-activation"])
    assert stats[0].rewrites == []


def test_activation_after_concat_moves_into_the_convs():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    cat = b.op("Concat", [b.conv(x, 4, 3, 1), b.conv(x, 4, 5, 3)], axis=1)
    b.output(_mish_softplus(b, cat))
    graph, stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == [f"{FUSED_DOMAIN}:ConvMish"] * 2 + ["Concat"] and err < 1e-5
    assert stats[0].counts() == {"concat+Mish": 1}


def test_activation_after_concat_with_a_non_conv_input_stays():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    cat = b.op("Concat", [b.conv(x, 4, 3, 1), b.op("MaxPool", [x], kernel_shape=[1, 1])], axis=1)
    b.output(b.op("Mish", [cat]))
    graph, _stats, err = prove(b.model(), ["fuse-activation"])
    assert "Mish" in ops(graph) and err == 0.0


def test_decomposed_mish_elsewhere_collapses_to_one_op():
    b = Builder()
    x = b.input("x", [1, 4, 6, 6])
    s = b.op("Add", [x, b.input("z", [1, 4, 6, 6])])
    b.output(_mish_exp(b, s))
    graph, stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == ["Add", "Mish"] and err < 1e-5
    assert stats[0].counts() == {"collapse-Mish": 1}


def test_fused_model_at_old_opset_uses_the_decomposed_body():
    b = Builder(opset=13)
    b.output(_mish_softplus(b, _conv(b)))
    graph, _stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == [f"{FUSED_DOMAIN}:ConvMish"] and err < 1e-5


# ------------------------------------------------------------- ConvTranspose, Gemm, MatMul
def _convtranspose(b: Builder, *, bias: bool, group: int = 1) -> str:
    x = b.input("x", [1, 4, 5, 5])
    w = b.const(b.rng.normal(0, 0.3, (4, 6 // group, 3, 3)).astype(np.float32), "w")
    ins = [x, w] + ([b.const(b.rng.normal(0, 0.1, 6).astype(np.float32), "b")] if bias else [])
    return b.op("ConvTranspose", ins, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                output_padding=[1, 1], group=group)


def _gemm(b: Builder, *, bias: bool, trans_b: int = 1) -> str:
    x = b.input("x", [3, 8])
    shape = (5, 8) if trans_b else (8, 5)
    ins = [x, b.const(b.rng.normal(0, 0.3, shape).astype(np.float32), "w")]
    if bias:
        ins.append(b.const(b.rng.normal(0, 0.1, 5).astype(np.float32), "b"))
    return b.op("Gemm", ins, transB=trans_b, alpha=0.5, beta=2.0)


def _matmul(b: Builder) -> str:
    x = b.input("x", [2, 3, 8])
    return b.op("MatMul", [x, b.const(b.rng.normal(0, 0.3, (8, 5)).astype(np.float32), "w")])


@pytest.mark.parametrize("base, build, act, kind", [
    ("ConvTranspose", lambda b: _convtranspose(b, bias=True), "Relu", "conv"),
    ("ConvTranspose", lambda b: _convtranspose(b, bias=False, group=2), "Clip", "conv"),
    ("Gemm", lambda b: _gemm(b, bias=True), "LeakyRelu", "matmul"),
    ("Gemm", lambda b: _gemm(b, bias=False, trans_b=0), "Clip", "matmul"),
    ("MatMul", _matmul, "Clip", "matmul"),
    ("MatMul", _matmul, "Mish", "matmul"),
])
def test_activation_fuses_into_convtranspose_gemm_matmul(base, build, act, kind):
    """Attributes that Conv does not have (output_padding, alpha/beta, transB) reach the body,
    and Clip's min/max follow a bias input (a zero one when the op had none) or, for MatMul,
    which has no bias, the two operands."""
    b = Builder()
    b.output(SINGLE[act](b, build(b)))
    graph, stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == [f"{FUSED_DOMAIN}:{base}{act}"] and err < 1e-5
    assert stats[0].counts() == {f"{base.lower()}+{act}": 1}
    op = build_graph_info(graph).ops[0]
    assert (op.op_type, op.activation, op.kind) == (base, act, kind)


def test_decomposed_silu_after_gemm_fuses():
    b = Builder()
    b.output(_silu(b, _gemm(b, bias=True)))
    graph, _stats, err = prove(b.model(), ["fuse-activation"])
    assert ops(graph) == [f"{FUSED_DOMAIN}:GemmSiLU"] and err < 1e-5


def test_fused_gemm_and_convtranspose_are_quantized_as_layers():
    """quantize reads the base op of a fused op to find its weight (before, only a fused Conv
    counted as a layer, so a fused Gemm's weights silently stayed float)."""
    for base, build in (("Gemm", lambda b: _gemm(b, bias=True, trans_b=0)),
                        ("ConvTranspose", lambda b: _convtranspose(b, bias=True))):
        b = Builder()
        b.output(b.op("Relu", [build(b)]))
        graph, stats, err = prove(b.model(), ["fuse-activation", "quantize"], precision="int8")
        fused = [n for n in graph.nodes if n.domain == FUSED_DOMAIN]
        assert [n.op for n in fused] == [f"{base}Relu"]
        layers = stats[1].layers
        assert [(lay["name"], lay["precision"]) for lay in layers] == [(fused[0].name, "int8")]
        assert err < 0.05  # int8 weights: close, not exact
