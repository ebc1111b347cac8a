"""Proving the passes with onnxruntime, at a small *probe* size.

Running the full model before and after every pass would cost two full inferences per pass
(yolov4-p5 at 896 px is 163 GMACs); a compile must take seconds. The rewrites do not depend on the
spatial size or the batch, so tilec proves them on a *probe*: the same model at batch 1 and a small
image size, carried through the pipeline in lockstep with the real graph.

* Each pass runs on the real graph and on the probe. Both runs must make the same decisions (the
  same rewrites at the same nodes) -- otherwise the proof would not carry over, and that is an
  :class:`~tilec.errors.InternalError`.
* The probe is run through onnxruntime on seeded random inputs before and after. An exact pass (or
  run of exact passes) is checked *region by region* (see :class:`Verifier`): any tensor that moves
  by more than the tolerance (relative to its scale, :func:`tilec.numerics.rel_error`) is an
  :class:`~tilec.errors.InternalError` -- never a silently changed model. A lossy pass (quantize)
  has its output error measured and reported. A pass that only annotates is proved by structure
  (:func:`tilec.passes.fingerprint`).

Where the probe comes from: the caller may pass one; otherwise the verifier re-shapes a copy of the
graph (batch 1 and the first candidate image size whose shapes infer and which onnxruntime runs),
which shares the model's weight arrays, so the probe's passes reuse the model's arithmetic. If that
fails -- sizes baked into constants (a detection grid, a Reshape target) -- a probe *factory* from
the caller is tried (``tilec lower`` exports a zoo model again at a small size), and last the model
is proved at its own size, batch 1 if possible: slower, never skipped.

Modes: ``"pass"`` verifies every pass on its own (``tilec lower``, tests); ``"pipeline"`` verifies
each run of consecutive exact passes once, and each lossy pass once (``tilec compile``); ``"off"``.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter
from onnx_graphsurgeon.ir.tensor import LazyValues

from tilec import numerics
from tilec.errors import InputError, InternalError
from tilec.ir import (
    FUSED_DOMAIN,
    MAX_IR_VERSION,
    infer_shapes,
    is_concrete,
    without_annotations,
)

if TYPE_CHECKING:
    from tilec.passes import PassStats

MODES = ("pass", "pipeline", "off")
PROBE_SIZES = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640)
"""Candidate probe image sizes, tried in order; with a known network stride only multiples of it
that keep the coarsest feature map at least 2x2 (:func:`probe_sizes`). At 2x2 every tap of a 3x3
kernel still meets a real pixel at some output position, so a misplaced tap changes the result;
at 1x1 only the centre tap would. Every earlier, larger feature map is compared too."""


def probe_sizes(smallest_side: int, stride: int | None) -> list[int]:
    """Probe sizes to try for a model whose smaller image side is ``smallest_side``."""
    return [s for s in PROBE_SIZES if s < smallest_side
            and (not stride or (s % stride == 0 and s >= 2 * stride))]


E2E_LIMIT = 1e-2
"""Bound on the end-to-end output error of an exact pass whose every region checked equal: far
above fp32 rounding amplified through a deep network, far below any real change."""



_ORT_NODE = re.compile(r"running (\w+) node\. Name:'([^']*)' Status Message: (.*)")


def ort_reason(exc: BaseException) -> str:
    """onnxruntime's error as a user can read it: ``node 'x' (Reshape): <the sentence>``.

    Its messages start with a source path, a line number and the C++ signature of the check
    that failed ("... reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(...)
    input_shape_size == requested_shape_size was false. The input tensor cannot be ..."); cut to
    200 characters that left only the path."""
    text = " ".join(str(exc).split())
    m = _ORT_NODE.search(text)
    if not m:
        return text[:300]
    op, name, detail = m.groups()
    if " was false. " in detail:
        detail = detail.split(" was false. ", 1)[1]
    else:
        detail = re.sub(r"^/\S+:\d+ ", "", detail)
    return f"node '{name}' ({op}): {detail[:300]}"


@dataclass
class VerifyRecord:
    """One onnxruntime check: which passes it covered and what it measured."""

    scope: tuple[str, ...]
    exact: bool
    max_rel_err: float
    worst_output: str | None
    tolerance: float | None
    probe: dict[str, list[int]]
    seconds: float
    per_output: dict[str, float] = field(default_factory=dict)  # end-to-end, by model output
    output_rel_err: float | None = None  # end to end on the same inputs (None: not run)
    checked: int = 0  # tensors compared
    method: str = "onnxruntime"  # or "structure": only annotations changed, same ONNX graph


    @property
    def ok(self) -> bool:
        return self.tolerance is None or self.max_rel_err <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": list(self.scope), "exact": self.exact,
            "max_rel_err": _json_float(self.max_rel_err), "worst_output": self.worst_output,
            "tolerance": self.tolerance, "probe": self.probe, "seconds": round(self.seconds, 4),
            "output_rel_err": (None if self.output_rel_err is None
                               else _json_float(self.output_rel_err)),
            "checked": self.checked, "method": self.method,
        }


def _json_float(x: float) -> float | str:
    return x if np.isfinite(x) else str(x)


def _share_weights(src: gs.Graph, dst: gs.Graph) -> None:
    """Make ``dst``'s constants hold the very arrays of ``src``'s (no second copy of the weights).

    A constant is shared when ``src`` has one of the same name, dtype, shape and value (a probe
    captured again from the source folds its shape arithmetic to other values under the same
    names; those stay its own). Passes never modify an array in place (they make new constants),
    so sharing is safe. Whatever ``dst`` still holds lazily is loaded, so no constant keeps its
    imported ONNX model -- the whole file's bytes -- alive.
    """
    dst_consts = {n: t for n, t in dst.tensors().items() if isinstance(t, gs.Constant)}
    for name, t in src.tensors().items():
        other = dst_consts.get(name)
        if not isinstance(t, gs.Constant) or other is None or other is t:
            continue
        if other._values is t._values:
            continue
        lazy = t._values if isinstance(t._values, LazyValues) else None
        if lazy is not None and lazy.tensor.data_type in _PACKED:
            olazy = other._values if isinstance(other._values, LazyValues) else None
            if olazy is not None and olazy.tensor.raw_data == lazy.tensor.raw_data and \
                    list(olazy.tensor.dims) == list(lazy.tensor.dims):
                other._values = lazy  # INT4/INT2 stay packed protos (numpy cannot hold them)
            continue
        if lazy is not None:
            t.values = _load(lazy)
        if _same_value(t.values, other):
            other.values = t.values
    materialize(dst)


_RAW_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
               onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.INT64: np.int64,
               onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT8: np.int8,
               onnx.TensorProto.UINT8: np.uint8}


def _load(lazy: LazyValues) -> np.ndarray:
    """A lazily held constant as a numpy array, copied once.

    ``LazyValues.load`` copies twice (protobuf's bytes, then ``np.array`` of a view on them):
    1.2 s of a P5 compile's 1.8 s proof on a loaded machine. A read-only view on the bytes is all
    tilec needs -- passes never modify an array in place (they make new constants), and a pass
    that tried would fail loudly instead of changing the probe's weights under it."""
    tensor = lazy.tensor
    dtype = _RAW_DTYPES.get(tensor.data_type)
    if dtype is None or not tensor.HasField("raw_data") or sys.byteorder != "little" or \
            tensor.data_location == onnx.TensorProto.EXTERNAL:
        return lazy.load()
    raw = tensor.raw_data
    shape = tuple(int(d) for d in tensor.dims)
    if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        return lazy.load()
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _same_value(value: np.ndarray, other: gs.Constant) -> bool:
    """Does constant ``other`` hold ``value`` (compared without copying a lazily held weight)?"""
    value = np.asarray(value)
    if tuple(int(d) for d in other.shape) != value.shape:
        return False
    lazy = other._values if isinstance(other._values, LazyValues) else None
    if lazy is not None:
        if np.dtype(lazy.dtype) != value.dtype:
            return False
        raw = lazy.tensor.raw_data
        if raw and value.dtype.kind in "fiub" and len(raw) == value.nbytes:
            return bool(np.array_equal(np.frombuffer(raw, dtype=value.dtype).reshape(
                value.shape), value))
        return bool(np.array_equal(lazy.load(), value))
    mine = np.asarray(other.values)
    return mine.dtype == value.dtype and bool(np.array_equal(mine, value))


def graph_stride(graph: gs.Graph) -> int | None:
    """The network's total downsampling as the graph shows it: the image input's side over the
    smallest side of any 4-D activation (None without an image input or for a ratio that is not
    an integer). A file rarely declares its stride; without it the first probe size that infers
    may leave the coarsest map at 1x1, where a 3x3 kernel's outer taps meet only padding."""
    image = [t for t in graph.inputs if t.shape is not None and len(t.shape) == 4]
    if not image or not is_concrete(image[0].shape):
        return None
    side = min(int(image[0].shape[2]), int(image[0].shape[3]))
    maps = [min(int(t.shape[2]), int(t.shape[3])) for n in graph.nodes for t in n.outputs
            if t.shape is not None and len(t.shape) == 4 and is_concrete(t.shape)]
    coarse = min((m for m in maps if m > 1), default=0)  # 1x1: a global pool, not a stride
    if not coarse or side % coarse or side // coarse < 2:
        return None
    return side // coarse


class BakedShape(Exception):
    """A re-shaped copy would run a Reshape on the wrong number of elements: its target shape is
    a constant holding the compiled batch or size (capture folded the exporter's shape arithmetic).
    Every other probe size would fail the same way."""


def reshape_copy(graph: gs.Graph, batch: int | None, size: int | None,
                 source: str) -> gs.Graph | None:
    """A copy of ``graph`` with batch ``batch`` and square image size ``size`` (None: unchanged),
    its shapes re-inferred; None when the shapes do not infer at that size. Raises
    :class:`BakedShape` when they infer but a Reshape's constant target no longer matches its
    input (ONNX shape inference does not check that; onnxruntime would refuse the copy)."""
    copy = graph.copy()
    changed = False
    for t in copy.inputs:
        shape = list(t.shape)
        if batch is not None and shape and shape[0] != batch:
            shape[0] = batch
            changed = True
        if size is not None and len(shape) == 4 and (shape[2], shape[3]) != (size, size):
            shape[2] = shape[3] = size
            changed = True
        t.shape = shape
    if not changed:
        return None
    if not reinfer(copy, graph, source):
        return None
    _share_weights(graph, copy)
    return copy


def reinfer(copy: gs.Graph, graph: gs.Graph, source: str) -> bool:
    """Re-infer the shapes of ``copy``, a copy of ``graph`` whose input shapes were changed,
    re-deriving the Reshape targets capture folded at the old shapes
    (:func:`_rederive_reshapes`). False when the shapes do not infer or are not all concrete and
    non-empty; :class:`BakedShape` when a Reshape is left on the wrong number of elements (ONNX
    shape inference takes a constant target on trust, so without this check the copy would carry
    the old batch in every shape after the view)."""
    pinned = False
    for _ in range(_RESHAPE_ROUNDS):
        for node in copy.nodes:
            for out in node.outputs:
                out.shape = None
        try:
            infer_shapes(copy, source=source)
        except InputError:
            if pinned or not _pin_wildcard_reshapes(copy, graph):
                return False
            pinned = True
            continue
        if not _rederive_reshapes(copy, graph):
            break
    for node in copy.nodes:
        for out in node.outputs:
            if not is_concrete(out.shape) or any(int(d) == 0 for d in out.shape):
                return False
        if node.op == "Reshape" and _numel(node.inputs[0].shape) != _numel(node.outputs[0].shape):
            raise BakedShape(f"node '{node.name}' (Reshape) to a constant "
                             f"{[int(d) for d in node.outputs[0].shape]}")
    return True


_RESHAPE_ROUNDS = 8
"""Re-inference rounds of :func:`reshape_copy`: a Reshape re-derived changes the shapes after it,
which may expose the next baked one (sequential views); independent ones are fixed together."""


def _folded_elsewhere(rewrite: tuple[str, Any], other: set[str]) -> bool:
    """Is ``rewrite`` a constant fold of nodes the other graph (model or probe) does not have?"""
    kind, where = rewrite
    nodes = where if isinstance(where, (tuple, list)) else (where,)
    return kind == "fold-constant" and bool(nodes) and not any(n in other for n in nodes)


def _numel(shape: Any) -> int:
    return math.prod(int(d) for d in shape) if is_concrete(shape) else -1


def _pin_wildcard_reshapes(copy: gs.Graph, graph: gs.Graph) -> bool:
    """Give each Reshape of ``copy`` whose constant target has a ``-1`` the model's own output
    shape as its target; return whether any changed.

    The dynamo exporter writes a view with a symbolic batch and static spatial sizes as a
    constant ``[-1, 4, 85, ny, nx]``; at another image size ONNX shape inference cannot solve
    the -1 and fails, so :func:`_rederive_reshapes` never sees the node. Pinned to the model's
    concrete ``[B, 4, 85, ny, nx]`` (the same reshape at the model's size), the target is taken
    on trust by inference and then re-derived like a constant that capture folded. Only called
    once inference has failed, so a -1 that infers at the new size is left as it is."""
    changed = False
    for node, model_node in _constant_reshapes(copy, graph):
        target = np.asarray(node.inputs[1].values)
        if not (target == -1).any() or not is_concrete(model_node.outputs[0].shape):
            continue
        _retarget(node, [int(d) for d in model_node.outputs[0].shape], "pinned")
        changed = True
    return changed


def _constant_reshapes(copy: gs.Graph, graph: gs.Graph) -> list[tuple[gs.Node, gs.Node]]:
    """The Reshapes of ``copy`` with a constant target, each with its node in the model
    ``graph`` (same name) -- what :func:`_pin_wildcard_reshapes` and :func:`_rederive_reshapes`
    re-target."""
    real = {n.name: n for n in graph.nodes if n.op == "Reshape"}
    return [(node, real[node.name]) for node in copy.nodes
            if node.op == "Reshape" and len(node.inputs) >= 2
            and isinstance(node.inputs[1], gs.Constant) and node.name in real]


def _retarget(node: gs.Node, target: list[int], why: str) -> None:
    """Give ``node`` (a Reshape) a new constant target of its own. Named after the node as well
    as the old constant: exporters share one target constant between Reshapes (the dynamo
    exporter's optimizer de-duplicates equal constants), and two Reshapes re-targeted from it
    must not write two different tensors under one name (the exported probe would keep one)."""
    old = node.inputs[1].name
    node.inputs[1] = gs.Constant(f"{old}::{why}::{node.name or id(node)}",
                                 np.asarray(target, dtype=np.int64))


def _rederive_reshapes(copy: gs.Graph, graph: gs.Graph) -> bool:
    """Give each Reshape of ``copy`` whose constant target no longer fits its re-shaped input the
    target it would have had at that size; return whether any changed.

    Capture folds an exporter's ``Shape -> Gather -> Concat -> Reshape`` into a constant at the
    compiled batch and size (``[B, 4, 85, ny, nx]`` for a detection head). The target is
    re-derived from the model's own Reshape, input ``I`` -> output ``O`` (both concrete): the two
    are cut into the shortest runs of dimensions with equal products (``[B] -> [B]``,
    ``[340] -> [4, 85]``, ``[ny] -> [ny]``, ...); a run whose input product changed must map to one
    output dimension, which takes the new product. Anything else (a changed dimension split in
    several) is left alone, and the copy is refused (:class:`BakedShape`). The proof does not need
    the probe to be the model at another size -- only a graph on which the passes make the same
    rewrites with the same weights -- so a re-derived target needs to be valid, and onnxruntime
    checks that when it runs the probe."""
    changed = False
    for node, model_node in _constant_reshapes(copy, graph):
        new_in = node.inputs[0].shape
        if _numel(new_in) < 0 or _numel(new_in) == _numel(node.outputs[0].shape):
            continue
        old_in, old_out = model_node.inputs[0].shape, model_node.outputs[0].shape
        if not (is_concrete(old_in) and is_concrete(old_out)) or len(old_in) != len(new_in):
            continue
        target = _align(
            [int(d) for d in old_in], [int(d) for d in old_out], [int(d) for d in new_in])
        if target is None:
            continue
        _retarget(node, target, "rederived")
        changed = True
    return changed


def _align(old_in: list[int], old_out: list[int], new_in: list[int]) -> list[int] | None:
    """The output shape of a reshape ``old_in -> old_out`` applied to ``new_in`` (see
    :func:`_rederive_reshapes`), or None when the runs do not say it unambiguously."""
    out = list(old_out)
    i = j = 0
    while i < len(old_in) or j < len(old_out):
        if i >= len(old_in) or j >= len(old_out):  # trailing 1s on one side only
            rest_i, rest_o = old_in[i:], old_out[j:]
            if any(d != 1 for d in rest_i + rest_o) or any(d != 1 for d in new_in[i:]):
                return None
            break
        gi, go = [i], [j]
        pi, po = old_in[i], old_out[j]
        while pi != po:
            if pi < po:
                i += 1
                if i >= len(old_in):
                    return None
                gi.append(i)
                pi *= old_in[i]
            else:
                j += 1
                if j >= len(old_out):
                    return None
                go.append(j)
                po *= old_out[j]
        new_p = math.prod(new_in[k] for k in gi)
        if new_p != pi:
            if len(go) != 1:
                return None
            out[go[0]] = new_p
        i += 1
        j += 1
    return out if math.prod(out) == math.prod(new_in) else None


def materialize(graph: gs.Graph) -> None:
    """Load every lazily held constant of ``graph`` (except packed INT4/INT2) into numpy, and
    detach the graph from the ONNX model it was imported from.

    onnx-graphsurgeon's imported graph points into the imported model -- each lazy constant's
    TensorProto, and ``graph.import_domains`` (the model's own opset list) -- and any one such
    reference keeps the whole model, every weight's bytes, alive: measured on the P5 export, 283 MB
    held beside the loaded arrays for the whole compile. Once detached, the arrays are the one copy
    of the weights."""
    for t in graph.tensors().values():
        lazy = t._values if isinstance(t, gs.Constant) and isinstance(t._values, LazyValues) \
            else None
        if lazy is not None and lazy.tensor.data_type not in _PACKED:
            t.values = _load(lazy)
    if graph.import_domains is not None:
        graph.import_domains = [onnx.helper.make_opsetid(d.domain, d.version)
                                for d in graph.import_domains]


def _value_info(name: str, dtype: Any, shape: Any = None) -> onnx.ValueInfoProto:
    try:
        elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (TypeError, KeyError, ValueError):
        elem = onnx.TensorProto.FLOAT
    dims = [int(d) for d in shape] if shape is not None else None
    return onnx.helper.make_tensor_value_info(name, elem, dims)


_PACKED = frozenset({onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.INT2,
                     onnx.TensorProto.UINT2})
FEED_LIMIT = 4096
"""Constants with more elements than this are fed to onnxruntime as inputs, not serialized."""


def runnable(graph: gs.Graph, *, all_outputs: bool = False
             ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``graph`` as a model onnxruntime runs, with its large weights handed over as input arrays.

    Serializing 280 MB of weights into a protobuf and parsing them back costs seconds per check;
    feeding the same numpy arrays as inputs costs nothing (sub-byte INT4/INT2 weights, which numpy
    cannot hold, stay packed initializers). ``all_outputs`` makes every node output a model output.
    Annotations are left out (they are not ONNX attributes).
    """
    with without_annotations(graph):
        nodes = [OnnxExporter.export_node(node) for node in graph.nodes]
    inputs = [_value_info(t.name, t.dtype, t.shape) for t in graph.inputs]
    outputs = [_value_info(t.name, t.dtype) for t in graph.outputs]
    inits: list[onnx.TensorProto] = []
    feeds: dict[str, np.ndarray] = {}
    for name, t in graph.tensors().items():
        if not isinstance(t, gs.Constant) or not t.outputs:
            continue
        lazy = t._values if isinstance(t._values, LazyValues) else None
        packed = lazy is not None and lazy.tensor.data_type in _PACKED
        if packed or math.prod(int(d) for d in t.shape) <= FEED_LIMIT:
            inits.append(OnnxExporter.export_tensor_proto(t))
        else:
            feeds[name] = np.asarray(t.values)
            inputs.append(_value_info(name, feeds[name].dtype, feeds[name].shape))
    if all_outputs:
        have = {o.name for o in outputs}
        for node in graph.nodes:
            for t in node.outputs:
                if t.name and t.name not in have and t.dtype is not None:
                    vi = _value_info(t.name, t.dtype)
                    if vi.type.tensor_type.elem_type in _PACKED:
                        continue  # numpy cannot receive INT4/INT2 values
                    have.add(t.name)
                    outputs.append(vi)
    domains: dict[str, int] = {d.domain: d.version for d in (graph.import_domains or [])}
    domains.setdefault("", int(graph.opset))
    if any(n.domain == FUSED_DOMAIN for n in graph.nodes):
        domains.setdefault(FUSED_DOMAIN, 1)
    model = onnx.helper.make_model(
        onnx.helper.make_graph(nodes, graph.name or "tilec", inputs, outputs, inits),
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in sorted(domains.items())],
        functions=[OnnxExporter.export_function(f) for f in graph.functions],
    )
    model.ir_version = MAX_IR_VERSION
    return model, feeds


def cut_model(model: onnx.ModelProto, ref: dict[str, np.ndarray]
              ) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[str]]:
    """``model`` cut at every tensor it shares (by name) with the reference run.

    Each such tensor is still computed -- it becomes an output -- but its readers read the
    reference value instead (a new input ``<name>::ref``). Every region between shared tensors is
    then evaluated on exactly the inputs the original model gave it, so a rewrite's error is
    measured where it is made, not after 160 layers of fp32 rounding have amplified it.
    Returns the cut model, its extra inputs and the names of the outputs to compare.
    """
    graph = model.graph
    produced = [o for node in graph.node for o in node.output if o]
    shared = [name for name in produced if name in ref]
    shared_set = set(shared)
    feeds: dict[str, np.ndarray] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in shared_set:
                node.input[i] = name + "::ref"
                feeds[name + "::ref"] = ref[name]
    for name, value in feeds.items():
        graph.input.append(_value_info(name, value.dtype, value.shape))
    del graph.output[:]
    graph.output.extend(_value_info(name, ref[name].dtype) for name in shared)
    return model, feeds, shared


LOCAL_PIECE_BYTES = 512 << 20
"""Outputs per onnxruntime run of the region-by-region check (modelling choice of the
implementation: small probes run in one piece, as before; a model-sized transformer probe in
pieces of about this many bytes of results, each computing only its own regions)."""


def split_cut(model: onnx.ModelProto, shared: list[str], ref: dict[str, np.ndarray],
              limit: int) -> list[tuple[onnx.ModelProto, list[str]]]:
    """A model cut by :func:`cut_model` as pieces that each compute some of ``shared``.

    In the cut model a region reads reference values (``<name>::ref`` inputs), model inputs and
    weights -- never another region's output -- so the nodes a set of outputs needs are found by
    walking back from them to where no node produces the name. The outputs are grouped in
    production order into pieces of at most ``limit`` bytes (of their reference values; one
    output at least); with everything under ``limit`` the model is returned whole."""
    sizes = {name: int(ref[name].nbytes) for name in shared}
    if sum(sizes.values()) <= limit:
        return [(model, list(shared))]
    graph = model.graph
    producer = {o: i for i, node in enumerate(graph.node) for o in node.output if o}
    groups: list[list[str]] = [[]]
    acc = 0
    for name in shared:
        if groups[-1] and acc + sizes[name] > limit:
            groups.append([])
            acc = 0
        groups[-1].append(name)
        acc += sizes[name]
    outputs = {vi.name: vi for vi in graph.output}
    pieces = []
    for names in groups:
        need: set[int] = set()
        stack = [producer[n] for n in names if n in producer]
        while stack:
            i = stack.pop()
            if i in need:
                continue
            need.add(i)
            stack.extend(producer[x] for x in graph.node[i].input if x in producer)
        nodes = [graph.node[i] for i in sorted(need)]
        read = {x for node in nodes for x in node.input if x}
        sub = onnx.helper.make_graph(
            nodes, graph.name, [vi for vi in graph.input if vi.name in read],
            [outputs[n] for n in names], [t for t in graph.initializer if t.name in read])
        piece = onnx.helper.make_model(sub, opset_imports=list(model.opset_import),
                                       functions=list(model.functions))
        piece.ir_version = model.ir_version
        pieces.append((piece, names))
    return pieces


class Verifier:
    """Carries the probe through the pipeline and checks it with onnxruntime.

    Every check of an exact pass measures two errors on the probe:

    * **local** -- the rewritten model cut at every tensor it shares with the model before the
      pass (see :func:`cut_model`): each region's outputs against the reference values, given the
      reference inputs; plus every folded constant against the value it replaced. This is the
      proof: it is sharp (~1e-6 for a correct rewrite) and covers every node, because every region
      ends in a shared tensor or a model output. Must be within the tolerance.
    * **end to end** -- the model outputs on the same random inputs, whenever the probe is run
      whole anyway. Reported. It includes fp32 rounding amplified through the whole network (for
      yolov4-p5 the same ~5e-6 as onnxruntime's own Conv+BN fusion, see docs/passes.md), so it is
      bounded only loosely (:data:`E2E_LIMIT`), as a safety net.
    """

    def __init__(self, graph: gs.Graph, *, mode: str, source: str,
                 probe: gs.Graph | Callable[[], gs.Graph | None] | None = None,
                 tolerance: float | None = None, seed: int = 0, stride: int | None = None) -> None:
        if mode not in MODES:
            raise InputError(f"--verify: unknown mode '{mode}' (one of {', '.join(MODES)})")
        self.mode = mode
        self.source = source
        self.seed = seed
        self.graph = graph
        self.seconds = 0.0
        self.runs = 0
        self.records: list[VerifyRecord] = []
        self.pending: list[PassStats] = []
        self.notes: list[str] = []
        self._inputs: dict[str, np.ndarray] | None = None
        t0 = time.perf_counter()
        materialize(graph)
        self.probe, self.ref = self._choose_probe(graph, probe, stride)
        self.shared = self.probe is graph
        self.outputs = [t.name for t in self.probe.outputs]
        out_dtype = self.ref[self.outputs[0]].dtype if self.outputs else np.float32
        self.tolerance = tolerance if tolerance is not None else numerics.tolerance_for(out_dtype)
        self.probe_shapes = {t.name: [int(d) for d in t.shape] for t in self.probe.inputs}
        self.seconds += time.perf_counter() - t0

    # ------------------------------------------------------------------------------ running
    def _run_model(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
        # No onnxruntime graph rewrites: the proof evaluates the graph exactly as the passes
        # wrote it (and session start-up is 2x faster; the probe's runs are milliseconds).
        sess = numerics.session(model, quiet=True, optimize=False)
        if self._inputs is None:
            self._inputs = numerics.random_inputs(sess, seed=self.seed, skip=feeds)
        self.runs += 1
        wanted = {i.name for i in sess.get_inputs()}  # a piece of a cut model reads only some
        return numerics.run(sess, {k: v for k, v in {**self._inputs, **feeds}.items()
                                   if k in wanted})

    def _run_all(self, graph: gs.Graph) -> dict[str, np.ndarray]:
        model, feeds = runnable(graph, all_outputs=True)
        return self._run_model(model, feeds)

    def _try(self, graph: gs.Graph) -> dict[str, np.ndarray] | None:
        try:
            self._inputs = None
            return self._run_all(graph)
        except Exception as exc:  # onnxruntime rejects the re-shaped graph: try the next one
            self.notes.append(f"probe {[list(t.shape) for t in graph.inputs]} rejected by "
                              f"onnxruntime: {str(exc).splitlines()[0][:160]}")
            return None

    def _choose_probe(self, graph: gs.Graph, probe: gs.Graph | Callable[[], gs.Graph | None]
                      | None, stride: int | None) -> tuple[gs.Graph, dict[str, np.ndarray]]:
        if isinstance(probe, gs.Graph):
            _share_weights(graph, probe)
            ref = self._try(probe)
            if ref is not None:
                return probe, ref
        image = [t for t in graph.inputs if len(t.shape) == 4]
        small = min((min(int(t.shape[2]), int(t.shape[3])) for t in image), default=0)
        sizes = probe_sizes(small, stride or graph_stride(graph))
        if not sizes and not stride:
            sizes = probe_sizes(small, None)
        for size in sizes:
            try:
                copy = reshape_copy(graph, 1, size, self.source)
            except BakedShape as exc:
                self.notes.append(f"probe: the graph cannot be re-shaped ({exc})")
                break
            if copy is not None:
                ref = self._try(copy)
                if ref is not None:
                    return copy, ref
                break  # shapes inferred but ORT refused: smaller sizes will not do better
        if callable(probe):  # the caller can make one (e.g. export a zoo model again, small)
            made = probe()
            if made is not None:
                _share_weights(graph, made)
                ref = self._try(made)
                if ref is not None:
                    self.notes.append(f"probe: the model captured again from its source at "
                                      f"{[[int(d) for d in t.shape] for t in made.inputs]}")
                    return made, ref
        try:
            copy = reshape_copy(graph, 1, None, self.source)
        except BakedShape:
            copy = None
        if copy is not None:
            ref = self._try(copy)
            if ref is not None:
                return copy, ref
        self._inputs = None
        try:
            ref = self._run_all(graph)
        except Exception as exc:
            raise InputError(
                f"{self.source}: onnxruntime cannot run the model, so the lowering passes cannot "
                f"be verified ({ort_reason(exc)}); use --verify off to skip"
            ) from exc
        if sizes or any(int(t.shape[0]) > 1 for t in graph.inputs if t.shape):
            self.notes.append("the model could not be re-shaped to a smaller probe; verified at "
                              "its own size")
        return graph, ref

    # ------------------------------------------------------------------------------ steps
    def check_decisions(self, model_stats: PassStats, probe_stats: PassStats,
                        names: tuple[set[str], set[str]] | None = None) -> None:
        """The pass must have rewritten the same nodes the same way on the model and the probe.

        ``names``: the node names of the model and of the probe before the pass. A constant
        fold of a node the *other* graph no longer has is left out of the comparison: capture
        folded it there already (capture folds light constants up to an output size, so an
        embedding looked up at constant indices -- BERT's token types, ``zeros_like(ids)`` --
        is folded by the batch-1 probe's capture and by the model's canonicalize at batch 8).
        Both folds are onnxruntime evaluating constants, as every capture fold is."""
        a = [(r.kind, r.where) for r in model_stats.rewrites]
        b = [(r.kind, r.where) for r in probe_stats.rewrites]
        if names is not None and a != b:
            model_names, probe_names = names
            a = [x for x in a if not _folded_elsewhere(x, probe_names)]
            b = [x for x in b if not _folded_elsewhere(x, model_names)]
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                         min(len(a), len(b)))
            ga = a[first] if first < len(a) else None
            gb = b[first] if first < len(b) else None
            raise InternalError(
                f"{self.source}: pass '{model_stats.name}' rewrote the model and its verification "
                f"probe differently ({len(a)} vs {len(b)} rewrites; first difference: {ga} vs "
                f"{gb}); its result cannot be proved"
            )

    def after_pass(self, stats: PassStats, exact: bool) -> None:
        """Account for a pass that has run on both the model and the probe."""
        if not stats.rewrites:
            return  # nothing changed, nothing to prove
        if exact:
            self.pending.append(stats)
            if self.mode == "pass":
                self.flush()
            return
        self.flush()
        self._check([stats], exact=False, need_ref=True)

    def flush(self, *, final: bool = False) -> None:
        """Verify the exact passes run since the last check. ``final``: nothing follows, so the
        reference values after them are not needed (in pipeline mode the end-to-end run is
        skipped; the region-by-region check is the proof)."""
        if self.pending:
            group, self.pending = self.pending, []
            self._check(group, exact=True, need_ref=not final or self.mode == "pass")

    def _local(self) -> numerics.Comparison:
        """Region-by-region error of the probe against the reference values (see cut_model).

        Once cut, every region reads only reference values, model inputs and weights, so the
        regions run in independent pieces (:func:`split_cut`) of at most
        :data:`LOCAL_PIECE_BYTES` of outputs each: a probe as large as the model (a transformer
        whose sequence length its constants fix) held every intermediate tensor twice --
        GPT-2 small at 1,024 tokens, 3.5 GB of reference and 3.5 GB of results at once."""
        model, feeds = runnable(self.probe)
        model, ref_feeds, shared = cut_model(model, self.ref)
        result = numerics.Comparison()
        if shared:
            all_feeds = {**feeds, **ref_feeds}
            for piece, names in split_cut(model, shared, self.ref, LOCAL_PIECE_BYTES):
                read = {i.name for i in piece.graph.input}
                got = self._run_model(piece, {k: v for k, v in all_feeds.items() if k in read})
                for name in names:
                    result.per_output[name] = numerics.rel_error(self.ref[name], got[name])
                del got
        for name, t in self.probe.tensors().items():
            if isinstance(t, gs.Constant) and name in self.ref and t.outputs:
                result.per_output[name] = numerics.rel_error(self.ref[name], np.asarray(t.values))
        return result

    def _check(self, group: list[PassStats], *, exact: bool, need_ref: bool) -> None:
        t0 = time.perf_counter()
        names = ", ".join(s.name for s in group)
        try:
            local = self._local() if exact else None
            after = self._run_all(self.probe) if need_ref else None
        except Exception as exc:
            raise InternalError(
                f"{self.source}: after pass(es) {names} onnxruntime cannot run the model: "
                f"{ort_reason(exc)}"
            ) from exc
        e2e = None
        if after is not None:
            e2e = numerics.compare({k: self.ref[k] for k in self.outputs},
                                   {k: after[k] for k in self.outputs})
        dt = time.perf_counter() - t0
        self.seconds += dt
        main = local if local is not None else e2e
        record = VerifyRecord(
            scope=tuple(s.name for s in group), exact=exact, max_rel_err=main.max_rel_err,
            worst_output=main.worst_output, tolerance=self.tolerance if exact else None,
            probe=self.probe_shapes, seconds=dt,
            per_output=dict(e2e.per_output) if e2e is not None else {},
            output_rel_err=e2e.max_rel_err if e2e is not None else None,
            checked=len(main.per_output),
        )
        self.records.append(record)
        for s in group:
            s.verify = record
        hint = "" if len(group) == 1 else " (rerun with --verify pass to find the pass)"
        if exact and not record.ok:
            raise InternalError(
                f"{self.source}: pass(es) {names} changed the model: relative error "
                f"{record.max_rel_err:.3g} > {self.tolerance:g} at tensor '{record.worst_output}' "
                f"(probe {self.probe_shapes}){hint}"
            )
        if exact and e2e is not None and e2e.max_rel_err > E2E_LIMIT:
            raise InternalError(
                f"{self.source}: pass(es) {names} changed the model's outputs by "
                f"{e2e.max_rel_err:.3g} (output '{e2e.worst_output}') although every region "
                f"checked equal{hint}"
            )
        if not exact and e2e is not None and not e2e.finite:
            raise InternalError(f"{self.source}: after {names} the model's outputs are not "
                                f"finite (output '{e2e.worst_output}')")
        if after is not None:
            self.ref = after
