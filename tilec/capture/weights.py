"""Checks on a file's stored tensors: storage that matches the declared dims, and finite weights.

Both used to surface deep inside tilec as internal errors: a tensor whose byte size disagrees with
its dims failed a numpy reshape on import (exit 3), and a NaN or infinite weight made the lowering
proof report that a pass "changed the model: relative error inf". Both are faults of the file, so
they are input errors naming the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import onnx

from tilec.errors import InputError

_TYPED_FIELD = {  # data_type -> the repeated field holding its values when raw_data is not used
    onnx.TensorProto.FLOAT: "float_data", onnx.TensorProto.COMPLEX64: "float_data",
    onnx.TensorProto.DOUBLE: "double_data", onnx.TensorProto.COMPLEX128: "double_data",
    onnx.TensorProto.INT64: "int64_data", onnx.TensorProto.UINT32: "uint64_data",
    onnx.TensorProto.UINT64: "uint64_data", onnx.TensorProto.STRING: "string_data",
}
"""Every other numeric type (int32, int16, int8, uint8, uint16, bool, float16, bfloat16, the
float8 and 4-bit types) keeps its values in ``int32_data`` (ONNX's onnx.proto)."""

_PACKED_4BIT = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1")
                if hasattr(onnx.TensorProto, n)}
"""Types two of which share a byte (their ``int32_data`` holds one byte per pair too)."""

_COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}

PARAMETER_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2, 3, 4), "LayerNormalization": (1, 2),
    "InstanceNormalization": (1, 2), "PRelu": (1,), "LSTM": (1, 2, 3), "GRU": (1, 2, 3),
    "Einsum": (0, 1),
}
"""Inputs that hold trained parameters: an infinite value there is a broken weight. Elsewhere an
infinity can be meant (``-inf`` in an attention mask), so only NaN is refused everywhere."""

_CHUNK = 1 << 22  # elements scanned for NaN / inf at a time, so a large weight costs no big copy


def _tensors(graph: onnx.GraphProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every stored tensor of the main graph, with how to name it in a message."""
    for tensor in graph.initializer:
        yield tensor, f"initializer '{tensor.name}'"
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t, f"node '{node.name}' ({node.op_type}) attribute '{attr.name}'"


def _expected_count(tensor: onnx.TensorProto) -> int:
    count = math.prod(int(d) for d in tensor.dims)
    if tensor.data_type in _PACKED_4BIT:
        return (count + 1) // 2
    if tensor.data_type in _COMPLEX:
        return 2 * count
    return count


def check_tensors(model: onnx.ModelProto, source: str) -> None:
    """:func:`check_storage` and :func:`check_finite` in one pass over the tensors: reading a
    protobuf's ``raw_data`` copies it, so each tensor's bytes are read once (VGG-16's 528 MB:
    1.3 s instead of 2.6 s on a shared machine)."""
    parameters = _parameters(model)
    variances = _variances(model)
    for tensor, what in _tensors(model.graph):
        raw = _check_storage_one(tensor, f"{source}: {what}")
        _check_finite_one(tensor, raw, what, parameters, source)
        if tensor.name in variances:
            _check_variance(tensor, raw, what, variances[tensor.name], source)


def check_storage(model: onnx.ModelProto, source: str) -> None:
    """Every stored tensor's type is known and its data holds exactly ``prod(dims)`` values."""
    for tensor, what in _tensors(model.graph):
        _check_storage_one(tensor, f"{source}: {what}")


def _check_storage_one(tensor: onnx.TensorProto, where: str) -> bytes | None:
    """One tensor of :func:`check_storage`; returns its ``raw_data`` (None when it has none)."""
    if any(int(d) < 0 for d in tensor.dims):
        raise InputError(f"{where} has a negative dimension ({list(tensor.dims)})")
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where} has data type {tensor.data_type}, which is not an ONNX "
                         "tensor type") from None
    if tensor.data_type == onnx.TensorProto.UNDEFINED:
        raise InputError(f"{where} has no data type")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None  # checked against its file when loaded (onnx_file._load_external_data)
    dims = "x".join(str(int(d)) for d in tensor.dims) or "scalar"
    type_name = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
    need = _expected_count(tensor)
    if tensor.HasField("raw_data"):
        if tensor.data_type == onnx.TensorProto.STRING:
            raise InputError(f"{where}: a string tensor cannot use raw_data")
        itemsize = 1 if tensor.data_type in _PACKED_4BIT else np.dtype(np_dtype).itemsize
        if tensor.data_type in _COMPLEX:
            itemsize //= 2
        raw = tensor.raw_data
        have = len(raw)
        if have != need * itemsize:
            raise InputError(f"{where}: its data is {have:,} bytes, but {dims} {type_name} "
                             f"needs {need * itemsize:,} (data type or dims do not match "
                             "the data)")
        return raw
    field = _TYPED_FIELD.get(tensor.data_type, "int32_data")
    have = len(getattr(tensor, field))
    others = [f for f in ("float_data", "double_data", "int32_data", "int64_data",
                          "uint64_data", "string_data") if f != field and getattr(tensor, f)]
    if have != need or others:
        stored = f"{have:,} values in {field}" + (
            f" and values in {', '.join(others)}" if others else "")
        raise InputError(f"{where}: holds {stored}, but {dims} {type_name} needs {need:,} "
                         f"in {field} (data type or dims do not match the data)")
    return None


def _float_values(tensor: onnx.TensorProto, raw: bytes | None = None) -> np.ndarray | None:
    """The values of a float tensor as numpy (``raw``: its raw_data, if already read)."""
    if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16):
        return None
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    if raw is None and tensor.HasField("raw_data"):
        raw = tensor.raw_data
    if tensor.data_type == onnx.TensorProto.BFLOAT16:  # no numpy type: upper half of a float32
        half = (np.frombuffer(raw, np.uint16) if raw is not None
                else np.asarray(tensor.int32_data, np.uint16))
        return (half.astype(np.uint32) << 16).view(np.float32)
    if raw is not None:
        return np.frombuffer(raw, onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    if tensor.data_type == onnx.TensorProto.FLOAT16:
        return np.asarray(tensor.int32_data, np.uint16).view(np.float16)
    field = "double_data" if tensor.data_type == onnx.TensorProto.DOUBLE else "float_data"
    return np.asarray(getattr(tensor, field))


def _parameters(model: onnx.ModelProto) -> dict[str, tuple[str, str]]:
    """Tensor name -> (node, op type) of the first node reading it as a trained parameter."""
    parameters: dict[str, tuple[str, str]] = {}
    for node in model.graph.node:
        for index in PARAMETER_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index]:
                parameters.setdefault(node.input[index], (node.name, node.op_type))
    return parameters


def _variances(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor name -> the BatchNormalization node reading it as its running variance."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "BatchNormalization" and len(node.input) > 4 and node.input[4]:
            out.setdefault(node.input[4], node.name)
    return out


def _check_variance(tensor: onnx.TensorProto, raw: bytes | None, what: str, node: str,
                    source: str) -> None:
    """A running variance is a mean of squares: a negative one is a broken file, and folding it
    would make NaN weights (``1 / sqrt(var + eps)``) that every later check trips over."""
    values = _float_values(tensor, raw)
    if values is None:
        return
    neg = int((values < 0).sum())
    if neg:
        raise InputError(f"{source}: {what} (the running variance of BatchNormalization node "
                         f"'{node}') holds {neg:,} negative value{'s' if neg > 1 else ''} of "
                         f"{values.size:,}; a variance cannot be negative (a damaged file)")


def check_finite(model: onnx.ModelProto, source: str) -> None:
    """No NaN in any float tensor, and no infinity in a trained parameter.

    Call after :func:`check_storage` (sizes are then right) and after external data is loaded.
    """
    parameters = _parameters(model)
    for tensor, what in _tensors(model.graph):
        _check_finite_one(tensor, None, what, parameters, source)


def _check_finite_one(tensor: onnx.TensorProto, raw: bytes | None, what: str,
                      parameters: dict[str, tuple[str, str]], source: str) -> None:
    values = _float_values(tensor, raw)
    if values is None or values.size == 0:
        return
    flat = values.reshape(-1)
    nan = inf = 0
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK]
        nan += int(np.isnan(chunk).sum())
        inf += int(np.isinf(chunk).sum())
    user = parameters.get(tensor.name)
    if nan or (inf and user):
        bad = ", ".join(p for p in (f"{nan:,} NaN" if nan else "",
                                    f"{inf:,} infinite" if inf else "") if p)
        role = f" (a weight of node '{user[0]}', {user[1]})" if user else ""
        raise InputError(f"{source}: {what}{role} holds {bad} of its {flat.size:,} values; "
                         "the weights are broken (a failed training run or a damaged file)")
