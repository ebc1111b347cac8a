"""``tilec sweep``: a model's whole envelope on a target -- the largest batch that fits at every
image size and precision, and latency, throughput and peak tile occupancy on a grid -- computed
with shared work (one capture and lowering per family, bounds before placement, a result cache),
in parallel, and written as CSV, JSON, HTML and plots (docs/sweep.md).

Modules: :mod:`~tilec.sweep.grid` (the grid flags), :mod:`~tilec.sweep.cache` (keys, cache),
:mod:`~tilec.sweep.work` (one task, in any process), :mod:`~tilec.sweep.runner` (orchestration,
processes, Ray), :mod:`~tilec.sweep.result` (JSON/CSV), :mod:`~tilec.sweep.plots`,
:mod:`~tilec.sweep.page` (HTML), :mod:`~tilec.sweep.compare` (measured points),
:mod:`~tilec.sweep.terminal`.
"""

from __future__ import annotations

from tilec.sweep.cache import ResultCache
from tilec.sweep.grid import Grid
from tilec.sweep.result import SweepResult
from tilec.sweep.runner import Outcome, Progress, Request, run_sweep

__all__ = ["Grid", "Request", "ResultCache", "SweepResult", "sweep"]


def sweep(req: Request, cache: ResultCache, progress: Progress = None
          ) -> tuple[SweepResult, Outcome]:
    """Run ``req`` (cached results re-used) and return the results with the run's counts."""
    out = run_sweep(req, cache, progress)
    t = out.meta["target"]
    result = SweepResult(
        model={"name": str(req.model), "id": out.meta["model_id"]},
        target={"name": t.name, "tiles": int(t.tiles), "bytes_per_tile": int(t.bytes_per_tile),
                "reserved_bytes_per_tile": int(t.reserved_bytes_per_tile)},
        grid={"image_sizes": [list(s) for s in req.grid.image_sizes],
              "batches": list(req.grid.batches), "precisions": list(req.grid.precisions)},
        settings={"time_limit": req.settings.time_limit, "seed": req.settings.seed,
                  "cap": req.settings.cap},
        points=out.points, frontier=out.frontier)
    return result, out
