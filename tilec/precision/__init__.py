"""``--precision auto``: a per-layer precision map chosen to fit with the least measured error.

Three parts, one module each (docs/passes.md, "Automatic precision"):

* :mod:`~tilec.precision.sensitivity` -- how much each layer's quantization costs the model's
  outputs: *measured* (one layer at a time on onnxruntime at the proof's probe size, seeded
  inputs, relative L2 and max-abs error of the final outputs; cached on disk per model) or the
  *entropy* proxy (EAGL: the information the lower bit width discards from the layer's weight
  distribution);
* :mod:`~tilec.precision.knapsack` -- the memory each layer's choice costs, from the target's own
  cost model through the planner's partition (the terms of the certificates (a) and (b), per
  layer and precision), and the multiple-choice knapsack CP-SAT solves over them;
* :mod:`~tilec.precision.auto` -- the driver: sensitivity, knapsack, a full verified plan to
  confirm, tighten and re-solve when the plan still does not fit, and the result.
"""

from __future__ import annotations

AUTO = "auto"


def is_auto(precision: str | None) -> bool:
    """Does ``--precision`` ask for the automatic per-layer choice (``auto`` or ``auto:FLOOR``)?"""
    return isinstance(precision, str) and (precision == AUTO or precision.startswith(AUTO + ":"))
