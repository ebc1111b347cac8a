"""The monotone certificate (m) (``tilec/plan/ceiling.py``): it only grows with the batch and
the image size, and it is a lower bound -- term by term below (a)'s minima over the offered
splits, and below what a verified plan holds.

The monotonicity is argued in ceiling.py's docstring (a fixed family of sums of tensor sizes that
shape inference makes non-decreasing); these sweeps check that argument on the zoo, they do not
replace it. The search logic that closes on (m) is tested with scripted outcomes in
tests/test_whatif_headroom.py."""

from __future__ import annotations

from functools import cache
from itertools import pairwise

import pytest
from tilec.targets import load_target

from tilec.compile import CompileOptions, compile_model, reshaped
from tilec.plan.bounds import buffer_min_totals, chip_bound
from tilec.plan.ceiling import ceiling_bound, inputs_in_tiles
from tilec.plan.partition import partition
from tilec.plan.schedule import buffer_uses

BATCHES = tuple(range(1, 17))
SIZES = tuple(range(128, 1537, 64))


@cache
def _compiled(name: str, target: str = "gc200", precision: str | None = None):
    opts = {"batch": 1, "image_size": 224, "what_if": False}
    if precision:
        opts["precision"] = precision
    t = load_target(target)
    plan, lowered = compile_model(name, t, CompileOptions(**opts))
    return t, plan, lowered


def _m_sweep(name: str, configs: list[tuple[int, int]]) -> list[int]:
    t, _, lowered = _compiled(name)
    out = []
    for batch, size in configs:
        low = reshaped(lowered, batch, (size, size))
        assert low is not None, (name, batch, size)
        out.append(ceiling_bound(low.info, t).needed)
    return out


def _grows(xs: list[int]) -> bool:
    return all(b >= a for a, b in pairwise(xs))


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("yolov4-p5", 320), ("yolov4", 320), ("resnet50", 224),
                                       ("repvgg-a0", 224)])
def test_m_grows_with_the_batch(name: str, size: int) -> None:
    m = _m_sweep(name, [(b, size) for b in BATCHES])
    assert _grows(m), dict(zip(BATCHES, m, strict=True))
    assert m[-1] > m[0]  # activations are part of it: it does move


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov4-p5", "yolov4", "resnet50", "repvgg-a0"])
def test_m_grows_with_the_image_size(name: str) -> None:
    m = _m_sweep(name, [(1, s) for s in SIZES])
    assert _grows(m), dict(zip(SIZES, m, strict=True))
    assert m[-1] > m[0]


def test_m_grows_on_a_small_sweep() -> None:
    """The fast guard of the two sweeps above (ResNet-50, a few shapes)."""
    assert _grows(_m_sweep("resnet50", [(b, 224) for b in (1, 3, 8)]))
    assert _grows(_m_sweep("resnet50", [(1, s) for s in (96, 224, 480)]))


def _terms_below_a(name: str, target: str, batch: int, size: int,
                   precision: str | None = None) -> None:
    """Every term of (m) is at most (a)'s term for the same op or buffer: each op's weights
    below its smallest stored-weight total over the offered splits, each buffer's storage bytes
    below its smallest total -- so (m) <= (a) <= any plan's need. Also checks the cost model's
    ``stores_whole_tensors`` declaration on this model."""
    t, _, lowered = _compiled(name, target, precision)
    assert t.cost_model.stores_whole_tensors
    low = reshaped(lowered, batch, (size, size))
    assert low is not None
    info = low.info
    part = partition(info, t)
    for op in info.ops:
        w = sum(x.bytes for x in op.weights if not x.statistic)
        held = min(c.cost.always.get("weights", 0) * c.tiles + c.spread
                   for c in part.ops[op.name].proof)
        assert held >= w, (op.name, held, w)
    totals = buffer_min_totals(info, part, t)
    held_in = inputs_in_tiles(t)
    for root, use in buffer_uses(info).items():
        if root not in totals or (use.is_input and not held_in):
            continue
        assert totals[root] >= info.tensors[root].bytes, (root, totals[root])
    m = ceiling_bound(info, t)
    assert 0 < m.needed <= chip_bound(info, part, t).needed


@pytest.mark.parametrize("name,target,batch,size", [
    ("resnet50", "gc200", 1, 224), ("resnet50", "gc200", 8, 224),
    ("repvgg-a0", "gc200", 2, 320), ("resnet50", "northpole", 1, 224)])
def test_m_is_below_a_term_by_term(name: str, target: str, batch: int, size: int) -> None:
    _terms_below_a(name, target, batch, size)


@pytest.mark.slow
@pytest.mark.parametrize("batch,size,precision", [(1, 320, None), (13, 320, None),
                                                  (1, 896, None), (2, 320, "int8")])
def test_m_is_below_a_term_by_term_on_p5(batch: int, size: int, precision: str | None) -> None:
    _terms_below_a("yolov4-p5", "gc200", batch, size, precision)


@pytest.mark.parametrize("name", ["resnet50", "repvgg-a0"])
def test_m_is_below_a_verified_plan(name: str) -> None:
    """A fitting plan holds at least (m) at its worst step: its fullest tile times the tiles."""
    t, plan, lowered = _compiled(name)
    assert plan.status == "fits" and plan.verification.ok
    m = ceiling_bound(lowered.info, t)
    assert m.needed <= plan.memory.peak_bytes * int(t.tiles)
    assert not m.holds
