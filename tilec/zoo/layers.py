"""Building blocks shared by the zoo's networks.

Every block is written so that ``torch.fx.symbolic_trace`` traces it (no data-dependent control
flow) and so that the module paths read well in tilec's reports: a convolution shows up as
``backbone.stages.2.csp.m.0.cv1.conv``, its BatchNorm as ``...cv1.bn``, its activation as
``...cv1.act``.
"""

from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS = {
    "mish": nn.Mish,
    "leaky": lambda: nn.LeakyReLU(0.1),  # darknet's leaky slope is 0.1, not PyTorch's 0.01
    "relu": nn.ReLU,
    "none": nn.Identity,
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count up to a multiple of ``divisor`` (Scaled-YOLOv4 width rule)."""
    return int(-(-value // divisor) * divisor)


class ConvBNAct(nn.Module):
    """Conv2d (no bias, "same" padding k//2) -> BatchNorm -> activation: YOLO's ``Conv`` unit."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: str = "mish",
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = ACTIVATIONS[act]()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvBN(nn.Module):
    """Conv2d (no bias) -> BatchNorm, no activation: a RepVGG / ResNet branch."""

    def __init__(self, c1: int, c2: int, k: int, s: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c2)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))
