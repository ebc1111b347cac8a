"""Files from torch 2.13's default exporter (``torch.onnx.export(..., dynamo=True)``: torch.export,
onnxscript's translation and optimizer, opset 18+, weights in ``FILE.data`` beside the graph).

Each test builds a tiny module for one pattern that exporter writes differently from the
TorchScript one, exports it the default way, compiles it and checks what tilec made of it. The
model-level table is ``benchmarks/model_coverage.py --exporter dynamo``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")

from torch import nn  # noqa: E402

from tilec.compile import CompileOptions, compile_model  # noqa: E402


def _export(module: nn.Module, x: torch.Tensor, path: Path, dynamic: bool = True) -> Path:
    """``torch.onnx.export`` with its defaults, as a user writes it (dynamic batch or not)."""
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), str(path), input_names=["input"],
                          dynamic_shapes=shapes, verbose=False)
    return path


def _compile(path: Path, batch: int | None = None):
    plan, _lowered = compile_model(str(path), "gc200",
                                   CompileOptions(batch=batch, what_if=False))
    return plan


class ConvBnMish(nn.Module):
    """Conv -> BN -> Mish written out (Scaled-YOLOv4's form), then Conv -> nn.Mish."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        y = y * torch.tanh(nn.functional.softplus(y))
        return nn.functional.mish(self.conv2(y))


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "static"])
def test_decomposed_mish_fuses_into_its_conv(dynamic: bool, tmp_path: Path) -> None:
    # The exporter writes F.softplus as where(x > 20, x, softplus(x)); fuse-activation takes it
    # as Mish, so both convs carry their activation and no element-wise op is planned.
    path = _export(ConvBnMish(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", dynamic)
    plan = _compile(path, batch=2 if dynamic else None)
    assert plan.status == "fits"
    assert [(op.op_type, op.activation) for op in plan.ops] == [("Conv", "Mish")] * 2
    assert plan.model.batch == (2 if dynamic else 1)


class ViewHead(nn.Module):
    """A detection head's export view, ``y.view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2)``:
    with a dynamic batch the exporter writes the target as a constant ``[-1, 2, 4, ny, nx]``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        bs, c, ny, nx = y.shape
        return y.view(bs, 2, c // 2, ny, nx).permute(0, 1, 3, 4, 2).contiguous()


def test_view_with_wildcard_batch_is_proved_on_a_small_probe(tmp_path: Path) -> None:
    # Without re-deriving the [-1, 2, 4, ny, nx] target at the probe size, the proof fell back
    # to the model's own size (the P5 head at 896 px: 109 s and 9 GB instead of seconds).
    path = _export(ViewHead(), torch.randn(1, 3, 256, 256), tmp_path / "head.onnx")
    plan, lowered = compile_model(str(path), "gc200", CompileOptions(batch=2, what_if=False))
    assert plan.status == "fits"
    notes = [n for s in lowered.pass_stats for n in s.notes if n.startswith("verification")]
    assert notes and "[1, 3, 256, 256]" not in notes[-1] and "probe {'input': [1, 3," in notes[-1]


class BatchIndex(nn.Module):
    """Reads the batch size as a value (``torch.arange(x.shape[0])``): the exporter writes it as
    ``Squeeze(Shape(x, start=0, end=1))`` feeding a Range (ConvNeXt's and Swin's exports)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.arange(x.shape[0], dtype=x.dtype)
        return self.conv(x) + idx.view(-1, 1, 1, 1)


def test_sliced_shape_folds_to_the_batch(tmp_path: Path) -> None:
    # Folded as the whole shape [N, C, H, W], the Range got a 4-element limit: exit 2 before.
    path = _export(BatchIndex(), torch.randn(2, 3, 8, 8), tmp_path / "idx.onnx")
    plan, lowered = compile_model(str(path), "gc200", CompileOptions(batch=3, what_if=False))
    assert plan.status == "fits" and plan.model.batch == 3
    assert not any(n.op in ("Shape", "Range") for n in lowered.graph.nodes)
