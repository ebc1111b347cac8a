"""The torch.fx front door: conversion, numerics against PyTorch, both doors agree, bad input."""

from __future__ import annotations

import io
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tilec
from tilec.capture import capture
from tilec.capture.fx import (
    capture_module,
    load_factory,
    module_to_onnx,
    parse_input_shape,
)
from tilec.capture.onnx_file import capture_model_proto
from tilec.errors import InputError
from tilec.ir import to_onnx
from tilec.opinfo import build_graph_info


def _run_ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _check_numerics(module: nn.Module, shape: tuple[int, ...], *, mish: str = "op",
                    opset: int = 18, rtol: float = 1e-4) -> onnx.ModelProto:
    """Capture ``module`` through the fx door and compare onnxruntime with PyTorch."""
    module.eval()
    captured = capture_module(module, input_shape=shape, opset=opset, mish=mish)
    model = to_onnx(captured.graph)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = module(x)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    outs = _run_ort(model, x.numpy())
    assert len(outs) == len(refs)
    for got, want in zip(outs, refs, strict=True):
        want = want.numpy()
        assert got.shape == want.shape
        atol = rtol * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return model


# ------------------------------------------------------------------------------ op coverage
class ConvZoo(nn.Module):
    """Conv variants: groups, dilation, stride, 'same' padding, transposed, BN without affine."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(4, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False)
        self.c3 = nn.Conv2d(8, 8, 4, padding="same")
        self.bn = nn.BatchNorm2d(8, affine=False)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(6)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn2.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.c3(self.c2(self.c1(x))))
        return self.bn2(self.up(y))


class ActivationZoo(nn.Module):
    """Every activation the converter knows, as modules and as functions."""

    def __init__(self) -> None:
        super().__init__()
        self.mods = nn.ModuleList([
            nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.Mish(),
            nn.SiLU(), nn.Hardswish(), nn.Hardsigmoid(), nn.ELU(0.5), nn.GELU(), nn.Softplus(),
            nn.Hardtanh(-0.5, 0.5),
        ])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [m(x) for m in self.mods]
        outs += [F.relu(x), F.leaky_relu(x, 0.3), F.mish(x), F.silu(x), torch.sigmoid(x),
                 x.tanh(), F.hardswish(x), F.gelu(x), F.elu(x), F.softplus(x), F.relu6(x),
                 torch.clamp(x, min=-0.1, max=0.2), x.clamp(min=0.0),
                 torch.softmax(x, dim=1), F.softmax(x, dim=-1), x.exp()]
        return tuple(outs)


class ShapeZoo(nn.Module):
    """Channel chunking, slicing, indexing, reshapes, permutes, pools, resizes, pads, reductions."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.ada = nn.AdaptiveAvgPool2d(4)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.bil = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))
        self.fc = nn.Linear(8, 5)
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, b = x.chunk(2, dim=1)
        c, d, e = torch.split(x, [2, 3, 3], dim=1)
        sliced = x[:, 2:6, ::2, 1:]
        last = x[..., -1]
        first = x[:, 0]
        cat = torch.cat([a * 2.0, 1.0 - b, b / 3.0, c + d[:, :2]], dim=1)
        flat = self.fc(self.gap(x).flatten(1))
        seq = self.fc3(x.flatten(2).transpose(1, 2).reshape(2, -1, 16))  # 3-D Linear: MatMul+Add
        pooled = self.pool(x) + F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        avg = self.avg(x) + F.avg_pool2d(x, 2)
        ups = self.up(x) + F.interpolate(x, scale_factor=2.0) + self.bil(x)
        size = F.interpolate(x, size=(10, 12), mode="bilinear", align_corners=True)
        red = x.mean((2, 3), keepdim=True) + x.sum(dim=1, keepdim=True).mean(dim=(2, 3),
                                                                             keepdim=True)
        perm = x.permute(0, 2, 3, 1).contiguous().view(x.size(0), -1)
        padded = self.pad(x) + F.pad(x, (1, 2, 0, 1))
        return (cat, e, sliced, last, first, flat, seq, pooled, avg, ups, size, red, perm,
                padded, self.ada(x), -x, x @ x.transpose(2, 3))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("module", "shape"), [
    (ConvZoo(), (2, 4, 16, 16)),
    (ActivationZoo(), (1, 3, 5, 7)),
    (ShapeZoo(), (2, 8, 8, 8)),
])
def test_converter_numerics(module: nn.Module, shape: tuple[int, ...]) -> None:
    _check_numerics(module, shape)


def test_converter_numerics_at_older_opset() -> None:
    # Opset 13: Mish, HardSwish and GELU decompose; ReduceMean takes an axes attribute.
    model = _check_numerics(ActivationZoo(), (1, 3, 5, 7), opset=13)
    ops = {n.op_type for n in model.graph.node}
    assert "Mish" not in ops and "Gelu" not in ops and "HardSwish" not in ops
    _check_numerics(ShapeZoo(), (2, 8, 8, 8), opset=13)


def test_mish_forms() -> None:
    block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Mish())
    as_op = _check_numerics(block, (1, 3, 8, 8), mish="op")
    ops = Counter(n.op_type for n in as_op.graph.node)
    assert ops["Mish"] == 1 and ops["Softplus"] == 0
    decomposed = _check_numerics(block, (1, 3, 8, 8), mish="decomposed")
    ops = Counter(n.op_type for n in decomposed.graph.node)
    assert ops["Mish"] == 0 and ops["Softplus"] == ops["Tanh"] == ops["Mul"] == 1
    # x * tanh(softplus(x)): the Mul reads the Mish input and the Tanh.
    mul = next(n for n in decomposed.graph.node if n.op_type == "Mul")
    bn = next(n for n in decomposed.graph.node if n.op_type == "BatchNormalization")
    assert bn.output[0] in mul.input


def test_batchnorm_is_kept_with_its_statistics() -> None:
    block = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with torch.no_grad():
        block[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    captured = capture_module(block, input_shape=(1, 3, 4, 4))
    bn = next(n for n in captured.graph.nodes if n.op == "BatchNormalization")
    assert bn.name == "1"
    np.testing.assert_allclose(bn.inputs[3].values, [0.1, -0.2, 0.3, 0.0])


def test_node_names_follow_module_paths() -> None:
    from tilec.zoo.scaled_yolov4 import BottleneckCSP

    module = BottleneckCSP(8, 8, 2)
    captured = capture_module(module, input_shape=(1, 8, 8, 8))
    names = {n.name for n in captured.graph.nodes}
    for expected in ("cv1.conv", "cv1.bn", "cv1.act", "m.0.cv1.conv", "m.1.cv2.act", "cv2",
                     "cv3", "bn", "act", "cv4.conv", "m.0.add", "cat"):
        assert expected in names, (expected, sorted(names))


def test_overrides_and_shape_from_image_size() -> None:
    net = nn.Sequential(nn.Conv2d(5, 4, 3, stride=2, padding=1), nn.ReLU())
    c = capture_module(net, input_shape=(1, 5, 16, 16), batch=3, image_size="32x24")
    assert list(c.input_shapes.values()) == [(3, 5, 32, 24)]
    assert c.batch == 3 and c.image_size == (32, 24)
    assert tuple(c.graph.outputs[0].shape) == (3, 4, 16, 12)
    # No input shape: channels come from the first conv.
    c2 = tilec.capture(net, image_size=16)
    assert list(c2.input_shapes.values()) == [(1, 5, 16, 16)]


def test_module_training_flag_is_restored() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    net.train()
    captured = capture_module(net, input_shape=(1, 3, 8, 8))
    assert net.training and all(m.training for m in net.modules())
    assert not any(n.op == "Dropout" for n in captured.graph.nodes)  # inference: no node


def test_training_only_branches_are_not_traced() -> None:
    class Aux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            if self.training:  # e.g. an auxiliary loss head
                y = y * 0.0
            return y

    net = Aux().train()
    captured = capture_module(net, input_shape=(1, 3, 4, 4))
    assert [n.op for n in captured.graph.nodes] == ["Conv"]
    assert net.training


def test_half_precision_module() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).half()
    captured = capture_module(net, input_shape=(1, 3, 8, 8))
    assert captured.graph.inputs[0].dtype == np.float16
    assert captured.graph.nodes[0].inputs[1].values.dtype == np.float16


def test_shared_weights_are_one_initializer() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    model, _ = module_to_onnx(Tied(), (1, 4, 8, 8))
    assert sorted(t.name for t in model.graph.initializer) == ["conv.bias", "conv.weight"]
    assert [n.name for n in model.graph.node] == ["conv", "conv__1"]


# ------------------------------------------------------------------------------ both doors
def _legacy_export(module: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """torch.onnx's TorchScript exporter, keeping BN as its own node (no folding)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(shape),), buf, dynamo=False, opset_version=18,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                          input_names=["images"])
    return onnx.load_from_string(buf.getvalue())


def _signature(info) -> Counter:
    """Each planned op as (type, output shapes, producer types of its inputs).

    GraphInfo is the planner's view: constants and constant-only subgraphs (the Constant nodes the
    TorchScript exporter emits for Slice bounds and Resize scales, where the fx door writes
    initializers) are already folded away, so no further normalisation is needed.
    """
    producer = {t: op.op_type for op in info.ops for t in op.outputs}
    return Counter(
        (op.op_type, op.out_shapes, tuple(sorted(producer.get(t, "input") for t in op.inputs)))
        for op in info.ops
    )


def _scope_of_legacy(name: str) -> str:
    """'/backbone/stem/conv/Conv' -> 'backbone.stem.conv' (the TorchScript exporter's scopes).

    A scope component may repeat its parent's path ('/stage3/stage3.11/rbr_1x1/conv/Conv' for
    the children of a called nn.Sequential); the repeated prefix is dropped.
    """
    path: list[str] = []
    for comp in name.strip("/").split("/")[:-1]:
        toks = comp.split(".")
        for k in range(min(len(toks) - 1, len(path)), 0, -1):
            if path[-k:] == toks[:k]:
                toks = toks[k:]
                break
        path += toks
    return ".".join(path)


@pytest.mark.parametrize(("name", "size", "mish"), [
    ("yolov4-tiny", 64, "op"), ("repvgg-a0", 64, "op"), ("resnet50", 64, "op"),
    pytest.param("yolov4-p5", 64, "decomposed", marks=pytest.mark.slow),
])
def test_both_doors_agree(name: str, size: int, mish: str) -> None:
    from tilec import zoo

    module = zoo.build(name)
    shape = zoo.spec(name).input_shape(size)
    legacy = capture_model_proto(_legacy_export(module, shape), batch=None, image_size=None,
                                 name=name, stride=None, source="torch.onnx")
    fx = capture_module(module, input_shape=shape, name=name, mish=mish)
    a, b = build_graph_info(legacy.graph), build_graph_info(fx.graph)
    assert _signature(a) == _signature(b)
    assert [a.tensors[t].shape for t in a.outputs] == [b.tensors[t].shape for t in b.outputs]
    assert a.params == b.params and a.macs == b.macs
    # Both name convolutions after the module path.
    legacy_convs = {_scope_of_legacy(op.name) for op in a.ops if op.op_type == "Conv"}
    fx_convs = {op.name for op in b.ops if op.op_type == "Conv"}
    assert legacy_convs == fx_convs


# ------------------------------------------------------------------------------ bad input
def test_parse_input_shape() -> None:
    assert parse_input_shape("1,3,896,896") == (1, 3, 896, 896)
    assert parse_input_shape("1x3x64x64") == (1, 3, 64, 64)
    assert parse_input_shape((2, 3, 8, 8)) == (2, 3, 8, 8)
    for bad in ("1,3,a,4", "", "1,0,4,4", "1,-3,4,4"):
        with pytest.raises(InputError, match="--input-shape"):
            parse_input_shape(bad)


def _write(tmp_path: Path, text: str, name: str = "model.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    import torch
    from torch import nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Mish())

    def broken():
        raise RuntimeError("weights not found")

    def not_a_module():
        return 42

    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    class Sorting(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=1).values

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 8)

        def forward(self, x):
            return self.rnn(x)[0]

    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y
"""


def test_load_factory_and_capture(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    module = load_factory(f"{path}:build")
    assert isinstance(module, nn.Sequential)
    captured = capture(f"{path}:build", input_shape="1,3,16,16")
    assert captured.source == f"{path}:build"
    assert [n.op for n in captured.graph.nodes] == ["Conv", "BatchNormalization", "Mish"]


@pytest.mark.parametrize(("suffix", "message"), [
    ("missing.py:build", "missing.py: no such file"),
    ("model.py", "no factory named; use"),
    ("model.py:nope", "has no 'nope' (callables defined there: Branchy"),
    ("model.py:broken", "model.py:broken: the factory raised RuntimeError: weights not found"),
    ("model.py:not_a_module", "returned a int, not a torch.nn.Module"),
    ("model.py:Branchy", "torch.fx cannot trace Branchy"),
    ("model.py:Sorting", "node 'sort' (function torch.sort): not a supported operation"),
    ("model.py:Recurrent", "module 'rnn' (LSTM): module type LSTM is not supported"),
    ("model.py:TwoInputs", "--input-shape gives 1 shape, but forward(x, y) needs 2"),
])
def test_bad_python_input(tmp_path: Path, suffix: str, message: str) -> None:
    _write(tmp_path, GOOD)
    with pytest.raises(InputError) as err:
        capture(str(tmp_path / suffix), input_shape="1,3,8,8")
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    assert str(tmp_path) in text  # names the file


def test_import_error_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "import no_such_package_xyz\n", "bad.py")
    with pytest.raises(InputError, match=r"bad\.py: importing it failed: ModuleNotFoundError"):
        load_factory(f"{path}:build")


def test_wrong_input_shape_names_the_node(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with pytest.raises(InputError) as err:
        capture(f"{path}:build", input_shape="1,4,16,16")
    text = str(err.value)
    assert "module '0' (Conv2d) fails on input shape (1, 4, 16, 16)" in text
    assert "expected input[1, 4, 16, 16] to have 3 channels" in text and "\n" not in text
    with pytest.raises(InputError, match="give the input shape"):
        capture(f"{path}:build")


def test_cli_python_door(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tilec.cli import main

    path = _write(tmp_path, GOOD)
    assert main(["inspect", f"{path}:build", "--input-shape", "1,3,32,32"]) == 0
    assert "Conv" in capsys.readouterr().out
    for target, words in ((f"{path}:broken", "the factory raised"),
                          (str(tmp_path / "nothere.py:build"), "no such file"),
                          (f"{path}:Sorting", "torch.sort")):
        assert main(["inspect", target, "--input-shape", "1,3,32,32"]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in err
