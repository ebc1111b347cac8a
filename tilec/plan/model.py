"""Plan and Diagnosis: the plain-data result of a compile, and its versioned JSON form.

Everything downstream of the planner -- the verifier, the terminal summary, the HTML page, the
trace, the annotated ONNX, ``tilec report`` on a saved file -- reads only these objects (round-
tripped through JSON), never planner internals. So they must hold everything a reader needs.

Conventions:
* Tiles are numbered 0..T-1 in row-major order of the target's grid. A set of tiles is a sorted list
  of half-open ranges ``[start, stop)`` (a NorthPole rectangle is ``h`` ranges of width ``w``).
* Supersteps are numbered 0..S-1; lifetimes are half-open ``[first, end)`` in supersteps, the same
  convention as the ``id,lower,upper,size`` buffer CSV.
* Bytes are per tile unless a field says ``total``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA_NAME = "tilec.plan"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
"""Versions :meth:`Plan.from_dict` reads. 2 added ``band``: a version-1 reader would show a
borderline verdict as a plain "fits", so the version went up; a version-1 plan reads with
``band = None`` (not computed). 3 added ``chips`` (a compile over several chips, each stage's own
plan inside): a version-2 reader would show such a file as an empty single-chip plan; a version-1
or 2 plan reads with ``chips = None`` (one chip)."""

Ranges = list[list[int]]  # [[start, stop), ...]

STATUS_FITS = "fits"
STATUS_DOES_NOT_FIT = "does_not_fit"
STATUS_UNKNOWN = "unknown"

EVIDENCE_KINDS = {
    "chip_capacity": "a",  # the live set at a step exceeds the whole chip
    "op_too_large": "b",  # an op cannot fit even at its finest split
    "solver_infeasible": "c",  # CP-SAT proved infeasibility (re-checked independently)
    "search_limit": "d",  # unknown: the search limit was reached
}


def tiles_in(ranges: Ranges) -> int:
    """Number of tiles in a list of half-open ranges."""
    return sum(stop - start for start, stop in ranges)


@dataclass
class ModelInfo:
    name: str
    source: str
    batch: int
    image_size: list[int] | None  # [H, W]
    precision: str
    input_shapes: dict[str, list[int]]
    ops: int
    params: int
    macs: int
    weight_bytes: int
    passes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # model input tensors
    outputs: list[str] = field(default_factory=list)  # model output tensors (live to the end)
    # the per-layer precision map the model was quantized with (passes/_precision.py's to_dict
    # form), None for one precision throughout; kept so the model can be lowered again as planned
    precision_map: dict[str, Any] | None = None
    # element type of each model input ("float32", "int64", ...): a PyTorch module's inputs are
    # captured again from these with their shapes (an ONNX file declares its own)
    input_dtypes: dict[str, str] = field(default_factory=dict)
    # what capture cut off to the host (tilec/capture/host.py: head_ops, tail_ops, op_types,
    # to_device, to_host), None when the whole model runs on the chip
    host: dict[str, Any] | None = None


@dataclass
class TargetInfo:
    name: str
    tiles: int
    bytes_per_tile: int
    reserved_bytes_per_tile: int
    budget_per_tile: int
    grid: list[int]  # [rows, cols]
    placement: str  # "range" | "rect"
    clock_hz: float
    io_location: str = "host"  # "host": outputs stay in tile memory to the end; "framebuffer"


@dataclass
class OpPlacement:
    name: str
    op_type: str
    kind: str
    step: int
    split: dict[str, int]
    tiles: Ranges
    inputs: list[str]
    outputs: list[str]
    always: dict[str, int]  # per tile, whole run
    step_bytes: dict[str, int]  # per tile, during its step
    output_bytes: list[int]  # per tile, per output
    macs: int
    compute_cycles: int
    exchange_cycles: int
    activation: str | None = None
    weight_bits: int | None = None
    act_bits: int | None = None
    # Added by the planner (optional, so older plans still load):
    shape: list[int] | None = None  # [h, w] of the rectangle on a mesh target
    spread: dict[str, int] = field(default_factory=dict)  # total bytes over the whole array
    group: str | None = None  # the op whose tiles this op shares (cost model: follows_input)
    in_place: bool = False  # the cost model lets it overwrite its first input (OpCost.in_place)
    held_inputs: dict[str, int] = field(default_factory=dict)
    """Model inputs held on this op's tiles (it is their first reader): bytes per tile each, as
    the target's ``input_bytes`` hook gives them (0 when inputs stay out of tile memory)."""


@dataclass
class Buffer:
    """One allocation: the same number of bytes on each of its tiles over one lifetime."""

    id: str
    owner: str  # op name (always/step buffers) or tensor name (activation buffers)
    kind: str  # "always" | "step" | "tensor" | "spread"
    category: str  # one of tilec.costmodel.CATEGORIES
    tiles: Ranges
    bytes: int  # per tile
    first: int  # first superstep live
    end: int  # one past the last superstep live
    offsets: list[list[int]] = field(default_factory=list)  # [[tile_start, tile_stop, offset]]
    tensors: list[str] = field(default_factory=list)  # "tensor" buffers: every tensor it holds
    reuses: str | None = None  # in place: id of the buffer whose memory it takes over at `first`


@dataclass
class Step:
    index: int
    ops: list[str]
    compute_cycles: int
    exchange_cycles: int
    sync_cycles: int

    @property
    def cycles(self) -> int:
        return self.compute_cycles + self.exchange_cycles + self.sync_cycles


@dataclass
class MemorySummary:
    peak_bytes: int  # the highest per-tile occupancy at any step
    peak_tile: int
    peak_step: int
    per_tile_peak: list[int]  # per tile, its highest occupancy over the run
    worst_tile_timeline: list[dict[str, int]]  # per step, bytes by category on peak_tile
    chip_timeline: list[dict[str, int]]  # per step, total bytes by category over all tiles
    by_category_at_peak: dict[str, int] = field(default_factory=dict)


@dataclass
class Latency:
    """Estimated time per batch: device supersteps plus the model's I/O.

    ``io_seconds`` = ``input_seconds`` + ``output_seconds``; the device time is
    ``seconds - io_seconds``. They are kept apart because a measured pipeline often moves far
    fewer output bytes than the graph produces (e.g. detections filtered on the chip).
    """

    cycles: int
    seconds: float
    io_seconds: float
    throughput_per_s: float  # images per second at this batch
    input_seconds: float = 0.0  # the model's inputs into the chip (host link / framebuffer)
    output_seconds: float = 0.0  # the model's outputs back out

    @property
    def device_seconds(self) -> float:
        return self.seconds - self.io_seconds


@dataclass
class SolverInfo:
    """How the placement was found. Deliberately free of wall-clock times: the same input must
    give byte-identical JSON, so timings live in :attr:`Plan.timings`, which is not serialised."""

    status: str  # CP-SAT status name, or "greedy" when no solve was needed
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    time_limit: float | None = None
    deterministic_limit: float | None = None
    method: str = ""  # how the kept placement was found ("greedy:...", "cp-sat")
    wall_clock_limited: bool = False  # the wall-clock limit stopped a solve (may not reproduce)
    details: dict[str, Any] = field(default_factory=dict)  # model sizes, passes (no timings)


@dataclass
class Verification:
    ok: bool
    checks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Evidence:
    kind: str  # key of EVIDENCE_KINDS
    summary: str  # one sentence a user can act on
    details: dict[str, Any] = field(default_factory=dict)
    rechecked: bool = False  # an independent check confirmed it

    @property
    def letter(self) -> str:
        return EVIDENCE_KINDS[self.kind]


@dataclass
class WhatIf:
    """One what-if answer. For a diagnosis (``Diagnosis.what_if``) the searches go down from the
    compiled configuration (what would fit instead); for a plan that fits (``Plan.what_if``,
    ``--what-if``) they go up (how far it can grow: the largest batch and image size, the highest
    precision) and down for the SRAM per tile it needs. The question names are the same."""

    question: str  # "max_batch" | "max_image_size" | "min_precision" | "min_bytes_per_tile"
    answer: Any  # None when nothing in the searched range fits (or nothing was searched)
    status: str  # "exact" | "bound" | "unknown"
    note: str = ""
    probes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Diagnosis:
    evidence: Evidence
    worst_tile: int | None
    worst_step: int | None
    worst_op: str | None
    bytes_needed: int | None  # on the worst tile at the worst step
    over_by: int | None
    by_category: dict[str, int] = field(default_factory=dict)
    top_tiles: list[dict[str, int]] = field(default_factory=list)
    live_ops: list[str] = field(default_factory=list)
    live_tensors: list[dict[str, Any]] = field(default_factory=list)
    what_if: list[WhatIf] = field(default_factory=list)


BAND_ROBUST = "robust"
BAND_BORDERLINE = "borderline"
BAND_INCOMPLETE = "incomplete"
BAND_NONE = "none"  # the target gives no ranges, or the nominal verdict is "unknown"


@dataclass
class BandSetting:
    """One point of the band: some constants moved off their nominal values, and the verdict
    there (decided like a what-if probe: the bounds (a)/(b) first, else a fit-only plan that the
    verifier accepted)."""

    label: str  # "low end", "memory-pessimistic corner", "sample 2", "bisection", ...
    values: dict[str, float]  # the constants moved, dotted name -> value (others nominal)
    result: str  # "fits" | "does_not_fit" | "unknown" | "skipped"
    by: str  # "bounds" | "plan" | "reverify" (the nominal plan re-verified) | "skipped"
    evidence: str | None = None  # does_not_fit: the evidence kind; unknown/skipped: why
    peak_bytes: int | None = None  # fullest tile of the plan tried (plans only)
    latency_seconds: float | None = None  # of a plan that fits


@dataclass
class BandFlip:
    """Where the nominal verdict stops holding, moving ``constants`` from their nominal values
    towards ``toward`` (one constant: its end of the range; several: a corner or a sample)."""

    constants: list[str]
    setting: str  # label of the setting that flipped it ("... high end", "sample 3", ...)
    toward: dict[str, float]  # the setting that flipped the verdict
    result: str  # what the verdict becomes there ("does_not_fit", "fits" or "unknown")
    holds_at: dict[str, float]  # the furthest setting checked where the verdict still holds
    flips_at: dict[str, float]  # the nearest setting checked where it no longer does
    fraction: float  # flips_at as the fraction of the way from nominal to ``toward`` (0..1]
    text: str  # one line: "does not fit if overheads.bytes_per_compute_set >= 212 (nominal 150)"


@dataclass
class Band:
    """The verdict over the plausible ranges of the target's uncertain constants (``[ranges]``
    in its TOML). ``robust``: the nominal verdict held at every setting evaluated (both corners,
    each constant at each end, the seeded samples); ``borderline``: some setting gives another
    verdict (``flips`` names the constants and the thresholds); ``incomplete``: the safety limit
    stopped the evaluation before every setting was decided and none flipped; ``none``: no
    ranges, or no nominal verdict to check."""

    status: str  # "robust" | "borderline" | "incomplete" | "none"
    verdict: str  # the nominal verdict (Plan.status)
    summary: str  # one line for the terminal
    ranges: dict[str, list[float]] = field(default_factory=dict)  # dotted name -> [low, high]
    nominal: dict[str, float] = field(default_factory=dict)
    pessimistic: dict[str, float] = field(default_factory=dict)  # the memory-pessimistic corner
    flips: list[BandFlip] = field(default_factory=list)
    settings: list[BandSetting] = field(default_factory=list)  # every evaluation, in order
    latency_min_seconds: float | None = None  # over the settings that fit (nominal included)
    latency_max_seconds: float | None = None
    seed: int = 0
    samples: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class ChipStage:
    """One chip of a multi-chip compile: the schedule positions ``[start, end)`` it runs
    (pipeline / sharded) or its share of the batch (replicate), and its own single-chip plan."""

    chip: int
    start: int  # schedule positions [start, end) of the whole model (replicate: every op)
    end: int
    ops: int
    first_op: str
    last_op: str
    batch: int  # images this chip runs per batch
    recv_bytes: int  # activations it receives over the inter-chip links per batch
    send_bytes: int  # activations it sends to later chips per batch
    link_seconds: float  # receiving recv_bytes (link latency + bytes / bandwidth)
    host_seconds: float  # the model inputs / outputs it exchanges with the host
    device_seconds: float | None  # its plan's cycles / clock (None: not planned or no fit)
    stage_seconds: float | None  # device + link + host: its share of the pipeline interval
    status: str  # its plan's status (fits | does_not_fit | unknown)
    peak_bytes: int | None  # its plan's fullest tile
    headroom_bytes: int | None  # budget per tile - peak_bytes
    same_as: int | None = None  # replicate: the chip whose plan this one runs (plan then null)
    plan: dict[str, Any] | None = None  # the stage's own plan (a version-3 plan document)


@dataclass
class ChipSet:
    """A model compiled over several chips of a chip system (``tilec compile --chips``)."""

    system: dict[str, Any]  # name, description, chip, chips, link_bytes_per_s, link_latency_s
    mode: str  # pipeline | sharded | replicate
    requested: str  # "auto" or the chip count asked for
    chips: int  # chips used
    micro_batch: int  # images per pass through the stages (the batch, or a divisor of it)
    micro_batches: int  # passes per batch (batch = micro_batch x micro_batches)
    cut: list[int]  # schedule positions where stages start, then the op count
    order: list[str]  # the schedule (op names) the cut positions index
    objective: str  # what the cut minimises
    interval_seconds: float | None  # pipeline: one batch per slowest stage; else = latency
    latency_seconds: float | None  # one batch through every stage, transfers included
    throughput_per_s: float | None  # images per second
    optimality: str  # exact | exact_assuming_monotone_fit | bound | unknown
    lower_bound_seconds: float | None  # no cut into this many chips beats it (objective)
    note: str
    tried: list[dict[str, Any]] = field(default_factory=list)  # per chip count searched
    plans_made: int = 0  # stage plans the search made (bounds-only decisions not counted)
    bounds_checked: int = 0
    stages: list[ChipStage] = field(default_factory=list)


@dataclass
class Plan:
    """The result of a compile: a verified placement (status "fits") or a diagnosis."""

    status: str
    model: ModelInfo
    target: TargetInfo
    steps: list[Step] = field(default_factory=list)
    ops: list[OpPlacement] = field(default_factory=list)
    buffers: list[Buffer] = field(default_factory=list)
    memory: MemorySummary | None = None
    latency: Latency | None = None
    solver: SolverInfo | None = None
    verification: Verification | None = None
    diagnosis: Diagnosis | None = None
    notes: list[str] = field(default_factory=list)  # notices for the user (e.g. a default chosen)
    bounds: dict[str, Any] = field(default_factory=dict)  # lower bounds on the per-tile peak
    what_if: list[WhatIf] = field(default_factory=list)
    """Headroom answers for a plan that fits, searched only on request (``tilec compile
    --what-if``): how far batch / image size / precision can grow, how little SRAM per tile it
    needs. Empty otherwise; a diagnosis carries its own answers (``Diagnosis.what_if``)."""
    chips: ChipSet | None = None
    """A compile over several chips (``tilec compile --chips``): the cut, each chip's stage and
    its own verified plan. None for a single chip."""
    band: Band | None = None
    """The verdict over the target's plausible constant ranges (``tilec compile --band on``, the
    default); None when not computed (``--band off``, or a plan written by tilec before it)."""
    tilec_version: str = ""
    schema: str = SCHEMA_NAME
    version: int = SCHEMA_VERSION
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    """Wall-clock seconds per stage of this run. Not part of the JSON (see SolverInfo)."""

    # -------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["timings"]
        return data

    def to_json(self) -> str:
        """Deterministic JSON: sorted keys, fixed float formatting, no timestamps."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Plan:
        if data.get("schema") != SCHEMA_NAME:
            raise ValueError(f"not a tilec plan (schema={data.get('schema')!r})")
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"plan schema version {data.get('version')} is not supported "
                f"(this tilec reads versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        plan = _build(Plan, data)
        plan.version = SCHEMA_VERSION  # read into the current form (absent fields defaulted)
        return plan

    @staticmethod
    def load(path: str | Path) -> Plan:
        return Plan.from_dict(json.loads(Path(path).read_text()))


_NESTED: dict[tuple[type, str], type] = {
    (Plan, "model"): ModelInfo,
    (Plan, "target"): TargetInfo,
    (Plan, "memory"): MemorySummary,
    (Plan, "latency"): Latency,
    (Plan, "solver"): SolverInfo,
    (Plan, "verification"): Verification,
    (Plan, "diagnosis"): Diagnosis,
    (Diagnosis, "evidence"): Evidence,
    (Plan, "band"): Band,
    (Plan, "chips"): ChipSet,
}
_LISTS: dict[tuple[type, str], type] = {
    (Plan, "steps"): Step,
    (Plan, "ops"): OpPlacement,
    (Plan, "buffers"): Buffer,
    (Plan, "what_if"): WhatIf,
    (Diagnosis, "what_if"): WhatIf,
    (Band, "flips"): BandFlip,
    (Band, "settings"): BandSetting,
    (ChipSet, "stages"): ChipStage,
}


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if value is not None and (cls, f.name) in _NESTED:
            value = _build(_NESTED[(cls, f.name)], value)
        elif value is not None and (cls, f.name) in _LISTS:
            value = [_build(_LISTS[(cls, f.name)], v) for v in value]
        kwargs[f.name] = value
    return cls(**kwargs)
