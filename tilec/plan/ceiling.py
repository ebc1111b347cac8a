"""(m): a monotone ceiling certificate -- a lower bound on the chip's bytes that can only grow
with the batch and the image size, so that one value it rules out rules out every larger one.

Why a separate bound. (a) and (b) (:mod:`tilec.plan.bounds`) take each op at its cheapest
*offered* split, and which splits are offered depends on the shape (gc200's ``fastest`` window,
NorthPole's batch factors): they fall now and then as the shape grows (docs/planner.md, "Do the
bounds grow with the shape?"), so a value they rule out says nothing about the next one. (m) gives
up the cost model's splits altogether and counts only bytes no split can avoid:

* every op's **weights** (trained parameters, :func:`stored_weights`), at their storage bits:
  whatever the split, each weight element is stored somewhere on the chip for the whole run (a
  split stores its tile's slice, or -- spatial and batch splits -- a 1/tiles share; either way
  the op's tiles together hold all of it);
* at op ``i``, every **activation buffer** necessarily live there (the same dependence argument as
  (a): written by ``i`` or an ancestor of ``i`` and read by ``i`` or a descendant, or a model
  output that stays in tile memory), at its storage bytes (``elements x bits / 8``): its holder's
  tiles together hold every element at least once, whatever the split (a model input: the host
  streams it into a variable over its first reader's tiles, each holding its share).
  The first input of ``i`` is left out when no descendant reads it (``i`` might overwrite it in
  place -- taken for every op, whatever the cost model says at this shape, so the set does not
  depend on the shape).

(m) = max over ops of weights + live activations; it rules a value out when it exceeds
``tiles x budget_per_tile``. Valid because each term is at most (a)'s term for the same buffer or
op (a per-tile share times the tile count is at least the whole: ``ceil(x / t) * t >= x``), and
(a) is at most any plan's need. ``tests/test_ceiling.py`` checks both on the zoo.

Why it only grows (by construction, not by measurement). For one what-if the graph is the
compiled graph re-shaped (``tilec.compile.reshaped``: same ops, same edges, same views and
in-place concats; only the shapes are inferred again). So the ops, the buffers and the live sets
above are the same at every batch and image size; the weights do not change; the only thing that
moves is each activation's element count, and shape inference makes every one non-decreasing in
the batch and the input's height and width (a conv or pool's output ``floor((h + pads - k) / s) +
1``, a resize's ``h x scale``, concat sums, elementwise ops keep their input's shape; an op whose
output were fixed -- a baked Reshape -- cannot be re-shaped, and the what-if captures again). A
maximum of sums of non-decreasing terms over a fixed family is non-decreasing. The live-set rule
uses the graph only (no ``in_place`` flag, no split), which is what keeps it fixed.

The price: no vertex state, code, exchange or temporaries (those depend on the split), so (m) is
weaker than (a) -- YOLOv4-P5 on gc200 at 320 px: figures in docs/planner.md. The what-if uses it
only to close an upward search (:func:`tilec.plan.whatif_search._largest_up`): the values between
the answer and (m)'s ceiling are each proven by (a)/(b)/(c) or a plan, and (m) covers the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo
from tilec.plan.bounds import _closure, use_masks
from tilec.plan.problem import outputs_stay
from tilec.plan.schedule import buffer_uses


@dataclass(frozen=True)
class Ceiling:
    """(m) at one shape: the bytes needed at its worst op, the chip's capacity, and why."""

    needed: int
    capacity: int
    op: str | None
    weights: int
    live: int

    @property
    def holds(self) -> bool:
        """Above the chip: this shape and every larger one cannot fit."""
        return self.needed > self.capacity


def stored_weights(info: GraphInfo) -> int:
    """The weights (m) counts: every trained parameter's storage bytes. Operands that only
    configure an op (``WeightInfo.statistic``: a Resize's scales, a Clip's bounds) are left out --
    a cost model may fold them into the op's code (the IPU's resize stores none of its 8 B of
    scales; caught by tests/test_ceiling.py), and leaving bytes out keeps the bound a bound."""
    return sum(w.bytes for op in info.ops for w in op.weights if not w.statistic)


def inputs_in_tiles(target: Target) -> bool:
    """Are model inputs held in tile memory? Only with the cost model's ``input_bytes`` hook and
    host I/O: a framebuffer target (NorthPole) keeps them outside tile memory."""
    return outputs_stay(target) and getattr(target.cost_model, "input_bytes", None) is not None


def ceiling_bound(info: GraphInfo, target: Target) -> Ceiling:
    """(m) for ``info`` on ``target`` (no partition: nothing here depends on a split)."""
    capacity = int(target.tiles) * int(target.budget_per_tile)
    weights = stored_weights(info)
    if not info.ops:
        return Ceiling(weights, capacity, None, weights, 0)
    bit, anc, desc = _closure(info)
    stay = outputs_stay(target)
    held_in = inputs_in_tiles(target)
    bufs = []
    for root, u in buffer_uses(info).items():
        w, rd = use_masks(u, bit)
        if not (u.is_input or w):
            continue  # written by nothing but views: no buffer of its own ((a) skips it too)
        if u.is_input and not held_in:
            continue  # the target keeps model inputs out of tile memory
        bufs.append((root, info.tensors[root].bytes, w, rd, u.is_input, u.is_output))
    best_op, best_live = None, -1
    for op in info.ops:
        i = op.name
        me = 1 << bit[i]
        first = info.root(op.inputs[0]) if op.inputs else None
        live = 0
        for root, size, w, rd, is_in, is_out in bufs:
            written = is_in or bool(w & (anc[i] | me))
            if not written:
                continue
            kept = stay and is_out and bool(w & (anc[i] | me))
            if not (rd & (desc[i] | me)) and not kept:
                continue
            if root == first and not (rd & desc[i]) and not kept:
                continue  # i may overwrite it in place
            live += size
        if live > best_live:
            best_op, best_live = i, live
    return Ceiling(weights + best_live, capacity, best_op, weights, best_live)
