"""The work of one sweep task, in whichever process runs it: plan the grid points of one
(image size, precision) and search its largest batch.

A *family* is the model captured and lowered once (per lowering pipeline); every configuration
of the sweep is that lowered graph re-shaped (:func:`tilec.compile.reshaped`): no export, no
lowering, no onnxruntime proof per point. Worker processes get the families by ``fork`` (the
parent's memory, nothing serialised) or, where there is no fork and on Ray, as ONNX bytes
(:func:`pack` / :func:`unpack`) sent once per process.

The batch search re-uses the what-if machinery (:mod:`tilec.plan.whatif`): the same probes
(bounds (a)/(b) and the framebuffer check first, a fit-only plan the verifier checks where they do
not decide) and the same exact/bound rule and wording; its upward search is steered by the bounds'
need (:mod:`tilec.plan.whatif_secant`: every probe of a new batch is a new shape, so it predicts
the ceiling instead of doubling towards it), then plans below the ceiling and the values up to it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from tilec.compile import CompileOptions, Lowered, capture, lower, reshaped
from tilec.plan import settings_from
from tilec.plan.model import STATUS_FITS
from tilec.plan.partition import partition
from tilec.plan.pipeline import Options, run
from tilec.plan.whatif import SAFETY_FLOOR
from tilec.plan.whatif_search import (
    FITS,
    NO,
    UNKNOWN,
    Knob,
    Probe,
    Prober,
    _bounds_monotone,
    _up_note,
)
from tilec.plan.whatif_secant import secant_up

SEARCH_PLANS = 6
"""Fit-only plans per batch search after batch 1 (modelling choice: the bisection from batch 1
to the default cap of 64 takes at most 6; more than the what-if's 4 because the sweep's search
starts at 1, not next to the answer. What is left checks the batches above the answer; a re-plan
of YOLOv4-P5 costs 1-2 s, and a sweep runs ~75 searches, so the budget is kept at the
bisection's: batches left unchecked are named in the note and make the answer a bound)."""
SEARCH_BEYOND = 0
"""Batches past the bounds' ceiling the search checks (the what-if checks ``BEYOND`` = 4).
Modelling choice, for time: on YOLOv4-P5 / gc200 (128-1280 px, fp16 + fp32) those checks were
~300 of the sweep's ~580 probes, about half its time, and can only turn a ``bound`` answer into a
larger ``bound``; the note says "above N not checked" instead, and the what-if
(``tilec compile --batch N --what-if``) checks them for one configuration."""
SEARCH_SECONDS = 10 * SAFETY_FLOOR
"""Wall-clock safety limit of one batch search (never meant to decide an answer: the effort is
counted in probes; an answer it cuts says so)."""

_FAMILIES: dict[str, Lowered] = {}
"""Lowered models of this process, by family key (filled by the parent before it forks, or by
:func:`install_packed` in a spawned / Ray worker)."""


@dataclass(frozen=True)
class Settings:
    """What a task's answers depend on besides the configuration (part of every cache key)."""

    time_limit: float = 10.0
    seed: int = 0
    cap: int = 64  # the batch search looks no higher

    def options(self) -> CompileOptions:
        return CompileOptions(time_limit=self.time_limit, seed=self.seed, workers=1,
                              what_if=False)


@dataclass
class Task:
    """The uncached work of one (image size, precision)."""

    family: str
    model: str
    input_shape: str | None
    target: str
    precision: str
    image_size: tuple[int, int]
    batches: list[int]  # grid points to plan
    search: bool  # search the largest batch too
    settings: Settings = field(default_factory=Settings)

    @property
    def weight(self) -> int:
        """Configurations it decides (the progress bar's unit)."""
        return len(self.batches) + int(self.search)


def install(key: str, lowered: Lowered) -> None:
    _FAMILIES[key] = lowered


def pack(lowered: Lowered) -> dict[str, Any]:
    """A lowered model as plain data (ONNX bytes + the capture's fields) for another process."""
    import onnx_graphsurgeon as gs

    cap = lowered.captured
    return {"onnx": gs.export_onnx(lowered.graph).SerializeToString(),
            "captured": {f.name: getattr(cap, f.name) for f in dataclasses.fields(cap)
                         if f.name != "graph"},
            "precision": lowered.precision, "passes": list(lowered.passes),
            "target": getattr(lowered.target, "source", "") or lowered.target.name}


def unpack(data: dict[str, Any]) -> Lowered:
    """The inverse of :func:`pack` (the planner's view is rebuilt at each re-shape)."""
    import onnx
    import onnx_graphsurgeon as gs

    from tilec.capture import Captured
    from tilec.targets import load_target

    graph = gs.import_onnx(onnx.load_from_string(data["onnx"]))
    cap = Captured(graph=graph, **data["captured"])
    return Lowered(captured=cap, target=load_target(data["target"]), graph=graph, info=None,
                   precision=data["precision"], passes=data["passes"])


def install_packed(families: dict[str, dict[str, Any]]) -> None:
    """Pool initializer where there is no fork: the parent's families, once per process."""
    for k, data in families.items():
        if k not in _FAMILIES:
            _FAMILIES[k] = unpack(data)


# ------------------------------------------------------------------------------ one task
def run_task(task: Task) -> dict[str, Any]:
    """Plan ``task.batches`` and, if asked, search the largest batch; plain-data results."""
    base = _FAMILIES[task.family]
    if base.precision != task.precision:
        base = dataclasses.replace(base, precision=task.precision)
    cache: dict[int, Lowered] = {}

    def at(batch: int) -> Lowered:
        if batch not in cache:
            cache.clear()  # graphs are large: keep the last one only
            cache[batch] = _reshape(base, task, batch)
        return cache[batch]

    rows: dict[int, dict[str, Any]] = {}
    need1: tuple[int, float | None] | None = None
    if task.search:  # the search starts from batch 1 planned as a grid point is
        try:
            rows[1], need1 = _plan_point(at(1), task)
        except Exception as exc:  # a bug at one configuration must not lose the others
            rows[1] = _error_point(task, 1, exc)
    for b in task.batches:
        if b not in rows:
            try:
                rows[b] = plan_point(at(b), task)
            except Exception as exc:
                rows[b] = _error_point(task, b, exc)
    frontier = None
    if task.search:
        try:
            frontier = (_error_frontier(task, rows[1]["evidence"])
                        if rows[1]["status"] == ERROR else
                        search_batch(at, task, rows[1], *(need1 or (None, None))))
        except Exception as exc:
            frontier = _error_frontier(task, _what(exc))
    return {"points": [rows[b] for b in task.batches], "frontier": frontier}


ERROR = "error"
"""Status of a configuration whose planning raised an unexpected exception (a bug in tilec):
recorded with the message, never cached, and the sweep goes on; ``tilec sweep`` then writes
every result and exits 3 naming the configurations."""


def _what(exc: BaseException) -> str:
    from tilec.errors import one_line

    return f"internal error: {type(exc).__name__}: {one_line(exc)}"


def _error_point(task: Task, batch: int, exc: BaseException) -> dict[str, Any]:
    return {"image_h": task.image_size[0], "image_w": task.image_size[1],
            "precision": task.precision, "batch": batch, "status": ERROR,
            "evidence": _what(exc), "by": ERROR, "latency_ms": None, "device_ms": None,
            "throughput_per_s": None, "peak_bytes": None, "peak_pct": None}


def _error_frontier(task: Task, what: str) -> dict[str, Any]:
    return {"image_h": task.image_size[0], "image_w": task.image_size[1],
            "precision": task.precision, "cap": task.settings.cap, "max_batch": None,
            "status": ERROR, "note": what, "fail_batch": None, "fail_kind": None,
            "probes": []}


def _reshape(base: Lowered, task: Task, batch: int) -> Lowered:
    again = reshaped(base, batch, task.image_size)
    if again is not None:
        return again
    # the lowered graph cannot simply be re-shaped (a batch baked into a constant): capture at
    # this shape and lower without the proof (the family's lowering proved the passes)
    cap = capture(task.model, batch=batch, image_size=task.image_size,
                  input_shape=task.input_shape)
    opts = dataclasses.replace(task.settings.options(), verify="off", precision=task.precision,
                               passes=list(base.passes))
    return lower(cap, base.target, opts)


def _budget(target: Any) -> int:
    return int(target.bytes_per_tile) - int(target.reserved_bytes_per_tile)


def plan_point(lowered: Lowered, task: Task) -> dict[str, Any]:
    """One grid point: the bounds first (a configuration they rule out is never placed), then
    the compile's own planner (schedule, place, lay out, verify)."""
    return _plan_point(lowered, task)[0]


def _plan_point(lowered: Lowered, task: Task
                ) -> tuple[dict[str, Any], tuple[int, float | None]]:
    """:func:`plan_point`, the bytes per tile its bounds need at least, and how fast that need
    grows per image of the batch (:func:`_need_slope`): where the batch search's steered steps
    start (:func:`tilec.plan.whatif_secant.secant_up`)."""
    info, target = lowered.info, lowered.target
    row: dict[str, Any] = {"image_h": task.image_size[0], "image_w": task.image_size[1],
                           "precision": task.precision, "batch": int(info.meta["batch"]),
                           "status": "unknown", "evidence": "", "by": "bounds",
                           "latency_ms": None, "device_ms": None, "throughput_per_s": None,
                           "peak_bytes": None, "peak_pct": None}
    part = partition(info, target)
    kind, need, bounds = Prober.bounds_only(info, target, part)
    grow = (need, _need_slope(bounds, int(target.tiles), int(info.meta["batch"])))
    if kind is not None:
        row.update(status="does_not_fit", evidence=kind)
        return row, grow
    opts = Options(settings=settings_from(task.settings.options()))
    plan = run(info, target, options=opts, part=part, bounds=bounds).plan
    row["by"] = "plan"
    row["status"] = plan.status
    if plan.status == STATUS_FITS:
        lat = plan.latency
        if lat is not None:
            row.update(latency_ms=lat.seconds * 1e3, device_ms=lat.device_seconds * 1e3,
                       throughput_per_s=lat.throughput_per_s)
        if plan.memory is not None:
            row.update(peak_bytes=int(plan.memory.peak_bytes),
                       peak_pct=100.0 * plan.memory.peak_bytes / _budget(target))
    elif plan.diagnosis is not None:
        row["evidence"] = plan.diagnosis.evidence.kind
    return row, grow


def _need_slope(bounds: dict[str, Any], tiles: int, batch: int) -> float | None:
    """Bytes per tile the bounds' need grows by per image, estimated from one batch: where
    (a) decides the need, its activation terms (the buffers live at its op and the op's own
    step bytes) over the batch, spread over the tiles -- the always-live part (weights, vertex
    state) does not grow with the batch. None where (b) decides it (its op's split changes with
    the batch; the search then takes a second batch's need instead)."""
    a, b = bounds.get("a"), bounds.get("b")
    if a is None or b is None or -(-a.needed // tiles) < b.needed or batch < 1:
        return None
    grows = int(a.details.get("live_total", 0)) + int(a.details.get("step_total", 0))
    return grows / tiles / batch if grows > 0 else None


def _as_probe(row: dict[str, Any]) -> Probe:
    """A grid point's verdict as a what-if probe (a full plan: verified when it fits)."""
    if row["status"] == STATUS_FITS:
        return Probe(row["batch"], FITS, peak=row["peak_bytes"], by=row["by"])
    if row["status"] == "does_not_fit":
        return Probe(row["batch"], NO, evidence=row["evidence"], by=row["by"])
    return Probe(row["batch"], UNKNOWN, evidence="search limit", by=row["by"])


def search_batch(at: Any, task: Task, first_row: dict[str, Any],
                 need1: int | None = None, slope1: float | None = None) -> dict[str, Any]:
    """The largest batch in ``1 .. cap`` that fits at this image size and precision, and how
    the first batch above it fails: an upward search from batch 1 (whose verdict ``first_row``
    is the compile's own plan of batch 1, its bounds needing ``need1`` bytes per tile) steered
    by the bounds' need (:func:`tilec.plan.whatif_secant.secant_up`), worded as the what-if's."""
    cap = task.settings.cap
    opts = Options(settings=settings_from(task.settings.options()))
    probe_opts = dataclasses.replace(
        opts, settings=dataclasses.replace(
            opts.settings, deterministic_limit=max(0.05, opts.settings.deterministic_limit / 3)),
        layout_exact=True, use_cpsat=False, greedy_passes=0, fit_only=True)
    prober = Prober(probe_opts, time.perf_counter() + SEARCH_SECONDS, None)
    target = at(1).target

    def make(b: int):
        return lambda: (at(b).info, target)

    knob = Knob(prober, make, lambda b: b, monotone=_bounds_monotone(target))
    steps = max(1, cap.bit_length())
    prober.plans_left = SEARCH_PLANS
    prober.bounds_left = 2 * steps + 2 + SEARCH_BEYOND
    first = knob.seen[1] = _as_probe(first_row)
    knob.order.append(first)
    row: dict[str, Any] = {"image_h": task.image_size[0], "image_w": task.image_size[1],
                           "precision": task.precision, "cap": cap}
    if first.result != FITS:
        how = "proven not to fit" if first.proven else "undecided"
        row.update(max_batch=0, status="bound" if first.proven else "unknown",
                   note=f"batch 1 {how}; larger batches not checked", fail_batch=1,
                   fail_kind=first.evidence if first.proven else "unknown")
    else:
        answer, ceiling, looked = secant_up(knob, 1, cap, need1, int(target.budget_per_tile),
                                            slope=slope1)
        status, note = _up_note(knob, answer, 1, cap, ceiling, looked, str, "batch ", "batch")
        # the what-if's wording counts from a compiled batch; the sweep's search starts at 1
        note = note.replace(f"{cap}× the compiled batch", f"batch {cap} (--batch-cap)")
        nxt = knob.seen.get(answer + 1)
        row.update(max_batch=answer, status=status, note=note,
                   fail_batch=answer + 1 if nxt is not None else None,
                   fail_kind=(nxt.evidence if nxt.proven else "unknown") if nxt else None)
    if prober.cut:
        row["note"] = (row["note"] + f"; stopped by the {SEARCH_SECONDS:g} s wall-clock safety "
                       "limit (this answer may differ between runs)")
    row["probes"] = knob.records
    return row
