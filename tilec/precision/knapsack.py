"""The memory side of ``--precision auto``: per-layer byte terms from the target's cost model, and
the multiple-choice knapsack CP-SAT solves over them.

**The terms.** The planner's two placement-free certificates (tilec/plan/bounds.py) are sums of
per-op terms, each minimised over the op's candidate splits, which the target's cost model prices:

(a) at op ``i``: every op's always-live bytes over the chip (``always x tiles + spread``) + op
    ``i``'s step bytes + every buffer necessarily live at ``i`` (its minimum total) <= tiles x
    budget;
(b) for op ``i``: its finest split's per-tile need + every op's spread bytes per tile <= budget.

A layer's precision changes only its own terms: its weights' bits (always / spread bytes:
IPU weights live on the tiles that use them, NorthPole's are stored once over the array), its
step bytes (received or broadcast weights; the IPU's fp16 copy of low-bit weights and its extra
compute set, which can make a *lower* precision cost *more*), and -- where the target stores
activations at the layer's precision (NorthPole) -- its output buffers. So each term is read off
the planner's own partition of the model at each uniform precision (:func:`memory_model`: the
same candidates, the same minima), and (a) and (b) become linear constraints over one choice per
layer. They are exact for the certificates: a map the knapsack rejects is *proven* not to fit
(the planner's (a) or (b) would hold for it), and at a uniform map the terms sum to the planner's
own bounds (tested).

**The choice** (:func:`solve`): one Boolean per layer and precision, exactly one per layer;
minimise the summed sensitivity (integer-scaled; ties broken towards higher precision) subject
to (a) for every op and (b) for every op, with margins the confirmation loop raises when a full
plan of the chosen map still does not fit (placement effects the bounds do not see).
:func:`brute_force` enumerates every map, for tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo
from tilec.plan.bounds import _closure, buffer_min_totals
from tilec.plan.partition import Partition
from tilec.plan.problem import outputs_stay
from tilec.plan.schedule import buffer_uses

COST_SCALE = 1_000_000
"""Integer resolution of the objective: the largest layer cost maps to this (CP-SAT is integer)."""


@dataclass
class Constraint:
    """``const + shared + sum(local[layer][k]) <= limit - margin`` (k: the layer's choice)."""

    kind: str  # "a" (chip capacity at op) | "b" (op too large)
    op: str
    const: int
    local: dict[str, list[int]]
    shared: str  # "always" (sum of every layer's always-live total) | "spread" (per tile)
    limit: int

    def value(self, model: MemoryModel, choice: Mapping[str, int]) -> int:
        v = self.const + sum(c[choice[n]] for n, c in self.local.items())
        return v + sum(model.shared[self.shared][n][choice[n]] for n in model.layers)


@dataclass
class MemoryModel:
    """Per-layer, per-precision byte terms and the constraints they enter."""

    precisions: list[str]  # highest first
    layers: list[str]
    shared: dict[str, dict[str, list[int]]]  # "always" / "spread" -> layer -> per precision
    constraints: list[Constraint]
    weight_bytes: dict[str, list[int]]  # layer -> its weights' bytes per precision
    capacity: int
    budget: int
    tiles: int
    margin_chip: int = 0
    margin_tile: int = 0
    const_spread: int = 0  # spread bytes per tile of the ops that are not layers
    notes: list[str] = field(default_factory=list)

    def margin(self, c: Constraint) -> int:
        return self.margin_chip if c.kind == "a" else self.margin_tile

    def violations(self, choice: Mapping[str, int]) -> list[tuple[Constraint, int]]:
        """Constraints ``choice`` breaks, with the bytes it is over (margins included)."""
        out = []
        for c in self.constraints:
            over = c.value(self, choice) - (c.limit - self.margin(c))
            if over > 0:
                out.append((c, over))
        return out

    def floor(self, c: Constraint) -> int:
        """The smallest value ``c`` takes over all maps (each layer at its own best choice)."""
        total = c.const
        for n in self.layers:
            loc = c.local.get(n)
            total += min(self.shared[c.shared][n][k] + (loc[k] if loc else 0)
                         for k in range(len(self.precisions)))
        return total

    def spread_floor(self) -> int:
        """The least spread bytes every tile carries, over all maps."""
        return self.const_spread + sum(min(v) for v in self.shared["spread"].values())

    def uniform(self, k: int) -> dict[str, int]:
        return dict.fromkeys(self.layers, k)


def memory_model(infos: Mapping[str, GraphInfo], parts: Mapping[str, Partition],
                 target: Target, layers: Sequence[str], precisions: Sequence[str]
                 ) -> MemoryModel:
    """The terms of (a) and (b) per layer and precision (module docstring). ``infos[p]`` and
    ``parts[p]`` are the model's planner view and partition at uniform precision ``p``; ops that
    are not layers keep the ceiling's (``precisions[0]``, the precision the map's model is
    compiled at)."""
    hi = precisions[0]
    info = infos[hi]
    names = [op.name for op in info.ops]
    layer_set = set(layers)
    missing = [n for n in layers if n not in info.op_by_name]
    if missing:
        raise ValueError(f"layers not in the planner's view: {missing[:3]}")
    ks = range(len(precisions))

    def src(op: str, k: int) -> Partition:
        return parts[precisions[k]] if op in layer_set else parts[hi]

    def per(op: str, fn) -> list[int]:
        return [int(min(fn(c) for c in src(op, k).ops[op].proof)) for k in ks]

    always = {n: per(n, lambda c: c.always * c.tiles + c.spread) for n in names}
    step = {n: per(n, lambda c: c.step * c.tiles) for n in names}
    spread = {n: per(n, lambda c: c.spread_per_tile) for n in names}
    finest = {n: [int(src(n, k).ops[n].finest.charged_peak(src(n, k).charged[n])) for k in ks]
              for n in names}
    totals = [buffer_min_totals(infos[p], parts[p], target) for p in precisions]
    uses = buffer_uses(info)

    def buf(root: str) -> list[int] | int:
        t = info.tensors[root]
        if t.is_input:  # held by its readers at the compile precision; the least over all
            return min(tt.get(root, 0) for tt in totals)
        if t.producer in layer_set:
            return [int(tt.get(root, 0)) for tt in totals]
        return int(totals[0].get(root, 0))

    capacity = int(target.tiles) * int(target.budget_per_tile)
    budget = int(target.budget_per_tile)
    const_always = sum(always[n][0] for n in names if n not in layer_set)
    const_spread = sum(spread[n][0] for n in names if n not in layer_set)
    shared = {"always": {n: always[n] for n in layers}, "spread": {n: spread[n] for n in layers}}

    # the necessarily-live buffers at each op, as chip_bound (tilec/plan/bounds.py) finds them
    bit, anc, desc = _closure(info)
    stay = outputs_stay(target)
    masks = {}
    for r, u in uses.items():
        w = rd = 0
        for x in u.writers:
            w |= 1 << bit[x]
        for x in u.readers:
            rd |= 1 << bit[x]
        masks[r] = (w, rd, u.is_input, u.is_output)
    constraints: list[Constraint] = []
    for op in info.ops:
        i = op.name
        me = 1 << bit[i]
        oc = parts[hi].ops[i]
        skip = info.root(op.inputs[0]) if (oc.in_place and oc.follows_input and op.inputs) \
            else None
        const = const_always
        local: dict[str, list[int]] = {}
        terms: list[tuple[str | None, list[int] | int]] = [(i if i in layer_set else None,
                                                            step[i] if i in layer_set
                                                            else step[i][0])]
        for r, (w, rd, is_in, is_out) in masks.items():
            written = is_in or bool(w & (anc[i] | me))
            if not written:
                continue
            read_later = bool(rd & (desc[i] | me)) or (stay and is_out and bool(w & (anc[i] | me)))
            if not read_later:
                continue
            if r == skip and not (rd & desc[i]) and not (stay and is_out):
                continue
            prod = info.tensors[r].producer
            terms.append((prod if prod in layer_set else None, buf(r)))
        for layer, values in terms:
            if isinstance(values, int) or layer is None:
                const += values if isinstance(values, int) else values[0]
                continue
            cur = local.setdefault(layer, [0] * len(precisions))
            for k in ks:
                cur[k] += values[k]
        constraints.append(Constraint("a", i, const, local, "always", capacity))
        b_local = {i: finest[i]} if i in layer_set else {}
        b_const = const_spread + (0 if i in layer_set else finest[i][0])
        constraints.append(Constraint("b", i, b_const, b_local, "spread", budget))
    wbytes = {n: [int(infos[p].op_by_name[n].weight_bytes) for p in precisions] for n in layers}
    return MemoryModel(list(precisions), list(layers), shared, constraints, wbytes, capacity,
                       budget, int(target.tiles), const_spread=const_spread)


# ----------------------------------------------------------------------------- solving
def integer_costs(costs: Mapping[str, Sequence[float]]) -> dict[str, list[int]]:
    """Sensitivities as integers for CP-SAT: the largest maps to :data:`COST_SCALE`, and each
    precision step down adds 1 so that, among equal sensitivities, higher precision wins (and the
    optimum is unique more often: deterministic maps)."""
    top = max((max(v) for v in costs.values() if len(v)), default=0.0)
    scale = COST_SCALE / top if top > 0 else 0.0
    return {n: [round(max(0.0, x) * scale) * 4 + k for k, x in enumerate(v)]
            for n, v in costs.items()}


@dataclass
class Solution:
    choice: dict[str, int] | None  # layer -> precision index; None: no map satisfies (a)/(b)
    objective: int | None
    status: str  # CP-SAT status name, or "brute-force"
    optimal: bool
    bound: int | None = None  # CP-SAT's best bound on the objective (the gap when not optimal)


def solve(model: MemoryModel, costs: Mapping[str, Sequence[int]], *,
          time_limit: float = 20.0, seed: int = 0) -> Solution:
    """The multiple-choice knapsack (module docstring), one deterministic CP-SAT worker."""
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    ks = range(len(model.precisions))
    x = {(n, k): m.NewBoolVar(f"x[{n},{k}]") for n in model.layers for k in ks}
    for n in model.layers:
        m.AddExactlyOne(x[n, k] for k in ks)

    def lin(table: Mapping[str, Sequence[int]], names: Sequence[str]):
        return sum(int(table[n][k]) * x[n, k] for n in names for k in ks if table[n][k])

    shared_expr = {key: lin(tab, model.layers) for key, tab in model.shared.items()}
    for c in model.constraints:
        expr = shared_expr[c.shared] + lin(c.local, list(c.local))
        m.Add(expr <= c.limit - model.margin(c) - c.const)
    m.Minimize(sum(int(costs[n][k]) * x[n, k] for n in model.layers for k in ks))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    # Reproducible: a deterministic budget decides; the wall-clock limit is only a safety net.
    solver.parameters.max_deterministic_time = time_limit
    solver.parameters.max_time_in_seconds = 4 * time_limit
    # The LP relaxation of every constraint (not only the default's subset): on YOLOv4-P6 x 3
    # precisions it proves the optimum in ~1 s, while the default stopped at twice its
    # objective after 10 s without a useful bound.
    solver.parameters.linearization_level = 2
    status = solver.Solve(m)
    name = solver.StatusName(status)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        choice = {n: next(k for k in ks if solver.Value(x[n, k])) for n in model.layers}
        return Solution(choice, round(solver.ObjectiveValue()), name,
                        status == cp_model.OPTIMAL, round(solver.BestObjectiveBound()))
    return Solution(None, None, name, status == cp_model.INFEASIBLE)


def brute_force(model: MemoryModel, costs: Mapping[str, Sequence[int]]) -> Solution:
    """Every map, in a fixed order; the cheapest that satisfies every constraint (tests)."""
    best: tuple[int, tuple[int, ...]] | None = None
    ks = range(len(model.precisions))
    for combo in itertools.product(ks, repeat=len(model.layers)):
        choice = dict(zip(model.layers, combo, strict=True))
        if model.violations(choice):
            continue
        obj = sum(int(costs[n][k]) for n, k in choice.items())
        if best is None or (obj, combo) < best:
            best = (obj, combo)
    if best is None:
        return Solution(None, None, "brute-force", True)
    return Solution(dict(zip(model.layers, best[1], strict=True)), best[0], "brute-force", True)
