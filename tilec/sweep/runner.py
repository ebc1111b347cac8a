"""Orchestration of ``tilec sweep``: keys, cache, one lowering per family, tasks to workers.

Order of work: every configuration's key is computed first (no capture), the cache answers what
it can, and only when something is left is the model captured and lowered -- once per lowering
pipeline -- and the uncached (image size, precision) tasks run in worker processes (``jobs``),
on Ray (``ray``), or in this process (``jobs == 1``). Results are sorted before anything is
written, so the output does not depend on the number of workers or on what was cached.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tilec.compile import CompileOptions, lower, pipeline
from tilec.errors import InputError
from tilec.sweep import work
from tilec.sweep.cache import ResultCache, code_hash, key, model_id, target_id
from tilec.sweep.grid import Grid
from tilec.sweep.work import Settings, Task

Progress = Callable[[int, int, str], None] | None  # (configurations done, total, stage)


@dataclass
class Request:
    """One sweep: the model, the target and the grid, how hard to try and where to run."""

    model: str
    target: str
    grid: Grid
    settings: Settings = field(default_factory=Settings)
    input_shape: str | None = None
    jobs: int = 1
    ray: str | None = None  # a Ray address ("local": start one here)


@dataclass
class Outcome:
    """The sweep's results (sorted) and what this run computed (not part of any output file)."""

    points: list[dict[str, Any]]
    frontier: list[dict[str, Any]]
    meta: dict[str, Any]
    computed: int = 0  # configurations computed now (the rest came from the cache)
    cached: int = 0
    lowered: int = 0  # families captured and lowered by this run


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_sweep(req: Request, cache: ResultCache, progress: Progress = None) -> Outcome:
    from tilec.targets import load_target

    target = load_target(req.target)
    mid, tid, code = model_id(req.model, req.input_shape), target_id(target), code_hash()
    s = req.settings
    families: dict[str, tuple[str, list[str]]] = {}  # family key -> (first precision, passes)
    fam_of: dict[str, str] = {}
    for p in req.grid.precisions:
        names = pipeline(target, p, None, None)
        # a pipeline with quantize rewrites the graph for its precision: one family each
        fk = key("family", mid, tid, code, names, p if "quantize" in names else None)
        families.setdefault(fk, (p, names))
        fam_of[p] = fk

    def point_key(p: str, hw: tuple[int, int], b: int) -> str:
        return key("point", mid, tid, code, fam_of[p], p, hw, b, s.time_limit, s.seed)

    def frontier_key(p: str, hw: tuple[int, int]) -> str:
        return key("frontier", mid, tid, code, fam_of[p], p, hw, s.cap, s.time_limit, s.seed,
                   work.SEARCH_PLANS, work.SEARCH_BEYOND)

    points: dict[tuple, dict] = {}
    frontier: dict[tuple, dict] = {}
    tasks: list[Task] = []
    total = 0
    for p in req.grid.precisions:
        for hw in req.grid.image_sizes:
            todo = []
            for b in req.grid.batches:
                total += 1
                hit = cache.get(point_key(p, hw, b))
                if hit is not None:
                    points[(p, hw, b)] = hit
                else:
                    todo.append(b)
            total += 1
            hit = cache.get(frontier_key(p, hw))
            if hit is not None:
                frontier[(p, hw)] = hit
            if todo or hit is None:
                tasks.append(Task(family=fam_of[p], model=req.model, input_shape=req.input_shape,
                                  target=req.target, precision=p, image_size=hw, batches=todo,
                                  search=hit is None, settings=s))
    done = total - sum(t.weight for t in tasks)
    if progress:
        progress(done, total, "cache" if not tasks else "capture + lower")
    out = Outcome(points=[], frontier=[], meta={}, cached=done)
    if tasks:
        needed = {t.family for t in tasks}
        for fk in sorted(needed):
            p, names = families[fk]
            work.install(fk, _lower_family(req, target, p, req.grid.image_sizes[0]))
            out.lowered += 1
        # the costliest first, so the pool's tail is short: a task's cost is its probes (each
        # a partition of a new shape, about as dear at 128 px as at 1280 px), and the smaller
        # the image the larger the batch it fits and the more probes its search takes
        # (YOLOv4-P5 / gc200: 9-15 s at 128-256 px, 2-3 s at 1024 px and above)
        # (a search ranked as 8 grid points -- the long ones took 8-12 probes on that envelope --
        # so tasks with a search go before grid-only ones of the same size)
        tasks.sort(key=lambda t: (-(t.weight + int(t.search) * 8),
                                  t.image_size[0] * t.image_size[1], t.precision, t.image_size))
        if progress:
            progress(done, total, "plan")
        for task, result in _execute(tasks, req):
            for row in result["points"]:
                if row["status"] != work.ERROR:  # a failure is not a result to keep
                    cache.put(point_key(task.precision, task.image_size, row["batch"]), row)
                points[(task.precision, task.image_size, row["batch"])] = row
            if result["frontier"] is not None:
                if result["frontier"]["status"] != work.ERROR:
                    cache.put(frontier_key(task.precision, task.image_size), result["frontier"])
                frontier[(task.precision, task.image_size)] = result["frontier"]
            done += task.weight
            out.computed += task.weight
            if progress:
                progress(done, total, "plan")
    order = {p: i for i, p in enumerate(req.grid.precisions)}
    out.points = [points[k] for k in sorted(points, key=lambda k: (order[k[0]], k[1], k[2]))]
    out.frontier = [frontier[k] for k in sorted(frontier, key=lambda k: (order[k[0]], k[1]))]
    out.meta = {"target": target, "model_id": mid, "code": code}
    return out


def _lower_family(req: Request, target: Any, precision: str, hw: tuple[int, int]):
    """Capture at batch 1, lower with the onnxruntime proof: once per family. A built-in model
    is captured at its own size (the export most likely cached already: the graph is re-shaped
    to every grid size anyway), any other at the grid's first size."""
    from tilec.capture import capture, resolve_kind

    size = None if resolve_kind(req.model) == "zoo" else hw
    captured = capture(req.model, batch=1, image_size=size, input_shape=req.input_shape)
    if not captured.image_size:
        raise InputError(f"{req.model}: no NCHW image input: tilec sweep varies the image size")
    return lower(captured, target, CompileOptions(precision=precision))


def _execute(tasks: list[Task], req: Request):
    """(task, result) pairs as they finish."""
    if req.ray:
        yield from _execute_ray(tasks, req.ray)
        return
    jobs = max(1, min(req.jobs, len(tasks)))
    if jobs == 1:
        for t in tasks:
            yield t, work.run_task(t)
        return
    if "fork" in multiprocessing.get_all_start_methods():
        # the children inherit the lowered families: nothing is serialised
        ctx, init, args = multiprocessing.get_context("fork"), None, ()
    else:
        packed = {k: work.pack(v) for k, v in work._FAMILIES.items()}
        ctx, init, args = multiprocessing.get_context("spawn"), work.install_packed, (packed,)
    with ctx.Pool(jobs, initializer=init, initargs=args, maxtasksperchild=None) as pool:
        for i, result in pool.imap_unordered(_indexed, list(enumerate(tasks))):
            yield tasks[i], result


def _indexed(item: tuple[int, Task]) -> tuple[int, dict[str, Any]]:
    i, task = item
    return i, work.run_task(task)


def _ray_task(refs: list, task: Task) -> dict[str, Any]:
    """Run on a Ray worker: the family (sent once to the object store) unpacked once per
    worker process."""
    if task.family not in work._FAMILIES:
        import ray

        work.install(task.family, work.unpack(ray.get(refs[0])))
    return work.run_task(task)


def _execute_ray(tasks: list[Task], address: str):
    try:
        import ray
    except ImportError:
        raise InputError("--ray: Ray is not installed (pip install 'tilec[ray]')") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=None if address == "local" else address,
                     include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"--ray: cannot connect to '{address}': {exc}") from None
    try:
        refs = {k: ray.put(work.pack(work._FAMILIES[k])) for k in {t.family for t in tasks}}
        remote = ray.remote(num_cpus=1)(_ray_task)
        pending = {remote.remote([refs[t.family]], t): t for t in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for r in ready:
                yield pending.pop(r), ray.get(r)
    finally:
        if started:
            ray.shutdown()
