"""What a first-time reader of a summary or a diagnosis would trip over, kept fixed.

* a label "tile T at step S (op)" must name an op that runs on tile T;
* the worst-* fields of a diagnosis describe one spot (no "tile 0 at step 1 (A), op B: needs
  <B's bound>" for an op-too-large verdict whose op peaks elsewhere);
* an op-too-large summary says how much of the bytes are the op's own and how much every tile
  holds anyway (NorthPole keeps the whole model's weights spread over every core);
* the what-if precision question reads as what it answers.
"""

from __future__ import annotations

import numpy as np
from report_fixtures import does_not_fit_plan, gc200_plan

from tilec.plan.bounds import Bound
from tilec.plan.diagnose import evidence_from_bound, locate, split_scope
from tilec.plan.model import Buffer, Evidence, OpPlacement
from tilec.report import data


def _op(name: str, step: int, tiles: list[list[int]]) -> OpPlacement:
    return OpPlacement(name=name, op_type="Conv", kind="conv", step=step, split={}, tiles=tiles,
                       inputs=[], outputs=[], always={}, step_bytes={}, output_bytes=[], macs=0,
                       compute_cycles=0, exchange_cycles=0)


def test_op_label_prefers_the_op_on_the_tile() -> None:
    plan = gc200_plan()
    step = next(s for s in plan.steps if plan.ops and s.ops)
    ops = {o.name: o for o in plan.ops}
    op = ops[step.ops[0]]
    on = op.tiles[0][0]
    assert data.op_at_step(plan, step.index, on).startswith(op.name)
    off = next(t for t in range(plan.target.tiles) if not any(a <= t < b for a, b in op.tiles))
    label = data.op_at_step(plan, step.index, off)
    assert label is not None and label.endswith(", not on this tile")
    assert data.op_at_step(plan, step.index) == (op.name if len(step.ops) == 1 else
                                                 f"{op.name} (+{len(step.ops) - 1} more)")


def test_op_too_large_worst_fields_describe_one_spot() -> None:
    """The (b) op peaks at step 1 on tiles 0-1; the best attempt's fullest spot is tile 3 at
    step 0, where op A runs. Every worst-* field must be about tile 3 / step 0 / A."""
    ops = [_op("A", 0, [[2, 4]]), _op("B", 1, [[0, 2]])]
    buffers = [Buffer(id="A/step", owner="A", kind="step", category="act_in", tiles=[[2, 4]],
                      bytes=90, first=0, end=1)]
    occ = np.array([[10, 20], [10, 20], [95, 5], [99, 5]])  # [tiles, steps]
    ev = Evidence(kind="op_too_large", summary="B is too large",
                  details={"op": "B", "needed": 500, "capacity": 80}, rechecked=True)
    d = locate(ev, ops, buffers, occ, budget=80)
    assert (d.worst_tile, d.worst_step, d.worst_op) == (3, 0, "A")
    assert (d.bytes_needed, d.over_by) == (99, 19)
    # without any placement the evidence's op and bound are all there is
    d = locate(ev, ops, [], None, budget=80)
    assert (d.worst_tile, d.worst_step, d.worst_op, d.bytes_needed) == (None, None, "B", 500)


def test_worst_op_is_the_one_running_on_the_worst_tile() -> None:
    ops = [_op("A", 0, [[0, 2]]), _op("B", 0, [[2, 4]])]
    occ = np.array([[1], [1], [1], [9]])
    ev = Evidence(kind="chip_capacity", summary="", details={}, rechecked=True)
    assert locate(ev, ops, [], occ, budget=5).worst_op == "B"


def _bound(spread: int, needed: int) -> Bound:
    return Bound(kind="op_too_large", holds=True, op="conv7", needed=needed, capacity=1000,
                 details={"split": "rows4", "tiles": 4, "spread_per_tile": spread})


def test_op_too_large_summary_separates_the_spread_bytes() -> None:
    plain = evidence_from_bound(_bound(0, 1500), 8, 1000, {}).summary
    assert plain.startswith("op 'conv7' needs at least 1,500 bytes on each of its tiles even at "
                            "its finest split (rows4 on 4 tiles)")
    mixed = evidence_from_bound(_bound(400, 1500), 8, 1000, {}).summary
    assert "needs at least 1,100 bytes" in mixed and "plus 400 bytes every tile holds" in mixed
    assert "1,500, more than the 1,000-byte budget" in mixed
    spread = evidence_from_bound(_bound(1200, 1500), 8, 1000, {}).summary
    assert spread.startswith("every tile holds at least 1,200 bytes spread over the whole chip")
    assert "on their own" in spread


def test_evidence_says_over_which_splits_it_holds() -> None:
    """Under the 'fastest' policy a bound holds only over the splits a speed-first compiler
    picks (the pareto policy can fit YOLOv4-P5 b2 on gc200): the summary must say so."""
    narrow = split_scope("gc200", "fastest", 0.10)
    ev = evidence_from_bound(_bound(0, 1500), 8, 1000, {}, narrow)
    assert ev.summary.endswith("-- with the splits gc200's policy 'fastest' allows (each op "
                               "within 10% of its fastest split, as its vendor compiler plans)")
    assert ev.details["claim"].startswith("in any schedule and placement, with the splits")
    every = split_scope("npx", "pareto", None)
    ev = evidence_from_bound(_bound(0, 1500), 8, 1000, {}, every)
    assert "policy" not in ev.summary  # nothing narrows the claim: the summary stays short
    assert ev.details["claim"].endswith("over every split npx's cost model offers")
    io = Bound(kind="op_too_large", holds=True, op=None, needed=40, capacity=32,
               details={"resource": "framebuffer"})
    ev = evidence_from_bound(io, 8, 1000, {}, narrow)  # no split changes the framebuffer's bytes
    assert "policy" not in ev.summary and "claim" not in ev.details


def test_precision_question_reads_as_what_it_answers() -> None:
    assert data.WHAT_IF_TITLES["min_precision"] == "highest precision that fits"
    assert data.WHAT_IF_TITLES["max_batch"] == "largest batch that fits"


def test_spot_groups_add_up_to_the_tile_bytes() -> None:
    plan = does_not_fit_plan()
    mem = plan.memory
    assert mem is not None
    here = data.spot(plan, mem.peak_tile, mem.peak_step)
    assert here is not None and here.total == mem.peak_bytes
    assert here.resident and all(n not in dict(here.running) for n, _ in here.resident)
    assert data.spot(plan, None, 3) is None


def test_throughput_unit_follows_the_model() -> None:
    """A sequence model (no image size) is not measured in images per second."""
    import io

    from rich.console import Console

    from tilec.report.terminal import print_plan

    plan = gc200_plan()
    for size, unit in ((plan.model.image_size, "images/s"), (None, "inferences/s")):
        plan.model.image_size = size
        buf = io.StringIO()
        print_plan(plan, Console(file=buf, width=200, color_system=None))
        assert unit in buf.getvalue()
