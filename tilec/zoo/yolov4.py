"""YOLOv4 and YOLOv4-tiny (Bochkovskiy, Wang, Liao, 2020), written from the darknet configurations
``yolov4.cfg`` / ``yolov4-tiny.cfg`` as summarised in ``shared/reference/models.md``.

YOLOv4 = CSPDarknet53 backbone (Mish) + SPP + PANet neck and YOLOv3 heads (leaky ReLU 0.1).
Darknet's ``route`` layers become concatenations in the order the cfg lists them; its ``shortcut``
layers become additions. Heads output the raw 1x1 conv maps (3 anchors x 85 = 255 channels), one per
level in ascending stride order (76, 38, 19 at 608 px).

YOLOv4-tiny's ``route ... groups=2 group_id=1`` takes the second half of the channels; it is written
as a channel slice so that the graph carries the same Slice a deployed model does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tilec.zoo.layers import ConvBNAct

HEAD_CHANNELS = 3 * (80 + 5)  # 255


class DarkResidual(nn.Module):
    """Darknet residual block: Conv1x1 (c -> mid) -> Conv3x3 (mid -> c) + shortcut, Mish."""

    def __init__(self, c: int, mid: int) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c, mid, 1, act="mish")
        self.cv2 = ConvBNAct(mid, c, 3, act="mish")

    def forward(self, x: Tensor) -> Tensor:
        return x + self.cv2(self.cv1(x))


class CSPStage(nn.Module):
    """A CSPDarknet53 stage: stride-2 conv, two 1x1 branches, residual blocks, transition, fuse.

    The first stage keeps the full width in both branches (64|64, blocks narrowing to 32); later
    stages split the channels in half. cfg ``route -1,-k`` = cat(transition, the part kept aside).
    """

    def __init__(self, c1: int, c2: int, blocks: int, first: bool) -> None:
        super().__init__()
        part = c2 if first else c2 // 2
        mid = c2 // 2 if first else part
        self.down = ConvBNAct(c1, c2, 3, 2, act="mish")
        self.split_route = ConvBNAct(c2, part, 1, act="mish")
        self.split_main = ConvBNAct(c2, part, 1, act="mish")
        self.blocks = nn.Sequential(*[DarkResidual(part, mid) for _ in range(blocks)])
        self.transition = ConvBNAct(part, part, 1, act="mish")
        self.fuse = ConvBNAct(2 * part, c2, 1, act="mish")

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        route = self.split_route(x)
        main = self.transition(self.blocks(self.split_main(x)))
        return self.fuse(torch.cat((main, route), dim=1))


def _leaky(c1: int, c2: int, k: int, s: int = 1) -> ConvBNAct:
    return ConvBNAct(c1, c2, k, s, act="leaky")


def _five(c_in: int, c: int) -> nn.Sequential:
    """The neck's five alternating convs: 1x1 c, 3x3 2c, 1x1 c, 3x3 2c, 1x1 c."""
    return nn.Sequential(
        _leaky(c_in, c, 1), _leaky(c, 2 * c, 3), _leaky(2 * c, c, 1), _leaky(c, 2 * c, 3),
        _leaky(2 * c, c, 1),
    )


class SPP(nn.Module):
    """Max-pools 5/9/13 at stride 1; cfg ``route -1,-3,-5,-6`` = cat(mp13, mp9, mp5, x)."""

    def __init__(self) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in (5, 9, 13))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([pool(x) for pool in reversed(self.pools)] + [x], dim=1)


class Head(nn.Module):
    """Conv3x3 (leaky) then the plain 1x1 detection conv with bias."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = _leaky(c, 2 * c, 3)
        self.detect = nn.Conv2d(2 * c, HEAD_CHANNELS, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.detect(self.conv(x))


class YOLOv4(nn.Module):
    """CSPDarknet53 + SPP + PANet + three YOLOv3 heads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 1, act="mish")
        widths, blocks = (64, 128, 256, 512, 1024), (1, 2, 8, 8, 4)
        stages, c1 = [], 32
        for i, (c2, n) in enumerate(zip(widths, blocks, strict=True)):
            stages.append(CSPStage(c1, c2, n, first=i == 0))
            c1 = c2
        self.stages = nn.ModuleList(stages)
        # Neck.
        self.spp_pre = nn.Sequential(_leaky(1024, 512, 1), _leaky(512, 1024, 3),
                                     _leaky(1024, 512, 1))
        self.spp = SPP()
        self.spp_post = nn.Sequential(_leaky(2048, 512, 1), _leaky(512, 1024, 3),
                                      _leaky(1024, 512, 1))
        self.reduce4 = _leaky(512, 256, 1)
        self.lateral4 = _leaky(512, 256, 1)
        self.five4 = _five(512, 256)
        self.reduce3 = _leaky(256, 128, 1)
        self.lateral3 = _leaky(256, 128, 1)
        self.five3 = _five(256, 128)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.down4 = _leaky(128, 256, 3, 2)
        self.five4b = _five(512, 256)
        self.down5 = _leaky(256, 512, 3, 2)
        self.five5b = _five(1024, 512)
        self.head3 = Head(128)
        self.head4 = Head(256)
        self.head5 = Head(512)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(images)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        c3, c4, c5 = feats[2], feats[3], feats[4]
        p5 = self.spp_post(self.spp(self.spp_pre(c5)))
        # cfg: route -1,-3 = cat(lateral conv of the backbone map, upsampled).
        p4 = self.five4(torch.cat((self.lateral4(c4), self.up(self.reduce4(p5))), dim=1))
        p3 = self.five3(torch.cat((self.lateral3(c3), self.up(self.reduce3(p4))), dim=1))
        n4 = self.five4b(torch.cat((self.down4(p3), p4), dim=1))
        n5 = self.five5b(torch.cat((self.down5(n4), p5), dim=1))
        return self.head3(p3), self.head4(n4), self.head5(n5)


class TinyBlock(nn.Module):
    """YOLOv4-tiny CSP block: conv3x3, second half of its channels through two 3x3 convs, 1x1,
    cat with the full conv output; returns (joined map, the 1x1's output for the FPN)."""

    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.conv = _leaky(c_in, c, 3)
        self.half = c // 2
        self.cv1 = _leaky(c // 2, c // 2, 3)
        self.cv2 = _leaky(c // 2, c // 2, 3)
        self.cv3 = _leaky(c, c, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv(x)
        a = self.cv1(x[:, self.half :])  # route groups=2 group_id=1
        b = self.cv2(a)
        y = self.cv3(torch.cat((b, a), dim=1))  # route -1,-2
        return torch.cat((x, y), dim=1), y  # route -6,-1


class YOLOv4Tiny(nn.Module):
    """YOLOv4-tiny: two stride-2 convs, three CSP blocks with max-pools, two heads."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _leaky(3, 32, 3, 2)
        self.conv2 = _leaky(32, 64, 3, 2)
        self.block1 = TinyBlock(64, 64)
        self.block2 = TinyBlock(128, 128)
        self.block3 = TinyBlock(256, 256)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv3 = _leaky(512, 512, 3)
        self.neck = _leaky(512, 256, 1)
        self.head5_conv = _leaky(256, 512, 3)
        self.head5_detect = nn.Conv2d(512, HEAD_CHANNELS, 1, bias=True)
        self.reduce = _leaky(256, 128, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head4_conv = _leaky(384, 256, 3)
        self.head4_detect = nn.Conv2d(256, HEAD_CHANNELS, 1, bias=True)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv2(self.conv1(images))
        x, _ = self.block1(x)
        x, _ = self.block2(self.pool(x))
        x, route = self.block3(self.pool(x))
        x = self.neck(self.conv3(self.pool(x)))
        out5 = self.head5_detect(self.head5_conv(x))
        # cfg: route -1, 23 = cat(upsampled, the third block's 1x1 output).
        y = torch.cat((self.up(self.reduce(x)), route), dim=1)
        out4 = self.head4_detect(self.head4_conv(y))
        return out4, out5
