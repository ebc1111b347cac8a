"""RepVGG (Ding et al., CVPR 2021) in its *training-time* multi-branch form.

Each block sums three branches and applies ReLU: a 3x3 conv + BN, a 1x1 conv + BN and -- when the
block keeps its shape (in == out channels, stride 1) -- an identity BN. Structural
re-parameterisation folds the three into one 3x3 conv with bias; the zoo ships the unfused form so
that tilec's RepVGG fusion pass has real work to do (and must prove it exact with onnxruntime).

Stage widths ``min(64, 64a), 64a, 128a, 256a, 512b``; depths A: 1, 2, 4, 14, 1 and
B: 1, 4, 6, 16, 1; stride 2 on the first block of each stage; global average pool and a 1000-way
linear classifier.
The ``g2``/``g4`` variants use 2 or 4 groups on every other block counted from the stem's
successor (block indices 2, 4, ..., 26, the stem being block 0), as in the paper.
"""

from __future__ import annotations

from torch import Tensor, nn

from tilec.zoo.layers import ConvBN

DEPTHS = {"A": (1, 2, 4, 14, 1), "B": (1, 4, 6, 16, 1)}
GROUPWISE_LAYERS = tuple(range(2, 27, 2))

# name -> (family, a, b, groups on GROUPWISE_LAYERS)
VARIANTS: dict[str, tuple[str, float, float, int]] = {
    "a0": ("A", 0.75, 2.5, 1),
    "a1": ("A", 1.0, 2.5, 1),
    "a2": ("A", 1.5, 2.75, 1),
    "b0": ("B", 1.0, 2.5, 1),
    "b1": ("B", 2.0, 4.0, 1),
    "b1g2": ("B", 2.0, 4.0, 2),
    "b1g4": ("B", 2.0, 4.0, 4),
    "b2": ("B", 2.5, 5.0, 1),
    "b2g4": ("B", 2.5, 5.0, 4),
    "b3": ("B", 3.0, 5.0, 1),
}


class RepVGGBlock(nn.Module):
    """Training-time RepVGG block: ReLU(BN(conv3x3 x) + BN(conv1x1 x) [+ BN(x)])."""

    def __init__(self, c1: int, c2: int, stride: int, groups: int) -> None:
        super().__init__()
        self.rbr_dense = ConvBN(c1, c2, 3, stride, padding=1, groups=groups)
        self.rbr_1x1 = ConvBN(c1, c2, 1, stride, padding=0, groups=groups)
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and stride == 1 else None
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)


class RepVGG(nn.Module):
    """RepVGG classifier (training-time form)."""

    def __init__(self, family: str, a: float, b: float, groups: int = 1,
                 num_classes: int = 1000) -> None:
        super().__init__()
        depths = DEPTHS[family]
        widths = (min(64, int(64 * a)), int(64 * a), int(128 * a), int(256 * a), int(512 * b))
        layer = 0
        c1 = 3
        stages = []
        for depth, c2 in zip(depths, widths, strict=True):
            blocks = []
            for i in range(depth):
                g = groups if layer in GROUPWISE_LAYERS else 1
                blocks.append(RepVGGBlock(c1, c2, 2 if i == 0 else 1, g))
                c1 = c2
                layer += 1
            stages.append(nn.Sequential(*blocks))
        self.stage0, self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, images: Tensor) -> Tensor:
        x = self.stage0(images)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.linear(self.flatten(self.gap(x)))


def build(variant: str) -> RepVGG:
    family, a, b, groups = VARIANTS[variant]
    return RepVGG(family, a, b, groups)


def fused_param_count(model: RepVGG) -> int:
    """Parameters of the inference form (one 3x3 conv with bias per block + the classifier).

    Computed from the training-form module's shapes, so it checks the block structure against the
    paper's inference-form figures without implementing the fusion itself (that is a pass's job).
    """
    total = sum(p.numel() for p in model.linear.parameters())
    for module in model.modules():
        if isinstance(module, RepVGGBlock):
            conv = module.rbr_dense.conv
            total += conv.weight.numel() + conv.out_channels
    return total
