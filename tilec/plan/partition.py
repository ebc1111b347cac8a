"""partition: per op, a short Pareto-pruned list of candidate splits with their costs.

For every op the target's cost model proposes splits (:meth:`CostModel.splits`) and prices each
(:meth:`CostModel.cost`). A :class:`Candidate` condenses one :class:`OpCost` into the numbers the
placement needs: tiles, bytes per tile by lifetime (summed over categories), the rectangles it could
occupy on a mesh, and cycles.

Two lists are kept per op, because searching and proving need different things:

``proof``   every candidate not *memory-dominated* by another one. Candidate X memory-dominates Y
            when X needs no more bytes per tile in each lifetime (always, step, each output, spread)
            and its footprint fits inside Y's (fewer tiles on a line of tiles; on a mesh, every
            rectangle of Y contains one of X). Whatever placement uses Y stays valid with X put in
            its place, so dropping Y loses no feasible plan: infeasibility proven over this list
            holds for all the cost model's splits.
``search``  the same with cycles as one more objective (so no faster option is lost either), then
            cut to at most ``max_candidates`` by keeping the extremes (fewest bytes per tile, fewest
            cycles, smallest total footprint) and the rest evenly spread over tile counts. This is
            what the placer searches; the cut is a tractability choice that may cost optimality,
            never validity.

``finest`` is the candidate with the fewest peak bytes per tile over *all* splits: if even it
overflows a tile, the op cannot run on this target (evidence (b)).

Domination compares an op's own bytes, so it may prune *across* tile counts only when the tile count
changes nothing else. Two kinds of op are *coupled* to bytes outside their own cost:

* a possible *host of a model input* (problem.py holds a model input on the tiles of its first
  reader, at ``cost_model.input_bytes(tensor, tiles)`` per tile: fewer tiles, more bytes each):
  those bytes are one more lifetime in the comparison (:func:`input_extra`);
* a possible *group leader*: an op whose output buffer an op that ``follows_input`` reads first
  (the follower runs on the leader's tiles with the leader's tile count, so a leader split with
  fewer tiles may leave the follower no split at all, or more bytes per tile): such an op is
  pruned within each tile count only (:func:`coupled_ops`).

And an op that may overwrite its input in place, or whose buffer may be overwritten, keeps splits
with different output sizes apart (:func:`in_place_ops`): in place needs equal sizes, so fewer
output bytes may cost more memory at the overwriting step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from tilec.costmodel import OpCost, Split, Target
from tilec.errors import InputError
from tilec.opinfo import GraphInfo, OpInfo

MAX_CANDIDATES = 6
"""Default cap on the search list per op (modelling choice: enough to span the bytes/cycles front
of a conv -- one tile group, a few intermediate widths, the whole chip -- while keeping the CP-SAT
model near 10^4 Booleans for a 400-op network)."""


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@lru_cache(maxsize=4096)
def rect_shapes(tiles: int, grid: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Every ``(h, w)`` with ``h * w == tiles`` fitting ``grid`` (rows, cols), squarest first."""
    rows, cols = grid
    shapes = [(h, tiles // h) for h in range(1, rows + 1)
              if tiles % h == 0 and tiles // h <= cols]
    return tuple(sorted(shapes, key=lambda s: (abs(s[0] - s[1]), s)))


@dataclass(frozen=True)
class Candidate:
    """One split of one op with the numbers the placer needs (bytes are per tile)."""

    op: str
    split: Split
    cost: OpCost
    tiles: int
    shapes: tuple[tuple[int, int], ...]  # rectangles it may occupy (mesh targets); () on a line
    always: int
    step: int
    outputs: tuple[int, ...]  # per output of the op (the cost model's order)
    spread: int  # total bytes over the whole array (all categories)
    spread_per_tile: int  # what every tile carries for it: sum over categories of ceil(total / T)
    cycles: int  # compute + exchange (sync is added per superstep by the placer)

    @property
    def peak(self) -> int:
        """Per-tile bytes of this op alone while it runs (always + step + all outputs)."""
        return self.always + self.step + sum(self.outputs)

    def charged_peak(self, charged: Sequence[bool]) -> int:
        """Like :attr:`peak` but only with the outputs the op's own tiles hold (see problem.py)."""
        outs = zip(self.outputs, charged, strict=False)
        return self.always + self.step + sum(o for o, c in outs if c)

    def total(self, charged: Sequence[bool]) -> int:
        """Bytes over the chip while it runs (its tiles times its per-tile bytes, plus spread)."""
        return self.charged_peak(charged) * self.tiles + self.spread


@dataclass(frozen=True)
class OpCandidates:
    """The candidates of one op."""

    op: str
    search: tuple[Candidate, ...]
    proof: tuple[Candidate, ...]
    finest: Candidate
    all_count: int  # how many splits the cost model proposed (after dropping impossible ones)
    follows_input: bool
    in_place: bool
    dropped: tuple[str, ...] = ()  # splits dropped as impossible on this target, with the reason


@dataclass
class Partition:
    """Candidates of every op, and which outputs each op's tiles hold."""

    ops: dict[str, OpCandidates]
    charged: dict[str, tuple[bool, ...]]  # per op, per output: held on the op's own tiles?
    notes: list[str] = field(default_factory=list)


def _vector(c: Candidate, charged: Sequence[bool]) -> tuple[int, ...]:
    outs = tuple(o if ch else 0 for o, ch in zip(c.outputs, charged, strict=False))
    return (c.always, c.step, c.spread_per_tile, *outs)


def footprint_within(x: Candidate, y: Candidate, placement: str) -> bool:
    """Can x always take y's place: x's tiles fit inside y's wherever y goes?"""
    if placement == "rect":
        return _shapes_within(x.shapes, y.shapes)
    return x.tiles <= y.tiles


@lru_cache(maxsize=65536)
def _shapes_within(xs: tuple[tuple[int, int], ...], ys: tuple[tuple[int, int], ...]) -> bool:
    """Every rectangle of ``ys`` contains one of ``xs`` (they depend only on tile counts, so a
    partition asks the same few questions many times)."""
    return all(any(hx <= hy and wx <= wy for hx, wx in xs) for hy, wy in ys)


def pareto(cands: Sequence[Candidate], charged: Sequence[bool], placement: str, *,
           with_cycles: bool, extra: dict[int, int] | None = None,
           exact_outputs: bool = False) -> list[Candidate]:
    """The candidates no other candidate dominates (identical ones: the first in split order).

    X dominates Y when X needs no more bytes per tile in any lifetime (and, ``with_cycles``, no
    more cycles), its footprint fits inside Y's, and it is strictly better somewhere. ``extra``
    (bytes per tile by tile count) is one more lifetime: bytes the op's tiles may hold for others
    (model inputs, see :func:`input_extra`). ``exact_outputs``: X dominates Y only with the
    same output bytes (an op that may overwrite, or be overwritten, in place: whether it can
    depends on the two output sizes being equal, see :func:`in_place_ops`). Vectorised: an
    (n x n) comparison per op.
    """
    n = len(cands)
    if n <= 1:
        return list(cands)
    width = max(len(_vector(c, charged)) for c in cands)
    rows = []
    for c in cands:
        v = list(_vector(c, charged))
        v += [0] * (width - len(v))
        if extra:
            v.append(extra.get(c.tiles, 0))
        if exact_outputs:  # x <= y and -x <= -y: equal
            v.extend(-o for o in c.outputs)
        if with_cycles:
            v.append(c.cycles)
        v.append(c.tiles)
        rows.append(v)
    m = np.array(rows, dtype=np.int64)  # [n, d]
    le = (m[:, None, :] <= m[None, :, :]).all(axis=2)  # le[x, y]: x <= y everywhere
    eq = (m[:, None, :] == m[None, :, :]).all(axis=2)
    if placement == "rect":
        fit = np.array([[_shapes_within(x.shapes, y.shapes) for y in cands] for x in cands])
        le &= fit
        eq &= fit & fit.T
    strictly = le & ~eq
    earlier_twin = eq & np.tri(n, k=-1, dtype=bool).T  # twin x earlier than y (x < y)
    dominated = (strictly | earlier_twin).any(axis=0)
    return [c for c, d in zip(cands, dominated, strict=True) if not d]


def _shortlist(front: list[Candidate], charged: Sequence[bool], limit: int) -> list[Candidate]:
    """At most ``limit`` candidates of ``front``: the extremes, then evenly spread tile counts."""
    if len(front) <= limit:
        return front
    by_tiles = sorted(front, key=lambda c: (c.tiles, c.cycles, c.split))
    chosen: list[Candidate] = []

    def add(c: Candidate) -> None:
        if not any(c is x for x in chosen):
            chosen.append(c)

    add(min(front, key=lambda c: (c.charged_peak(charged), c.cycles, c.split)))
    add(min(front, key=lambda c: (c.cycles, c.charged_peak(charged), c.split)))
    add(min(front, key=lambda c: (c.total(charged), c.cycles, c.split)))
    slots = limit - len(chosen)
    if slots > 0:
        rest = [c for c in by_tiles if not any(c is x for x in chosen)]
        for k in range(slots):
            idx = round(k * (len(rest) - 1) / max(1, slots - 1)) if slots > 1 else len(rest) // 2
            add(rest[idx])
    return sorted(chosen[:limit], key=lambda c: (c.tiles, c.cycles, c.split))


def make_candidate(op: OpInfo, split: Split, cost: OpCost, target: Target,
                   shapes: tuple[tuple[int, int], ...]) -> Candidate:
    spread = sum(int(v) for v in cost.spread.values())
    spread_pt = sum(ceil_div(int(v), target.tiles) for v in cost.spread.values() if v)
    return Candidate(
        op=op.name, split=split, cost=cost, tiles=split.tiles, shapes=shapes,
        always=int(cost.always_bytes), step=int(cost.step_bytes),
        outputs=tuple(int(o) for o in cost.outputs), spread=spread, spread_per_tile=spread_pt,
        cycles=int(cost.compute_cycles) + int(cost.exchange_cycles),
    )


def _check_cost(op: OpInfo, cost: OpCost, target: Target) -> None:
    """A cost model bug must not become a silent wrong answer."""
    for lifetime in (cost.always, cost.step, cost.spread):
        for cat, v in lifetime.items():
            if int(v) < 0:
                raise InputError(f"target {target.name}: cost model gives op '{op.name}' "
                                 f"{v} bytes of {cat} (negative)")
    if len(cost.outputs) not in (0, len(op.outputs)):
        raise InputError(f"target {target.name}: cost model gives op '{op.name}' "
                         f"{len(cost.outputs)} output sizes for {len(op.outputs)} outputs")
    if any(int(o) < 0 for o in cost.outputs):
        raise InputError(f"target {target.name}: cost model gives op '{op.name}' a negative "
                         "output size")


def charged_outputs(info: GraphInfo) -> dict[str, tuple[bool, ...]]:
    """Per op, per output: does the op's own footprint hold this output's buffer?

    It does when the output is a root tensor (a buffer of its own). A view's output aliases its
    input and an in-place concat's input is a slice of the concat's buffer: both are held where the
    root's writer runs, so the op that computes them is not charged for them a second time.
    """
    return {op.name: tuple(info.root(t) == t for t in op.outputs) for op in info.ops}


Priced = list[tuple[Split, tuple[tuple[int, int], ...], OpCost]]


def _price(op: OpInfo, target: Target) -> tuple[Priced, list[str]]:
    """The cost model's splits of ``op`` that the chip can hold, priced; and the dropped ones
    with the reason."""
    model = target.cost_model
    grid = (int(target.grid[0]), int(target.grid[1]))
    seen: set[Split] = set()
    priced: Priced = []
    dropped: list[str] = []
    for split in model.splits(op):
        if split in seen:
            continue
        seen.add(split)
        if split.tiles > target.tiles:
            dropped.append(f"{split}: {split.tiles} tiles > {target.tiles}")
            continue
        shapes: tuple[tuple[int, int], ...] = ()
        if target.placement == "rect":
            shapes = rect_shapes(split.tiles, grid)
            if not shapes:
                dropped.append(f"{split}: {split.tiles} tiles form no rectangle in "
                               f"{grid[0]}x{grid[1]}")
                continue
        priced.append((split, shapes, model.cost(op, split)))
    return priced, dropped


def input_extra(info: GraphInfo, target: Target, op: OpInfo, counts: Iterable[int]
                ) -> dict[int, int]:
    """Bytes per tile, by tile count, of the model inputs ``op`` reads (problem.py holds a model
    input on the tiles of its first reader, at the target's ``input_bytes``): fewer tiles, more
    bytes each, so domination across tile counts must count them. Empty when there are none."""
    fn = getattr(target.cost_model, "input_bytes", None)
    roots = sorted({info.root(t) for t in op.inputs if info.tensors[info.root(t)].is_input})
    if fn is None or not roots or op.kind == "view":
        return {}
    out = {n: sum(int(v) for r in roots for v in dict(fn(info.tensors[r], n)).values())
           for n in sorted(set(counts))}
    return out if any(out.values()) else {}


def coupled_ops(info: GraphInfo, target: Target,
                priced: dict[str, Priced] | None = None) -> set[str]:
    """Possible group leaders (see the module docstring): their tile count is their followers'
    too, so they are pruned within each tile count only, or domination would lose feasible
    plans. ``priced`` holds :func:`_price` results already at hand (others are priced here)."""
    priced = priced if priced is not None else {}
    out: set[str] = set()
    for op in info.ops:
        if not op.inputs:
            continue
        root = info.tensors[info.root(op.inputs[0])]
        lead = root.producer
        if lead is None or root.is_input or lead == op.name or lead in out:
            continue
        costs = priced[op.name] if op.name in priced else _price(op, target)[0]
        if any(c.follows_input for _, _, c in costs):
            out.add(lead)
    return out


def in_place_ops(info: GraphInfo, target: Target,
                 priced: dict[str, Priced] | None = None) -> set[str]:
    """Ops that may overwrite their first input in place, and the ops whose buffer they may
    overwrite: problem.py lets an option work in place only where the two output sizes are
    equal, so a split with *fewer* output bytes does not dominate one with the matching size."""
    priced = priced if priced is not None else {}
    out: set[str] = set()
    for op in info.ops:
        if not op.inputs or not op.outputs:
            continue
        costs = priced[op.name] if op.name in priced else _price(op, target)[0]
        if not costs or not all(c.in_place and c.follows_input for _, _, c in costs):
            continue
        out.add(op.name)
        owner = info.tensors[info.root(op.inputs[0])].producer
        if owner is not None:
            out.add(owner)
    return out


def _per_tile_count(cands: Sequence[Candidate], charged: Sequence[bool], placement: str, *,
                    with_cycles: bool, exact_outputs: bool = False) -> list[Candidate]:
    """The Pareto front within each tile count (same footprints), tile counts ascending."""
    out: list[Candidate] = []
    for n in sorted({c.tiles for c in cands}):
        out.extend(pareto([c for c in cands if c.tiles == n], charged, placement,
                          with_cycles=with_cycles, exact_outputs=exact_outputs))
    return out


def _shortlist_hosting(front: list[Candidate], charged: Sequence[bool], limit: int,
                       extra: dict[int, int]) -> list[Candidate]:
    """:func:`_shortlist` that also keeps the candidate needing the fewest bytes per tile once
    the model inputs it may hold are counted (else the only split on which the input fits could
    be cut from the search)."""
    if not extra or len(front) <= limit:
        return _shortlist(front, charged, limit)
    lean = min(front, key=lambda c: (c.charged_peak(charged) + extra.get(c.tiles, 0), c.cycles,
                                     c.split))
    rest = [c for c in front if c is not lean]
    chosen = [lean, *_shortlist(rest, charged, limit - 1)]
    return sorted(chosen, key=lambda c: (c.tiles, c.cycles, c.split))


def partition(info: GraphInfo, target: Target, *, max_candidates: int = MAX_CANDIDATES,
              ops: Iterable[OpInfo] | None = None) -> Partition:
    """Candidates for every op of ``info`` on ``target``."""
    charged = charged_outputs(info)
    todo = list(ops if ops is not None else info.ops)
    prices = {op.name: _price(op, target) for op in todo}
    coupled = coupled_ops(info, target, {n: p for n, (p, _) in prices.items()})
    exact_out = in_place_ops(info, target, {n: p for n, (p, _) in prices.items()})
    result: dict[str, OpCandidates] = {}
    notes: list[str] = []
    # Ops with the same priced splits (a network repeats its shapes) share one result: the key
    # holds the cost objects themselves, so it identifies them for as long as the memo lives.
    memo: dict[tuple, tuple[tuple[OpCost, ...], OpCandidates]] = {}
    for op in todo:
        priced, dropped = prices[op.name]
        ch = charged[op.name]
        extra = input_extra(info, target, op, (sp.tiles for sp, _, _ in priced))
        exact = op.name in exact_out
        key = (tuple(id(c) for _, _, c in priced), ch, len(op.outputs), tuple(dropped),
               op.name in coupled, tuple(sorted(extra.items())), exact)
        hit = memo.get(key)
        if hit is not None:
            result[op.name] = _renamed(hit[1], op.name)
            continue
        cands: list[Candidate] = []
        for split, shapes, cost in priced:
            _check_cost(op, cost, target)
            if cost.outputs == () and op.outputs:
                cost = OpCost(split=cost.split, always=cost.always, step=cost.step,
                              outputs=tuple(0 for _ in op.outputs), spread=cost.spread,
                              compute_cycles=cost.compute_cycles,
                              exchange_cycles=cost.exchange_cycles,
                              follows_input=cost.follows_input, in_place=cost.in_place)
            cands.append(make_candidate(op, split, cost, target, shapes))
        if not cands:
            why = "; ".join(dropped) if dropped else "the cost model proposed no split"
            raise InputError(f"target {target.name}: op '{op.name}' ({op.op_type}) cannot be "
                             f"placed: {why}")
        cands.sort(key=lambda c: (c.tiles, c.split))
        follows = any(c.cost.follows_input for c in cands)
        if follows:
            # A follower's tile count is dictated by its input's producer: keep every tile count
            # the cost model offers (the group decides), pruning only within a tile count.
            front = _per_tile_count([c for c in cands if c.cost.follows_input], ch,
                                    target.placement, with_cycles=True, exact_outputs=exact)
            proof = front
            search = front
        elif op.name in coupled:
            proof = _per_tile_count(cands, ch, target.placement, with_cycles=False,
                                    exact_outputs=exact)
            search = _shortlist_hosting(
                _per_tile_count(cands, ch, target.placement, with_cycles=True,
                                exact_outputs=exact), ch, max_candidates, extra)
        else:
            proof = pareto(cands, ch, target.placement, with_cycles=False, extra=extra,
                           exact_outputs=exact)
            search = _shortlist_hosting(
                pareto(cands, ch, target.placement, with_cycles=True, extra=extra,
                       exact_outputs=exact), ch, max_candidates, extra)
        finest = min(cands, key=lambda c: (c.charged_peak(ch), c.tiles, c.split))
        result[op.name] = OpCandidates(
            op=op.name, search=tuple(search), proof=tuple(sorted(
                proof, key=lambda c: (c.tiles, c.split))),
            finest=finest, all_count=len(cands), follows_input=follows,
            in_place=all(c.cost.in_place for c in cands), dropped=tuple(dropped),
        )
        memo[key] = (tuple(c for _, _, c in priced), result[op.name])
    return Partition(ops=result, charged=charged, notes=notes)


def _renamed(oc: OpCandidates, name: str) -> OpCandidates:
    """``oc`` for another op with the same priced splits."""
    new: dict[int, Candidate] = {}

    def ren(c: Candidate) -> Candidate:
        if id(c) not in new:
            new[id(c)] = replace(c, op=name)
        return new[id(c)]

    return replace(oc, op=name, search=tuple(ren(c) for c in oc.search),
                   proof=tuple(ren(c) for c in oc.proof), finest=ren(oc.finest))
