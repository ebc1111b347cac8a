"""The lowered model with its placement in each node's metadata, for Netron.

Every op of the plan is matched to the lowered graph's node of the same name, which gets tilec
annotations (``tilec.ir.set_ann``; exported by ``tilec.ir.to_onnx`` as the node's
``metadata_props``, which Netron lists in the node's sidebar):

``tilec.placement.step``        superstep the op runs in
``tilec.placement.tiles``       its tiles as text (``0-367``; ``rows 3-6 × cols 8-11`` on a mesh)
``tilec.placement.tile_ranges`` the same as half-open ranges ``[[start, stop], ...]``
``tilec.placement.tile_count``  number of tiles
``tilec.placement.split``       how the work is divided (``out_ch4xrows8``)
``tilec.placement.bytes_per_tile``  bytes per tile while it runs (always + step + outputs)
``tilec.placement.bytes``       the same by lifetime (``always``, ``step``, ``outputs``), category
``tilec.placement.cycles``      estimated ``compute`` and ``exchange`` cycles

The model itself gets ``tilec.plan.*`` metadata: status, target, peak, latency, and for a diagnosis
its evidence. From ``tilec compile`` the lowered graph is at hand; from ``tilec report PLAN.json``
there is none, so the model is captured and lowered again from what the plan records (source,
batch, image size, precision, passes) -- deterministic, so node names match; a node that does not
is reported as an input error (the model changed since the plan was saved).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import onnx_graphsurgeon as gs

from tilec.errors import InputError
from tilec.ir import FUSED_DOMAIN, set_ann, to_onnx
from tilec.plan.model import Plan, tiles_in
from tilec.report.data import fmt_split, fmt_tiles, op_tile_bytes

PLACEMENT = "placement."
_TWO_GIB = 2**31 - 1


def write_annotated_onnx(plan: Plan, path: str | Path, graph: gs.Graph | None = None) -> None:
    """Write the lowered model of ``plan`` with per-node placement metadata to ``path``.

    ``graph`` is the lowered graph when the caller has it (``tilec compile``); it is copied, not
    changed. Without it the model is re-captured and re-lowered from the plan's record.
    """
    relowered = graph is None
    work = relower(plan) if graph is None else graph.copy()
    unmatched = annotate_graph(work, plan, strict=relowered)
    model = to_onnx(work)
    _set_model_metadata(model, plan, unmatched)
    path = Path(path)
    if model.ByteSize() > _TWO_GIB:  # protobuf's limit: weights go to a side file
        onnx.save_model(model, str(path), save_as_external_data=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


def annotate_graph(graph: gs.Graph, plan: Plan, *, strict: bool = True) -> list[str]:
    """Put each plan op's placement on the graph node of the same name; return unmatched ops.

    ``strict``: a plan op without its node, or whose node has another op type, is an
    :class:`InputError` (the graph is not the one the plan was made from). Otherwise unmatched ops
    are returned so the caller can record them.
    """
    nodes = {node.name: node for node in graph.nodes if node.name}
    unmatched = []
    for op in plan.ops:
        node = nodes.get(op.name)
        if node is None or not _same_type(node, op):
            if strict:
                what = ("is not in" if node is None
                        else f"is a {node.op} in")
                raise InputError(
                    f"{plan.model.source}: op '{op.name}' ({op.op_type}) of the plan {what} the "
                    "re-lowered model; was the model changed since the plan was saved? "
                    "(write --onnx from `tilec compile` instead)")
            unmatched.append(op.name)
            continue
        for key, value in placement_annotations(plan, op).items():
            set_ann(node, PLACEMENT + key, value)
    return unmatched


def placement_annotations(plan: Plan, op: Any) -> dict[str, Any]:
    """The annotations of one op (keys without the ``tilec.placement.`` prefix)."""
    return {
        "step": op.step,
        "tiles": fmt_tiles(plan, op.tiles, limit=8),
        "tile_ranges": [list(r) for r in op.tiles],
        "tile_count": tiles_in(op.tiles),
        "split": fmt_split(op.split),
        "bytes_per_tile": op_tile_bytes(op),
        "bytes": {"always": dict(op.always), "step": dict(op.step_bytes),
                  "outputs": list(op.output_bytes)},
        "cycles": {"compute": op.compute_cycles, "exchange": op.exchange_cycles},
    }


def _same_type(node: gs.Node, op: Any) -> bool:
    """The plan's op type names the node's op: exactly, qualified by its domain, or -- for a
    fused op such as ``ConvLeakyRelu`` in tilec's domain -- as its base op plus activation."""
    domain = getattr(node, "domain", None) or ""
    names = {op.op_type, f"{domain}::{op.op_type}", f"{domain}.{op.op_type}"}
    if domain == FUSED_DOMAIN:
        names.add(op.op_type + (op.activation or ""))
    return node.op in names or f"{domain}::{node.op}" in names


def _set_model_metadata(model: onnx.ModelProto, plan: Plan, unmatched: list[str]) -> None:
    props: dict[str, Any] = {
        "status": plan.status, "target": plan.target.name, "tiles": plan.target.tiles,
        "budget_per_tile": plan.target.budget_per_tile, "batch": plan.model.batch,
        "precision": plan.model.precision, "tilec_version": plan.tilec_version,
    }
    if plan.memory is not None:
        props.update(peak_bytes=plan.memory.peak_bytes, peak_tile=plan.memory.peak_tile,
                     peak_step=plan.memory.peak_step)
    if plan.latency is not None:
        props.update(latency_s=plan.latency.seconds,
                     throughput_per_s=plan.latency.throughput_per_s)
    if plan.steps:
        props["supersteps"] = len(plan.steps)
    if plan.diagnosis is not None:
        props["evidence"] = plan.diagnosis.evidence.kind
        props["diagnosis"] = plan.diagnosis.evidence.summary
    if unmatched:
        props["unmatched_ops"] = unmatched
    keep = [p for p in model.metadata_props if not p.key.startswith("tilec.plan.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key = f"tilec.plan.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def relower(plan: Plan) -> gs.Graph:
    """Capture and lower the plan's model again, as the compile that made the plan did."""
    from tilec.capture import capture, resolve_kind

    m = plan.model
    try:
        kind = resolve_kind(m.source)
    except InputError as exc:
        raise InputError(f"{m.source}: the model this plan was made from is not available "
                         f"here, so --onnx cannot re-lower it ({exc})") from exc
    input_shape: dict[str, tuple[int, ...]] | None = None
    batch, image_size = m.batch, tuple(m.image_size) if m.image_size else None
    if kind in ("python", "module") and m.input_shapes:
        # Every input by name, whole: batch and size are in the shapes already (re-applying them
        # would resize a second 4-D input of another size to the first one's).
        input_shape = {k: (tuple(v), m.input_dtypes[k]) if k in m.input_dtypes else tuple(v)
                       for k, v in m.input_shapes.items()}
        batch = image_size = None
    try:
        captured = capture(m.source, batch=batch, image_size=image_size,
                           input_shape=input_shape, name=m.name)
    except InputError as exc:
        raise InputError(f"{exc} (--onnx captures and lowers the plan's model again, so it must "
                         "be where the compile found it)") from exc
    if not m.passes:
        return captured.graph
    target = _load_target(plan.target.name)
    if target is not None:
        from tilec.compile import CompileOptions, lower

        options = CompileOptions(batch=m.batch, precision=m.precision, passes=list(m.passes),
                                 precision_map=m.precision_map)
        return lower(captured, target, options).graph
    # A target given as a TOML path that is gone: lowering needs no target, only the passes.
    from tilec.passes import run_pipeline

    graph, _ = run_pipeline(captured.graph, list(m.passes), precision=m.precision,
                            precision_map=m.precision_map, source=captured.source)
    return graph


def _load_target(name: str) -> Any:
    try:
        from tilec.targets import load_target

        return load_target(name)
    except (ImportError, InputError):
        return None
