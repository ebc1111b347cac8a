"""The zoo's catalogue: one :class:`ZooSpec` per model name.

Kept free of torch imports: ``tilec compile model.onnx`` consults :func:`names` to tell a file
from a built-in model, and that must not cost the seconds an ``import torch`` takes. The network
code is imported only when a model is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tilec.errors import InputError


@dataclass(frozen=True)
class ZooSpec:
    """A built-in model: how to build it and the facts users (and capture) need about it."""

    name: str
    default_image_size: int  # square input side in pixels
    stride: int  # total downsampling of the coarsest output (input sizes must be a multiple)
    description: str
    family: str  # "Scaled-YOLOv4", "YOLOv4", "RepVGG", "ResNet"
    source: str  # where the architecture facts come from
    builder: str  # "module:function" building the nn.Module (imported lazily)
    builder_args: tuple[Any, ...] = ()
    channels: int = 3
    published: dict[str, str] = field(default_factory=dict)  # figures quoted by the sources
    tail: str = ""  # "nms": the export ends in the measured inference tail (tilec.zoo.nms_tail)

    @property
    def seed(self) -> int:
        from tilec.zoo.weights import seed_for

        return seed_for(self.name)

    def factory(self) -> Callable[[], Any]:
        module_name, _, func = self.builder.partition(":")
        fn = getattr(importlib.import_module(module_name), func)
        return lambda: fn(*self.builder_args)

    def build(self, *, weights: bool = True, device: str | None = None) -> Any:
        """The ``nn.Module`` in eval mode.

        ``weights=True`` fills it with the model's fixed-seed weights and calibrated BN statistics
        (see :mod:`tilec.zoo.weights`); ``device="meta"`` builds the structure without allocating
        any weight (for counting parameters and MACs).
        """
        import torch

        if device is not None:
            with torch.device(device):
                model = self.factory()()
            return model.eval()
        if not weights:
            return self.factory()().eval()
        from tilec.zoo.weights import init_weights

        # Built on the meta device then given uninitialised storage: PyTorch's own default
        # initialisation (~1 s for P5) would be overwritten anyway; init_weights fills every
        # parameter and buffer.
        with torch.device("meta"):
            model = self.factory()()
        model.to_empty(device="cpu")
        init_weights(model, self.seed, calib_size=self.calibration_size)
        return model.eval()

    @property
    def calibration_size(self) -> int:
        """Image side of the BN calibration pass: the coarsest map is 4x4, so every BN's statistics
        come from enough samples (with 2x2, P6 / P7 outputs drift to ~1e3 at other sizes)."""
        return max(128, 4 * self.stride)

    def input_shape(self, image_size: int | tuple[int, int] | None = None,
                    batch: int = 1) -> tuple[int, int, int, int]:
        if image_size is None:
            h = w = self.default_image_size
        elif isinstance(image_size, int):
            h = w = image_size
        else:
            h, w = image_size
        return (batch, self.channels, h, w)


_SYOLO = "Scaled-YOLOv4 (Wang, Bochkovskiy, Liao, CVPR 2021), official yolov4-large configs"
_YOLO = "YOLOv4 (Bochkovskiy, Wang, Liao, 2020), darknet cfg"
_REPVGG = "RepVGG (Ding et al., CVPR 2021), training-time form"


def _repvgg(variant: str, desc: str, inference_params: str | None) -> ZooSpec:
    published = {"inference-form params": inference_params} if inference_params else {}
    return ZooSpec(
        name=f"repvgg-{variant}", default_image_size=224, stride=32,
        description=f"RepVGG-{variant.upper()} classifier, training-time 3-branch form{desc}",
        family="RepVGG", source=_REPVGG, builder="tilec.zoo.repvgg:build",
        builder_args=(variant,), published=published,
    )


SPECS: tuple[ZooSpec, ...] = (
    ZooSpec("yolov4-p5", 896, 32,
            "Scaled-YOLOv4-P5 detector, Mish, 3 levels (the benchmark model)",
            "Scaled-YOLOv4", _SYOLO, "tilec.zoo.scaled_yolov4:ScaledYOLOv4", (3, 1.0),
            published={"params": "70,834,012", "GMACs": "~163 at 896"}),
    ZooSpec("yolov4-p5-nms", 896, 32,
            "Scaled-YOLOv4-P5 as measured on the GC200: uint8 input, box decode, pre-NMS top-k "
            "2000 and NMS to 300 detections on the chip (Graphcore's port)",
            "Scaled-YOLOv4", _SYOLO + "; tail: graphcore/examples vision/yolo_v4/pytorch",
            "tilec.zoo.scaled_yolov4:ScaledYOLOv4", (3, 1.0),
            published={"params": "70,834,012", "GMACs": "~163 at 896"}, tail="nms"),
    ZooSpec("yolov4-p6", 1280, 64,
            "Scaled-YOLOv4-P6 detector, Mish, 4 levels (P5 + a stride-64 stage)",
            "Scaled-YOLOv4", _SYOLO, "tilec.zoo.scaled_yolov4:ScaledYOLOv4", (4, 1.0),
            published={"params": "~127.6M"}),
    ZooSpec("yolov4-p7", 1536, 128,
            "Scaled-YOLOv4-P7 detector, Mish, 5 levels, width x1.25",
            "Scaled-YOLOv4", _SYOLO, "tilec.zoo.scaled_yolov4:ScaledYOLOv4", (5, 1.25),
            published={"params": "~287.6M"}),
    ZooSpec("yolov4", 608, 32,
            "YOLOv4 detector: CSPDarknet53 (Mish) + SPP + PANet (leaky ReLU)",
            "YOLOv4", _YOLO, "tilec.zoo.yolov4:YOLOv4",
            published={"params": "~64.36M", "GMACs": "~64.2 at 608"}),
    ZooSpec("yolov4-tiny", 416, 32,
            "YOLOv4-tiny detector, leaky ReLU, channel-split routes, 2 levels",
            "YOLOv4", _YOLO, "tilec.zoo.yolov4:YOLOv4Tiny",
            published={"params": "~6.06M", "GMACs": "~3.45 at 416"}),
    _repvgg("a0", "", "8.30M"),
    _repvgg("a1", "", "12.78M"),
    _repvgg("a2", "", "25.49M"),
    _repvgg("b0", "", "14.33M"),
    _repvgg("b1", "", "51.82M"),
    _repvgg("b1g2", ", groups 2", "41.36M"),
    _repvgg("b1g4", ", groups 4", "36.12M"),
    _repvgg("b2", "", "80.31M"),
    _repvgg("b2g4", ", groups 4", "55.77M"),
    _repvgg("b3", "", None),
    ZooSpec("resnet50", 224, 32,
            "ResNet-50 v1.5 classifier (NorthPole's headline benchmark)",
            "ResNet", "ResNet (He et al., CVPR 2016)", "tilec.zoo.resnet:ResNet50",
            published={"params": "25,557,032", "GMACs": "~4.1 at 224"}),
)

_BY_NAME = {s.name: s for s in SPECS}


def names() -> list[str]:
    """The zoo's model names, in catalogue order."""
    return [s.name for s in SPECS]


def spec(name: str) -> ZooSpec:
    """The spec of ``name``; an unknown name is an :class:`InputError` listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(f"{name}: not a built-in model (built-in: {', '.join(names())})"
                         ) from None
