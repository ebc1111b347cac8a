"""The torch.fx door with several inputs: binding shapes to forward()'s parameters, dtypes,
--batch / --image-size on every input, both doors agreeing, and one-line errors for the rest."""

from __future__ import annotations

import io
import json
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_capture_fx import _signature
from torch import nn

import tilec
from tilec.capture import capture
from tilec.capture.fx import capture_module
from tilec.capture.onnx_file import (
    InputSpec,
    capture_model_proto,
    parse_input_shapes,
    parse_input_specs,
)
from tilec.cli import main
from tilec.errors import InputError
from tilec.ir import to_onnx
from tilec.opinfo import build_graph_info


class TwoStem(nn.Module):
    """An RGB and a depth stem added, gated per channel by a feature vector through a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.depth = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                   nn.ReLU())
        self.fc = nn.Linear(10, 8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, image: torch.Tensor, depth: torch.Tensor, feats: torch.Tensor
                ) -> torch.Tensor:
        gate = self.fc(feats).reshape(-1, 8, 1, 1)
        return self.head((self.rgb(image) + self.depth(depth)) * gate)


SHAPES = {"image": (1, 3, 16, 16), "depth": (1, 1, 32, 32), "feats": (1, 10)}


def _run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _export(module: nn.Module, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """torch.onnx's TorchScript exporter with BN kept (as tests/test_capture_fx.py does)."""
    buf = io.BytesIO()
    args = tuple(torch.randn(s) for s in shapes.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buf, dynamo=False, opset_version=18,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                          input_names=list(shapes))
    return onnx.load_from_string(buf.getvalue())


# ------------------------------------------------------------------------------ both doors
def test_two_inputs_both_doors_agree() -> None:
    module = TwoStem()
    legacy = capture_model_proto(_export(module, SHAPES), batch=None, image_size=None,
                                 name="two", stride=None, source="torch.onnx")
    fx = capture_module(module, input_shape=SHAPES, name="two")
    assert fx.input_shapes == legacy.input_shapes == SHAPES
    a, b = build_graph_info(legacy.graph), build_graph_info(fx.graph)
    assert _signature(a) == _signature(b)
    assert [a.tensors[t].shape for t in a.outputs] == [b.tensors[t].shape for t in b.outputs]
    assert a.params == b.params and a.macs == b.macs
    # The graph inputs are forward's parameters, in its order, and numerics match PyTorch.
    assert [t.name for t in fx.graph.inputs] == ["image", "depth", "feats"]
    gen = torch.Generator().manual_seed(0)
    feeds = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
    with torch.no_grad():
        want = module(**feeds).numpy()
    got = _run_ort(to_onnx(fx.graph), {k: v.numpy() for k, v in feeds.items()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_every_form_of_input_shape_binds_the_same() -> None:
    module = TwoStem()
    forms = [
        SHAPES,
        list(SHAPES.values()),
        "image=1,3,16,16;depth=1,1,32,32;feats=1,10",
        "feats=1,10;depth=1x1x32x32;image=1,3,16,16",  # by name: any order
        "1,3,16,16;1,1,32,32;1,10",  # by position: forward's order
        {"feats": "1,10:float32", "image": ((1, 3, 16, 16), torch.float32),
         "depth": (1, 1, 32, 32)},
    ]
    for form in forms:
        c = capture_module(module, input_shape=form)
        assert c.input_shapes == SHAPES, form
        assert [t.name for t in c.graph.inputs] == list(SHAPES)


def test_batch_and_image_size_apply_to_the_right_inputs() -> None:
    """--batch: dimension 0 of every input of rank >= 2; --image-size: H, W of every rank-4
    input -- the same rule as the ONNX door, checked against it on the exported model."""

    class WithVector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rgb, self.depth = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(1, 4, 1)
            self.fc = nn.Linear(10, 4)

        def forward(self, image: torch.Tensor, depth: torch.Tensor, feats: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
            gate = self.fc(feats).reshape(-1, 4, 1, 1)
            return (self.rgb(image) + self.depth(depth)) * gate + bias.reshape(1, 4, 1, 1)

    shapes = {"image": (1, 3, 16, 16), "depth": (1, 1, 16, 16), "feats": (1, 10), "bias": (4,)}
    module = WithVector()
    fx = capture_module(module, input_shape=shapes, batch=3, image_size="24x16")
    assert fx.input_shapes == {"image": (3, 3, 24, 16), "depth": (3, 1, 24, 16),
                               "feats": (3, 10), "bias": (4,)}
    assert fx.batch == 3 and fx.image_size == (24, 16)
    # depth's stem has stride 2: its map is half of image's, so their sum no longer lines up.
    with pytest.raises(InputError, match=r"fails on input shapes image \(3, 3, 24, 24\), depth"):
        capture_module(TwoStem(), input_shape=SHAPES, batch=3, image_size=24)
    onnx_door = capture_model_proto(_export(module, shapes), batch=3, image_size=(24, 16),
                                    name="v", stride=None, source="torch.onnx")
    assert onnx_door.input_shapes == fx.input_shapes
    # An input that looks channels-last is not resized, as in the ONNX door.
    nhwc = {**shapes, "depth": (1, 16, 16, 1)}
    with pytest.raises(InputError, match=r"^--image-size: .*input 'depth' .* looks NHWC"):
        capture_module(module, input_shape=nhwc, image_size=24)
    # No input of the right rank: the flag says so, as the ONNX door does.
    vec = nn.Linear(4, 2)
    with pytest.raises(InputError, match=r"^--image-size: .*no input is rank-4"):
        capture_module(vec, input_shape=(1, 4), image_size=8)
    with pytest.raises(InputError, match=r"^--batch: .*no input has a batch dimension"):
        capture_module(vec, input_shape=(4,), batch=2)


# ------------------------------------------------------------------------------ dtypes
class Tokens(nn.Module):
    """Token ids through an embedding, masked, then a Linear (a transformer's first steps)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 6)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(ids) * mask[:, :, None])


def test_token_ids_are_int64() -> None:
    module = Tokens().eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (2, 7), generator=gen)
    mask = (torch.rand(2, 7, generator=gen) > 0.3).to(torch.int64)
    with torch.no_grad():
        want = module(ids, mask).numpy()
    # ids feed the embedding: int64 without saying. The mask is float unless stated.
    c = capture_module(module, input_shape="ids=2,7;mask=2,7")
    dtypes = {t.name: t.dtype for t in c.graph.inputs}
    assert dtypes == {"ids": np.int64, "mask": np.float32}
    assert c.meta["input_dtypes"] == {"ids": "int64", "mask": "float32"}
    assert c.graph.nodes[0].op == "Gather"
    got = _run_ort(to_onnx(c.graph), {"ids": ids.numpy(), "mask": mask.float().numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Stated: the int64 mask is cast where PyTorch promotes it (int64 * float32 -> float32).
    c = capture_module(module, input_shape="2,7:int64;2,7:int64")
    assert {t.name: t.dtype for t in c.graph.inputs} == {"ids": np.int64, "mask": np.int64}
    assert "Cast" in [n.op for n in c.graph.nodes]
    got = _run_ort(to_onnx(c.graph), {"ids": ids.numpy(), "mask": mask.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # A float dtype for an embedding's ids is refused by PyTorch, named by the fx door.
    with pytest.raises(InputError, match=r"module 'emb' \(Embedding\) fails on input shapes"):
        capture_module(module, input_shape="ids=2,7:float32;mask=2,7")


def test_parse_input_specs() -> None:
    assert parse_input_specs("1,3,8,8") == [InputSpec(None, (1, 3, 8, 8))]
    assert parse_input_specs("a=1,3;input:0=2,7:int64") == [
        InputSpec("a", (1, 3)), InputSpec("input:0", (2, 7), "int64")]
    assert parse_input_specs("1,3;2x7:bool") == [InputSpec(None, (1, 3)),
                                                 InputSpec(None, (2, 7), "bool")]
    assert parse_input_specs(((2, 7), torch.int64)) == [InputSpec(None, (2, 7), "int64")]
    assert parse_input_specs([(1, 3), "2,7:int32"]) == [InputSpec(None, (1, 3)),
                                                        InputSpec(None, (2, 7), "int32")]
    assert parse_input_specs({"ids": ((2, 7), np.int64)}) == [InputSpec("ids", (2, 7), "int64")]
    for bad in ("1,2:int65", "1,2:", "a=1;2", "a=1;a=2", "1,0", ";", [(1, 2), "x"]):
        with pytest.raises(InputError, match=r"^--input-shape: "):
            parse_input_specs(bad)
    # The ONNX door: the file declares its dtypes, so a suffix is refused (one line).
    with pytest.raises(InputError, match=r"^--input-shape: ':int64' \(input 'ids'\): an ONNX"):
        parse_input_shapes("ids=1,128:int64")


# ------------------------------------------------------------------------------ defaults
class Masked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                scale: float = 2.0) -> torch.Tensor:
        y = self.conv(x) * scale
        if mask is not None:
            y = y * mask
        return y


def test_defaults_are_left_alone_unless_given() -> None:
    plain = capture_module(Masked(), input_shape=(1, 3, 8, 8))
    assert list(plain.input_shapes) == ["x"]
    assert [n.op for n in plain.graph.nodes] == ["Conv", "Mul"]  # the branch mask=None takes
    masked = capture_module(Masked(), input_shape="x=1,3,8,8;mask=1,1,8,8")
    assert masked.input_shapes == {"x": (1, 3, 8, 8), "mask": (1, 1, 8, 8)}
    assert [n.op for n in masked.graph.nodes] == ["Conv", "Mul", "Mul"]
    # --image-size alone still reads the channels of a one-tensor module from its first conv.
    assert tilec.capture(Masked(), image_size=8).input_shapes == {"x": (1, 3, 8, 8)}


# ------------------------------------------------------------------------------ the CLI
MODELS = """
    import torch
    from torch import nn

    class TwoStem(nn.Module):
        def __init__(self):
            super().__init__()
            self.rgb = nn.Conv2d(3, 8, 3, padding=1)
            self.depth = nn.Conv2d(1, 8, 3, stride=2, padding=1)  # depth at twice the size
            self.fc = nn.Linear(10, 8)

        def forward(self, image, depth, feats):
            return (self.rgb(image) + self.depth(depth)) * self.fc(feats).reshape(-1, 8, 1, 1)

    class Scaled(nn.Module):
        def forward(self, x, k: int):
            return x * k

    class Varargs(nn.Module):
        def forward(self, *inputs):
            return inputs[0]

    class Kwargs(nn.Module):
        def forward(self, x, **extra):
            return x

    class Defaults(nn.Module):
        def forward(self, x, scale: float = 2.0):
            return x * scale

    def build():
        return TwoStem()

    class IntMask(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x, mask):
            return self.conv(x) * mask

    def masked():
        return IntMask()
"""

FULL = "image=1,3,16,16;depth=1,1,32,32;feats=1,10"


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tilec: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("factory", "shape", "words"), [
    ("build", "image=1,3,16,16;depth=1,1,16,16",
     ["gives no shape for input 'feats' of forward(image, depth, feats)"]),
    ("build", FULL + ";mask=1,1,16,16",
     ["names 'mask', but forward(image, depth, feats) has no such parameter"]),
    ("build", "imag=1,3,16,16;depth=1,1,16,16;feats=1,10", ["did you mean 'image'?"]),
    ("build", "1,3,16,16;1,1,16,16", ["gives 2 shapes, but forward(image, depth, feats) needs 3",
                                      "none for 'feats'"]),
    ("build", "1,3,16,16;1,1,16,16;1,10;1,4", ["gives 4 shapes", "takes 3 parameters"]),
    ("build", "1,3,16,16", ["gives 1 shape, but forward(image, depth, feats) needs 3"]),
    ("Scaled", "x=1,4", ["parameter 'k: int' of forward(x, k) has no default"]),
    ("Defaults", "x=1,4;scale=1", ["parameter 'scale: float' of forward(x, scale=2.0) is given "
                                   "a shape"]),
    ("Varargs", "1,4", ["forward(*inputs) takes *inputs"]),
    ("Kwargs", "1,4", ["forward(x, **extra) takes **extra"]),
])
def test_bad_inputs_are_one_line(models: Path, capsys: pytest.CaptureFixture[str],
                                 factory: str, shape: str, words: list[str]) -> None:
    assert main(["inspect", f"{models}:{factory}", "--input-shape", shape]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{models}:{factory}" in line  # names the factory
    for w in words:
        assert w in line


def test_a_dtype_typo_names_the_flag(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", f"{models}:build", "--input-shape", FULL + ":int65"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--input-shape: 'feats=1,10:int65': 'int65' is not a dtype" in line


def test_image_size_alone_needs_every_shape(models: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", f"{models}:build", "--image-size", "16"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "give the shapes of forward(image, depth, feats)'s inputs" in line


def test_onnx_door_takes_only_the_files_own_dtype_suffix(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """A suffix typed from habit that says what the file declares is taken; one that disagrees
    is refused naming the file's dtype."""
    path = tmp_path / "two.onnx"
    onnx.save(_export(TwoStem(), SHAPES), path)
    named = ";".join(f"{k}=" + ",".join(map(str, v)) for k, v in SHAPES.items())
    assert main(["inspect", str(path), "--input-shape",
                 named.replace("image=1,3,16,16", "image=1,3,16,16:float32")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(path), "--input-shape", "image=1,3,16,16:int64"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "':int64' (input 'image')" in line and "(here float32)" in line
    named = ";".join(f"{k}=" + ",".join(map(str, v)) for k, v in SHAPES.items())
    assert main(["inspect", str(path), "--input-shape", named]) == 0
    capsys.readouterr()


def test_compile_two_inputs_end_to_end(models: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    plan_path, onnx_path = tmp_path / "plan.json", tmp_path / "again.onnx"
    code = main(["compile", f"{models}:build", "--input-shape", FULL, "--batch", "2",
                 "--target", "gc200", "--no-what-if", "--json", str(plan_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    model = json.loads(plan_path.read_text())["model"]
    assert model["input_shapes"] == {"image": [2, 3, 16, 16], "depth": [2, 1, 32, 32],
                                     "feats": [2, 10]}
    assert model["inputs"] == ["image", "depth", "feats"]
    # `tilec report --onnx` captures the module again from the plan's shapes: every input, each
    # at its own size (the plan's image size is image's; depth must not be resized to it).
    assert main(["report", str(plan_path), "--onnx", str(onnx_path)]) == 0
    capsys.readouterr()
    again = onnx.load(onnx_path)
    assert {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in again.graph.input} == model["input_shapes"]


def test_python_api_single_shape_still_works() -> None:
    c = capture(nn.Sequential(nn.Conv2d(3, 4, 3)), input_shape="1,3,8,8")
    assert c.input_shapes == {"input": (1, 3, 8, 8)}


def test_report_onnx_recaptures_an_integer_input_as_integer(
        models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan records each input's dtype, so ``tilec report --onnx`` captures an int64 input
    stated with ``:int64`` as int64 again (it came back float, with other byte counts)."""
    plan_path, onnx_path = tmp_path / "plan.json", tmp_path / "again.onnx"
    code = main(["compile", f"{models}:masked", "--input-shape", "x=1,3,8,8;mask=1,4,8,8:int64",
                 "--target", "gc200", "-q", "--no-what-if", "--json", str(plan_path)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(plan_path.read_text())["model"]["input_dtypes"] == {
        "x": "float32", "mask": "int64"}
    assert main(["report", str(plan_path), "--onnx", str(onnx_path)]) == 0
    capsys.readouterr()
    kinds = {i.name: i.type.tensor_type.elem_type for i in onnx.load(onnx_path).graph.input}
    assert kinds == {"x": onnx.TensorProto.FLOAT, "mask": onnx.TensorProto.INT64}
