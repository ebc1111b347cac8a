"""IPU costs of on-device detection post-processing: ONNX ``TopK`` and ``NonMaxSuppression``.

Kept apart from :mod:`targets.ipu` (the convolution planner lives there): these are loops of many
small supersteps, priced from how Poplar runs them, not from the AMP.

**TopK** is PopLibs' bitonic top-k (graphcore/poplibs ``lib/popops/BitonicTopK.cpp``,
``topKImpl``; PopTorch lowers ``torch.topk`` to ``popops::topKWithPermutation``). With
``logN = ceil(log2 n)`` and ``logK = ceil(log2 k)`` it runs, for each of ``logN`` merge steps, one
compare-and-swap compute set plus ``min(step, logK)`` re-sort compute sets; once sorted runs of
``k' = 2^logK`` exist, every merge keeps the better half, so the active length falls towards
``k'``. Each compute set is preceded by a rearrangement copy of the active keys and values into
that step's layout (``rearrangeForStep``) and spread over every tile (``allocate``:
``ceil(comparisons / tiles)`` per tile). Half keys are cast to float first, and the index values
are an iota: two more compute sets, and one to cast the values back. At 896 px (n = 65,856,
k = 2,000) that is 138 compare-and-swap steps: ~141 supersteps, which is what makes the top-k
cost ~0.1 ms on a chip that does its arithmetic in microseconds.

**NonMaxSuppression** is Graphcore's NMS custom op of the measured pipeline (graphcore/examples
``vision/yolo_v4/pytorch/utils/custom_ops/nms/nms.cpp``, ``nmsMulti``): a
``RepeatWhileTrue`` loop that, per kept detection, runs popnn ``maxAndArgMax`` over the scores
(``lib/popnn/Loss.cpp``: one compute set of per-worker partials, then one per 32-fold reduction
of the partials), copies the best score to the loop condition, gathers the best box, updates the
scores, writes the answer, suppresses overlapping boxes (``NmsMultiVertex``: an IoU per box),
increments the counter and evaluates the condition (``ConditionVertex``): ``stages + 7``
supersteps per iteration. The loop ends after ``nms_max_detections`` iterations *or as soon as an
image's best remaining score falls below the threshold*, so its length depends on the images: the
target's ``[compute] nms_iterations`` (a modelling choice, see gc200.toml) is the number of
iterations assumed, capped by the op's maximum output. Before the loop the inputs are copied into
the op's layouts (scores as float, boxes transposed for the gather); after it one reduction
(``reduceLengths``).

Both are flat splits over the op's tiles (``elements``); Poplar maps their tensors linearly over
the IPU. Code, vertex state and exchange code: ``bytes_per_compute_set`` per compute set compiled
(a loop body is compiled once), on every tile the op spans.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tilec.costmodel import OpCost, Split
from tilec.opinfo import OpInfo

from .base import nonzero
from .geometry import cdiv, numel

if TYPE_CHECKING:
    from .ipu import IpuCostModel

INDEX_BYTES = 4
"""Index tensors on the IPU are 32-bit (Poplar's INT / UNSIGNED_INT; PopTorch runs int64 as int32),
as are the top-k keys it sorts (half keys are cast to FLOAT by ``topKImpl``)."""
KEY_BYTES = 4
WORKERS = 6  # hw: "worker threads 6 per tile"; one arg-max partial per worker (Loss.cpp)
ARGMAX_FANIN = 32  # popnn Loss.cpp maxMinArgMaxMin: partialsSize = 32 per later-stage vertex
NMS_SETS_PER_ITERATION = 7
"""Per NMS iteration besides the arg-max stages: the best-score copy into the condition, gather,
updateBest, updateAnswer, Nms, incrementI and the condition itself (nms.cpp ``nmsMulti``)."""
NMS_SETS_OUTSIDE = 3  # the copies into the op's layouts before the loop, then reduceLengths (2)
BROADCAST_BYTES = 4 + 4 + 16  # per iteration every tile reads the best index, score and box


def ceil_log2(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


def bitonic_steps(n: int, k: int) -> list[int]:
    """Active length (per row) at each compare-and-swap step of PopLibs' bitonic top-k
    (``topKImpl``): per merge step one merge and ``min(step, logK)`` re-sorts; after the sorted
    runs reach ``k'`` the better half of each pair of runs is kept. (The re-sort's own trimming
    towards exactly k is left out: it only shortens the last few steps.)"""
    if n <= 1 or k <= 0:
        return []
    log_n, log_k = ceil_log2(n), ceil_log2(k)
    kd = 1 << log_k
    steps: list[int] = []
    for merge in range(log_n):
        dist = min(merge, log_k)
        steps.append(n)
        if dist >= log_k and n > kd:
            pairs = n // (2 * kd)
            n = pairs * kd + min(n - pairs * 2 * kd, kd)
        steps.extend([n] * dist)
    return steps


def topk_cost(m: IpuCostModel, op: OpInfo, split: Split) -> OpCost:
    """Bytes and cycles of a bitonic top-k on ``split.tiles`` tiles (see the module docstring)."""
    t = max(1, split.tiles)
    shape = op.in_shapes[0] if op.in_shapes else (1,)
    axis = int(op.attrs.get("axis", -1)) % max(1, len(shape))
    n = int(shape[axis]) if shape else 1
    rows = max(1, numel(shape) // max(1, n))
    k = int(op.out_shapes[0][axis]) if op.out_shapes else n
    abytes = cdiv(op.act_bits, 8)
    sorted_ = int(op.attrs.get("sorted", 1))
    steps = [] if (k == n and not sorted_) else bitonic_steps(n, k)
    share = cdiv(n * rows, t)  # the input's elements on the busiest tile
    # per step: the tile's comparisons, and the active keys + values rearranged into its layout
    compute = exchange = 0
    for active in steps:
        compute += math.ceil(cdiv((active // 2) * rows, t) * m.vops("TopK"))
        exchange += m._xcycles(cdiv(active * rows, t) * (KEY_BYTES + INDEX_BYTES))
    # cast keys to float, iota of the indices, cast the values back (topKWithPermutation)
    compute += m._vector_cycles(share, 1, "fp32") * 2 + m._vector_cycles(cdiv(k * rows, t), 1,
                                                                          "fp32")
    sets = len(steps) + 3
    recv = share * abytes
    out_share = cdiv(k * rows, t)
    return OpCost(
        split=split,
        always=nonzero(**m.overhead(sets)),
        # the input received; keys and values in this step's layout and the next's
        step=nonzero(act_in=recv, temp=2 * share * (KEY_BYTES + INDEX_BYTES)),
        outputs=(out_share * abytes, out_share * INDEX_BYTES)[:len(op.out_shapes)],
        compute_cycles=compute + (sets - 1) * m.superstep,
        exchange_cycles=exchange + m._xcycles(recv),
    )


def argmax_stages(elements_per_row: int, tiles_per_row: int) -> int:
    """Compute sets of popnn ``maxAndArgMax`` over one row: per-worker partials, then 32-fold
    reductions of them until one is left (Loss.cpp ``maxMinArgMaxMin``)."""
    partials = max(1, min(elements_per_row, tiles_per_row * WORKERS))
    stages = 1
    while partials > 1:
        partials = cdiv(partials, ARGMAX_FANIN)
        stages += 1
    return stages


def nms_iterations(m: IpuCostModel, op: OpInfo) -> int:
    """Loop iterations priced: the target's assumption, capped by the op's largest output per
    image (``max_output_boxes_per_class`` x classes, bounded at capture)."""
    boxes = op.in_shapes[0] if op.in_shapes else (1, 1, 4)
    batch = max(1, int(boxes[0]))
    rows = int(op.out_shapes[0][0]) if op.out_shapes else 0
    return max(0, min(m.nms_iterations, rows // batch))


def nms_cost(m: IpuCostModel, op: OpInfo, split: Split) -> OpCost:
    """Bytes and cycles of the NMS loop on ``split.tiles`` tiles (see the module docstring)."""
    t = max(1, split.tiles)
    boxes = op.in_shapes[0] if op.in_shapes else (1, 1, 4)
    scores = op.in_shapes[1] if len(op.in_shapes) > 1 else (1, 1, boxes[1])
    batch, n = int(boxes[0]), int(boxes[1])
    classes = int(scores[1]) if len(scores) == 3 else 1
    abytes = cdiv(op.act_bits, 8)
    iters = nms_iterations(m, op)
    score_share = cdiv(batch * classes * n, t)  # scores on the busiest tile
    box_share = cdiv(batch * n, t)
    stages = argmax_stages(classes * n, max(1, t // max(1, batch)))
    per_iter_sets = stages + NMS_SETS_PER_ITERATION
    # per iteration on the busiest tile: its arg-max partials (float scores, 2 per cycle), the
    # later stages' 32-wide reductions, and an IoU per box it holds (scalar codelet)
    per_iter = (m._vector_cycles(score_share, 1, "fp32") + (stages - 1) * ARGMAX_FANIN
                + math.ceil(box_share * m.vops("NonMaxSuppression")))
    supersteps = iters * per_iter_sets + 1 + NMS_SETS_OUTSIDE  # +1: the final condition
    # exchange: the inputs into the op's layouts once; per iteration the partials into the
    # reducing tiles and the best index / score / box to every tile
    copy_in = score_share * KEY_BYTES + box_share * 4 * KEY_BYTES
    per_iter_recv = ARGMAX_FANIN * (KEY_BYTES + INDEX_BYTES) + BROADCAST_BYTES
    out_rows = int(op.out_shapes[0][0]) if op.out_shapes else 0
    out_share = cdiv(out_rows * 3, t) * INDEX_BYTES
    answer = cdiv(batch * max(1, out_rows // max(1, batch)) * (1 + 1 + 4 + 1), t) * KEY_BYTES
    recv = score_share * abytes + box_share * 4 * abytes
    return OpCost(
        split=split,
        always=nonzero(**m.overhead(per_iter_sets + NMS_SETS_OUTSIDE)),  # the body compiles once
        # inputs received; the float score copy, the transposed boxes and the answer buffers
        # (indices, scores, boxes, classes, lengths) live while the loop runs
        step=nonzero(act_in=recv, temp=copy_in + answer),
        outputs=(out_share,) + (0,) * (len(op.out_shapes) - 1),
        compute_cycles=iters * per_iter + (supersteps - 1) * m.superstep,
        exchange_cycles=m._xcycles(recv) + m._xcycles(copy_in)
        + iters * m._xcycles(per_iter_recv),
    )


__all__ = ["argmax_stages", "bitonic_steps", "ceil_log2", "nms_cost", "nms_iterations",
           "topk_cost"]
