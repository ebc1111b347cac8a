"""tilec: an ahead-of-time placement compiler for tiled-SRAM AI accelerators.

It answers, in seconds, whether a network fits a chip whose memory is split across many small tiles
(Graphcore IPU, IBM NorthPole), with a verified per-tile placement or a precise out-of-memory
diagnosis. Library entry points: :func:`capture` (front doors) and
:func:`tilec.compile.compile_model` (the whole pipeline).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def capture(model: Any, **kwargs: Any):  # re-exported; documented at tilec.capture.capture
    """Capture a model into tilec's graph form; see :func:`tilec.capture.capture`."""
    from tilec.capture import capture as _capture

    return _capture(model, **kwargs)
