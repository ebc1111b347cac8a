"""The compile pipeline as a library call: capture -> lower -> plan (-> verify -> diagnose).

The CLI's ``tilec compile`` and the benchmarks both call :func:`compile_model`; nothing here prints.
Data flows one way: this module imports capture, passes, targets and the planner; none of them
imports it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from tilec.capture import Captured, capture
from tilec.costmodel import Target
from tilec.errors import InputError
from tilec.opinfo import GraphInfo, build_graph_info
from tilec.plan.model import Plan

PRECISIONS = ("fp32", "fp16", "int8", "int4", "int2")


@dataclass
class CompileOptions:
    """Everything a compile depends on besides the model and the target."""

    batch: int | None = None
    image_size: Any = None
    input_shape: Any = None
    precision: str | None = None  # None: the target's default
    precision_map: str | dict | None = None  # a per-layer precision file, or its parsed form
    passes: list[str] | None = None  # None: the target's default pipeline
    time_limit: float = 10.0
    verify: str = "pipeline"  # how the passes are proved: "pipeline" | "pass" | "off"
    what_if: bool = True  # search what would fit when the model does not (--no-what-if: off)
    what_if_fits: bool = False  # also search how far a plan that fits can grow (--what-if)
    seed: int = 0
    workers: int = 2
    host_ops: str = "auto"  # unsupported head / tail ops: "auto" -> on the host, "none" -> refuse
    # Check the verdict over the target's [ranges] (tilec.plan.band). The CLI turns it on by
    # default (--band on|off); the library leaves it off so benchmarks and calibration that
    # compile many configurations do not pay ~2 + 2 x constants extra plans each.
    band: bool = False
    band_seconds: float = 120.0  # wall-clock safety limit of the band (not its budget)
    progress: Callable[[str, float | None], None] | None = None  # (stage, fraction or None)


@dataclass
class Lowered:
    """A captured and lowered model, ready to plan, with what it took to get here."""

    captured: Captured
    target: Target
    graph: gs.Graph
    info: GraphInfo
    precision: str
    passes: list[str]
    pass_stats: list[Any] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # notices for the user (become Plan.notes)
    precision_map: dict | None = None  # the per-layer map as plain data (recorded in the plan)


def resolve_precision(target: Target, precision: str | None) -> str:
    """The precision to compile at: the user's, else the target's documented default."""
    if precision is None:
        return target.default_precision
    if precision not in PRECISIONS:
        raise InputError(f"--precision: unknown precision '{precision}' "
                         f"(one of {', '.join(PRECISIONS)})")
    if precision not in target.precisions:
        raise InputError(f"--precision: target '{target.name}' does not support {precision} "
                         f"(supported: {', '.join(target.precisions)})")
    return precision


def pipeline(target: Target, precision: str, passes: list[str] | None,
             precision_map: object | None) -> list[str]:
    """The passes to run: ``passes`` as given, else the target's pipeline for ``precision``.

    A per-layer precision map is applied by the ``quantize`` pass, which a float compile's
    default pipeline leaves out -- so a map given with the default precision (fp16 on the IPU)
    was silently ignored. The default pipeline then gains ``quantize`` in its natural place; an
    explicit ``--passes`` without it is an error rather than a map nobody reads.
    """
    from tilec.passes import names as pass_order

    if passes is not None:
        if precision_map is not None and "quantize" not in passes:
            raise InputError("--precision-map: the per-layer precisions are applied by the "
                             "quantize pass, which --passes leaves out; add it")
        return list(passes)
    names = target.default_passes(precision)
    if precision_map is not None and "quantize" not in names:
        wanted = {*names, "quantize"}
        names = [n for n in pass_order() if n in wanted]
    return names


def probe_source(model: Any, captured: Captured, input_shape: Any = None
                 ) -> Callable[[], gs.Graph | None]:
    """A function capturing ``model`` again at the proof's probe size (batch 1, a small image).

    The verifier first re-shapes a copy of the captured graph; that fails when capture had to fold
    the exporter's shape arithmetic into constants at the compiled batch and size (a TorchScript
    export's ``y.view(bs, na, no, ny, nx)`` becomes a Reshape to ``[B, 4, 85, 28, 28]``), and the
    proof then had to run at the compiled size -- gigabytes of activations, growing with the
    batch. Capturing the *source* at the probe size folds the same arithmetic at that size. The
    probe's weights are then swapped for the model's arrays by name (the verifier does that), so
    the second capture costs one transient read of the file, not a second copy of the weights.
    Returns None when no probe size captures (sizes baked into the file itself); the verifier
    then proves at batch 1 of the model's own size.
    """

    def make() -> gs.Graph | None:
        from tilec.passes._verify import probe_sizes

        size = captured.image_size
        candidates: list[int | None] = (
            list(probe_sizes(min(size), captured.stride)) if size is not None else [])
        if captured.batch > 1:
            candidates.append(None)  # at least batch 1 at the model's own size
        for s in candidates:
            try:
                return capture(model, batch=1, image_size=(s, s) if s else None,
                               input_shape=input_shape).graph
            except InputError:
                continue  # sizes baked into the source: try the next
            except Exception:  # the verifier then proves at the model's own size
                return None
        return None

    return make


def lower(captured: Captured, target: Target, options: CompileOptions,
          probe: Callable[[], gs.Graph | None] | None = None) -> Lowered:
    """Run the lowering pipeline on a captured model and build the planner's view of it.

    ``probe`` makes the proof's probe when a re-shaped copy of the graph does not do
    (:func:`probe_source`)."""
    from tilec.passes import load_precision_map, run_pipeline

    precision = resolve_precision(target, options.precision)
    # Read once, and recorded in the plan as data so a saved plan can be lowered again as it was.
    pmap = (load_precision_map(options.precision_map).to_dict()
            if options.precision_map is not None else None)
    notes = [str(n) for n in captured.meta.get("notes", ())]  # capture's notices (batch 1 assumed)
    if options.precision is None:
        note = getattr(target, "default_precision_note", None)
        if note:
            notes.append(note)
    names = pipeline(target, precision, options.passes, options.precision_map)
    t0 = time.perf_counter()
    graph, stats = run_pipeline(captured.graph, names, precision=precision,
                                precision_map=pmap, source=captured.source,
                                verify=options.verify, act_bits=target.act_bits,
                                stride=captured.stride, probe=probe)
    # The proof's graphs (the probe before and after each run of passes, holding the model's
    # original weights until a fold replaced them) are garbage now, but in reference cycles
    # (graphsurgeon's nodes and tensors point at each other): without a collection the planner
    # ran beside a dead copy of every weight (~270 MB on a YOLOv4-P5 export).
    gc.collect()
    t1 = time.perf_counter()
    info = graph_info(graph, captured, target, precision, pmap)
    t2 = time.perf_counter()
    return Lowered(captured=captured, target=target, graph=graph, info=info, precision=precision,
                   passes=names, pass_stats=stats,
                   seconds={"lower": t1 - t0, "analyse": t2 - t1}, notes=notes,
                   precision_map=pmap)


def graph_info(graph: gs.Graph, captured: Captured, target: Target, precision: str,
               precision_map: dict | None = None) -> GraphInfo:
    """The planner's view of ``graph`` at ``precision`` (and ``precision_map``, the per-layer
    precisions it was quantized with, if any) on ``target``."""
    return build_graph_info(
        graph, weight_bits=target.weight_bits(precision), act_bits=target.act_bits(precision),
        source=captured.source,
        meta={"name": captured.name, "source": captured.source, "batch": captured.batch,
              "image_size": list(captured.image_size) if captured.image_size else None,
              "precision": precision, "precision_map": precision_map,
              "stride": captured.stride, "host": captured.meta.get("host"),
              "input_shapes": {k: list(v) for k, v in captured.input_shapes.items()},
              "input_dtypes": {t.name: np.dtype(t.dtype).name for t in graph.inputs
                               if t.dtype is not None}},
    )


def reshaped(lowered: Lowered, batch: int | None, image_size: tuple[int, int] | None
             ) -> Lowered | None:
    """The same lowered graph at another batch / image size, without capturing again.

    Returns None when the lowered graph cannot simply be re-shaped (e.g. an exporter baked the
    batch into a Reshape constant); the caller then captures again.
    """
    host = lowered.captured.meta.get("host") or {}
    if image_size is not None and host.get("to_device"):
        return None  # inputs cut from a host head are feature maps: capture again instead
    if any(op.kind in ("topk", "nms") for op in lowered.info.ops):
        return None  # an on-device detection tail sizes its constants (anchor grids, image
        # offsets, k = min(top-k, boxes)) to the captured batch and size: capture again
    graph = lowered.graph.copy()
    axes = lowered.captured.meta.get("batch_axes") or {}
    for tensor in graph.inputs:
        shape = list(tensor.shape)
        if batch is not None and len(shape) >= 2:  # the capture rule (apply_overrides)
            shape[axes.get(tensor.name, 0)] = batch
        if image_size is not None and len(shape) == 4:
            shape[2], shape[3] = image_size
        tensor.shape = shape
    from tilec.passes._verify import BakedShape, reinfer

    try:
        # Views capture folded at the compiled batch are re-derived (or the graph refused): ONNX
        # inference alone took their constant targets on trust, and every what-if answer after
        # such a view was planned with the compiled batch's buffers.
        if not reinfer(graph, lowered.graph, lowered.captured.source):
            return None
    except BakedShape:
        return None
    try:
        cap = lowered.captured
        new_cap = Captured(
            graph=graph, name=cap.name, source=cap.source,
            batch=batch if batch is not None else cap.batch,
            image_size=image_size if image_size is not None else cap.image_size,
            input_shapes={t.name: tuple(int(d) for d in t.shape) for t in graph.inputs},
            stride=cap.stride, opset=cap.opset, meta=cap.meta,
        )
        info = graph_info(graph, new_cap, lowered.target, lowered.precision,
                          lowered.precision_map)
    except InputError:
        return None
    return Lowered(captured=new_cap, target=lowered.target, graph=graph, info=info,
                   precision=lowered.precision, passes=lowered.passes,
                   pass_stats=lowered.pass_stats, precision_map=lowered.precision_map)


def compile_model(model: Any, target: Target | str, options: CompileOptions | None = None
                  ) -> tuple[Plan, Lowered]:
    """Capture, lower and plan ``model`` for ``target``; return the plan and the lowered model.

    The plan's status is "fits" only for a plan the independent verifier accepted.
    """
    from tilec.targets import load_target

    options = options or CompileOptions()
    if isinstance(target, str):
        target = load_target(target)
    t0 = time.perf_counter()
    captured = capture(model, batch=options.batch, image_size=options.image_size,
                       input_shape=options.input_shape, host_ops=options.host_ops)
    t1 = time.perf_counter()
    if options.progress:  # the passes and their onnxruntime proof take seconds of their own
        options.progress("lowering", None)
    lowered = lower(captured, target, options,
                    probe=probe_source(model, captured, options.input_shape))
    lowered.seconds["capture"] = t1 - t0

    unquantized: dict[str, Lowered] = {}

    def without_quantize(precision: str) -> Lowered:
        """The model lowered by the same passes but ``quantize`` (once, then cached).

        A graph lowered without ``quantize`` differs from a uniformly quantized one only in the
        storage bits the planner charges (quantize rewrites no op; a DequantizeLinear of a weight
        folds into its consumer's weights), so the planner's view at any uniform precision is
        this graph seen at that precision's bits. The compile's own graph serves when it was
        lowered at a float precision; an integer compile is lowered once more, without quantize
        and without the onnxruntime proof (the compile already proved the exact passes).
        """
        if "graph" not in unquantized:
            if lowered.precision in ("fp32", "fp16") and options.precision_map is None:
                unquantized["graph"] = lowered
            else:
                cap = capture(model, batch=captured.batch, image_size=captured.image_size,
                              input_shape=options.input_shape, host_ops=options.host_ops)
                names = [n for n in lowered.passes if n != "quantize"]
                unquantized["graph"] = lower(cap, target, CompileOptions(**{
                    **options.__dict__, "verify": "off", "passes": names,
                    "precision": precision, "precision_map": None}))
        return unquantized["graph"]

    def unquantized_at(precision: str) -> Lowered:
        """:func:`without_quantize` labelled ``precision`` (the cached graph is the same at
        every precision; only the planner's view of it differs)."""
        low = without_quantize(precision)
        if low.precision == precision:
            return low
        from dataclasses import replace

        return replace(low, precision=precision,
                       info=graph_info(low.graph, low.captured, target, precision))

    def rebuild(batch: int | None = None, image_size: tuple[int, int] | None = None,
                precision: str | None = None) -> GraphInfo:
        """The planner's view of the same model at another batch / image size / precision."""
        same_precision = precision is None or precision == lowered.precision
        base = lowered if same_precision else without_quantize(precision)
        again = reshaped(base, batch, image_size) if (batch or image_size) else base
        if again is not None:
            if same_precision:
                return again.info
            return graph_info(again.graph, again.captured, target, precision)
        # The lowered graph cannot simply be re-shaped (e.g. a batch baked into a Reshape
        # constant): capture again at the new shape and lower without the proof.
        cap = capture(model, batch=batch or captured.batch,
                      image_size=image_size or captured.image_size,
                      input_shape=options.input_shape, host_ops=options.host_ops)
        opts = CompileOptions(**{**options.__dict__, "verify": "off",
                                 "precision": precision or lowered.precision})
        return lower(cap, target, opts).info

    from tilec.plan import plan_model  # after capture: input errors never depend on the planner

    follow = {}
    if options.what_if and options.precision_map is None:
        from tilec.precision.auto import mixed_note  # next to the uniform min_precision

        def mixed(w: Any) -> None:
            mixed_note(model, target, options, w, lowered.precision,
                       base=lambda: unquantized_at(lowered.precision))

        follow["min_precision"] = mixed
    plan = plan_model(lowered.info, target, options=options, rebuild=rebuild,
                      passes=lowered.passes, stage_seconds=dict(lowered.seconds),
                      follow=follow)
    plan.notes[:0] = [n for n in lowered.notes if n not in plan.notes]
    if options.band:
        plan.band = band_of(plan, lowered, options)
    return plan, lowered


def band_of(plan: Plan, lowered: Lowered, options: CompileOptions):
    """The plan's verdict over the target's plausible constant ranges (tilec.plan.band); the
    wall-clock seconds it took go to ``plan.timings["band"]``."""
    from tilec.plan import Options, settings_from
    from tilec.plan.band import compute_band

    t0 = time.perf_counter()
    from tilec.calibration import calibration_check
    from tilec.plan.band import probe_options

    opts = Options(settings=settings_from(options))
    band = compute_band(lowered.info, lowered.target, plan, options=opts,
                        seconds=options.band_seconds, progress=options.progress,
                        check=calibration_check(lowered.target, probe_options(opts)))
    plan.timings["band"] = time.perf_counter() - t0
    return band
