"""Checks and folding on the imported graph, once every input shape is fixed.

Shape arithmetic exporters leave behind is folded to constants (to a fixed point); then every
activation must have a concrete shape, every Conv's weight must agree with its input and
attributes, and every constant Reshape target must hold its input's elements. Split from
:mod:`tilec.capture.onnx_file`, which reads the file and runs these in order.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from tilec.errors import InputError
from tilec.ir import (
    _LIGHT_CONSTANT_LIMIT,
    infer_shapes,
    is_concrete,
    quiet_gs,
    split_shape_ranges,
)

_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


def _shape_text(dims: list | tuple) -> str:
    """``[1, 3, None, "W"]`` -> ``"1x3x?xW"``; onnx's invented ``unk__N`` symbols show as ``?``."""
    def one(d: object) -> str:
        if d is None or (isinstance(d, str) and d.startswith("unk__")):
            return "?"
        return str(d)

    return "x".join(one(d) for d in dims) if dims else "scalar"


def _is_const(tensor: gs.Tensor, const_nodes: set[int]) -> bool:
    return isinstance(tensor, gs.Constant) or bool(
        tensor.inputs and id(tensor.inputs[0]) in const_nodes)


def _constant_nodes(graph: gs.Graph) -> set[int]:
    """ids of nodes computing only from constants (the graph must be sorted)."""
    const: set[int] = set()
    for node in graph.nodes:
        if node.op == "Constant" or (
                node.inputs and all(_is_const(t, const) for t in node.inputs if t.name)):
            const.add(id(node))
    return const


def _needs_folding(graph: gs.Graph) -> bool:
    if any(n.op in ("Shape", "Size") for n in graph.nodes):
        return True
    return any(not is_concrete(t.shape) for n in graph.nodes for t in n.outputs)


def fold_shape_arithmetic(graph: gs.Graph) -> int:
    """Fold what is computable from constants and the (now fixed) shapes; return nodes removed.

    onnx-graphsurgeon evaluates the constant subgraphs with onnxruntime. Nodes that read a large
    constant (a weight) or quantize / dequantize are left alone: folding never touches weights, so
    their values and storage types reach the planner as the file has them.
    """
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # its graph optimizer warns on stderr otherwise

    def exclude(node: gs.Node) -> bool:
        if node.op in _QDQ_OPS:
            return True
        return any(isinstance(t, gs.Constant) and
                   int(np.prod(t.shape, dtype=np.int64)) > _LIGHT_CONSTANT_LIMIT
                   for t in node.inputs)

    split_shape_ranges(graph)  # graphsurgeon would fold Shape(start, end) as the whole shape
    before = len(graph.nodes)
    with quiet_gs():
        graph.fold_constants(fold_shapes=True, error_ok=True, size_threshold=1 << 20,
                             should_exclude_node=exclude)
        graph.cleanup()
    return before - len(graph.nodes)


MAX_FOLD_ROUNDS = 256
"""Bound on folding rounds, against pathological graphs only: every round that continues removed
at least one node, and real exports settle in one to ten (ShuffleNetV2 needs eight)."""


def fold_to_fixed_point(graph: gs.Graph, source: str) -> int:
    """Fold shape arithmetic and re-infer shapes until nothing more folds; return nodes removed.

    Each round can expose more: a folded ``Shape`` gives a Reshape its target, inference then gives
    the next ``Shape`` a concrete input. Raises :class:`InputError` only if the graph still folds
    after :data:`MAX_FOLD_ROUNDS` rounds.
    """
    folded = 0
    for _ in range(MAX_FOLD_ROUNDS):
        if not _needs_folding(graph):
            return folded
        removed = fold_shape_arithmetic(graph)
        folded += removed
        infer_shapes(graph, source=source)
        if not removed:
            return folded
    if not _needs_folding(graph):
        return folded
    raise InputError(f"{source}: shape arithmetic was still folding after {MAX_FOLD_ROUNDS} "
                     f"rounds ({folded:,} nodes folded); tilec stops there, as a graph this deep "
                     "in shape computations is almost certainly malformed")


def _value_dependent(graph: gs.Graph) -> set[str]:
    """Tensors whose *values* depend on a graph input (not merely on its shape)."""
    dependent = {t.name for t in graph.inputs}
    for node in graph.nodes:  # sorted
        if node.op in ("Shape", "Size"):
            continue
        if any(t.name in dependent for t in node.inputs):
            dependent.update(t.name for t in node.outputs)
    return dependent


def check_shapes(graph: gs.Graph, source: str) -> None:
    """Every activation has a concrete, non-empty shape (the first offender, in graph order)."""
    const = _constant_nodes(graph)
    dependent: set[str] | None = None
    for node in graph.nodes:
        for tensor in node.outputs:
            if not is_concrete(tensor.shape):
                dependent = _value_dependent(graph) if dependent is None else dependent
                runtime = [t.name for t in node.inputs[1:]
                           if t.name and not _is_const(t, const) and not (
                               t.dtype is not None and np.dtype(t.dtype).kind == "f")]
                if runtime and runtime[0] in dependent:
                    why = f"; it depends on the run-time value of '{runtime[0]}'"
                elif runtime:  # computed from shapes alone, yet not folded: say so
                    why = (f"; '{runtime[0]}' is computed from shapes alone, but folding could "
                           "not evaluate it")
                else:
                    why = "; it depends on values known only at run time"
                raise InputError(
                    f"{source}: tensor '{tensor.name}' (output of node '{node.name}', "
                    f"{node.op}) has no concrete shape after inference "
                    f"(got {_shape_text(tensor.shape or [])}){why}"
                )
            if id(node) not in const and 0 in tensor.shape:
                raise InputError(
                    f"{source}: tensor '{tensor.name}' (output of node '{node.name}', "
                    f"{node.op}) is empty (shape {_shape_text(tensor.shape)})"
                )


def check_conv_weights(graph: gs.Graph, source: str) -> None:
    """What ONNX shape inference does not check for Conv / ConvTranspose: weight vs input/attrs.

    A wrong channel count or kernel size would otherwise pass capture and be planned as a
    different network (onnxruntime would refuse to run it).
    """
    for node in graph.nodes:
        if node.op not in ("Conv", "ConvTranspose") or len(node.inputs) < 2:
            continue
        x, w = node.inputs[0], node.inputs[1]
        if not isinstance(w, gs.Constant) or not is_concrete(x.shape) or len(w.shape) < 3:
            continue
        where = f"{source}: node '{node.name}' ({node.op})"
        group = int(node.attrs.get("group", 1))
        w_shape = [int(d) for d in w.shape]
        cin = int(x.shape[1])
        expect = w_shape[1] * group if node.op == "Conv" else w_shape[0]
        if cin != expect:
            raise InputError(f"{where}: input '{x.name}' has {cin} channels but weight "
                             f"'{w.name}' ({_shape_text(w_shape)}, group {group}) expects "
                             f"{expect}")
        kernel = node.attrs.get("kernel_shape")
        if kernel is not None and [int(k) for k in kernel] != w_shape[2:]:
            raise InputError(f"{where}: kernel_shape {_shape_text(list(kernel))} does not match "
                             f"weight '{w.name}' ({_shape_text(w_shape)})")
        cout = w_shape[0] if node.op == "Conv" else w_shape[1] * group
        if len(node.inputs) > 2 and node.inputs[2].name and is_concrete(node.inputs[2].shape):
            bias = node.inputs[2]
            if [int(d) for d in bias.shape] != [cout]:
                raise InputError(f"{where}: bias '{bias.name}' has shape "
                                 f"{_shape_text(bias.shape)}, expected {cout}")


def _reshape_mismatch(node: gs.Node) -> tuple[list[int], list[int]] | None:
    """(target dims with 0s resolved, input dims) of a Reshape whose constant target does not
    hold exactly its input's elements; None when it does (or cannot be told)."""
    if node.op != "Reshape" or len(node.inputs) < 2:
        return None
    x, target = node.inputs[0], node.inputs[1]
    if not isinstance(target, gs.Constant) or not is_concrete(x.shape):
        return None
    dims = [int(d) for d in np.asarray(target.values).reshape(-1)]
    have = [int(d) for d in x.shape]
    if not int(node.attrs.get("allowzero", 0)):
        dims = [have[i] if d == 0 and i < len(have) else d for i, d in enumerate(dims)]
    n = int(np.prod(have, dtype=np.int64))
    known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
    ok = (n % known == 0) if -1 in dims and known > 0 else n == known
    return None if ok else (dims, have)


MAX_REBATCH_ROUNDS = 64
"""Bound on :func:`follow_batch`'s rounds (each fixes at least one Reshape; real exports have a
few dozen at most, e.g. one per attention block)."""


def follow_batch(graph: gs.Graph, source: str, exported: int, batch: int) -> list[str]:
    """Reshape targets an export fixed at its own batch, made to follow ``--batch``.

    An export traced without a dynamic batch (PyTorch's default exporter unless told
    ``dynamic_shapes``) writes ``x.flatten(1)`` or ``x.view(B, ...)`` as a Reshape to the
    constant ``[1, 512]``. Under ``--batch 4`` its input is ``[4, 512, 1, 1]``: the only
    reading under which the graph is the same network is the target's leading ``1`` being the
    batch. So where a Reshape's constant target starts with the exported batch, its input starts
    with the new one, and the elements match exactly once that leading dim is the new batch, the
    target is rewritten (a new constant) and shapes inferred again; anything else stays an error
    (:func:`check_reshapes`). Returns the names of the rewritten nodes."""
    fixed: list[str] = []
    if exported == batch or exported < 1:
        return fixed
    for _ in range(MAX_REBATCH_ROUNDS):
        changed = False
        for node in graph.nodes:
            bad = _reshape_mismatch(node)
            if bad is None:
                continue
            dims, have = bad
            if not (dims and have and dims[0] == exported and have[0] == batch
                    and -1 not in dims[1:]):
                continue
            if int(np.prod(have[1:], dtype=np.int64)) != int(np.prod(dims[1:], dtype=np.int64)):
                continue
            target = node.inputs[1]
            values = np.asarray(target.values).copy().reshape(-1)
            values[0] = batch
            node.inputs[1] = gs.Constant(f"{target.name}__batch{batch}",
                                         values.astype(np.asarray(target.values).dtype))
            fixed.append(node.name)
            changed = True
        if not changed:
            break
        inputs = {id(t) for t in graph.inputs}
        for t in graph.tensors().values():  # inferred from the old targets: infer them anew
            if isinstance(t, gs.Variable) and id(t) not in inputs:
                t.shape = None
        infer_shapes(graph, source=source)
        fold_to_fixed_point(graph, source)
    return fixed


def check_reshapes(graph: gs.Graph, source: str, resized: bool) -> None:
    """A Reshape's constant target must hold exactly its input's elements.

    ONNX shape inference takes a constant target shape as it is, so an export that fixed a
    shape at its own batch or size (``x.view(1, 10, 4, 16)`` traced at batch 1) passed capture
    under ``--batch 4`` and was planned as a smaller network; onnxruntime refuses to run it.
    """
    for node in graph.nodes:
        bad = _reshape_mismatch(node)
        if bad is None:
            continue
        dims, have = bad
        x = node.inputs[0]
        n = int(np.prod(have, dtype=np.int64))
        why = ("; --batch / --image-size changed the input, but the export fixed this shape -- "
               "export the model with dynamic axes, or at this size" if resized else "")
        raise InputError(f"{source}: node '{node.name}' (Reshape) cannot reshape "
                         f"'{x.name}' ({_shape_text(have)}, {n:,} elements) to "
                         f"{_shape_text(dims)}{why}")
