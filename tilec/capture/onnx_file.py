"""ONNX front door: load a model file, apply batch / image-size overrides, infer every shape.

The result is the graph form of :mod:`tilec.ir` with a concrete shape on every tensor. Everything a
user can get wrong here becomes an :class:`~tilec.errors.InputError` naming the file and, where there
is one, the input, node or tensor at fault.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from google.protobuf.message import DecodeError

from tilec.capture.types import Captured
from tilec.errors import InputError
from tilec.ir import (
    FUSED_DOMAIN,
    _light_model,
    from_onnx,
    infer_shapes,
    is_concrete,
    toposort,
)
from tilec.opinfo import CONSTANT_ONLY_OPS, OP_KINDS, supported_ops

MIN_OPSET = 11


def load_model_proto(path: Path) -> onnx.ModelProto:
    """Read ``path`` (with its external data) or raise one clear :class:`InputError`."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable ONNX file (truncated or not ONNX: "
                         f"{type(exc).__name__})") from exc
    if not model.graph.node and not model.graph.input:
        raise InputError(f"{path}: not an ONNX model (no graph found)")
    if _uses_external(model):
        base = path.parent
        for tensor in onnx.external_data_helper._get_all_tensors(model):
            if onnx.external_data_helper.uses_external_data(tensor):
                info = onnx.external_data_helper.ExternalDataInfo(tensor)
                if not (base / info.location).exists():
                    raise InputError(f"{path}: external data file '{info.location}' for tensor "
                                     f"'{tensor.name}' not found next to the model")
        try:
            onnx.load_external_data_for_model(model, str(base))
        except Exception as exc:
            raise InputError(f"{path}: cannot read external data: {exc}") from exc
    return model


def _uses_external(model: onnx.ModelProto) -> bool:
    return any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
    )


def parse_image_size(text: str | int | None) -> tuple[int, int] | None:
    """``"896"`` -> (896, 896); ``"640x480"`` -> (640, 480) as (H, W)."""
    if text is None:
        return None
    if isinstance(text, int):
        h = w = text
    else:
        parts = str(text).lower().replace("×", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise InputError(f"--image-size: '{text}' is not a size (use S or HxW, e.g. 896 or "
                             "640x480)") from None
        if len(nums) == 1:
            h = w = nums[0]
        elif len(nums) == 2:
            h, w = nums
        else:
            raise InputError(f"--image-size: '{text}' is not a size (use S or HxW)")
    if h <= 0 or w <= 0:
        raise InputError(f"--image-size: must be positive, got {text}")
    return h, w


def _dim_values(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _set_dims(vi: onnx.ValueInfoProto, dims: list[int | str | None]) -> None:
    shape = vi.type.tensor_type.shape
    for d, value in zip(shape.dim, dims, strict=True):
        if isinstance(value, int):
            d.Clear()
            d.dim_value = value


def apply_overrides(model: onnx.ModelProto, source: str, batch: int | None,
                    image_size: tuple[int, int] | None) -> dict[str, list[int | str | None]]:
    """Rewrite the real graph inputs' shapes in place; return the original dims by input name.

    ``batch`` replaces dimension 0 of every input; ``image_size`` replaces dimensions 2 and 3 of
    every rank-4 (NCHW) input. Intermediate shapes recorded by the exporter are dropped so that
    shape inference recomputes them from the new inputs.
    """
    if batch is not None and batch <= 0:
        raise InputError(f"--batch: must be a positive integer, got {batch}")
    initializer_names = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializer_names]
    if not inputs:
        raise InputError(f"{source}: the graph has no inputs")
    original: dict[str, list[int | str | None]] = {}
    for vi in inputs:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            raise InputError(f"{source}: input '{vi.name}' has no shape")
        dims = _dim_values(vi)
        original[vi.name] = list(dims)
        if batch is not None and dims:
            dims[0] = batch
        if image_size is not None:
            if len(dims) == 4:
                dims[2], dims[3] = image_size
        _set_dims(vi, dims)
    if batch is not None or image_size is not None:
        # Exporters record intermediate shapes for the size they traced; they would now be stale.
        del model.graph.value_info[:]
        for out in model.graph.output:
            if out.type.HasField("tensor_type"):
                out.type.tensor_type.ClearField("shape")
    for vi in inputs:
        dims = _dim_values(vi)
        for axis, d in enumerate(dims):
            if not isinstance(d, int) or d <= 0:
                hint = "--batch" if axis == 0 else (
                    "--image-size" if len(dims) == 4 and axis in (2, 3) else "a fixed shape")
                raise InputError(f"{source}: input '{vi.name}' dimension {axis} "
                                 f"('{d}') is dynamic; set it with {hint}")
    return original


def network_stride(model: onnx.ModelProto, original: dict[str, list[int | str | None]]
                   ) -> int | None:
    """The ratio of the input's size to the coarsest output map, when both are static.

    Used only to explain a bad ``--image-size``; returns None when it cannot be known (dynamic
    original sizes, no spatial outputs, or non-integer ratios).
    """
    sizes = [d[2] for d in original.values() if len(d) == 4 and isinstance(d[2], int)]
    outs = [_dim_values(o) for o in model.graph.output if o.type.HasField("tensor_type")]
    out_h = [d[2] for d in outs if len(d) == 4 and isinstance(d[2], int) and d[2] > 0]
    if not sizes or not out_h:
        return None
    h, coarse = sizes[0], min(out_h)
    if h % coarse:
        return None
    stride = h // coarse
    return stride if stride > 1 else None


def _name_nodes(graph: gs.Graph) -> None:
    """Give every node a unique, stable name (the planner and reports key on names)."""
    seen: Counter[str] = Counter()
    for i, node in enumerate(graph.nodes):
        base = node.name or f"{node.op}_{i}"
        name = base if not seen[base] else f"{base}__{seen[base]}"
        seen[base] += 1
        node.name = name


def check_supported(graph: gs.Graph, source: str) -> None:
    """Every node must be an op tilec plans, a constant-only op, or one of tilec's fused ops."""
    local = {f.name for f in graph.functions}
    for node in graph.nodes:
        if node.domain == FUSED_DOMAIN and node.op in local:
            continue
        if (node.domain or "") not in ("", "ai.onnx") or (
            node.op not in OP_KINDS and node.op not in CONSTANT_ONLY_OPS
        ):
            raise InputError(
                f"{source}: node '{node.name}' has op type '{node.op}'"
                f"{' (domain ' + node.domain + ')' if node.domain else ''}, which tilec cannot "
                f"plan; supported: {', '.join(supported_ops())}"
            )


def check_shapes(graph: gs.Graph, source: str) -> None:
    for node in graph.nodes:
        for tensor in node.outputs:
            if not is_concrete(tensor.shape):
                raise InputError(
                    f"{source}: tensor '{tensor.name}' (output of node '{node.name}', "
                    f"{node.op}) has no concrete shape after inference (got {tensor.shape})"
                )


def capture_onnx(path: str | Path, *, batch: int | None = None,
                 image_size: tuple[int, int] | str | int | None = None,
                 name: str | None = None, stride: int | None = None,
                 source: str | None = None) -> Captured:
    """Load an ONNX file into the graph form with every shape concrete.

    ``stride`` (when the caller knows it, e.g. for a zoo model) lets a bad image size be reported
    as such before inference runs.
    """
    path = Path(path)
    label = source or str(path)
    model = load_model_proto(path)
    return capture_model_proto(model, batch=batch, image_size=image_size,
                               name=name or path.stem, stride=stride, source=label)


def capture_model_proto(model: onnx.ModelProto, *, batch: int | None, image_size,
                        name: str, stride: int | None, source: str) -> Captured:
    """Capture an in-memory ONNX model (shared by the file and torch front doors)."""
    hw = parse_image_size(image_size)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise InputError(f"{source}: the model imports no default ONNX opset")
    if opset < MIN_OPSET:
        raise InputError(f"{source}: opset {opset} is older than the oldest tilec reads "
                         f"({MIN_OPSET}); convert it with onnx.version_converter")
    original = apply_overrides(model, source, batch, hw)
    known_stride = stride or network_stride(model, original)
    if hw is not None and known_stride:
        bad = [s for s in hw if s % known_stride]
        if bad:
            raise InputError(
                f"{source}: image size {hw[0]}x{hw[1]} is not a multiple of the network's "
                f"stride {known_stride}; try {max(known_stride, hw[0] // known_stride * known_stride)}"
            )
    graph = from_onnx(model)
    _name_nodes(graph)
    toposort(graph, source=source)
    check_supported(graph, source)
    try:
        infer_shapes(graph, source=source)
    except InputError as exc:
        if hw is not None:
            raise InputError(f"{exc} (does the network take image size {hw[0]}x{hw[1]}?)"
                             ) from exc
        raise
    check_shapes(graph, source)
    try:
        onnx.checker.check_model(_light_model(graph))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{source}: invalid ONNX graph: {first}") from exc
    inputs = {t.name: tuple(int(d) for d in t.shape) for t in graph.inputs}
    first = next(iter(inputs.values()))
    four_d = [s for s in inputs.values() if len(s) == 4]
    return Captured(
        graph=graph, name=name, source=source,
        batch=int(first[0]) if first else 1,
        image_size=(four_d[0][2], four_d[0][3]) if four_d else None,
        input_shapes=inputs, stride=known_stride, opset=int(opset),
    )
