"""Scaled-YOLOv4 P5 / P6 / P7 (Wang, Bochkovskiy, Liao, CVPR 2021), written from the architecture
facts in ``shared/reference/models.md`` (configuration ``yolov4-p5/p6/p7.yaml`` of the official
"yolov4-large" code).

The three sizes share one builder: a CSPDarknet backbone whose stages end in CSP blocks, an SPPCSP
block on the coarsest map, a top-down then bottom-up path (PANet) built of CSP2 blocks, and one 1x1
detection conv per level. P6 adds a stride-64 stage and P7 a stride-128 stage, P7 also scales every
width by 1.25 (rounded up to a multiple of 8). Every activation is Mish.

The CSP blocks keep the *standalone BatchNorm after the concat* of the original: the two plain 1x1
convs (``cv2``/``cv3``) have no BN of their own, and one BN (``bn``) over the concatenated channels
follows. It is per channel, so a folding pass can split it and fold each half into the conv that
produced it -- which is exactly what tilec's passes must show they can do.

Detection heads output the raw 1x1 conv maps (``4 anchors x (80 classes + 5)`` = 340 channels), one
output per level in ascending stride order; no decoding, no reshape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tilec.zoo.layers import ConvBNAct, make_divisible

NUM_CLASSES = 80
ANCHORS_PER_LEVEL = 4
HEAD_CHANNELS = ANCHORS_PER_LEVEL * (NUM_CLASSES + 5)  # 340


class Bottleneck(nn.Module):
    """Conv1x1 -> Conv3x3, plus the input when ``shortcut`` (the CSP blocks use hidden = c)."""

    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c, c, 1)
        self.cv2 = ConvBNAct(c, c, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class BottleneckCSP(nn.Module):
    """CSP stage block: y1 = cv3(m(cv1(x))), y2 = cv2(x); out = cv4(Mish(BN(cat(y1, y2))))."""

    def __init__(self, c1: int, c2: int, n: int) -> None:
        super().__init__()
        c_ = c2 // 2
        self.cv1 = ConvBNAct(c1, c_, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, bias=False)
        self.cv4 = ConvBNAct(2 * c_, c2, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.Mish()
        self.m = nn.Sequential(*[Bottleneck(c_, shortcut=True) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), dim=1))))


class BottleneckCSP2(nn.Module):
    """Neck CSP block: x1 = cv1(x); out = cv3(Mish(BN(cat(m(x1), cv2(x1))))); no shortcuts."""

    def __init__(self, c1: int, c2: int, n: int) -> None:
        super().__init__()
        c_ = c2
        self.cv1 = ConvBNAct(c1, c_, 1)
        self.cv2 = nn.Conv2d(c_, c_, 1, bias=False)
        self.cv3 = ConvBNAct(2 * c_, c2, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.Mish()
        self.m = nn.Sequential(*[Bottleneck(c_, shortcut=False) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.cv1(x)
        y1 = self.m(x1)
        y2 = self.cv2(x1)
        return self.cv3(self.act(self.bn(torch.cat((y1, y2), dim=1))))


class SPPCSP(nn.Module):
    """SPP inside a CSP block: max-pools 5/9/13 (stride 1) on a conv branch, then the CSP merge."""

    def __init__(self, c1: int, c2: int, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        c_ = c2
        self.cv1 = ConvBNAct(c1, c_, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, bias=False)
        self.cv3 = ConvBNAct(c_, c_, 3)
        self.cv4 = ConvBNAct(c_, c_, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernels)
        self.cv5 = ConvBNAct((len(kernels) + 1) * c_, c_, 1)
        self.cv6 = ConvBNAct(c_, c_, 3)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.Mish()
        self.cv7 = ConvBNAct(2 * c_, c2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        pooled = [x1] + [pool(x1) for pool in self.m]
        y1 = self.cv6(self.cv5(torch.cat(pooled, dim=1)))
        y2 = self.cv2(x)
        return self.cv7(self.act(self.bn(torch.cat((y1, y2), dim=1))))


class Stage(nn.Module):
    """A backbone stage: a stride-2 Conv3x3 then a BottleneckCSP of ``n`` bottlenecks."""

    def __init__(self, c1: int, c2: int, n: int) -> None:
        super().__init__()
        self.down = ConvBNAct(c1, c2, 3, 2)
        self.csp = BottleneckCSP(c2, c2, n)

    def forward(self, x: Tensor) -> Tensor:
        return self.csp(self.down(x))


class Backbone(nn.Module):
    """CSPDarknet of Scaled-YOLOv4; returns the feature maps at strides 8, 16, ..., 2**levels."""

    def __init__(self, widths: list[int], depths: list[int], stem: int) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, stem, 3, 1)
        stages, c1 = [], stem
        for c2, n in zip(widths, depths, strict=True):
            stages.append(Stage(c1, c2, n))
            c1 = c2
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[2:]  # stages 0, 1 are strides 2 and 4; detection starts at stride 8


class TopDown(nn.Module):
    """One top-down step: reduce the coarser map, upsample it, join a 1x1 of the backbone map."""

    def __init__(self, c_coarse: int, c_backbone: int, c: int, n: int) -> None:
        super().__init__()
        self.reduce = ConvBNAct(c_coarse, c, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral = ConvBNAct(c_backbone, c, 1)
        self.csp = BottleneckCSP2(2 * c, c, n)

    def forward(self, coarse: Tensor, feat: Tensor) -> Tensor:
        # The original concatenates [lateral, upsampled] in that order.
        return self.csp(torch.cat((self.lateral(feat), self.up(self.reduce(coarse))), dim=1))


class BottomUp(nn.Module):
    """One bottom-up step: a stride-2 Conv3x3 of the finer map joined to the top-down map."""

    def __init__(self, c_fine: int, c_topdown: int, c: int, n: int) -> None:
        super().__init__()
        self.down = ConvBNAct(c_fine, c, 3, 2)
        self.csp = BottleneckCSP2(c + c_topdown, c, n)

    def forward(self, fine: Tensor, topdown: Tensor) -> Tensor:
        return self.csp(torch.cat((self.down(fine), topdown), dim=1))


class ScaledYOLOv4(nn.Module):
    """Scaled-YOLOv4 with ``levels`` detection levels (3: P5, 4: P6, 5: P7) and a width factor."""

    def __init__(self, levels: int = 3, width: float = 1.0) -> None:
        super().__init__()

        def w(c: int) -> int:
            return make_divisible(c * width, 8)

        # Backbone: strides 2 ... 2**(levels+2). Widths 64, 128, 256, 512, 1024 then 1024 for
        # every extra level (P6, P7); depths 1, 3, 15, 15, 7 then 7 (models.md, yaml backbone).
        n_stages = levels + 2
        widths = [w(c) for c in (64, 128, 256, 512, 1024, 1024, 1024)[:n_stages]]
        depths = [1, 3, 15, 15, 7, 7, 7][:n_stages]
        self.backbone = Backbone(widths, depths, stem=w(32))
        feat_ch = widths[2:]  # backbone channels at P3 ... P(levels+2)

        # Neck channels per level: 128 at P3, 256 at P4, 512 above (yaml head).
        neck_ch = [w(c) for c in (128, 256, 512, 512, 512)[:levels]]
        self.spp = SPPCSP(feat_ch[-1], w(512))
        top = levels - 1
        td = []
        coarse_ch = w(512)
        for lvl in range(top - 1, -1, -1):  # from the level under the top down to P3
            td.append(TopDown(coarse_ch, feat_ch[lvl], neck_ch[lvl], 3))
            coarse_ch = neck_ch[lvl]
        self.topdown = nn.ModuleList(td)
        bu = []
        for lvl in range(1, levels):
            c_topdown = w(512) if lvl == top else neck_ch[lvl]
            bu.append(BottomUp(neck_ch[lvl - 1], c_topdown, neck_ch[lvl], 3))
        self.bottomup = nn.ModuleList(bu)
        # Output convs: Conv3x3 doubling the neck channels at each level, then the 1x1 detectors.
        self.heads = nn.ModuleList(ConvBNAct(c, 2 * c, 3) for c in neck_ch)
        self.detect = nn.ModuleList(nn.Conv2d(2 * c, HEAD_CHANNELS, 1, bias=True) for c in neck_ch)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        feats = self.backbone(images)
        x = self.spp(feats[-1])
        # Top-down: topdown_maps[l] is the CSP2 output at level l (the SPPCSP output at the top).
        topdown_maps = [x]
        for i, step in enumerate(self.topdown):
            lvl = len(feats) - 2 - i
            x = step(x, feats[lvl])
            topdown_maps.append(x)
        topdown_maps.reverse()  # now index 0 is P3
        # Bottom-up: start from the P3 map, go up joining each level's top-down map.
        outs = [topdown_maps[0]]
        x = topdown_maps[0]
        for i, step in enumerate(self.bottomup):
            x = step(x, topdown_maps[i + 1])
            outs.append(x)
        return tuple(det(head(o)) for o, head, det in zip(outs, self.heads, self.detect,
                                                            strict=True))
