"""Per-channel affine maths shared by fold-bn and fuse-repvgg (not a pass).

Inference-mode BatchNormalization is the per-channel affine map
``y = gamma (x - mean) / sqrt(var + eps) + beta = t x + s`` with ``t = gamma / sqrt(var + eps)``
and ``s = beta - mean t``. A producer that is linear per output channel -- Conv, ConvTranspose,
Gemm -- absorbs it: scale its output channel ``o``'s weights by ``t[o]`` and map its bias ``b`` to
``t b + s``. All arithmetic is done in float64 and rounded once to the weight's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from . import _graph


@dataclass(frozen=True)
class Affine:
    """``y = scale * x + shift`` per channel (float64)."""

    scale: np.ndarray
    shift: np.ndarray

    def __getitem__(self, sl: slice) -> Affine:
        return Affine(self.scale[sl], self.shift[sl])


def bn_affine(node: gs.Node, outputs: set[str]) -> tuple[Affine | None, str]:
    """The affine map of an inference BatchNormalization, or (None, why it is not one)."""
    if not _graph.is_plain(node, "BatchNormalization") or len(node.inputs) < 5:
        return None, "not a BatchNormalization with 5 inputs"
    if int(node.attrs.get("training_mode", 0)):
        return None, "training_mode=1 (batch statistics, not a fixed affine map)"
    for extra in node.outputs[1:]:
        if extra.name and (extra.outputs or extra.name in outputs):
            return None, "its running-statistics outputs are read"
    values = [_graph.const(t) for t in node.inputs[1:5]]
    if any(v is None for v in values):
        return None, "scale/bias/mean/var are not constants"
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64).reshape(-1) for v in values)
    eps = float(node.attrs.get("epsilon", 1e-5))
    t = gamma / np.sqrt(var + eps)
    return Affine(t, beta - mean * t), ""


def _dtype(t: gs.Tensor) -> np.dtype:
    try:
        return np.dtype(t.dtype)
    except TypeError:
        return np.dtype(np.float32)


def _memo(memo: dict | None, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, shared between the model and its verification probe: both hold the very
    same weight arrays (see _verify), so the probe reuses the model's result instead of redoing
    the arithmetic. ``key[1]`` is the input array, compared by identity."""
    if memo is None:
        return compute()
    k = ("affine", key[0], id(key[1]), *key[2:])
    hit = memo.get(k)
    if hit is not None and hit[0] is key[1]:
        return hit[1]
    value = compute()
    memo[k] = (key[1], value)
    return value


def fold_into(node: gs.Node, aff: Affine, names: _graph.Names,
              memo: dict | None = None) -> str | None:
    """Fold ``aff`` (over ``node``'s output channels) into ``node``'s weights; None on success,
    else why it cannot be folded. New constants are created; shared weights are never modified.
    ``memo`` shares the arithmetic between the model and its verification probe."""
    op = node.op
    if not _graph.is_plain(node, "Conv", "ConvTranspose", "Gemm"):
        return f"producer is {node.op}, not Conv/ConvTranspose/Gemm"
    w_t = node.inputs[1] if len(node.inputs) > 1 else None
    w = _graph.const(w_t)
    if w is None or not np.issubdtype(w.dtype, np.floating):
        return "its weight is not a float constant (e.g. already quantized)"
    b_t = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    b = _graph.const(b_t) if b_t is not None else None
    if b_t is not None and b is None:
        return "its bias is not a constant"
    t, s = aff.scale, aff.shift
    dtype = _dtype(w_t)
    tw = t.astype(dtype)  # weights are scaled in their own precision: one rounding per element
    if op == "Conv":
        if w.shape[0] != t.size:
            return "channel count mismatch"
        new_w = _memo(memo, ("conv", w, tw.tobytes()),
                      lambda: w * tw.reshape((-1,) + (1,) * (w.ndim - 1)))
        bias = np.zeros(t.size) if b is None else b.astype(np.float64).reshape(-1)
        new_b = bias * t + s
    elif op == "ConvTranspose":
        g = int(node.attrs.get("group", 1))
        cin, cout_g = w.shape[0], w.shape[1]
        if cout_g * g != t.size:
            return "channel count mismatch"
        def scaled() -> np.ndarray:
            shaped = w.reshape((g, cin // g, cout_g, *w.shape[2:]))
            return (shaped * tw.reshape((g, 1, cout_g) + (1,) * (w.ndim - 2))).reshape(w.shape)
        new_w = _memo(memo, ("convtranspose", w, tw.tobytes(), g), scaled)
        bias = np.zeros(t.size) if b is None else b.astype(np.float64).reshape(-1)
        new_b = bias * t + s
    else:  # Gemm: Y = alpha * A' B' + beta * C, output features on the last axis
        if w.ndim != 2:
            return "Gemm weight is not 2-D"
        alpha = float(node.attrs.get("alpha", 1.0))
        beta = float(node.attrs.get("beta", 1.0))
        trans_b = int(node.attrs.get("transB", 0))
        n_out = w.shape[0] if trans_b else w.shape[1]
        if n_out != t.size:
            return "channel count mismatch"
        at = (alpha * t).astype(dtype)
        new_w = _memo(memo, ("gemm", w, at.tobytes(), trans_b),
                      lambda: w * at[:, None] if trans_b else w * at[None, :])
        if b is None:
            new_b = s.copy()
        else:
            c = beta * b.astype(np.float64)
            try:
                new_b = c * t + s  # broadcasts over the last axis, like Y's
            except ValueError:
                return "Gemm bias does not broadcast over the output features"
        node.attrs["alpha"] = 1.0
        node.attrs["beta"] = 1.0
    w_new = gs.Constant(names(f"{node.name}/W"), new_w.astype(dtype, copy=False))
    b_new = gs.Constant(names(f"{node.name}/B"), np.asarray(new_b).astype(dtype))
    node.inputs[1] = w_new
    if len(node.inputs) > 2:
        node.inputs[2] = b_new
    else:
        node.inputs.append(b_new)
    return None


def affine_node(name: str, x: gs.Tensor, y: gs.Tensor, aff: Affine,
                names: _graph.Names) -> list[gs.Node]:
    """Nodes computing ``y = aff(x)`` over channel axis 1.

    Rank >= 3: one depthwise 1x1 Conv (weight ``t``, bias ``s``, ``group = C``) -- a single op, so
    the planner charges one buffer, and fuse-activation can attach the following activation to
    it. Rank 2: ``Mul`` then ``Add``.
    """
    dtype = _dtype(x)
    c = aff.scale.size
    r = len(x.shape) if x.shape is not None else 4
    if r >= 3:
        kernel = aff.scale.reshape((c, 1) + (1,) * (r - 2))
        w = gs.Constant(names(f"{name}/W"), kernel.astype(dtype))
        b = gs.Constant(names(f"{name}/B"), aff.shift.astype(dtype))
        attrs = {"group": c, "kernel_shape": [1] * (r - 2)}
        return [gs.Node("Conv", name=name, attrs=attrs, inputs=[x, w, b], outputs=[y])]
    mid = gs.Variable(names(f"{name}/scaled"), dtype=dtype, shape=x.shape)
    t = gs.Constant(names(f"{name}/scale"), aff.scale.astype(dtype))
    s = gs.Constant(names(f"{name}/shift"), aff.shift.astype(dtype))
    return [gs.Node("Mul", name=name, inputs=[x, t], outputs=[mid]),
            gs.Node("Add", name=names(f"{name}/add"), inputs=[mid, s], outputs=[y])]
