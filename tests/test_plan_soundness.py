"""Regression tests for unsound "does not fit" claims found by auditing the planner.

Each case fits (checked by the planner itself and by an exhaustive search), yet an earlier
planner reported it as proven not to fit, or crashed while trying to prove it:

* pruning a split as "dominated" by one with fewer tiles ignored the model input the op holds on
  its tiles (fewer tiles, more input bytes on each);
* it also ignored the ops that follow the op onto its tiles (a follower offering only the pruned
  tile count left its group without any option to prove over);
* a model input was held on the tiles of its first reader even when that reader was a view (one
  tile, no bytes), so an input larger than a tile "could not fit" anywhere.

Also here: the independent re-check of proofs (c), a bound contradicted by a verified plan, and
plans independent of the hash seed.
"""

from __future__ import annotations

import pytest
from plan_fixtures import OpSpec, toy_graph, toy_target

from tilec.plan.cpsat import SolveSettings
from tilec.plan.geometry import Geometry
from tilec.plan.model import STATUS_FITS
from tilec.plan.partition import partition
from tilec.plan.pipeline import Options, run
from tilec.plan.problem import build_problem
from tilec.plan.proof import prove
from tilec.plan.schedule import schedule
from tilec.plan.verify import verify

FAST = Options(settings=SolveSettings(time_limit=10, deterministic_limit=1.0, workers=1))


def test_split_holding_a_model_input_is_not_pruned_by_a_narrower_one():
    # x (10 bytes) sits on A's tiles: 10 per tile on 1 tile, 5 on 2; A's own bytes are the same
    # on both, so "1 tile dominates 2 tiles" -- unless the input is counted. Budget 8: only the
    # 2-tile split fits (5 + 1 output byte).
    info = toy_graph([OpSpec("a", ["x"], ["ta"], {1: (0, 0, 1, 5), 2: (0, 0, 1, 5)})],
                     sizes={"x": 10})
    target = toy_target(4, 8, input_io=True)
    oc = partition(info, target).ops["a"]
    assert [c.tiles for c in oc.proof] == [1, 2]
    assert 2 in [c.tiles for c in oc.search]
    out = run(info, target, options=FAST)
    assert out.plan.status == STATUS_FITS, out.plan.diagnosis.evidence.summary
    x = next(b for b in out.plan.buffers if b.owner == "x")
    assert x.bytes == 5 and x.tiles == out.plan.ops[0].tiles
    assert verify(out.plan, info, target).ok


def _leader_follower():
    # L on 1 tile memory-dominates L on 2 tiles, but F (which runs on L's tiles with L's tile
    # count) only offers 2 tiles: the group's only option is L2 + F2, which fits easily.
    return toy_graph([
        OpSpec("L", ["x"], ["tl"], {1: (1, 0, 1, 10), 2: (2, 0, 1, 5)}),
        OpSpec("F", ["tl"], ["tf"], {2: (0, 0, 1, 1)}, attrs={"follows": True}),
    ])


@pytest.mark.parametrize("exact_limit", [64, 0], ids=["exact", "aggregate"])
def test_group_leader_keeps_the_tile_counts_of_its_followers(exact_limit):
    info = _leader_follower()
    target = toy_target(4, 50)
    part = partition(info, target)
    assert [c.tiles for c in part.ops["L"].proof] == [1, 2]
    prob = build_problem(info, target, schedule(info), part)
    assert [len(g.proof_options) for g in prob.groups] == [1]
    geo = Geometry(target.tiles, target.grid, target.placement, exact_limit=exact_limit)
    proof = prove(prob, geo, SolveSettings(workers=1))
    assert not proof.proven


def test_group_without_proof_options_proves_nothing():
    """A group whose option list is empty must not make CP-SAT "prove" infeasibility (or
    crash): exactly one of no options is infeasible for reasons unrelated to memory."""
    info = _leader_follower()
    target = toy_target(4, 50)
    prob = build_problem(info, target, schedule(info), partition(info, target))
    prob.groups[0].proof_options = ()
    for exact_limit in (64, 0):
        geo = Geometry(target.tiles, target.grid, target.placement, exact_limit=exact_limit)
        proof = prove(prob, geo, SolveSettings(workers=1))
        assert not proof.proven and not proof.complete


def test_view_does_not_hold_a_model_input():
    # x (12 bytes) -> view -> conv on 4 tiles: the input fits at 3 bytes per tile on the conv's
    # tiles; on the view's single tile it would need 12 > budget 10.
    info = toy_graph([
        OpSpec("v", ["x"], ["xv"], kind="view"),
        OpSpec("c", ["xv"], ["tc"], {4: (1, 0, 1, 5)}),
    ], sizes={"x": 12, "xv": 12}, views={"xv": "x"})
    target = toy_target(4, 10, input_io=True)
    out = run(info, target, options=FAST)
    assert out.plan.status == STATUS_FITS, out.plan.diagnosis.evidence.summary
    xb = next(b for b in out.plan.buffers if b.owner == "x")
    conv = next(o for o in out.plan.ops if o.name == "c")
    assert xb.tiles == conv.tiles and xb.bytes == 3 and conv.held_inputs == {"x": 3}
    assert sorted(xb.tensors) == ["x", "xv"]
    assert verify(out.plan, info, target).ok


@pytest.mark.parametrize("exact_limit", [64, 0], ids=["exact", "aggregate"])
def test_independent_recheck_refuses_a_wrong_model(monkeypatch, exact_limit):
    """A bug in the code the proof models share (simulated: every option's profile 3x too
    heavy) fools the first model and its fresh copy, but not recheck.py's model, which sums the
    bytes from the candidates itself: no proof is claimed."""
    from tilec.plan.problem import GroupOption

    info = toy_graph([OpSpec("a", ["x"], ["ta"], {1: (2, 0, 2, 5)}),
                      OpSpec("b", ["ta"], ["tb"], {1: (2, 0, 2, 5)})])
    target = toy_target(4, 10)
    prob = build_problem(info, target, schedule(info), partition(info, target))
    geo = Geometry(target.tiles, target.grid, target.placement, exact_limit=exact_limit)
    assert not prove(prob, geo, SolveSettings(workers=1)).proven
    original = GroupOption.profile
    monkeypatch.setattr(GroupOption, "profile",
                        lambda self, intervals, steps: original(self, intervals, steps) * 3)
    proof = prove(prob, geo, SolveSettings(workers=1))
    assert proof.status == "INFEASIBLE" and proof.recheck_status == "INFEASIBLE"
    assert not proof.proven and not proof.rechecked
    assert proof.independent_status != "INFEASIBLE"
    assert "independent re-check did not confirm" in proof.notes[0]


def test_a_bound_refuted_by_a_verified_plan_is_an_internal_error(monkeypatch):
    """If a lower bound claimed "nothing fits" while the placer finds a plan the verifier
    accepts, the bound is wrong: the planner must not report "does not fit" on its word."""
    import tilec.plan.pipeline as pipeline
    from tilec.errors import InternalError
    from tilec.plan.bounds import Bound

    info = toy_graph([OpSpec("a", ["x"], ["ta"], {1: (2, 0, 2, 5)})])
    target = toy_target(4, 10)
    assert run(info, target, options=FAST).plan.status == STATUS_FITS
    monkeypatch.setattr(pipeline, "op_bound", lambda *a: Bound(
        "op_too_large", True, "a", 11, 10, {"split": "single", "tiles": 1}))
    with pytest.raises(InternalError, match="the bound is wrong"):
        run(info, target, options=FAST)


_HASH_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from plan_fixtures import csp_network, synth_ipu_target
from tilec.plan import plan_model
class O:
    time_limit = 30.0; what_if = True; seed = 0; workers = 2; progress = None
info = csp_network(batch=1, size=416, blocks=(1, 2, 3, 3, 2))
plan = plan_model(info, synth_ipu_target(60_000), options=O())
sys.stdout.write(plan.to_json())
"""


def test_plan_json_does_not_depend_on_the_hash_seed():
    """Set and dict orders must not leak into a plan: a CSP-like network that does not fit (so
    the diagnosis and the SRAM what-if's re-plans run too), planned in fresh interpreters with
    different PYTHONHASHSEED values, gives byte-identical JSON. (The zoo models were checked the
    same way through the CLI: yolov4-p5 on gc200 at batch 2, yolov4 and yolov4-p5 on
    NorthPole, yolov4-tiny on both.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = _HASH_SCRIPT.format(tests=str(Path(__file__).parent))
    outs = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=300, check=True)
        outs.append(done.stdout)
    assert '"status": "does_not_fit"' in outs[0] and '"what_if"' in outs[0]
    assert outs[1] == outs[0] and outs[2] == outs[0]
