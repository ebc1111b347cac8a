"""diagnose: when the model does not fit, say where, by how much, and how sure we are.

The evidence comes from the stage that established it (bounds.py for (a) and (b), proof.py for
(c)); without any of those the verdict is (d), "unknown: search limit reached" -- never "does not
fit". The *where* comes from the best placement attempted (the least over-budget one): the worst
tile and superstep, the bytes there by category, the ops and tensors live there, and the top tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tilec.plan.bounds import Bound
from tilec.plan.model import Buffer, Diagnosis, Evidence, OpPlacement
from tilec.plan.proof import Proof


def fmt(n: int) -> str:
    return f"{n:,}"


class Scope(NamedTuple):
    """Over which splits a bound or proof holds, and whether that narrows the claim enough that
    its one-line summary must say so."""

    text: str
    narrows: bool


def split_scope(target_name: str, policy: str | None, slack: float | None) -> Scope:
    """All the splits the cost model offers -- which under the ``fastest`` policy are only those
    near each op's fastest: a claim about a compiler that plans for speed (as Poplar does), not
    about every conceivable placement."""
    if policy == "fastest":
        within = f"within {slack:.0%} of" if slack else "at"
        return Scope(f"with the splits {target_name}'s policy 'fastest' allows (each op {within} "
                     "its fastest split, as its vendor compiler plans)", True)
    return Scope(f"over every split {target_name}'s cost model offers", False)


def evidence_from_bound(b: Bound, tiles: int, budget: int, step_of: dict[str, int],
                        scope: Scope | None = None) -> Evidence:
    """Evidence (a) or (b) from a bound that holds; ``scope`` (:func:`split_scope`) says over
    which splits, and is appended to the one-line summary when the policy narrows them."""
    if b.details.get("resource") == "framebuffer":
        summary = (f"the model's inputs and outputs need {fmt(b.needed)} bytes of the I/O "
                   f"framebuffer, which holds {fmt(b.capacity)}")
    elif b.kind == "op_too_large":
        d = b.details
        spread = int(d.get("spread_per_tile") or 0)
        where = f"its finest split ({d.get('split')} on {d.get('tiles')} tiles)"
        if spread <= 0:
            summary = (f"op '{b.op}' needs at least {fmt(b.needed)} bytes on each of its tiles "
                       f"even at {where}, more than the {fmt(budget)}-byte budget per tile")
        elif spread > budget:  # the op hardly matters: the spread bytes alone overflow a tile
            summary = (f"every tile holds at least {fmt(spread)} bytes spread over the whole chip "
                       f"(weights and other bytes kept on every tile), more than the "
                       f"{fmt(budget)}-byte budget per tile on their own; with op '{b.op}' at "
                       f"{where}: {fmt(b.needed)} bytes")
        else:  # name both parts: the op's own bytes and what every tile carries anyway
            summary = (f"op '{b.op}' needs at least {fmt(b.needed - spread)} bytes on each of its "
                       f"tiles even at {where}, plus {fmt(spread)} bytes every tile holds spread "
                       f"over the chip: {fmt(b.needed)}, more than the {fmt(budget)}-byte budget "
                       "per tile")
    else:
        summary = (f"at op '{b.op}', at least {fmt(b.needed)} bytes must be live on the chip in "
                   f"any schedule, more than {tiles} tiles x {fmt(budget)} bytes = "
                   f"{fmt(b.capacity)}")
    splits_matter = b.details.get("resource") != "framebuffer"  # I/O bytes: no split helps
    if scope and scope.narrows and splits_matter:
        summary += f" -- {scope.text}"
    details = {"op": b.op, "needed": b.needed, "capacity": b.capacity,
               "over_by": b.needed - b.capacity, "step": step_of.get(b.op or ""),
               "schedule_independent": True, **b.details}
    if scope and splits_matter:
        details["claim"] = f"in any schedule and placement, {scope.text}"
    return Evidence(kind=b.kind, summary=summary, details=details, rechecked=True)


def evidence_from_proof(p: Proof, schedule_method: str, live: dict[int, list[str]],
                        order: Sequence[str], scope: Scope | None = None) -> Evidence:
    what = ("the exact per-tile model" if p.scope == "exact"
            else "a chip-level relaxation of the placement (totals per step, each op's own "
                 "tiles, the centre tile)")
    where = (f"steps {', '.join(str(s) for s in p.steps)}" if p.steps
             else "the always-live bytes alone")
    summary = (f"CP-SAT proved that no choice of splits and tiles fits {where} of this schedule "
               f"({what}; re-checked on a fresh model and on an independently built one)")
    if scope and scope.narrows:
        summary += f" -- {scope.text}"
    details = {
        "scope": p.scope, "schedule": schedule_method, "steps": p.steps,
        "ops_at_steps": {str(s): order[s] for s in p.steps},
        "tensors_live": {str(s): live.get(s, []) for s in p.steps},
        "claim": (f"for this schedule (heuristic '{schedule_method}') under the target's cost "
                  "model, over every memory-non-dominated split of every op"
                  + (f", {scope.text}" if scope and scope.narrows else "")),
        "recheck_status": p.recheck_status, "solver_status": p.status,
        "independent_recheck_status": p.independent_status,
    }
    return Evidence(kind="solver_infeasible", summary=summary, details=details,
                    rechecked=p.rechecked)


def evidence_unknown(reason: str, details: dict) -> Evidence:
    return Evidence(kind="search_limit", summary=f"unknown: search limit reached ({reason})",
                    details=details, rechecked=False)


def locate(evidence: Evidence, ops: Sequence[OpPlacement], buffers: Sequence[Buffer],
           occ: np.ndarray | None, budget: int, top: int = 5) -> Diagnosis:
    """A Diagnosis with the worst tile / step of the best attempt (if there is one)."""
    diag = Diagnosis(evidence=evidence, worst_tile=None, worst_step=None,
                     worst_op=evidence.details.get("op"), bytes_needed=None, over_by=None)
    if evidence.kind == "op_too_large":
        diag.bytes_needed = int(evidence.details["needed"])
        diag.over_by = int(evidence.details["needed"]) - budget
    if occ is None or occ.size == 0:
        return diag
    _tiles, steps = occ.shape
    flat = int(np.argmax(occ))
    t, s = divmod(flat, steps)
    # The op of the worst (tile, step): one running on that tile if any. The worst-* fields all
    # describe this one spot of the best attempt, also for (b), whose own op (in the evidence)
    # may peak elsewhere: mixing them gave "tile 0 at step 1 (op A), op B: needs <B's bound>".
    by_step = [o for o in ops if o.step == s]
    here = [o for o in by_step if any(a <= t < c for a, c in o.tiles)] or by_step
    diag.worst_tile, diag.worst_step = int(t), int(s)
    diag.worst_op = here[0].name if here else diag.worst_op
    diag.bytes_needed = int(occ[t, s])
    diag.over_by = int(occ[t, s]) - budget
    per_tile = occ.max(axis=1)
    order = np.argsort(-per_tile, kind="stable")[:top]
    diag.top_tiles = [{"tile": int(k), "bytes": int(per_tile[k]),
                       "step": int(np.argmax(occ[k])), "over_by": int(per_tile[k]) - budget}
                      for k in order]
    cats: dict[str, int] = {}
    live_ops: dict[str, int] = {}  # op -> bytes it holds on the worst tile at the worst step
    tensors: list[dict] = []
    producer = {t_: o.name for o in ops for t_ in o.outputs}
    for b in buffers:
        if b.bytes <= 0 or not (b.first <= s < b.end):
            continue
        if not any(a <= t < c for a, c in b.tiles):
            continue
        cats[b.category] = cats.get(b.category, 0) + b.bytes
        if b.kind == "tensor":
            tensors.append({"name": b.owner, "bytes": b.bytes, "first": b.first, "end": b.end,
                            "producer": producer.get(b.owner)})
            if producer.get(b.owner):
                live_ops[producer[b.owner]] = live_ops.get(producer[b.owner], 0) + b.bytes
        else:
            live_ops[b.owner] = live_ops.get(b.owner, 0) + b.bytes
    diag.by_category = dict(sorted(cats.items()))
    diag.live_ops = sorted(live_ops, key=lambda n: (-live_ops[n], n))  # most bytes first
    diag.live_tensors = sorted(tensors, key=lambda d: (-d["bytes"], d["name"]))
    return diag
