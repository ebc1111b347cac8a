"""ONNX front door: load a model file, apply batch / image-size overrides, infer every shape.

The result is the graph form of :mod:`tilec.ir` with a concrete shape on every tensor. Everything
a user can get wrong here becomes an :class:`~tilec.errors.InputError` naming the file and, where
there is one, the input, node or tensor at fault. The checks run cheapest-first and each one guards
the next: the file, its header (opset, IR version), op types, graph structure (single assignment, no
dangling reads, no cycle), each node against its ONNX schema, the input overrides, then shape
inference and what it cannot see (a Conv whose weight disagrees with its input or attributes).

Shape arithmetic that exporters leave behind (``Shape -> Gather -> Concat -> Reshape``) is folded
to constants once the input shapes are fixed, because ONNX's data propagation does not follow every
such chain; after capture no ``Shape`` or ``Size`` node reads an activation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from google.protobuf.message import DecodeError

from tilec.capture.flags import (  # noqa: F401 - re-exported: callers import them from here
    INPUT_DTYPES,
    InputSpec,
    dtype_name,
    parse_image_size,
    parse_input_shapes,
    parse_input_specs,
)
from tilec.capture.graph_checks import (  # noqa: F401 - MAX_FOLD_ROUNDS is re-exported
    MAX_FOLD_ROUNDS,
    _constant_nodes,
    _shape_text,
    check_conv_weights,
    check_reshapes,
    check_shapes,
    fold_shape_arithmetic,
    fold_to_fixed_point,
    follow_batch,
)
from tilec.capture.host import HOST_OPS, HostCut, cut_to_host
from tilec.capture.qoperator import rewrite_qoperator
from tilec.capture.support import (  # noqa: F401 - supported_ops_summary is re-exported
    raise_unsupported,
    supported_ops_summary,
    unsupported_in_graph,
    unsupported_in_proto,
    unsupported_nodes,
)
from tilec.capture.types import Captured
from tilec.capture.weights import check_tensors
from tilec.errors import InputError, ShapeError
from tilec.ir import (
    FUSED_DOMAIN,
    _light_model,
    from_onnx,
    infer_shapes,
    run_shape_inference,
    topological_order,
    toposort,
)

MIN_OPSET = 11
"""Oldest default-domain opset tilec reads (Resize, Pad-as-input and today's Split/Slice forms)."""

MAX_OPSET = onnx.defs.onnx_opset_version()
"""Newest opset the installed onnx knows; shape inference cannot check newer ones."""

_OTHER_FORMATS = {
    ".pt": "a PyTorch checkpoint or TorchScript file",
    ".pth": "a PyTorch checkpoint",
    ".ckpt": "a training checkpoint",
    ".safetensors": "a weights-only file (no graph)",
    ".bin": "a weights file",
    ".pb": "a TensorFlow graph",
    ".tflite": "a TensorFlow Lite model",
    ".h5": "a Keras model",
    ".keras": "a Keras model",
    ".engine": "a TensorRT engine",
    ".trt": "a TensorRT engine",
    ".pdmodel": "a PaddlePaddle model",
}
"""Suffixes users hand to tilec by mistake, for a more useful error than "not ONNX"."""



# ------------------------------------------------------------------------------------- the file
def load_model_proto(path: Path) -> onnx.ModelProto:
    """Read ``path`` (with its external data) or raise one clear :class:`InputError`."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an ONNX file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not an ONNX model")
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise InputError(f"{path}: a Git LFS pointer, not the model itself (run `git lfs pull`)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise InputError(_unreadable(path, head, size)) from exc
    if not model.HasField("graph") or not (model.graph.node or model.graph.input):
        raise InputError(f"{path}: not an ONNX model (the file holds no graph)")
    _load_external_data(model, path)
    return model


def _unreadable(path: Path, head: bytes, size: int) -> str:
    """Why ``path`` did not parse, as precisely as its suffix and first bytes tell."""
    kind = _OTHER_FORMATS.get(path.suffix.lower())
    if kind:
        return (f"{path}: not an ONNX model ({path.suffix} is usually {kind}); export it to ONNX "
                f"or pass a PyTorch module as file.py:factory")
    # A serialized ModelProto starts with field 1 (ir_version, varint): byte 0x08.
    if head[:1] == b"\x08":
        return f"{path}: ONNX file is truncated or corrupt ({size} bytes could not be parsed)"
    return f"{path}: not an ONNX file (its {size} bytes do not parse as an ONNX model)"


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in ``graph``: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Check every external-data reference, then load the data into ``model``."""
    external = [t for t in _graph_tensors(model.graph)
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return
    base = path.parent.resolve()
    for tensor in external:
        info = onnx.external_data_helper.ExternalDataInfo(tensor)
        where = f"{path}: tensor '{tensor.name}'"
        location = Path(info.location)
        target = base / location
        if not info.location or location.is_absolute() or ".." in location.parts:
            raise InputError(f"{where}: external data location '{info.location}' is not a file "
                             "next to the model")
        if target.is_symlink():  # onnx refuses to read through links
            raise InputError(f"{where}: external data file '{info.location}' is a symbolic link; "
                             "onnx reads only real files: copy it next to the model")
        if not target.is_file():
            raise InputError(f"{where}: external data file '{info.location}' not found next to "
                             "the model")
        offset = int(info.offset or 0)
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 0  # exotic or packed types: leave the length check to onnx
        need = int(info.length or math.prod(tensor.dims) * itemsize)
        have = target.stat().st_size
        if offset + need > have:
            raise InputError(f"{where}: external data file '{info.location}' is too short "
                             f"(needs {need} bytes at offset {offset}, the file has {have}); "
                             "truncated copy?")
    try:
        onnx.load_external_data_for_model(model, str(base))
    except Exception as exc:
        raise InputError(f"{path}: cannot read external data: {_first_line(exc)}") from exc


# ------------------------------------------------------------------------------------- structure
def check_header(model: onnx.ModelProto, source: str) -> int:
    """The model's default-domain opset, if tilec and this onnx can read it."""
    if model.ir_version > onnx.IR_VERSION:
        raise InputError(f"{source}: IR version {model.ir_version} is newer than the installed "
                         f"onnx {onnx.__version__} reads ({onnx.IR_VERSION}); upgrade onnx")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise InputError(f"{source}: the model imports no default ONNX opset")
    if opset < MIN_OPSET:
        raise InputError(f"{source}: opset {opset} is older than the oldest tilec reads "
                         f"({MIN_OPSET}) and onnx.version_converter could not convert it")
    if opset > MAX_OPSET:
        raise InputError(f"{source}: opset {opset} is newer than the installed onnx "
                         f"{onnx.__version__} knows ({MAX_OPSET}); upgrade onnx")
    return int(opset)


CONVERT_TO = 13
"""Opset an older file is converted to (modelling choice: 13 is the newest opset the
onnx.version_converter adapters reach from opset 7-10 for every op the classic ONNX Model Zoo
files use -- Upsample, BatchNormalization's old attributes, Dropout, Pad -- and tilec reads it)."""


def upgrade_opset(model: onnx.ModelProto, source: str) -> str | None:
    """Convert a model older than :data:`MIN_OPSET` (the ONNX Model Zoo's classic files are
    opset 3-10) in place with onnx.version_converter; returns the note to show, or None when
    nothing was done. A failed conversion leaves the model as it was (check_header then says
    so). The conversion keeps every op's shapes and the weights, which is all the planner reads;
    where an op's semantics changed between opsets (opset 9's Upsample becomes a Resize whose
    coordinates round a little differently) the numbers may differ slightly, never the plan."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= MIN_OPSET:
        return None
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, CONVERT_TO)
        onnx.checker.check_model(converted)
    except Exception:  # the converter's many failure types: keep the file, refuse it below
        return None
    model.CopyFrom(converted)
    return (f"opset {opset} converted to {CONVERT_TO} with onnx.version_converter (the ops and "
            "shapes tilec plans are the file's)")


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique, stable name (the planner, reports and errors key on names).

    The first node with a name keeps it; a repeat gets ``__1``, ``__2``, ... and an unnamed node
    becomes ``<op>_<position>``, never colliding with a name that is already in the file.
    """
    claimed: set[str] = set()
    rename: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.name and node.name not in claimed:
            claimed.add(node.name)
        else:
            rename.append(node)
    position = {id(node): i for i, node in enumerate(model.graph.node)}
    for node in rename:
        base = node.name or f"{node.op_type}_{position[id(node)]}"
        name, k = base, 0
        while name in claimed:
            k += 1
            name = f"{base}__{k}"
        node.name = name
        claimed.add(name)


def _node(node: onnx.NodeProto) -> str:
    return f"node '{node.name}' ({node.op_type})"


def check_structure(model: onnx.ModelProto, source: str) -> None:
    """Single assignment, no read of a tensor nothing provides, outputs produced, no cycle."""
    graph = model.graph
    provided = {t.name for t in graph.initializer} | {vi.name for vi in graph.input}
    writer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for out in node.output:
            if not out:
                continue
            if out in writer:
                raise InputError(f"{source}: tensor '{out}' is written by two nodes, "
                                 f"'{writer[out].name}' and '{node.name}' (each ONNX tensor has "
                                 "one producer)")
            if out in provided:
                raise InputError(f"{source}: {_node(node)} overwrites graph input or initializer "
                                 f"'{out}'")
            writer[out] = node
    known = provided | set(writer)
    for node in graph.node:
        for name in node.input:
            if name and name not in known:
                raise InputError(f"{source}: {_node(node)} reads tensor '{name}', which no node, "
                                 "graph input or initializer provides")
    for vi in graph.output:
        if vi.name not in known:
            raise InputError(f"{source}: graph output '{vi.name}' is produced by no node")
    order = topological_order(
        [(n.name, [i for i in n.input if i], [o for o in n.output if o]) for n in graph.node],
        source=source,
    )
    if order != list(range(len(order))):
        nodes = [graph.node[i] for i in order]
        del graph.node[:]
        graph.node.extend(nodes)


def check_schemas(model: onnx.ModelProto, source: str) -> None:
    """Each default-domain node against its ONNX schema (inputs, attributes and their types).

    Shape inference does not do this (it skips a Conv with no weight), and ``check_model`` also
    insists on shaped graph outputs, which valid exported models often lack; so node by node.
    """
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = max(model.ir_version, 3)
    ctx.opset_imports = {o.domain: o.version for o in model.opset_import}
    lex = onnx.checker.C.LexicalScopeContext()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if any(a.HasField("g") or a.graphs for a in node.attribute):
            continue  # If / Loop / Scan: their bodies read outer-scope names this check cannot
            # see (it called valid exports invalid); tilec plans none of them anyway
        try:
            onnx.checker.check_node(node, ctx, lex)
        except Exception as exc:
            raise InputError(f"{source}: {_node(node)} is not valid ONNX: {_first_line(exc)}"
                             ) from exc


# ------------------------------------------------------------------------------------- overrides
@dataclass
class InputOverrides:
    """What :func:`apply_overrides` did to the graph inputs."""

    original: dict[str, list[int | str | None]]  # input name -> dims as the file declared them
    final: dict[str, list[int]]  # input name -> dims after the overrides (all positive)
    height_axes: list[tuple[str, int]] = field(default_factory=list)  # set from --image-size H
    width_axes: list[tuple[str, int]] = field(default_factory=list)  # ... and W
    batch_axes: list[tuple[str, int]] = field(default_factory=list)  # set from --batch
    changed: bool = False
    notes: list[str] = field(default_factory=list)  # one-line notices (a batch defaulted to 1)


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old exporters list weights as inputs too)."""
    init = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in init]


def _looks_nhwc(dims: list[int | str | None]) -> bool:
    """Channels-last: a small static last dimension after a large or unknown dimension 1."""
    return (len(dims) == 4 and isinstance(dims[3], int) and dims[3] in (1, 3, 4)
            and not (isinstance(dims[1], int) and dims[1] <= 4))


def batch_axis(dims: list[int | str | None]) -> int:
    """The batch dimension of an input of rank >= 2: the one dimension whose symbolic name says
    so (contains ``batch``, any case: ``batch``, ``batch_size``, ``unk__batch``), else 0.

    Sequence-first layouts name it: PyTorch's ``nn.LSTM`` / ``nn.Transformer`` default to
    ``[T, B, F]`` and an export writes ``dynamic_axes={"x": {0: "time", 1: "batch"}}``; putting
    ``--batch`` into dimension 0 set the sequence length and asked for the batch as unknown."""
    named = [i for i, d in enumerate(dims) if isinstance(d, str) and "batch" in d.lower()]
    return named[0] if len(named) == 1 else 0


def apply_overrides(model: onnx.ModelProto, source: str, batch: int | None,
                    image_size: tuple[int, int] | None,
                    input_shapes: dict[str | None, tuple[int, ...]] | None = None
                    ) -> InputOverrides:
    """Rewrite the graph inputs' shapes in place so that every dimension is a positive integer.

    In order: ``input_shapes`` sets whole shapes; ``batch`` sets the batch dimension
    (:func:`batch_axis`: dimension 0 unless a symbolic name says otherwise) of every input of rank
    2 or more; ``image_size`` sets dimensions 2 and 3 (H, W) of every rank-4 input, which tilec
    reads as NCHW. A symbolic dimension that gets a value passes it on to every other input
    dimension with the same symbol (ONNX: same name, same size). When anything changed, the
    intermediate shapes an exporter recorded are dropped, so inference recomputes them.
    """
    if batch is not None and batch <= 0:
        raise InputError(f"--batch: must be a positive integer, got {batch}")
    inputs = real_inputs(model)
    if not inputs:
        raise InputError(f"{source}: the graph has no inputs")
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            raise InputError(f"{source}: input '{vi.name}' is not a tensor")
        if not vi.type.tensor_type.HasField("shape"):
            raise InputError(f"{source}: input '{vi.name}' has no shape (not even its rank); "
                             f"give it with --input-shape {vi.name}=...")
    dims = {vi.name: _dims(vi) for vi in inputs}
    result = InputOverrides(original={k: list(v) for k, v in dims.items()}, final={})
    symbols: dict[str, int] = {}

    def assign(name: str, axis: int, value: int) -> None:
        symbol = result.original[name][axis]
        if isinstance(symbol, str):
            symbols[symbol] = value  # a later flag wins: --batch overrides --input-shape's dim 0
        dims[name][axis] = value

    listing = ", ".join(f"{k} {_shape_text(v)}" for k, v in dims.items())
    if input_shapes:
        for key, shape in input_shapes.items():
            if key is None and len(dims) > 1:
                raise InputError(f"--input-shape: the model has {len(dims)} inputs ({listing}); "
                                 "name each one: NAME=dims;NAME2=dims")
            name = key if key is not None else next(iter(dims))
            if name not in dims:
                raise InputError(f"--input-shape: the model has no input '{name}' (inputs: "
                                 f"{listing})")
            if len(shape) != len(dims[name]):
                raise InputError(f"--input-shape: input '{name}' has rank {len(dims[name])} "
                                 f"({_shape_text(dims[name])}), got {len(shape)} dimensions")
            for axis, value in enumerate(shape):
                assign(name, axis, value)
    if batch is not None:
        batched = [name for name, d in dims.items() if len(d) >= 2]
        if not batched:
            raise InputError(f"--batch: no input has a batch dimension (inputs: {listing})")
        for name in batched:
            axis = batch_axis(result.original[name])
            assign(name, axis, batch)
            result.batch_axes.append((name, axis))
    if image_size is not None:
        images = [name for name, d in dims.items() if len(d) == 4]
        if not images:
            raise InputError(f"--image-size: the model has no rank-4 (NCHW) image input "
                             f"(inputs: {listing}); use --input-shape")
        for name in images:
            if _looks_nhwc(result.original[name]):
                raise InputError(f"--image-size: input '{name}' "
                                 f"({_shape_text(result.original[name])}) looks NHWC; tilec "
                                 "resizes NCHW inputs only, give the shape with --input-shape")
            assign(name, 2, image_size[0])
            assign(name, 3, image_size[1])
            result.height_axes.append((name, 2))
            result.width_axes.append((name, 3))
    if batch is None:
        _default_batch(dims, result, assign, symbols)
    for d in dims.values():  # symbols given a value anywhere apply everywhere
        for axis, value in enumerate(d):
            if isinstance(value, str) and value in symbols:
                d[axis] = symbols[value]

    for vi in inputs:
        d = dims[vi.name]
        for axis, value in enumerate(d):
            if isinstance(value, int) and value > 0:
                continue
            if value == 0:
                raise InputError(f"{source}: input '{vi.name}' dimension {axis} is 0 (an empty "
                                 f"tensor); set a size with --input-shape")
            what = f"'{value}'" if isinstance(value, str) else "unknown"
            if axis == batch_axis(result.original[vi.name]) and len(d) >= 2:
                hint = "--batch"
            elif len(d) == 4 and axis in (2, 3):
                hint = "--image-size"
            else:
                example = ",".join("?" if not isinstance(v, int) or v <= 0 else str(v) for v in d)
                hint = f"--input-shape {vi.name}={example} (fill in the ?)"
            raise InputError(f"{source}: input '{vi.name}' dimension {axis} ({what}) is dynamic; "
                             f"set it with {hint}")
        result.final[vi.name] = [int(v) for v in d]
        result.changed |= result.final[vi.name] != result.original[vi.name]
        shape = vi.type.tensor_type.shape
        for dim, value in zip(shape.dim, d, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
    if result.changed:
        # Exporters record intermediate shapes for the size they traced; they would now be stale.
        del model.graph.value_info[:]
        for out in model.graph.output:
            if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
                for dim in out.type.tensor_type.shape.dim:
                    dim.Clear()
    return result


def _default_batch(dims: dict[str, list[int | str | None]], result: InputOverrides,
                   assign: Callable[[str, int, int], None], symbols: dict[str, int]) -> None:
    """Without ``--batch``, a dynamic batch dimension becomes 1, with a one-line notice.

    Almost every export marks the batch dynamic (``dynamic_axes={"input": {0: "batch"}}``), and
    batch 1 is what such a file is most often asked about; refusing it made every standard export
    need a flag. Only the batch rule's dimension (:func:`batch_axis` of an input of rank >= 2, as
    ``--batch`` sets it) is defaulted; any other dynamic dimension still has to be given.
    """
    defaulted = []
    for name, d in dims.items():
        axis = batch_axis(result.original[name]) if len(d) >= 2 else 0
        if len(d) < 2 or isinstance(d[axis], int) or d[axis] in symbols:
            continue  # static, set by --input-shape, or a symbol given a value elsewhere
        defaulted.append(f"'{name}'" + (f" ('{d[axis]}')" if isinstance(d[axis], str) else ""))
        assign(name, axis, 1)
        result.batch_axes.append((name, axis))
    if defaulted:
        which = ", ".join(defaulted[:3]) + (f" and {len(defaulted) - 3} more"
                                            if len(defaulted) > 3 else "")
        result.notes.append(f"batch 1 assumed: the batch dimension of input {which} is dynamic "
                            "(set it with --batch)")


def network_stride(model: onnx.ModelProto) -> int | None:
    """The ratio of the first image input's height to the coarsest output map, as declared.

    Read from the file's own static shapes (call before :func:`apply_overrides`); None when it
    cannot be known: dynamic sizes, no rank-4 output, or a non-integer ratio.
    """
    inputs = [_dims(vi) for vi in real_inputs(model) if vi.type.HasField("tensor_type")]
    sizes = [d[2] for d in inputs if len(d) == 4 and isinstance(d[2], int) and d[2] > 0]
    outs = [_dims(o) for o in model.graph.output if o.type.HasField("tensor_type")]
    out_h = [d[2] for d in outs if len(d) == 4 and isinstance(d[2], int) and d[2] > 0]
    if not sizes or not out_h:
        return None
    h, coarse = sizes[0], min(out_h)
    if h % coarse:
        return None
    stride = h // coarse
    return stride if stride > 1 else None


# ------------------------------------------------------------------------------------- diagnosis
def _infers(light: onnx.ModelProto, values: dict[tuple[str, int], int]) -> bool:
    """Does shape inference accept ``light`` with the given input dimensions, all positive?"""
    model = onnx.ModelProto()
    model.CopyFrom(light)
    by_name = {vi.name: vi for vi in model.graph.input}
    for (name, axis), value in values.items():
        dim = by_name[name].type.tensor_type.shape.dim[axis]
        dim.Clear()
        dim.dim_value = value
    try:
        inferred = run_shape_inference(model)
    except ShapeError:
        return False
    return all(d.dim_value > 0 or not d.HasField("dim_value")
               for vi in inferred.graph.value_info
               for d in vi.type.tensor_type.shape.dim)


def working_sizes(light: onnx.ModelProto, overrides: InputOverrides, h: int, w: int,
                  stride: int | None) -> tuple[list[tuple[int, int]], int | None]:
    """Image sizes next to (h, w) that the network takes, and the multiple they are of.

    Tries the multiples of ``stride`` (when known) and then of 2, 4, ..., 128 just below and above
    the request; the first multiple for which both pass shape inference wins.
    """
    def at(hh: int, ww: int) -> dict[tuple[str, int], int]:
        return {**{a: hh for a in overrides.height_axes}, **{a: ww for a in overrides.width_axes}}

    candidates = ([stride] if stride else []) + [2 ** k for k in range(1, 8)]
    for s in dict.fromkeys(candidates):
        lo = (max(s, h // s * s), max(s, w // s * s))
        hi = (-(-h // s) * s, -(-w // s) * s)
        sizes = list(dict.fromkeys([lo, hi]))
        if (h, w) in sizes:
            continue  # already a multiple of s, and it failed
        if all(_infers(light, at(*size)) for size in sizes):
            return sizes, s
    return [], None


def _explain_shape_error(exc: ShapeError, graph: gs.Graph, overrides: InputOverrides,
                         hw: tuple[int, int] | None, stride: int | None,
                         source: str) -> InputError:
    """Say which override (if any) made inference fail, and what would work instead."""
    where = f"node '{exc.node}' ({exc.op})" if exc.node else "shape inference"
    light = _light_model(graph)
    declared_ok: bool | None = None
    if overrides.changed:
        # Would the file's own declared (static) sizes have passed? Then the overrides broke it.
        static = {(n, a): v for n, dims in overrides.original.items()
                  for a, v in enumerate(dims) if isinstance(v, int) and v > 0}
        restore = {k: v for k, v in static.items()
                   if k in overrides.height_axes + overrides.width_axes + overrides.batch_axes}
        declared_ok = _infers(light, restore) if restore else None
    if hw is not None and declared_ok is not False:
        sizes, multiple = working_sizes(light, overrides, hw[0], hw[1], stride)
        if sizes:
            listed = " or ".join(f"{a}x{b}" for a, b in sizes)
            return InputError(f"{source}: image size {hw[0]}x{hw[1]} does not suit the network: "
                              f"{where}: {exc.detail}; sizes that work: {listed} (multiples of "
                              f"{multiple})")
        return InputError(f"{source}: {where}: {exc.detail} (at image size {hw[0]}x{hw[1]}; "
                          "no nearby size passes either)")
    batch_axes = [(n, a) for n, a in overrides.batch_axes
                  if isinstance(overrides.original[n][a], int)]
    if declared_ok and batch_axes:
        n, a = batch_axes[0]
        return InputError(f"{source}: {where}: {exc.detail} (with --batch "
                          f"{overrides.final[n][a]}; the model was exported for batch "
                          f"{overrides.original[n][a]} and may have it baked into a constant: "
                          "re-export it with a dynamic batch axis)")
    return exc


# ------------------------------------------------------------------------------------- capture
def capture_onnx(path: str | Path, *, batch: int | None = None,
                 image_size: tuple[int, int] | str | int | None = None,
                 input_shape: str | tuple[int, ...] | dict | None = None,
                 name: str | None = None, stride: int | None = None,
                 source: str | None = None, host_ops: str = "auto") -> Captured:
    """Load an ONNX file into the graph form with every shape concrete.

    ``stride`` (when the caller knows it, e.g. for a zoo model) lets a bad image size be reported
    as such before inference runs.
    """
    path = Path(path)
    label = source or str(path)
    t0 = time.perf_counter()
    model = load_model_proto(path)
    load = time.perf_counter() - t0
    captured = capture_model_proto(model, batch=batch, image_size=image_size,
                                   input_shape=input_shape, name=name or path.stem, stride=stride,
                                   source=label, host_ops=host_ops)
    captured.seconds = {"load": load, **captured.seconds}
    return captured


def _host_partition(graph: gs.Graph, local: list[str], host_ops: str,
                    source: str) -> HostCut | None:
    """Refuse the ops tilec cannot plan, or (``host_ops="auto"``) cut a head / tail of them off
    to the host (:mod:`tilec.capture.host`)."""
    const = _constant_nodes(graph)
    bad = unsupported_nodes(graph, const, local)
    if not bad:
        return None
    grouped = unsupported_in_graph(graph, const, local)
    if host_ops == "none":
        raise_unsupported(source, grouped, hint=" (--host-ops auto would run a head or tail of "
                                                "them on the host)")
    cut = cut_to_host(graph, bad, const, grouped, source)
    toposort(graph, source=source)
    return cut


def capture_model_proto(model: onnx.ModelProto, *, batch: int | None, image_size,
                        name: str, stride: int | None, source: str,
                        input_shape: str | tuple[int, ...] | dict | None = None,
                        host_ops: str = "auto") -> Captured:
    """Capture an in-memory ONNX model (shared by the file and torch front doors).

    ``model`` is modified (node names, input shapes); pass a copy to keep the original.
    ``host_ops``: "auto" cuts ops the chip cannot run off to the host when they form the
    graph's head or tail (:mod:`tilec.capture.host`); "none" refuses them.
    """
    if host_ops not in HOST_OPS:
        raise InputError(f"--host-ops: '{host_ops}' is not one of {', '.join(HOST_OPS)}")
    clock = _Clock()
    hw = parse_image_size(image_size)
    shapes = parse_input_shapes(input_shape, {
        vi.name: vi.type.tensor_type.elem_type for vi in real_inputs(model)
        if vi.type.HasField("tensor_type")})
    upgraded = upgrade_opset(model, source)
    opset = check_header(model, source)
    name_nodes(model)
    check_tensors(model, source)  # storage vs dims and dtype, NaN / inf weights
    check_structure(model, source)
    check_schemas(model, source)
    # after the opset upgrade and the schema checks, before op support is judged: QOperator /
    # integer ops become the QDQ form tilec plans (tilec.capture.qoperator)
    requantized = rewrite_qoperator(model, source)
    unsupported = unsupported_in_proto(model)  # the verdict waits for folding (see below)
    local = [f.name for f in model.functions if f.domain == FUSED_DOMAIN]
    declared_stride = network_stride(model)
    overrides = apply_overrides(model, source, batch, hw, shapes)
    if upgraded:
        overrides.notes.append(upgraded)
    if requantized:
        overrides.notes.append(requantized)
    if hw is not None and stride and any(s % stride for s in hw):
        lo, hi = (max(stride, hw[0] // stride * stride), -(-hw[0] // stride) * stride)
        raise InputError(f"{source}: image size {hw[0]}x{hw[1]} is not a multiple of the "
                         f"network's stride {stride}; try {lo} or {hi}")
    known_stride = stride or declared_stride
    clock.lap("check")

    graph = from_onnx(model)
    toposort(graph, source=source)
    clock.lap("import")
    try:
        infer_shapes(graph, source=source)
        clock.lap("infer")
        folded = fold_to_fixed_point(graph, source)
    except ShapeError as exc:
        # An op tilec cannot plan is the more basic problem (and often why inference failed).
        raise_unsupported(source, unsupported)
        raise _explain_shape_error(exc, graph, overrides, hw, known_stride, source) from exc
    clock.lap("fold")
    # Op support is judged after folding: shape-only subgraphs (a ScatterND building a mask
    # from shapes, Sin/Cos of a positional encoding of constants) are constants by now.
    host = _host_partition(graph, local, host_ops, source)
    check_shapes(graph, source)
    check_conv_weights(graph, source)
    rebatched = _follow_batch(graph, overrides, source)
    if rebatched:
        overrides.notes.append(
            f"{len(rebatched)} Reshape target{'s' if len(rebatched) > 1 else ''} the export "
            f"fixed at its own batch follow --batch (first: '{rebatched[0]}')")
    check_reshapes(graph, source, overrides.changed)
    training = [n.name for n in graph.nodes
                if n.op == "BatchNormalization" and int(n.attrs.get("training_mode", 0) or 0)]
    if training:
        overrides.notes.append(
            f"{len(training)} BatchNormalization node{'s' if len(training) > 1 else ''} "
            f"(first: '{training[0]}') have training_mode=1 -- the file was exported in training "
            "mode: they compute batch statistics (planned as reductions, not folded); export "
            "after model.eval() for inference")
    clock.lap("verify")

    inputs = {t.name: tuple(int(d) for d in t.shape) for t in graph.inputs}
    first_name, first = next(iter(inputs.items()))
    axes = {n: batch_axis(overrides.original[n]) for n, shape in inputs.items()
            if len(shape) >= 2 and n in overrides.original}
    four_d = [s for s in inputs.values() if len(s) == 4]
    return Captured(
        graph=graph, name=name, source=source,
        batch=int(first[axes.get(first_name, 0)]) if len(first) >= 2 else 1,
        image_size=(four_d[0][2], four_d[0][3]) if four_d else None,
        input_shapes=inputs, stride=known_stride, opset=opset,
        meta={**({"folded_nodes": folded} if folded else {}),
              **({"batch_axes": {n: a for n, a in axes.items() if a}}
                 if any(axes.values()) else {}),
              **({"host": host.as_dict()} if host else {}),
              **({"notes": overrides.notes + ([host.note()] if host else [])}
                 if overrides.notes or host else {})},
        seconds=clock.laps,
    )


def _follow_batch(graph: gs.Graph, overrides: InputOverrides, source: str) -> list[str]:
    """:func:`follow_batch` when ``--batch`` replaced a batch the file declared as a number
    (the batch the export was traced at), the same on every input it set."""
    pairs = {(overrides.original[name][axis], overrides.final[name][axis])
             for name, axis in overrides.batch_axes
             if name in overrides.original and axis < len(overrides.original[name])}
    if len(pairs) != 1:
        return []
    (exported, batch), = pairs
    if not isinstance(exported, int) or exported == batch:
        return []
    return follow_batch(graph, source, exported, int(batch))


class _Clock:
    """Wall-clock seconds per capture stage (for ``benchmarks/capture_time.py``)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = self.laps.get(stage, 0.0) + now - self._last
        self._last = now


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
