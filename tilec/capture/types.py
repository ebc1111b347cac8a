"""The result of capture, shared by every front door."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_graphsurgeon as gs


@dataclass
class Captured:
    """A captured model: the graph form with concrete shapes, and how it was obtained."""

    graph: gs.Graph
    name: str  # short model name (zoo name or file stem)
    source: str  # what the user gave: a path, "file.py:factory" or a zoo name
    batch: int
    image_size: tuple[int, int] | None  # (H, W) of the first NCHW input, if any
    input_shapes: dict[str, tuple[int, ...]]
    stride: int | None = None  # the network's total downsampling, where known
    opset: int = 0
    meta: dict[str, object] = field(default_factory=dict)
    # Wall-clock seconds per capture stage ("load", "check", "import", "infer", "fold", ...). Kept
    # apart from ``meta`` because timings must never reach deterministic outputs such as plan JSON.
    seconds: dict[str, float] = field(default_factory=dict)
