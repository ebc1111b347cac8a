"""Independent pieces of work in forked worker processes, with results in a fixed order.

Used where tilec has a handful of independent, deterministic evaluations of a fraction of a
second to seconds each -- the uncertainty band's settings (tilec.plan.band), the what-if's
questions (tilec.plan.whatif) -- and a machine with more than one core. The results are taken in
the order of the inputs, whichever worker finished first, so the outcome does not depend on the
number of processes. ``workers`` is a setting of the compile (CompileOptions.workers, also the
CP-SAT worker count, default 2), never the machine's core count: same input, same output.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

_JOB: tuple[Callable[[Any], Any], list[Any], Callable[[], None] | None] | None = None
"""What forked workers of :func:`pmap` run: set in the parent just before the fork, so the
function (typically a closure over everything the caller has cached) is inherited, not pickled;
only indices and results cross the pipe."""


def _job(i: int) -> tuple[int, Any]:
    assert _JOB is not None
    fn, items, child = _JOB
    if child is not None:
        child()
    return i, fn(items[i])


def pmap(fn: Callable[[Any], Any], items: list[Any], workers: int,
          progress: Callable[[int], None] | None = None, *,
          child: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(x) for x in items]``, in ``workers`` forked processes when there are several
    items and the platform forks (else in this process). Results come back in ``items``' order,
    whichever worker finished first, so the outcome does not depend on the parallelism;
    ``child`` runs first in each worker (e.g. to silence progress output).

    Forked rather than spawned: a worker starts with the parent's model, targets and price
    caches, and sends back only small results, where a spawned one would re-import and re-price
    (~1 s). Callers pass independent pieces of work of 0.05 s and up (the band's settings, the
    what-if's questions): two processes on a two-core machine nearly halve them. A worker must
    not use an onnxruntime session or a thread the parent made before the fork (new ones are
    fine: tilec makes a session per run, with its own threads).
    """
    global _JOB
    if (workers <= 1 or len(items) < 2 or "fork" not in mp.get_all_start_methods()
            or mp.current_process().daemon):  # a pool's worker (tilec sweep) may not fork
        out = []
        for i, x in enumerate(items):
            out.append(fn(x))
            if progress:
                progress(i + 1)
        return out
    _JOB = (fn, items, child)
    try:
        got: dict[int, Any] = {}
        with mp.get_context("fork").Pool(min(workers, len(items))) as pool:
            for i, r in pool.imap_unordered(_job, range(len(items))):
                got[i] = r
                if progress:
                    progress(len(got))
    finally:
        _JOB = None
    return [got[i] for i in range(len(items))]
