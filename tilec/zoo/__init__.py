"""The model zoo: reference networks built in PyTorch with fixed-seed weights, usable by name.

No weights or model files can be downloaded where tilec runs, so the zoo is both the default input
users try first (``tilec compile yolov4-p5 --target gc200``) and the project's main test input:

* ``yolov4-p5`` / ``-p6`` / ``-p7`` -- Scaled-YOLOv4 (:mod:`tilec.zoo.scaled_yolov4`);
* ``yolov4``, ``yolov4-tiny`` -- darknet YOLOv4 (:mod:`tilec.zoo.yolov4`);
* ``repvgg-*`` -- RepVGG in training-time form (:mod:`tilec.zoo.repvgg`);
* ``resnet50`` (:mod:`tilec.zoo.resnet`).

API: :func:`names`, :func:`spec` (a :class:`ZooSpec`: default size, stride, description,
``build()``), :func:`export` (a cached ONNX file), :func:`model_stats` (parameters / MACs from meta
tensors). Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

from tilec.zoo.registry import SPECS, ZooSpec, names, spec

__all__ = ["SPECS", "ZooSpec", "build", "cache_dir", "export", "model_stats", "names", "spec"]


def build(name: str, *, weights: bool = True) -> Any:
    """The ``nn.Module`` of zoo model ``name`` (eval mode, fixed-seed weights)."""
    return spec(name).build(weights=weights)


def export(name: str, **kwargs: Any):
    """Path of the cached ONNX export of ``name``; see :func:`tilec.zoo.cache.export`."""
    from tilec.zoo.cache import export as _export

    return _export(name, **kwargs)


def cache_dir(create: bool = True):
    """The zoo's export cache directory; see :func:`tilec.zoo.cache.cache_dir`."""
    from tilec.zoo.cache import cache_dir as _cache_dir

    return _cache_dir(create)


def model_stats(name: str, image_size: Any = None):
    """Parameters and MACs of ``name`` from meta tensors; see :mod:`tilec.zoo.stats`."""
    from tilec.zoo.stats import model_stats as _model_stats

    return _model_stats(name, image_size)
