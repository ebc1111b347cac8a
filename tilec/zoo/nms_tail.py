"""The inference tail of Graphcore's Scaled-YOLOv4-P5 port, appended to a zoo export as ONNX ops.

The published GC200 latencies (``shared/calibration/gc200-scaled-yolov4-p5.toml``) were measured
on graphcore/examples ``vision/yolo_v4/pytorch`` in inference mode, which runs more on the IPU than
the network: images arrive as uint8 (``model.uint_io``), each detection head decodes its boxes
(``models/head/yolov4_head.py``), the predictions are filtered to the ``pre_nms_topk_k`` best
objectness scores (``utils/postprocessing.py``, ``nms_preprocessing``) and an NMS custom op
(``utils/custom_ops/nms``) returns at most ``nms_max_detections`` detections per image, which is all
that crosses back to the host. This module writes that tail with standard ONNX ops onto the
exported network (``yolov4-p5-nms`` in the zoo), so capture, the passes and the planner see the
pipeline that was timed:

* input ``images`` uint8 -> ``Cast`` -> ``Div`` 255 (the port's ``change_input_type``);
* per level: ``Reshape`` [B, 4, 85, h, w] -> ``Transpose`` [B, 4, h, w, 85] -> ``Sigmoid`` ->
  box decode (xy = (2 s - 0.5 + grid) x stride, wh = (2 s)^2 x anchor) -> [B, 4 h w, 85];
* boxes to corners, objectness ``TopK`` (k = min(pre_nms_topk_k, N): PopLibs' top-k needs
  k <= n, so at 128 px, where N = 1344, the port cannot have used 2000 either), ``Gather`` of the
  kept rows, class scores x objectness;
* ``NonMaxSuppression`` with ``max_output_boxes_per_class = nms_max_detections`` and a ``Gather``
  of (box, score, class) for each kept index: output ``detections`` [B * max_detections, 6].

One deviation, so that the result has a fixed size a static-graph compiler can allocate: each box
keeps its best class, and the classes are kept apart by offsetting the boxes by class x 4096 (the
same trick the port's own CPU path uses, ``max_image_dimension``), so one NMS "class" holds every
detection and at most ``nms_max_detections`` come out per image -- the capacity of the Graphcore
op's outputs. The Graphcore op instead suppresses over every (box, class) score; its per-iteration
arg-max then scans 80x more scores (2000 x 80 / 1472 tiles = 109 per tile, ~30 more cycles per
iteration next to the ~11,000 of its supersteps), which the cost model does not see.

TopK and NonMaxSuppression nodes carry the annotation ``tilec.on_device``: in this pipeline they
run on the chip, where by default (a file without it) tilec sends them to the host.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

# graphcore/examples vision/yolo_v4/pytorch configs/inference-yolov4p5.yaml (anchors, strides)
# and utils/config.py (inference defaults); benchmarks.yml varies k and max detections per size.
ANCHORS = (
    ((13, 17), (31, 25), (24, 51), (61, 45)),       # p3: (width, height) per anchor
    ((48, 102), (119, 96), (97, 189), (217, 184)),  # p4
    ((171, 384), (324, 451), (616, 618), (800, 800)),  # p5
)
STRIDES = (8, 16, 32)
PRE_NMS_TOPK = 2000  # config.inference.pre_nms_topk_k
MAX_DETECTIONS = 300  # config.inference.nms_max_detections
IOU_THRESHOLD = 0.65  # config.inference.iou_threshold
SCORE_THRESHOLD = 0.4  # configs/inference-yolov4p5.yaml class_conf_threshold
CLASS_OFFSET = 4096.0  # utils/postprocessing.py max_image_dimension
ON_DEVICE = "tilec.on_device"


class _Builder:
    """Appends nodes and constants to an ONNX graph with unique names under ``tail/``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.graph
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"tail/{stem}_{self.count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, outputs: int = 1,
           on_device: bool = False, **attrs: Any) -> list[str]:
        from onnx import helper

        node_name = self.name(stem or op_type.lower())
        outs = [f"{node_name}:{i}" for i in range(outputs)]
        node = helper.make_node(op_type, inputs, outs, name=node_name, **attrs)
        if on_device:
            node.metadata_props.add(key=ON_DEVICE, value=json.dumps(True))
        self.graph.node.append(node)
        return outs

    def one(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs: Any) -> str:
        return self.op(op_type, inputs, stem, **attrs)[0]

    def reshape(self, x: str, shape: list[int]) -> str:
        return self.one("Reshape", [x, self.const("shape", np.array(shape, dtype=np.int64))])

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        c = self.const
        return self.one("Slice", [x, c("starts", np.array([start], dtype=np.int64)),
                                  c("ends", np.array([end], dtype=np.int64)),
                                  c("axes", np.array([axis], dtype=np.int64))])

    def scalar(self, value: float) -> str:
        return self.const("scalar", np.array(value, dtype=np.float32))


def append_nms_tail(model: Any, batch: int, hw: tuple[int, int], num_classes: int = 80,
                    pre_nms_topk: int = PRE_NMS_TOPK, max_detections: int = MAX_DETECTIONS
                    ) -> Any:
    """Turn the exported Scaled-YOLOv4 ``model`` (one float input, one raw head output per level,
    finest first) into the measured pipeline (see the module docstring), in place."""
    from onnx import TensorProto, helper

    g = model.graph
    b = _Builder(model)
    outs = 4 + 1 + num_classes
    heads = [o.name for o in g.output]
    if len(heads) != len(STRIDES):
        raise ValueError(f"expected {len(STRIDES)} detection heads, found {len(heads)}")

    # uint8 images in, cast and scaled on the device (the port's change_input_type)
    old = g.input[0]
    images, scaled = old.name, "tail/images_float"
    for node in g.node:  # the network now reads the scaled float images
        for i, name in enumerate(node.input):
            if name == images:
                node.input[i] = scaled
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(images, TensorProto.UINT8,
                                                    [batch, 3, hw[0], hw[1]]))
    cast = b.one("Cast", [images], "to_float", to=TensorProto.FLOAT)
    b.graph.node.append(helper.make_node("Div", [cast, b.scalar(255.0)], [scaled],
                                         name="tail/normalise"))
    # the Cast / Div just appended must run first: move them to the front (topological order)
    moved = [g.node.pop(len(g.node) - 1) for _ in range(2)]
    for node in moved:
        g.node.insert(0, node)

    decoded = []
    for level, (head, stride, anchors) in enumerate(zip(heads, STRIDES, ANCHORS, strict=True)):
        h, w = hw[0] // stride, hw[1] // stride
        na = len(anchors)
        x = b.reshape(head, [batch, na, outs, h, w])
        x = b.one("Transpose", [x], perm=[0, 1, 3, 4, 2])
        s = b.one("Sigmoid", [x])
        xy = b.slice(s, 0, 2, 4)
        wh = b.slice(s, 2, 4, 4)
        rest = b.slice(s, 4, outs, 4)
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                             indexing="ij")
        grid = (np.stack([gx, gy], axis=-1) - 0.5).reshape(1, 1, h, w, 2).astype(np.float32)
        xy = b.one("Add", [b.one("Mul", [xy, b.scalar(2.0)]), b.const(f"grid{level}", grid)])
        xy = b.one("Mul", [xy, b.scalar(float(stride))])
        wh = b.one("Mul", [wh, b.scalar(2.0)])
        wh = b.one("Mul", [wh, wh])
        anchor = np.array(anchors, dtype=np.float32).reshape(1, na, 1, 1, 2)
        wh = b.one("Mul", [wh, b.const(f"anchors{level}", anchor)])
        level_preds = b.one("Concat", [xy, wh, rest], axis=4)
        decoded.append(b.reshape(level_preds, [batch, na * h * w, outs]))
    n = sum(len(a) * (hw[0] // s) * (hw[1] // s) for a, s in zip(ANCHORS, STRIDES, strict=True))
    preds = b.one("Concat", decoded, "predictions", axis=1)

    # nms_preprocessing: corners, objectness top-k, gather the kept rows
    xy = b.slice(preds, 0, 2, 2)
    half = b.one("Mul", [b.slice(preds, 2, 4, 2), b.scalar(0.5)])
    corners = b.one("Concat", [b.one("Sub", [xy, half]), b.one("Add", [xy, half])], axis=2)
    objectness = b.reshape(b.slice(preds, 4, 5, 2), [batch, n])
    classes = b.slice(preds, 5, outs, 2)
    k = min(pre_nms_topk, n)
    values, indices = b.op("TopK", [objectness, b.const("k", np.array([k], dtype=np.int64))],
                           "pre_nms_topk", outputs=2, on_device=True, axis=1, largest=1,
                           sorted=1)
    keep = b.one("Cast", [b.one("Greater", [values, b.scalar(SCORE_THRESHOLD)])],
                 to=TensorProto.FLOAT)
    values = b.one("Mul", [values, keep])
    offsets = (np.arange(batch, dtype=np.int64) * n).reshape(batch, 1)
    rows = b.reshape(b.one("Add", [indices, b.const("batch_offsets", offsets)]), [batch * k])
    boxes = b.reshape(b.one("Gather", [b.reshape(corners, [batch * n, 4]), rows], axis=0),
                      [batch, k, 4])
    scores = b.reshape(b.one("Gather", [b.reshape(classes, [batch * n, num_classes]), rows],
                             axis=0), [batch, k, num_classes])
    scores = b.one("Mul", [scores, b.reshape(values, [batch, k, 1])])
    best = b.one("ReduceMax", [scores, b.const("axes", np.array([2], dtype=np.int64))],
                 keepdims=1)
    label = b.one("Cast", [b.one("ArgMax", [scores], axis=2, keepdims=1)], to=TensorProto.FLOAT)

    # NMS: classes kept apart by a coordinate offset, one NMS "class" of k boxes per image
    shifted = b.one("Add", [boxes, b.one("Mul", [label, b.scalar(CLASS_OFFSET)])])
    c = b.const
    selected = b.one("NonMaxSuppression", [
        shifted, b.reshape(best, [batch, 1, k]),
        c("max_detections", np.array([max_detections], dtype=np.int64)),
        c("iou_threshold", np.array([IOU_THRESHOLD], dtype=np.float32)),
        c("score_threshold", np.array([SCORE_THRESHOLD], dtype=np.float32))],
        "nms", on_device=True)
    image = b.slice(selected, 0, 1, 1)
    box = b.slice(selected, 2, 3, 1)
    flat = b.one("Add", [b.one("Mul", [image, c("k", np.array(k, dtype=np.int64))]), box])
    table = b.reshape(b.one("Concat", [boxes, best, label], axis=2), [batch * k, 6])
    detections = b.one("Gather", [table, b.reshape(flat, [-1])], "detections", axis=0)
    out = b.one("Identity", [detections], "output")
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    return model
