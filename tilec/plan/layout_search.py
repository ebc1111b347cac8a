"""Exact layout search in the canonical solution space (the ideas of MiniMalloc, own code).

The problem: items with half-open lifetimes ``[lower, upper)``, sizes, an alignment and an address
window each, and a capacity; find offsets so that no two items live at the same time overlap.

Facts this search rests on (Moffitt, "MiniMalloc", ASPLOS 2023, and its public description):

* **Canonical solutions.** Any feasible layout can be pushed down (every item to the lowest
  aligned address free of the items below it) without breaking it; in the result every item sits
  at its window's floor or on the end of an item it overlaps in time. So it suffices to place items
  one by one, each at the lowest (aligned) address above the items already placed that it
  overlaps -- its *minimum offset* -- and to enumerate only *which item goes next*. To place each
  set of positions once, offsets are placed in non-decreasing order, ties by a fixed preorder.
* **Dominance.** An item is never placed at or above the lowest *top* (minimum offset + size) of
  another unplaced item: that one would fit entirely below, so the layout that places it first
  is at least as good.
* **Hatless pruning.** If the item just placed overlaps no unplaced item, its minimum offset can
  never change again, so in every canonical completion it sits exactly here, placed before any
  item that sorts after it; the alternatives at this node (those items) cannot complete, so the
  node stops.
* **Spatial inference on sections.** The timeline is cut into *sections*, the maximal sets of
  items live at one moment (the cliques of the interval graph; each item spans consecutive ones).
  A section's floor (the top of its placed items, at least the lowest minimum offset of its
  unplaced ones, at least the current offset since offsets only grow) plus the sizes of its
  unplaced items must fit the capacity; otherwise backtrack now, long before the overflow shows.
* **Decomposition.** Where no item crosses from one section to the next the problem splits into
  independent partitions, solved one after the other -- before the search (static) and during it,
  each time the last unplaced item crossing a cut is placed (dynamic). A sub-problem gets its own
  preorder from the bytes still unplaced in its sections; if one fails, the placement that split
  the problem is undone (a solved sibling is never re-searched: they are independent).
* **Static orderings, round robin.** The preorder matters: items by the largest section total they
  take part in (T), by lifetime width (W), by area (A), in the orders WAT, TAW and TWA; each runs
  under a node limit that doubles every round, so an easy order finishes early.

The search is complete: when a run ends without reaching its node limit and without a layout, no
layout exists (a proof, reported as ``infeasible``). The kernel works on flat integer arrays so
that numba can compile it (a dependency; it is used when importable, cached on disk; the
environment variable ``TILEC_NO_NUMBA=1`` turns it off); without numba the same code runs as
plain Python, with the same answers but more than 100x slower.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FOUND, EXHAUSTED, LIMIT = 1, 0, -1
HEURISTICS = ("WAT", "TAW", "TWA")
MAX_ITEMS = 2000
"""Largest independent partition searched (modelling choice: the kernel's frames hold O(n^2)
integers, 64 MB at 2,000 items; beyond it the search answers "unknown" rather than risk the
machine's memory)."""


def _kernel(n: int, size: np.ndarray, align: np.ndarray, win_lo: np.ndarray,
            win_hi: np.ndarray, sec_lo: np.ndarray, sec_hi: np.ndarray, adj_ptr: np.ndarray,
            adj_idx: np.ndarray, smem_ptr: np.ndarray, smem_idx: np.ndarray, nsec: int,
            capacity: int, node_limit: int, out: np.ndarray, width: np.ndarray,
            area: np.ndarray, hcode: np.ndarray) -> int:
    """Depth-first search over canonical layouts of items 0..n-1 (given in preorder).

    ``sec_lo/sec_hi``: each item's section range; ``adj_*``: items overlapping in time (CSR);
    ``smem_*``: the items of each section (CSR). Returns FOUND (offsets in ``out``), EXHAUSTED
    (no layout exists) or LIMIT (node limit reached).

    Iterative (the compiled form cannot recurse cheaply): a stack of frames, each either a
    *search node* (candidates in (minimum offset, preorder) order, the next one to try) or a
    *decomposition* (the independent sub-ranges of sections left once no unplaced item crosses
    a cut, solved one after the other). Every state change goes on one undo trail; a frame keeps
    the trail position to return to.
    """
    if n == 0:
        return FOUND
    big = np.iinfo(np.int64).max
    off = np.full(n, -1, np.int64)
    minoff = win_lo.copy()
    floor = np.zeros(nsec, np.int64)
    total = np.zeros(nsec, np.int64)
    cut = np.zeros(max(nsec, 1), np.int64)  # unplaced items spanning sections s and s+1
    for b in range(n):
        for s in range(sec_lo[b], sec_hi[b]):
            total[s] += size[b]
        for s in range(sec_lo[b], sec_hi[b] - 1):
            cut[s] += 1
    # undo trail: code = index * 8 + kind (0 minoff, 1 floor, 2 total, 3 offset, 4 cut, 5 rank,
    # 6 lowest minimum offset of a section), old value
    # one placement or sub-range start writes at most `step` entries; the trail grows by doubling
    step = 2 * n + 4 * nsec + 8
    tr_code = np.empty(8 * step, np.int64)
    tr_old = np.empty(8 * step, np.int64)
    tt = 0
    stamp = np.zeros(nsec, np.int64)
    stamp_now = 0
    affected = np.empty(nsec, np.int64)
    moved = np.zeros(n, np.int64)  # stamp of the placement that last raised an item's offset
    secmin = np.full(nsec, big, np.int64)  # per section: lowest minimum offset of its unplaced
    for s in range(nsec):
        for j in range(smem_ptr[s], smem_ptr[s + 1]):
            if minoff[smem_idx[j]] < secmin[s]:
                secmin[s] = minoff[smem_idx[j]]
    tmpc = np.empty(n, np.int64)
    rank = np.arange(n)  # tie-break among equal offsets: the preorder of the item's context
    kv = np.empty((n, 3), np.int64)
    nf = 2 * n + 2
    ftype = np.zeros(nf, np.int64)  # 0 search node, 1 decomposition
    owner = np.full(nf, -1, np.int64)  # search node: frame of the decomposition it solves in
    cs0 = np.zeros(nf, np.int64)  # search node: its context's section range
    cs1 = np.zeros(nf, np.int64)
    cand = np.empty((nf, n), np.int64)
    cnt = np.zeros(nf, np.int64)
    pos = np.zeros(nf, np.int64)
    placed = np.full(nf, -1, np.int64)
    mark = np.zeros(nf, np.int64)
    lo_off = np.zeros(nf, np.int64)
    lo_idx = np.full(nf, -1, np.int64)
    min_top = np.zeros(nf, np.int64)
    hatless = np.zeros(nf, np.bool_)
    bounds = np.empty((nf, nsec + 1), np.int64)  # decomposition: sub-range boundaries
    nb = np.zeros(nf, np.int64)
    cur = np.zeros(nf, np.int64)
    nodes = 0
    # the root search node: every item, all sections
    f = 0
    ftype[0] = 0
    owner[0] = -1
    cs0[0] = 0
    cs1[0] = nsec
    m = 0
    for c in range(n):
        oc = minoff[c]
        j = m
        while j > 0:
            p = cand[0, j - 1]
            if minoff[p] < oc or (minoff[p] == oc and rank[p] < rank[c]):
                break
            cand[0, j] = p
            j -= 1
        cand[0, j] = c
        m += 1
    cnt[0] = m
    mt = big
    for k in range(m):
        c = cand[0, k]
        if minoff[c] + size[c] < mt:
            mt = minoff[c] + size[c]
    min_top[0] = mt
    # event: 0 = continue search node f, 1 = frame f's child failed, 2 = context of f solved
    event = 0
    while True:
        if event == 2:
            # the context searched by node f is solved: return to its decomposition
            g = owner[f]
            if g < 0:
                for k in range(n):
                    out[k] = off[k]
                return FOUND
            f = g
            # start the next non-empty sub-range of decomposition g
            started = False
            while cur[f] + 1 < nb[f]:
                cur[f] += 1
                s0 = bounds[f, cur[f]]
                s1 = bounds[f, cur[f] + 1]
                e = f + 1
                # the sub-range's own preorder (keys from the totals left now), then its
                # candidates in (minimum offset, rank) order
                nm = 0
                for c in range(n):
                    if off[c] >= 0 or sec_hi[c] <= s0 or sec_lo[c] >= s1:
                        continue
                    tv = 0
                    for s in range(sec_lo[c], sec_hi[c]):
                        if total[s] > tv:
                            tv = total[s]
                    for h in range(3):
                        kv[nm, h] = tv if hcode[h] == 0 else (width[c] if hcode[h] == 1
                                                              else area[c])
                    tmpc[nm] = c
                    nm += 1
                order = np.arange(nm)
                for h in range(2, -1, -1):
                    sub = np.empty(nm, np.int64)
                    for k in range(nm):
                        sub[k] = -kv[order[k], h]
                    order = order[np.argsort(sub, kind="mergesort")]
                if tt + step > tr_code.shape[0]:
                    tr_code = np.concatenate((tr_code, np.empty(tr_code.shape[0], np.int64)))
                    tr_old = np.concatenate((tr_old, np.empty(tr_old.shape[0], np.int64)))
                for k in range(nm):
                    c = tmpc[order[k]]
                    tr_code[tt] = c * 8 + 5
                    tr_old[tt] = rank[c]
                    tt += 1
                    rank[c] = k
                m = 0
                for k2 in range(nm):
                    c = tmpc[k2]
                    oc = minoff[c]
                    j = m
                    while j > 0:
                        p = cand[e, j - 1]
                        if minoff[p] < oc or (minoff[p] == oc and rank[p] < rank[c]):
                            break
                        cand[e, j] = p
                        j -= 1
                    cand[e, j] = c
                    m += 1
                if m == 0:
                    continue
                mt = big
                for k in range(m):
                    c = cand[e, k]
                    if minoff[c] + size[c] < mt:
                        mt = minoff[c] + size[c]
                ftype[e] = 0
                owner[e] = f
                cs0[e] = s0
                cs1[e] = s1
                cnt[e] = m
                pos[e] = 0
                placed[e] = -1
                lo_off[e] = 0
                lo_idx[e] = -1
                min_top[e] = mt
                f = e
                started = True
                break
            if started:
                event = 0
                continue
            # every sub-range solved: the search node below g has solved its context
            f = f - 1
            event = 2
            continue
        if event == 1:
            # the child of search node f failed: undo f's placement, maybe stop (hatless)
            while tt > mark[f]:
                tt -= 1
                code = tr_code[tt]
                i = code >> 3
                kind = code & 7
                if kind == 0:
                    minoff[i] = tr_old[tt]
                elif kind == 1:
                    floor[i] = tr_old[tt]
                elif kind == 2:
                    total[i] = tr_old[tt]
                elif kind == 3:
                    off[i] = tr_old[tt]
                elif kind == 4:
                    cut[i] = tr_old[tt]
                elif kind == 5:
                    rank[i] = tr_old[tt]
                else:
                    secmin[i] = tr_old[tt]
            placed[f] = -1
            if hatless[f]:
                pos[f] = cnt[f]
            event = 0
        # event 0: try the next candidate of search node f
        advanced = False
        s0 = cs0[f]
        s1 = cs1[f]
        while pos[f] < cnt[f]:
            b = cand[f, pos[f]]
            pos[f] += 1
            o = minoff[b]
            if o >= min_top[f]:
                pos[f] = cnt[f]  # sorted by offset: every later candidate is dominated too
                break
            if o < lo_off[f] or (o == lo_off[f] and rank[b] < lo_idx[f]):
                continue  # not canonical: this set of positions is reached in another order
            top = o + size[b]
            if top > win_hi[b] or top > capacity:
                continue
            if tt + step > tr_code.shape[0]:
                tr_code = np.concatenate((tr_code, np.empty(tr_code.shape[0], np.int64)))
                tr_old = np.concatenate((tr_old, np.empty(tr_old.shape[0], np.int64)))
            mark[f] = tt
            tr_code[tt] = b * 8 + 3
            tr_old[tt] = -1
            tt += 1
            off[b] = o
            placed[f] = b
            hat = False
            stamp_now += 1
            naff = 0
            for j in range(adj_ptr[b], adj_ptr[b + 1]):
                c = adj_idx[j]
                if off[c] >= 0:
                    continue
                hat = True
                if minoff[c] < top:
                    old = minoff[c]
                    tr_code[tt] = c * 8
                    tr_old[tt] = old
                    tt += 1
                    a = align[c]
                    minoff[c] = (top + a - 1) // a * a
                    moved[c] = stamp_now
                    for s in range(sec_lo[c], sec_hi[c]):
                        # the section's lowest minimum offset can only change if c held it
                        if secmin[s] == old and stamp[s] != stamp_now:
                            stamp[s] = stamp_now
                            affected[naff] = s
                            naff += 1
            hatless[f] = not hat
            ok = True
            for s in range(sec_lo[b], sec_hi[b]):
                tr_code[tt] = s * 8 + 2
                tr_old[tt] = total[s]
                tt += 1
                total[s] -= size[b]
                if floor[s] < top:
                    tr_code[tt] = s * 8 + 1
                    tr_old[tt] = floor[s]
                    tt += 1
                    floor[s] = top
                if secmin[s] == o and stamp[s] != stamp_now:  # b may have held it
                    stamp[s] = stamp_now
                    affected[naff] = s
                    naff += 1
            # a section's unplaced items all sit at or above their lowest minimum offset
            for k in range(naff):
                s = affected[k]
                low = big
                for j in range(smem_ptr[s], smem_ptr[s + 1]):
                    c = smem_idx[j]
                    if off[c] < 0 and minoff[c] < low:
                        low = minoff[c]
                if low != secmin[s]:
                    tr_code[tt] = s * 8 + 6
                    tr_old[tt] = secmin[s]
                    tt += 1
                    secmin[s] = low
            for s in range(s0, s1):
                fl = floor[s]
                if total[s] > 0:
                    if fl < o:
                        fl = o
                    if fl < secmin[s]:
                        fl = secmin[s]
                if fl + total[s] > capacity:
                    ok = False
                    break
            if ok:
                nodes += 1
                if nodes > node_limit:
                    return LIMIT
                # unplaced items crossing a cut inside the context: where none is left, split
                ncut = 0
                for s in range(sec_lo[b], sec_hi[b] - 1):
                    tr_code[tt] = s * 8 + 4
                    tr_old[tt] = cut[s]
                    tt += 1
                    cut[s] -= 1
                    if cut[s] == 0 and s0 <= s and s + 1 < s1:
                        ncut += 1
                e = f + 1
                if ncut > 0:
                    # decomposition frame e: sub-ranges between the zero cuts
                    ftype[e] = 1
                    bounds[e, 0] = s0
                    k = 1
                    for s in range(max(s0, sec_lo[b]), min(s1 - 1, sec_hi[b] - 1)):
                        if cut[s] == 0:
                            bounds[e, k] = s + 1
                            k += 1
                    bounds[e, k] = s1
                    nb[e] = k
                    cur[e] = -1
                    f = e
                    owner[f] = -2
                    # reuse the 'solved' path: it starts the first non-empty sub-range
                    # (owner of a pseudo-node above e is e)
                    owner[f + 1] = e
                    f = f + 1
                    event = 2
                    advanced = True
                    break
                # the parent's order minus b: the items b raised are taken out, sorted among
                # themselves and merged back (the others kept their order)
                nm = 0
                m = 0
                mt = big
                for k in range(cnt[f]):
                    c = cand[f, k]
                    if c == b:
                        continue
                    t = minoff[c] + size[c]
                    if t < mt:
                        mt = t
                    if moved[c] == stamp_now:
                        oc = minoff[c]
                        j = nm
                        while j > 0:
                            p = tmpc[j - 1]
                            if minoff[p] < oc or (minoff[p] == oc and rank[p] < rank[c]):
                                break
                            tmpc[j] = p
                            j -= 1
                        tmpc[j] = c
                        nm += 1
                    else:
                        cand[e, m] = c
                        m += 1
                if nm > 0:
                    # merge from the back: cand[e, :m] and tmpc[:nm] into cand[e, :m + nm]
                    i1 = m - 1
                    i2 = nm - 1
                    w = m + nm - 1
                    while i2 >= 0:
                        q = tmpc[i2]
                        if i1 >= 0:
                            p = cand[e, i1]
                            if minoff[p] > minoff[q] or (minoff[p] == minoff[q]
                                                         and rank[p] > rank[q]):
                                cand[e, w] = p
                                i1 -= 1
                                w -= 1
                                continue
                        cand[e, w] = q
                        i2 -= 1
                        w -= 1
                    m += nm
                ftype[e] = 0
                owner[e] = owner[f]
                cs0[e] = s0
                cs1[e] = s1
                cnt[e] = m
                pos[e] = 0
                placed[e] = -1
                lo_off[e] = o
                lo_idx[e] = rank[b]
                min_top[e] = mt
                f = e
                if m == 0:
                    event = 2
                advanced = True
                break
            # the check failed: undo the placement
            while tt > mark[f]:
                tt -= 1
                code = tr_code[tt]
                i = code >> 3
                kind = code & 7
                if kind == 0:
                    minoff[i] = tr_old[tt]
                elif kind == 1:
                    floor[i] = tr_old[tt]
                elif kind == 2:
                    total[i] = tr_old[tt]
                elif kind == 3:
                    off[i] = tr_old[tt]
                elif kind == 4:
                    cut[i] = tr_old[tt]
                elif kind == 5:
                    rank[i] = tr_old[tt]
                else:
                    secmin[i] = tr_old[tt]
            placed[f] = -1
            if hatless[f]:
                pos[f] = cnt[f]
        if advanced:
            continue
        # search node f is exhausted: its parent fails
        if f == 0:
            return EXHAUSTED
        # the first node of a sub-range (owner just below): the whole decomposition fails,
        # and with it the placement of the search node below that
        f = f - 2 if owner[f] == f - 1 else f - 1
        event = 1


def _compile():
    """The kernel compiled by numba when available (cached on disk), else plain Python."""
    if os.environ.get("TILEC_NO_NUMBA"):
        return _kernel, False
    try:
        import numba
    except ImportError:
        return _kernel, False
    try:
        return numba.njit(cache=True, nogil=True)(_kernel), True
    except Exception:  # pragma: no cover - a numba that cannot compile: stay correct
        return _kernel, False


_COMPILED = None


def kernel():
    """(the kernel, whether it is compiled); the first call compiles (or loads numba's on-disk
    cache) and runs it once on a tiny instance, so no search's time limit pays for that."""
    global _COMPILED
    if _COMPILED is None:
        fn, compiled = _compile()
        z = np.zeros(1, np.int64)
        one = np.ones(1, np.int64)
        fn(1, one, one, z, one, z, one, np.zeros(2, np.int64), np.zeros(0, np.int64),
           np.array([0, 1], np.int64), z.copy(), 1, 1, 10, np.zeros(1, np.int64), one, one,
           np.array([0, 1, 2], np.int64))
        _COMPILED = (fn, compiled)
    return _COMPILED


# ----------------------------------------------------------------------------------- sweep
@dataclass
class Sweep:
    """Sections (maximal sets of items live at one moment) and independent partitions."""

    sec_lo: np.ndarray  # per item: first section
    sec_hi: np.ndarray  # per item: one past its last section
    sections: list[list[int]]  # items of each section
    partitions: list[tuple[int, int]]  # section ranges that share no item


def sweep(lower: Sequence[int], upper: Sequence[int]) -> Sweep:
    """Cut the timeline into sections: one at every end that follows a start."""
    n = len(lower)
    events = sorted([(lower[i], 1, i) for i in range(n)] + [(upper[i], 0, i) for i in range(n)])
    active: set[int] = set()
    sections: list[list[int]] = []
    sec_lo = np.full(n, -1, np.int64)
    sec_hi = np.full(n, -1, np.int64)
    grew = False
    for _t, kind, i in events:
        if kind == 1:
            active.add(i)
            sec_lo[i] = len(sections)
            grew = True
        else:
            if grew:
                sections.append(sorted(active))
                grew = False
            active.discard(i)
            sec_hi[i] = len(sections)
    # partitions: cut between sections s and s+1 when no item spans both
    crossing = np.zeros(max(1, len(sections)), np.int64)
    for i in range(n):
        for s in range(int(sec_lo[i]), int(sec_hi[i]) - 1):
            crossing[s] += 1
    parts: list[tuple[int, int]] = []
    start = 0
    for s in range(len(sections)):
        if s == len(sections) - 1 or crossing[s] == 0:
            parts.append((start, s + 1))
            start = s + 1
    return Sweep(sec_lo, sec_hi, sections, parts)


# ----------------------------------------------------------------------------------- driver
@dataclass
class SearchResult:
    status: str  # "ok" | "infeasible" | "unknown"
    offsets: list[int]
    nodes_limit: int = 0
    heuristic: str = ""
    seconds: float = 0.0
    note: str = ""


def _preorder(idx: list[int], heuristic: str, lower, upper, size, sec_lo, sec_hi,
              sec_total) -> list[int]:
    """Items in descending order of the heuristic's keys (T: largest section total, W: width,
    A: area), ties by input position -- deterministic."""
    def key(i: int) -> tuple:
        vals = {"T": max(sec_total[int(sec_lo[i]):int(sec_hi[i])]),
                "W": upper[i] - lower[i],
                "A": (upper[i] - lower[i]) * size[i],
                "Z": size[i]}
        return (*(-vals[c] for c in heuristic), i)
    return sorted(idx, key=key)


def search(lower: Sequence[int], upper: Sequence[int], size: Sequence[int], capacity: int, *,
           align: Sequence[int] | None = None, win_lo: Sequence[int] | None = None,
           win_hi: Sequence[int] | None = None, time_limit: float = 10.0,
           heuristics: Sequence[str] = HEURISTICS) -> SearchResult:
    """Offsets for every item within ``capacity``, a proof that none exist, or "unknown".

    Items of size 0 get offset 0. ``align`` (default 1) and the address window ``[win_lo,
    win_hi)`` (default the whole capacity) constrain each item. Partitions are solved one after
    the other; each runs the heuristics round robin with a node limit doubling per round until one
    finds a layout or proves there is none, or ``time_limit`` seconds pass.
    """
    fn, _compiled = kernel()  # before the clock starts: compiling is not searching
    t0 = time.perf_counter()
    n = len(lower)
    align = list(align) if align is not None else [1] * n
    win_lo = list(win_lo) if win_lo is not None else [0] * n
    win_hi = list(win_hi) if win_hi is not None else [capacity] * n
    offsets = [0] * n
    real = [i for i in range(n) if size[i] > 0 and upper[i] > lower[i]]
    for i in real:
        first = -(-win_lo[i] // align[i]) * align[i]
        if first + size[i] > min(win_hi[i], capacity):
            return SearchResult("infeasible", [], seconds=time.perf_counter() - t0)
    if not real:
        return SearchResult("ok", offsets, seconds=time.perf_counter() - t0)
    if capacity > 2**61 or max(align[i] for i in real) > 2**61:
        # offset + size and the alignment round-up must stay inside int64 in the kernel
        return SearchResult("unknown", [], seconds=time.perf_counter() - t0,
                            note="capacity or alignment beyond the exact search's 61-bit range")
    sw = sweep([lower[i] for i in real], [upper[i] for i in real])
    item_size = np.array([size[i] for i in real], np.int64)
    sec_total = [int(sum(item_size[j] for j in sec)) for sec in sw.sections]
    r_lower = [lower[i] for i in real]
    r_upper = [upper[i] for i in real]
    used_limit, used_h = 0, ""
    spent_nodes = 0  # node limits of the calls that ran out: a rate to size the last call
    t_search = time.perf_counter()
    for s0, s1 in sw.partitions:
        members = [j for j in range(len(real)) if sw.sec_lo[j] >= s0 and sw.sec_hi[j] <= s1]
        if len(members) > MAX_ITEMS:
            return SearchResult("unknown", [], seconds=time.perf_counter() - t0,
                                note=f"{len(members)} buffers live in one connected stretch of "
                                     f"the timeline; the exact search stops at {MAX_ITEMS}")
        orders = [_preorder(members, h, r_lower, r_upper, item_size, sw.sec_lo, sw.sec_hi,
                            sec_total) for h in heuristics]
        limit = max(1, len(members))
        done = False
        while not done:
            limit *= 2
            for h, order in zip(heuristics, orders, strict=True):
                now = time.perf_counter()
                left = time_limit - (now - t0)
                if left <= 0:
                    return SearchResult("unknown", [], limit, h, now - t0)
                run_limit = limit
                if spent_nodes > 10_000:  # do not start a call that cannot end in time
                    rate = spent_nodes / max(1e-6, now - t_search)
                    run_limit = max(1, min(limit, int(rate * left)))
                res, offs = _run(fn, order, real, sw, s0, s1, lower, upper, size, align,
                                 win_lo, win_hi, capacity, run_limit, h)
                if res == LIMIT:
                    spent_nodes += run_limit
                    continue
                if res == EXHAUSTED:
                    return SearchResult("infeasible", [], limit, h, time.perf_counter() - t0)
                for j, o in zip(order, offs, strict=True):
                    offsets[real[j]] = int(o)
                used_limit, used_h = max(used_limit, limit), h
                done = True
                break
    return SearchResult("ok", offsets, used_limit, used_h, time.perf_counter() - t0)


def _run(fn, order: list[int], real: list[int], sw: Sweep, s0: int, s1: int, lower, upper,
         size, align, win_lo, win_hi, capacity: int, limit: int,
         heuristic: str) -> tuple[int, np.ndarray]:
    """One kernel call on a partition's items in ``order`` (local indices = positions)."""
    n = len(order)
    pos = {j: k for k, j in enumerate(order)}
    glob = [real[j] for j in order]
    a_size = np.array([size[i] for i in glob], np.int64)
    a_align = np.array([max(1, align[i]) for i in glob], np.int64)
    a_lo = np.array([-(-win_lo[i] // max(1, align[i])) * max(1, align[i]) for i in glob],
                    np.int64)
    a_hi = np.array([win_hi[i] for i in glob], np.int64)
    slo = np.array([sw.sec_lo[j] - s0 for j in order], np.int64)
    shi = np.array([sw.sec_hi[j] - s0 for j in order], np.int64)
    nsec = s1 - s0
    smem: list[list[int]] = [[pos[j] for j in sw.sections[s] if j in pos] for s in range(s0, s1)]
    # overlap in time <=> share a section (interval graph: every overlap has a common moment
    # that is some section's maximal clique)
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for mem in smem:
        for a in mem:
            nbrs[a].update(mem)
    adj_ptr = np.zeros(n + 1, np.int64)
    adj: list[int] = []
    for k in range(n):
        nbrs[k].discard(k)
        adj.extend(sorted(nbrs[k]))
        adj_ptr[k + 1] = len(adj)
    smem_ptr = np.zeros(nsec + 1, np.int64)
    flat: list[int] = []
    for s, mem in enumerate(smem):
        flat.extend(sorted(mem))
        smem_ptr[s + 1] = len(flat)
    out = np.zeros(n, np.int64)
    res = fn(n, a_size, a_align, a_lo, a_hi, slo, shi, adj_ptr, np.array(adj, np.int64),
             smem_ptr, np.array(flat, np.int64), nsec, capacity, limit, out,
             np.array([upper[i] - lower[i] for i in glob], np.int64),
             np.array([(upper[i] - lower[i]) * size[i] for i in glob], np.int64),
             np.array(["TWA".index(ch) for ch in heuristic], np.int64))
    return int(res), out
