"""schedule: a topological order of the ops that keeps the live set small.

The positions of this order are the bulk-synchronous supersteps: op ``order[s]`` runs in superstep
``s``. The order decides which activation tensors are alive together, so it decides the live set the
placement must fit; CSP-style networks (parallel branches joined by a Concat) leave real choice.

We score an order by the *peak live bytes*: at each step, the total bytes of every activation buffer
alive then (a buffer is a root tensor, see :meth:`GraphInfo.root`; it lives from the step of the
first op writing it -- or step 0 for a model input -- to the last step reading it or an alias; model
outputs live to the end). The bytes are ``TensorInfo.bytes``: the schedule runs before any split is
chosen, so the size of a tensor is the best placement-independent proxy for what it costs.

Several cheap list-scheduling heuristics are run and the lowest-peak order kept (ties: lower sum of
live bytes over steps, then the earlier heuristic in :data:`METHODS`):

``given``      the order the exporter wrote (usually a depth-first walk of the module tree);
``min_peak``   among ready ops, the one whose allocation raises the live set least, ties broken by
               the most bytes freed (classic greedy for memory-aware ordering);
``min_delta``  among ready ops, the one with the smallest net change (allocated minus freed), which
               finishes a branch before starting a sibling that allocates a large tensor.

All are deterministic: ties fall back to the exporter's order. The exact problem (SERENITY-style
dynamic programming over frontiers) is exponential in the graph's width; these heuristics are linear
time and, on the YOLO family, within a few percent of each other (see benchmarks/plan_quality.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tilec.errors import InputError
from tilec.opinfo import GraphInfo

METHODS = ("given", "min_peak", "min_delta")


@dataclass(frozen=True)
class Schedule:
    """A topological order of the ops; ``step_of[op]`` is its superstep."""

    order: tuple[str, ...]
    method: str
    live_peak: int  # total bytes of the buffers alive at the worst step
    live_peak_step: int
    live: tuple[int, ...]  # total live bytes per step
    scores: Mapping[str, int] = field(default_factory=dict)  # peak per heuristic tried

    @property
    def step_of(self) -> dict[str, int]:
        return {name: s for s, name in enumerate(self.order)}

    def __len__(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class BufferUse:
    """Who writes and who reads one buffer (a root tensor with all its aliases)."""

    root: str
    bytes: int
    writers: tuple[str, ...]  # ops producing the root or one of its aliases (views excluded)
    readers: tuple[str, ...]  # ops reading the root or one of its aliases
    is_input: bool
    is_output: bool  # the root or an alias is a model output


def buffer_uses(info: GraphInfo) -> dict[str, BufferUse]:
    """Every buffer of the graph with its writers and readers (independent of the order).

    A view writes nothing (its output shares its input's buffer), so it is neither a writer nor, by
    itself, a reason for the buffer to exist; it *is* a reader of its input, and whoever reads the
    view reads the buffer too.
    """
    views = {op.name for op in info.ops if op.kind == "view"}
    writers: dict[str, list[str]] = {}
    readers: dict[str, list[str]] = {}
    inputs: dict[str, bool] = {}
    outputs: dict[str, bool] = {}
    for name, t in info.tensors.items():
        r = info.root(name)
        writers.setdefault(r, [])
        readers.setdefault(r, [])
        inputs[r] = inputs.get(r, False) or t.is_input
        outputs[r] = outputs.get(r, False) or t.is_output
        if t.producer is not None and t.producer not in views:
            writers[r].append(t.producer)
        readers[r].extend(t.consumers)
    out = {}
    for r in sorted(writers):
        out[r] = BufferUse(
            root=r, bytes=info.tensors[r].bytes,
            writers=tuple(sorted(set(writers[r]))), readers=tuple(sorted(set(readers[r]))),
            is_input=inputs[r], is_output=outputs[r],
        )
    return out


def check_topological(info: GraphInfo, order: tuple[str, ...]) -> None:
    """Raise InputError unless ``order`` lists every op once, after the producers of its inputs."""
    names = [op.name for op in info.ops]
    if sorted(order) != sorted(names):
        raise InputError(f"{info.name}: schedule does not list every op exactly once")
    pos = {n: i for i, n in enumerate(order)}
    for op in info.ops:
        for t in op.inputs:
            p = info.tensors[t].producer
            if p is not None and pos[p] >= pos[op.name]:
                raise InputError(f"{info.name}: op '{op.name}' is scheduled before '{p}', "
                                 f"which produces its input '{t}'")


def live_profile(info: GraphInfo, order: tuple[str, ...],
                 uses: Mapping[str, BufferUse] | None = None) -> list[int]:
    """Total live buffer bytes at each step of ``order`` (see the module docstring)."""
    uses = uses if uses is not None else buffer_uses(info)
    n = len(order)
    pos = {name: s for s, name in enumerate(order)}
    diff = [0] * (n + 1)
    for u in uses.values():
        if not u.writers and not u.is_input:
            continue  # a buffer nobody writes and nobody feeds: nothing to hold
        first = 0 if u.is_input else min(pos[w] for w in u.writers)
        last = max([pos[r] for r in u.readers] + [first])
        end = n if u.is_output else last + 1
        diff[first] += u.bytes
        diff[end] -= u.bytes
    live, acc = [], 0
    for s in range(n):
        acc += diff[s]
        live.append(acc)
    return live


def _list_schedule(info: GraphInfo, uses: Mapping[str, BufferUse], rule: str) -> tuple[str, ...]:
    """Greedy list scheduling by ``rule`` ("min_peak" or "min_delta"); ties by given order."""
    index = {op.name: i for i, op in enumerate(info.ops)}
    preds: dict[str, set[str]] = {op.name: set() for op in info.ops}
    succs: dict[str, set[str]] = {op.name: set() for op in info.ops}
    for op in info.ops:
        for t in op.inputs:
            p = info.tensors[t].producer
            if p is not None:
                preds[op.name].add(p)
                succs[p].add(op.name)
    # What each op allocates and may free, in buffer terms.
    root_of = {t: info.root(t) for t in info.tensors}
    allocates: dict[str, set[str]] = {op.name: set() for op in info.ops}
    reads: dict[str, set[str]] = {op.name: set() for op in info.ops}
    for r, u in uses.items():
        for w in u.writers:
            allocates[w].add(r)
        for c in u.readers:
            reads[c].add(r)
    for op in info.ops:
        for t in op.inputs:
            reads[op.name].add(root_of[t])
    remaining = {r: len(u.readers) for r, u in uses.items()}
    allocated = {r for r, u in uses.items() if u.is_input}
    live = sum(uses[r].bytes for r in allocated)
    waiting = {n: len(p) for n, p in preds.items()}
    ready = sorted((n for n, k in waiting.items() if k == 0), key=index.__getitem__)
    order: list[str] = []
    while ready:
        best, best_key = None, None
        for name in ready:
            alloc = sum(uses[r].bytes for r in allocates[name] if r not in allocated)
            freed = sum(uses[r].bytes for r in reads[name] | allocates[name]
                        if not uses[r].is_output
                        and remaining[r] - (1 if name in uses[r].readers else 0) == 0
                        and (r in allocated or r in allocates[name]))
            if rule == "min_peak":
                key = (live + alloc, alloc - freed, index[name])
            else:
                key = (alloc - freed, live + alloc, index[name])
            if best_key is None or key < best_key:
                best, best_key = name, key
        assert best is not None
        ready.remove(best)
        order.append(best)
        for r in allocates[best]:
            if r not in allocated:
                allocated.add(r)
                live += uses[r].bytes
        for r in reads[best] | allocates[best]:
            if best in uses[r].readers:
                remaining[r] -= 1
        for r in reads[best] | allocates[best]:
            if r in allocated and remaining[r] == 0 and not uses[r].is_output:
                allocated.discard(r)
                live -= uses[r].bytes
        for s in sorted(succs[best], key=index.__getitem__):
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
        ready.sort(key=index.__getitem__)
    if len(order) != len(info.ops):
        raise InputError(f"{info.name}: the graph has a cycle; cannot schedule it")
    return tuple(order)


def schedule(info: GraphInfo, methods: tuple[str, ...] = METHODS) -> Schedule:
    """The lowest-peak order among the heuristics in ``methods`` (deterministic)."""
    if not info.ops:
        return Schedule(order=(), method="given", live_peak=0, live_peak_step=0, live=())
    uses = buffer_uses(info)
    best: tuple[tuple[int, int, int], str, tuple[str, ...], list[int]] | None = None
    scores: dict[str, int] = {}
    for i, method in enumerate(methods):
        if method == "given":
            order = tuple(op.name for op in info.ops)
        else:
            order = _list_schedule(info, uses, method)
        check_topological(info, order)
        live = live_profile(info, order, uses)
        peak = max(live) if live else 0
        scores[method] = peak
        key = (peak, sum(live), i)
        if best is None or key < best[0]:
            best = (key, method, order, live)
    assert best is not None
    _, method, order, live = best
    peak = max(live)
    return Schedule(order=order, method=method, live_peak=peak, live_peak_step=live.index(peak),
                    live=tuple(live), scores=scores)
