"""The placement problem: buffers with lifetimes, op groups, and each group's options.

Built from the graph, the schedule and the candidates; everything the greedy placer, the CP-SAT
model, the proofs and the plan builder share. Charging rules (every byte comes from an ``OpCost``):

* an op's ``always`` bytes sit on each of its tiles for the whole run, its ``step`` bytes during its
  own superstep; its ``spread`` bytes are spread over the whole array (every tile carries
  ``ceil(total / tiles)`` per category) for the whole run;
* a *buffer* is a root tensor (:meth:`GraphInfo.root`): views share their input's buffer, the inputs
  of an in-place Concat are slices of the Concat's buffer. It sits on the tiles of the op that
  produces the root, with that op's ``outputs[k]`` bytes per tile, from the first step that writes
  it (or any alias) to the last step that reads it (or any alias), half-open; a model output lives
  to the end of the run (the host reads it after the last superstep);
* a model input is held on the tiles of its first reader that is not a view (:func:`input_hosts`),
  from step 0 to its last read, with the bytes the target's I/O model gives
  (:func:`io_input_bytes`); none when the target keeps inputs out of tile memory (NorthPole's
  framebuffer);
* in place: an op whose cost says ``in_place`` and ``follows_input``, that is the last reader of its
  first input's buffer (held in its own group), writes its output into that buffer in every group
  option where both take the same bytes per tile: the input buffer then ends at the op's step and
  the output buffer starts there (elsewhere both are live at that step). The input buffer's last
  step is a separate ``tail`` interval whose bytes depend on the option. Chains (an in-place
  output overwritten in place in turn) are allowed.

A *group* is an op together with the ops that ``follow`` it (element-wise ops the cost model runs
on their input's tiles): they share one footprint. Each group *option* picks a candidate per member
(same tile count), and has a memory *profile*: bytes per tile on every tile of its footprint at
each step, ``base`` (always) plus ``bumps`` over fixed intervals (steps and buffers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np

from tilec.costmodel import Target
from tilec.opinfo import GraphInfo, TensorInfo
from tilec.plan.partition import Candidate, Partition
from tilec.plan.schedule import Schedule, buffer_uses

MAX_FOLLOWER_COMBOS = 16


def outputs_stay(target: Target) -> bool:
    """Do model outputs stay in tile memory until the end of the run (the host reads them after
    the last superstep)? Not when the target keeps I/O in a framebuffer outside tile memory
    (``target.io_location == "framebuffer"``, NorthPole): there an output leaves tile memory after
    its last reader inside the network, like any other activation."""
    return getattr(target, "io_location", "host") != "framebuffer"


def framebuffer_need(target: Target, info: GraphInfo) -> tuple[int, int] | None:
    """(bytes the I/O framebuffer must hold, its size) for a framebuffer target, else None."""
    size = int(getattr(target, "framebuffer_bytes", 0) or 0)
    fn = getattr(target.cost_model, "io_bytes", None)
    if size <= 0 or fn is None or outputs_stay(target):
        return None
    return int(fn(info)), size


def io_input_bytes(target: Target, tensor: TensorInfo, tiles: int) -> dict[str, int]:
    """Bytes per tile (by category) that holding model input ``tensor`` on ``tiles`` tiles costs.

    Asked of the target's cost model (``input_bytes(tensor, tiles)``, optional in the contract);
    a cost model without it keeps inputs out of tile memory.
    """
    fn = getattr(target.cost_model, "input_bytes", None)
    if fn is None:
        return {}
    return {k: int(v) for k, v in dict(fn(tensor, tiles)).items() if int(v)}


def input_hosts(info: GraphInfo, readers: Sequence[str]) -> list[str]:
    """The readers of a model input buffer that may hold it: those that are not views (a view
    reads nothing -- its readers read the buffer -- and runs on a single tile of no bytes, which
    would then have to hold the whole input); all readers when only views read it."""
    real = [r for r in readers if info.op_by_name[r].kind != "view"]
    return real or list(readers)


@dataclass
class BufferSpec:
    """One activation buffer (root tensor) and its lifetime in supersteps, half-open."""

    root: str
    tensors: tuple[str, ...]
    owner: str  # the op whose footprint holds it (producer of the root, or an input's host)
    out_index: int | None  # index in owner's outputs; None for a model input
    first: int
    end: int
    is_input: bool
    is_output: bool
    reuses: str | None = None  # root of the input buffer this one may overwrite in place
    reused_by: str | None = None  # the op that may overwrite it in place (at step ``end - 1``)
    readers: tuple[str, ...] = ()
    writers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interval:
    """A fixed lifetime inside a group's profile: a member's step or a buffer it holds."""

    first: int
    end: int
    kind: str  # "step" | "tensor" | "tail" | "input"
    owner: str  # op name for "step", root tensor for "tensor"/"tail"/"input"
    # "tail": the last step of a buffer that an op may overwrite in place (no bytes when it does)


@dataclass(frozen=True)
class GroupOption:
    """A candidate per member, same tile count; its memory profile and cycles."""

    cands: tuple[Candidate, ...]
    tiles: int
    shapes: tuple[tuple[int, int], ...]
    base: int
    bumps: tuple[int, ...]  # bytes per tile per group interval
    io: tuple[dict[str, int], ...]  # per hosted input buffer: bytes per tile by category
    spread_per_tile: int
    spread: int
    cycles: int  # members' compute + exchange + sync
    in_place: frozenset[str] = frozenset()  # roots this option overwrites in place

    def profile(self, intervals: Sequence[Interval], steps: int) -> np.ndarray:
        p = np.full(steps, self.base, dtype=np.int64)
        for iv, b in zip(intervals, self.bumps, strict=False):
            if b:
                p[iv.first:iv.end] += b
        return p


@dataclass
class Group:
    """Ops sharing one footprint; the first member is the leader."""

    index: int
    members: tuple[str, ...]
    intervals: tuple[Interval, ...]
    options: tuple[GroupOption, ...]  # search options
    proof_options: tuple[GroupOption, ...]  # complete for feasibility (see partition.py)
    proof_complete: bool = True
    trivial: bool = False  # no option holds any byte: placed by rule, not searched
    profiles: np.ndarray | None = None  # [options, steps]

    @property
    def leader(self) -> str:
        return self.members[0]


@dataclass
class Problem:
    """Everything the placers need, for one graph, schedule and target."""

    info: GraphInfo
    target: Target
    schedule: Schedule
    partition: Partition
    steps: int
    step_of: dict[str, int]
    budget: int
    buffers: dict[str, BufferSpec]  # by root
    groups: list[Group]
    group_of: dict[str, int]  # op -> group index
    notes: list[str] = field(default_factory=list)


def build_buffers(info: GraphInfo, step_of: Mapping[str, int], steps: int,
                  outputs_to_end: bool = True) -> dict[str, BufferSpec]:
    """Every buffer with its owner and lifetime (before in-place merging)."""
    out: dict[str, BufferSpec] = {}
    members: dict[str, list[str]] = {}
    for t in info.tensors:
        members.setdefault(info.root(t), []).append(t)
    for root, use in buffer_uses(info).items():
        readers = [r for r in use.readers if r in step_of]
        if use.is_input:
            if not readers:
                continue  # an input nothing reads holds nothing
            host = min(input_hosts(info, readers), key=lambda r: (step_of[r], r))
            first, owner, idx = 0, host, None
        else:
            producer = info.tensors[root].producer
            if producer is None or producer not in step_of:
                continue
            writers = [w for w in use.writers if w in step_of] or [producer]
            first = min(step_of[w] for w in writers)
            owner = producer
            idx = info.op_by_name[producer].outputs.index(root)
        last = max([step_of[r] for r in readers] + [first])
        end = steps if (use.is_output and outputs_to_end) else last + 1
        out[root] = BufferSpec(root=root, tensors=tuple(sorted(members[root])), owner=owner,
                               out_index=idx, first=first, end=end, is_input=use.is_input,
                               is_output=use.is_output, readers=tuple(sorted(readers)),
                               writers=use.writers)
    return out


def _leader_of(info: GraphInfo, partition: Partition, buffers: Mapping[str, BufferSpec],
               op_name: str) -> str | None:
    """The op whose footprint ``op_name`` must share (follows_input), if any."""
    oc = partition.ops[op_name]
    op = info.op_by_name[op_name]
    if not oc.follows_input or not op.inputs:
        return None
    root = info.root(op.inputs[0])
    spec = buffers.get(root)
    if spec is None or spec.is_input:
        return None
    return spec.owner if spec.owner != op_name else None


def build_problem(info: GraphInfo, target: Target, schedule: Schedule, partition: Partition
                  ) -> Problem:
    """Buffers, groups and options for ``info`` scheduled by ``schedule``."""
    step_of = schedule.step_of
    steps = len(schedule.order)
    budget = int(target.budget_per_tile)
    buffers = build_buffers(info, step_of, steps, outputs_stay(target))
    notes: list[str] = []

    # ---- groups: each follower joins its leader's group (ops in schedule order)
    group_members: dict[str, list[str]] = {}
    group_of_op: dict[str, str] = {}
    for name in schedule.order:
        lead = _leader_of(info, partition, buffers, name)
        if lead is not None and lead in group_of_op:
            g = group_of_op[lead]
            group_members[g].append(name)
            group_of_op[name] = g
        else:
            group_members[name] = [name]
            group_of_op[name] = name

    # ---- in place: the pairs where it may happen (each option decides by its bytes)
    for name in schedule.order:
        oc = partition.ops[name]
        op = info.op_by_name[name]
        if not (oc.in_place and oc.follows_input and op.inputs and op.outputs):
            continue
        rin, rout = info.root(op.inputs[0]), op.outputs[0]
        bin_, bout = buffers.get(rin), buffers.get(rout)
        if (bin_ is None or bout is None or rout != info.root(rout) or bin_.out_index is None
                or (bin_.is_output and bin_.end == steps)
                or bin_.reused_by is not None or bin_.end != step_of[name] + 1
                or group_of_op.get(bin_.owner) != group_of_op[name] or bout.owner != name
                or bin_.first >= step_of[name]):
            continue
        bin_.reused_by = name
        bout.reuses = rin

    hosted: dict[str, list[str]] = {}
    owned: dict[str, list[str]] = {}
    for root, spec in sorted(buffers.items()):
        (hosted if spec.is_input else owned).setdefault(spec.owner, []).append(root)

    groups: list[Group] = []
    group_of: dict[str, int] = {}
    leaders = [n for n in schedule.order if group_of_op[n] == n]
    for lead in leaders:
        members = group_members[lead]
        intervals: list[Interval] = []
        for m in members:
            s = step_of[m]
            intervals.append(Interval(s, s + 1, "step", m))
        for m in members:
            for root in owned.get(m, []):
                intervals.extend(_buffer_intervals(buffers[root]))
        for m in members:
            for root in hosted.get(m, []):
                b = buffers[root]
                intervals.append(Interval(b.first, b.end, "input", root))
        search, complete_s = _group_options(info, target, partition, buffers, members,
                                            intervals, proof=False)
        proof, complete_p = _group_options(info, target, partition, buffers, members,
                                           intervals, proof=True)
        if not search:
            # The followers' tile counts never match the leader's: let each run where it likes.
            notes.append(f"ops {', '.join(members[1:])} could not share the tiles of "
                         f"'{lead}' (no common tile count); placed independently")
            for m in members:
                solo = [m]
                ivs = [Interval(step_of[m], step_of[m] + 1, "step", m)]
                ivs += [iv for r in owned.get(m, []) for iv in _buffer_intervals(buffers[r])]
                ivs += [Interval(buffers[r].first, buffers[r].end, "input", r)
                        for r in hosted.get(m, [])]
                s_opts, _ = _group_options(info, target, partition, buffers, solo, ivs,
                                           proof=False, ignore_follow=True)
                p_opts, pc = _group_options(info, target, partition, buffers, solo, ivs,
                                            proof=True, ignore_follow=True)
                groups.append(_finish(len(groups), solo, ivs, s_opts, p_opts, pc, steps))
                group_of[m] = len(groups) - 1
            continue
        groups.append(_finish(len(groups), members, intervals, search, proof,
                              complete_s and complete_p, steps))
        for m in members:
            group_of[m] = len(groups) - 1
    return Problem(info=info, target=target, schedule=schedule, partition=partition, steps=steps,
                   step_of=step_of, budget=budget, buffers=buffers, groups=groups,
                   group_of=group_of, notes=notes)


def with_proof_options(problem: Problem) -> Problem:
    """``problem`` with each group's proof options appended to its search options, so that a
    placement found over the proof options (a proof model's witness: option ``k`` of
    ``proof_options``) is a placement of this problem with option ``len(options) + k``."""
    groups = [_finish(g.index, g.members, g.intervals, [*g.options, *g.proof_options],
                      list(g.proof_options), g.proof_complete, problem.steps)
              for g in problem.groups]
    return replace(problem, groups=groups)


def _buffer_intervals(spec: BufferSpec) -> list[Interval]:
    """A buffer's lifetime in its owner's group; the last step apart when an op may overwrite it
    in place there (its bytes then depend on the option)."""
    if spec.reused_by is None:
        return [Interval(spec.first, spec.end, "tensor", spec.root)]
    return [Interval(spec.first, spec.end - 1, "tensor", spec.root),
            Interval(spec.end - 1, spec.end, "tail", spec.root)]


def _finish(index: int, members: Sequence[str], intervals: Sequence[Interval],
            search: list[GroupOption], proof: list[GroupOption], complete: bool,
            steps: int) -> Group:
    g = Group(index=index, members=tuple(members), intervals=tuple(intervals),
              options=tuple(search), proof_options=tuple(proof), proof_complete=complete)
    g.trivial = all(o.base == 0 and not any(o.bumps) and o.spread == 0 for o in g.options)
    g.profiles = np.stack([o.profile(g.intervals, steps) for o in g.options])
    return g


def _group_options(info: GraphInfo, target: Target, partition: Partition,
                   buffers: Mapping[str, BufferSpec], members: Sequence[str],
                   intervals: Sequence[Interval], *, proof: bool, ignore_follow: bool = False
                   ) -> tuple[list[GroupOption], bool]:
    """Options of a group: each leader candidate with every matching follower combination."""
    model = target.cost_model
    complete = True
    lead = members[0]
    lead_cands = partition.ops[lead].proof if proof else partition.ops[lead].search
    options: list[GroupOption] = []
    for lc in lead_cands:
        per_member: list[list[Candidate]] = [[lc]]
        for f in members[1:]:
            fc = partition.ops[f].proof if proof else partition.ops[f].search
            match = [c for c in fc if c.tiles == lc.tiles and (ignore_follow
                                                             or c.cost.follows_input)]
            if not proof:
                match = sorted(match, key=lambda c: (c.cycles, c.charged_peak(
                    partition.charged[f]), c.split))[:1]
            per_member.append(match)
        if any(not m for m in per_member):
            continue
        combos = list(product(*per_member))
        if len(combos) > MAX_FOLLOWER_COMBOS:
            complete = False
            combos = combos[:MAX_FOLLOWER_COMBOS]
        for combo in combos:
            options.append(_make_option(info, target, partition, buffers, members, intervals,
                                        combo, model))
    return options, complete


def _make_option(info: GraphInfo, target: Target, partition: Partition,
                 buffers: Mapping[str, BufferSpec], members: Sequence[str],
                 intervals: Sequence[Interval], combo: Sequence[Candidate], model) -> GroupOption:
    n = combo[0].tiles
    by_op = dict(zip(members, combo, strict=False))
    base = sum(c.always for c in combo)
    bumps: list[int] = []
    io: list[dict[str, int]] = []
    # in place where the overwriting op's output takes exactly the input buffer's bytes per tile
    in_place: set[str] = set()
    for iv in intervals:
        if iv.kind != "tail":
            continue
        spec = buffers[iv.owner]
        f = spec.reused_by
        if f in by_op and spec.owner in by_op and spec.out_index is not None:
            outs = by_op[f].outputs
            if outs and outs[0] == by_op[spec.owner].outputs[spec.out_index]:
                in_place.add(spec.root)
    for iv in intervals:
        if iv.kind == "step":
            bumps.append(by_op[iv.owner].step)
        elif iv.kind in ("tensor", "tail"):
            spec = buffers[iv.owner]
            c = by_op[spec.owner]
            own = c.outputs[spec.out_index] if spec.out_index is not None else 0
            bumps.append(0 if iv.kind == "tail" and spec.root in in_place else own)
        else:
            got = io_input_bytes(target, info.tensors[iv.owner], n)
            io.append(got)
            bumps.append(sum(got.values()))
    cycles = 0
    for c in combo:
        cycles += c.cycles + (int(model.sync_cycles(n)) if c.cycles > 0 else 0)
    return GroupOption(
        cands=tuple(combo), tiles=n, shapes=combo[0].shapes, base=base, bumps=tuple(bumps),
        io=tuple(io), spread_per_tile=sum(c.spread_per_tile for c in combo),
        spread=sum(c.spread for c in combo), cycles=cycles, in_place=frozenset(in_place))
